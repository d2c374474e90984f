"""Headline eval (llmrec.headline.generate): the grid on the PENS fixture with a scripted
backend, the reference baselines by hand, the statement without news.tsv, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmrec.headline import rouge
from llmrec.headline.generate import (HeadlineEvalConfig, clean_headline, reference_baselines,
                                      run_eval)
from llmrec.llm.base import Generation

FIXTURE = Path(__file__).parent / "data" / "pens"


class Scripted:
    """Replies with the first words of the article in the prompt (a fake inside a unit test)."""

    name = "fake"

    def __init__(self, cfg):
        self.cfg, self.calls, self.scored = cfg, [], 0

    @property
    def model_id(self):
        return self.cfg.model

    def identity(self):
        return {"model": self.cfg.model, "revision": "r"}

    def generate(self, conversations, sampling=None, *, seeds=None, json_schema=None):
        self.calls.append(conversations)
        out = []
        for c in conversations:
            text = c[-1]["content"]
            body = text.split("):\n", 1)[1] if "):\n" in text else text
            out.append(Generation(text="Headline: " + " ".join(body.split()[:8]) + "\nmore"))
        return out

    def score_options(self, conversations, options):
        self.scored += len(conversations)
        return [[-0.1, -2.0] for _ in conversations]

    def close(self):
        pass


def embed(texts):
    # a bag of two words: sports-ish vs the rest, enough for the centroid and nearest levels
    return np.array([[1.0 + ("Atlanta" in t) + ("Hawks" in t), 0.3] for t in texts])


def test_clean_headline():
    assert clean_headline('\n  Headline: "Fed holds rates"\nSecond') == "Fed holds rates"
    assert clean_headline("- **Atlanta wins**") == "Atlanta wins"
    assert clean_headline("   \n") == ""
    assert clean_headline('Sure! Here is a new headline:\n"Soccer: Martinez hits three') == \
        "Soccer: Martinez hits three"


def test_grid_on_fixture_writes_one_record_per_cell(tmp_path):
    out = tmp_path / "eval.jsonl"
    backends = []

    def factory(llm):
        backends.append(Scripted(llm))
        return backends[-1]

    cfg = HeadlineEvalConfig(data_path=str(FIXTURE), filters=["none", "dwell+burst+news"],
                             fusions=["short", "short+long+nearest"], models=["m1", "m2"],
                             baselines=False, llm_check=True, personalisation=True, out=str(out))
    summary = run_eval(cfg, backend_factory=factory, embed_fn=embed, out=lambda s: None)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 2 * 2 * 2
    assert {(r["model"], r["filter"], r["fusion"]) for r in recs} == {
        (m, f, u) for m in ("m1", "m2") for f in ("none", "dwell+burst+news")
        for u in ("short", "short+long+nearest")}
    r = recs[0]
    assert r["benchmark"] == "headline_eval" and r["n_examples"] == 4 and r["n_users"] == 2
    # the scripted headline is the first 8 words of each body: score it ourselves
    body = {"N6": "Josef Martinez scored a hat trick as Atlanta",
            "N7": "The Federal Reserve held interest rates steady for"}
    refs = [["Martinez scores three as Atlanta United top Miami",
             "Atlanta beats Miami 4-2 behind Martinez hat trick"],
            ["Fed keeps rates on hold again"], ["Atlanta United win 4-2 over Inter Miami"],
            ["Federal Reserve holds rates steady a third time"]]
    want = rouge.corpus([body["N6"], body["N7"], body["N6"], body["N7"]], refs)
    assert r["value"] == pytest.approx(want["rougeL"], abs=1e-6)
    assert r["rouge1"] == pytest.approx(want["rouge1"]) and r["factual_overlap"] == 1.0
    assert r["llm_consistency"] == pytest.approx(1 / (1 + np.exp(-1.9)))
    assert r["filter_counts"]["clicks"] == 7  # NT1: 3 clicks, NT2: 4 (all in news.tsv)
    assert backends[0].scored == 4 * 4
    # one generate call per cell, all of its prompts at once; the prompt carries the profile
    assert [len(c) for c in backends[0].calls] == [4, 4, 4, 4]
    first = backends[0].calls[0][0][-1]["content"]
    assert "- Atlanta United beat Orlando 3-1 in MLS derby" in first
    near = backends[0].calls[1][0][-1]["content"]
    assert "Clicked headlines closest to this article" in near
    assert summary["missing"] == []


def test_without_news_states_it_and_records_baselines(tmp_path, monkeypatch):
    folder = tmp_path / "pens"
    folder.mkdir()
    shutil.copy(FIXTURE / "personalized_test.tsv", folder)
    out = tmp_path / "eval.jsonl"
    lines = []
    cfg = HeadlineEvalConfig(data_path=str(folder), baseline_seeds=[0, 1], out=str(out))
    summary = run_eval(cfg, backend_factory=lambda llm: pytest.fail("no backend without news"),
                       out=lines.append)
    assert "generation not run" in lines[-2] and "news.tsv is missing" in lines[-2]
    assert "msnews.github.io/pens" in lines[-2]
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == 4 * 2 and {r["benchmark"] for r in recs} == {"headline_reference"}
    assert summary["generation"].startswith("skipped")


def test_reference_baselines_by_hand():
    test = pd.DataFrame({
        "user_id": ["A", "B"], "clicks": [[], []],
        "news_ids": [["X", "Y", "W"], ["X", "Z"]],
        "titles": [["red car wins race", "blue sky today", "the red race"],
                   ["red car takes the race", "cold winter ahead"]]})
    r = reference_baselines(test, seed=0)
    # only X was rewritten by both. A: own headlines "blue sky today" (0) and "the red race":
    # LCS with "red car wins race" = 2 -> F = 2 (2/3)(2/4) / (2/3 + 2/4) = 4/7; it is also the
    # one closest to B's headline, so oracle = retrieved = 4/7, 0, 4/7. B: own "cold winter
    # ahead" shares nothing: 0. Other writer, both ways: R1 = RL = 2/3, R2 = 2/7.
    assert r["own_oracle"] == pytest.approx({"rouge1": 2 / 7, "rouge2": 0, "rougeL": 2 / 7, "n": 2})
    assert r["own_retrieved"] == r["own_oracle"]
    assert r["other_writer"] == pytest.approx({"rouge1": 2 / 3, "rouge2": 2 / 7, "rougeL": 2 / 3,
                                               "n": 2})
    assert r["other_writer_best"] == r["other_writer"]


def test_cli_eval_on_fixture_without_news(tmp_path, capsys):
    from llmrec.cli import main

    folder = tmp_path / "pens"
    folder.mkdir()
    shutil.copy(FIXTURE / "personalized_test.tsv", folder)
    out = tmp_path / "r.jsonl"
    rc = main(["headline", "eval", "--config", "eval/headline/pens.yaml",
               f"--data_path={folder}", f"--out={out}", "--baseline_seeds=[0]"])
    assert rc == 0
    assert "generation not run" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 4
    rc = main(["headline", "eval", "--filters=[dwell,bogus]"])
    assert rc == 2
    assert "bogus" in capsys.readouterr().err
