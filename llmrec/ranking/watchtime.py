"""Watch-time labels, losses and metrics (short-video logs: watch time ``w`` and duration ``d``,
both in seconds).

Watch time is a label, never a feature; the duration is kept beside every sample for the labels
and the metrics (it may also be a feature). Every label is a pure function of the arrays
``(w, d)``: the statistics it needs (per-duration means, quantile groups, mixture means) are fitted
on the samples of ``fit`` (a boolean mask: the training split) and applied to every sample.

Labels (:func:`watch_time_label`, ``kind``):

- ``raw``: ``w``.
- ``pcr``: play completion rate ``w / d`` (not capped: replays make it exceed 1).
- ``wtg``: watch-time gain ``(w - mu_d) / sigma_d``, mean and std of the watch times of the
  same duration (durations rounded to the second; 0 where ``sigma_d = 0``; a duration not seen in
  ``fit`` takes the nearest seen one).
- ``d2q``: duration-deconfounded quantile: durations cut into ``groups`` (30) equal-frequency
  groups; the label is the mid-rank percentile of ``w`` among the fitted watch times of its group,
  ``(#{w' < w} + #{w' = w} / 2) / n_group``.
- ``d2co`` (Zhao et al., "Uncovering User Interest from Biased and Noised Watch Time in Video
  Recommendation", RecSys 2023): for every duration value (second) a two-component Gaussian
  mixture of its watch times (:func:`gmm_1d`) gives a lower mean (noisy watching) and an upper mean
  (duration bias); both are smoothed over durations with a frequency-weighted centred moving
  average over the ``2 * window - 1`` neighbouring duration values (weights = their sample counts);
  the label is ``r = (e^{a w} - e^{a lo_d}) / (e^{a hi_d} - e^{a lo_d})`` clipped to [0, 1], linear
  ``(w - lo_d) / (hi_d - lo_d)`` for ``a = 0``. ``a < 0`` is robust to errors in ``hi_d``,
  ``a > 0`` to errors in ``lo_d``. Defaults: ``a = -0.05``, ``window = 3`` (the README's; the
  official code's defaults differ: window 10, a = 0.3). Where ``hi_d - lo_d`` is below 1e-9 the
  label is 1 above ``hi_d``, 0 below ``lo_d``, 0.5 at it.
- ``denoise`` (any label): watch times below ``denoise_below`` seconds are set to 0 first (the
  "denoised" baselines; 0 = off).

CWM (Zhao et al., "Counteracting Duration Bias in Video Recommendation via Counterfactual Watch
Time", KDD 2024): the interest a watch time implies is ``r(w) = exp(-c / (w + 1))`` (``c`` a
user-cost constant, 40 for KuaiRand); the model's score ``s`` is a logit of it. A play shorter than
the video (``w < d``) is an uncensored observation of the counterfactual watch time: Gaussian term
``z^2 / 2``; a completed play (``w >= d``) only says the counterfactual watch time is at least
``w`` (censored): ``-log sigmoid(z)``; ``z = (s - logit r(w)) / sigma`` (:func:`cwm_loss`). The
predicted watch time is ``clip(c / -log sigmoid(s) - 1, 0, d)`` (:func:`cwm_predict`).

Metrics (numpy; ``users`` the per-sample user ids):

- ``long_view``: ``w >= d`` for ``d <= tau``, ``w >= tau`` for ``d > tau``; ``tau = 18`` s is
  KuaiRand's own definition (``long_view`` column).
- :func:`xauc`: the share of sample pairs with different true watch times that the score orders
  like the true watch time (score ties count 1/2); exact up to ``max_pairs`` pairs, else estimated
  on ``max_pairs`` random pairs (seeded). :func:`xgauc`: per-user XAUC, weighted by the user's
  number of samples (users with at least two different watch times).
- MAE / RMSE of a predicted watch time; GAUC (per-user AUC weighted by samples, users with both
  classes) and nDCG@k (binary gains, users with at least one positive) on ``long_view``.
- :func:`duration_bins`: equal-frequency duration bins with mean duration, true and predicted
  watch time, label, long-view rate and GAUC per bin, and the duration-bin distribution of each
  user's top-k by score beside that of the long-view positives (a duration-biased model puts more
  of its top-k in the long bins than the positives are).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from llmrec.config import option
from llmrec.errors import ConfigError, DataError

LABELS = ("raw", "pcr", "wtg", "d2q", "d2co")
KINDS = (*LABELS, "cwm")


@dataclass
class WatchTimeConfig:
    """Which watch-time label (or the CWM loss) a run learns, and the parameters of each."""

    label: Literal["raw", "pcr", "wtg", "d2q", "d2co", "cwm"] = option(
        "d2co", help="raw watch time, pcr (w/d), wtg (per-duration z-score), d2q (percentile in "
                     "its duration quantile group), d2co (GMM-debiased, denoised) or cwm (the "
                     "censored counterfactual-watch-time loss on the raw watch time)")
    tau: float = option(18.0, help="long_view threshold in seconds (KuaiRand's: 18)")
    d2q_groups: int = option(30, help="d2q: equal-frequency duration groups")
    d2co_alpha: float = option(-0.05, help="d2co: the exponent a of the correction function "
                                           "(0 = linear)")
    d2co_window: int = option(3, help="d2co: moving-average half width ws (window 2 ws - 1)")
    denoise_below: float = option(0.0, help="set watch times below this many seconds to 0 "
                                            "before any label (0 = off)")
    cwm_c: float = option(40.0, help="cwm: user-cost constant c in r(w) = exp(-c / (w + 1))")
    cwm_sigma: float = option(2.0, help="cwm: scale sigma of the likelihood")

    def __post_init__(self) -> None:
        if self.label not in KINDS:
            raise ConfigError(f"watchtime.label must be one of {', '.join(KINDS)}, not "
                              f"{self.label!r}")
        if self.d2q_groups < 1 or self.d2co_window < 1:
            raise ConfigError("watchtime.d2q_groups and d2co_window must be >= 1")
        if self.cwm_c <= 0 or self.cwm_sigma <= 0 or self.tau <= 0:
            raise ConfigError("watchtime.cwm_c, cwm_sigma and tau must be > 0")


def _arrays(w, d):
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    if w.shape != d.shape:
        raise DataError(f"watch time and duration differ in length ({w.size} vs {d.size})")
    if w.size and (not np.isfinite(w).all() or not np.isfinite(d).all() or (w < 0).any()
                   or (d <= 0).any()):
        raise DataError("watch times must be finite and >= 0, durations finite and > 0 "
                        "(seconds)")
    return w, d


def _fit_mask(fit, n):
    if fit is None:
        return np.ones(n, dtype=bool)
    fit = np.asarray(fit, dtype=bool).reshape(-1)
    if fit.size != n or not fit.any():
        raise DataError(f"fit mask must have one entry per sample ({n}) and select at least one")
    return fit


def _nearest(keys: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Index into sorted ``keys`` of the nearest key to each ``x``."""
    pos = np.clip(np.searchsorted(keys, x), 1, max(len(keys) - 1, 1))
    if len(keys) == 1:
        return np.zeros(len(x), dtype=np.int64)
    left, right = keys[pos - 1], keys[pos]
    return np.where(np.abs(x - left) <= np.abs(right - x), pos - 1, pos)


