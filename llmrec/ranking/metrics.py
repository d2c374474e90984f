"""CTR metrics computed with tensor ops on the device: AUC, gAUC (user-grouped AUC) and LogLoss.

AUC uses the rank-sum (Mann-Whitney) form with tied scores given their average rank, which is what
``sklearn.metrics.roc_auc_score`` computes. gAUC sorts once by (group, score) and computes every
group's rank sum with segment operations, so there is no Python loop over users.

gAUC convention: groups (users) whose samples are all positive or all negative have no AUC and are
skipped; the remaining groups' AUCs are averaged weighted by their number of samples (the
impression-weighted gAUC of the DIN paper). ``weight="uniform"`` averages them unweighted.
"""

from __future__ import annotations

import math

import torch


def _ranks_1based(sorted_scores: torch.Tensor, new_run: torch.Tensor) -> torch.Tensor:
    """Average 1-based ranks of an ascending score array whose tie runs start where ``new_run``.

    A run occupying sorted positions [s, s + c) gets rank s + (c + 1) / 2 for every member.
    """
    n = sorted_scores.numel()
    run_id = torch.cumsum(new_run.long(), 0) - 1
    n_runs = int(run_id[-1].item()) + 1 if n else 0
    counts = torch.bincount(run_id, minlength=n_runs).to(torch.float64)
    starts = torch.cumsum(counts, 0) - counts  # 0-based start of each run
    return (starts + (counts + 1) / 2)[run_id]


def auc(labels: torch.Tensor, scores: torch.Tensor) -> float:
    """ROC AUC with ties averaged; NaN when only one class is present."""
    labels = labels.reshape(-1).to(torch.float64)
    scores = scores.reshape(-1).to(torch.float64)
    n_pos = labels.sum()
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(scores)
    s = scores[order]
    new_run = torch.ones_like(s, dtype=torch.bool)
    new_run[1:] = s[1:] != s[:-1]
    ranks = _ranks_1based(s, new_run)
    rank_sum = (ranks * labels[order]).sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def group_aucs(labels: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor):
    """Per-group AUC: returns (group ids, auc per group (NaN if one class), samples per group)."""
    labels = labels.reshape(-1).to(torch.float64)
    scores = scores.reshape(-1).to(torch.float64)
    groups = groups.reshape(-1)
    uniq, g = torch.unique(groups, return_inverse=True)
    n_groups = uniq.numel()
    # sort by score, then stably by group: within each group the scores are ascending
    order = torch.argsort(scores, stable=True)
    order = order[torch.argsort(g[order], stable=True)]
    gs, ss, ys = g[order], scores[order], labels[order]
    new_group = torch.ones_like(gs, dtype=torch.bool)
    new_group[1:] = gs[1:] != gs[:-1]
    new_run = new_group.clone()
    new_run[1:] |= ss[1:] != ss[:-1]
    global_ranks = _ranks_1based(ss, new_run)
    size = torch.bincount(gs, minlength=n_groups).to(torch.float64)
    group_start = torch.cumsum(size, 0) - size
    ranks = global_ranks - group_start[gs]  # rank within the group
    n_pos = torch.zeros(n_groups, dtype=torch.float64, device=labels.device).index_add_(0, gs, ys)
    rank_sum = torch.zeros_like(n_pos).index_add_(0, gs, ranks * ys)
    n_neg = size - n_pos
    valid = (n_pos > 0) & (n_neg > 0)
    denom = torch.where(valid, n_pos * n_neg, torch.ones_like(n_pos))
    aucs = torch.where(valid, (rank_sum - n_pos * (n_pos + 1) / 2) / denom,
                       torch.full_like(n_pos, float("nan")))
    return uniq, aucs, size


def gauc(labels: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
         weight: str = "samples") -> float:
    """Group AUC (see the module docstring for the convention); NaN if no group has both classes."""
    _, aucs, size = group_aucs(labels, scores, groups)
    valid = ~torch.isnan(aucs)
    if not bool(valid.any()):
        return float("nan")
    if weight == "samples":
        w = size[valid]
    elif weight == "uniform":
        w = torch.ones_like(size[valid])
    else:
        raise ValueError("weight must be 'samples' or 'uniform'")
    return float((aucs[valid] * w).sum() / w.sum())


