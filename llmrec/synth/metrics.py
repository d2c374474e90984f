"""Evaluation metrics of SSRA: graded nDCG@k, AvgAP, level balance, duplicates, agreement.

Conventions (also stated in ``docs/synth.md``):

- **nDCG@k** uses linear gains, ``gain = g`` for grade ``g`` in 0..3 (the ``trec_eval`` convention),
  and the discount ``1 / log2(rank + 1)``. Each query's candidates (its judged documents) are
  ranked by score; tied scores keep their input order. The ideal DCG ranks the same candidates by
  grade. A query whose candidates are all grade 0 has no nDCG and is left out of the mean (the
  number left out is reported). The computation is the ranking engine's
  (``llmrec.ranking.metrics.ndcg_per_list`` with ``gain="linear"``), whose convention is the
  same; only the layout (one padded list per query) is adapted here. Scores are expected finite
  (a NaN score sorts first in torch, last in numpy).
- **AP** at a threshold ``t`` is the average precision of the binary labels ``grade >= t`` over all
  pairs pooled, computed like ``sklearn.metrics.average_precision_score``: the sum over distinct
  score thresholds of (recall step) x precision, tied scores forming one step.
  **AvgAP** is the mean of the APs at ``t = 1, 2, 3``; a threshold without positive pairs is left
  out of the mean.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from llmrec.synth.levels import LEVELS


def dcg(gains_in_rank_order: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of the first ``k`` gains: sum gain_i / log2(i + 1), i from 1."""
    return float(sum(g / math.log2(i + 2) for i, g in enumerate(list(gains_in_rank_order)[:k])))


def _padded(lists: list[np.ndarray], dtype) -> np.ndarray:
    out = np.zeros((len(lists), max((len(x) for x in lists), default=0)), dtype=dtype)
    for i, x in enumerate(lists):
        out[i, :len(x)] = x
    return out


def _shared_ndcg(score_lists: list[np.ndarray], grade_lists: list[np.ndarray], k: int) -> list:
    """Per-query nDCG@k (None where no gain) from the ranking engine's metric with linear gain.

    Thin adapter: SSRA's convention (linear gain, ideal over the same candidates, ties in input
    order) is exactly ``llmrec.ranking.metrics.ndcg_per_list(..., gain="linear")``; this only
    lays the queries out as padded ``[G, M]`` lists with a mask and maps NaN to None."""
    import torch

    from llmrec.ranking.metrics import ndcg_per_list

    if not score_lists:
        return []
    s = torch.from_numpy(_padded(score_lists, np.float64))
    y = torch.from_numpy(_padded(grade_lists, np.float64))
    m = torch.from_numpy(_padded([np.ones(len(x), dtype=bool) for x in score_lists], bool))
    per = ndcg_per_list(s, y, m, k, gain="linear").tolist()
    return [None if math.isnan(v) else float(v) for v in per]


def ndcg_at_k(scores: Sequence[float], grades: Sequence[int], k: int = 10) -> float | None:
    """nDCG@k of one query's candidates ranked by ``scores`` (higher first); None if no gain."""
    scores = np.asarray(scores, dtype=np.float64)
    grades = np.asarray(grades, dtype=np.float64)
    if scores.shape != grades.shape:
        raise ValueError(f"scores {scores.shape} and grades {grades.shape} differ in shape")
    return _shared_ndcg([scores.reshape(-1)], [grades.reshape(-1)], k)[0]


def mean_ndcg(query_ids: Sequence[str], scores: Sequence[float], grades: Sequence[int],
              k: int = 10) -> dict[str, float | int]:
    """Mean nDCG@k over queries, with the counts of queries used and skipped (no gain)."""
    by_query: dict[str, list[int]] = {}
    for i, q in enumerate(query_ids):
        by_query.setdefault(str(q), []).append(i)
    scores = np.asarray(scores, dtype=np.float64)
    grades = np.asarray(grades, dtype=np.float64)
    per = _shared_ndcg([scores[idx] for idx in by_query.values()],
                       [grades[idx] for idx in by_query.values()], k)
    values = [v for v in per if v is not None]
    return {"ndcg": float(np.mean(values)) if values else float("nan"),
            "n_queries": len(values), "n_skipped": len(per) - len(values)}


