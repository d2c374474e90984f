"""DIN: target attention over the behaviour sequence (a local activation unit scores each past
item against the candidate; weights are not softmax-normalised, so the pooled vector keeps the
intensity of interest), then an MLP.

Zhou, Zhu, Song, Fan, Zhu, Ma, Yan, Jin, Li and Gai, "Deep Interest Network for Click-Through
Rate Prediction", KDD 2018.
"""

from __future__ import annotations

import torch
from torch import nn

from llmrec.ranking.models.base import Backbone, require_history
from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP
from llmrec.ranking.models.sequential.attention import CapeBias


class TargetAttention(nn.Module):
    """Activation unit: score_t = MLP([q, k_t, q - k_t, q * k_t]); masked positions score 0.

    ``position="cape"`` adds CAPE's contextual position bias to the scores (Yan et al., WWW 2025):
    gates g_t = 1 - sigmoid(score_t) on valid behaviours, position p_t = sum of the gates from
    behaviour t up to the most recent one (clamped to ``max_len - 1``), bias = linear
    interpolation of SiLU(W q) . P[:, floor(p_t)] and . P[:, ceil(p_t)]; behaviours like the target
    add little distance, so relevant old ones stay close.
    """

    def __init__(self, dim: int, hidden: tuple[int, ...] = (64,), activation: str = "relu",
                 softmax: bool = False, position: str = "none", max_len: int = 1,
                 cape_dim: int = 16) -> None:
        super().__init__()
        if position not in ("none", "cape"):
            raise ValueError(f"target attention position must be none or cape, not {position!r}")
        self.mlp = MLP(4 * dim, list(hidden), out_dim=1, activation=activation)
        self.softmax = softmax
        self.position = position
        self.cape = None
        if position == "cape":
            self.cape = CapeBias(dim, max_len, cape_dim)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = query.unsqueeze(1).expand_as(keys)
        scores = self.mlp(torch.cat([q, keys, q - keys, q * keys], dim=-1)).squeeze(-1)
        if self.cape is not None:
            scores = scores + self.cape(query, scores, mask)
        if self.softmax:
            scores = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
            scores = torch.nan_to_num(scores)  # a user with no history: all weights 0
        else:
            scores = scores * mask.to(scores.dtype)
        return scores


class DIN(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 32,
                 attention_hidden: tuple[int, ...] = (64,), attention_softmax: bool = False,
                 hidden: tuple[int, ...] = (200, 80), activation: str = "relu",
                 dropout: float = 0.1, batch_norm: bool = False, position: str = "none",
                 cape_dim: int = 16) -> None:
        require_history(spec, "din")
        super().__init__(spec, embed_dim)
        k = spec.n_item_slots
        self.attention = TargetAttention(k * embed_dim, tuple(attention_hidden), activation,
                                         attention_softmax, position, spec.max_hist_len, cape_dim)
        self.mlp = MLP(self.flat_dim, list(hidden), out_dim=1, dropout=dropout,
                       batch_norm=batch_norm, activation=activation)

    def forward(self, batch: dict) -> dict:
        e = self.embed(batch)
        b, l, k, d = e.history.shape
        keys = e.history.reshape(b, l, k * d)
        weights = self.attention(e.target.reshape(b, k * d), keys, e.mask)
        interest = (weights.unsqueeze(-1) * keys).sum(1).view(b, k, d)
        return {"logit": self.mlp(e.fields(history=interest).flatten(1)).squeeze(-1)}
