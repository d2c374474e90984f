"""Item knowledge vectors by item id, for models that take LLM knowledge into their own item
embedding (SASRec's ``knowledge: init | add``, see :mod:`llmrec.ranking.models.sequential.sasrec`).

Where the vectors come from: the run's ``knowledge`` section (:class:`AugmentConfig`, the one KAR
and KSER read), item side only:

- ``knowledge.item_embeddings`` or ``knowledge.embeddings``: a folder written by ``llmrec
  knowledge embed`` (its whole-text vector per item, KAR's input), or a **vector file**
  (``.safetensors`` with ``vectors [E, D]`` and the entity ids in its metadata; written by
  :func:`save_vector_file`, e.g. ``python -m llmrec.ranking.item_knowledge --cache_dir DIR --out
  FILE``, to carry 3 MB instead of a cache and a sentence encoder to another host);
- ``knowledge.cache_dir``: a knowledge cache, embedded on demand (content-addressed, so once and
  reused by every later run).

:func:`vectors_by_item_id` aligns them to the item-id vocabulary of a
:class:`~llmrec.ranking.features.FeatureSet` (row v of the result = vocabulary id v, the row of
the model's id embedding): padding, unknown and missing ids and items without knowledge get zero
vectors and ``has = False``. :func:`project` maps them to a model's width (PCA or a fixed random
projection) for initialisation. :func:`attach_item_knowledge` is what the pipeline calls after
building a model: it does nothing for models without the option.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from llmrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

VECTOR_KEY = "vectors"
IDS_META = "entity_ids"


# -- vector files --------------------------------------------------------------------------------
def save_vector_file(path: str | Path, entity_ids: list[str], vectors: torch.Tensor,
                     source: dict[str, Any] | None = None) -> Path:
    """Write ``vectors [E, D]`` (one row per entity of ``entity_ids``) as a safetensors file,
    atomically; the ids and ``source`` go into its metadata."""
    from safetensors.torch import save

    from llmrec.artifacts import atomic_file

    if vectors.ndim != 2 or vectors.shape[0] != len(entity_ids):
        raise DataError(f"vector file: {len(entity_ids)} ids for vectors of shape "
                        f"{tuple(vectors.shape)}; give one row per id")
    meta = {IDS_META: json.dumps([str(e) for e in entity_ids]),
            "source": json.dumps(source or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as fh:
        fh.write(save({VECTOR_KEY: vectors.detach().cpu().contiguous()}, metadata=meta))
    return path


def load_vector_file(path: str | Path) -> tuple[list[str], torch.Tensor, dict[str, Any]]:
    """(entity ids, vectors [E, D] float32, source) of a file written by :func:`save_vector_file`."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if VECTOR_KEY not in f.keys() or IDS_META not in meta:
                raise DataError(f"{path} is not an item vector file (needs a {VECTOR_KEY!r} "
                                f"tensor and {IDS_META!r} metadata); write one with "
                                f"llmrec.ranking.item_knowledge.save_vector_file")
            vectors = f.get_tensor(VECTOR_KEY).float()
    except DataError:
        raise
    except Exception as exc:  # safetensors' own error type on junk, OSError on unreadable files
        raise DataError(f"{path} cannot be read as a safetensors vector file: {exc}") from None
    ids = json.loads(meta[IDS_META])
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise DataError(f"{path}: {len(ids)} entity ids for vectors of shape "
                        f"{tuple(vectors.shape)}")
    return [str(i) for i in ids], vectors, json.loads(meta.get("source", "{}"))


def whole_vectors(folder: str | Path) -> tuple[list[str], torch.Tensor, dict[str, Any]]:
    """The whole-text item vectors of a ``llmrec knowledge embed`` folder: (ids, [E, D], source)."""
    from llmrec.knowledge.embed import load_embeddings

    folder = Path(folder)
    if not (folder / "embeddings.json").is_file():
        raise ConfigError(f"{folder} is neither an item vector file nor an embeddings folder (no "
                          f"embeddings.json); make one with `llmrec knowledge embed "
                          f"--entities=items`")
    emb = load_embeddings(folder, "item")
    source = {"folder": str(folder), "model": emb.get("model"), "template": emb.get("template"),
              "embedder": (emb.get("embedder") or {}).get("name")}
    return [str(e) for e in emb["entity_ids"]], emb["whole"].float(), source


def item_source(kcfg) -> Path:
    """The folder or vector file named by an :class:`AugmentConfig` (embedding ``cache_dir`` on
    demand when nothing else is given)."""
    from llmrec.ranking.knowledge.store import embeddings_folder

    try:
        return embeddings_folder(kcfg, "item")
    except ConfigError:
        raise ConfigError("the model's knowledge option needs item knowledge vectors: set "
                          "knowledge.item_embeddings (a `llmrec knowledge embed` folder or an "
                          "item vector file) or knowledge.cache_dir (a knowledge cache, embedded "
                          "on demand), or set model_args.knowledge: none") from None


def read_item_vectors(source: str | Path) -> tuple[list[str], torch.Tensor, dict[str, Any]]:
    source = Path(source)
    if source.is_file():
        return load_vector_file(source)
    if not source.exists():
        raise ConfigError(f"item knowledge {source} does not exist; give a `llmrec knowledge "
                          f"embed` folder or an item vector file")
    return whole_vectors(source)


