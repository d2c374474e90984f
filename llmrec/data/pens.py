"""PENS (PErsonalized News headlineS, Ao et al., ACL 2021): the four files of the release.

The release (https://msnews.github.io/pens.html, Microsoft Research License Terms) is one folder:

- ``news.tsv``: ``News ID, Category, Topic, Headline, News body, Title entity, Entity content``
  (113,762 news; the last two columns are Python-literal dicts, kept as text here);
- ``train.tsv`` / ``valid.tsv``: one impression per line, ``UserID, ClicknewsID, dwelltime,
  exposure_time, pos, neg, start, end, dwelltime_pos``: the click history (space-separated ids)
  with a dwell time (seconds) and an exposure time (``6/19/2019 5:10:01 AM``, joined by
  ``#TAB#``) per click, then the impression (clicked ``pos``, skipped ``neg``, its start and end,
  the dwell of each clicked one);
- ``personalized_test.tsv``: ``userid, clicknewsID, posnewID, rewrite_titles``: per test user
  the click history (comma-separated, no dwell, no time), the 200 news they were shown and the
  headline they wrote for each (``;;``-separated, same order).

:func:`load_pens` reads whichever of them a folder holds and says which are missing and where to
get them; :func:`history_table` flattens click histories into the long table the filters of
:mod:`llmrec.headline.filters` take (one row per click: ``user_id, position, news_id, dwell_s,
time_s``; dwell and time are NaN where the file has none, as in the test file).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.errors import DataError

PENS_URL = "https://msnews.github.io/pens.html"
NEWS_COLUMNS = ("News ID", "Category", "Topic", "Headline", "News body", "Title entity",
                "Entity content")
IMPRESSION_COLUMNS = ("UserID", "ClicknewsID", "dwelltime", "exposure_time", "pos", "neg",
                      "start", "end", "dwelltime_pos")
TEST_COLUMNS = ("userid", "clicknewsID", "posnewID", "rewrite_titles")
FILES = {"news": "news.tsv", "train": "train.tsv", "valid": "valid.tsv",
         "test": "personalized_test.tsv"}
_TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
_TIME_SEP = "#TAB#"
_TITLE_SEP = ";;"

__all__ = ["PENS_URL", "FILES", "PensData", "load_pens", "read_news", "read_impressions",
           "read_personalized_test", "history_table", "references", "parse_time"]


def _missing(path: Path, what: str) -> DataError:
    return DataError(f"PENS file {path.name} not found in {path.parent} ({what}). Get the PENS "
                     f"release from {PENS_URL} (Microsoft Research License Terms), unpack it and "
                     f"give the folder holding {', '.join(FILES.values())} as the data path "
                     f"(llmrec headline: --data_path=DIR)")


def _lines(path: Path, header: tuple[str, ...], what: str, *, header_required: bool,
           free_last: bool = False):
    """(line number, fields) of a TSV file; the header is checked (or, where the release's
    copies differ, accepted when absent) and the column count of every line too.

    ``free_last``: the last column is free text that may itself hold a tab (one headline of the
    released personalized_test.tsv, user NT23, does); extra fields are joined back into it."""
    if not path.is_file():
        raise _missing(path, what)
    with open(path, encoding="utf-8", newline="") as fh:
        first = True
        for no, line in enumerate(fh, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            fields = line.split("\t")
            if first:
                first = False
                if fields[0].strip().lower() == header[0].lower():
                    if [f.strip() for f in fields] != list(header):
                        raise DataError(f"{path}: header {fields} is not the PENS header "
                                        f"{list(header)}")
                    continue
                if header_required:
                    raise DataError(f"{path}, line 1: expected the header {list(header)}, got "
                                    f"{fields[:4]}...; is this the PENS {path.name}?")
            if free_last and len(fields) > len(header):
                fields = fields[:len(header) - 1] + ["\t".join(fields[len(header) - 1:])]
            if len(fields) != len(header):
                raise DataError(f"{path}, line {no}: {len(fields)} tab-separated fields, the PENS "
                                f"{path.name} has {len(header)} ({', '.join(header)})")
            yield no, fields


def parse_time(text: str, where: str = "") -> float:
    """PENS time (``6/19/2019 5:10:01 AM``, no zone given: read as UTC) -> POSIX seconds."""
    try:
        t = _dt.datetime.strptime(text.strip(), _TIME_FORMAT)
    except ValueError:
        raise DataError(f"{where}: time {text!r} is not in the PENS format "
                        f"'6/19/2019 5:10:01 AM'") from None
    return t.replace(tzinfo=_dt.timezone.utc).timestamp()


def read_news(path: str | Path):
    """``news.tsv`` -> DataFrame ``news_id, category, topic, headline, body, title_entity,
    entity_content`` (entity columns as the file's text)."""
    import pandas as pd

    path = Path(path)
    rows = []
    for no, f in _lines(path, NEWS_COLUMNS, "the news bodies and original headlines",
                        header_required=False):
        if not f[0].strip():
            raise DataError(f"{path}, line {no}: empty News ID")
        rows.append([x.strip() if i < 5 else x for i, x in enumerate(f)])
    df = pd.DataFrame(rows, columns=["news_id", "category", "topic", "headline", "body",
                                     "title_entity", "entity_content"])
    dup = df["news_id"].duplicated()
    if dup.any():
        raise DataError(f"{path}: News ID {df['news_id'][dup].iloc[0]!r} occurs twice")
    return df


def _ints(text: str, where: str) -> list[int]:
    try:
        return [int(x) for x in text.split()]
    except ValueError:
        raise DataError(f"{where}: dwell times must be whole seconds separated by spaces, got "
                        f"{text[:60]!r}") from None


def read_impressions(path: str | Path):
    """``train.tsv`` / ``valid.tsv`` -> DataFrame ``user_id, clicks, dwell_s, time_s, pos, neg,
    start_s, end_s, dwell_pos_s`` (lists per row; times as POSIX seconds)."""
    import pandas as pd

    path = Path(path)
    rows = []
    for no, f in _lines(path, IMPRESSION_COLUMNS, "impressions with dwell times",
                        header_required=False):
        where = f"{path}, line {no}"
        clicks = f[1].split()
        dwell = _ints(f[2], where + " (dwelltime)")
        times = [parse_time(t, where + " (exposure_time)") for t in f[3].split(_TIME_SEP)
                 if t.strip()]
        if len(dwell) != len(clicks) or len(times) != len(clicks):
            raise DataError(f"{where}: {len(clicks)} ClicknewsID but {len(dwell)} dwelltime and "
                            f"{len(times)} exposure_time values; PENS gives one of each per click")
        pos = f[4].split()
        dwell_pos = _ints(f[8], where + " (dwelltime_pos)")
        if len(dwell_pos) != len(pos):
            raise DataError(f"{where}: {len(pos)} pos ids but {len(dwell_pos)} dwelltime_pos "
                            f"values")
        rows.append({"user_id": f[0].strip(), "clicks": clicks, "dwell_s": dwell, "time_s": times,
                     "pos": pos, "neg": f[5].split(),
                     "start_s": parse_time(f[6], where + " (start)") if f[6].strip() else math.nan,
                     "end_s": parse_time(f[7], where + " (end)") if f[7].strip() else math.nan,
                     "dwell_pos_s": dwell_pos})
    return pd.DataFrame(rows, columns=["user_id", "clicks", "dwell_s", "time_s", "pos", "neg",
                                       "start_s", "end_s", "dwell_pos_s"])


def read_personalized_test(path: str | Path):
    """``personalized_test.tsv`` -> DataFrame ``user_id, clicks, news_ids, titles`` (lists)."""
    import pandas as pd

    path = Path(path)
    rows = []
    for no, f in _lines(path, TEST_COLUMNS, "the personalised test references",
                        header_required=True, free_last=True):
        news = [x.strip() for x in f[2].split(",") if x.strip()]
        titles = [t.strip() for t in f[3].split(_TITLE_SEP)]
        if len(titles) != len(news):
            raise DataError(f"{path}, line {no}: {len(news)} posnewID but {len(titles)} "
                            f"rewrite_titles; PENS gives one headline per shown news")
        rows.append({"user_id": f[0].strip(),
                     "clicks": [x.strip() for x in f[1].split(",") if x.strip()],
                     "news_ids": news, "titles": titles})
    if not rows:
        raise DataError(f"{path}: no test users")
    return pd.DataFrame(rows, columns=["user_id", "clicks", "news_ids", "titles"])


@dataclass
class PensData:
    """What a PENS folder holds; ``None`` for each file it lacks (see :attr:`missing`)."""

    path: Path
    test: Any = None
    news: Any = None
    train: Any = None
    valid: Any = None
    parts: tuple[str, ...] = ("test", "news", "train", "valid")  # the parts that were looked for

    @property
    def missing(self) -> list[str]:
        """The files among the parts looked for that the folder lacks."""
        return [FILES[k] for k in ("news", "train", "valid", "test")
                if k in self.parts and getattr(self, k) is None]

    def require(self, *parts: str):
        """Raise a :class:`DataError` naming the first of ``parts`` (news/train/valid/test) the
        folder lacks and where to get it."""
        for part in parts:
            if getattr(self, part) is None:
                raise _missing(self.path / FILES[part], {
                    "news": "the news bodies and original headlines, needed to generate headlines",
                    "train": "training impressions with dwell times",
                    "valid": "validation impressions with dwell times",
                    "test": "the personalised test references"}[part])
        return self

    def news_index(self):
        """``news_id`` -> row of ``news`` (needs news.tsv)."""
        self.require("news")
        return self.news.set_index("news_id")


def load_pens(path: str | Path, parts: tuple[str, ...] = ("test", "news", "train", "valid"),
              require: tuple[str, ...] = ("test",)) -> PensData:
    """Read the PENS files of ``path`` among ``parts``; those in ``require`` must be there
    (a :class:`DataError` names the missing one and where to get it)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"PENS folder {folder} does not exist; give the folder holding "
                        f"{', '.join(FILES.values())} (from {PENS_URL}) as the data path "
                        f"(llmrec headline: --data_path=DIR)")
    bad = sorted(set(parts) - set(FILES))
    if bad:
        raise DataError(f"unknown PENS part(s) {bad}; choose from {sorted(FILES)}")
    out = PensData(folder, parts=tuple(parts))
    readers = {"news": read_news, "train": read_impressions, "valid": read_impressions,
               "test": read_personalized_test}
    for part in parts:
        p = folder / FILES[part]
        if p.is_file():
            setattr(out, part, readers[part](p))
    return out.require(*require)


def history_table(frame, *, source: str = "test"):
    """One row per click of each user's history: ``user_id, position, news_id, dwell_s, time_s``.

    ``frame`` is :func:`read_personalized_test`'s (no dwell, no time: NaN) or
    :func:`read_impressions`'s; for impressions the history of a user's *last* impression is
    taken (PENS repeats the whole history on every impression of a user)."""
    import pandas as pd

    rows = []
    if source == "test":
        for r in frame.itertuples(index=False):
            for i, n in enumerate(r.clicks):
                rows.append((r.user_id, i, n, math.nan, math.nan))
    elif source == "impressions":
        last = frame.drop_duplicates("user_id", keep="last")
        for r in last.itertuples(index=False):
            for i, (n, d, t) in enumerate(zip(r.clicks, r.dwell_s, r.time_s)):
                rows.append((r.user_id, i, n, float(d), float(t)))
    else:
        raise ValueError(f"source must be 'test' or 'impressions', got {source!r}")
    return pd.DataFrame(rows, columns=["user_id", "position", "news_id", "dwell_s", "time_s"])


def references(test) -> list[dict[str, Any]]:
    """Scoring examples of the test file: one per (user, news), duplicate pairs merged into one
    multi-reference example, empty headlines skipped.

    Each is ``{"user_id", "news_id", "refs": [headline, ...]}`` in file order."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for r in test.itertuples(index=False):
        for n, t in zip(r.news_ids, r.titles):
            if not t:
                continue
            ex = seen.setdefault((r.user_id, n), {"user_id": r.user_id, "news_id": n, "refs": []})
            if t not in ex["refs"]:
                ex["refs"].append(t)
    return list(seen.values())
