"""Oracle knowledge: vectors with a planted signal of known strength, to measure the
augmentation path itself.

A knowledge-augmented model can only be as good as (a) the signal in its knowledge vectors and
(b) its ability to find and use it. Real LLM knowledge mixes both unknowns. An oracle folder (in
the format of ``llmrec knowledge embed``, so KAR and KSER load it like real knowledge) fixes (a):
every entity gets a scalar ``z`` (a z-scored statistic), and one chunk carries it as

    c = normalise(strength * z * u + n)

with ``u`` a fixed unit direction and ``n`` a random unit vector of the entity. Sources of ``z``
(:data:`SOURCES`):

- ``leaky``: the entity's positive rate over **all** CTR samples, test labels included: an upper
  bound no real knowledge can reach;
- ``fair``: from the LM history only (what an LLM prompt may show): a user's share of LM-history
  ratings ``>= label_threshold``; an item's share of its LM-history ratings that are;
- ``noise``: a random normal per entity (nothing to find; the augmentation should not hurt).

Layouts (:data:`LAYOUTS`): ``whole`` puts the signal chunk alone in one field (KAR's whole vector
is that chunk); ``hidden`` gives every entity ``fields x chunks`` chunks (8 x 4 by default), all
random unit vectors except one slot of ``signal_field`` (a random slot per entity), and KAR's
whole vector is the mean of the chunks, as an encoder's vector of a long text is dominated by
everything else in it. So ``whole`` measures whether the path can *use* a signal and ``hidden``
whether it can *select* it.

``decoy`` is ``hidden`` with the other fields' chunks built like the signal chunk from their own
random ``z'`` (``normalise(strength * z' * u + n)``): content that lies along the same direction
as the signal but has nothing to do with the labels, as every field of an LLM's text about a user
speaks of the same tastes in the same words while only one of them predicts clicks. Under
``hidden`` the mean of the chunks keeps most of the signal (a linear read along ``u`` of the
mean of 32 chunks in 384 dimensions still carries ~80% of ``z``'s variance, see
:func:`readout_r2`), so pooling and selection are hard to tell apart; under ``decoy`` the mean
keeps ~1/29 of it and only a path that keeps the signal field apart from the others can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llmrec.errors import ConfigError

SOURCES = ("leaky", "fair", "noise")
LAYOUTS = ("whole", "hidden", "decoy")


def _zscore(values: dict[str, float]) -> dict[str, float]:
    v = np.array(list(values.values()), dtype=np.float64)
    sd = v.std()
    if not len(v) or sd == 0:
        return {k: 0.0 for k in values}
    return {k: float((x - v.mean()) / sd) for k, x in values.items()}


def _rate(df, key: str, col: str, prior_weight: float) -> dict[str, float]:
    """Per ``key`` the (optionally shrunk) mean of ``col``; shrinkage towards the global mean
    with ``prior_weight`` pseudo-observations."""
    g = df.groupby(key, sort=True)[col].agg(["sum", "count"])
    prior = float(df[col].mean()) if len(df) else 0.0
    rate = (g["sum"] + prior_weight * prior) / (g["count"] + prior_weight)
    return {str(k): float(r) for k, r in rate.items()}


def signal_values(split, kind: str, source: str, seed: int = 0,
                  prior_weight: float = 0.0) -> dict[str, float]:
    """``{entity id: z}`` for ``kind`` (user or item) from a :class:`~llmrec.data.splits.Split`.

    Entities the source has no observation of get ``z = 0`` only where they appear in the
    returned mapping; callers treat absent entities as having no knowledge.
    """
    if kind not in ("user", "item"):
        raise ConfigError(f"oracle kind must be user or item, not {kind!r}")
    if source not in SOURCES:
        raise ConfigError(f"oracle source must be one of {list(SOURCES)}, not {source!r}")
    key = f"{kind}_id"
    samples = split.samples
    if source == "noise":
        ids = sorted(set(samples[key].astype(str)) | set(split.history[key].astype(str)))
        rng = np.random.default_rng(seed + (0 if kind == "user" else 1))
        return {i: float(z) for i, z in zip(ids, rng.normal(size=len(ids)))}
    if source == "leaky":
        return _zscore(_rate(samples.assign(**{key: samples[key].astype(str)}), key, "label",
                             prior_weight))
    # fair: the LM history only (positions before each user's cutoff)
    threshold = getattr(getattr(split, "config", None), "label_threshold", 4)
    from llmrec.data.splits import lm_history_rows

    lm = lm_history_rows(split)
    lm = lm.assign(pos=(lm["rating"] >= threshold).astype(np.float64),
                   **{key: lm[key].astype(str)})
    return _zscore(_rate(lm, key, "pos", prior_weight))


def oracle_block(values: dict[str, float], layout: str = "hidden", strength: float = 1.0,
                 fields: int = 8, chunks: int = 4, signal_field: int = 3, dim: int = 384,
                 seed: int = 0) -> dict[str, Any]:
    """One kind's arrays for :func:`~llmrec.ranking.knowledge.synthetic.write_embeddings`."""
    if layout not in LAYOUTS:
        raise ConfigError(f"oracle layout must be one of {list(LAYOUTS)}, not {layout!r}")
    if layout == "whole":
        fields, chunks, signal_field = 1, 1, 0
    if not 0 <= signal_field < fields:
        raise ConfigError(f"signal_field {signal_field} is outside the {fields} fields")
    if strength < 0:
        raise ConfigError(f"strength must be >= 0, got {strength}")
    rng = np.random.default_rng(seed)
    ids = list(values)
    z = np.array([values[i] for i in ids], dtype=np.float64)
    E = len(ids)
    u = rng.normal(size=dim)
    u /= np.linalg.norm(u)

    def unit(n: int) -> np.ndarray:
        x = rng.normal(size=(n, dim))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    block = unit(E * fields * chunks).reshape(E, fields, chunks, dim)
    sig = strength * z[:, None] * u[None, :] + unit(E)
    sig /= np.linalg.norm(sig, axis=1, keepdims=True)
    slot = rng.integers(0, chunks, size=E)
    if layout == "decoy":
        others = [f for f in range(fields) if f != signal_field]
        zd = rng.normal(size=(E, len(others), chunks, 1))
        dec = strength * zd * u + block[:, others]
        block[:, others] = dec / np.linalg.norm(dec, axis=-1, keepdims=True)
    block[np.arange(E), signal_field, slot] = sig
    whole = block.reshape(E, fields * chunks, dim).mean(1)
    names = ["signal" if f == signal_field else f"field{f}" for f in range(fields)]
    return {"ids": ids, "fields": names, "chunks": block, "mask": np.ones(block.shape[:3], bool),
            "whole": whole, "signal_slot": slot, "direction": u, "template": f"oracle-{layout}",
            "texts": [(ids[e], names[signal_field], int(slot[e]), f"signal z={z[e]:+.3f}")
                      for e in range(E)], "z": z, "signal_field": signal_field}


