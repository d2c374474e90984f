"""DeepFM: a factorization machine and an MLP sharing one embedding, summed.

``fm_dense: false`` keeps dense fields (knowledge vectors, numeric features) out of the
second-order FM term: they still enter the linear term and the MLP, as in KAR's DeepFM.

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
                 batch_norm: bool = False, activation: str = "relu",
                 fm_dense: bool = True) -> None:
        super().__init__(spec, embed_dim)
        self.fm_dense = fm_dense
        self.linear = LinearTerm(spec)
        self.mlp = MLP(self.flat_dim, list(hidden), out_dim=1, dropout=dropout,
                       batch_norm=batch_norm, activation=activation)

    def forward(self, batch: dict) -> dict:
        e = self.embed(batch)
        fields = e.fields()
        fm_fields = fields
        if not self.fm_dense and e.dense is not None:
            fm_fields = fields[:, :fields.shape[1] - e.dense.shape[1]]  # dense fields come last
        return {"logit": (self.linear(batch) + fm_interaction(fm_fields)
                          + self.mlp(fields.flatten(1)).squeeze(-1))}
