"""Validated file reading shared by every loader, and the generic ``csv`` / ``parquet`` loaders.

This module owns the rule that bad input never surfaces as a pandas traceback: files are parsed
with pandas (all fields as text), then every conversion is checked and the first defect becomes a
:class:`~llmrec.errors.DataError` naming the file, the 1-based line (or row) and the column, with
what to do about it. It also owns the Arrow schema clean-up applied to every table a loader
returns (plain ``string`` ids, typed empty lists).

Generic loaders read one canonical table from a CSV or Parquet file through a column mapping
(canonical column -> column in the file), plus an optional items file read the same way.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import re
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from llmrec.data.config import DataConfig
from llmrec.data.tables import RecData, table_from_pandas
from llmrec.errors import DataError

log = logging.getLogger(__name__)

WHITESPACE = r"\s+"
ID_COLUMNS = ("user_id", "item_id", "query_id", "doc_id")
# the latest plausible interaction time in Unix seconds (2100-01-01): a larger value is
# milliseconds or not a time at all
UNIX_SECONDS_MAX = 4_102_444_800
# Multi-character separators ('::') are swapped for this byte so pandas' fast C parser can be used.
_UNIT_SEP = "\x1f"


# --------------------------------------------------------------------------- paths

def require_path(cfg: DataConfig, expected: str) -> Path:
    """``cfg.path`` as an existing path, or a DataError saying what the dataset expects there."""
    if cfg.path is None or not str(cfg.path).strip():
        raise DataError(f"dataset {cfg.name!r} needs a path: set path (--data.path) to {expected}")
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise DataError(f"dataset {cfg.name!r}: {path} does not exist; set path to {expected}")
    return path


def require_folder(cfg: DataConfig, expected: str) -> Path:
    path = require_path(cfg, expected)
    if not path.is_dir():
        raise DataError(f"dataset {cfg.name!r}: {path} is a file, not a folder; set path to "
                        f"{expected}")
    return path


def _listing(folder: Path, limit: int = 20) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return "the folder is empty"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return "it holds: " + ", ".join(names[:limit]) + more


def find_file(folder: Path, patterns: Iterable[str], what: str, *, required: bool = True,
              dataset: str = "") -> Path | None:
    """The file matching the first pattern that matches anything, in priority order.

    Several files matching the same pattern is an error rather than a guess, because picking one
    silently would load different data depending on directory order.
    """
    patterns = list(patterns)
    for pattern in patterns:
        hits = sorted(p for p in folder.glob(pattern) if p.is_file())
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise DataError(
                f"{folder}: several files could be the {what} ({', '.join(h.name for h in hits)}); "
                f"keep only one of them in the folder"
            )
    if required:
        prefix = f"dataset {dataset!r}: " if dataset else ""
        raise DataError(
            f"{prefix}{folder} has no {what} (expected {' or '.join(patterns)}); {_listing(folder)}"
        )
    return None


def expect_files(folder: Path, names: Iterable[str], dataset: str) -> dict[str, Path]:
    """All of ``names`` inside ``folder``, or one DataError listing every missing one."""
    names = list(names)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"dataset {dataset!r}: {folder} lacks {', '.join(missing)} (expected files: "
            f"{', '.join(names)}); {_listing(folder)}"
        )
    return {n: folder / n for n in names}


# --------------------------------------------------------------------------- text files

def _open_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as fh:
                return fh.read()
        except (OSError, EOFError) as exc:
            raise DataError(f"{path} is not a readable gzip file ({exc}); re-download it") from None
    return path.read_bytes()


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """A whole text file (gzip-aware), with a decode error reported by line."""
    raw = _open_bytes(path)
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}, line {line}: byte {raw[exc.start]:#04x} is not valid {encoding} text; "
            f"re-save the file as {encoding}"
        ) from None


def raw_line(path: Path, line_no: int, encoding: str = "utf-8") -> str | None:
    """The text of one line (for error messages only; streams up to that line)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding=encoding, errors="replace", newline="") as fh:
            for i, line in enumerate(fh, 1):
                if i == line_no:
                    return line.rstrip("\r\n")
    except OSError:
        return None
    return None