# -- alignment and projection --------------------------------------------------------------------
def vectors_by_item_id(fs, ids: list[str], vectors: torch.Tensor,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Align per-entity ``vectors [E, D]`` (entity ``ids``) to ``fs``'s item-id vocabulary:
    ([V, D] float32, has [V] bool), row v for vocabulary id v; zero rows where ``has`` is False
    (padding / unknown / missing ids, items without knowledge, all-zero vectors)."""
    from llmrec.ranking.features import N_SPECIAL

    names = [n for n, _ in fs.spec.item_fields]
    if "item_id" not in names:
        raise ConfigError("item knowledge is looked up by item id: set features.use_item_id: true")
    col = names.index("item_id")
    V = dict(fs.spec.item_fields)["item_id"]
    rows = fs.row_ids("item")  # entity of table row r = rows[r - 1]
    vid = fs.tensors["item_table"][1:, col].cpu()
    position = {e: i for i, e in enumerate(ids)}
    ent = torch.tensor([position.get(str(r), -1) for r in rows], dtype=torch.long)
    ok = (ent >= 0) & (vid >= N_SPECIAL)  # a real vocabulary id: one item each
    out = torch.zeros(V, vectors.shape[1], dtype=torch.float32)
    out[vid[ok]] = vectors[ent[ok]].float()
    has = torch.zeros(V, dtype=torch.bool)
    has[vid[ok]] = out[vid[ok]].abs().sum(1) > 0
    return out, has


def project(vectors: torch.Tensor, has: torch.Tensor, dim: int, method: str = "pca",
            std: float = 0.02, seed: int = 0) -> torch.Tensor:
    """[V, D] -> [V, dim]: the rows with knowledge, centred on their mean, mapped by PCA (the top
    ``dim`` principal directions) or a fixed random Gaussian matrix (``seed``), then scaled to a
    per-entry standard deviation of ``std``; rows without knowledge are zeros."""
    x = vectors[has].double()
    n, D = x.shape
    out = torch.zeros(vectors.shape[0], dim, dtype=torch.float32)
    if n == 0:
        return out
    x = x - x.mean(0, keepdim=True)
    if method == "pca":
        if dim > min(n, D):
            raise ConfigError(f"knowledge_init pca: {dim} components from {n} items with "
                              f"{D}-d vectors; use knowledge_init: random or a smaller width")
        _, _, vh = torch.linalg.svd(x, full_matrices=False)
        # a fixed sign per component (largest loading positive): the result depends only on data
        signs = torch.sign(vh[:dim].gather(1, vh[:dim].abs().argmax(1, keepdim=True)))
        y = x @ (vh[:dim] * signs).T
    elif method == "random":
        g = torch.Generator().manual_seed(seed)
        y = x @ torch.randn(D, dim, generator=g, dtype=torch.float64)
    else:
        raise ConfigError(f"knowledge_init must be pca or random, not {method!r}")
    scale = y.std()
    y = y * (std / scale) if scale > 0 else y
    out[has] = y.float()
    return out


# -- the pipeline's hook -------------------------------------------------------------------------
def attach_item_knowledge(model, fs, kcfg) -> dict[str, Any] | None:
    """Give ``model`` its item knowledge vectors when its ``knowledge`` option asks for them
    (``model.item_knowledge != "none"``); None (and nothing done) otherwise."""
    mode = getattr(model, "item_knowledge", "none")
    if mode == "none":
        return None
    source = item_source(kcfg)
    ids, vectors, meta = read_item_vectors(source)
    aligned, has = vectors_by_item_id(fs, ids, vectors)
    n_vocab = has.numel() - 3  # padding, unknown and missing are not items
    if not bool(has.any()):
        raise DataError(f"item knowledge {source}: none of its {len(ids)} entity ids (e.g. "
                        f"{ids[:3]}) is an item of these features (e.g. {fs.row_ids('item')[:3]}): "
                        f"the vectors are for another dataset; embed this dataset's item "
                        f"knowledge")
    model.load_item_knowledge(aligned, has)
    summary = {"mode": mode, "source": str(source), "dim": int(vectors.shape[1]),
               "items_with_knowledge": int(has.sum()), "item_vocab": n_vocab, **meta}
    log.info("item knowledge (%s): %d of %d trained item ids covered, %d-d, from %s", mode,
             summary["items_with_knowledge"], n_vocab, summary["dim"], source)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Export the whole-text item vectors of a cache or embeddings folder to one vector file."""
    import argparse

    from llmrec.ranking.knowledge.config import AugmentConfig

    ap = argparse.ArgumentParser(prog="python -m llmrec.ranking.item_knowledge",
                                 description=main.__doc__)
    ap.add_argument("--cache_dir", help="knowledge cache (embedded on demand, once)")
    ap.add_argument("--embeddings", help="a `llmrec knowledge embed` folder")
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", required=True, help="the .safetensors vector file to write")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    kcfg = AugmentConfig(embeddings=args.embeddings, cache_dir=args.cache_dir,
                         embedder=args.embedder, embed_device=args.device, kinds=["item"])
    ids, vectors, meta = read_item_vectors(item_source(kcfg))
    save_vector_file(args.out, ids, vectors.to(torch.float16), meta)
    print(f"{len(ids)} item vectors ({vectors.shape[1]}-d, float16) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
