"""EKTM, knowledge transfer between several (sparse) conversion tasks, after the abstract of
arXiv 2605.05730: a router, a per-task transmitter and an enhanced module.

**Our design, built from the abstract and summaries only** (the paper's equations were not
available): every component below is our reading of what the abstract says each part does.

- Task states ``h_1..h_K``: MMoE experts and per-task gates (exactly :class:`MMoE`'s layers).
- Router: per-task learned queries attend over the task states,
  ``a_tk = softmax_k(q_t . W_k h_k / sqrt(H))``, ``R_t = sum_k a_tk W_v h_k`` -- the knowledge
  pool task ``t`` reads from. ``router=False``: ``R_t`` is the mean of the other tasks' states.
- Transmitter of task ``t``: ``m_t = sigmoid(W_g,t [h_t; R_t]) * (W_t R_t)``, what task ``t``
  imports. ``transmitter=False``: ``m_t = R_t``.
- Enhanced module: the task's prediction ``y_t = sigmoid(g_t([h_t; m_t]))`` beside an own-only
  head ``y0_t = sigmoid(g0_t(h_t))`` (returned as ``own_logits``); the multitask task adds
  ``BCE(y0_t)`` and ``max(0, BCE(y_t) - sg(BCE(y0_t)))`` to task ``t``'s loss, so transfer may not
  make a task worse than its own head. ``enhanced=False``: no own head, no hinge.
- ``detach_source`` (default on): the router reads the other tasks' states through a stop-gradient,
  so task ``t``'s loss does not move the source tasks' gates and towers through what it imports.
- ``transfer=False``: no router, transmitter or enhanced module; the model is then MMoE (same
  layers, same initialisation order, same outputs for the same seed).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP
from llmrec.ranking.models.multitask.mmoe import MMoE


class EKTM(MMoE):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 16,
                 tasks: tuple[str, ...] | None = None, n_experts: int = 4,
                 expert: tuple[int, ...] = (64,), tower: tuple[int, ...] = (32,),
                 dropout: float = 0.1, transfer: bool = True, router: bool = True,
                 transmitter: bool = True, enhanced: bool = True,
                 detach_source: bool = True) -> None:
        # experts, gates and the own-only towers, created exactly as MMoE creates them
        super().__init__(spec, embed_dim, tasks, n_experts, expert, tower, dropout)
        self.transfer, self.use_router = transfer, router
        self.use_transmitter, self.enhanced, self.detach_source = transmitter, enhanced, detach_source
        if not transfer:
            return
        h = self.experts[0].out_dim
        k = len(self.tasks)
        if router:
            self.queries = nn.Parameter(torch.randn(k, h) / math.sqrt(h))
            self.key = nn.Linear(h, h, bias=False)
            self.value = nn.Linear(h, h, bias=False)
        if transmitter:
            self.select = nn.ModuleDict({t: nn.Linear(2 * h, h) for t in self.tasks})
            self.transmit = nn.ModuleDict({t: nn.Linear(h, h) for t in self.tasks})
        self.heads = nn.ModuleDict({t: MLP(2 * h, list(tower), out_dim=1) for t in self.tasks})

    def task_states(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        experts = torch.stack([e(x) for e in self.experts], dim=1)  # [B, E, H]
        return {t: (w.unsqueeze(-1) * experts).sum(1) for t, w in self.gate_weights(x).items()}

    def _pool(self, i: int, states: list[torch.Tensor]) -> torch.Tensor:
        """``R_t`` for task ``i``: what the router gathers from the task states."""
        src = [s if j == i or not self.detach_source else s.detach()
               for j, s in enumerate(states)]
        if not self.use_router:
            others = [s for j, s in enumerate(src) if j != i] or src
            return torch.stack(others, 1).mean(1)
        stack = torch.stack(src, 1)  # [B, K, H]
        scores = (self.key(stack) * self.queries[i]).sum(-1) / math.sqrt(stack.shape[-1])
        return (torch.softmax(scores, -1).unsqueeze(-1) * self.value(stack)).sum(1)

    def forward(self, batch: dict) -> dict:
        x = self.embed(batch).fields().flatten(1)
        h = self.task_states(x)
        if not self.transfer:
            logits = {t: self.towers[t](h[t]).squeeze(-1) for t in self.tasks}
            return {"logits": logits, "logit": logits[self.tasks[0]]}
        states = [h[t] for t in self.tasks]
        logits, own = {}, {}
        for i, t in enumerate(self.tasks):
            pool = self._pool(i, states)
            if self.use_transmitter:
                gate = torch.sigmoid(self.select[t](torch.cat([h[t], pool], -1)))
                imported = gate * self.transmit[t](pool)
            else:
                imported = pool
            logits[t] = self.heads[t](torch.cat([h[t], imported], -1)).squeeze(-1)
            if self.enhanced:
                own[t] = self.towers[t](h[t]).squeeze(-1)
        out = {"logits": logits, "logit": logits[self.tasks[0]]}
        if own:
            out["own_logits"] = own
        return out
