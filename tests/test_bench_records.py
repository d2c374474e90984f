"""Recorded results and the one helper that writes them (``llmrec.benchrecord``).

Every line of every ``bench/results/*.jsonl`` is a JSON object with the required keys (the
training curves under ``bench/results/ecpo_curves/`` are logs, not records); the helper fills
the provenance, appends atomically, reads back, summarises seeds and says which keys are missing.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmrec import benchrecord as br

from conftest import load_bench

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RESULT_FILES = sorted(RESULTS.glob("*.jsonl"))


def _env(**over):
    return {"device": "cpu (test)", "commit": "abc1234", "date": "2026-01-01T00:00:00+00:00",
            "versions": {"torch": "x"}, **over}


# -- the recorded files --------------------------------------------------------------------------

def test_results_files_exist():
    assert RESULT_FILES, f"no *.jsonl in {RESULTS}"


@pytest.mark.parametrize("path", RESULT_FILES, ids=[p.name for p in RESULT_FILES])
def test_every_recorded_line_is_a_complete_record(path):
    problems = []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        problems.append(f"{path.relative_to(ROOT)}: last line is incomplete (no newline)")
    for n, line in enumerate(raw.decode().splitlines(), 1):
        where = f"{path.relative_to(ROOT)}:{n}"
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not JSON ({exc})")
            continue
        if not isinstance(rec, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        missing = [k for k in br.REQUIRED_KEYS if k not in rec]
        if missing:
            problems.append(f"{where}: missing {', '.join(missing)}")
    assert not problems, "\n".join(problems[:50]) + (
        f"\n... and {len(problems) - 50} more" if len(problems) > 50 else "")


def test_no_bench_script_writes_records_by_hand():
    """Records go through br.append (validated, atomic); an ``open(..., "a")`` is a regression."""
    offenders = [f"{p.name}:{n}" for p in sorted((ROOT / "bench").glob("*.py"))
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(r"""open\([^)]*,\s*["']a["']""", line)]
    assert not offenders, f"append through llmrec.benchrecord.append: {offenders}"


# -- the helper ----------------------------------------------------------------------------------

def test_import_is_light():
    code = ("import sys, llmrec.benchrecord; "
            "print(','.join(m for m in ('torch', 'transformers', 'vllm', 'numpy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import llmrec.benchrecord pulled in {out.stdout.strip()}"


def test_required_keys():
    assert br.REQUIRED_KEYS == ("benchmark", "metric", "value", "unit", "device", "commit",
                                "date")


def test_environment(monkeypatch):
    monkeypatch.delenv("LLMREC_COMMIT", raising=False)
    env = br.environment()
    assert set(env) == set(br.ENV_KEYS)
    assert env["device"] and isinstance(env["device"], str)
    date = dt.datetime.fromisoformat(env["date"])
    assert date.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - date).total_seconds()) < 60
    for name in ("python", *br.VERSION_PACKAGES):
        assert name in env["versions"]
    assert env["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["versions"]["llmrec"]  # installed in the test environment
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True)
    if head.returncode == 0:
        assert re.fullmatch(re.escape(head.stdout.strip()) + r"(\+dirty)?", env["commit"])
    monkeypatch.setenv("LLMREC_COMMIT", "c0ffee")
    assert br.environment()["commit"] == "c0ffee"
    assert br.commit() == "c0ffee"


def test_device_name_cpu_and_note():
    name = br.device_name("cpu", note="shared")
    assert re.fullmatch(r"cpu \(.+, \d+ cores, shared\)", name), name


def test_versions_extra():
    v = br.versions("surely-not-an-installed-package")
    assert v["surely-not-an-installed-package"] is None


def test_record_fills_keys():
    rec = br.record("bench", "auc", 0.75, "fraction", _env(), model="din", dataset="ml1m",
                    seed=0)
    br.validate(rec)
    assert rec == {"benchmark": "bench", "metric": "auc", "value": 0.75, "unit": "fraction",
                   "device": "cpu (test)", "commit": "abc1234",
                   "date": "2026-01-01T00:00:00+00:00", "model": "din", "dataset": "ml1m",
                   "seed": 0, "versions": {"torch": "x"}}
    assert list(rec)[:7] == list(br.REQUIRED_KEYS) and list(rec)[-1] == "versions"


