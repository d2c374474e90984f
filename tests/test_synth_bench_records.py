"""bench/synth_dl19.py: every number of an experiment's results becomes one record, with nothing
hard-coded, and the docs' tables are rebuilt from the records."""

from __future__ import annotations

import json
import math

import pytest

from llmrec.config import to_dict
from llmrec.synth.pipeline import SynthConfig

from conftest import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("synth_dl19")


def _balance(a, b, c, d, n):
    return {"0": a, "1": b, "2": c, "3": d, "n": n}


def _results():
    emb = {c: {"ndcg@10": 0.7 + i / 100, "avg_ap": 0.5 + i / 100, "ap_ge1": 0.8, "ap_ge2": 0.6,
               "ap_ge3": float("nan") if c == "base" else 0.3, "n_queries": 20, "n_pairs": 100,
               "train_rows": 10 * i}
           for i, c in enumerate(("base", "seed", "prompt_only", "ssra"))}
    heldout = {"n": 100, "accuracy": 0.4, "macro_agreement": 0.35,
               "confusion": [[10, 1, 1, 1], [1, 10, 1, 1], [1, 1, 10, 1], [1, 1, 1, 10]]}
    for lv in range(4):
        heldout.update({f"agreement_{lv}": 0.1 * (lv + 1), f"precision_{lv}": 0.2,
                        f"n_gold_{lv}": 25})
    rnd = {"round": 1, "generated": 8, "kept": 2, "sft_rows": 12,
           "levels_before": _balance(0.5, 0.25, 0.25, 0.0, 8),
           "levels_after": _balance(1.0, 0.0, 0.0, 0.0, 2),
           "duplicate_rate_before": 0.125, "duplicate_rate_after": 0.0,
           "reasons": {"level_mismatch": 6, "kept": 2}}
    rnd.update({f"kept_fraction_{lv}": f for lv, f in enumerate((1.0, 0.0, 0.0, float("nan")))})
    return {"task": {"eval_queries": 20, "seed_queries": 20,
                     "seed_levels": _balance(0.4, 0.3, 0.2, 0.1, 50)},
            "score_model": {"model": {"kind": "cross-encoder", "base": "/some/path"},
                            "heldout": heldout,
                            "as_reranker": {"ndcg@10": 0.71, "avg_ap": 0.52}},
            "prompt_only": {"levels_before": _balance(0.8, 0.1, 0.1, 0.0, 8),
                            "levels_after": _balance(0.25, 0.25, 0.25, 0.25, 8),
                            "duplicate_rate_before": 0.0},
            "ssra": {"stage1": {"levels": _balance(0.4, 0.3, 0.2, 0.1, 60), "seed_pairs": 50,
                                "logs_annotated": 30, "reannotated_kept": 10,
                                "docs_multi_level": 5},
                     "rounds": [rnd], "data": {"levels": _balance(1.0, 0.0, 0.0, 0.0, 2)}},
            "embedders": emb, "seconds": 12.5,
            "provenance": {"timestamp": "2026-01-01T00:00:00+00:00", "git_revision": "abc"}}


def test_one_record_per_number_nothing_hard_coded(bench, monkeypatch):
    monkeypatch.setenv("LLMREC_COMMIT", "c0ffee")
    cfg = to_dict(SynthConfig())
    cfg["query"]["llm"]["model"] = "/models/my-generator"
    cfg["embed"]["model"] = "/models/my-embedder"
    cfg["embed"]["seed"] = 7
    cfg["score"]["model"] = "/models/my-cross-encoder"
    extra = [{"metric": "ndcg@10_delta", "value": 0.01, "ci95_low": -0.02, "ci95_high": 0.03,
              "queries_better": 9, "queries_worse": 8, "queries_tied": 3, "strategy": "ssra",
              "baseline": "seed", "unit": "fraction"}]
    recs = bench.records(_results(), cfg, {"torch": "x"}, device="cpu (test)", extra=extra)
    assert all(r["device"] == "cpu (test)" and r["commit"] == "c0ffee" for r in recs)
    assert all(r["versions"] == {"torch": "x"} and r["run_id"] == "2026-01-01T00:00:00+00:00"
               for r in recs)
    assert all(isinstance(r["value"], float) and not math.isnan(r["value"]) for r in recs)
    assert {r["generator"] for r in recs} == {"/models/my-generator"}
    assert {r["seed"] for r in recs} == {7}
    emb = [r for r in recs if r.get("strategy") in ("base", "seed", "prompt_only", "ssra")
           and r["metric"] in ("ndcg@10", "avg_ap", "ap_ge1", "ap_ge2", "ap_ge3")]
    assert len(emb) == 4 * 5 - 1  # base's NaN AP>=3 is left out, not recorded as a number
    assert {r["model"] for r in emb} == {"/models/my-embedder"}
    keys = {(r["metric"], r.get("strategy"), r.get("data"), r.get("round")) for r in recs}
    assert ("g_agreement_level3", "score_model", None, None) in keys
    assert ("g_confusion_gold2_pred2", "score_model", None, None) in keys
    assert ("kept_fraction_level0", None, "ssra_stage2", 1) in keys
    assert ("kept_fraction_level3", None, "ssra_stage2", 1) not in keys  # NaN
    assert ("level_share_0", None, "ssra_kept_after_stage2_filter", 1) in keys
    assert ("ndcg@10_delta", "ssra", None, None) in keys
    g = next(r for r in recs if r["metric"] == "g_accuracy")
    assert g["model"] == "g: cross-encoder /models/my-cross-encoder" and g["value"] == 0.4


def test_table_from_records_and_run_ids(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_COMMIT", "c0ffee")
    recs = bench.records(_results(), to_dict(SynthConfig()), {}, device="cpu (test)")
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    table = bench.table_from_records(path)
    assert ("| base all-MiniLM-L6-v2 (no training) | 70.00 | 50.00 | 80.00 | 60.00 | n/a | 0 |"
            in table)
    assert "| + SSRA synthetic data | 73.00 | 53.00 |" in table
    assert "| agreement | 10.0 | 20.0 | 30.0 | 40.0 |" in table
    assert "| SSRA kept (after the Stage-2 filter) | 1 | 100 / 0 / 0 / 0 | 2 |" in table
    assert bench._recorded_run_ids(path) == {"2026-01-01T00:00:00+00:00"}
    assert bench._recorded_run_ids(tmp_path / "absent.jsonl") == set()


def test_a_saved_experiment_is_reused_only_with_the_same_settings(bench):
    cfg = to_dict(SynthConfig())
    saved = json.loads(json.dumps(cfg, default=str))
    assert bench._same_config(saved, cfg)
    assert bench._same_config({**saved, "out": "elsewhere"}, cfg)  # a copied folder
    other = json.loads(json.dumps(cfg, default=str))
    other["embed"]["model"] = "mpnet"
    assert not bench._same_config(other, cfg)
    assert not bench._same_config(None, cfg)  # written before results kept their config
