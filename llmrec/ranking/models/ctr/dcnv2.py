"""DCNv2: full-rank (or low-rank) matrix cross layers with an MLP, stacked or in parallel.

Wang, Shivanna, Cheng, Jain, Lin, Hong and Chi, "DCN V2: Improved Deep & Cross Network and
Practical Lessons for Web-scale Learning to Rank Systems", WWW 2021.
"""

from __future__ import annotations

import torch
from torch import nn

from llmrec.ranking.models.base import Backbone
from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP


class CrossNetV2(nn.Module):
    """x_{l+1} = x_0 * (W_l x_l + b_l) + x_l, with W_l = U_l V_l^T when ``low_rank`` is set."""

    def __init__(self, dim: int, n_layers: int, low_rank: int | None = None) -> None:
        super().__init__()
        if low_rank:
            self.layers = nn.ModuleList(
                nn.Sequential(nn.Linear(dim, low_rank, bias=False), nn.Linear(low_rank, dim))
                for _ in range(n_layers))
        else:
            self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class DCNv2(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 32, cross_layers: int = 3,
                 hidden: tuple[int, ...] = (400, 400), structure: str = "parallel",
                 low_rank: int | None = None, dropout: float = 0.1,
                 batch_norm: bool = False) -> None:
        super().__init__(spec, embed_dim)
        if structure not in ("parallel", "stacked", "cross_only"):
            raise ValueError("structure must be parallel, stacked or cross_only")
        self.structure = structure
        d = self.flat_dim
        self.cross = CrossNetV2(d, cross_layers, low_rank)
        if structure == "cross_only":
            self.mlp = None
            head_in = d
        else:
            self.mlp = MLP(d, list(hidden), dropout=dropout, batch_norm=batch_norm)
            head_in = self.mlp.out_dim + (d if structure == "parallel" else 0)
        self.head = nn.Linear(head_in, 1)

    def forward(self, batch: dict) -> dict:
        x = self.embed(batch).fields().flatten(1)
        c = self.cross(x)
        if self.structure == "parallel":
            h = torch.cat([c, self.mlp(x)], dim=-1)
        elif self.structure == "stacked":
            h = self.mlp(c)
        else:
            h = c
        return {"logit": self.head(h).squeeze(-1)}