def _split_fields(line: str, sep: str) -> list[str]:
    if sep == WHITESPACE:
        return line.split()
    return line.split(sep)


def _quoted_rows(path: Path, text: str, sep: str):
    """(line number, fields) per CSV record; an unclosed quote becomes a DataError at the line
    where the record starts, since that is where the stray quote is."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{path}, line {start}: the quoting is broken ({exc}); close or "
                            f"remove the stray quote") from None
        yield start, row
        start = reader.line_num + 1


def _field_count_error(path: Path, sep: str, names: list[str] | None, encoding: str,
                       quoted: bool, parser_msg: str) -> DataError:
    """Find the first line whose field count is wrong (only run once pandas has failed)."""
    text = read_text(path, encoding)
    expected = len(names) if names is not None else None
    layout = sep_join(names, sep) if names is not None else None
    if quoted and len(sep) == 1:
        rows = _quoted_rows(path, text, sep)
    else:
        rows = ((i, _split_fields(line.rstrip("\r"), sep))
                for i, line in enumerate(text.split("\n"), 1))
    try:
        for line_no, fields in rows:
            if not fields or fields == [""]:
                continue
            if expected is None:  # the header line fixes the count
                expected, layout = len(fields), sep_join(fields, sep)
                continue
            if len(fields) != expected:
                shown = raw_line(path, line_no, encoding) or sep_join(fields, sep)
                return DataError(
                    f"{path}, line {line_no}: expected {expected} fields ({layout}) but found "
                    f"{len(fields)}: {shown[:200]!r}; fix or remove that line"
                )
    except DataError as exc:
        return exc
    return DataError(f"{path} could not be parsed ({parser_msg}); check the separator and quoting")


def sep_join(names: Iterable[str] | None, sep: str) -> str:
    names = [] if names is None else [str(n) for n in names]
    return (" " if sep == WHITESPACE else sep).join(names)


class Rows:
    """Parsed rows of one file, all values as text, plus what error messages need.

    ``df.index`` holds the 1-based line numbers (or row numbers for columnar files), so a failed
    check can point at the exact place in the file.
    """

    def __init__(self, df: pd.DataFrame, path: Path, *, unit: str = "line", sep: str = ",",
                 encoding: str = "utf-8", quoted: bool = True, layout: str = "",
                 n_fields: int | None = None, field_counts: np.ndarray | None = None):
        self.df = df
        self.path = path
        self.unit = unit
        self.sep = sep
        self.encoding = encoding
        self.quoted = quoted
        self.layout = layout
        self.n_fields = len(df.columns) if n_fields is None else n_fields
        # fields per row, known when a quoted field spans lines (then a row's first line alone
        # does not tell how many fields the row has)
        self.field_counts = field_counts

    def __len__(self) -> int:
        return len(self.df)

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.df.columns]

    def select(self, source: dict[str, str]) -> "Rows":
        """A view with columns renamed ``new name -> column in the file`` (one column may feed
        several names); error messages still describe the file's own layout."""
        df = pd.DataFrame({new: self.df[old] for new, old in source.items()}, index=self.df.index)
        return Rows(df, self.path, unit=self.unit, sep=self.sep, encoding=self.encoding,
                    quoted=self.quoted, layout=self.layout, n_fields=self.n_fields,
                    field_counts=self.field_counts)

    # -- errors
    def _count_fields(self, text: str) -> int:
        if self.quoted and len(self.sep) == 1:
            return len(next(csv.reader([text], delimiter=self.sep), []))
        return len(_split_fields(text, self.sep))

    def error_at(self, pos: int, column: str | None, problem: str,
                 fix: str | None = None) -> DataError:
        """A DataError for the row at position ``pos``; ``fix`` defaults to fixing or removing
        that line (row)."""
        where = self.df.index[pos]
        fix = fix or f"fix or remove that {self.unit}"
        detail = ""
        if self.unit == "line":
            text = raw_line(self.path, int(where), self.encoding)
            if text is not None:
                found = int(self.field_counts[pos]) if self.field_counts is not None \
                    else self._count_fields(text)
                if found != self.n_fields and self.layout:
                    # a short line reads as empty fields; the field count is the real problem
                    column = None
                    problem = f"expected {self.n_fields} fields ({self.layout}) but found {found}"
                    fix = "fix or remove that line"
                detail = f"; the line reads {text[:200]!r}"
        else:
            row = {c: _plain(self.df[c].iloc[pos]) for c in self.columns[:8]}
            detail = f"; the row is {row}"
        col = f", column {column!r}" if column is not None else ""
        return DataError(f"{self.path}, {self.unit} {where}{col}: {problem}{detail}; {fix}")

    def error(self, mask: pd.Series | np.ndarray, column: str | None, problem: str,
              fix: str | None = None) -> DataError:
        """A DataError at the first True position of ``mask``."""
        pos = int(np.argmax(np.asarray(mask)))
        return self.error_at(pos, column, problem, fix)

    def require_columns(self, names: Iterable[str], hint: str = "") -> None:
        missing = [n for n in names if n not in self.df.columns]
        if missing:
            raise DataError(
                f"{self.path} has no column {', '.join(repr(m) for m in missing)} (its columns: "
                f"{', '.join(self.columns) or 'none'}){'; ' + hint if hint else ''}"
            )

    # -- conversions
    def text(self, column: str) -> pd.Series:
        """A column as stripped strings; empty cells stay ''."""
        s = self.df[column]
        if s.dtype == object or pd.api.types.is_string_dtype(s):
            return s.fillna("").astype(str).str.strip()
        return s.astype(str)

    def ids(self, column: str, what: str = "id") -> pd.Series:
        """Non-empty string ids; integral floats (from a Parquet column with nulls) lose '.0'."""
        s = self.df[column]
        if pd.api.types.is_float_dtype(s):
            whole = s.notna() & (s % 1 == 0)
            s = pd.Series(np.where(whole, s.fillna(0).astype("int64").astype(str), s.astype(str)),
                          index=s.index).where(s.notna(), "")
        elif pd.api.types.is_integer_dtype(s):
            s = s.astype("Int64").astype(str).where(s.notna(), "")
        out = s.fillna("").astype(str).str.strip()
        empty = out == ""
        if empty.any():
            raise self.error(empty, column, f"the {what} is empty",
                             f"every {self.unit} needs a {what}; fill it in or remove that "
                             f"{self.unit}")
        return out

    def numbers(self, column: str, what: str, *, integer: bool = False, optional: bool = False,
                lo: float | None = None, hi: float | None = None) -> pd.Series:
        """Numbers parsed from a column: float64, or Int64 when ``integer``; empties are null only
        when ``optional``."""
        s = self.df[column]
        if pd.api.types.is_bool_dtype(s):
            s = s.astype("Int64")
        if pd.api.types.is_numeric_dtype(s):
            empty = s.isna()
            values = s.astype("float64")
            bad = pd.Series(False, index=s.index)
        else:
            txt = s.fillna("").astype(str).str.strip()
            empty = txt == ""
            values = pd.to_numeric(txt.where(~empty), errors="coerce").astype("float64")
            bad = values.isna() & ~empty
        if not optional and empty.any():
            raise self.error(empty, column, f"the {what} is missing",
                             f"every {self.unit} needs a {what}; fill it in or remove that "
                             f"{self.unit}")
        if bad.any():
            pos = int(np.argmax(bad.to_numpy()))
            raise self.error_at(pos, column, f"the {what} {s.iloc[pos]!r} is not a number")
        infinite = values.notna() & ~np.isfinite(values.fillna(0.0))
        if infinite.any():
            pos = int(np.argmax(infinite.to_numpy()))
            raise self.error_at(pos, column, f"the {what} {s.iloc[pos]!r} is not a finite number")
        if integer:
            frac = values.notna() & (values % 1 != 0)
            if frac.any():
                pos = int(np.argmax(frac.to_numpy()))
                raise self.error_at(pos, column,
                                    f"the {what} {s.iloc[pos]!r} is not a whole number")
        out_of_range = pd.Series(False, index=s.index)
        if lo is not None:
            out_of_range |= values < lo
        if hi is not None:
            out_of_range |= values > hi
        if out_of_range.any():
            pos = int(np.argmax(out_of_range.to_numpy()))
            raise self.error_at(pos, column, f"the {what} {s.iloc[pos]!r} is outside {lo}..{hi}")
        if integer:
            return values.astype("Int64")
        return values

    def unix_seconds(self, column: str, *, optional: bool = False) -> pd.Series:
        """Whole Unix seconds (Int64) between 1970 and 2100: a value outside is an error (most
        often milliseconds, or a column that is not a time)."""
        values = self.numbers(column, "timestamp", integer=True, optional=optional)
        for bad, problem in (
                (values > UNIX_SECONDS_MAX, "is after the year 2100 in Unix seconds (if it is "
                                            "in milliseconds, divide the column by 1000)"),
                (values < 0, "is before 1970 in Unix seconds")):
            bad = bad.fillna(False).to_numpy(dtype=bool)
            if bad.any():
                pos = int(np.argmax(bad))
                raise self.error_at(pos, column, f"the timestamp {self.df[column].iloc[pos]!r} "
                                    f"{problem}")
        return values

    def timestamps(self, column: str, *, optional: bool = True) -> pd.Series:
        """Unix seconds (Int64) from integers (see :meth:`unix_seconds`), datetimes or ISO-8601
        text."""
        s = self.df[column]
        if pd.api.types.is_datetime64_any_dtype(s):
            utc = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
            return _epoch_seconds(utc)
        if pd.api.types.is_numeric_dtype(s):
            return self.unix_seconds(column, optional=optional)
        txt = s.fillna("").astype(str).str.strip()
        empty = txt == ""
        numeric = pd.to_numeric(txt.where(~empty), errors="coerce")
        if (numeric.notna() | empty).all():
            return self.unix_seconds(column, optional=optional)
        parsed = pd.to_datetime(txt.where(~empty), errors="coerce", utc=True, format="ISO8601")
        bad = parsed.isna() & ~empty
        if bad.any():
            pos = int(np.argmax(bad.to_numpy()))
            raise self.error_at(pos, column, f"the timestamp {s.iloc[pos]!r} is neither Unix "
                                "seconds nor an ISO-8601 date")
        if not optional and empty.any():
            raise self.error(empty, column, "the timestamp is missing",
                             f"fill it in or remove the {self.unit}")
        return _epoch_seconds(parsed)

    def check_unique(self, column: str, values: pd.Series, what: str) -> None:
        dup = values.duplicated()
        if dup.any():
            pos = int(np.argmax(dup.to_numpy()))
            first = int(np.argmax((values == values.iloc[pos]).to_numpy()))
            raise self.error_at(
                pos, column, f"{what} {values.iloc[pos]!r} appears again (first at {self.unit} "
                f"{self.df.index[first]})", f"each {what} must appear once; remove the duplicate")


