"""The knowledge cache: shards, deduplicating reads, claims between writers, SIGKILL resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmrec.knowledge.cache import KnowledgeCache


def _row(key: str, eid: str = "1", **kw):
    base = {"key": key, "entity": "item", "entity_id": eid, "template": "t", "template_hash": "h",
            "model": "m", "model_revision": "r", "sampling": "{}", "seed": 0, "cutoff": None,
            "prompt_hash": "p", "field_ids": ["genre"], "field_texts": [f"text {key}"],
            "status": "ok", "missing": [], "raw": "", "attempts": 1, "prompt_tokens": 3,
            "completion_tokens": 4, "backend": "hf", "job": "j"}
    base.update(kw)
    return base


def test_write_read_dedupe_and_filters(tmp_path):
    c = KnowledgeCache(tmp_path)
    c.write([_row("a", "1"), _row("b", "2", entity="user")], {"who": "test"})
    c.write([_row("a", "1", field_texts=["later duplicate"]), _row("c", "3")])
    df = c.read()
    assert sorted(df["key"]) == ["a", "b", "c"]
    assert df[df["key"] == "a"]["field_texts"].iloc[0].tolist() == ["text a"]  # first wins
    assert list(c.read(entity="user")["key"]) == ["b"]
    assert c.done_keys() == {"a", "b", "c"}
    other = KnowledgeCache(tmp_path)  # a fresh reader sees the same
    assert other.done_keys() == {"a", "b", "c"}
    s = other.stats()
    assert s["entries"] == 3 and s["shards"] == 2
    import pyarrow.parquet as pq

    meta = pq.read_schema(c.shard_files()[0]).metadata[b"llmrec"]
    assert json.loads(meta) == {"who": "test"}


def test_no_partial_shard_is_ever_visible(tmp_path):
    c = KnowledgeCache(tmp_path).ensure()
    (c.shards / ".20990101-x.parquet.abc.tmp").write_bytes(b"half a parquet file")
    c.write([_row("a")])
    assert c.done_keys() == {"a"} and len(c.shard_files()) == 1


def test_claims_exclude_live_writers_and_take_over_dead_ones(tmp_path):
    a = KnowledgeCache(tmp_path)
    b = KnowledgeCache(tmp_path)
    assert a.claim(["k1", "k2"]) == ["k1", "k2"]
    assert b.claim(["k1", "k2", "k3"]) == ["k3"]  # a's process is alive
    b.release(["k1"])  # not b's claim: untouched
    assert b.claim(["k1"]) == []
    a.release(["k1", "k2"])
    assert b.claim(["k1", "k2"]) == ["k1", "k2"]
    # a claim left by a process that no longer exists is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / "claims" / "k9.claim").write_text(json.dumps(
        {"host": a.host, "pid": int(dead), "writer": "gone", "time": time.time()}))
    assert b.claim(["k9"]) == ["k9"]
    # and so is one older than the ttl, whoever holds it
    (tmp_path / "claims" / "k8.claim").write_text(json.dumps(
        {"host": "elsewhere", "pid": 1, "writer": "old", "time": time.time() - 10}))
    assert KnowledgeCache(tmp_path, claim_ttl=5).claim(["k8"]) == ["k8"]


# --- real processes ---------------------------------------------------------------------------

WORKER = r"""
import json, sys
from llmrec.config import from_dict
from llmrec.knowledge.generate import GenerateConfig, run_generate
cfg = from_dict(GenerateConfig, json.loads(sys.argv[1]))
s = run_generate(cfg, out=lambda *_: None)
print("SUMMARY " + json.dumps(s["totals"]))
"""


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    from llmrec.models.tiny import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("tiny_llama_cache"))


def _cfg(tiny, cache, **kw):
    cfg = {"entities": "items", "limit": 36, "cache_dir": str(cache), "flush_every": 3,
           "llm": {"model": str(tiny), "max_new_tokens": 6, "batch_size": 8}}
    cfg.update(kw)
    return cfg


def _env(home):
    env = dict(os.environ, LLMREC_HOME=str(home), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               PYTHONUNBUFFERED="1")
    env.pop("LLMREC_QUIET", None)
    return env


def _start(cfg, home):
    return subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(cfg)], env=_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    line = [ln for ln in out.splitlines() if ln.startswith("SUMMARY ")][-1]
    return json.loads(line[len("SUMMARY "):])


def _all_rows(cache: Path):
    import pyarrow.parquet as pq

    keys = []
    for f in sorted((cache / "shards").glob("*.parquet")):
        keys += pq.read_table(f, columns=["key"]).column("key").to_pylist()
    return keys


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(tiny_path, tmp_path):
    cache = tmp_path / "cache"
    cfg = _cfg(tiny_path, cache)
    proc = _start(cfg, tmp_path / "home")
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if len(list((cache / "shards").glob("*.parquet"))) >= 2:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _all_rows(cache)
    assert 0 < len(before) < 36
    assert len(set(before)) == len(before)
    # the killed writer's claims are still there; the next run takes them over
    assert list((cache / "claims").glob("*.claim"))
    totals = _finish(_start(cfg, tmp_path / "home"))
    assert totals["cached"] == len(before)
    assert totals["generated"] == 36 - len(before)
    after = _all_rows(cache)
    assert len(after) == len(set(after)) == 36
    assert set(before) <= set(after)
    assert not list((cache / "claims").glob("*.claim"))
    again = _finish(_start(cfg, tmp_path / "home"))
    assert again["cached"] == 36 and again["generated"] == 0


@pytest.mark.slow
def test_two_writers_at_once_share_the_work(tiny_path, tmp_path):
    cache = tmp_path / "cache"
    cfg = _cfg(tiny_path, cache, flush_every=2)
    a, b = _start(cfg, tmp_path / "home"), _start(cfg, tmp_path / "home")
    ta, tb = _finish(a), _finish(b)
    keys = _all_rows(cache)
    assert len(keys) == len(set(keys)) == 36
    assert ta["generated"] + tb["generated"] == 36
    for t in (ta, tb):  # every planned entity is accounted for, by this writer or the other
        assert t["generated"] + t["cached"] + t["skipped_claimed"] + t["failed"] == 36


@pytest.mark.slow
def test_shards_split_one_job_exactly(tiny_path, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    _finish(_start(_cfg(tiny_path, whole, limit=12), tmp_path / "home"))
    t0 = _finish(_start(_cfg(tiny_path, split, limit=12, shard="0/2"), tmp_path / "home"))
    t1 = _finish(_start(_cfg(tiny_path, split, limit=12, shard="1/2"), tmp_path / "home"))
    assert t0["planned"] + t1["planned"] == 12 and t0["planned"] and t1["planned"]
    assert sorted(_all_rows(split)) == sorted(_all_rows(whole))
