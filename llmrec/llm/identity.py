"""Content fingerprints of local model folders, for cache keys.

A model folder's name says little (two fine-tunes saved to ``out/`` share it), so the knowledge
cache keys entries by a hash of the files that decide the output: weights, config, tokenizer and
chat template. Hashing a few hundred MB takes a second; the result is memoised per (path, size,
mtime) under ``LLMREC_HOME`` so later runs pay nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja", ".gguf", ".tiktoken")
_SKIP = {"llmrec_meta.json"}  # provenance changes with every save, the model does not


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix in _SUFFIXES and p.name not in _SKIP)


def model_fingerprint(path: str | Path) -> str:
    """A short sha256 over the model folder's decisive files (memoised by size and mtime)."""
    from llmrec.artifacts import atomic_file, llmrec_home

    folder = Path(path).resolve()
    if folder.is_file():
        files = [folder]
    else:
        files = _files(folder)
    stat_key = hashlib.sha256(json.dumps(
        [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in files]).encode()).hexdigest()
    memo = llmrec_home() / "fingerprints" / f"{stat_key[:32]}.txt"
    if memo.is_file():
        return memo.read_text().strip()
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode() + b"\0")
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    digest = h.hexdigest()[:16]
    try:
        with atomic_file(memo, "w") as fh:
            fh.write(digest)
    except OSError as exc:  # a read-only home only costs the re-hash next time
        log.debug("could not memoise fingerprint of %s: %s", folder, exc)
    return digest


def fingerprint_text(*parts: object) -> str:
    """A short stable hash of JSON-able parts (cache keys, template hashes)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]