def _plain(value):
    """numpy scalars as Python values, so messages read {'rating': nan} not np.float64(nan)."""
    return value.item() if isinstance(value, np.generic) else value


def _epoch_seconds(utc: pd.Series) -> pd.Series:
    secs = (utc - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return secs.astype("Int64")


def read_delimited(path: Path, *, sep: str = ",", names: list[str] | None = None,
                   encoding: str = "utf-8", quoted: bool = True, allow_empty: bool = False) -> Rows:
    """Parse a delimited text file (gzip-aware) into :class:`Rows` of strings.

    ``names`` given: the file has no header and each line must have exactly those fields.
    ``names`` None: the first line is the header (a column named twice is an error). ``quoted``
    False for formats that never quote (MovieLens ``::`` / ``|`` files), where a stray ``"`` in a
    title must stay literal. Blank lines are skipped but still counted, and a quoted field that
    spans lines is counted as the lines it spans, so line numbers match a text editor's. A line
    with fewer fields than the header (pandas would read the missing ones as empty) is an error,
    and so is a file without data rows unless ``allow_empty``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file")
    raw = _open_bytes(path)
    kwargs: dict = dict(dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=False,
                        index_col=False, engine="c")
    if not quoted:
        kwargs["quoting"] = csv.QUOTE_NONE
    if names is not None:
        kwargs.update(header=None, names=list(names))
    source: object
    if len(sep) > 1 and sep != WHITESPACE:
        # pandas' C parser takes one-character separators only; the python engine is ~10x slower
        source = io.StringIO(read_text(path, encoding).replace(sep, _UNIT_SEP))
        kwargs["sep"] = _UNIT_SEP
    else:
        source = io.BytesIO(raw)
        kwargs.update(sep=sep, encoding=encoding)
    try:
        with warnings.catch_warnings():
            # pandas only warns (and drops data) when the first line has more fields than names
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(source, **kwargs)
    except UnicodeDecodeError:
        read_text(path, encoding)  # raises the DataError naming the line
        raise
    except pd.errors.EmptyDataError:
        if names is None:
            raise DataError(f"{path} is empty; expected a header line and data rows") from None
        df = pd.DataFrame({n: pd.Series(dtype=str) for n in names})
    except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
        raise _field_count_error(path, sep, names, encoding, quoted, str(exc)) from None
    except (OSError, EOFError) as exc:  # e.g. a truncated .gz
        raise DataError(f"{path} could not be read ({exc}); re-download or re-create it") from None
    if names is None:
        df.columns = [str(c).strip() for c in df.columns]
        _check_header(path, raw, sep, encoding, quoted)
    n_fields = len(df.columns)
    first_line = 1 if names is not None else 2
    starts, counts = _record_lines(raw, len(df), first_line, sep, encoding, quoted)
    df.index = pd.Index(starts) if starts is not None else \
        pd.RangeIndex(first_line, first_line + len(df))
    if len(df.columns):
        blank = np.ones(len(df), dtype=bool)
        for col in df.columns:
            blank &= (df[col] == "").to_numpy()
        if blank.any():
            df = df[~blank]
            if counts is not None:
                counts = counts[~blank]
    layout = sep_join(names if names is not None else df.columns, sep)
    rows = Rows(df, path, unit="line", sep=sep, encoding=encoding, quoted=quoted, layout=layout,
                field_counts=counts)
    _check_short_rows(rows, raw, counts, n_fields)
    if len(df) == 0 and not allow_empty:
        what = "has a header line but no data rows" if names is None else "has no data rows"
        raise DataError(f"{path} {what}; check that it is the right file (an interrupted "
                        f"download or export leaves files like this)")
    return rows


def _check_header(path: Path, raw: bytes, sep: str, encoding: str, quoted: bool) -> None:
    """A column named twice in the header is an error (pandas would rename one to 'x.1')."""
    end = raw.find(b"\n")
    line = raw[:end if end >= 0 else len(raw)].decode(encoding, errors="replace")
    line = line.lstrip("\ufeff").rstrip("\r")
    if quoted and len(sep) == 1:
        fields = next(csv.reader([line], delimiter=sep), [])
    else:
        fields = _split_fields(line, sep)
    seen: set[str] = set()
    for f in (x.strip() for x in fields):
        if f in seen and f:
            raise DataError(f"{path}, line 1: the header names the column {f!r} twice "
                            f"({line[:200]!r}); rename or remove one of them")
        seen.add(f)


def _record_lines(raw: bytes, n_records: int, first_line: int, sep: str, encoding: str,
                  quoted: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(start line, field count) of each data record when a quoted field spans lines (then the
    record number is not the line number); (None, None) when every record is one line."""
    n_lines = raw.count(b"\n") + (1 if raw and not raw.endswith(b"\n") else 0)
    if n_lines - (first_line - 1) == n_records or not (quoted and len(sep) == 1):
        return None, None
    text = raw.decode(encoding, errors="replace")
    starts, counts = [], []
    for line_no, fields in _quoted_rows(Path("?"), text, sep):
        starts.append(line_no)
        counts.append(0 if fields == [""] else len(fields))
    starts, counts = starts[first_line - 1:], counts[first_line - 1:]
    if len(starts) != n_records:  # the two parsers disagree: keep record numbers
        return None, None
    return np.asarray(starts, dtype=np.int64), np.asarray(counts, dtype=np.int64)


def _check_short_rows(rows: Rows, raw: bytes, counts: np.ndarray | None, n_fields: int) -> None:
    """A line with fewer fields than expected reads as empty trailing fields in pandas: find it.

    Only lines whose last field came out empty can be short, so only those are looked at."""
    df = rows.df
    if not len(df) or not n_fields:
        return
    last = (df.iloc[:, -1] == "").to_numpy()
    if not last.any():
        return
    if counts is not None:
        short = last & (counts < n_fields)
        if short.any():
            raise rows.error(short, None, "")
        return
    cand = df.index[last].to_numpy(dtype=np.int64)
    ends = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) == 10)
    for line_no in cand:
        lo = int(ends[line_no - 2]) + 1 if line_no >= 2 else 0
        hi = int(ends[line_no - 1]) if line_no - 1 < len(ends) else len(raw)
        text = raw[lo:hi].decode(rows.encoding, errors="replace").rstrip("\r")
        if text.strip() and rows._count_fields(text) < n_fields:
            pos = int(np.argmax(df.index.to_numpy() == line_no))
            raise rows.error_at(pos, None, "")

