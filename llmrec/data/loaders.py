"""Loading a dataset by name: the :data:`DATASETS` table and :func:`load_data`.

This module owns the public entry point and the list of supported sources. The parsing itself
lives beside it, one module per family of formats: ``movielens`` (ml-latest-small, ML-1M,
ML-100K), ``redial`` (ReDial dialogues and its evaluation turns), ``trec`` (topics, qrels, runs)
and ``generic`` (any CSV / Parquet file through a column mapping, plus the validated readers every
loader shares). Every loader only reads; none writes anything. :class:`DataConfig` and
:func:`bundled_path` live in :mod:`llmrec.data.config`, which the source modules import (this
module imports them, so they cannot import it); both are re-exported here.
"""

from __future__ import annotations

import difflib
import logging
from typing import Callable

from llmrec.data.config import DataConfig, bundled_path
from llmrec.data.generic import load_csv, load_parquet
from llmrec.data.movielens import load_ml_1m, load_ml_100k, load_ml_latest_small
from llmrec.data.redial import load_redial, load_redial_eval
from llmrec.data.tables import RecData
from llmrec.data.trec import load_trec
from llmrec.errors import DataError

log = logging.getLogger(__name__)

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


__all__ = ["DATASETS", "DataConfig", "bundled_path", "load_data"]