def average_precision(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Average precision of binary ``labels`` ranked by ``scores`` (sklearn's definition).

    NaN when there is no positive label.
    """
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    y, s = y[order], s[order]
    # the last index of each run of tied scores closes one threshold
    last_of_run = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[last_of_run]
    fp = (last_of_run + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(steps * precision))


def avg_ap(grades: Sequence[int], scores: Sequence[float],
           thresholds: Iterable[int] = (1, 2, 3)) -> dict[str, float]:
    """AP of ``grade >= t`` for each threshold, and their mean as ``avg_ap``."""
    grades = np.asarray(grades)
    out: dict[str, float] = {}
    values = []
    for t in thresholds:
        ap = average_precision((grades >= t).astype(np.int64), scores)
        out[f"ap_ge{t}"] = ap
        if not math.isnan(ap):
            values.append(ap)
    out["avg_ap"] = float(np.mean(values)) if values else float("nan")
    return out


def level_balance(levels: Iterable[int]) -> dict[str, float]:
    """Fraction of items at each level (keys ``"0"``..``"3"``) plus ``n``."""
    counts = Counter(int(x) for x in levels)
    n = sum(counts.values())
    out: dict[str, float] = {str(lv): (counts.get(lv, 0) / n if n else 0.0) for lv in LEVELS}
    out["n"] = n
    return out


_NON_WORD = re.compile(r"[^\w\s]+")
_SPACES = re.compile(r"\s+")


def normalize_query(text: str) -> str:
    """Lower-cased, punctuation removed, whitespace collapsed: what counts as 'the same query'."""
    return _SPACES.sub(" ", _NON_WORD.sub(" ", str(text).lower())).strip()


def duplicate_rate(queries: Iterable[str]) -> float:
    """Share of queries that repeat an earlier one after :func:`normalize_query` (0 if none)."""
    norm = [normalize_query(q) for q in queries]
    if not norm:
        return 0.0
    return 1.0 - len(set(norm)) / len(norm)


def agreement(predicted: Sequence[int], gold: Sequence[int]) -> dict[str, object]:
    """How a classifier's levels agree with human levels.

    ``agreement_<s>``: of the pairs humans put at level s, the share predicted s (per-level
    recall); ``precision_<s>``: of the pairs predicted s, the share humans put at s;
    ``confusion[gold][pred]``; ``accuracy``; ``macro_agreement`` over levels present in ``gold``.
    """
    p = np.asarray(predicted, dtype=np.int64)
    g = np.asarray(gold, dtype=np.int64)
    if p.shape != g.shape:
        raise ValueError(f"predicted {p.shape} and gold {g.shape} differ in shape")
    confusion = [[int(np.sum((g == a) & (p == b))) for b in LEVELS] for a in LEVELS]
    out: dict[str, object] = {"n": int(len(g)),
                              "accuracy": float(np.mean(p == g)) if len(g) else float("nan")}
    recalls = []
    for lv in LEVELS:
        n_gold, n_pred = int(np.sum(g == lv)), int(np.sum(p == lv))
        hit = int(np.sum((g == lv) & (p == lv)))
        rec = hit / n_gold if n_gold else float("nan")
        out[f"agreement_{lv}"] = rec
        out[f"precision_{lv}"] = hit / n_pred if n_pred else float("nan")
        out[f"n_gold_{lv}"] = n_gold
        if n_gold:
            recalls.append(rec)
    out["macro_agreement"] = float(np.mean(recalls)) if recalls else float("nan")
    out["confusion"] = confusion
    return out
