"""Loading a dataset by name: :class:`DataConfig`, the :data:`DATASETS` table and :func:`load_data`.

This module owns the public entry point and the list of supported sources. The parsing itself
lives beside it, one module per family of formats: ``movielens`` (ml-latest-small, ML-1M,
ML-100K), ``redial`` (ReDial dialogues and its evaluation turns), ``trec`` (topics, qrels, runs)
and ``generic`` (any CSV / Parquet file through a column mapping, plus the validated readers every
loader shares). Every loader only reads; none writes anything.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from llmrec.config import option
from llmrec.data.generic import load_csv, load_parquet
from llmrec.data.movielens import load_ml_1m, load_ml_100k, load_ml_latest_small
from llmrec.data.redial import load_redial, load_redial_eval
from llmrec.data.tables import RecData
from llmrec.data.trec import load_trec
from llmrec.errors import DataError

log = logging.getLogger(__name__)

_BUNDLED_ROOT = Path(__file__).resolve().parents[1] / "resources" / "data"


@dataclass
class DataConfig:
    """Which dataset to load and where it is."""

    name: str = option("ml-latest-small", help="dataset kind, one of: ml-latest-small, "
                       "movielens-1m, movielens-100k, redial, redial-eval, trec, csv, parquet")
    path: str | None = option(None, help="folder (or file, for csv/parquet and redial) holding "
                              "the dataset; leave unset only for the bundled ml-latest-small")
    columns: dict[str, str] = option({}, help="csv/parquet: canonical column -> column in the "
                                     "file, e.g. {user_id: uid, item_id: iid, rating: score}")
    table: str = option("interactions", help="csv/parquet: which canonical table the file holds "
                        "(interactions, items, users, judgments, queries)")
    items_path: str | None = option(None, help="csv/parquet: optional items file in the same "
                                    "format, read as the items table")
    items_columns: dict[str, str] = option({}, help="csv/parquet: column mapping for items_path "
                                           "(canonical column -> column in the file)")
    split: str = option("test", help="redial / redial-eval: which split file to read "
                        "({split}_data.jsonl / {split}_data_processed.jsonl), e.g. test or valid")
    sep: str = option(",", help="csv: field separator (write \\t for tab)")


# Explicit on purpose: adding a source means adding a line here, and the list in the error
# message for an unknown name stays exact.
DATASETS: dict[str, Callable[[DataConfig], RecData]] = {
    "ml-latest-small": load_ml_latest_small,
    "movielens-1m": load_ml_1m,
    "movielens-100k": load_ml_100k,
    "redial": load_redial,
    "redial-eval": load_redial_eval,
    "trec": load_trec,
    "csv": load_csv,
    "parquet": load_parquet,
}


def bundled_path(name: str = "ml-latest-small") -> Path:
    """The folder of a dataset shipped inside the package."""
    folder = _BUNDLED_ROOT / name
    if not folder.is_dir():
        have = sorted(p.name for p in _BUNDLED_ROOT.iterdir() if p.is_dir()) \
            if _BUNDLED_ROOT.is_dir() else []
        raise DataError(f"no bundled copy of {name!r} (bundled: {', '.join(have) or 'none'}); "
                        f"set path to your own copy")
    return folder


def load_data(cfg: DataConfig) -> RecData:
    """Load the dataset ``cfg`` names into canonical tables."""
    loader = DATASETS.get(cfg.name)
    if loader is None:
        close = difflib.get_close_matches(cfg.name, list(DATASETS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DataError(f"unknown dataset {cfg.name!r}.{hint} Valid names: {', '.join(DATASETS)}")
    data = loader(cfg)
    log.info("loaded %s from %s: %s", cfg.name, data.source,
             ", ".join(f"{t} {len(ds):,}" for t, ds in data.tables.items()))
    return data
