"""Stage 1 and Stage 2 logic with a stand-in score model (no network, no real model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec.synth.domains import SynthTask
from llmrec.synth.stages import (
    SSRAConfig, as_pairs, cap_per_level, dedup_seed, filter_generated, generation_jobs,
    order_violations, round_docs, round_stats, stage1,
)


class FakeG:
    """Puts ``conf`` on the level written in the query ('... L2' -> level 2); ``probs`` gives
    whole probability rows for chosen queries."""

    def __init__(self, probs=None, conf=0.7):
        self.probs = probs or {}
        self.conf = conf

    def predict(self, queries, docs):
        p = np.zeros((len(queries), 4))
        for i, q in enumerate(queries):
            if q in self.probs:
                p[i] = self.probs[q]
            else:
                p[i] = (1 - self.conf) / 3
                p[i, int(q.split("L")[-1][0])] = self.conf
        return p.argmax(-1), p


def test_order_violations_drops_less_confident_member():
    # levels 1 and 2 with E[s] inverted: the less confident (index 1) goes
    assert order_violations([1, 2], [1.8, 1.5], [0.9, 0.6]) == [1]
    assert order_violations([1, 2], [1.8, 1.5], [0.5, 0.6]) == [0]
    assert order_violations([0, 1, 2, 3], [0.1, 1.0, 2.0, 2.9], [0.5] * 4) == []


def test_filter_generated_reasons():
    gen = pd.DataFrame({
        "doc_id": ["d1"] * 4 + ["d2"] * 4,
        "level": [0, 1, 2, 3] * 2,
        # d1: level 2 slot gets a level-1 query (mismatch); d2: level-1 slot empty, level-3 slot
        # repeats the level-2 query (duplicate)
        "query": ["q L0", "q L1", "x L1", "q L3", "q L0", "", "y L2", "y L2"],
    })
    out = filter_generated(gen, FakeG(), {"d1": "doc one", "d2": "doc two"})
    assert out["reason"].tolist() == ["kept", "kept", "level_mismatch", "kept",
                                      "kept", "empty", "kept", "duplicate"]
    assert out["kept"].sum() == 5
    assert out.loc[5, "g_level"] == -1  # empty queries are not scored
    assert out.loc[2, "g_level"] == 1 and out.loc[2, "g_conf"] == pytest.approx(0.1)


def test_filter_generated_order_check():
    gen = pd.DataFrame({"doc_id": ["d"] * 2, "level": [1, 2], "query": ["a L1", "b L2"]})
    # both pass the level check (argmax 1 and 2), but the level-1 query's E[s] = 0.4 + 0.4 + 1.2
    # = 2.0 is above the level-2 query's 0.45 + 0.9 = 1.35; g is less sure of the level-1 query
    # (p = 0.4 against 0.45), so that one is dropped
    g = FakeG(probs={"a L1": [0.0, 0.4, 0.2, 0.4], "b L2": [0.1, 0.45, 0.45 + 1e-9, 0.0]})
    out = filter_generated(gen, g, {"d": "text"})
    assert out["g_level"].tolist() == [1, 2]
    assert out["g_expected"].tolist() == pytest.approx([2.0, 1.35])
    assert out["reason"].tolist() == ["order", "kept"]
    assert filter_generated(gen, g, {"d": "text"}, order_check=False)["kept"].all()


def test_round_stats_before_after():
    judged = pd.DataFrame({
        "doc_id": ["d"] * 4, "level": [0, 1, 2, 3], "query": ["a", "b", "b", "c"],
        "g_level": [0, 0, 2, 3], "kept": [True, False, True, True],
        "reason": ["kept", "level_mismatch", "kept", "kept"],
    })
    st = round_stats(judged)
    assert st["kept_fraction_1"] == 0.0 and st["kept_fraction_0"] == 1.0
    assert st["kept_fraction_mean"] == pytest.approx(0.75)
    assert st["levels_before"] == {"0": 0.5, "1": 0.0, "2": 0.25, "3": 0.25, "n": 4}
    assert st["levels_after"]["n"] == 3 and st["levels_after"]["1"] == 0.0
    assert st["duplicate_rate_before"] == pytest.approx(0.25)
    assert st["duplicate_rate_after"] == 0.0


def _task():
    docs = pd.DataFrame({"doc_id": ["a", "b", "c"], "text": ["A", "B", "C"]})
    seed = pd.DataFrame({"query_id": ["s1", "s1", "s1"],
                         "query": ["seed L3", "Seed  L3", "seed L3"],
                         "doc_id": ["a", "a", "b"], "grade": [3, 3, 0]})
    logs = pd.DataFrame({"query_id": ["u1", "u2", "u3", "u4"],
                         "query": ["one L1", "two L1", "three L2", "four L0"],
                         "doc_id": ["a", "a", "c", "b"]})
    return SynthTask("t", docs=docs, seed=seed, unlabelled=logs,
                     pool=pd.DataFrame({"doc_id": ["c"]}), eval=seed.iloc[:0])


def test_stage1_groups_by_document():
    rows, stats = stage1(_task(), FakeG(), SSRAConfig(min_levels_per_doc=2))
    seeds = rows[rows["source"] == "seed"]
    assert len(seeds) == 2  # "seed L3"/"Seed  L3" on doc a is one pair after normalisation
    ann = rows[rows["source"] == "reannotated"]
    # doc a: two level-1 log queries -> one kept (a has seed level 3, so 2 levels);
    # doc b: level 0 already from seed -> the level-0 log query gives no second level -> dropped;
    # doc c: a single level -> dropped
    assert sorted(ann["doc_id"]) == ["a"]
    assert stats["logs_annotated"] == 4 and stats["reannotated_kept"] == 1
    rows1, _ = stage1(_task(), FakeG(), SSRAConfig(min_levels_per_doc=1))
    assert sorted(rows1.loc[rows1["source"] == "reannotated", "doc_id"]) == ["a", "b", "c"]
    rows2, _ = stage1(_task(), FakeG(conf=0.4), SSRAConfig(min_levels_per_doc=1,
                                                           min_confidence=0.5))
    assert (rows2["source"] == "seed").all()


def test_helpers():
    assert dedup_seed(_task().seed)["doc_id"].tolist() == ["a", "b"]
    pairs = pd.DataFrame({"level": [0, 0, 0, 1, 3], "x": range(5)})
    assert cap_per_level(pairs, 2, 0)["level"].tolist() == [0, 0, 1, 3]
    assert len(cap_per_level(pairs, 0, 0)) == 5
    docs, levels = generation_jobs(["a", "b"])
    assert docs == ["a"] * 4 + ["b"] * 4 and levels == [0, 1, 2, 3] * 2
    pool = [str(i) for i in range(10)]
    r1, r2, r3 = (round_docs(pool, 4, r, seed=0) for r in (1, 2, 3))
    assert len(set(r1) | set(r2)) == 8 and len(r3) == 4  # disjoint, then wraps around
    assert r1 == round_docs(pool, 4, 1, seed=0)
    judged = pd.DataFrame({"doc_id": ["a", "b"], "level": [1, 2], "query": ["x", "y"],
                           "kept": [True, False]})
    p = as_pairs(judged, "ssra", 1)
    assert p["query_id"].tolist() == ["syn-ssra-a-1"] and p["round"].tolist() == [1]
