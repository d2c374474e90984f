"""Files llmrec writes get the permissions a plain open() gives (0666 less the umask), so shared
caches work for a group; URL credentials never reach a saved record.

Real files, a real `llmrec data split` process, the real knowledge cache and trainer checkpoint
writers (safetensors writes 0600 on its own: the atomic writers must still honour the umask).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from llmrec.artifacts import (atomic_dir, atomic_file, current_umask, provenance,
                              write_json_atomic, write_meta)
from llmrec.config import redact_url, to_dict

ROOT = Path(__file__).resolve().parents[1]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o027])
def test_atomic_writes_honour_the_umask(tmp_path, mask):
    from safetensors.numpy import save_file
    import numpy as np

    with umask(mask):
        assert current_umask() == mask
        want = 0o666 & ~mask
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        with atomic_file(tmp_path / "b.bin") as fh:
            fh.write(b"x")
        with atomic_dir(tmp_path / "d") as tmp:
            save_file({"x": np.zeros(2, dtype=np.float32)}, str(tmp / "t.safetensors"))
            (tmp / "plain.txt").write_text("x")
            write_meta(tmp, {"k": 1})
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open() gives, for reference
        assert mode(plain) == want
        for p in (tmp_path / "a.json", tmp_path / "b.bin", tmp_path / "d" / "t.safetensors",
                  tmp_path / "d" / "plain.txt", tmp_path / "d" / "llmrec_meta.json"):
            assert mode(p) == want, (p, oct(mode(p)))
        assert mode(tmp_path / "d") == 0o777 & ~mask


def test_cache_shards_cache_json_and_checkpoints_are_group_readable(tmp_path):
    from llmrec.knowledge.cache import KnowledgeCache
    from llmrec.ranking.features import FeatureConfig, build_features
    from llmrec.ranking.registry import build_backbone
    from llmrec.ranking.synthetic import make_synthetic
    from llmrec.ranking.trainer import TrainConfig, Trainer

    with umask(0o002):
        cache = KnowledgeCache(tmp_path / "cache").ensure()
        row = {"key": "k1", "entity": "item", "entity_id": "1", "template": "t",
               "template_hash": "h", "model": "m", "model_revision": "r", "sampling": "{}",
               "seed": 0, "cutoff": None, "prompt_hash": "p", "field_ids": ["a"],
               "field_texts": ["x"], "status": "ok", "missing": [], "raw": "x", "attempts": 1,
               "prompt_tokens": 1, "completion_tokens": 1, "backend": "b", "job": "j"}
        shard = cache.write([row])
        assert mode(shard) == 0o664 and mode(cache.root / "cache.json") == 0o664

        tables, split = make_synthetic(40, 20, mean_len=10, seed=3)
        fs = build_features(tables, split, FeatureConfig(max_hist_len=4, max_multi_len=3))
        model = build_backbone("dnn", fs.spec, embed_dim=8, hidden=(16,))
        out = tmp_path / "run"
        Trainer(model, fs, TrainConfig(epochs=1, device="cpu", batch_size=64),
                output_dir=out).fit()
        files = [p for p in out.rglob("*") if p.is_file()]
        assert any(p.parent.name == "checkpoint" and p.suffix == ".safetensors" for p in files)
        assert {str(p.relative_to(out)): oct(mode(p)) for p in files} == \
            {str(p.relative_to(out)): oct(0o664) for p in files}


def test_a_real_split_is_written_0644(tmp_path):
    env = {**os.environ, "LLMREC_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c",
                           "import os, sys; os.umask(0o022); from llmrec.cli import main; "
                           "sys.exit(main(['-q', 'data', 'split', '--out=s']))"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    modes = {p.name: oct(mode(p)) for p in (tmp_path / "s").iterdir()}
    assert modes == {name: oct(0o644) for name in modes} and "llmrec_meta.json" in modes


# --------------------------------------------------------------------------- credentials


def test_redact_url():
    assert redact_url("http://user:key@host:8000/v1") == "http://***@host:8000/v1"
    assert redact_url("https://sk-123@api.example.com") == "https://***@api.example.com"
    assert redact_url("--llm.base_url=http://u:p@127.0.0.1/v1 --x=a@b") == \
        "--llm.base_url=http://***@127.0.0.1/v1 --x=a@b"
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


def test_run_records_never_hold_url_credentials(tmp_path, monkeypatch):
    from llmrec.knowledge.generate import GenerateConfig, run_generate
    from llmrec.llm import LLMConfig
    from llmrec.llm.base import Generation, LLMBackend

    class Echo(LLMBackend):
        name = "echo"
        model_id = property(lambda self: "echo")
        model_revision = property(lambda self: "v1")

        def generate(self, conversations, sampling=None, *, seeds=None, json_schema=None):
            return [Generation("{}") for _ in conversations]

        def score_options(self, conversations, options):
            raise NotImplementedError

    url = "http://alice:sekrit-key@127.0.0.1:9/v1"
    monkeypatch.setattr(sys, "argv", ["llmrec", "knowledge", "generate", f"--llm.base_url={url}"])
    llm = LLMConfig(backend="openai", base_url=url, guided=False)
    assert "sekrit" not in json.dumps(to_dict(llm)) and "sekrit" not in json.dumps(provenance(llm))
    cfg = GenerateConfig(limit=2, cache_dir=str(tmp_path / "c"), max_attempts=1, llm=llm)
    run_generate(cfg, Echo(llm), out=lambda *_: None)
    import pyarrow.parquet as pq

    written = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in written) and any(p.parent.name == "runs"
                                                               for p in written)
    for p in written:
        blob = p.read_bytes()
        if p.suffix == ".parquet":
            blob = json.dumps({k.decode(): v.decode() for k, v in
                               (pq.read_schema(p).metadata or {}).items()}).encode()
        assert b"sekrit" not in blob, p
    assert b"***@127.0.0.1" in (next((tmp_path / "c" / "runs").iterdir())).read_bytes()
