"""The fingerprint and step-cache helper of every resumable stage (crs runs, synth steps, ECPO)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmrec.artifacts import (META_FILE, StaleStepError, StepCache, canonical, diff_keys,
                              fingerprint, write_meta)
from llmrec.config import option


@dataclass
class Inner:
    batch_size: int = 8
    model: str = "m"


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    label: str = "base"
    seed: int = 0
    key: str = option("s3cret", help="an API key", secret=True)


def test_fingerprint_is_the_sha256_of_sorted_canonical_json():
    obj = {"b": [1, 2.5, None], "a": {"y": "é", "x": True}}
    blob = '{"a": {"x": true, "y": "é"}, "b": [1, 2.5, null]}'
    assert fingerprint(obj) == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert len(fingerprint(obj)) == 16


def test_fingerprint_is_stable_across_dict_order_and_container_kinds():
    a = {"x": 1, "y": {"p": [1, 2], "q": "z"}}
    b = {"y": {"q": "z", "p": (1, 2)}, "x": 1}
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint({"s": {3, 1, 2}}) == fingerprint({"s": [1, 2, 3]})
    assert fingerprint({"p": Path("/a/b")}) == fingerprint({"p": "/a/b"})
    # order inside a list matters, and so does every value
    assert fingerprint([1, 2]) != fingerprint([2, 1])
    assert fingerprint({"x": 1}) != fingerprint({"x": 2})


def test_dataclasses_are_fingerprinted_as_their_config_dict_without_secrets():
    cfg = Outer()
    assert canonical(cfg) == {"inner": {"batch_size": 8, "model": "m"}, "label": "base",
                              "seed": 0}
    assert fingerprint(cfg) == fingerprint(canonical(cfg))
    assert fingerprint(Outer(key="other")) == fingerprint(cfg)


def test_excluded_keys_are_ignored_by_name_or_by_path():
    cfg = Outer()
    base = fingerprint(cfg, exclude=("batch_size", "label"))
    assert fingerprint(Outer(inner=Inner(batch_size=64), label="x"),
                       exclude=("batch_size", "label")) == base
    assert fingerprint(Outer(seed=1), exclude=("batch_size", "label")) != base
    # a plain name goes at every depth (inside lists too), a dotted one only at its path
    rows = [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
    assert canonical({"rows": rows}, exclude=("id",)) == {"rows": [{"v": "a"}, {"v": "b"}]}
    nested = {"agent": {"label": "x", "llm": {"label": "y"}}, "label": "z"}
    assert canonical(nested, exclude=("agent.label",)) == {"agent": {"llm": {"label": "y"}},
                                                           "label": "z"}


def test_diff_keys_names_changed_leaves():
    a = {"agent": {"llm": {"model": "a", "t": 1}}, "seed": 0, "gone": 1}
    b = {"agent": {"llm": {"model": "b", "t": 1}}, "seed": 0, "new": 2}
    assert diff_keys(a, b) == ["agent.llm.model", "gone", "new"]
    assert diff_keys(a, a) == []


def _cache(tmp_path, **inputs):
    return StepCache(tmp_path / "out.json", inputs or {"cfg": {"a": 1}, "data": [1, 2]})


def test_step_cache_missing_then_recorded_then_fresh(tmp_path):
    step = _cache(tmp_path)
    assert step.state().status == "missing" and not step.reuse()
    (tmp_path / "out.json").write_text(json.dumps({"result": 42, **step.fields()}))
    assert step.state().fresh and step.reuse(on_stale="refuse")
    # the record is the inputs' fingerprint and one per part
    rec = json.loads((tmp_path / "out.json").read_text())
    assert rec["fingerprint"] == step.fingerprint == fingerprint({"cfg": {"a": 1},
                                                                  "data": [1, 2]})
    assert rec["input_fingerprints"] == {"cfg": fingerprint({"a": 1}),
                                         "data": fingerprint([1, 2])}
    # dict order of the inputs does not matter
    assert StepCache(tmp_path / "out.json", {"data": [1, 2], "cfg": {"a": 1}}).state().fresh
    # enabled=False never reuses
    assert not StepCache(tmp_path / "out.json", {"cfg": {"a": 1}, "data": [1, 2]},
                         enabled=False).reuse()


def test_step_cache_mismatch_names_what_changed_and_redoes_or_refuses(tmp_path, caplog):
    step = _cache(tmp_path)
    (tmp_path / "out.json").write_text(json.dumps(step.fields()))
    other = _cache(tmp_path, cfg={"a": 2}, data=[1, 2])
    st = other.state()
    assert st.status == "stale" and st.changed == ("cfg",)
    with caplog.at_level("WARNING"):
        assert other.reuse(on_stale="redo") is False
    assert "changed: cfg" in caplog.text
    with pytest.raises(StaleStepError, match=r"out.json was made from other inputs "
                                             r"\(changed: cfg\); delete it") as exc:
        other.reuse(on_stale="refuse", hint="delete it")
    assert exc.value.changed == ["cfg"]
    # with the values kept, the leaf keys are named
    deep = tmp_path / "deep.json"
    a = StepCache(deep, {"cfg": {"llm": {"model": "a"}, "seed": 0}}, keep_values=True)
    deep.write_text(json.dumps(a.fields()))
    b = StepCache(deep, {"cfg": {"llm": {"model": "b"}, "seed": 0}}, keep_values=True)
    assert b.state().changed == ("cfg.llm.model",)


def test_an_output_without_record_is_not_trusted(tmp_path):
    (tmp_path / "out.json").write_text("{}")
    step = _cache(tmp_path)
    assert step.state().status == "unrecorded"
    with pytest.raises(StaleStepError, match="no record of the inputs"):
        step.reuse(on_stale="refuse")
    assert step.reuse(on_stale="redo") is False


def test_record_inside_a_folder_output_is_its_provenance(tmp_path):
    out = tmp_path / "model"
    step = StepCache(out, {"data": [1], "settings": {"lr": 1}})
    assert step.record_path == out / META_FILE
    out.mkdir()
    write_meta(out, None, stage="x", **step.fields())
    assert step.reuse(on_stale="refuse")
    assert StepCache(out, {"data": [2], "settings": {"lr": 1}}).state().changed == ("data",)


def test_separate_record_is_removed_before_a_redo(tmp_path):
    out, rec = tmp_path / "pairs.jsonl", tmp_path / "pairs.stats.json"
    old = StepCache(out, {"x": 1}, record=rec)
    out.write_text("old\n")
    old.record(pairs=1)
    assert json.loads(rec.read_text())["pairs"] == 1 and old.reuse()
    new = StepCache(out, {"x": 2}, record=rec)
    assert new.reuse() is False and not rec.exists()
    # a redo killed before its record is written leaves an unrecorded output: redone again
    out.write_text("new, half written")
    assert new.state().status == "unrecorded"
    new.record(pairs=2)
    assert new.reuse() and json.loads(rec.read_text())["pairs"] == 2
    # an output gone: the stale record goes too
    out.unlink()
    assert new.reuse() is False and not rec.exists()


def test_record_is_atomic(tmp_path, monkeypatch):
    out, rec = tmp_path / "out.txt", tmp_path / "record.json"
    out.write_text("x")
    first = StepCache(out, {"x": 1}, record=rec)
    first.record()
    before = rec.read_bytes()

    def killed(fd):
        raise KeyboardInterrupt  # the writer dies after writing, before the rename

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        StepCache(out, {"x": 2}, record=rec).record()
    monkeypatch.undo()
    assert rec.read_bytes() == before and first.state().fresh
    # no temporary file is left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "record.json"]


def test_record_inside_a_json_output_keeps_its_other_keys(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"score": 1.5}))
    step = StepCache(path, {"x": 1})
    step.record()
    data = json.loads(path.read_text())
    assert data["score"] == 1.5 and data["fingerprint"] == step.fingerprint
    assert step.reuse()
