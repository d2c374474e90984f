"""Using a split saved by ``llmrec data split`` (``split_path``) only with the data it was made from.

A saved split carries the dataset name, its protocol config and a fingerprint of the interactions
it was made from (see :mod:`llmrec.data.splits`). A stage given ``split_path`` calls
:func:`check_saved_split` before loading anything (is it a split, of this dataset, and does the
config of the run say what the split was made with?) and :func:`load_saved_split` once the data is
loaded (were these very interactions split?). A mismatch is an error that names both sides and
the fix, because training on a split of other data "works": it merges the user sets and prints
numbers that mean nothing.

The run's ``split`` section is ignored when ``split_path`` is given, so a run config that leaves
it at the defaults takes the saved split's config (and the provenance of the run then records what
ran); one that sets it to something else is refused.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from llmrec.config import from_dict, to_dict
from llmrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def read_split_record(path: str | Path) -> dict[str, Any]:
    """``split.json`` of a saved split, or a DataError saying how to make one."""
    p = Path(path)
    f = p / "split.json"
    if not f.is_file():
        raise DataError(f"split_path {p} is not a saved split (no split.json inside); create "
                        f"one with `llmrec data split --out DIR`")
    try:
        rec = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{f} cannot be read ({exc}); recreate the split with `llmrec data "
                        f"split`") from None
    if not isinstance(rec, dict) or "config" not in rec:
        raise DataError(f"{f} holds no split config; recreate the split with `llmrec data split`")
    return rec


def check_saved_split(path: str | Path, data_cfg: Any, split_cfg: Any) -> Any:
    """The :class:`~llmrec.data.splits.SplitConfig` the split at ``path`` was made with, after
    checking it is a split of ``data_cfg``'s dataset and that ``split_cfg`` (the run's own
    ``split`` section) is either the default or that same config."""
    from llmrec.artifacts import diff_keys
    from llmrec.data.splits import SplitConfig

    rec = read_split_record(path)
    saved_name = rec.get("dataset") or ""
    if saved_name and saved_name != data_cfg.name:
        raise ConfigError(f"split_path {path} is a split of dataset {saved_name!r}, but this run "
                          f"loads {data_cfg.name!r}: make a split of this dataset (`llmrec data "
                          f"split {data_cfg.name} --out DIR`) or set --data.name={saved_name} "
                          f"and its --data.path")
    saved = from_dict(SplitConfig, rec["config"])
    if split_cfg is not None and to_dict(split_cfg) != to_dict(saved):
        if to_dict(split_cfg) != to_dict(SplitConfig()):
            changed = diff_keys(to_dict(saved), to_dict(split_cfg))
            raise ConfigError(
                f"split_path {path} was made with other split settings than this run's "
                f"({', '.join('split.' + k for k in changed)}); with split_path the split "
                f"options are not used: drop them, or drop split_path to make the split here")
        log.info("using the split settings saved with %s: %s", path, to_dict(saved))
    return saved


def load_saved_split(path: str | Path, data) -> Any:
    """Load the split at ``path`` after checking it was made from ``data``'s interactions (the
    split's fingerprint recomputed on them)."""
    from llmrec.data.splits import Split, _fingerprint, _sorted_history

    split = Split.load(path)
    if split.dataset and split.dataset != data.name:
        raise ConfigError(f"split_path {path} is a split of dataset {split.dataset!r}, not of "
                          f"{data.name!r}: make a split of this dataset with `llmrec data split`")
    if not split.fingerprint:
        log.warning("split_path %s records no fingerprint (made by an older llmrec?): it cannot "
                    "be checked against the data; recreate it with `llmrec data split`", path)
        return split
    here = _fingerprint(_sorted_history(data.df("interactions")), split.config)
    if here != split.fingerprint:
        raise ConfigError(f"split_path {path} was made from other interactions than the data "
                          f"this run loads ({data.name} at {data.source}: fingerprint {here}, the "
                          f"split's {split.fingerprint}): make the split again from this data "
                          f"(`llmrec data split --out DIR` with the same --data options)")
    return split