def read_parquet(path: Path) -> Rows:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        df = pq.read_table(str(path)).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path} is not a readable Parquet file ({exc}); check the path and "
                        f"format (use name=csv for text files)") from None
    df.index = pd.RangeIndex(1, len(df) + 1)
    return Rows(df, path, unit="row")


def read_jsonl(path: Path, required_keys: Iterable[str], fix: str) -> list[dict]:
    """Records of a JSON-lines file; a bad line or a record lacking a key names the line."""
    required_keys = tuple(required_keys)
    records = []
    for line_no, line in enumerate(read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {line_no}: not valid JSON ({exc.msg} at column "
                            f"{exc.colno}); {fix}") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}, line {line_no}: expected a JSON object, found "
                            f"{type(rec).__name__}; {fix}")
        missing = [k for k in required_keys if k not in rec]
        if missing:
            raise DataError(f"{path}, line {line_no}: the record lacks {', '.join(missing)} "
                            f"(it has: {', '.join(rec)}); {fix}")
        rec["_line"] = line_no
        records.append(rec)
    return records


def read_json(path: Path, fix: str):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg} at column "
                        f"{exc.colno}); {fix}") from None


# --------------------------------------------------------------------------- shared bits

_YEAR = re.compile(r"\((\d{4})(?:\s*[-\u2013]\s*\d{0,4})?\)\s*$")