def log_loss(labels: torch.Tensor, probs: torch.Tensor, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities clipped to [eps, 1 - eps]."""
    y = labels.reshape(-1).to(torch.float64)
    p = probs.reshape(-1).to(torch.float64).clamp(eps, 1 - eps)
    return float(-(y * torch.log(p) + (1 - y) * torch.log1p(-p)).mean())


def ctr_metrics(labels: torch.Tensor, logits: torch.Tensor,
                groups: torch.Tensor | None = None) -> dict[str, float]:
    """AUC, LogLoss (from logits, exact without clipping) and gAUC when groups are given."""
    y = labels.reshape(-1).to(torch.float64)
    z = logits.reshape(-1).to(torch.float64)
    out = {
        "auc": auc(y, z),
        "logloss": float(torch.nn.functional.binary_cross_entropy_with_logits(z, y)),
    }
    if groups is not None:
        out["gauc"] = gauc(y, z, groups)
    out["n"] = int(y.numel())
    return out


# ------------------------------------------------------------------------------------------------
# regression and list metrics


def regression_metrics(labels: torch.Tensor, preds: torch.Tensor) -> dict[str, float]:
    """MSE, RMSE and MAE (float64)."""
    y = labels.reshape(-1).to(torch.float64)
    p = preds.reshape(-1).to(torch.float64)
    err = p - y
    mse = float((err ** 2).mean()) if y.numel() else float("nan")
    return {"mse": mse, "rmse": math.sqrt(mse) if mse == mse else mse,
            "mae": float(err.abs().mean()) if y.numel() else float("nan"), "n": int(y.numel())}


def pad_groups(scores: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor):
    """Lay samples of contiguous groups out as padded lists: ``(scores [G, M], labels [G, M],
    mask [G, M])``. Samples of one group must be adjacent (sort by group first)."""
    _, inv, counts = torch.unique_consecutive(groups, return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(groups.numel(), device=groups.device) - starts[inv]
    G, M = counts.numel(), int(counts.max()) if counts.numel() else 0
    s = scores.new_zeros(G, M)
    y = labels.to(scores.dtype).new_zeros(G, M)
    m = torch.zeros(G, M, dtype=torch.bool, device=scores.device)
    s[inv, pos] = scores
    y[inv, pos] = labels.to(scores.dtype)
    m[inv, pos] = True
    return s, y, m


def _sorted_by_score(scores, labels, mask):
    s = scores.to(torch.float64).masked_fill(~mask, float("-inf"))
    # ties broken by position (stable), so equal scores give a fixed, reproducible order
    order = torch.argsort(s, dim=1, descending=True, stable=True)
    return labels.to(torch.float64).gather(1, order), mask.gather(1, order)


def ndcg_per_list(scores, labels, mask, k: int, gain: str = "exp") -> torch.Tensor:
    """nDCG@k of every list ``[G]`` (float64), NaN for a list without any gain. The ideal DCG
    ranks the same (masked) items by label; ties in ``scores`` keep their input order."""
    if gain not in ("exp", "linear"):
        raise ValueError(f"gain must be 'exp' or 'linear', got {gain!r}")
    y_sorted, m_sorted = _sorted_by_score(scores, labels, mask)

    def g(y):
        return (2 ** y - 1) if gain == "exp" else y

    k = min(k, labels.shape[1]) if labels.dim() == 2 else k
    disc = 1.0 / torch.log2(torch.arange(k, device=labels.device, dtype=torch.float64) + 2)
    dcg = (g(y_sorted[:, :k]) * m_sorted[:, :k] * disc).sum(1)
    ideal = torch.sort(g(labels.to(torch.float64)) * mask, dim=1, descending=True).values[:, :k]
    idcg = (ideal * disc).sum(1)
    keep = idcg > 0
    return torch.where(keep, dcg / torch.where(keep, idcg, torch.ones_like(idcg)),
                       torch.full_like(dcg, float("nan")))


def ndcg_at_k(scores, labels, mask, k: int, gain: str = "exp") -> float:
    """Mean nDCG@k over lists with at least one relevant item (gain 2^y - 1, or y if
    ``gain="linear"``; discount 1 / log2(rank + 1), rank from 1)."""
    per = ndcg_per_list(scores, labels, mask, k, gain)
    keep = ~torch.isnan(per)
    if not bool(keep.any()):
        return float("nan")
    return float(per[keep].mean())


def err_at_k(scores, labels, mask, k: int, max_grade: float) -> float:
    """Mean Expected Reciprocal Rank @k (Chapelle et al. 2009): R = (2^y - 1) / 2^max_grade,
    ERR = sum_r R_r / r * prod_{i<r} (1 - R_i); lists without a relevant item are skipped."""
    y_sorted, m_sorted = _sorted_by_score(scores, labels, mask)
    k = min(k, labels.shape[1])
    r = (2 ** y_sorted[:, :k] - 1) / (2 ** float(max_grade)) * m_sorted[:, :k]
    stop = torch.cumprod(torch.cat([torch.ones_like(r[:, :1]), 1 - r[:, :-1]], 1), 1)
    ranks = torch.arange(1, k + 1, device=labels.device, dtype=torch.float64)
    err = (r * stop / ranks).sum(1)
    keep = ((labels > 0) & mask).any(1)
    if not bool(keep.any()):
        return float("nan")
    return float(err[keep].mean())


def mrr_at_k(scores, labels, mask, k: int, threshold: float = 1.0) -> float:
    """Mean reciprocal rank @k: 1 / (rank of the first item with ``label >= threshold``) within
    the top k, 0 if none is there; lists without any such item are skipped (NaN if all are)."""
    y_sorted, m_sorted = _sorted_by_score(scores, labels, mask)
    k = min(k, labels.shape[1])
    rel = (y_sorted[:, :k] >= threshold) & m_sorted[:, :k]
    ranks = torch.arange(1, k + 1, device=labels.device, dtype=torch.float64)
    rr = torch.where(rel, 1.0 / ranks, torch.zeros_like(ranks)).max(1).values  # first hit = max
    keep = ((labels >= threshold) & mask).any(1)
    if not bool(keep.any()):
        return float("nan")
    return float(rr[keep].mean())


def rbp(scores, labels, mask, p: float = 0.8, k: int | None = None, max_grade: float = 1.0
        ) -> float:
    """Mean rank-biased precision (Moffat & Zobel 2008): RBP = (1 - p) sum_r p^(r-1) g_r with
    g_r = min(y_r, max_grade) / max_grade (binary labels: g = y), over the top ``k`` (all if
    None). Every list counts, also one without a relevant item (RBP 0): RBP is not normalised
    by an ideal. The residual (unjudged tail) is not reported."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"rbp: persistence p must be in (0, 1), got {p}")
    y_sorted, m_sorted = _sorted_by_score(scores, labels, mask)
    k = labels.shape[1] if k is None else min(k, labels.shape[1])
    g = y_sorted[:, :k].clamp(min=0, max=max_grade) / max_grade * m_sorted[:, :k]
    w = (1 - p) * p ** torch.arange(k, device=labels.device, dtype=torch.float64)
    if labels.shape[0] == 0:
        return float("nan")
    return float((g * w).sum(1).mean())
