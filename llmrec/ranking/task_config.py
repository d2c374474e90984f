"""``TaskConfig``: what a ranking run learns and how it is judged (the options of
:mod:`llmrec.ranking.tasks`).

Kept free of torch imports (like ``train_config.py``): ``llmrec rank train --help`` is built from
it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmrec.config import option

TASK_KINDS = ("binary", "multitask", "regression", "next_item", "listwise")
LOSSES = {"binary": ("auto", "bce"), "multitask": ("auto", "bce"),
          "regression": ("auto", "mse", "huber"), "next_item": ("auto", "full", "sampled", "bce"),
          "listwise": ("auto", "softmax", "lambda")}


@dataclass
class TaskConfig:
    """The learning task: labels, loss, metrics and the validation metric early stopping watches."""

    kind: Literal["binary", "multitask", "regression", "next_item", "listwise"] = option(
        "binary", help="binary: one click label (BCE; AUC, gAUC, LogLoss); multitask: several "
                       "named binary labels (weighted BCE; per-task AUC); regression: MSE or "
                       "Huber (RMSE, MAE); next_item: the sample's item among the whole catalogue "
                       "(full or sampled softmax; HR/NDCG@k by full ranking, history masked); "
                       "listwise: samples grouped by a query/session id (softmax or lambda loss; "
                       "nDCG@k and ERR@k with exponential gain)")
    labels: list[str] = option([], help="label names: `label` is the primary label, others are "
                                        "features.labels columns; multitask: one per task "
                                        "(default: label + every features.labels); regression / "
                                        "listwise: the one label (default: label)")
    weights: list[float] = option([], help="multitask: loss weight per task, in labels order "
                                           "(default 1 each)")
    loss: str = option("auto", help="binary/multitask: bce; regression: mse (auto) or huber; "
                                    "next_item: full (auto) or sampled softmax, or bce with one "
                                    "sampled negative per sample (SASRec's paper); listwise: "
                                    "softmax (auto) or lambda")
    huber_delta: float = option(1.0, help="regression with loss huber: the delta")
    n_negatives: int = option(100, help="next_item with loss sampled: uniform negatives per batch")
    sequence_training: bool = option(
        False, help="next_item: train on whole sequences (every position of a user's window "
                    "predicts its next item in one pass, as SASRec's paper) instead of one sample "
                    "per position; needs a model that returns hidden_seq (sasrec)")
    ks: list[int] = option([5, 10, 20], help="cutoffs of HR/NDCG@k (next_item) and nDCG/ERR@k "
                                             "(listwise)")
    group: str = option("user", help="binary/multitask: the groups of gAUC; listwise: the list "
                                     "id (a features.groups column, e.g. query)")
    max_grade: float | None = option(None, help="listwise ERR: the highest relevance grade "
                                                "(default: the largest training label)")
    monitor: str | None = option(None, help="validation metric for early stopping and model "
                                            "choice (default: auc for binary, mean auc over "
                                            "tasks for multitask, rmse for regression, ndcg@10 "
                                            "for next_item and listwise)")
    mode: Literal["auto", "max", "min"] = option(
        "auto", help="whether the monitored metric is better when larger (auto: from its name)")
    mto: Literal["base", "uw", "pcgrad", "nash", "pub"] = option(
        "base", help="multitask: how the task losses become one update (llmrec.ranking.mto): "
                     "base = Adam on the weighted sum; uw = learned uncertainty weights; pcgrad "
                     "= conflicting task gradients projected off each other; nash = Nash-MTL "
                     "bargaining weights; pub = balanced Adam updates (replaces Adam's step)")
    mto_every: int = option(0, help="mto nash / pub: recompute the task weights every this many "
                                    "steps, reuse them in between (0 = the method's default: "
                                    "nash 1, pub 10)")

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task.kind must be one of {', '.join(TASK_KINDS)}, not {self.kind!r}")
        if self.loss not in LOSSES[self.kind]:
            raise ValueError(f"task.loss {self.loss!r} does not apply to task {self.kind!r}; "
                             f"choose one of {', '.join(LOSSES[self.kind])}")
        if self.weights and self.labels and len(self.weights) != len(self.labels):
            raise ValueError(f"task.weights has {len(self.weights)} values but task.labels "
                             f"{len(self.labels)}: give one weight per label")
        if self.kind in ("regression", "listwise") and len(self.labels) > 1:
            raise ValueError(f"task {self.kind!r} learns one label; got {self.labels}")
        if not self.ks or min(self.ks) < 1:
            raise ValueError("task.ks must be a non-empty list of cutoffs >= 1")
        if self.n_negatives < 1:
            raise ValueError("task.n_negatives must be >= 1")
        if self.mto not in ("base", "uw", "pcgrad", "nash", "pub"):
            raise ValueError(f"task.mto must be one of base, uw, pcgrad, nash, pub, not "
                             f"{self.mto!r}")
        if self.mto != "base" and self.kind != "multitask":
            raise ValueError(f"task.mto {self.mto!r} balances several task losses: it needs "
                             f"task.kind multitask (got {self.kind!r})")
        if self.mto_every < 0:
            raise ValueError("task.mto_every must be >= 0")