def year_from_title(titles: pd.Series) -> pd.Series:
    """Release year from a trailing '(1995)' or '(2006-2007)' in the title; null when absent."""
    return pd.to_numeric(titles.str.extract(_YEAR, expand=False), errors="coerce").astype("Int64")


def split_genres(genres: pd.Series, sep: str = "|",
                 none_values: tuple[str, ...] = ("(no genres listed)",)) -> list[list[str]]:
    out = []
    for value in genres.tolist():
        parts = [g.strip() for g in str(value).split(sep)] if value else []
        out.append([g for g in parts if g and g not in none_values])
    return out


def sorted_ids(ids: pd.Series) -> pd.Series:
    """Distinct ids, numerically ordered when they are all numbers ('2' before '10')."""
    uniq = pd.Series(pd.unique(ids), dtype=object)
    as_num = pd.to_numeric(uniq, errors="coerce")
    if as_num.notna().all():
        return uniq.iloc[np.argsort(as_num.to_numpy(), kind="stable")].reset_index(drop=True)
    return uniq.sort_values(kind="stable").reset_index(drop=True)


def users_from(*id_columns: pd.Series) -> pd.DataFrame:
    ids = pd.concat([pd.Series(c, dtype=object) for c in id_columns], ignore_index=True)
    return pd.DataFrame({"user_id": sorted_ids(ids)})


