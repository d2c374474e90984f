"""The popularity baseline: score a sample by its item's smoothed positive rate in training.

score(i) = (positives_i + alpha * prior) / (samples_i + alpha), with ``prior`` the overall
training positive rate, so items never seen in training score the prior. Every backbone must beat
this to be worth its parameters.
"""

from __future__ import annotations

from typing import Any

import torch

from llmrec.ranking.metrics import ctr_metrics


def item_positive_rate(features, alpha: float = 10.0) -> torch.Tensor:
    """Smoothed training positive rate per item-table row (cold items get the prior)."""
    train = features.split_index("train")
    rows = features.tensors["item_row"][train]
    y = features.tensors["label"][train].to(torch.float64)
    n_rows = features.tensors["item_table"].shape[0]
    pos = torch.zeros(n_rows, dtype=torch.float64, device=y.device).index_add_(0, rows, y)
    cnt = torch.zeros(n_rows, dtype=torch.float64, device=y.device).index_add_(0, rows, torch.ones_like(y))
    prior = y.mean()
    return (pos + alpha * prior) / (cnt + alpha)


def evaluate_popularity(features, alpha: float = 10.0,
                        splits: tuple[str, ...] = ("valid", "test")) -> dict[str, Any]:
    """AUC / LogLoss / gAUC of the popularity scores on each split."""
    rate = item_positive_rate(features, alpha)
    out: dict[str, Any] = {"alpha": alpha}
    for s in splits:
        if s not in features.split_names:
            continue
        idx = features.split_index(s)
        p = rate[features.tensors["item_row"][idx]].clamp(1e-6, 1 - 1e-6)
        out[s] = ctr_metrics(features.tensors["label"][idx], torch.logit(p), features.groups(idx))
    return out
