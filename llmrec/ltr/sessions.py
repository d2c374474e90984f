"""Session metrics against user satisfaction: loaders for two session/query logs, per-session and
per-query metric values, and correlations with bootstrap confidence intervals.

- ``session-sat-chiir16`` (Jiang & Allan, CHIIR'16): 80 sessions, each a sequence of queries with
  their shown results (URL, title, snippet; at most 9 per SERP), session-level qrels (-1..2) and
  the user's rating of the session (Performance, 1-5). No clicks.
- ``tiangong-ram-clicks`` (TianGong-SS-FSD / TianGong-QRef as released with Chen et al., CIKM
  2021): one query impression per line, clicks and usefulness of the 10 results, the query's
  satisfaction (0..4); no document ids and no session grouping.

The metrics are those of :mod:`llmrec.ranking.metrics` (``num``, ``sdcg``, ``session_rbp``,
``ndcg_list``, ``dcg_list``, ``u_measure``). :func:`correlate` gives Pearson, Spearman and Kendall
(tau-b) with percentile-bootstrap 95% intervals (resampling sessions or queries).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmrec.errors import DataError
from llmrec.ranking import metrics as M


@dataclass
class RatedSession:
    """One session of the CHIIR'16 set: queries in order, session qrels and the user's ratings."""

    session_id: str
    rating: float  # Performance, 1-5
    difficulty: float
    queries: list  # list[M.SessionQuery]
    qrels: dict = field(default_factory=dict)


def _open_text(path: Path):
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.tsv", f"{stem}.tsv.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: no {stem}.tsv or {stem}.tsv.gz; expected the session-sat-chiir16 "
                    "layout (session.tsv, results.tsv.gz, qrels.tsv.gz)")


def _rows(path: Path, min_fields: int):
    with _open_text(path) as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file")
        for lineno, row in enumerate(reader, 2):
            if not row or row == [""]:
                continue
            if len(row) < min_fields:
                raise DataError(f"{path}, line {lineno}: {len(row)} fields, expected at least "
                                f"{min_fields}")
            yield lineno, row


def _number(path, lineno, text, what) -> float:
    try:
        v = float(text)
    except ValueError:
        raise DataError(f"{path}, line {lineno}: {what} {text!r} is not a number") from None
    if not math.isfinite(v):
        raise DataError(f"{path}, line {lineno}: {what} {text!r} is not finite")
    return v


def load_chiir16(path: str | Path) -> list[RatedSession]:
    """The sessions of a ``session-sat-chiir16`` folder, in ``session.tsv`` order. A query with
    the single field ``no results`` is a query with an empty SERP (it still is a query of the
    session). Snippet length of a result = characters of its title + snippet."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; pass the session-sat-chiir16 data folder")
    spath, rpath, qpath = _find(folder, "session"), _find(folder, "results"), _find(folder,
                                                                                    "qrels")
    sessions: dict[str, RatedSession] = {}
    for lineno, row in _rows(spath, 5):
        sid = row[0].strip()
        sessions[sid] = RatedSession(sid, _number(spath, lineno, row[3], "Performance"),
                                     _number(spath, lineno, row[4], "Difficulty"), [])
    serps: dict[str, dict[int, dict[int, tuple[str, int]]]] = {}
    for lineno, row in _rows(rpath, 3):
        sid = row[0].strip()
        if sid not in sessions:
            raise DataError(f"{rpath}, line {lineno}: session {sid!r} is not in {spath.name}")
        qno = int(_number(rpath, lineno, row[1], "Qno"))
        q = serps.setdefault(sid, {}).setdefault(qno, {})
        if row[2].strip() == "no results":
            continue
        if len(row) < 6:
            raise DataError(f"{rpath}, line {lineno}: {len(row)} fields, expected 6 (SessionID, "
                            "Qno, rank, URL, title, snippet) or 'no results'")
        rank = int(_number(rpath, lineno, row[2], "rank"))
        if rank in q:
            raise DataError(f"{rpath}, line {lineno}: rank {rank} of session {sid} query {qno} "
                            "appears twice")
        q[rank] = (row[3], len(row[4]) + len(row[5]))
    for lineno, row in _rows(qpath, 3):
        sid = row[0].strip()
        if sid in sessions:
            sessions[sid].qrels[row[1]] = _number(qpath, lineno, row[2], "Relevance")
    for sid, s in sessions.items():
        for qno in sorted(serps.get(sid, {})):
            hits = serps[sid][qno]
            ranks = sorted(hits)
            s.queries.append(M.SessionQuery([hits[r][0] for r in ranks],
                                            snippet_len=[hits[r][1] for r in ranks]))
    empty = [sid for sid, s in sessions.items() if not s.queries]
    if empty:
        raise DataError(f"{rpath}: sessions without any query: {', '.join(empty[:5])}")
    return list(sessions.values())


