"""FiBiNET: squeeze-excitation field re-weighting and bilinear pairwise interactions, then an MLP.

Huang, Zhang and Zhang, "FiBiNET: Combining Feature Importance and Bilinear feature Interaction
for Click-Through Rate Prediction", RecSys 2019.
"""

from __future__ import annotations

import torch
from torch import nn

from llmrec.ranking.models.base import Backbone
from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP, LinearTerm


class SENet(nn.Module):
    """Squeeze (mean over the embedding) -> excite (two-layer bottleneck) -> re-weight fields."""

    def __init__(self, n_fields: int, reduction: int = 3) -> None:
        super().__init__()
        hidden = max(1, n_fields // reduction)
        self.excite = nn.Sequential(nn.Linear(n_fields, hidden, bias=False), nn.ReLU(),
                                    nn.Linear(hidden, n_fields, bias=False), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.excite(x.mean(-1)).unsqueeze(-1)


class Bilinear(nn.Module):
    """p_ij = (v_i W) * v_j for every field pair i < j; W shared ("field_all"), per field
    ("field_each") or per pair ("field_interaction")."""

    def __init__(self, n_fields: int, dim: int, kind: str = "field_interaction") -> None:
        super().__init__()
        i, j = torch.triu_indices(n_fields, n_fields, offset=1)
        self.register_buffer("i", i, persistent=False)
        self.register_buffer("j", j, persistent=False)
        self.kind = kind
        n_w = {"field_all": 1, "field_each": n_fields, "field_interaction": len(i)}.get(kind)
        if n_w is None:
            raise ValueError("bilinear kind must be field_all, field_each or field_interaction")
        self.w = nn.Parameter(torch.empty(n_w, dim, dim))
        nn.init.xavier_normal_(self.w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vi, vj = x[:, self.i], x[:, self.j]  # [B, P, D]
        if self.kind == "field_all":
            left = vi @ self.w[0]
        elif self.kind == "field_each":
            left = torch.einsum("bpd,pde->bpe", vi, self.w[self.i])
        else:
            left = torch.einsum("bpd,pde->bpe", vi, self.w)
        return left * vj


class FiBiNET(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 32, reduction: int = 3,
                 bilinear: str = "field_interaction", hidden: tuple[int, ...] = (400, 400),
                 dropout: float = 0.1, batch_norm: bool = False) -> None:
        super().__init__(spec, embed_dim)
        f = self.n_fields
        self.linear = LinearTerm(spec)
        self.senet = SENet(f, reduction)
        self.bilinear_plain = Bilinear(f, embed_dim, bilinear)
        self.bilinear_se = Bilinear(f, embed_dim, bilinear)
        n_pairs = f * (f - 1) // 2
        self.mlp = MLP(2 * n_pairs * embed_dim, list(hidden), out_dim=1, dropout=dropout,
                       batch_norm=batch_norm)

    def forward(self, batch: dict) -> dict:
        e = self.embed(batch).fields()
        p = self.bilinear_plain(e)
        q = self.bilinear_se(self.senet(e))
        return {"logit": self.linear(batch) + self.mlp(torch.cat([p, q], dim=1).flatten(1)).squeeze(-1)}