def test_record_default_environment(monkeypatch):
    monkeypatch.setenv("LLMREC_COMMIT", "c0ffee")
    rec = br.record("bench", "speed", None, "samples/s", baseline="x")
    br.validate(rec)
    assert rec["commit"] == "c0ffee" and rec["value"] is None and rec["baseline"] == "x"
    assert "python" in rec["versions"]


def test_record_refuses_environment_keys_as_conditions_and_incomplete_env():
    with pytest.raises(TypeError, match="device"):
        br.record("bench", "auc", 0.5, "", _env(), device="gpu")
    env = _env()
    del env["date"]
    with pytest.raises(br.RecordError, match="date"):
        br.record("bench", "auc", 0.5, "", env)


def test_validate_names_missing_keys():
    rec = br.record("bench", "auc", 0.5, "fraction", _env())
    assert br.validate(rec) is rec
    del rec["unit"], rec["commit"]
    with pytest.raises(br.RecordError) as err:
        br.validate(rec, "f.jsonl:3")
    msg = str(err.value)
    assert "f.jsonl:3" in msg and "unit" in msg and "commit" in msg
    assert "missing required key(s) unit, commit" in msg  # in REQUIRED_KEYS order
    with pytest.raises(br.RecordError, match="JSON object"):
        br.validate([1, 2])


def test_summarise_against_hand_values():
    s = br.summarise([1.0, 2.0, 3.0, 4.0])
    assert s["mean"] == 2.5 and s["n_seeds"] == 4
    assert math.isclose(s["std"], math.sqrt(5 / 3))  # sample std: sum of squares 5 over n-1 = 3
    assert br.summarise([0.7]) == {"mean": 0.7, "std": 0.0, "n_seeds": 1}
    s = br.summarise(x for x in (0.78, 0.80))
    assert math.isclose(s["mean"], 0.79) and math.isclose(s["std"], 0.02 / math.sqrt(2))
    with pytest.raises(ValueError):
        br.summarise([])


def test_append_and_read_back(tmp_path):
    path = tmp_path / "sub" / "r.jsonl"
    assert br.read(path) == []
    first = [br.record("b", "m", i, "count", _env(), seed=i) for i in range(3)]
    assert br.append(path, first) == 3
    before = path.read_bytes()
    assert br.append(path, [br.record("b", "m", "é", "count", _env(), seed=9)]) == 1
    after = path.read_bytes()
    assert after.startswith(before) and after.endswith(b"\n")  # old bytes kept as they were
    assert br.read(path) == [*first, br.record("b", "m", "é", "count", _env(), seed=9)]
    assert br.read(path, check=True)
    assert br.append(path, []) == 0 and path.read_bytes() == after
    assert (path.stat().st_mode & 0o777) != 0o600  # not mkstemp's private mode
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.jsonl"]


def test_append_keeps_mode(tmp_path):
    path = tmp_path / "r.jsonl"
    br.append(path, [br.record("b", "m", 1, "", _env())])
    os.chmod(path, 0o640)
    br.append(path, [br.record("b", "m", 2, "", _env())])
    assert path.stat().st_mode & 0o777 == 0o640


def test_append_validates_all_or_nothing(tmp_path):
    path = tmp_path / "r.jsonl"
    br.append(path, [br.record("b", "m", 1, "", _env())])
    old = path.read_bytes()
    bad = {"benchmark": "b", "metric": "m", "value": 2}
    with pytest.raises(br.RecordError, match="unit, device, commit, date"):
        br.append(path, [br.record("b", "m", 3, "", _env()), bad])
    assert path.read_bytes() == old


def test_append_is_atomic_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    br.append(path, [br.record("b", "m", 1, "", _env())])
    old = path.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed during the write")

    monkeypatch.setattr(br.os, "fsync", killed)  # after the bytes are written, before the rename
    with pytest.raises(KeyboardInterrupt):
        br.append(path, [br.record("b", "m", i, "", _env()) for i in range(1000)])
    monkeypatch.undo()
    assert path.read_bytes() == old  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]  # no temporary left

    monkeypatch.setattr(br.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        br.append(path, [br.record("b", "m", 2, "", _env())])
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]


