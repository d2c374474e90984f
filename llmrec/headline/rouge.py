"""ROUGE-1, ROUGE-2 and ROUGE-L F1 (Lin, 2004), with several references per example.

Tokens: lower-cased runs of ASCII letters and digits (every other character separates tokens);
no stemming and no stop-word removal. ROUGE-N counts n-gram matches clipped by the reference's
count; ROUGE-L uses the longest common subsequence (sentence level, F with beta = 1). With several
references, each metric takes its best F over them (the usual multi-reference convention, as in
the PENS evaluation of one headline against the headlines different writers gave one article).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Sequence

_TOKEN = re.compile(r"[a-z0-9]+")
METRICS = ("rouge1", "rouge2", "rougeL")

__all__ = ["METRICS", "tokenize", "rouge_n", "rouge_l", "lcs_length", "score", "score_tokens",
           "score_multi", "corpus"]


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _prf(match: int, n_cand: int, n_ref: int) -> tuple[float, float, float]:
    p = match / n_cand if n_cand else 0.0
    r = match / n_ref if n_ref else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(cand: Sequence[str], ref: Sequence[str], n: int) -> tuple[float, float, float]:
    """(precision, recall, F1) of n-gram overlap of two token lists."""
    c, r = _ngrams(cand, n), _ngrams(ref, n)
    match = sum(min(k, r[g]) for g, k in c.items())
    return _prf(match, sum(c.values()), sum(r.values()))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(cand: Sequence[str], ref: Sequence[str]) -> tuple[float, float, float]:
    return _prf(lcs_length(cand, ref), len(cand), len(ref))


def score(candidate: str, reference: str) -> dict[str, float]:
    """F1 of ROUGE-1/2/L of one candidate against one reference."""
    return score_tokens(tokenize(candidate), tokenize(reference))


def score_tokens(c: Sequence[str], r: Sequence[str]) -> dict[str, float]:
    """:func:`score` of already tokenized texts (for loops that score one text many times)."""
    return {"rouge1": rouge_n(c, r, 1)[2], "rouge2": rouge_n(c, r, 2)[2],
            "rougeL": rouge_l(c, r)[2]}


def score_multi(candidate: str, references: Iterable[str]) -> dict[str, float]:
    """Each metric's best F1 over ``references`` (empty ones skipped; at least one needed)."""
    refs = [r for r in references if r and r.strip()]
    if not refs:
        raise ValueError("score_multi needs at least one non-empty reference")
    per = [score(candidate, r) for r in refs]
    return {m: max(p[m] for p in per) for m in METRICS}


def corpus(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean over examples of :func:`score_multi` (each example weighs the same)."""
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
    if not candidates:
        raise ValueError("no examples to score")
    tot = dict.fromkeys(METRICS, 0.0)
    for c, refs in zip(candidates, references):
        for m, v in score_multi(c, refs).items():
            tot[m] += v
    return {m: v / len(candidates) for m, v in tot.items()}
