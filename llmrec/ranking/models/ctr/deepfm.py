"""DeepFM: a factorization machine and an MLP sharing one embedding, summed.

Guo, Tang, Ye, Li and He, "DeepFM: A Factorization-Machine based Neural Network for CTR
Prediction", IJCAI 2017.
"""

from __future__ import annotations

import torch

from llmrec.ranking.models.base import Backbone
from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP, LinearTerm


def fm_interaction(fields: torch.Tensor) -> torch.Tensor:
    """Sum of all pairwise inner products of [B, F, D] fields in O(F*D): 0.5*((sum)^2 - sum(^2))."""
    square_of_sum = fields.sum(1).pow(2)
    sum_of_square = fields.pow(2).sum(1)
    return 0.5 * (square_of_sum - sum_of_square).sum(-1)


class DeepFM(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 32,
                 hidden: tuple[int, ...] = (400, 400, 400), dropout: float = 0.1,
                 batch_norm: bool = False, activation: str = "relu") -> None:
        super().__init__(spec, embed_dim)
        self.linear = LinearTerm(spec)
        self.mlp = MLP(self.flat_dim, list(hidden), out_dim=1, dropout=dropout,
                       batch_norm=batch_norm, activation=activation)

    def forward(self, batch: dict) -> dict:
        fields = self.embed(batch).fields()
        return {"logit": (self.linear(batch) + fm_interaction(fields)
                          + self.mlp(fields.flatten(1)).squeeze(-1))}
