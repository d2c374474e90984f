"""The suite's metrics, as pure functions over plain Python values (hand-checkable in tests)."""

from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

_WORD = re.compile(r"[a-z0-9]+")


def micro_f1(predicted: Sequence[Iterable[str]], gold: Sequence[Iterable[str]]) -> float:
    """Micro-averaged F1 of label sets: true positives, false positives and false negatives are
    summed over all examples before precision and recall are taken (0.0 when nothing matches)."""
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions for {len(gold)} gold sets")
    tp = fp = fn = 0
    for p, g in zip(predicted, gold):
        p, g = set(p), set(g)
        tp += len(p & g)
        fp += len(p - g)
        fn += len(g - p)
    if tp == 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall)


def auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """ROC AUC by the rank-sum formula, ties counted half; None when one class is absent."""
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores for {len(labels)} labels")
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    wins = 0.0
    for p in pos:
        for n in neg:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(pos) * len(neg))


def ranks_of(scores: Sequence[float], relevant: Iterable[int]) -> list[int]:
    """0-based ranks of the ``relevant`` indices when ``scores`` are sorted high to low; a tie is
    broken against the relevant item (the pessimistic rank), so a constant scorer gets no credit."""
    out = []
    for i in relevant:
        s = scores[i]
        out.append(sum(1 for j, t in enumerate(scores) if j != i and t >= s))
    return out


def hit_at(scores: Sequence[float], target: int, k: int) -> float:
    return 1.0 if ranks_of(scores, [target])[0] < k else 0.0


def ndcg_at(scores: Sequence[float], target: int, k: int) -> float:
    """NDCG@k with one relevant item: 1 / log2(rank + 2) inside the top k, else 0."""
    r = ranks_of(scores, [target])[0]
    return 1.0 / math.log2(r + 2) if r < k else 0.0


def recall_at(scores: Sequence[float], relevant: Sequence[int], k: int) -> float:
    """Share of the relevant indices ranked inside the top k."""
    if not relevant:
        raise ValueError("recall_at needs at least one relevant index")
    return sum(1 for r in ranks_of(scores, relevant) if r < k) / len(relevant)


def tokens(text: str) -> list[str]:
    """Lower-cased alphanumeric words (the tokenisation ROUGE-L is computed on)."""
    return _WORD.findall(text.lower())


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (beta = 1) of two texts on :func:`tokens`; 1.0 for two empty texts."""
    c, r = tokens(candidate), tokens(reference)
    if not c and not r:
        return 1.0
    lcs = _lcs(c, r)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(c), lcs / len(r)
    return 2 * p * rec / (p + rec)


def win_rate(outcomes: Sequence[float]) -> float | None:
    """Mean of per-example outcomes (1 win, 0.5 tie, 0 loss); None for no examples."""
    return sum(outcomes) / len(outcomes) if outcomes else None
