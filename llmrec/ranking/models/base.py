"""The base class of the models that embed features: owns the shared feature embedding."""

from __future__ import annotations

import torch
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import Embedded, FeatureEmbedding


class Backbone(nn.Module):
    """A model over the features of a :class:`FeatureSpec`: ``forward(batch) -> dict``.

    CTR models return ``{"logit": [B]}``; in training mode a model with an auxiliary objective
    (DIEN) adds ``"aux_loss"`` (a scalar), which the task adds to its loss.
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
        """Width of all fields flattened (user, target item, pooled history, context, dense)."""
        return self.spec.n_fields * self.embed_dim

    def embed(self, batch: dict) -> Embedded:
        return self.embedding(batch)

    def forward(self, batch: dict) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def require_history(spec: FeatureSpec, model: str) -> None:
    """Refuse, with the fix, features without a behaviour sequence for a model that attends over
    one (DIN, DIEN): on flat data such as Frappe there is nothing to attend to."""
    if spec.max_hist_len < 1:
        from llmrec.errors import ConfigError

        raise ConfigError(f"{model} attends over the behaviour sequence, and these features have "
                          f"none (features.max_hist_len 0, e.g. flat data such as BARS Frappe): "
                          f"use a flat model (dnn, deepfm, dcnv2, finalmlp, ...) or build the "
                          f"features with a history")
