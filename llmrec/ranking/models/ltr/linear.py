"""A linear ranker: score = w . x over every field (one weight per categorical value, a linear map
of each dense field such as LETOR features), the usual first ULTR baseline."""

from __future__ import annotations

from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import LinearTerm


class LinearRanker(nn.Module):
    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__()
        self.spec = spec
        self.linear = LinearTerm(spec)

    def forward(self, batch: dict) -> dict:
        return {"logit": self.linear(batch)}
