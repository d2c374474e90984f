"""FinalMLP: two MLP streams fed with differently gated views of the features, fused by a
multi-head bilinear layer.

Mao, Zhu, Wang, Dong and Zhu, "FinalMLP: An Enhanced Two-Stream MLP Model for CTR Prediction",
AAAI 2023.
"""

from __future__ import annotations

import torch
from torch import nn

from llmrec.ranking.models.base import Backbone
from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP


class FeatureSelection(nn.Module):
    """Gate g = 2 * sigmoid(MLP(context)) over the flattened fields: each stream learns which
    features to emphasise given a context (here: user side for one stream, item side for the
    other, as in the paper's user/item split)."""

    def __init__(self, context_dim: int, out_dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = MLP(context_dim, [hidden], out_dim=out_dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return x * 2 * torch.sigmoid(self.gate(context))


class InteractionAggregation(nn.Module):
    """y = b + w1.o1 + w2.o2 + sum_heads o1_h^T W_h o2_h."""

    def __init__(self, d1: int, d2: int, heads: int = 1) -> None:
        super().__init__()
        if d1 % heads or d2 % heads:
            raise ValueError(f"stream widths {d1}, {d2} must be divisible by fusion heads {heads}")
        self.heads = heads
        self.w1 = nn.Linear(d1, 1)
        self.w2 = nn.Linear(d2, 1, bias=False)
        self.w12 = nn.Parameter(torch.empty(heads, d1 // heads, d2 // heads))
        nn.init.xavier_normal_(self.w12)

    def forward(self, o1: torch.Tensor, o2: torch.Tensor) -> torch.Tensor:
        b = o1.shape[0]
        h1 = o1.view(b, self.heads, -1)
        h2 = o2.view(b, self.heads, -1)
        bil = torch.einsum("bhi,hij,bhj->b", h1, self.w12, h2)
        return self.w1(o1).squeeze(-1) + self.w2(o2).squeeze(-1) + bil


class FinalMLP(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 32,
                 hidden1: tuple[int, ...] = (400, 400), hidden2: tuple[int, ...] = (400, 400),
                 feature_selection: bool = True, gate_hidden: int = 200, fusion_heads: int = 50,
                 dropout: float = 0.1, batch_norm: bool = False) -> None:
        super().__init__(spec, embed_dim)
        d = self.flat_dim
        u, k = spec.n_user_fields, spec.n_item_slots
        self.feature_selection = feature_selection
        if feature_selection:
            # stream 1 sees the features through a user-side gate (profile + history), stream 2
            # through an item-side gate (the candidate)
            self.fs1 = FeatureSelection((u + k) * embed_dim, d, gate_hidden)
            self.fs2 = FeatureSelection(k * embed_dim, d, gate_hidden)
        self.mlp1 = MLP(d, list(hidden1), dropout=dropout, batch_norm=batch_norm)
        self.mlp2 = MLP(d, list(hidden2), dropout=dropout, batch_norm=batch_norm)
        self.fusion = InteractionAggregation(self.mlp1.out_dim, self.mlp2.out_dim, fusion_heads)

    def forward(self, batch: dict) -> dict:
        e = self.embed(batch)
        hist = e.pooled_history()
        # without a behaviour sequence (BARS data) there is no history field (spec.n_fields)
        x = e.fields(history=hist if self.spec.max_hist_len > 0 else None).flatten(1)
        if self.feature_selection:
            user_ctx = torch.cat([e.user, hist], dim=1).flatten(1)
            x1 = self.fs1(x, user_ctx)
            x2 = self.fs2(x, e.target.flatten(1))
        else:
            x1 = x2 = x
        return {"logit": self.fusion(self.mlp1(x1), self.mlp2(x2))}
