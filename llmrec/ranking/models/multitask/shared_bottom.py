"""Shared-bottom multi-task model: one MLP over all fields shared by every task, one tower per
task (Caruana, "Multitask Learning", Machine Learning 1997) -- the reference that MMoE / PLE /
ESMM are measured against."""

from __future__ import annotations

import torch
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP
from llmrec.ranking.models.base import Backbone


class SharedBottom(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 16,
                 tasks: tuple[str, ...] | None = None, bottom: tuple[int, ...] = (256, 128),
                 tower: tuple[int, ...] = (64,), dropout: float = 0.1) -> None:
        super().__init__(spec, embed_dim)
        # default: the primary label and every named label of the features
        self.tasks = list(tasks) if tasks else ["label", *spec.labels]
        self.bottom = MLP(self.flat_dim, list(bottom), dropout=dropout)
        self.towers = nn.ModuleDict({t: MLP(self.bottom.out_dim, list(tower), out_dim=1)
                                     for t in self.tasks})

    def forward(self, batch: dict) -> dict:
        h = self.bottom(self.embed(batch).fields().flatten(1))
        logits = {t: tower(h).squeeze(-1) for t, tower in self.towers.items()}
        return {"logits": logits, "logit": logits[self.tasks[0]]}
