"""xDeepFM: a compressed interaction network (vector-wise explicit crosses), an MLP and a
linear term.

Lian, Zhou, Zhang, Chen, Xie and Sun, "xDeepFM: Combining Explicit and Implicit Feature
Interactions for Recommender Systems", KDD 2018.
"""

from __future__ import annotations

import torch
from torch import nn

from llmrec.ranking.models.base import Backbone
from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP, LinearTerm


class CIN(nn.Module):
    """Compressed Interaction Network.

    Layer k maps X^{k-1} [B, H_{k-1}, D] and X^0 [B, m, D] to X^k [B, H_k, D] with
    X^k_h = sum_{i,j} W^{k,h}_{ij} (X^{k-1}_i * X^0_j): all vector-wise products of the previous
    layer and the input, compressed by a 1x1 convolution. Every layer is sum-pooled over D.
    """

    def __init__(self, n_fields: int, layer_sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        prev = n_fields
        for h in layer_sizes:
            self.convs.append(nn.Conv1d(prev * n_fields, h, kernel_size=1))
            prev = h
        self.out_dim = sum(layer_sizes)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        b, _, d = x0.shape
        xk = x0
        pooled = []
        for conv in self.convs:
            z = (xk.unsqueeze(2) * x0.unsqueeze(1)).reshape(b, -1, d)  # [B, H*m, D]
            xk = torch.relu(conv(z))
            pooled.append(xk.sum(-1))
        return torch.cat(pooled, dim=-1)


class XDeepFM(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 32,
                 cin_layers: tuple[int, ...] = (64, 64), hidden: tuple[int, ...] = (400, 400),
                 dropout: float = 0.1, batch_norm: bool = False) -> None:
        super().__init__(spec, embed_dim)
        self.linear = LinearTerm(spec)
        self.cin = CIN(self.n_fields, tuple(cin_layers))
        self.cin_head = nn.Linear(self.cin.out_dim, 1)
        self.mlp = MLP(self.flat_dim, list(hidden), out_dim=1, dropout=dropout,
                       batch_norm=batch_norm)

    def forward(self, batch: dict) -> dict:
        fields = self.embed(batch).fields()
        return {"logit": (self.linear(batch) + self.cin_head(self.cin(fields)).squeeze(-1)
                          + self.mlp(fields.flatten(1)).squeeze(-1))}
