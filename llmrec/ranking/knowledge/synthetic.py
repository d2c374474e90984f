"""Synthetic knowledge vectors for tests and smoke runs: no LLM, no sentence encoder.

:func:`synthetic_embeddings` writes a folder in the format of ``llmrec knowledge embed`` (so the
real loading path is exercised) with random unit chunk vectors for some of the entities, a shared
"homogeneous" direction per field (what de-homogenisation removes) and, optionally, one chunk per
entity that carries a signal (for checks that a model can find it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np


def synthetic_embeddings(out: str | Path, entity_ids: dict[str, Sequence[str]],
                         fields: Sequence[str] = ("genre", "plot_theme", "mood_tone"),
                         dim: int = 16, max_chunks: int = 3, coverage: float = 1.0,
                         seed: int = 0, homogeneous: float = 2.0) -> Path:
    """Write ``<kind>.safetensors``, ``<kind>_chunks.parquet`` and ``embeddings.json`` under
    ``out`` for each kind in ``entity_ids`` ({"item": [...], "user": [...]})."""
    import pandas as pd
    from safetensors.numpy import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    manifest = {"digest": f"synthetic-{seed}", "embedder": {"name": "synthetic", "dim": dim},
                "chunking": {}, "kinds": {}}
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
        save_file({"chunks": chunks, "mask": mask, "n_chunks": mask.sum(-1).astype(np.int32),
                   "whole": whole}, str(out / f"{kind}.safetensors"),
                  metadata={"kind": kind, "fields": json.dumps(list(fields))})
        pd.DataFrame(rows, columns=["entity_id", "field", "chunk", "text"]).to_parquet(
            out / f"{kind}_chunks.parquet", index=False)
        manifest["kinds"][kind] = {"entity_ids": keep, "keys": keep, "field_ids": list(fields),
                                   "max_chunks": C, "dim": dim, "template": "synthetic",
                                   "model": "synthetic", "n_chunks": int(mask.sum())}
    (out / "embeddings.json").write_text(json.dumps(manifest, indent=1))
    return out
