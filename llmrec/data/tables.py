"""Canonical tables and the :class:`RecData` container every loader returns.

Canonical tables (all optional; a dataset has the ones its source provides):

``users``         user_id (str) + profile fields (e.g. gender, age, occupation, zip)
``items``         item_id (str), title (str), text fields: genres (list[str]), tags (list[str]),
                  year (int or null), plot / text (str) ...
``interactions``  user_id (str), item_id (str), rating (float32, null if implicit),
                  timestamp (int64 seconds, null if unknown)
``dialogues``     dialogue_id (str), turns (list of {speaker, text}), mentioned / liked /
                  disliked (list[str] of item ids), seeker_id, recommender_id
``judgments``     query_id (str), doc_id (str), grade (int8 0..3)
``queries``       query_id (str), text (str)

Datasets may carry extra tables of their own (ReDial evaluation turns, a TREC run). Ids are
strings everywhere so that every loader and every later stage agree on one key type.
Tables are HF ``datasets.Dataset`` objects backed by Arrow; ``RecData.df(name)`` gives a cached
pandas view for analytics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.errors import DataError

CANONICAL_TABLES = ("users", "items", "interactions", "dialogues", "judgments", "queries")

# Columns each canonical table must have (extra columns are allowed).
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("user_id",),
    "items": ("item_id", "title"),
    "interactions": ("user_id", "item_id", "rating", "timestamp"),
    "dialogues": ("dialogue_id", "turns", "mentioned", "liked", "disliked"),
    "judgments": ("query_id", "doc_id", "grade"),
    "queries": ("query_id", "text"),
}


@dataclass
class RecData:
    """A named bundle of tables loaded from one source."""

    name: str
    tables: dict[str, Any]  # table name -> datasets.Dataset
    source: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    _frames: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for tname, ds in self.tables.items():
            missing = [c for c in REQUIRED_COLUMNS.get(tname, ()) if c not in ds.column_names]
            if missing:
                raise DataError(
                    f"dataset {self.name!r}: table {tname!r} lacks required column(s) "
                    f"{', '.join(missing)} (has: {', '.join(ds.column_names)})"
                )

    def has(self, table: str) -> bool:
        return table in self.tables

    def table(self, table: str):
        if table not in self.tables:
            raise DataError(
                f"dataset {self.name!r} has no {table!r} table (it has: "
                f"{', '.join(self.tables) or 'none'}); choose a dataset that provides it"
            )
        return self.tables[table]

    def df(self, table: str):
        """A pandas view of a table (cached; do not mutate it)."""
        if table not in self._frames:
            self._frames[table] = self.table(table).to_pandas()
        return self._frames[table]

    @property
    def users(self):
        return self.tables.get("users")

    @property
    def items(self):
        return self.tables.get("items")

    @property
    def interactions(self):
        return self.tables.get("interactions")

    @property
    def dialogues(self):
        return self.tables.get("dialogues")

    @property
    def judgments(self):
        return self.tables.get("judgments")

    def save(self, path: str | Path, config: Any = None) -> Path:
        """Write every table as Parquet plus provenance, atomically."""
        from llmrec.artifacts import atomic_dir, write_meta

        path = Path(path)
        with atomic_dir(path) as tmp:
            for tname, ds in self.tables.items():
                ds.to_parquet(str(tmp / f"{tname}.parquet"))
            (tmp / "recdata.json").write_text(json.dumps(
                {"name": self.name, "source": self.source, "info": self.info,
                 "tables": sorted(self.tables)}, indent=2))
            write_meta(tmp, config)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RecData":
        """Load a folder written by :meth:`save`."""
        path = Path(path)
        manifest = path / "recdata.json"
        if not manifest.is_file():
            raise DataError(f"{path} is not a saved llmrec dataset (no recdata.json inside)")
        meta = json.loads(manifest.read_text())
        tables = {t: table_from_parquet(path / f"{t}.parquet") for t in meta["tables"]}
        return cls(name=meta["name"], tables=tables, source=meta.get("source", str(path)),
                   info=meta.get("info", {}))


def table_from_pandas(df) -> Any:
    """An in-memory Arrow-backed ``datasets.Dataset`` from a DataFrame (no cache files)."""
    import datasets
    import pyarrow as pa

    return datasets.Dataset(pa.Table.from_pandas(df, preserve_index=False))


def table_from_parquet(path: str | Path) -> Any:
    import datasets
    import pyarrow.parquet as pq

    return datasets.Dataset(pq.read_table(str(path)))
