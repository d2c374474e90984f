"""ESMM, Entire Space Multi-task Model (Ma, Zhao, Xie, Huang, Wu and Zhu, "Entire Space
Multi-Task Model: An Effective Approach for Estimating Post-Click Conversion Rate", SIGIR 2018).

A CVR model trained on clicked impressions only is served on every impression (sample selection
bias), and conversions are sparse. ESMM puts two towers on one shared field embedding,
``pCTR = sigmoid(f_c(x))`` and ``pCVR = sigmoid(f_v(x))``, and learns over *all* impressions
from ``pCTCVR = pCTR * pCVR``: ``L = BCE(y, pCTR) + BCE(y * z, pCTCVR)`` (``y`` click, ``z``
conversion). The CVR tower has no loss of its own: it is trained only through ``pCTCVR``.

``tasks[0]`` is the click task; every later task is a post-click task ``z`` with its own CVR
tower. The model returns, per task, the logit of what its loss compares: ``logits[tasks[0]]`` the
CTR logit, ``logits[z]`` the logit of ``pCTCVR_z`` (computed in log space:
``log p = logsigmoid(a) + logsigmoid(b)``, ``logit = log p - log(1 - p)``), and
``ctcvr_of = {z: tasks[0]}``, which tells the multitask task that ``z``'s target is ``y * z``
(on click-to-conversion logs such as Ali-CCP and AliExpress a conversion implies a click, so
``y * z = z``). ``cvr_logits[z]`` is the CVR tower's logit, which the task scores on the clicked
samples (``z.cvr_auc``); ``z.auc`` is then the CTCVR AUC over all samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP
from llmrec.ranking.models.base import Backbone

_LOG_HALF = -0.6931471805599453


def product_logit(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The logit of ``sigmoid(a) * sigmoid(b)``, stable for large |a|, |b|."""
    log_p = (F.logsigmoid(a) + F.logsigmoid(b)).clamp_max(-1e-7)
    # log(1 - e^x) for x < 0: expm1 near 0, log1p(-e^x) far from it
    log_q = torch.where(log_p > _LOG_HALF, torch.log(-torch.expm1(log_p)),
                        torch.log1p(-torch.exp(log_p)))
    return log_p - log_q


class ESMM(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 16,
                 tasks: tuple[str, ...] | None = None, tower: tuple[int, ...] = (64, 32),
                 dropout: float = 0.1) -> None:
        super().__init__(spec, embed_dim)
        self.tasks = list(tasks) if tasks else ["label", *spec.labels]
        if len(self.tasks) < 2:
            raise ValueError(f"esmm: needs a click task and at least one conversion task "
                             f"(got tasks {self.tasks})")
        d = self.flat_dim
        self.ctr = MLP(d, list(tower), out_dim=1, dropout=dropout)
        self.cvr = nn.ModuleDict({t: MLP(d, list(tower), out_dim=1, dropout=dropout)
                                  for t in self.tasks[1:]})

    def forward(self, batch: dict) -> dict:
        x = self.embed(batch).fields().flatten(1)
        click = self.tasks[0]
        a = self.ctr(x).squeeze(-1)
        cvr = {t: tower(x).squeeze(-1) for t, tower in self.cvr.items()}
        logits = {click: a, **{t: product_logit(a.float(), b.float()) for t, b in cvr.items()}}
        return {"logits": logits, "logit": a, "cvr_logits": cvr,
                "ctcvr_of": {t: click for t in cvr}}
