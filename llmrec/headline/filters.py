"""Click-noise filters over a user's history: pure functions, no model, no I/O.

The dual-stage filter (our reading of PHG-DIF; thresholds are ours, not the paper's):

1. **dwell**: drop clicks whose dwell time is below ``min_dwell_s`` (default 10 s): the reader
   left at once. A click without a dwell time (NaN) is kept: this stage cannot judge it.
2. **burst**: among the clicks stage 1 kept, in time order, a *burst* is a maximal run of
   ``>= burst_k`` (default 4) clicks whose consecutive gaps are all ``<= burst_gap_s`` (default
   20 s); only the run's click with the longest dwell is kept (the first of equals). Clicks
   without a time never join a run.
3. **news** (optional): drop history items whose embedding has cosine ``< min_sim`` (default 0.2,
   ours) to the centroid of the user's remaining items (the mean of their unit vectors).

:func:`denoise` applies the stages to a long table (one row per click: ``user_id``, ``position``
and the time / dwell columns) per user and says which stage removed each row.

The MovieLens variant (:class:`RatingDenoiseConfig`, :func:`denoise_ratings`) treats a rating as
a click: stage 1 drops ratings below ``min_rating``, stage 2 drops rating bursts (``>= burst_k``
ratings with gaps ``<= burst_gap_s`` seconds, a sign-up page rated in one go), keeping the
highest rating of the run. The knowledge layer applies it to a user's LM history before the
user prompt (``llmrec knowledge generate --denoise.enabled=true``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np

from llmrec.config import option

STAGES = ("none", "dwell", "dwell+burst", "dwell+burst+news")

__all__ = ["STAGES", "FilterConfig", "RatingDenoiseConfig", "dwell_keep", "burst_keep",
           "centroid_keep", "denoise", "stage_counts", "denoise_ratings"]


@dataclass
class FilterConfig:
    stages: Literal["none", "dwell", "dwell+burst", "dwell+burst+news"] = option(
        "dwell+burst", help="which filter stages run, in order: none, dwell, dwell+burst, "
                            "dwell+burst+news (the news-side filter needs item embeddings)")
    min_dwell_s: float = option(10.0, help="stage 1: drop clicks with a dwell time below this "
                                           "many seconds (ours, not the paper's)")
    burst_k: int = option(4, help="stage 2: a burst is a run of at least this many clicks ... "
                                  "(ours)")
    burst_gap_s: float = option(20.0, help="... whose consecutive gaps are all <= this many "
                                           "seconds; the run keeps its longest-dwell click (ours)")
    min_sim: float = option(0.2, help="news-side stage: drop items whose cosine to the user's "
                                      "embedding centroid is below this (ours)")

    def __post_init__(self) -> None:
        if self.stages not in STAGES:
            raise ValueError(f"stages must be one of {', '.join(STAGES)}, got {self.stages!r}")
        if self.burst_k < 2:
            raise ValueError(f"burst_k must be >= 2 (got {self.burst_k})")
        if self.burst_gap_s < 0 or self.min_dwell_s < 0:
            raise ValueError("burst_gap_s and min_dwell_s must be >= 0")
        if not -1.0 <= self.min_sim <= 1.0:
            raise ValueError(f"min_sim is a cosine, in [-1, 1] (got {self.min_sim})")


def dwell_keep(dwell: Sequence[float], min_dwell_s: float = 10.0) -> np.ndarray:
    """Stage 1: ``True`` where the dwell is ``>= min_dwell_s`` or unknown (NaN)."""
    d = np.asarray(dwell, dtype=float)
    return np.isnan(d) | (d >= min_dwell_s)


def burst_keep(times: Sequence[float], score: Sequence[float] | None = None, burst_k: int = 4,
               burst_gap_s: float = 20.0) -> np.ndarray:
    """Stage 2 over one time-ordered sequence: ``False`` for the clicks a burst drops.

    A burst is a maximal run of ``>= burst_k`` clicks with every consecutive gap ``<=
    burst_gap_s``; its click with the highest ``score`` (dwell; NaN counts as lowest) is kept,
    the first of equals; with no score, the run's first click."""
    t = np.asarray(times, dtype=float)
    n = len(t)
    keep = np.ones(n, dtype=bool)
    if n < burst_k:
        return keep
    if n > 1 and np.any(np.diff(t) < 0):
        raise ValueError("burst_keep needs the clicks in time order")
    s = np.zeros(n) if score is None else np.asarray(score, dtype=float)
    s = np.where(np.isnan(s), -np.inf, s)
    close = np.diff(t) <= burst_gap_s  # NaN gaps compare False: no run across an unknown time
    start = 0
    for i in range(1, n + 1):
        if i < n and close[i - 1]:
            continue
        if i - start >= burst_k:
            best = start + int(np.argmax(s[start:i]))  # argmax: first of equals
            keep[start:i] = False
            keep[best] = True
        start = i
    return keep


def centroid_keep(emb: np.ndarray, min_sim: float = 0.2) -> np.ndarray:
    """News-side stage: ``True`` where the item's cosine to the centroid of the unit vectors of
    ``emb`` (``[n, d]``) is ``>= min_sim``."""
    e = np.asarray(emb, dtype=float)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be [n, d], got shape {e.shape}")
    if len(e) <= 1:
        return np.ones(len(e), dtype=bool)
    u = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    c = u.mean(axis=0)
    c = c / max(float(np.linalg.norm(c)), 1e-12)
    return u @ c >= min_sim