def long_view(w, d, tau: float = 18.0) -> np.ndarray:
    """KuaiRand's long view: ``w >= d`` if ``d <= tau``, else ``w >= tau`` (0/1 float)."""
    w, d = _arrays(w, d)
    return np.where(d <= tau, w >= d, w >= tau).astype(np.float64)


# ------------------------------------------------------------------------------------------------
# labels


def gmm_1d(x, iters: int = 200, tol: float = 1e-9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two-component 1-D Gaussian mixture by EM: ``(means, variances, weights)``, means ascending.

    Deterministic start: means at the 25th / 75th percentiles, both variances the sample variance,
    equal weights; variances floored at 1e-6. Fewer than two distinct values: both components are
    that value.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if np.unique(x).size < 2:
        v = float(x[0]) if x.size else 0.0
        return np.array([v, v]), np.array([1e-6, 1e-6]), np.array([0.5, 0.5])
    mu = np.percentile(x, [25, 75]).astype(np.float64)
    if mu[0] == mu[1]:
        mu = np.array([x.min(), x.max()], dtype=np.float64)
    var = np.full(2, max(float(x.var()), 1e-6))
    pi = np.array([0.5, 0.5])
    prev = -np.inf
    for _ in range(iters):
        logp = (-0.5 * (x[:, None] - mu) ** 2 / var - 0.5 * np.log(2 * np.pi * var)
                + np.log(pi))
        top = logp.max(1, keepdims=True)
        ll = top.squeeze(1) + np.log(np.exp(logp - top).sum(1))
        resp = np.exp(logp - ll[:, None])
        nk = resp.sum(0) + 1e-12
        pi = nk / nk.sum()
        mu = (resp * x[:, None]).sum(0) / nk
        var = np.maximum((resp * (x[:, None] - mu) ** 2).sum(0) / nk, 1e-6)
        total = float(ll.sum())
        if total - prev < tol * max(1.0, abs(total)):
            break
        prev = total
    order = np.argsort(mu)
    return mu[order], var[order], pi[order]


def d2co_bounds(w, d, window: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per duration value (seconds, rounded): ``(durations, counts, lo, hi)``, the smoothed lower
    and upper mixture means of the watch times of that duration."""
    w, d = _arrays(w, d)
    keys = np.rint(d).astype(np.int64)
    durs, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    lo = np.empty(len(durs))
    hi = np.empty(len(durs))
    for i in range(len(durs)):
        means, _, _ = gmm_1d(w[inv == i])
        lo[i], hi[i] = means
    # frequency-weighted centred moving average over the duration values d - ws + 1 .. d + ws - 1
    near = np.abs(durs[:, None] - durs[None, :]) <= window - 1
    weight = near * counts[None, :]
    lo_s = (weight * lo[None, :]).sum(1) / weight.sum(1)
    hi_s = (weight * hi[None, :]).sum(1) / weight.sum(1)
    return durs, counts, lo_s, hi_s


def d2co_label(w, lo, hi, alpha: float = -0.05) -> np.ndarray:
    """The correction function ``(e^{a w} - e^{a lo}) / (e^{a hi} - e^{a lo})`` clipped to [0, 1]
    (linear for ``a = 0``); degenerate ``hi - lo < 1e-9``: 1 above, 0 below, 0.5 at."""
    w, lo, hi = (np.asarray(v, dtype=np.float64) for v in (w, lo, hi))
    gap = hi - lo
    ok = gap > 1e-9
    if alpha == 0:
        r = (w - lo) / np.where(ok, gap, 1.0)
    else:
        ea = np.exp(alpha * w)
        el, eh = np.exp(alpha * lo), np.exp(alpha * hi)
        r = (ea - el) / np.where(ok, eh - el, 1.0)
    r = np.where(ok, r, np.where(w > hi, 1.0, np.where(w < lo, 0.0, 0.5)))
    return np.clip(r, 0.0, 1.0)


def watch_time_label(kind: str, w, d, fit=None, *, d2q_groups: int = 30,
                     d2co_alpha: float = -0.05, d2co_window: int = 3,
                     denoise_below: float = 0.0) -> np.ndarray:
    """The label ``kind`` (``raw``, ``pcr``, ``wtg``, ``d2q``, ``d2co``) of every sample, its
    statistics fitted on the samples of ``fit`` (default: all)."""
    w, d = _arrays(w, d)
    fit = _fit_mask(fit, w.size)
    if denoise_below > 0:
        w = np.where(w < denoise_below, 0.0, w)
    if kind == "raw":
        return w.copy()
    if kind == "pcr":
        return w / d
    if kind == "wtg":
        keys = np.rint(d).astype(np.int64)
        fk, fw = keys[fit], w[fit]
        durs, inv = np.unique(fk, return_inverse=True)
        n = np.bincount(inv).astype(np.float64)
        mean = np.bincount(inv, fw) / n
        std = np.sqrt(np.maximum(np.bincount(inv, fw ** 2) / n - mean ** 2, 0.0))
        j = _nearest(durs.astype(np.float64), keys.astype(np.float64))
        s = std[j]
        return np.where(s > 1e-12, (w - mean[j]) / np.where(s > 1e-12, s, 1.0), 0.0)
    if kind == "d2q":
        edges = np.unique(np.quantile(d[fit], np.linspace(0, 1, d2q_groups + 1)[1:-1]))
        group = np.searchsorted(edges, d, side="right")
        out = np.empty_like(w)
        fg = group[fit]
        for g in np.unique(group):
            ref = np.sort(w[fit][fg == g])
            sel = group == g
            if ref.size == 0:  # a group without fitted samples (unseen durations): nearest one
                ref = np.sort(w[fit][fg == fg[np.argmin(np.abs(fg - g))]])
            less = np.searchsorted(ref, w[sel], side="left")
            equal = np.searchsorted(ref, w[sel], side="right") - less
            out[sel] = (less + 0.5 * equal) / ref.size
        return out
    if kind == "d2co":
        durs, _, lo, hi = d2co_bounds(w[fit], d[fit], d2co_window)
        j = _nearest(durs.astype(np.float64), np.rint(d))
        return d2co_label(w, lo[j], hi[j], d2co_alpha)
    raise ConfigError(f"unknown watch-time label {kind!r}; choose one of {', '.join(LABELS)} "
                      f"(cwm is a loss on the raw watch time: cwm_loss)")


def add_watch_time_labels(samples, cfg: WatchTimeConfig | None = None, watch: str = "watch_s",
                          duration: str = "duration_s", split: str = "split"):
    """``samples`` (a DataFrame) with a column per label of :data:`LABELS` and ``long_view``,
    the statistics fitted on its ``train`` rows. Returns a new frame."""
    cfg = cfg or WatchTimeConfig()
    for c in (watch, duration, split):
        if c not in samples.columns:
            raise DataError(f"samples have no {c!r} column (have: {', '.join(samples.columns)})")
    w, d = samples[watch].to_numpy(), samples[duration].to_numpy()
    fit = (samples[split] == "train").to_numpy()
    out = samples.copy()
    for kind in LABELS:
        out[kind] = watch_time_label(kind, w, d, fit, d2q_groups=cfg.d2q_groups,
                                     d2co_alpha=cfg.d2co_alpha, d2co_window=cfg.d2co_window,
                                     denoise_below=cfg.denoise_below).astype(np.float32)
    out["long_view"] = long_view(w, d, cfg.tau).astype(np.float32)
    return out


# ------------------------------------------------------------------------------------------------
# CWM (torch)


def cwm_target(w, c: float = 40.0):
    """``logit r(w)`` with ``r(w) = exp(-c / (w + 1))`` (torch)."""
    import torch

    x = -c / (w.to(torch.float64) + 1.0)  # log r, < 0
    return (x - torch.log(-torch.expm1(x))).to(w.dtype)


def cwm_loss(score, w, d, c: float = 40.0, sigma: float = 2.0, reduce: bool = True):
    """CWM's negative log-likelihood: ``z^2 / 2`` where ``w < d`` (uncensored), ``-log sigmoid(z)``
    where ``w >= d`` (censored), ``z = (score - logit r(w)) / sigma``; the mean over samples."""
    import torch
    import torch.nn.functional as F

    z = (score.float() - cwm_target(w.float(), c)) / sigma
    per = torch.where(w >= d, F.softplus(-z), 0.5 * z * z)
    return per.mean() if reduce else per


def cwm_predict(score, d, c: float = 40.0):
    """Predicted watch time ``clip(c / -log sigmoid(s) - 1, 0, d)`` (torch)."""
    import torch
    import torch.nn.functional as F

    neg_log_r = F.softplus(-score.float()).clamp_min(1e-12)
    return torch.minimum((c / neg_log_r - 1.0).clamp_min(0.0), d.float())


# ------------------------------------------------------------------------------------------------
# metrics (numpy)


def _concordance(t: np.ndarray, s: np.ndarray, chunk: int = 1024) -> tuple[float, int]:
    """Over all pairs with different true values: (concordant + ties / 2, number of pairs)."""
    good, pairs = 0.0, 0
    for a in range(0, t.size, chunk):
        tt, ss = t[a:a + chunk, None], s[a:a + chunk, None]
        up = tt > t[None, :]
        good += float((up & (ss > s[None, :])).sum() + 0.5 * (up & (ss == s[None, :])).sum())
        pairs += int(up.sum())
    return good, pairs


def xauc(w_true, score, max_pairs: int = 2_000_000, seed: int = 0) -> float:
    """Share of pairs with different true watch times ordered by ``score`` like the true ones
    (ties 1/2); exact when there are at most ``max_pairs`` pairs, else on ``max_pairs`` random
    pairs. NaN without any such pair."""
    t = np.asarray(w_true, dtype=np.float64).reshape(-1)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    n = t.size
    if n * (n - 1) // 2 <= max_pairs:
        good, pairs = _concordance(t, s)
        return good / pairs if pairs else float("nan")
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, n, max_pairs), rng.integers(0, n, max_pairs)
    keep = t[i] != t[j]
    i, j = i[keep], j[keep]
    hi = np.where(t[i] > t[j], i, j)
    lo = np.where(t[i] > t[j], j, i)
    if not hi.size:
        return float("nan")
    return float(((s[hi] > s[lo]) + 0.5 * (s[hi] == s[lo])).mean())


def _by_user(users):
    users = np.asarray(users).reshape(-1)
    order = np.argsort(users, kind="stable")
    _, starts, counts = np.unique(users[order], return_index=True, return_counts=True)
    return order, starts, counts


def xgauc(users, w_true, score) -> float:
    """Per-user XAUC weighted by the user's number of samples (users with a pair of different
    watch times)."""
    t = np.asarray(w_true, dtype=np.float64).reshape(-1)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    order, starts, counts = _by_user(users)
    num = den = 0.0
    for a, n in zip(starts, counts):
        sel = order[a:a + n]
        good, pairs = _concordance(t[sel], s[sel])
        if pairs:
            num += n * good / pairs
            den += n
    return num / den if den else float("nan")


def mae(w_true, w_pred) -> float:
    e = np.asarray(w_pred, np.float64).reshape(-1) - np.asarray(w_true, np.float64).reshape(-1)
    return float(np.abs(e).mean()) if e.size else float("nan")


def rmse(w_true, w_pred) -> float:
    e = np.asarray(w_pred, np.float64).reshape(-1) - np.asarray(w_true, np.float64).reshape(-1)
    return float(np.sqrt((e ** 2).mean())) if e.size else float("nan")


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = y > 0.5, y <= 0.5
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if not n_pos or not n_neg:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size)
    sorted_s = s[order]
    # mid-ranks for ties
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    mid = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(mid, counts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def gauc(users, labels, score) -> float:
    """Per-user AUC weighted by the user's samples, over users with both classes."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    order, starts, counts = _by_user(users)
    num = den = 0.0
    for a, n in zip(starts, counts):
        sel = order[a:a + n]
        v = _auc(y[sel], s[sel])
        if v == v:
            num += n * v
            den += n
    return num / den if den else float("nan")


def ndcg(users, labels, score, k: int) -> float:
    """Mean over users with a positive of nDCG@k with binary gains (score ties: input order)."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(score, dtype=np.float64).reshape(-1)
    order, starts, counts = _by_user(users)
    disc = 1.0 / np.log2(np.arange(k) + 2.0)
    vals = []
    for a, n in zip(starts, counts):
        sel = order[a:a + n]
        yy = y[sel]
        if yy.sum() <= 0:
            continue
        top = yy[np.argsort(-s[sel], kind="stable")][:k]
        ideal = np.sort(yy)[::-1][:k]
        vals.append(float((top * disc[:top.size]).sum() / (ideal * disc[:ideal.size]).sum()))
    return float(np.mean(vals)) if vals else float("nan")


def duration_bins(d, w_true, score, users=None, w_pred=None, label=None, long=None,
                  n_bins: int = 10, top_k: int = 5) -> dict[str, Any]:
    """Per equal-frequency duration bin: ``n``, duration range and mean, mean true / predicted
    watch time, mean label, long-view rate and GAUC (needs ``users`` and ``long``); and, with
    ``users`` and ``long``, the share of each bin among the users' top-``top_k`` by score
    (``top_share``) and among the long-view positives (``positive_share``)."""
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    w_true = np.asarray(w_true, dtype=np.float64).reshape(-1)
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    edges = np.unique(np.quantile(d, np.linspace(0, 1, n_bins + 1)[1:-1]))
    b = np.searchsorted(edges, d, side="right")
    rows = []
    for i in range(len(edges) + 1):
        sel = b == i
        if not sel.any():
            continue
        row = {"bin": i, "n": int(sel.sum()), "d_min": float(d[sel].min()),
               "d_max": float(d[sel].max()), "d_mean": float(d[sel].mean()),
               "w_mean": float(w_true[sel].mean())}
        if w_pred is not None:
            row["w_pred_mean"] = float(np.asarray(w_pred, np.float64).reshape(-1)[sel].mean())
        if label is not None:
            row["label_mean"] = float(np.asarray(label, np.float64).reshape(-1)[sel].mean())
        if long is not None:
            lv = np.asarray(long, np.float64).reshape(-1)
            row["long_view_rate"] = float(lv[sel].mean())
            if users is not None:
                row["gauc"] = gauc(np.asarray(users).reshape(-1)[sel], lv[sel], score[sel])
        rows.append(row)
    out: dict[str, Any] = {"edges": edges.tolist(), "bins": rows}
    if users is not None and long is not None:
        lv = np.asarray(long, np.float64).reshape(-1)
        top = top_k_per_user(users, score, top_k)
        nb = len(edges) + 1
        out["top_share"] = (np.bincount(b[top], minlength=nb) / max(len(top), 1)).tolist()
        pos = b[lv > 0.5]
        out["positive_share"] = (np.bincount(pos, minlength=nb) / max(pos.size, 1)).tolist()
    return out


def top_k_per_user(users, score, k: int) -> np.ndarray:
    """Indices of each user's ``k`` highest-scored samples (ties in their original order)."""
    score = np.asarray(score, np.float64).reshape(-1)
    order, starts, counts = _by_user(users)
    top: list[int] = []
    for a, n in zip(starts, counts):
        sel = order[a:a + n]
        top.extend(sel[np.argsort(-score[sel], kind="stable")][:k].tolist())
    return np.asarray(top, dtype=np.int64)


def watch_time_metrics(users, w, d, score, w_pred=None, tau: float = 18.0,
                       ks=(1, 3, 5)) -> dict[str, float]:
    """The evaluation of one run: GAUC and nDCG@k on long views by ``score``, XAUC / XGAUC of
    ``score`` against the true watch time, MAE / RMSE of ``w_pred`` when given."""
    lv = long_view(w, d, tau)
    out = {"gauc": gauc(users, lv, score), "xauc": xauc(w, score), "xgauc": xgauc(users, w, score),
           **{f"ndcg@{k}": ndcg(users, lv, score, k) for k in ks}}
    if w_pred is not None:
        out["mae"] = mae(w, w_pred)
        out["rmse"] = rmse(w, w_pred)
    out["n"] = int(np.asarray(w).size)
    return out


__all__ = ["LABELS", "KINDS", "WatchTimeConfig", "long_view", "gmm_1d", "d2co_bounds",
           "d2co_label", "watch_time_label", "add_watch_time_labels", "cwm_target", "cwm_loss",
           "cwm_predict", "xauc", "xgauc", "mae", "rmse", "gauc", "ndcg", "duration_bins",
           "watch_time_metrics", "WatchTimeTask"]


# ------------------------------------------------------------------------------------------------
# the task (its runnable recipe: llmrec.ranking.watchtime_run)


def _task_base():
    from llmrec.ranking.tasks import Task

    return Task


class WatchTimeTask(_task_base()):
    """A ranking task on a watch-time log: the model's ``logit`` is trained on the label of
    ``wt.label`` (MSE on ``label.<kind>``, the column :func:`add_watch_time_labels` wrote) or
    with the CWM likelihood on the raw watch time; judged per user on long views (GAUC,
    nDCG@1/3/5) and on the watch time (XAUC, XGAUC; MAE / RMSE of the watch time the score
    implies where it implies one: raw = the score, pcr = score x duration, cwm =
    :func:`cwm_predict`). Watches GAUC. Not listed in ``TASKS``: build it with the run's
    :class:`WatchTimeConfig` and hand it to the trainer (``Trainer(..., task=WatchTimeTask(...))``).
    """

    kind = "watchtime"
    default_monitor = "gauc"

    def __init__(self, cfg, spec, wt: WatchTimeConfig | None = None, watch: str = "watch_s",
                 duration: str = "duration_s") -> None:
        super().__init__(cfg, spec)
        self.wt = wt or WatchTimeConfig()
        self.watch, self.duration = watch, duration
        need = [watch, duration] + ([] if self.wt.label == "cwm" else [self.wt.label])
        missing = [n for n in need if n not in spec.labels]
        if missing:
            raise ConfigError(f"watch-time task: label(s) {missing} are not labels of the "
                              f"features (have: {', '.join(spec.labels) or 'none'}); load the "
                              f"log with llmrec.data.kuairand (or add_watch_time_labels)")

    def loss(self, out, batch):
        import torch.nn.functional as F

        s, labels = out["logit"].float(), batch["labels"]
        if self.wt.label == "cwm":
            loss = cwm_loss(s, labels[self.watch], labels[self.duration], self.wt.cwm_c,
                            self.wt.cwm_sigma)
        else:
            loss = F.mse_loss(s, labels[self.wt.label])
        aux = out.get("aux_loss")
        return loss if aux is None else loss + aux.float()

    def predicted_watch(self, s, d):
        if self.wt.label == "cwm":
            return cwm_predict(s, d, self.wt.cwm_c)
        if self.wt.label == "raw":
            return s
        if self.wt.label == "pcr":
            return s * d
        return None

    def evaluate(self, forward, fs, idx, batch_size):
        s = self._logits(forward, idx, batch_size)
        w, d = fs.labels(self.watch)[idx].float(), fs.labels(self.duration)[idx].float()
        pred = self.predicted_watch(s, d)
        users = fs.groups(idx, self.cfg.group).cpu().numpy()
        return watch_time_metrics(users, w.cpu().numpy(), d.cpu().numpy(), s.cpu().numpy(),
                                  None if pred is None else pred.cpu().numpy(), self.wt.tau)

    def predict_columns(self, out):
        return {"score": out["logit"].float()}

    def describe(self):
        return {**super().describe(), "label": self.wt.label}
