"""Saving and loading the datasets SSRA produces: HF datasets written atomically with provenance.

Every dataset folder holds what ``datasets`` writes with ``save_to_disk`` plus ``llmrec_meta.json``
(resolved config, package versions, git revision, and the SSRA-specific provenance each caller
adds: models and their revisions, prompt hashes, seeds, round).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from llmrec.artifacts import atomic_dir, read_meta, write_meta
from llmrec.errors import DataError

log = logging.getLogger(__name__)


def _as_dataset(table: Any):
    import datasets
    import pandas as pd

    if isinstance(table, (datasets.Dataset, datasets.DatasetDict)):
        return table
    if isinstance(table, pd.DataFrame):
        return datasets.Dataset.from_pandas(table.reset_index(drop=True), preserve_index=False)
    if isinstance(table, dict) and all(isinstance(v, (pd.DataFrame, datasets.Dataset))
                                       for v in table.values()):
        return datasets.DatasetDict({k: _as_dataset(v) for k, v in table.items()})
    if isinstance(table, list):
        return datasets.Dataset.from_list(table)
    raise TypeError(f"cannot save a {type(table).__name__} as a dataset")


def save_dataset(table: Any, path: str | Path, config: Any = None, **provenance: Any) -> Path:
    """Write ``table`` (DataFrame, list of rows, Dataset, or a dict of those for a DatasetDict)
    to ``path`` atomically, with ``llmrec_meta.json`` beside it."""
    ds = _as_dataset(table)
    path = Path(path)
    with atomic_dir(path) as tmp:
        ds.save_to_disk(str(tmp))
        write_meta(tmp, config, **provenance)
    log.info("wrote %s", path)
    return path


def _load_one(path: Path):
    import datasets

    state = path / "state.json"
    if state.is_file() and not json.loads(state.read_text()).get("_data_files"):
        # save_to_disk writes no shard for an empty dataset and load_from_disk then fails
        # (IndexError in concat_tables); rebuild the empty table from its saved features
        info = datasets.DatasetInfo.from_directory(str(path))
        return datasets.Dataset.from_dict({k: [] for k in info.features}, features=info.features)
    return datasets.Dataset.load_from_disk(str(path))


def load_dataset_dir(path: str | Path):
    """A dataset (or DatasetDict) written by :func:`save_dataset`."""
    import datasets

    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path} does not exist: run the step that writes it first")
    splits = path / "dataset_dict.json"
    if splits.is_file():
        names = json.loads(splits.read_text())["splits"]
        return datasets.DatasetDict({n: _load_one(path / n) for n in names})
    return _load_one(path)


def load_frame(path: str | Path, split: str | None = None):
    """A saved dataset (or one split of a DatasetDict) as a pandas DataFrame."""
    ds = load_dataset_dir(path)
    if split is not None:
        if split not in ds:
            raise DataError(f"{path} has no split {split!r} (has: {', '.join(ds)})")
        ds = ds[split]
    return ds.to_pandas()


def meta_of(path: str | Path) -> dict[str, Any] | None:
    return read_meta(path)