def readout_r2(block: dict[str, Any]) -> dict[str, float]:
    """How much of ``z`` a linear reader can still get from an :func:`oracle_block`'s vectors:
    the squared correlation of ``z`` with the projection on the planted direction ``u`` of

    - ``pooled``: KAR's whole vector (the mean of all chunks);
    - ``field``: the mean of the signal field's chunks alone (what a path that keeps fields apart
      and reads the right one gets without choosing among that field's chunks);
    - ``chunk``: the signal chunk itself (perfect selection).

    The direction is known here, so these are ceilings for any linear read of the same pooling.
    """
    u, z = block["direction"], np.asarray(block["z"], dtype=np.float64)
    ch = block["chunks"]
    e = np.arange(len(z))

    def r2(x: np.ndarray) -> float:
        if len(z) < 2 or z.std() == 0 or x.std() == 0:
            return 0.0
        return float(np.corrcoef(x, z)[0, 1] ** 2)

    return {"pooled": r2(block["whole"] @ u),
            "field": r2(ch[:, block["signal_field"]].mean(1) @ u),
            "chunk": r2(ch[e, block["signal_field"], block["signal_slot"]] @ u)}


def oracle_embeddings(out: str | Path, split, kinds: dict[str, str], layout: str = "hidden",
                      strength: float = 1.0, fields: int = 8, chunks: int = 4,
                      signal_field: int = 3, dim: int = 384, seed: int = 0,
                      prior_weight: float = 0.0) -> Path:
    """Write an oracle folder for ``kinds`` ({"user": "fair", "item": "noise", ...}), with each
    kind's :func:`readout_r2` in ``oracle_readout.json``."""
    from llmrec.artifacts import write_json_atomic
    from llmrec.ranking.knowledge.synthetic import write_embeddings

    blocks, readout = {}, {}
    for i, (kind, source) in enumerate(kinds.items()):
        vals = signal_values(split, kind, source, seed=seed, prior_weight=prior_weight)
        b = oracle_block(vals, layout, strength, fields, chunks, signal_field, dim, seed + 7 * i)
        blocks[kind] = {k: b[k] for k in ("ids", "fields", "chunks", "mask", "whole", "texts",
                                          "template")}
        readout[kind] = readout_r2(b)
    tag = "-".join(f"{k}:{s}" for k, s in kinds.items())
    path = write_embeddings(out, blocks, digest=f"oracle-{tag}-{layout}-{strength}-{seed}",
                            embedder="oracle")
    write_json_atomic(Path(path) / "oracle_readout.json", readout)
    return path
