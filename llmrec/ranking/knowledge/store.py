"""Knowledge vectors aligned to a :class:`~llmrec.ranking.features.FeatureSet`'s table rows.

``llmrec knowledge embed`` stores, per entity kind, a dense block ``chunks [E, F, C, D]`` with a
mask (most slots are padding: an LLM answer has a few sentences per field). A ranking model needs
the vectors of the user-table and item-table rows of its batches, so :func:`load_table` turns the
block into a :class:`KnowledgeTable`:

- ``vectors [N + 1, D]`` float32: every real chunk once, **sorted by field** (``field_slices``
  gives each field's contiguous range), row 0 a zero padding vector. Sorting by field lets a model
  apply its per-field projections as one matmul per field over the whole table, so a batch of any
  size then only gathers small projected rows;
- ``index [R, F, C]``: for table row r, field f, slot j, the chunk's row in ``vectors`` (0 = none);
- ``whole [R, D]``: the whole-text vector (KAR's input), zeros where the entity has no knowledge;
- ``has [R]``: whether the row's entity has any knowledge. Entities without knowledge (a small
  demo cache, an item the LLM was never asked about) get zero vectors and are masked, never
  dropped: their samples still train and evaluate, with the backbone's own features only.

Rows are matched by entity id: ``build_features`` records the entity of every table row
(:meth:`~llmrec.ranking.features.FeatureSet.row_ids`), and a saved run keeps them, so a table can
be aligned without re-reading the data.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ROW_OF = {"user": "user_row", "item": "item_row"}


# ------------------------------------------------------------------------------------------------
@dataclass
class KnowledgeTable:
    """One kind of knowledge (user or item) aligned to a feature set's table rows."""

    kind: str
    field_ids: list[str]
    vectors: torch.Tensor  # [N + 1, D] float32, sorted by field, row 0 zeros
    chunk_field: torch.Tensor  # [N + 1] field of each chunk (row 0: 0)
    field_slices: list[tuple[int, int]]  # [start, end) of each field's chunks in ``vectors``
    index: torch.Tensor  # [R, F, C] int64, 0 = no chunk
    whole: torch.Tensor  # [R, D] float32
    has: torch.Tensor  # [R] bool
    texts: list[str] = field(default_factory=list)  # text of each row of ``vectors``
    entity_ids: list[str] = field(default_factory=list)  # entity id of each table row ("" = pad)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def n_fields(self) -> int:
        return len(self.field_ids)

    @property
    def max_chunks(self) -> int:
        return int(self.index.shape[2])

    def field_means(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Mean chunk vector of each field over the entities of ``rows`` (all if None): [F, D].

        A field no entity of ``rows`` has gets a zero mean.
        """
        idx = self.index if rows is None else self.index[torch.unique(rows.cpu())]
        out = torch.zeros(self.n_fields, self.dim)
        for f in range(self.n_fields):
            ids = idx[:, f].reshape(-1)
            ids = ids[ids > 0]
            if ids.numel():
                out[f] = self.vectors[ids].mean(0)
        return out

    def summary(self) -> dict[str, Any]:
        per_field = [int(e - s) for s, e in self.field_slices]
        return {"kind": self.kind, "rows_with_knowledge": int(self.has.sum()),
                "rows": int(self.has.numel() - 1), "chunks": int(self.vectors.shape[0] - 1),
                "fields": dict(zip(self.field_ids, per_field)), "dim": self.dim,
                "max_chunks": self.max_chunks, **self.source}


def build_table(kind: str, field_ids: list[str], chunks: torch.Tensor, mask: torch.Tensor,
                whole: torch.Tensor, entity_ids: list[str], row_ids: list[str],
                texts: dict[tuple[str, int, int], str] | None = None,
                source: dict[str, Any] | None = None) -> KnowledgeTable:
    """Align per-entity blocks (``chunks [E, F, C, D]``, ``mask [E, F, C]``, ``whole [E, D]``)
    to table rows whose entity ids are ``row_ids`` (row r = ``row_ids[r - 1]``)."""
    E, F, C = mask.shape
    if len(field_ids) != F or chunks.shape[:3] != mask.shape or whole.shape[0] != E:
        raise DataError(f"{kind} knowledge: inconsistent shapes chunks {tuple(chunks.shape)}, "
                        f"mask {tuple(mask.shape)}, whole {tuple(whole.shape)}, "
                        f"{len(field_ids)} fields")
    position = {str(e): i for i, e in enumerate(entity_ids)}
    R = len(row_ids) + 1
    ent_of_row = torch.tensor([-1] + [position.get(str(r), -1) for r in row_ids], dtype=torch.long)
    rows = torch.nonzero(ent_of_row >= 0).squeeze(1)
    ents = ent_of_row[rows]
    nz = mask[ents].nonzero()  # (row position, field, slot), row-major
    nz = nz[torch.argsort(nz[:, 1], stable=True)]  # group by field: per-field projections
    n = nz.shape[0]
    D = chunks.shape[-1]
    vectors = torch.zeros(n + 1, D, dtype=torch.float32)
    if n:
        vectors[1:] = chunks[ents[nz[:, 0]], nz[:, 1], nz[:, 2]].float()
    chunk_field = torch.zeros(n + 1, dtype=torch.long)
    chunk_field[1:] = nz[:, 1]
    index = torch.zeros(R, F, C, dtype=torch.long)
    index[rows[nz[:, 0]], nz[:, 1], nz[:, 2]] = torch.arange(1, n + 1)
    counts = torch.bincount(nz[:, 1], minlength=F).tolist()
    slices, start = [], 1
    for c in counts:
        slices.append((start, start + c))
        start += c
    whole_rows = torch.zeros(R, D, dtype=torch.float32)
    whole_rows[rows] = whole[ents].float()
    has = torch.zeros(R, dtype=torch.bool)
    has[rows] = mask[ents].flatten(1).any(1) | (whole[ents].float().abs().sum(1) > 0)
    names = [""] + [str(r) for r in row_ids]
    text_list = [""] * (n + 1)
    if texts:
        for k, (r, f, c) in enumerate(nz.tolist(), start=1):
            text_list[k] = texts.get((names[int(rows[r])], int(f), int(c)), "")
    return KnowledgeTable(kind=kind, field_ids=list(field_ids), vectors=vectors,
                          chunk_field=chunk_field, field_slices=slices, index=index,
                          whole=whole_rows, has=has, texts=text_list, entity_ids=names,
                          source=dict(source or {}))


_MEMO: dict[tuple, KnowledgeTable] = {}


def load_table(folder: str | Path, kind: str, row_ids: list[str]) -> KnowledgeTable:
    """One kind from an embeddings folder, aligned to ``row_ids`` (memoised per process)."""
    import pandas as pd

    from llmrec.knowledge.embed import load_embeddings

    folder = Path(folder)
    if not (folder / "embeddings.json").is_file():
        raise ConfigError(f"{folder} is not an embeddings folder (no embeddings.json); make one "
                          f"with `llmrec knowledge embed`")
    digest = hashlib.sha256("\n".join(row_ids).encode()).hexdigest()[:16]
    manifest = json.loads((folder / "embeddings.json").read_text())
    key = (str(folder.resolve()), kind, digest, manifest.get("digest"))
    if key in _MEMO:
        return _MEMO[key]
    emb = load_embeddings(folder, kind)
    texts: dict[tuple[str, int, int], str] = {}
    chunk_file = folder / f"{kind}_chunks.parquet"
    if chunk_file.is_file():
        fpos = {f: i for i, f in enumerate(emb["field_ids"])}
        df = pd.read_parquet(chunk_file)
        for eid, fid, c, t in zip(df["entity_id"], df["field"], df["chunk"], df["text"]):
            texts[(str(eid), fpos[fid], int(c))] = t
    source = {"folder": str(folder), "model": emb.get("model"),
              "template": emb.get("template"), "embedder": emb.get("embedder", {}).get("name")}
    table = build_table(kind, list(emb["field_ids"]), emb["chunks"], emb["mask"].bool(),
                        emb["whole"], [str(e) for e in emb["entity_ids"]], row_ids, texts, source)
    _MEMO[key] = table
    log.info("%s knowledge: %d of %d rows covered, %d chunks in %d fields (%s)", kind,
             int(table.has.sum()), len(row_ids), table.vectors.shape[0] - 1, table.n_fields, folder)
    return table


def embeddings_folder(cfg, kind: str) -> Path:
    """The embeddings folder for ``kind`` from an :class:`AugmentConfig` (embedding the cache on
    demand when only ``cache_dir`` is given)."""
    explicit = cfg.item_embeddings if kind == "item" else cfg.user_embeddings
    folder = explicit or cfg.embeddings
    if folder:
        return Path(folder)
    if cfg.cache_dir:
        from llmrec.knowledge.embed import EmbedConfig, run_embed

        entities = "items" if kind == "item" else "users"
        return Path(run_embed(EmbedConfig(cache_dir=cfg.cache_dir, entities=entities,
                                          embedder=cfg.embedder, max_chunks=cfg.max_chunks,
                                          device=cfg.embed_device), out=log.info))
    raise ConfigError("knowledge augmentation needs knowledge vectors: set knowledge.embeddings "
                      "(a `llmrec knowledge embed` folder) or knowledge.cache_dir")


def load_knowledge(cfg, row_ids: dict[str, list[str]]) -> dict[str, KnowledgeTable]:
    """Every kind of ``cfg.kinds`` aligned to the table rows named by ``row_ids``
    ({"user": [...], "item": [...]}, e.g. ``{k: fs.row_ids(k) for k in ("user", "item")}``)."""
    return {kind: load_table(embeddings_folder(cfg, kind), kind, row_ids[kind])
            for kind in cfg.kinds}


def training_rows(fs, kind: str) -> torch.Tensor:
    """Table rows of ``kind`` that training samples use (targets, and behaviours for items)."""
    t = fs.tensors
    train = t["split.train"].cpu()
    rows = [t[ROW_OF[kind]].cpu()[train]]
    if kind == "item":
        h = t["hist_rows"].cpu()[train]
        rows.append(h[h > 0])
    return torch.unique(torch.cat(rows))


def coverage(fs, tables: dict[str, KnowledgeTable]) -> dict[str, dict[str, float]]:
    """Fraction of each split's samples whose user / item has knowledge."""
    out: dict[str, dict[str, float]] = {}
    for kind, table in tables.items():
        rows = fs.tensors[ROW_OF[kind]].cpu()
        has = table.has[rows]
        out[kind] = {s: round(float(has[fs.tensors[f"split.{s}"].cpu()].float().mean()), 4)
                     for s in fs.split_names}
    return out
