"""Factual consistency of a headline with its article.

- :func:`overlap_score`: the share of the headline's *entities and numbers* found in the body.
  Entities are capitalised words outside a small stop list (a title-case headline thus counts
  most of its content words, a sentence-case one mostly its names); numbers are digit runs
  (``3-1`` gives ``3`` and ``1``, ``4.5`` stays one). A word is found when it occurs in the body
  as a whole word, case-insensitively. ``None`` when the headline has neither.
- :func:`llm_check`: the probability of "Yes" against "No" (softmax of the two answers'
  log-likelihoods from :meth:`LLMBackend.score_options`) for the question in
  ``prompts/headline/factual_check.jinja``.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+(?:[.,]\d+)*")
_STOP = frozenset("""a an the and or but nor of in on at to for from by with as is are was were be
been being it its this that these those he she they we you i his her their our your my not no yes
so if than then there here what which who whom whose when where why how all any each every some
into over under after before about after against between during up down out off new more most
will would can could should may might must do does did has have had just also only very too
vs says say said""".split())

__all__ = ["entities", "overlap_score", "llm_check"]


def entities(headline: str) -> list[str]:
    """Capitalised non-stop words and numbers of ``headline``, in order, without repeats."""
    out: list[str] = []
    for w in _WORD.findall(headline):
        w = w.strip("'-")
        if not w:
            continue
        is_num = w[0].isdigit()
        if is_num or (w[0].isupper() and w.lower() not in _STOP):
            key = w if is_num else w.lower()
            if key not in out:
                out.append(key)
    return out


def overlap_score(headline: str, body: str) -> float | None:
    """Share of :func:`entities` of ``headline`` found as whole words in ``body``."""
    ents = entities(headline)
    if not ents:
        return None
    words = {w.strip("'-").lower() for w in _WORD.findall(body)}
    return sum(e in words for e in ents) / len(ents)


def llm_check(backend, headlines: Sequence[str], bodies: Sequence[str],
              max_body_chars: int = 2000) -> list[float]:
    """P(Yes) of the yes/no consistency question, one per (headline, body)."""
    from llmrec.headline.profiles import prompt_messages

    if len(headlines) != len(bodies):
        raise ValueError(f"{len(headlines)} headlines but {len(bodies)} bodies")
    convs = [prompt_messages("factual_check", {"headline": h, "body": b[:max_body_chars]})
             for h, b in zip(headlines, bodies)]
    out = []
    for yes, no in backend.score_options(convs, [["Yes", "No"]] * len(convs)):
        m = max(yes, no)
        out.append(math.exp(yes - m) / (math.exp(yes - m) + math.exp(no - m)))
    return out
