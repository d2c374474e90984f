"""`llmrec knowledge import` takes text, or an error naming the entry: a number or a list is not
stored as its str(), a source without entries (or whose entries are all empty, or none of the
asked ids) imports nothing with a non-zero exit; counts like --limit / --n below 1 are errors,
not "1" or "all but one"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmrec.config import load_config
from llmrec.errors import ConfigError, DataError
from llmrec.knowledge.importer import ImportConfig, import_rows, read_source

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name,text,where,found", [
    ("a.json", '{"1": "A comedy.", "2": 5}', "entry '2'", "found int 5"),
    ("b.json", '{"1": ["a", "b"]}', "entry '1'", "found list"),
    ("c.json", '{"1": {"genre": 3}}', "entry '1'", "field 'genre' is int 3"),
    ("d.jsonl", '{"id": 1, "text": "ok"}\n{"id": 2, "text": 7.5}\n', "line 2 (id 2)",
     "found float 7.5"),
    ("e.jsonl", '{"id": 1, "text": 3}\n', "line 1 (id 1)", "found int 3"),  # one line, still lines
    ("f.jsonl", '{"id": [1], "text": "x"}\n', "line 1", "is not a string or a whole number"),
    ("g.jsonl", '{"id": 1, "fields": "x"}\n', "line 1", "'fields' must be an object"),
])
def test_non_text_values_are_errors_naming_the_entry(tmp_path, name, text, where, found):
    path = _write(tmp_path, name, text)
    with pytest.raises(DataError) as info:
        list(read_source(path))
    msg = str(info.value)
    assert f"{path}, {where}" in msg and found in msg


def test_text_and_whole_number_ids_are_accepted(tmp_path):
    path = _write(tmp_path, "ok.jsonl", '{"id": 7, "text": "A comedy."}\n'
                                        '{"id": "8", "fields": {"genre": "Drama.", "x": null}}\n')
    assert list(read_source(path)) == [("7", "A comedy."), ("8", {"genre": "Drama.", "x": None})]


@pytest.mark.parametrize("text,why", [
    ("{}", "holds no entries"),
    ("", "holds no entries"),
    ("\n\n", "holds no entries"),
    ("[]", "holds no entries"),
    ('{"1": "", "2": "  "}', "all 2 matching entries are empty"),
])
def test_a_source_with_nothing_to_import_is_an_error(tmp_path, text, why):
    path = _write(tmp_path, "s.json", text)
    with pytest.raises(DataError, match=why):
        import_rows(ImportConfig(source=str(path)))


def test_ids_matching_nothing_is_an_error(tmp_path):
    path = _write(tmp_path, "s.json", '{"1": "A comedy."}')
    with pytest.raises(DataError, match=r"none of the 1 ids asked for \(--ids\)"):
        import_rows(ImportConfig(source=str(path), ids=["99"]))


def test_the_command_exits_non_zero_and_writes_nothing(tmp_path):
    env = {**os.environ, "LLMREC_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    cache = tmp_path / "cache"
    for text in ("{}", '{"1": 5}'):
        src = _write(tmp_path, "s.json", text)
        proc = subprocess.run([sys.executable, "-m", "llmrec", "-q", "knowledge", "import",
                               f"--source={src}", f"--cache_dir={cache}"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert not list(cache.glob("shards/*.parquet"))
    src = _write(tmp_path, "s.json", json.dumps({"1": "A funny comedy."}))
    proc = subprocess.run([sys.executable, "-m", "llmrec", "-q", "knowledge", "import",
                           f"--source={src}", f"--cache_dir={cache}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and len(list(cache.glob("shards/*.parquet"))) == 1


@pytest.mark.parametrize("cls_path,flag", [
    ("llmrec.knowledge.generate:GenerateConfig", "--limit=-1"),
    ("llmrec.knowledge.generate:GenerateConfig", "--limit=0"),
    ("llmrec.knowledge.importer:ImportConfig", "--limit=-1"),
    ("llmrec.data.cli:ShowConfig", "--n=-1"),
    ("llmrec.knowledge.cli:ShowConfig", "--n=0"),
])
def test_counts_below_one_are_errors(cls_path, flag):
    import importlib

    mod, name = cls_path.split(":")
    cls = getattr(importlib.import_module(mod), name)
    key = flag[2:].split("=")[0]
    with pytest.raises(ConfigError, match=f"{key} must be >= 1"):
        load_config(cls, None, [flag])
