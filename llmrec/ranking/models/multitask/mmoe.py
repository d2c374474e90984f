"""MMoE, Multi-gate Mixture-of-Experts (Ma, Zhao, Yi, Chen, Hong and Chi, "Modeling Task
Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts", KDD 2018).

``n_experts`` expert MLPs read the flattened field embeddings; each task ``k`` has its own gate, a
linear map of the same input followed by a softmax over the experts, and its own tower on the
gate-weighted sum of the expert outputs:
``f_k(x) = sum_i softmax(W_k x)_i * e_i(x)``, ``logit_k = tower_k(f_k(x))``. With one expert it
is the shared-bottom model; different gates let loosely related tasks use different experts.
"""

from __future__ import annotations

import torch
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP
from llmrec.ranking.models.base import Backbone


class MMoE(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 16,
                 tasks: tuple[str, ...] | None = None, n_experts: int = 4,
                 expert: tuple[int, ...] = (64,), tower: tuple[int, ...] = (32,),
                 dropout: float = 0.1) -> None:
        super().__init__(spec, embed_dim)
        if n_experts < 1:
            raise ValueError(f"mmoe: n_experts must be >= 1 (got {n_experts})")
        # default: the primary label and every named label of the features
        self.tasks = list(tasks) if tasks else ["label", *spec.labels]
        d = self.flat_dim
        self.experts = nn.ModuleList(MLP(d, list(expert), dropout=dropout)
                                     for _ in range(n_experts))
        out = self.experts[0].out_dim
        self.gates = nn.ModuleDict({t: nn.Linear(d, n_experts) for t in self.tasks})
        self.towers = nn.ModuleDict({t: MLP(out, list(tower), out_dim=1) for t in self.tasks})

    def gate_weights(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per task, the softmax weights ``[B, n_experts]`` its gate gives the experts."""
        return {t: torch.softmax(g(x), dim=-1) for t, g in self.gates.items()}

    def forward(self, batch: dict) -> dict:
        x = self.embed(batch).fields().flatten(1)
        experts = torch.stack([e(x) for e in self.experts], dim=1)  # [B, E, H]
        logits = {}
        for t, w in self.gate_weights(x).items():
            mixed = (w.unsqueeze(-1) * experts).sum(1)
            logits[t] = self.towers[t](mixed).squeeze(-1)
        return {"logits": logits, "logit": logits[self.tasks[0]]}