def test_append_refuses_a_file_ending_in_half_a_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"benchmark": "b", "metric": "m"')
    with pytest.raises(br.RecordError, match="incomplete line"):
        br.append(path, [br.record("b", "m", 1, "", _env())])
    assert path.read_text() == '{"benchmark": "b", "metric": "m"'


def test_read_names_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    good = json.dumps(br.record("b", "m", 1, "", _env()))
    path.write_text(good + "\n\n" + "{not json\n")
    with pytest.raises(br.RecordError, match=r"r\.jsonl:3: not JSON"):
        br.read(path)
    path.write_text(good + "\n" + json.dumps({"benchmark": "b", "metric": "m", "value": 1}) + "\n")
    assert len(br.read(path)) == 2
    with pytest.raises(br.RecordError, match=r"r\.jsonl:2: missing required key\(s\) unit"):
        br.read(path, check=True)


# -- bench/ecpo_record.py (a host's lines carry no unit; the record does) -------------------------

def test_ecpo_record_writes_units(tmp_path, monkeypatch):
    mod = load_bench("ecpo_record")
    monkeypatch.setattr(mod, "RESULTS", tmp_path / "results")
    (tmp_path / "results").mkdir()
    host = {"benchmark": "ecpo", "device": "GPU", "commit": "unknown",
            "date": "2026-01-01T00:00:00+00:00", "versions": {"torch": "x"}, "agent": "sgpt",
            "n_tasks": 100, "model": "qwen2.5-coder-0.5b",
            "config": {"catalog": {"embedder": "minilm"}}}
    metrics = {"SR": 0.01, "Recall@5": 0.02, "avg_expression": 2.4, "avg_rounds": 2.67,
               "failed_turn_rate": 0.04, "WR_overall_vs_base": 0.5,
               "judge_share_first_vs_base": 0.6}
    lines = tmp_path / "lines.jsonl"
    lines.write_text("".join(json.dumps({**host, "metric": m, "value": v}) + "\n"
                             for m, v in metrics.items()))
    model = tmp_path / "run" / "models" / "sgpt"
    model.mkdir(parents=True)
    (model / "llmrec_meta.json").write_text(json.dumps({
        "timestamp": "2026-01-01T01:00:00+00:00", "config": {"sgpt": {"lr": 1e-4}},
        "training": {"tokens_per_second": 1234.5, "rows": 10, "steps": 5, "first_loss": 2.0,
                     "last_loss": 1.0, "train_seconds": 3.0, "tokens_seen": 100,
                     "trainable_parameters": 7}}))
    assert mod.main(["--run-dir", str(tmp_path / "run"), "--lines", str(lines), "--run", "t1",
                     "--commit", "9f569b0"]) == 0
    quality = br.read(tmp_path / "results" / "ecpo.jsonl", check=True)
    assert {r["metric"]: r["unit"] for r in quality} == {
        "SR": "fraction", "Recall@5": "fraction", "avg_expression": "rating 0-5",
        "avg_rounds": "rounds", "failed_turn_rate": "fraction", "WR_overall_vs_base": "fraction",
        "judge_share_first_vs_base": "fraction"}
    assert {r["embedder"] for r in quality} == {"minilm"}
    assert {r["commit"] for r in quality} == {"9f569b0"} and {r["run"] for r in quality} == {"t1"}
    assert [r["value"] for r in quality] == list(metrics.values())
    (train,) = br.read(tmp_path / "results" / "ecpo_training.jsonl", check=True)
    assert train["benchmark"] == "ecpo_sft_lora" and train["unit"] == "tokens/s"
    assert train["value"] == 1234.5 and train["date"] == "2026-01-01T01:00:00+00:00"
    assert train["commit"] == "9f569b0" and train["settings"] == {"lr": 1e-4}
    assert train["model"] == "qwen2.5-coder-0.5b"  # the tuned model, as the quality lines name it
    with pytest.raises(SystemExit, match="no unit known"):
        mod.unit_of("some_new_metric")
