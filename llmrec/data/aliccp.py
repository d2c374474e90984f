"""Click-to-conversion logs for entire-space multi-task models (ESMM, MMoE, PLE, PUB): Ali-CCP
and AliExpress, read in their published schemas.

**Ali-CCP** (Alibaba Click and Conversion Prediction, the ESMM paper's public data; Tianchi data
set 408), per split two files:

- ``sample_skeleton_{train,test}.csv``: ``sample_id, click, conversion, common_feature_index,
  feature_num, feature_list``;
- ``common_features_{train,test}.csv``: ``common_feature_index, feature_num, feature_list`` (the
  user-side features shared by the samples of one request);

``feature_list`` is ``feature_num`` entries joined by ``\\x01``, each
``field_id \\x02 feature_id \\x03 value``. :func:`read_aliccp_raw` keeps the single-valued
fields of :data:`ALICCP_FIELDS` (user 101 and profile 121-129, item 205-216, user x item
combinations 508-853, position 301; the multi-valued behaviour fields such as ``109_14`` are
left out), a sample's own value first, then its common features'.

The **processed** Ali-CCP CSV of torch-rechub (``ali_ccp_{train,val,test}_sample.csv``: header
``click, purchase``, the sparse field ids as columns, dense ``D*`` columns) is read by
:func:`read_aliccp_processed`.

**AliExpress** (the AliExpress_{NL,ES,FR,US} sets of the MTL benchmarks): ``train.csv`` /
``test.csv`` with ``search_id, categorical_1..16, numerical_1..63, click, conversion``
(:data:`ALIEXPRESS_COLUMNS`).

:func:`load_ctcvr` returns ``(tables, split, feature_config)``: ``click`` and ``conversion`` as
named labels, ``label`` = click. In the entire space a conversion implies a click; a row with a
conversion but no click is kept with conversion 0 and counted in ``info`` (``conversion_without_click``).
Validation is carved from train with a seed when the source has no validation file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llmrec.config import option
from llmrec.data.splits import FlatSplit
from llmrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

ALICCP_FIELDS = ("101", "121", "122", "124", "125", "126", "127", "128", "129", "205", "206",
                 "207", "210", "216", "508", "509", "702", "853", "301")
ALICCP_SKELETON = ("sample_id", "click", "conversion", "common_feature_index", "feature_num",
                   "feature_list")
ALICCP_COMMON = ("common_feature_index", "feature_num", "feature_list")
ALIEXPRESS_COLUMNS = ("search_id", *(f"categorical_{i}" for i in range(1, 17)),
                      *(f"numerical_{i}" for i in range(1, 64)), "click", "conversion")
SPLIT_NAMES = ("train", "valid", "test")


def _parse_features(text: str, where: str, expected: int | None) -> dict[str, str]:
    out: dict[str, str] = {}
    entries = text.split("\x01") if text else []
    if expected is not None and len(entries) != expected:
        raise DataError(f"{where}: feature_num says {expected} but feature_list has "
                        f"{len(entries)} entries")
    for e in entries:
        field, sep, rest = e.partition("\x02")
        fid, sep2, _value = rest.partition("\x03")
        if not sep or not sep2:
            raise DataError(f"{where}: feature entry {e[:40]!r} is not field\\x02id\\x03value")
        out.setdefault(field, fid)
    return out


def _lines(path: Path):
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        for ln, line in enumerate(fh, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if line:
                yield ln, line


def read_aliccp_raw(skeleton: str | Path, common: str | Path):
    """One Ali-CCP split from its two raw files: a frame with ``click``, ``conversion`` and one
    string column per field of :data:`ALICCP_FIELDS` (``"-"`` where the sample has none)."""
    import pandas as pd

    skeleton, common = Path(skeleton), Path(common)
    shared: dict[str, dict[str, str]] = {}
    for ln, line in _lines(common):
        parts = line.split(",", 2)
        if len(parts) != 3:
            raise DataError(f"{common}, line {ln}: expected {', '.join(ALICCP_COMMON)}")
        try:
            n = int(parts[1])
        except ValueError:
            raise DataError(f"{common}, line {ln}: feature_num {parts[1]!r} is not a number") \
                from None
        shared[parts[0]] = _parse_features(parts[2], f"{common}, line {ln}", n)
    rows = []
    for ln, line in _lines(skeleton):
        parts = line.split(",", 5)
        where = f"{skeleton}, line {ln}"
        if len(parts) != 6:
            raise DataError(f"{where}: expected the 6 fields {', '.join(ALICCP_SKELETON)}")
        if parts[1] not in ("0", "1") or parts[2] not in ("0", "1"):
            raise DataError(f"{where}: click / conversion must be 0 or 1 (got {parts[1]!r}, "
                            f"{parts[2]!r})")
        if parts[3] not in shared:
            raise DataError(f"{where}: common_feature_index {parts[3]!r} is not in {common}")
        try:
            n = int(parts[4])
        except ValueError:
            raise DataError(f"{where}: feature_num {parts[4]!r} is not a number") from None
        feats = {**shared[parts[3]], **_parse_features(parts[5], where, n)}
        rows.append({"click": int(parts[1]), "conversion": int(parts[2]),
                     **{f: feats.get(f, "-") for f in ALICCP_FIELDS}})
    if not rows:
        raise DataError(f"{skeleton}: no samples")
    return pd.DataFrame(rows)


def read_aliccp_processed(path: str | Path):
    """torch-rechub's processed Ali-CCP CSV: ``click``, ``conversion`` (from ``purchase``), the
    sparse field columns as strings and the dense ``D*`` columns as floats."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("click", "purchase", *ALICCP_FIELDS) if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} (has: {', '.join(frame.columns)})")
    frame = frame.rename(columns={"purchase": "conversion"})
    return _numeric(frame, ["click", "conversion",
                            *[c for c in frame.columns if c.startswith("D")]], path)