def interactions_frame(user_id, item_id, rating=None, timestamp=None) -> pd.DataFrame:
    """The canonical interactions columns with their types (rating float32, timestamp int64;
    either all-null when the source has none)."""
    n = len(user_id)
    return pd.DataFrame({
        "user_id": np.asarray(user_id, dtype=object),
        "item_id": np.asarray(item_id, dtype=object),
        "rating": (np.full(n, np.nan, dtype=np.float32) if rating is None
                   else np.asarray(rating, dtype=np.float32)),
        "timestamp": pd.array([None] * n if timestamp is None else timestamp, dtype="Int64"),
    })


def warn_unknown_items(interactions: pd.DataFrame, items: pd.DataFrame, source: str) -> None:
    unknown = ~interactions["item_id"].isin(items["item_id"])
    if unknown.any():
        log.warning("%s: %d interactions refer to %d item ids missing from the items file "
                    "(e.g. %s)", source, int(unknown.sum()),
                    interactions.loc[unknown, "item_id"].nunique(),
                    interactions.loc[unknown, "item_id"].iloc[0])


def make_table(df: pd.DataFrame):
    """``table_from_pandas`` plus one schema pass: ids and text as ``string`` (pandas 3 strings
    arrive as ``large_string``), and all-empty or all-null columns typed as strings rather than
    Arrow ``null`` so that tables from different files line up."""
    import datasets
    import pyarrow as pa

    ds = table_from_pandas(df.reset_index(drop=True))
    table = ds.data.table
    fields = []
    changed = False
    for f in table.schema:
        t = _clean_type(f.type)
        changed |= t != f.type
        fields.append(pa.field(f.name, t))
    if not changed:
        return ds
    return datasets.Dataset(table.cast(pa.schema(fields)))


