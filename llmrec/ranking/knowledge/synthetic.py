"""Synthetic knowledge vectors for tests and smoke runs: no LLM, no sentence encoder.

:func:`synthetic_embeddings` writes a folder in the format of ``llmrec knowledge embed`` (so the
real loading path is exercised) with random unit chunk vectors for some of the entities, a shared
"homogeneous" direction per field (what de-homogenisation removes) and, optionally, one chunk per
entity that carries a signal (for checks that a model can find it). :func:`write_embeddings` is
the folder writer it shares with the oracle benchmark (:mod:`llmrec.ranking.knowledge.oracle`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np


def write_embeddings(out: str | Path, blocks: dict[str, dict], digest: str,
                     embedder: str = "synthetic") -> Path:
    """Write one ``knowledge embed``-format folder.

    ``blocks[kind]`` holds ``ids`` (entity ids), ``fields`` (field names), ``chunks``
    ``[E, F, C, D]``, ``mask`` ``[E, F, C]``, ``whole`` ``[E, D]`` and optionally ``texts``
    (rows ``(entity_id, field, chunk, text)``) and ``template``.
    """
    import pandas as pd
    from safetensors.numpy import save_file

    from llmrec.artifacts import atomic_dir

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dims = {int(b["chunks"].shape[-1]) for b in blocks.values()}
    manifest = {"digest": digest, "embedder": {"name": embedder, "dim": max(dims)},
                "chunking": {}, "kinds": {}}
    with atomic_dir(out) as tmp:
        tmp = Path(tmp)
        for kind, b in blocks.items():
            chunks = np.asarray(b["chunks"], dtype=np.float16)
            mask = np.asarray(b["mask"], dtype=bool)
            fields, ids = list(b["fields"]), [str(i) for i in b["ids"]]
            save_file({"chunks": chunks, "mask": mask,
                       "n_chunks": mask.sum(-1).astype(np.int32),
                       "whole": np.asarray(b["whole"], dtype=np.float16)},
                      str(tmp / f"{kind}.safetensors"),
                      metadata={"kind": kind, "fields": json.dumps(fields)})
            rows = b.get("texts") or [(ids[e], fields[f], int(c), f"{kind} {ids[e]} "
                                       f"{fields[f]} chunk {int(c)}")
                                      for e, f, c in zip(*np.nonzero(mask))]
            pd.DataFrame(rows, columns=["entity_id", "field", "chunk", "text"]).to_parquet(
                tmp / f"{kind}_chunks.parquet", index=False)
            manifest["kinds"][kind] = {"entity_ids": ids, "keys": ids, "field_ids": fields,
                                       "max_chunks": int(chunks.shape[2]),
                                       "dim": int(chunks.shape[3]),
                                       "template": b.get("template", "synthetic"),
                                       "model": embedder, "n_chunks": int(mask.sum())}
        (tmp / "embeddings.json").write_text(json.dumps(manifest, indent=1))
    return out


def synthetic_embeddings(out: str | Path, entity_ids: dict[str, Sequence[str]],
                         fields: Sequence[str] = ("genre", "plot_theme", "mood_tone"),
                         dim: int = 16, max_chunks: int = 3, coverage: float = 1.0,
                         seed: int = 0, homogeneous: float = 2.0) -> Path:
    """Write ``<kind>.safetensors``, ``<kind>_chunks.parquet`` and ``embeddings.json`` under
    ``out`` for each kind in ``entity_ids`` ({"item": [...], "user": [...]})."""
    rng = np.random.default_rng(seed)
    blocks = {}
    for kind, ids in entity_ids.items():
        ids = [str(i) for i in ids]
        keep = [i for i in ids if rng.random() < coverage]
        E, F, C = len(keep), len(fields), max_chunks
        common = rng.normal(size=(F, dim)) * homogeneous
        chunks = np.zeros((E, F, C, dim), dtype=np.float16)
        mask = np.zeros((E, F, C), dtype=bool)
        rows = []
        for e, eid in enumerate(keep):
            for f, fid in enumerate(fields):
                n = int(rng.integers(0, C + 1))
                for c in range(n):
                    v = common[f] + rng.normal(size=dim)
                    chunks[e, f, c] = v / np.linalg.norm(v)
                    mask[e, f, c] = True
                    rows.append((eid, fid, c, f"{kind} {eid} {fid} chunk {c}"))
        whole = rng.normal(size=(E, dim)).astype(np.float16)
        blocks[kind] = {"ids": keep, "fields": list(fields), "chunks": chunks, "mask": mask,
                        "whole": whole, "texts": rows}
    return write_embeddings(out, blocks, digest=f"synthetic-{seed}")
