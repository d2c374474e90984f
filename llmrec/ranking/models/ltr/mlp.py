"""An MLP ranker: all fields embedded and concatenated, then an MLP to one score per item."""

from __future__ import annotations

import torch

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP
from llmrec.ranking.models.base import Backbone


class MLPRanker(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 16, hidden: tuple[int, ...] = (64, 32),
                 dropout: float = 0.1, activation: str = "elu") -> None:
        super().__init__(spec, embed_dim)
        self.mlp = MLP(self.flat_dim, list(hidden), out_dim=1, dropout=dropout,
                       activation=activation)

    def forward(self, batch: dict) -> dict:
        return {"logit": self.mlp(self.embed(batch).fields().flatten(1)).squeeze(-1)}
