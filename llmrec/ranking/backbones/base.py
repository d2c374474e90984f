"""The base class of every backbone: owns the shared feature embedding, returns logits."""

from __future__ import annotations

import torch
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import Embedded, FeatureEmbedding


class Backbone(nn.Module):
    """A CTR model: ``forward(batch) -> logits [B]``.

    In training mode a backbone with an auxiliary objective (DIEN) returns ``(logits, aux_loss)``;
    the trainer adds ``aux_loss`` to the click loss.
    """

    def __init__(self, spec: FeatureSpec, embed_dim: int) -> None:
        super().__init__()
        self.spec = spec
        self.embed_dim = embed_dim
        self.embedding = FeatureEmbedding(spec, embed_dim)

    @property
    def n_fields(self) -> int:
        return self.spec.n_fields

    @property
    def flat_dim(self) -> int:
        """Width of all fields flattened (user, target item, pooled history, dense)."""
        return self.spec.n_fields * self.embed_dim

    def embed(self, batch: dict) -> Embedded:
        return self.embedding(batch)

    def forward(self, batch: dict) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
