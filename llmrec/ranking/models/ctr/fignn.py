"""FiGNN: fields are nodes of a fully connected graph; attention-weighted message passing with a
GRU state update and residual links, then an attentional read-out.

Li, Cui, Wu, Zhang and Wang, "Fi-GNN: Modeling Feature Interactions via Graph Neural Networks for
CTR Prediction", CIKM 2019.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.ranking.models.ctr.autoint import InteractingLayer
from llmrec.ranking.models.base import Backbone
from llmrec.ranking.features import FeatureSpec


class FiGNN(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 32, steps: int = 3,
                 use_self_attention: bool = True, heads: int = 2, use_residual: bool = True) -> None:
        super().__init__(spec, embed_dim)
        f, d = self.n_fields, embed_dim
        self.steps = steps
        self.use_residual = use_residual
        # the paper feeds the graph with self-attended field embeddings
        self.attention = InteractingLayer(d, d, heads) if use_self_attention else None
        # edge weights: a_ij = softmax_j(LeakyReLU(w^T [h_i || h_j])), self-loops excluded
        self.edge_src = nn.Linear(d, 1, bias=False)
        self.edge_dst = nn.Linear(d, 1, bias=False)
        # node-specific output transforms: each field sends its own message
        self.node_w = nn.Parameter(torch.empty(f, d, d))
        nn.init.xavier_normal_(self.node_w)
        self.gru = nn.GRUCell(d, d)
        self.register_buffer("eye", torch.eye(f, dtype=torch.bool), persistent=False)
        # attentional scoring: per-node score and per-node weight
        self.score = nn.Linear(d, 1)
        self.weight = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 1, bias=False))

    def forward(self, batch: dict) -> dict:
        h0 = self.embed(batch).fields()
        if self.attention is not None:
            h0 = self.attention(h0)
        b, f, d = h0.shape
        logits = self.edge_src(h0) + self.edge_dst(h0).transpose(1, 2)  # [B, F, F]
        logits = F.leaky_relu(logits).masked_fill(self.eye, float("-inf"))
        adj = torch.softmax(logits, dim=-1)
        h = h0
        for _ in range(self.steps):
            msg = torch.einsum("bfd,fde->bfe", h, self.node_w)
            agg = adj @ msg
            h = self.gru(agg.reshape(-1, d), h.reshape(-1, d)).view(b, f, d)
            if self.use_residual:
                h = h + h0
        weights = self.weight(h).squeeze(-1)
        return {"logit": (self.score(h).squeeze(-1) * weights).sum(-1)}
