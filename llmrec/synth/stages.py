"""SSRA's two stages, the prompt-only baseline, and the statistics reported per round.

Stage 1 (diversity by re-annotation): g labels every unlabelled (query, document) log pair;
the pairs are grouped by document, and for each document at most one re-annotated query per level
is kept (the one g is surest of), and only for documents that then have queries at
``min_levels_per_doc`` or more levels. The deduplicated seed pairs are added unchanged. The
result trains the first query model f.

Stage 2 (level alignment), one round: f writes one query per level s in {0,1,2,3} for each of
``docs_per_round`` fresh unlabelled documents. A query is kept only if it is non-empty, new (not
a duplicate of another query for the same document) and g(q, d) = s. Then a document's kept
queries are compared across levels by g's expected level E[s] = sum_s s p(s | q, d): whenever a
query written for a lower level scores at least as high as one written for a higher level, the
one g is less sure of (lower p(g = its target level)) is dropped, until the order agrees with the
levels. The kept pairs of all rounds so far are merged with the Stage-1 data and f is retrained
(from the base LLM) for the next round. Rounds stop after ``rounds`` or, with
``stop_when_no_gain``, as soon as the mean kept fraction over levels stops improving.

The prompt-only baseline asks the *untuned* base LLM for the same (document, level) queries and
keeps every non-empty one with its target level as the label (no g, no filter).

Per round the statistics are: the kept fraction per level, the level balance of the generated
queries as g judges them (before filtering) and of the kept pairs (after), and the duplicate-query
rate of both.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.config import option
from llmrec.synth.levels import LEVELS
from llmrec.synth.metrics import duplicate_rate, level_balance, normalize_query

log = logging.getLogger(__name__)


@dataclass
class SSRAConfig:
    """The two stages and their iteration."""

    rounds: int = option(2, help="Stage-2 rounds (generate, filter, retrain f)")
    docs_per_round: int = option(40, help="fresh unlabelled documents per Stage-2 round; each "
                                 "gets one query per level")
    min_levels_per_doc: int = option(
        2, help="Stage 1: keep a document's re-annotated queries only if the document then has "
                "queries at this many distinct levels")
    min_confidence: float = option(
        0.0, help="Stage 1: keep a re-annotated pair only if g's calibrated probability of its "
                  "level is at least this")
    max_per_level: int = option(
        0, help="cap on the rows per level in f's SFT data (random subset; 0 = no cap), so a "
                "dominant level does not swamp the others")
    order_check: bool = option(True, help="Stage 2: drop queries whose g-order contradicts "
                               "their levels within a document")
    stop_when_no_gain: bool = option(
        True, help="stop before the last round when the mean kept fraction did not improve")
    seed: int = option(0, help="seed of the document sample and of subsampling")

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.docs_per_round < 1:
            raise ValueError("rounds and docs_per_round must be >= 1")


# ------------------------------------------------------------------------------------------------
# Stage 1
# ------------------------------------------------------------------------------------------------

def dedup_seed(seed) -> Any:
    """Seed pairs with one row per (normalised query, document), the first label kept."""
    s = seed.assign(_q=[normalize_query(q) for q in seed["query"]])
    s = s.drop_duplicates(["_q", "doc_id"], keep="first").drop(columns=["_q"])
    return s.reset_index(drop=True)


def stage1(task, g, cfg: SSRAConfig):
    """(Stage-1 pairs, statistics): seed pairs + per-document multi-level re-annotated pairs.

    Output columns: query_id, query, doc_id, level, source (seed | reannotated), confidence.
    """
    import pandas as pd

    doc_text = task.doc_text()
    seed = dedup_seed(task.seed)
    seed_rows = pd.DataFrame({"query_id": seed["query_id"], "query": seed["query"],
                              "doc_id": seed["doc_id"], "level": seed["grade"].astype(int),
                              "source": "seed", "confidence": 1.0})
    logs = task.unlabelled
    seen = set(zip((normalize_query(q) for q in seed["query"]), seed["doc_id"]))
    logs = logs[[(normalize_query(q), d) not in seen
                 for q, d in zip(logs["query"], logs["doc_id"])]]
    if len(logs):
        levels, proba = g.predict(logs["query"].tolist(), [doc_text[d] for d in logs["doc_id"]])
        conf = proba[np.arange(len(levels)), levels]
    else:
        levels, conf = np.zeros(0, dtype=int), np.zeros(0)
    ann = pd.DataFrame({"query_id": logs["query_id"].to_numpy(), "query": logs["query"].to_numpy(),
                        "doc_id": logs["doc_id"].to_numpy(), "level": levels.astype(int),
                        "source": "reannotated", "confidence": conf})
    annotated_balance = level_balance(ann["level"])
    ann = ann[ann["confidence"] >= cfg.min_confidence]
    # one re-annotated query per (document, level): the one g is surest of
    ann = ann.sort_values("confidence", ascending=False).drop_duplicates(["doc_id", "level"])
    levels_per_doc = pd.concat([seed_rows, ann]).groupby("doc_id")["level"].nunique()
    multi = set(levels_per_doc[levels_per_doc >= cfg.min_levels_per_doc].index)
    ann = ann[ann["doc_id"].isin(multi)]
    rows = pd.concat([seed_rows, ann], ignore_index=True)
    stats = {
        "seed_pairs": len(seed_rows),
        "logs_annotated": int(len(levels)),
        "logs_annotated_levels": annotated_balance,
        "reannotated_kept": len(ann),
        "docs_multi_level": int(rows.groupby("doc_id")["level"].nunique().ge(2).sum()),
        "levels": level_balance(rows["level"]),
    }
    return rows, stats


def cap_per_level(pairs, max_per_level: int, seed: int):
    """At most ``max_per_level`` rows per level (random subset); 0 = unchanged."""
    import pandas as pd

    if max_per_level <= 0 or pairs.empty:
        return pairs
    parts = [grp.sample(min(len(grp), max_per_level), random_state=seed)
             for _, grp in pairs.groupby("level")]
    return pd.concat(parts).sort_index().reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# Stage 2
# ------------------------------------------------------------------------------------------------

def order_violations(levels, expected, confidence) -> list[int]:
    """Positions to drop so that, within one document, higher levels have higher E[s].

    Repeatedly takes the violating pair (lower target level, E[s] not lower) and drops its less
    confident member; returns the dropped positions.
    """
    alive = list(range(len(levels)))
    dropped: list[int] = []
    while True:
        worst = None
        for a in alive:
            for b in alive:
                if levels[a] < levels[b] and expected[a] >= expected[b]:
                    worst = (a, b)
                    break
            if worst:
                break
        if worst is None:
            return dropped
        a, b = worst
        drop = a if confidence[a] <= confidence[b] else b
        alive.remove(drop)
        dropped.append(drop)


def filter_generated(gen, g, doc_text: dict[str, str], order_check: bool = True):
    """Judge generated queries with g and mark the kept ones (Stage-2 filter).

    ``gen`` has doc_id, level (target), query. Adds g_level, g_conf (g's probability of the target
    level), g_expected, kept and reason (kept | empty | duplicate | level_mismatch | order).
    """
    gen = gen.copy().reset_index(drop=True)
    n = len(gen)
    reason = np.array(["kept"] * n, dtype=object)
    empty = gen["query"].fillna("").str.strip().eq("").to_numpy()
    reason[empty] = "empty"
    norm = [normalize_query(q) for q in gen["query"].fillna("")]
    seen: set[tuple[str, str]] = set()
    for i, (d, q) in enumerate(zip(gen["doc_id"], norm)):
        if reason[i] != "kept":
            continue
        if (d, q) in seen:
            reason[i] = "duplicate"
        seen.add((d, q))
    g_level = np.full(n, -1)
    g_conf = np.zeros(n)
    g_exp = np.full(n, np.nan)
    idx = np.nonzero(~empty)[0]
    if len(idx):
        sub = gen.iloc[idx]
        levels, proba = g.predict(sub["query"].tolist(), [doc_text[d] for d in sub["doc_id"]])
        g_level[idx] = levels
        g_conf[idx] = proba[np.arange(len(idx)), sub["level"].astype(int).to_numpy()]
        g_exp[idx] = proba @ np.arange(proba.shape[1])
    target = gen["level"].astype(int).to_numpy()
    mismatch = (reason == "kept") & (g_level != target)
    reason[mismatch] = "level_mismatch"
    if order_check:
        for _, grp in gen.groupby("doc_id"):
            pos = [i for i in grp.index if reason[i] == "kept"]
            if len(pos) < 2:
                continue
            for j in order_violations([target[i] for i in pos], [g_exp[i] for i in pos],
                                      [g_conf[i] for i in pos]):
                reason[pos[j]] = "order"
    gen["g_level"] = g_level
    gen["g_conf"] = g_conf
    gen["g_expected"] = g_exp
    gen["reason"] = reason
    gen["kept"] = reason == "kept"
    return gen


def round_stats(judged) -> dict[str, Any]:
    """Kept fraction per level, level balance and duplicate rate before / after the filter."""
    out: dict[str, Any] = {"generated": len(judged), "kept": int(judged["kept"].sum())}
    fracs = []
    for lv in LEVELS:
        part = judged[judged["level"] == lv]
        frac = float(part["kept"].mean()) if len(part) else float("nan")
        out[f"kept_fraction_{lv}"] = frac
        if len(part):
            fracs.append(frac)
    out["kept_fraction_mean"] = float(np.mean(fracs)) if fracs else float("nan")
    judged_ok = judged[judged["g_level"] >= 0]
    out["levels_before"] = level_balance(judged_ok["g_level"])  # as g judges them, unfiltered
    out["levels_after"] = level_balance(judged.loc[judged["kept"], "level"])
    out["duplicate_rate_before"] = duplicate_rate(judged["query"].fillna(""))
    out["duplicate_rate_after"] = duplicate_rate(judged.loc[judged["kept"], "query"])
    out["reasons"] = {str(k): int(v) for k, v in judged["reason"].value_counts().items()}
    return out


def round_docs(pool_ids: list[str], n: int, round_: int, seed: int) -> list[str]:
    """The documents of Stage-2 round ``round_`` (1-based): disjoint slices of a shuffled pool,
    wrapping around when the pool is exhausted."""
    ids = sorted(pool_ids)
    random.Random(seed).shuffle(ids)
    if not ids:
        return []
    start = ((round_ - 1) * n) % len(ids)
    picked = ids[start:start + n]
    if len(picked) < n:
        picked += ids[:min(n - len(picked), start)]
    return picked


def generation_jobs(doc_ids: list[str]) -> tuple[list[str], list[int]]:
    """Every (document, level) pair: one query per level per document."""
    docs = [d for d in doc_ids for _ in LEVELS]
    levels = [lv for _ in doc_ids for lv in LEVELS]
    return docs, levels


def as_pairs(judged, source: str, round_: int | None = None):
    """Kept generated queries as graded pairs (query_id, query, doc_id, level, source, ...)."""
    kept = judged[judged["kept"]] if "kept" in judged else judged
    out = kept.assign(query_id=[f"syn-{source}-{d}-{lv}" for d, lv in
                                zip(kept["doc_id"], kept["level"])],
                      source=source)
    if round_ is not None:
        out = out.assign(round=round_)
    return out.reset_index(drop=True)


def prompt_only(task, base_model: str, qcfg, doc_ids: list[str], g=None):
    """The prompt-only baseline: base LLM, one query per level, every non-empty query kept.

    If ``g`` is given, its judgement is added (g_level etc.) for the level-balance report only.
    """
    from llmrec.synth.query_model import generate_queries

    doc_text = task.doc_text()
    docs, levels = generation_jobs(doc_ids)
    gen, identity = generate_queries(base_model, docs, levels, doc_text, qcfg, round_=0)
    if g is not None:
        judged = filter_generated(gen, g, doc_text, order_check=False)
    else:
        judged = gen.assign(g_level=-1, g_conf=0.0, g_expected=np.nan, reason="kept", kept=True)
    # the baseline keeps every non-empty, non-duplicate query whatever g thinks
    judged["kept"] = ~judged["reason"].isin(["empty", "duplicate"])
    return judged, identity


def save_table(df, path: Path, config: Any = None, **provenance: Any) -> Path:
    from llmrec.synth.io import save_dataset

    return save_dataset(df, path, config, **provenance)