def read_aliexpress(path: str | Path):
    """One AliExpress file (:data:`ALIEXPRESS_COLUMNS` in that order)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if tuple(frame.columns) != ALIEXPRESS_COLUMNS:
        missing = [c for c in ALIEXPRESS_COLUMNS if c not in frame.columns]
        raise DataError(f"{path}: not the AliExpress schema (search_id, categorical_1..16, "
                        f"numerical_1..63, click, conversion); missing {missing or 'none'}, "
                        f"{len(frame.columns)} columns")
    return _numeric(frame, [c for c in ALIEXPRESS_COLUMNS if c.startswith("numerical_")]
                    + ["click", "conversion"], path)


@dataclass
class CtcvrConfig:
    """Which click-to-conversion files to read (Ali-CCP raw or processed, AliExpress)."""

    format: Literal["aliccp", "aliccp_processed", "aliexpress"] = option(
        "aliexpress", help="aliccp: sample_skeleton_* + common_features_*; aliccp_processed: "
                           "torch-rechub's CSV; aliexpress: train.csv / test.csv")
    path: str = option("data/AliExpress_NL", help="folder with the files")
    train: str = option("", help="train file name (default per format)")
    valid: str = option("", help="validation file (empty: carve valid_frac of train)")
    test: str = option("", help="test file name (default per format)")
    valid_frac: float = option(0.1, help="share of train held out for validation when there "
                                         "is no validation file")
    seed: int = option(42, help="seed of the validation carve-out")
    name: str = option("", help="dataset name (default: the format)")
    min_count: int = option(1, help="categorical values seen fewer times in train map to unknown")

    def __post_init__(self) -> None:
        if not 0 < self.valid_frac < 1:
            raise ConfigError(f"ctcvr.valid_frac must be in (0, 1), got {self.valid_frac}")


DEFAULT_FILES = {
    "aliccp": ("sample_skeleton_train.csv", "", "sample_skeleton_test.csv"),
    "aliccp_processed": ("ali_ccp_train_sample.csv", "ali_ccp_val_sample.csv",
                         "ali_ccp_test_sample.csv"),
    "aliexpress": ("train.csv", "", "test.csv"),
}


def _read(cfg: CtcvrConfig, folder: Path, name: str):
    if cfg.format == "aliccp":
        common = name.replace("sample_skeleton", "common_features")
        return read_aliccp_raw(folder / name, folder / common)
    if cfg.format == "aliccp_processed":
        return read_aliccp_processed(folder / name)
    return read_aliexpress(folder / name)


def load_ctcvr(cfg: CtcvrConfig | None = None):
    """``(tables, split, feature_config)`` of a click-to-conversion source (see the module)."""
    import numpy as np
    import pandas as pd

    from llmrec.data.tables import RecData
    from llmrec.ranking.features import FeatureConfig

    cfg = cfg or CtcvrConfig()
    folder = Path(cfg.path).expanduser()
    d_train, d_valid, d_test = DEFAULT_FILES[cfg.format]
    train_name = cfg.train or d_train
    valid_name = cfg.valid or d_valid
    test_name = cfg.test or d_test
    parts = {"train": _read(cfg, folder, train_name), "test": _read(cfg, folder, test_name)}
    if valid_name:
        parts["valid"] = _read(cfg, folder, valid_name)
    else:
        tr = parts["train"]
        rng = np.random.default_rng(cfg.seed)
        is_valid = np.zeros(len(tr), dtype=bool)
        is_valid[rng.permutation(len(tr))[:max(1, int(round(cfg.valid_frac * len(tr))))]] = True
        parts["valid"], parts["train"] = tr[is_valid], tr[~is_valid]
    frame = pd.concat([p.assign(split=s) for s, p in parts.items()], ignore_index=True)
    click = frame["click"].to_numpy(np.float32)
    conv = frame["conversion"].to_numpy(np.float32)
    orphan = int(((conv > 0) & (click <= 0)).sum())
    if cfg.format == "aliexpress":
        context = [f"categorical_{i}" for i in range(1, 17)]
        numeric = [f"numerical_{i}" for i in range(1, 64)]
        user = np.full(len(frame), "0", dtype=object)
    else:
        context = [f for f in ALICCP_FIELDS if f != "101"]
        numeric = [c for c in frame.columns if c.startswith("D")] \
            if cfg.format == "aliccp_processed" else []
        user = frame["101"].astype(str).to_numpy()
    samples = pd.DataFrame({"user_id": user, "item_id": "0", "split": frame["split"],
                            "position": 0, "label": click, "click": click,
                            "conversion": conv * click,
                            **{f"f{c}" if c[0].isdigit() else c: frame[c].astype(str)
                               for c in context},
                            **{c: frame[c].to_numpy(np.float32) for c in numeric}})
    context = [f"f{c}" if c[0].isdigit() else c for c in context]
    counts = {s: int((samples["split"] == s).sum()) for s in SPLIT_NAMES}
    info = {"format": cfg.format, "files": [str(folder / n) for n in
                                            (train_name, valid_name, test_name) if n],
            "splits": counts, "conversion_without_click": orphan,
            "positive_rate": {lab: {s: float(samples.loc[samples["split"] == s, lab].mean())
                                    for s in SPLIT_NAMES} for lab in ("click", "conversion")},
            "validation": valid_name or f"{cfg.valid_frac:g} of train, seed {cfg.seed}"}
    name = cfg.name or cfg.format
    fingerprint = hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode()
                                 ).hexdigest()[:16]
    data = RecData(name=name, tables={}, source=str(folder), info=dict(info))
    split = FlatSplit(config=cfg, samples=samples, dataset=name, fingerprint=fingerprint,
                      info=info, protocol=f"{cfg.format} files")
    feature_cfg = FeatureConfig(
        max_hist_len=0, user_fields=[], item_fields=[], item_multi_fields=[],
        use_user_id=cfg.format != "aliexpress", use_item_id=False, use_hist_rating=False,
        context_fields=context, numeric_fields=numeric, labels=["click", "conversion"],
        min_count=cfg.min_count)
    log.info("%s: %s, %d conversions without a click", name, counts, orphan)
    return data, split, feature_cfg


def _numeric(frame, columns, path):
    """``frame`` with ``columns`` parsed as numbers; the first cell that is not one is an error
    naming the file, the data row and the column."""
    import pandas as pd

    for c in columns:
        vals = pd.to_numeric(frame[c], errors="coerce")
        if vals.isna().any():
            i = int(vals.isna().to_numpy().argmax())
            raise DataError(f"{path}, data row {i + 1}: column {c!r} is not numeric "
                            f"({frame[c].iloc[i]!r})")
        frame[c] = vals
    return frame
