"""DNN: a plain MLP over the concatenated field embeddings.

Covington, Adams and Sargin, "Deep Neural Networks for YouTube Recommendations", RecSys 2016 (the
embedding + MLP ranking model that the other backbones extend).
"""

from __future__ import annotations

import torch

from llmrec.ranking.models.base import Backbone
from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP


class DNN(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 32,
                 hidden: tuple[int, ...] = (400, 400, 400), dropout: float = 0.1,
                 batch_norm: bool = False, activation: str = "relu") -> None:
        super().__init__(spec, embed_dim)
        self.mlp = MLP(self.flat_dim, list(hidden), out_dim=1, dropout=dropout,
                       batch_norm=batch_norm, activation=activation)

    def forward(self, batch: dict) -> dict:
        x = self.embed(batch).fields().flatten(1)
        return {"logit": self.mlp(x).squeeze(-1)}
