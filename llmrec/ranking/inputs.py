"""Checks that a ranking run's saved inputs (``split_path``, ``features_path``) are what its config
says, run before any data is loaded (:func:`check_inputs`, called by
:func:`llmrec.ranking.pipeline.prepare_features`).

- ``split_path``: see :mod:`llmrec.data.saved_split` (same dataset; the run's ``split`` section
  takes the saved split's settings, or is refused when it names others).
- ``features_path`` holding encoded features: they are reused only when they were built from the
  same ``data`` and ``features`` settings and the same split (the same ``split`` settings, or a
  ``split_path`` split with the same fingerprint). Its ``llmrec_meta.json`` records the config
  that built it and ``spec.json`` the dataset and split fingerprint; a mismatch names the
  settings that differ. Without this, a changed ``--features.max_hist_len`` or another dataset
  would silently train on the old features while the run's provenance records the new settings.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from llmrec.errors import ConfigError

log = logging.getLogger(__name__)

FEATURES_FILE = "features.safetensors"


def check_inputs(cfg: Any) -> None:
    """Refuse a ``split_path`` / ``features_path`` that does not match ``cfg`` (a
    :class:`~llmrec.ranking.pipeline.RankConfig`); adopt the saved split's settings into
    ``cfg.split`` when ``cfg`` left them at the defaults."""
    from llmrec.data.saved_split import check_saved_split

    if cfg.split_path:
        cfg.split = check_saved_split(cfg.split_path, cfg.data, cfg.split)
    if cfg.features_path and (Path(cfg.features_path) / FEATURES_FILE).is_file():
        check_features(cfg.features_path, cfg)


def _stored(path: Path, name: str) -> dict[str, Any] | None:
    try:
        obj = json.loads((path / name).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def check_features(path: str | Path, cfg: Any) -> None:
    """Raise a ConfigError if the features at ``path`` were built with other data, split or
    feature settings than ``cfg``'s."""
    from llmrec.artifacts import canonical, diff_keys
    from llmrec.data.saved_split import read_split_record

    path = Path(path)
    meta = _stored(path, "llmrec_meta.json") or {}
    built = meta.get("config") if isinstance(meta.get("config"), dict) else None
    info = (_stored(path, "spec.json") or {}).get("info") or {}
    changed: list[str] = []
    hint = ""
    want_fp = read_split_record(cfg.split_path).get("fingerprint") if cfg.split_path else None
    if info.get("dataset") and info["dataset"] != cfg.data.name:
        changed.append(f"dataset ({info['dataset']} there, {cfg.data.name} here)")
    if built is None:
        log.warning("%s records no config of the run that built it: only its dataset and split "
                    "fingerprint can be checked", path)
    else:
        for section in ("data", "features"):
            if isinstance(built.get(section), dict):
                changed += [f"{section}.{k}" for k in
                            diff_keys(built[section], canonical(getattr(cfg, section)))]
        if cfg.split_path is None:
            if built.get("split_path"):
                changed.append("split_path")
                hint = f" (they were built on the split saved in {built['split_path']})"
            elif isinstance(built.get("split"), dict):
                changed += [f"split.{k}" for k in diff_keys(built["split"], canonical(cfg.split))]
    if want_fp and info.get("split_fingerprint") and info["split_fingerprint"] != want_fp:
        changed.append(f"split (fingerprint {info['split_fingerprint']} there, {want_fp} in "
                       f"{cfg.split_path})")
    if changed:
        raise ConfigError(
            f"features_path {path} holds features built with other settings than this run's: "
            f"{', '.join(dict.fromkeys(changed))}{hint}. Use another --features_path (they are "
            f"built and saved there), delete {path} to rebuild them, or set those options as "
            f"they were (see {path}/llmrec_meta.json)")