def denoise(history, cfg: FilterConfig | None = None, *, embed: Any = None,
            time_col: str = "time_s", dwell_col: str = "dwell_s", item_col: str = "news_id"):
    """``history`` (one row per click, ``user_id`` + ``position`` + the time / dwell columns)
    with two columns added: ``kept`` (bool) and ``removed_by`` (``""``, ``dwell``, ``burst`` or
    ``news``). Rows keep their order.

    ``embed``: for the news stage, a mapping or callable item id -> vector; an item it does not
    know is kept (and counted in ``stage_counts``' ``no_embedding``)."""
    cfg = cfg or FilterConfig()
    out = history.copy()
    out["kept"] = True
    out["removed_by"] = ""
    if cfg.stages == "none" or len(out) == 0:
        return out
    use_burst = "burst" in cfg.stages
    use_news = "news" in cfg.stages
    if use_news and embed is None:
        raise ValueError("the news-side stage needs item embeddings (embed=...)")
    kept = np.ones(len(out), dtype=bool)
    removed = np.array([""] * len(out), dtype=object)
    dwell = out[dwell_col].to_numpy(dtype=float) if dwell_col in out else np.full(len(out), np.nan)
    times = out[time_col].to_numpy(dtype=float) if time_col in out else np.full(len(out), np.nan)
    no_emb = np.zeros(len(out), dtype=bool)
    order = np.lexsort((out["position"].to_numpy(), out["user_id"].astype(str).to_numpy()))
    users = out["user_id"].astype(str).to_numpy()[order]
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        idx = order[a:b]
        k1 = dwell_keep(dwell[idx], cfg.min_dwell_s)
        removed[idx[~k1]] = "dwell"
        live = idx[k1]
        if use_burst and len(live):
            t = times[live]
            if not np.isnan(t).all():
                k2 = burst_keep(t, dwell[live], cfg.burst_k, cfg.burst_gap_s)
                removed[live[~k2]] = "burst"
                live = live[k2]
        if use_news and len(live):
            vecs, have = [], []
            for j in live:
                item = out[item_col].iloc[j]
                v = embed(item) if callable(embed) else embed.get(item)
                if v is None:
                    no_emb[j] = True
                else:
                    vecs.append(np.asarray(v, dtype=float))
                    have.append(j)
            if have:
                k3 = centroid_keep(np.stack(vecs), cfg.min_sim)
                removed[np.asarray(have)[~k3]] = "news"
    kept = removed == ""
    out["kept"] = kept
    out["removed_by"] = removed
    out.attrs["no_embedding"] = int(no_emb.sum())
    return out


def stage_counts(result) -> dict[str, Any]:
    """Rows in, rows each stage removed, rows kept, and the shares of the input."""
    n = len(result)
    by = result["removed_by"].value_counts().to_dict()
    counts = {"clicks": n, "removed_dwell": int(by.get("dwell", 0)),
              "removed_burst": int(by.get("burst", 0)), "removed_news": int(by.get("news", 0)),
              "kept": int(result["kept"].sum()),
              "no_embedding": int(result.attrs.get("no_embedding", 0))}
    for k in ("removed_dwell", "removed_burst", "removed_news", "kept"):
        counts["share_" + k] = round(counts[k] / n, 6) if n else None
    return counts


# -- MovieLens: ratings as clicks ----------------------------------------------------------------

@dataclass
class RatingDenoiseConfig:
    enabled: bool = option(False, help="filter each user's LM history before the user prompt "
                                       "(off: the prompt shows the history as it is)")
    min_rating: float | None = option(
        3.0, help="drop ratings below this many stars (null = keep every rating); ours")
    burst_k: int | None = option(
        4, help="drop rating bursts: runs of at least this many ratings ... (null = off); ours")
    burst_gap_s: float = option(
        5.0, help="... whose consecutive timestamps are at most this many seconds apart; the "
                  "run keeps its highest rating (the first of equals); ours")

    def __post_init__(self) -> None:
        if self.burst_k is not None and self.burst_k < 2:
            raise ValueError(f"denoise.burst_k must be >= 2 or null (got {self.burst_k})")
        if self.burst_gap_s < 0:
            raise ValueError("denoise.burst_gap_s must be >= 0")


def denoise_ratings(ratings: Sequence[float], timestamps: Sequence[float],
                    cfg: RatingDenoiseConfig) -> tuple[np.ndarray, np.ndarray]:
    """Over one user's time-ordered ratings: ``(keep, removed_by)`` with ``removed_by`` in
    ``"", "rating", "burst"``. Stage 1 drops low ratings, stage 2 bursts among the rest."""
    r = np.asarray(ratings, dtype=float)
    t = np.asarray(timestamps, dtype=float)
    removed = np.array([""] * len(r), dtype=object)
    if not cfg.enabled:
        return np.ones(len(r), dtype=bool), removed
    live = np.arange(len(r))
    if cfg.min_rating is not None:
        low = r < cfg.min_rating
        removed[low] = "rating"
        live = live[~low]
    if cfg.burst_k is not None and len(live):
        k = burst_keep(t[live], r[live], cfg.burst_k, cfg.burst_gap_s)
        removed[live[~k]] = "burst"
    return removed == "", removed
