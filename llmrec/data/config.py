"""Which dataset to load and where it is: :class:`DataConfig`, and the bundled copies.

Its own module so that the source modules (``movielens``, ``redial``, ``trec``, ``generic``) can
import it without importing :mod:`llmrec.data.loaders`, which imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmrec.config import option
from llmrec.errors import DataError

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


def bundled_path(name: str = "ml-latest-small") -> Path:
    """The folder of a dataset shipped inside the package."""
    folder = _BUNDLED_ROOT / name
    if not folder.is_dir():
        have = sorted(p.name for p in _BUNDLED_ROOT.iterdir() if p.is_dir()) \
            if _BUNDLED_ROOT.is_dir() else []
        raise DataError(f"no bundled copy of {name!r} (bundled: {', '.join(have) or 'none'}); "
                        f"set path to your own copy")
    return folder