@dataclass
class QueryImpression:
    """One line of the TianGong files: reformulation type, clicks, usefulness, satisfaction."""

    reformulation: str
    clicks: list
    usefulness: list
    satisfaction: float


def load_tiangong(path: str | Path) -> list[QueryImpression]:
    """One ``tiangong-ram-clicks`` file (``fsd_test.tsv.gz`` etc.): tab-separated reformulation
    type, click list, usefulness list (JSON-style lists of ints), satisfaction."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected e.g. "
                        "../shared/data/tiangong-ram-clicks/fsd_test.tsv.gz")
    out = []
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != 4:
                raise DataError(f"{path}, line {lineno}: {len(parts)} tab-separated fields, "
                                "expected 4 (type, clicks, usefulness, satisfaction)")
            try:
                clicks, use = json.loads(parts[1]), json.loads(parts[2])
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, line {lineno}: click or usefulness list is not a "
                                f"list of numbers ({e})") from None
            if len(clicks) != len(use):
                raise DataError(f"{path}, line {lineno}: {len(clicks)} clicks but {len(use)} "
                                "usefulness values")
            out.append(QueryImpression(parts[0], [int(c) for c in clicks],
                                       [float(u) for u in use],
                                       _number(path, lineno, parts[3], "satisfaction")))
    if not out:
        raise DataError(f"{path}: no query impressions")
    return out


# -- correlations --------------------------------------------------------------------------------

def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of x, y ``[B, n]``; NaN where a row is constant."""
    xc = x - x.mean(1, keepdims=True)
    yc = y - y.mean(1, keepdims=True)
    den = np.sqrt((xc ** 2).sum(1) * (yc ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(1) / np.where(den > 0, den, 1), np.nan)


def _kendall_rows(x: np.ndarray, y: np.ndarray, budget: int = 4_000_000) -> np.ndarray:
    """Kendall tau-b of each row pair of x, y ``[B, n]`` from the signs of all pairs; NaN where
    a row is constant. Rows are processed in chunks of about ``budget`` pair comparisons."""
    n = x.shape[1]
    i, j = np.triu_indices(n, 1)
    step = max(1, budget // max(len(i), 1))
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], step):
        dx = np.sign(x[s:s + step, i] - x[s:s + step, j])
        dy = np.sign(y[s:s + step, i] - y[s:s + step, j])
        den = np.sqrt((dx != 0).sum(1).astype(np.float64) * (dy != 0).sum(1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + step] = np.where(den > 0, (dx * dy).sum(1) / np.where(den > 0, den, 1),
                                       np.nan)
    return out


def correlate(x, y, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Pearson, Spearman and Kendall tau-b of ``x`` against ``y`` with scipy's p-values and
    percentile-bootstrap intervals (``n_boot`` resamples of the pairs with replacement; resamples
    where either side is constant are dropped). Pairs with a NaN are left out first."""
    import warnings

    from scipy import stats

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = len(x)
    out = {"n": int(n), "n_dropped": int((~keep).sum())}
    if n < 3:
        for m in ("pearson", "spearman", "kendall"):
            out[m] = {"r": float("nan"), "lo": float("nan"), "hi": float("nan"),
                      "p": float("nan")}
        return out
    with warnings.catch_warnings():  # a constant side gives NaN, reported as such
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        point = {"pearson": stats.pearsonr(x, y), "spearman": stats.spearmanr(x, y),
                 "kendall": stats.kendalltau(x, y)}
    idx = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    bx, by = x[idx], y[idx]
    boots = {"pearson": _pearson_rows(bx, by),
             "spearman": _pearson_rows(stats.rankdata(bx, axis=1), stats.rankdata(by, axis=1)),
             "kendall": _kendall_rows(bx, by) if n <= 500 else
             np.array([stats.kendalltau(a, b).statistic for a, b in zip(bx, by)])}
    a = (1 - level) / 2
    for m, res in point.items():
        bs = boots[m][~np.isnan(boots[m])]
        out[m] = {"r": float(res.statistic), "p": float(res.pvalue),
                  "lo": float(np.quantile(bs, a)) if len(bs) else float("nan"),
                  "hi": float(np.quantile(bs, 1 - a)) if len(bs) else float("nan")}
    out["n_boot"] = int(n_boot)
    return out


# -- metric values -------------------------------------------------------------------------------

def chiir16_metrics(sessions: list[RatedSession], k: int = 9, L: float = 1000.0,
                    c_q: float = 150.0, rbp_p: float = 0.8, rbp_b: float = 0.8) -> dict:
    """Per-session values (NaN where undefined) of the session metrics on CHIIR'16-style sessions
    with qrels: every shown result is read (no clicks: depth = the whole SERP, cut at ``k``)."""
    max_grade = max((max(s.qrels.values(), default=1.0) for s in sessions), default=1.0)

    def cut(s):
        return [M.SessionQuery(q.docs[:k], snippet_len=q.snippet_len[:k]) for q in s.queries]

    def per_query(s, agg):
        vals = [M.ndcg_list(q.docs, s.qrels, k) for q in s.queries]
        vals = [0.0 if math.isnan(v) else v for v in vals]  # an empty SERP scores 0
        return agg(vals)

    common = {"depth": "full", "c_q": c_q}
    table = {
        "NUM": lambda s: M.num(cut(s), s.qrels, L=L, **common),
        "NUM (no reformulation cost)": lambda s: M.num(cut(s), s.qrels, L=L,
                                                       reformulation_cost=False, **common),
        f"NUM (L={int(5 * L)})": lambda s: M.num(cut(s), s.qrels, L=5 * L, **common),
        "U-measure (session, unnormalised)": lambda s: M.num(cut(s), s.qrels, L=L,
                                                             normalise=False, **common),
        "sDCG (b=2, bq=4)": lambda s: M.sdcg(cut(s), s.qrels, k),
        "nsDCG (b=2, bq=4)": lambda s: M.sdcg(cut(s), s.qrels, k, normalise=True),
        f"session RBP (p={rbp_p}, b={rbp_b})": lambda s: M.session_rbp(
            cut(s), s.qrels, p=rbp_p, b=rbp_b, max_grade=max_grade),
        "mean nDCG@9 (per query)": lambda s: per_query(s, lambda v: sum(v) / len(v)),
        "sum nDCG@9": lambda s: per_query(s, sum),
        "last nDCG@9": lambda s: per_query(s, lambda v: v[-1]),
        "number of queries": lambda s: float(len(s.queries)),
    }
    return {name: [f(s) for s in sessions] for name, f in table.items()}


def tiangong_metrics(rows: list[QueryImpression], max_usefulness: float, L: float = 1000.0,
                     rbp_p: float = 0.8) -> dict:
    """Per-query values on TianGong impressions: gain-based metrics on the usefulness labels and
    the same metrics with clicks as the (click-derived) relevance."""
    def lab(vals):
        return {str(r): float(v) for r, v in enumerate(vals)}

    docs = [str(r) for r in range(10)]

    def ndcg(vals):
        v = M.ndcg_list(docs[:len(vals)], lab(vals), 10, gain="linear")
        return 0.0 if math.isnan(v) else v

    def umeas(vals):
        g = [float(v) / max_usefulness for v in vals]
        return M.u_measure(g, [150.0 * r for r in range(len(vals))], L)

    def rbp(vals, mx):
        return M.session_rbp([docs[:len(vals)]], lab(vals), p=rbp_p, b=1.0, max_grade=mx)

    table = {
        "DCG@10 (usefulness, linear gain)": lambda q: M.dcg_list(docs, lab(q.usefulness), 10,
                                                                 gain="linear"),
        f"RBP (p={rbp_p}, usefulness)": lambda q: rbp(q.usefulness, max_usefulness),
        "nDCG@10 (usefulness)": lambda q: ndcg(q.usefulness),
        "U-measure (usefulness, 150 chars/result)": lambda q: umeas(q.usefulness),
        "DCG@10 (clicks as relevance)": lambda q: M.dcg_list(docs, lab(q.clicks), 10,
                                                             gain="linear"),
        f"RBP (p={rbp_p}, clicks as relevance)": lambda q: rbp(q.clicks, 1.0),
        "number of clicks": lambda q: float(sum(q.clicks)),
    }
    return {name: [f(q) for q in rows] for name, f in table.items()}


def click_usefulness_agreement(rows: list[QueryImpression]) -> dict:
    """How well "clicked = relevant" matches the usefulness labels: precision P(useful > 0 |
    clicked), recall P(clicked | useful > 0), over all (query, rank) pairs."""
    c = np.array([x for q in rows for x in q.clicks], dtype=bool)
    u = np.array([x for q in rows for x in q.usefulness]) > 0
    return {"pairs": int(c.size), "clicked": int(c.sum()), "useful": int(u.sum()),
            "precision": float((c & u).sum() / max(c.sum(), 1)),
            "recall": float((c & u).sum() / max(u.sum(), 1))}


def satisfaction_table(metric_values: dict, ratings, n_boot: int = 1000, seed: int = 0) -> list:
    """One row per metric: its correlations with ``ratings`` (see :func:`correlate`)."""
    return [{"metric": name, **correlate(vals, ratings, n_boot, seed)}
            for name, vals in metric_values.items()]
