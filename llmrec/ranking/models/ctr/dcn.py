"""DCN: an explicit cross network (rank-one crosses) in parallel with an MLP.

Wang, Fu, Fu and Wang, "Deep & Cross Network for Ad Click Predictions", ADKDD 2017.
"""

from __future__ import annotations

import torch
from torch import nn

from llmrec.ranking.models.base import Backbone
from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP


class CrossNet(nn.Module):
    """x_{l+1} = x_0 * (x_l . w_l) + b_l + x_l: each layer raises the crossing degree by one with
    only 2d parameters."""

    def __init__(self, dim: int, n_layers: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.empty(n_layers, dim))
        self.b = nn.Parameter(torch.zeros(n_layers, dim))
        nn.init.xavier_uniform_(self.w)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for w, b in zip(self.w, self.b):
            x = x0 * (x @ w).unsqueeze(-1) + b + x
        return x


class DCN(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 32, cross_layers: int = 3,
                 hidden: tuple[int, ...] = (400, 400, 400), dropout: float = 0.1,
                 batch_norm: bool = False) -> None:
        super().__init__(spec, embed_dim)
        self.cross = CrossNet(self.flat_dim, cross_layers)
        self.mlp = MLP(self.flat_dim, list(hidden), dropout=dropout, batch_norm=batch_norm)
        self.head = nn.Linear(self.flat_dim + self.mlp.out_dim, 1)

    def forward(self, batch: dict) -> dict:
        x = self.embed(batch).fields().flatten(1)
        return {"logit": self.head(torch.cat([self.cross(x), self.mlp(x)], dim=-1)).squeeze(-1)}
