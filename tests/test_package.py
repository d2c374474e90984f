"""Package-level promises: fast import without heavy optional deps, CLI help, atomic artifacts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llmrec.artifacts import atomic_dir, atomic_file, read_meta, write_meta


def _run_py(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_is_light_and_fast():
    code = ("import sys, time; t = time.perf_counter(); import llmrec, llmrec.cli, llmrec.config; "
            "dt = time.perf_counter() - t; "
            "bad = [m for m in ('vllm', 'trl', 'peft', 'torch', 'transformers', 'datasets') if m in sys.modules]; "
            "print(dt, ','.join(bad))")
    dt, _, bad = _run_py(code).partition(" ")
    assert float(dt) < 1.0
    assert bad == "", f"import llmrec pulled in {bad}"


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "llmrec.cli", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def test_cli_help_everywhere():
    top = _cli("--help")
    assert top.returncode == 0 and "data" in top.stdout and "env" in top.stdout
    for args in (("data", "--help"), ("data", "stats", "--help"), ("data", "split", "--help"),
                 ("data", "show", "--help"), ("env", "--help")):
        r = _cli(*args)
        assert r.returncode == 0, (args, r.stderr)
    r = _cli("data", "split", "--help")
    assert "--split.max_lm_history=int" in r.stdout and "LM-history" in r.stdout


def test_cli_unknown_key_is_a_clear_error():
    r = _cli("data", "split", "--split.sed=1")
    assert r.returncode == 2
    assert "unknown config key 'split.sed'" in r.stderr and "Did you mean 'split.seed'" in r.stderr
    assert "Traceback" not in r.stderr


def test_env_reports_backends():
    r = _cli("env", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["backends"]["hf"]["usable"] is True
    assert "vllm" in info["backends"] and info["backends"]["vllm"]["why"]
    assert info["devices"][0]["device"] == "cpu"


def test_atomic_file_keeps_old_content_on_failure(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(p, "w") as fh:
            fh.write("new half")
            raise RuntimeError("killed")
    assert p.read_text() == "old"
    assert [x.name for x in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_replaces_whole_or_nothing(tmp_path):
    d = tmp_path / "out"
    with atomic_dir(d) as t:
        (t / "x").write_text("1")
        write_meta(t, {"k": 1})
    with pytest.raises(RuntimeError):
        with atomic_dir(d) as t:
            (t / "x").write_text("2")
            raise RuntimeError("killed")
    assert (d / "x").read_text() == "1"
    meta = read_meta(d)
    assert meta["config"] == {"k": 1} and "versions" in meta and "timestamp" in meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
