"""BARS-format CTR data (reczoo/BARS, FuxiCTR): CSV files of one sample per row, read for the
ranking engine.

A BARS split is up to three files (``train``, ``valid``, ``test``), each a CSV with a header,
a 0/1 label column and categorical columns (Frappe_x1: ``label,user,item,daytime,weekday,
isweekend,homework,cost,weather,country,city``, CRLF line endings, often gzipped), sometimes
numeric columns too. There are no users or items tables and no behaviour sequences: every field
is per sample.

* :func:`read_bars_csv` reads one file (``.csv`` or gzip, sniffed from the bytes), keeps every
  categorical value as a string (``"0123"`` stays ``"0123"``), checks the label and returns the
  frame and the md5 of the *uncompressed* bytes (the checksum BARS publishes), hashed while the
  file streams through the parser.
* :func:`load_bars` reads the files of a :class:`BarsConfig` into an empty
  :class:`~llmrec.data.tables.RecData`, a :class:`~llmrec.data.splits.FlatSplit` (``samples``, ``history = None``,
  ``fingerprint``) and the :class:`~llmrec.ranking.features.FeatureConfig` to encode them with;
  :func:`bars_features` does both steps and returns the :class:`FeatureSet`.

Files map to split names through the config fields, so the train file need not be BARS's train
file: with only Frappe_x1's validation and test files, ``train: valid.csv.gz, test: test.csv.gz,
valid_frac: 0.1`` trains on the validation file, carves a seeded 10% of it out for early
stopping and tests on the test file. Such runs are **not comparable to BARS numbers**; the
returned info says so (``bars_comparable``): only the three files of one BARS split, each
checked against its published md5, with nothing carved, count as the BARS protocol.

Vocabularies are built by the engine from the train split only, with ``min_count`` (BARS's
``min_categr_count``): a value seen fewer times in train, or never, maps to the unknown id 1.
The engine applies ``min_count`` to the context fields and the item id, but always keeps every
training user id (``min_count`` 1 for ``user_id``); with ``user_column`` set and ``min_count`` > 1
that is the one difference from BARS (logged).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.config import option
from llmrec.data.splits import FlatSplit
from llmrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "valid", "test")
# columns of the engine's samples table a context column must not be called
_RESERVED = ("user_id", "item_id", "label", "split", "position")
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


@dataclass
class BarsConfig:
    """Which BARS-format CSV files to read, which of their columns are what, and how to split."""

    train: str | None = option(None, help="CSV (or .csv.gz) file of the train split; "
                                          "vocabularies are built from it")
    valid: str | None = option(None, help="CSV file of the validation split (early stopping); "
                                          "leave unset and set valid_frac to carve one out of "
                                          "train")
    test: str | None = option(None, help="CSV file of the test split")
    name: str = option("bars", help="dataset name recorded with the features and results "
                                    "(e.g. frappe-x1)")
    label: str = option("label", help="the 0/1 label column")
    categorical: list[str] | None = option(None, help="categorical columns; null = every column "
                                                      "except the label and the numeric ones")
    numeric: list[str] = option([], help="numeric columns, each a dense field of width 1")
    user_column: str | None = option(None, help="categorical column that becomes user_id (Frappe: "
                                                "user); null = no user id field")
    item_column: str | None = option(None, help="categorical column that becomes item_id (Frappe: "
                                                "item); null = no item id field")
    min_count: int = option(1, help="values seen fewer times than this in train map to the "
                                    "unknown id (BARS min_categr_count)")
    md5: dict[str, str] = option({}, help="split -> expected md5 of that split's uncompressed CSV "
                                          "(the checksums BARS publishes); a mismatch is an error")
    valid_frac: float = option(0.0, help="with no valid file: this fraction of the train file's "
                                         "rows, drawn at random with seed, becomes the valid "
                                         "split (0: no valid split)")
    seed: int = option(42, help="seed of the valid_frac draw (same seed + file = same split)")

    def __post_init__(self) -> None:
        if not self.files():
            raise ConfigError("bars: set at least one of train, valid, test (a CSV file each)")
        bad = [k for k in self.md5 if k not in SPLIT_NAMES]
        if bad:
            raise ConfigError(f"bars.md5: unknown split(s) {', '.join(map(repr, bad))}; "
                              f"keys are split names: {', '.join(SPLIT_NAMES)}")
        unset = [k for k in self.md5 if getattr(self, k) is None]
        if unset:
            raise ConfigError(f"bars.md5 gives a checksum for {', '.join(unset)} but no file is "
                              f"set for that split")
        self.md5 = {k: str(v).strip().lower() for k, v in self.md5.items()}
        if not 0.0 <= self.valid_frac < 1.0:
            raise ConfigError(f"bars.valid_frac must be in [0, 1) (got {self.valid_frac})")
        if self.valid_frac > 0 and (self.valid is not None or self.train is None):
            raise ConfigError("bars.valid_frac carves the valid split out of the train file: set "
                              "train and leave valid unset (or set valid_frac: 0)")
        if self.min_count < 1:
            raise ConfigError(f"bars.min_count must be >= 1 (got {self.min_count})")
        if self.user_column is not None and self.user_column == self.item_column:
            raise ConfigError(f"bars.user_column and bars.item_column are both "
                              f"{self.user_column!r}")
        for col in (self.user_column, self.item_column):
            if col is not None and (col == self.label or col in self.numeric):
                raise ConfigError(f"bars: {col!r} cannot be the user/item column and also the "
                                  f"label or a numeric column")
        if self.label in (self.categorical or []) or self.label in self.numeric:
            raise ConfigError(f"bars: the label column {self.label!r} is also listed as a "
                              f"feature column")
        resolved: dict[Path, str] = {}
        for split, path in self.files().items():
            key = Path(path).expanduser().resolve()
            if key in resolved:
                raise ConfigError(f"bars: {resolved[key]} and {split} are the same file ({path}): "
                                  f"a split evaluated on its own training data")
            resolved[key] = split

    def files(self) -> dict[str, str]:
        """Split name -> file, for the splits that have one (in train, valid, test order)."""
        return {s: getattr(self, s) for s in SPLIT_NAMES if getattr(self, s) is not None}


# ------------------------------------------------------------------------------------------------
class _HashingReader(io.RawIOBase):
    """A raw binary stream that feeds every byte read through an md5 (read once, hashed once)."""

    def __init__(self, raw) -> None:
        super().__init__()
        self._raw = raw
        self.md5 = hashlib.md5()
        self.n_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        data = self._raw.read(len(buf))
        n = len(data)
        buf[:n] = data
        self.md5.update(data)
        self.n_bytes += n
        return n

    def drain(self) -> None:
        """Hash whatever the parser left unread (normally nothing)."""
        while self.readinto(bytearray(_CHUNK)):
            pass


def _open_raw(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == _GZIP_MAGIC else open(path, "rb")


def _bad_rows_message(path: Path, lines, values, what: str) -> str:
    shown = ", ".join(f"line {int(ln)}: {v!r}" for ln, v in list(zip(lines, values))[:3])
    more = f" and {len(lines) - 3} more" if len(lines) > 3 else ""
    return f"{path}: {what} ({shown}{more})"


def read_bars_csv(path: str | Path, label: str = "label", categorical: list[str] | None = None,
                  numeric: list[str] | tuple[str, ...] = ()):
    """Read one BARS-format CSV (plain or gzip): returns ``(frame, md5)``.

    ``frame`` holds ``label`` (int64, 0/1), the ``categorical`` columns as strings (null where a
    field is empty) and the ``numeric`` columns as float32; ``categorical`` None = every column
    except the label and the numeric ones. ``md5`` is the hex md5 of the uncompressed bytes, all
    of them (the published BARS checksum), computed while the file streams through the parser.
    Raises :class:`DataError` naming the file (and line) for a missing column, a label other than
    0/1, a non-numeric value in a numeric column, or a malformed file.
    """
    import numpy as np
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"BARS file not found: {path}")
    numeric = list(numeric)
    try:
        raw = _open_raw(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot open: {exc}") from None
    with raw:
        reader = _HashingReader(raw)
        stream = io.BufferedReader(reader, buffer_size=_CHUNK)
        try:
            # every column as text: feature indices such as "0123" keep their spelling; only an
            # empty field is missing ("NA" or "null" are values like any other). All columns are
            # parsed (no usecols), so that a row with too many fields is an error, not truncated
            frame = pd.read_csv(stream, dtype=str, keep_default_na=False, na_values=[""],
                                skip_blank_lines=False)
            stream.read()  # the parser normally stops at EOF; hash anything it left
            reader.drain()
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: the file is empty (a BARS CSV starts with a header "
                            f"line)") from None
        except pd.errors.ParserError as exc:
            raise DataError(f"{path}: malformed CSV: {exc}") from None
        except (OSError, EOFError, UnicodeDecodeError) as exc:  # truncated or corrupt gzip, binary
            raise DataError(f"{path}: cannot read: {exc}") from None
    md5 = reader.md5.hexdigest()

    columns = list(frame.columns)
    if categorical is None:
        categorical = [c for c in columns if c != label and c not in numeric]
    missing = [c for c in [label, *categorical, *numeric] if c not in columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(map(repr, missing))} "
                        f"(has: {', '.join(columns)})")
    # line numbers of the file (header = line 1) before blank lines are dropped
    lines = np.arange(len(frame)) + 2
    blank = frame.isna().all(axis=1).to_numpy()
    if blank.any():
        frame, lines = frame.loc[~blank].reset_index(drop=True), lines[~blank]

    lab = pd.to_numeric(frame[label], errors="coerce")
    bad = ~lab.isin([0, 1]).to_numpy()
    if bad.any():
        raise DataError(_bad_rows_message(path, lines[bad], frame[label][bad].tolist(),
                                          f"{int(bad.sum())} row(s) with a label other than 0/1 "
                                          f"in column {label!r}"))
    out = {label: lab.to_numpy().astype(np.int64)}
    for c in categorical:
        out[c] = frame[c]
    for c in numeric:
        vals = pd.to_numeric(frame[c], errors="coerce")
        bad = vals.isna().to_numpy()
        if bad.any():
            raise DataError(_bad_rows_message(path, lines[bad], frame[c][bad].tolist(),
                                              f"{int(bad.sum())} row(s) with a missing or "
                                              f"non-numeric value in numeric column {c!r}"))
        out[c] = vals.to_numpy().astype(np.float32)
    return pd.DataFrame(out), md5


# ------------------------------------------------------------------------------------------------
def load_bars(cfg: BarsConfig):
    """Read the files of ``cfg``: returns ``(tables, split, feature_config)``.

    ``tables`` is a :class:`~llmrec.data.tables.RecData` named ``cfg.name`` with no tables (BARS
    data has no users or items tables) and the files, md5s and row counts in ``info``; ``split``
    a :class:`~llmrec.data.splits.FlatSplit`; ``feature_config`` the :class:`FeatureConfig` to pass with them to
    :func:`~llmrec.ranking.features.build_features`.
    """
    import numpy as np
    import pandas as pd

    from llmrec.data.tables import RecData
    from llmrec.ranking.features import FeatureConfig

    files = cfg.files()
    ids = [c for c in (cfg.user_column, cfg.item_column) if c is not None]
    categorical = None
    if cfg.categorical is not None:
        categorical = list(dict.fromkeys([*cfg.categorical, *ids]))
    frames: dict[str, Any] = {}
    md5s: dict[str, str] = {}
    for split, path in files.items():
        frame, md5 = read_bars_csv(path, label=cfg.label, categorical=categorical,
                                   numeric=cfg.numeric)
        expected = cfg.md5.get(split)
        if expected is not None and md5 != expected:
            raise DataError(f"{path} ({split} split): md5 of the uncompressed CSV is {md5}, "
                            f"expected {expected} (bars.md5.{split}): not the published file; "
                            f"fetch it again or correct the checksum")
        if categorical is None:  # the first file fixes the columns; the others must have them
            categorical = [c for c in frame.columns if c != cfg.label and c not in cfg.numeric]
        frames[split] = frame
        md5s[split] = md5
    absent = [c for c in ids if c not in categorical]
    if absent:
        raise DataError(f"bars: user/item column(s) {', '.join(map(repr, absent))} not in the "
                        f"files (categorical columns: {', '.join(categorical)})")
    context = [c for c in categorical if c not in ids]
    clash = [c for c in [*context, *cfg.numeric] if c in _RESERVED]
    if clash:
        raise DataError(f"bars: column(s) {', '.join(map(repr, clash))} clash with the engine's "
                        f"sample columns ({', '.join(_RESERVED)}); a user or item id column "
                        f"belongs in bars.user_column / bars.item_column")

    parts = []
    for split, frame in frames.items():
        names = np.full(len(frame), split, dtype=object)
        if split == "train" and cfg.valid_frac > 0:
            n_valid = int(round(cfg.valid_frac * len(frame)))
            if not 0 < n_valid < len(frame):
                raise DataError(f"bars.valid_frac {cfg.valid_frac} of {len(frame)} train rows "
                                f"leaves {n_valid} valid rows; use a larger fraction or file")
            rng = np.random.default_rng(cfg.seed)
            names[rng.permutation(len(frame))[:n_valid]] = "valid"
        parts.append(pd.DataFrame({
            "user_id": frame[cfg.user_column] if cfg.user_column else "0",
            "item_id": frame[cfg.item_column] if cfg.item_column else "0",
            "label": frame[cfg.label], "split": names, "position": 0,
            **{c: frame[c] for c in context}, **{c: frame[c] for c in cfg.numeric}}))
    samples = pd.concat(parts, ignore_index=True)

    comparable = (set(files) == set(SPLIT_NAMES) and cfg.valid_frac == 0
                  and set(cfg.md5) == set(SPLIT_NAMES))
    counts = samples["split"].value_counts()
    info = {
        "files": {s: str(p) for s, p in files.items()}, "md5": md5s,
        "rows": {s: int(len(f)) for s, f in frames.items()},
        "splits": {s: int(counts.get(s, 0)) for s in SPLIT_NAMES if counts.get(s, 0)},
        "valid_frac": cfg.valid_frac, "seed": cfg.seed if cfg.valid_frac > 0 else None,
        "bars_comparable": comparable,
    }
    if not comparable:
        info["note"] = ("not comparable to BARS results: " + (
            "the train/valid/test files are not all given" if set(files) != set(SPLIT_NAMES)
            else "the valid split is carved out of train" if cfg.valid_frac > 0
            else "not every file is checked against its published md5 (bars.md5)"))
    h = hashlib.sha256(json.dumps({"md5": md5s, "valid_frac": cfg.valid_frac,
                                   "seed": cfg.seed if cfg.valid_frac > 0 else None,
                                   "label": cfg.label, "user": cfg.user_column,
                                   "item": cfg.item_column, "context": context,
                                   "numeric": list(cfg.numeric)}, sort_keys=True).encode())
    fingerprint = h.hexdigest()[:16]
    tables = RecData(name=cfg.name, tables={}, source=", ".join(str(p) for p in files.values()),
                     info=dict(info))
    split = FlatSplit(config=cfg, samples=samples, dataset=cfg.name, fingerprint=fingerprint,
                      info=info,
                      protocol="bars" if info.get("bars_comparable") else "bars-format")
    if cfg.user_column and cfg.min_count > 1:
        log.warning("bars: min_count %d applies to the context fields and the item id; the engine "
                    "keeps every training user id (BARS would map rare users to unknown)",
                    cfg.min_count)
    feature_cfg = FeatureConfig(
        max_hist_len=0, user_fields=[], item_fields=[], item_multi_fields=[],
        use_user_id=cfg.user_column is not None, use_item_id=cfg.item_column is not None,
        use_hist_rating=False, context_fields=context, numeric_fields=list(cfg.numeric),
        min_count=cfg.min_count)
    log.info("bars %s: %s rows (%s)%s", cfg.name, len(samples), info["splits"],
             "" if comparable else f"; {info['note']}")
    return tables, split, feature_cfg


def bars_features(cfg: BarsConfig):
    """:func:`load_bars` then :func:`build_features`: the encoded :class:`FeatureSet`, with the
    dataset name, split fingerprint and BARS provenance (files, md5s, comparability) in
    ``info``."""
    from llmrec.ranking.features import build_features

    if cfg.train is None:
        raise ConfigError("bars: features need a train file (vocabularies come from train); to "
                          "train on another split's file, set it as bars.train")
    tables, split, feature_cfg = load_bars(cfg)
    fs = build_features(tables, split, feature_cfg)
    fs.info["dataset"] = cfg.name
    fs.info["split_fingerprint"] = split.fingerprint
    fs.info["bars"] = dict(split.info)
    return fs
