"""PLE, Progressive Layered Extraction (Tang, Liu, Zhao and Gong, "Progressive Layered Extraction
(PLE): A Novel Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys 2020).

A stack of ``levels`` CGC (customized gate control) layers. Each layer has ``n_shared`` shared
experts and ``n_specific`` experts per task. Task ``k``'s gate (a softmax over its own experts and
the shared ones) mixes them into task ``k``'s output of the layer; in every layer but the last a
shared gate (a softmax over all experts) mixes everything into the shared output that feeds the
next layer's shared experts, while task ``k``'s experts and gate read task ``k``'s previous
output. The first layer reads the flattened field embeddings everywhere. A tower per task sits on
the last layer's task output. ``levels=1`` is the single-level CGC model of the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP
from llmrec.ranking.models.base import Backbone


class _CGC(nn.Module):
    """One extraction layer: task-specific and shared experts, a gate per task (and a shared gate
    unless it is the last layer)."""

    def __init__(self, in_dim: int, tasks: list[str], n_shared: int, n_specific: int,
                 expert: tuple[int, ...], dropout: float, shared_gate: bool) -> None:
        super().__init__()
        self.tasks = tasks

        def make(n):
            return nn.ModuleList(MLP(in_dim, list(expert), dropout=dropout) for _ in range(n))

        self.shared = make(n_shared)
        self.specific = nn.ModuleDict({t: make(n_specific) for t in tasks})
        self.out_dim = self.shared[0].out_dim
        self.gates = nn.ModuleDict({t: nn.Linear(in_dim, n_specific + n_shared) for t in tasks})
        self.shared_gate = (nn.Linear(in_dim, n_shared + n_specific * len(tasks))
                            if shared_gate else None)

    def forward(self, task_in: dict[str, torch.Tensor], shared_in: torch.Tensor):
        shared = [e(shared_in) for e in self.shared]
        specific = {t: [e(task_in[t]) for e in self.specific[t]] for t in self.tasks}
        out = {}
        for t in self.tasks:
            experts = torch.stack(specific[t] + shared, dim=1)  # [B, E, H]
            w = torch.softmax(self.gates[t](task_in[t]), dim=-1)
            out[t] = (w.unsqueeze(-1) * experts).sum(1)
        shared_out = None
        if self.shared_gate is not None:
            experts = torch.stack([h for t in self.tasks for h in specific[t]] + shared, dim=1)
            w = torch.softmax(self.shared_gate(shared_in), dim=-1)
            shared_out = (w.unsqueeze(-1) * experts).sum(1)
        return out, shared_out


class PLE(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 16,
                 tasks: tuple[str, ...] | None = None, levels: int = 2, n_shared: int = 2,
                 n_specific: int = 1, expert: tuple[int, ...] = (64,),
                 tower: tuple[int, ...] = (32,), dropout: float = 0.1) -> None:
        super().__init__(spec, embed_dim)
        if levels < 1 or n_shared < 1 or n_specific < 1:
            raise ValueError(f"ple: levels, n_shared and n_specific must be >= 1 (got {levels}, "
                             f"{n_shared}, {n_specific})")
        self.tasks = list(tasks) if tasks else ["label", *spec.labels]
        layers = []
        d = self.flat_dim
        for level in range(levels):
            layer = _CGC(d, self.tasks, n_shared, n_specific, expert, dropout,
                         shared_gate=level < levels - 1)
            layers.append(layer)
            d = layer.out_dim
        self.layers = nn.ModuleList(layers)
        self.towers = nn.ModuleDict({t: MLP(d, list(tower), out_dim=1) for t in self.tasks})

    def forward(self, batch: dict) -> dict:
        x = self.embed(batch).fields().flatten(1)
        task_in, shared_in = {t: x for t in self.tasks}, x
        for layer in self.layers:
            task_in, shared_in = layer(task_in, shared_in)
        logits = {t: self.towers[t](task_in[t]).squeeze(-1) for t in self.tasks}
        return {"logits": logits, "logit": logits[self.tasks[0]]}