def _clean_type(t):
    import pyarrow as pa

    if pa.types.is_large_string(t) or pa.types.is_null(t):
        return pa.string()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_clean_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _clean_type(f.type)) for f in t])
    return t


# --------------------------------------------------------------------------- generic loaders

# Per canonical table: required columns, optional columns, and whether other mapping keys are
# allowed. Closed tables reject unknown keys because a misspelled key ('rateing') would otherwise
# leave the real column unmapped without a word.
GENERIC_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "interactions": (("user_id", "item_id"), ("rating", "timestamp"), False),
    "items": (("item_id",), ("title",), True),
    "users": (("user_id",), (), True),
    "judgments": (("query_id", "doc_id", "grade"), (), False),
    "queries": (("query_id", "text"), (), False),
}


def _read_any(path: Path, fmt: str, sep: str) -> Rows:
    if fmt == "parquet":
        return read_parquet(path)
    if not sep:
        raise DataError("sep (--data.sep) is empty; give the csv separator, e.g. ',' or '\\t'")
    return read_delimited(path, sep="\t" if sep == "\\t" else sep)


def _mapped_table(rows: Rows, table: str, mapping: dict[str, str], key: str) -> pd.DataFrame:
    """Rename per ``mapping``, check it against the file, and type the canonical columns."""
    required, optional, open_keys = GENERIC_TABLES[table]
    known = required + optional
    if not open_keys:
        unknown = [k for k in mapping if k not in known]
        if unknown:
            raise DataError(
                f"{key}: {', '.join(repr(k) for k in unknown)} is not a column of the {table} "
                f"table; map only these: {', '.join(known)}"
            )
    for canon, src in mapping.items():
        if src not in rows.df.columns:
            raise DataError(
                f"{rows.path} has no column {src!r} (named by {key}.{canon}); its columns are: "
                f"{', '.join(rows.columns)}; fix the mapping"
            )
    source = {c: c for c in known if c in rows.df.columns}
    source.update(mapping)
    missing = [c for c in required if c not in source]
    if missing:
        raise DataError(
            f"{rows.path} has no column for {', '.join(missing)} of the {table} table; its columns "
            f"are: {', '.join(rows.columns)}; map them with {key}, e.g. "
            f"{key}={{'{missing[0]}': '<column in the file>'}}"
        )
    view = rows.select(source)
    out = pd.DataFrame(index=view.df.index)
    for canon in source:
        if canon in ID_COLUMNS:
            out[canon] = view.ids(canon, canon.replace("_", " "))
    if table == "interactions":
        rating = (view.numbers("rating", "rating", optional=True) if "rating" in source
                  else pd.Series(np.nan, index=out.index))
        out["rating"] = rating.astype("float32")
        out["timestamp"] = (view.timestamps("timestamp") if "timestamp" in source
                            else pd.Series(pd.array([None] * len(out), dtype="Int64"),
                                           index=out.index))
    elif table == "judgments":
        out["grade"] = view.numbers("grade", "grade", integer=True, lo=-128, hi=127).astype("int8")
    elif table == "queries":
        out["text"] = view.text("text")
    for canon in source:
        if canon not in out.columns:
            out[canon] = view.df[canon]
    if table == "items":
        if "title" not in out.columns:
            log.info("%s has no title column; items get an empty title", rows.path)
            out["title"] = ""
        view.check_unique("item_id", out["item_id"], "item id")
    used = set(source.values())
    for col in rows.columns:  # keep the file's other columns under their own names
        if col in used:
            continue
        if col in out.columns:
            log.warning("%s: column %r is left out because %s maps %r to column %r", rows.path,
                        col, key, col, source[col])
            continue
        out[col] = rows.df[col]
    return out.reset_index(drop=True)


