"""GDCN: a gated cross network (each cross term passes an information gate, so deep crosses stay
useful instead of adding noise), in parallel with or stacked under an MLP.

Wang, Gu, Wang and Yan, "Towards Deeper, Lighter and Interpretable Cross Network for CTR
Prediction", CIKM 2023.
"""

from __future__ import annotations

import torch
from torch import nn

from llmrec.ranking.models.base import Backbone
from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP


class GatedCrossNet(nn.Module):
    """c_{l+1} = c_0 * (W_c c_l + b) * sigmoid(W_g c_l) + c_l."""

    def __init__(self, dim: int, n_layers: int) -> None:
        super().__init__()
        self.cross = nn.ModuleList(nn.Linear(dim, dim) for _ in range(n_layers))
        self.gate = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(n_layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for cross, gate in zip(self.cross, self.gate):
            x = x0 * cross(x) * torch.sigmoid(gate(x)) + x
        return x


class GDCN(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 32, cross_layers: int = 3,
                 hidden: tuple[int, ...] = (400, 400), structure: str = "parallel",
                 dropout: float = 0.1, batch_norm: bool = False) -> None:
        super().__init__(spec, embed_dim)
        if structure not in ("parallel", "stacked"):
            raise ValueError("structure must be parallel (GDCN-P) or stacked (GDCN-S)")
        self.structure = structure
        d = self.flat_dim
        self.cross = GatedCrossNet(d, cross_layers)
        self.mlp = MLP(d, list(hidden), dropout=dropout, batch_norm=batch_norm)
        head_in = self.mlp.out_dim + (d if structure == "parallel" else 0)
        self.head = nn.Linear(head_in, 1)

    def forward(self, batch: dict) -> dict:
        x = self.embed(batch).fields().flatten(1)
        c = self.cross(x)
        h = torch.cat([c, self.mlp(x)], -1) if self.structure == "parallel" else self.mlp(c)
        return {"logit": self.head(h).squeeze(-1)}
