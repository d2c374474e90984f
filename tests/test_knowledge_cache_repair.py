"""A corrupted knowledge-cache shard (truncated or junk Parquet) no longer blocks the cache: it is
named, moved aside as ``<name>.corrupt-<time>``, every command goes on with the other shards,
and a resumed ``knowledge generate`` makes again what it held. Real shards, really truncated;
the commands run as real processes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from llmrec.knowledge.cache import KnowledgeCache
from llmrec.knowledge.generate import GenerateConfig, run_generate
from llmrec.llm import LLMConfig
from llmrec.llm.base import Generation, LLMBackend

ROOT = Path(__file__).resolve().parents[1]


def _row(key: str, eid: str) -> dict:
    return {"key": key, "entity": "item", "entity_id": eid, "template": "item_movie",
            "template_hash": "h", "model": "m", "model_revision": "r", "sampling": "{}",
            "seed": 0, "cutoff": None, "prompt_hash": "p", "field_ids": ["genre"],
            "field_texts": [f"text {eid}"], "status": "ok", "missing": [], "raw": "x",
            "attempts": 1, "prompt_tokens": 1, "completion_tokens": 1, "backend": "b", "job": "j"}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _cache_with_three_shards(root: Path) -> tuple[KnowledgeCache, list[Path]]:
    cache = KnowledgeCache(root).ensure()
    shards = [cache.write([_row(f"k{i}", str(i)), _row(f"k{i}b", f"{i}b")]) for i in range(3)]
    return cache, shards


def test_truncated_and_junk_shards_are_moved_aside_and_the_rest_is_read(tmp_path, caplog):
    cache, shards = _cache_with_three_shards(tmp_path / "c")
    _truncate(shards[0])
    shards[2].write_bytes(b"this is not parquet at all")
    fresh = KnowledgeCache(tmp_path / "c")
    with caplog.at_level(logging.WARNING, logger="llmrec.knowledge.cache"):
        df = fresh.read()
    assert sorted(df["entity_id"]) == ["1", "1b"]
    for bad in (shards[0], shards[2]):
        assert bad.name in caplog.text and "moved it aside" in caplog.text
        assert not bad.exists()
        moved = list(bad.parent.glob(bad.name + ".corrupt-*"))
        assert len(moved) == 1 and moved[0].stat().st_size > 0  # kept, not deleted
    # every reader goes on: done keys, stats (which names the moved files), a new process
    assert KnowledgeCache(tmp_path / "c").done_keys() == {"k1", "k1b"}
    stats = KnowledgeCache(tmp_path / "c").stats()
    assert stats["entries"] == 2 and stats["shards"] == 1 and len(stats["corrupt_shards"]) == 2


def test_an_empty_shard_file_is_corrupt_too(tmp_path):
    cache, shards = _cache_with_three_shards(tmp_path / "c")
    shards[1].write_bytes(b"")
    assert KnowledgeCache(tmp_path / "c").done_keys() == {"k0", "k0b", "k2", "k2b"}


class Echo(LLMBackend):
    """Good JSON for every prompt; counts the prompts it is asked."""

    name = "echo"
    model_id = property(lambda self: "echo")
    model_revision = property(lambda self: "v1")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.asked = 0

    def generate(self, conversations, sampling=None, *, seeds=None, json_schema=None):
        self.asked += len(conversations)
        return [Generation(json.dumps({"genre": "Comedy."})) for _ in conversations]

    def score_options(self, conversations, options):
        raise NotImplementedError


def test_resume_regenerates_what_a_corrupt_shard_held(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    cfg = GenerateConfig(limit=6, flush_every=2, cache_dir=str(tmp_path / "c"), max_attempts=1,
                         llm=LLMConfig(guided=False))
    backend = Echo(cfg.llm)
    run_generate(cfg, backend, out=lambda *_: None)
    shards = KnowledgeCache(tmp_path / "c").shard_files()
    assert backend.asked == 6 and len(shards) == 3
    held = set(pq.read_table(shards[1], columns=["key"]).column("key").to_pylist())
    _truncate(shards[1])
    backend.asked = 0
    summary = run_generate(cfg, backend, out=lambda *_: None)
    assert backend.asked == 2 and summary["totals"]["generated"] == 2
    assert summary["totals"]["cached"] == 4
    df = KnowledgeCache(tmp_path / "c").read()
    assert len(df) == 6 and held <= set(df["key"])


def test_commands_go_on_with_a_warning_naming_the_shard(tmp_path):
    _, shards = _cache_with_three_shards(tmp_path / "c")
    _truncate(shards[1])
    env = {**os.environ, "LLMREC_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "llmrec", "-q", "knowledge", *args,
                               f"--cache_dir={tmp_path / 'c'}"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    stats = run("stats")
    assert stats.returncode == 0 and "Traceback" not in stats.stderr
    assert shards[1].name in stats.stderr and "moved it aside" in stats.stderr
    assert "4 entries in 2 shards" in stats.stdout and "1 unreadable shard(s)" in stats.stdout
    for args in (("show", "--id=2"), ("export", f"--out={tmp_path / 'exp'}")):
        proc = run(*args)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / "exp" / "knowledge.parquet")) == 4