def _load_generic(cfg: DataConfig, fmt: str) -> RecData:
    path = require_path(cfg, f"a .{fmt} file holding the {cfg.table} table")
    if path.is_dir():
        raise DataError(f"dataset {cfg.name!r}: {path} is a folder; set path to the .{fmt} "
                        f"file itself")
    if cfg.table not in GENERIC_TABLES:
        raise DataError(f"table={cfg.table!r} is not supported by the {fmt} loader; choose one of "
                        f"{', '.join(GENERIC_TABLES)}")
    tables = {cfg.table: make_table(_mapped_table(_read_any(path, fmt, cfg.sep), cfg.table,
                                                  dict(cfg.columns), "columns"))}
    files = {cfg.table: str(path)}
    if cfg.items_path:
        if cfg.table == "items":
            raise DataError("items_path is for a separate items file, but table is already "
                            "'items'; leave items_path unset")
        ipath = Path(cfg.items_path).expanduser()
        if not ipath.is_file():
            raise DataError(f"items_path {ipath} does not exist or is not a file; set it to the "
                            f"items .{fmt} file or leave it unset")
        tables["items"] = make_table(_mapped_table(_read_any(ipath, fmt, cfg.sep), "items",
                                                   dict(cfg.items_columns), "items_columns"))
        files["items"] = str(ipath)
    return RecData(name=cfg.name, tables=tables, source=str(path), info={"files": files})


def load_csv(cfg: DataConfig) -> RecData:
    return _load_generic(cfg, "csv")


def load_parquet(cfg: DataConfig) -> RecData:
    return _load_generic(cfg, "parquet")
