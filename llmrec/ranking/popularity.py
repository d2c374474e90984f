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


def next_item_popularity(features, splits: tuple[str, ...] = ("valid", "test"),
                         ks: tuple[int, ...] = (5, 10, 20)) -> dict[str, Any]:
    """Most-popular ranking for the next-item task: every item scored by its number of training
    samples, ranked over the whole catalogue with each sample's input history masked (the
    next-item task's protocol). Ties, frequent for counts, are broken in favour of the lower
    item-table row (the catalogue's order), so the result does not depend on sort stability."""
    from llmrec.ranking.tasks import full_ranking_rank, rank_metric_sums

    train = features.split_index("train")
    n = features.n_items
    counts = torch.bincount(features.tensors["item_row"][train], minlength=n).to(torch.float64)
    # a strictly decreasing tie-breaker smaller than any count difference
    scores = counts - torch.arange(n, dtype=torch.float64, device=counts.device) / (2.0 * n)
    out: dict[str, Any] = {}
    for s in splits:
        if s not in features.split_names:
            continue
        idx = features.split_index(s)
        m: dict[str, float] = {}
        for chunk in idx.split(8192):
            rank = full_ranking_rank(scores[None].expand(chunk.numel(), -1),
                                     features.tensors["item_row"][chunk],
                                     features.tensors["hist_rows"][chunk])
            for name, value in rank_metric_sums(rank, ks).items():
                m[name] = m.get(name, 0.0) + float(value)
        out[s] = {k: v / max(idx.numel(), 1) for k, v in m.items()}
        out[s]["n"] = int(idx.numel())
    return out
