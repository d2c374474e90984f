"""Dataset statistics: :func:`compute_stats` (a JSON-able dict) and :func:`format_stats` (text).

This module owns what ``llmrec data stats`` reports: row counts per table, and one section per
kind of data the dataset has (interactions, dialogues, judgments); a section appears only when its
table exists. Everything is computed column-wise (pandas / Arrow), so a few hundred thousand
ratings take well under a second.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
import pandas as pd

from llmrec.data.tables import RecData

log = logging.getLogger(__name__)


def _arrow_column(data: RecData, table: str, column: str):
    # list columns stay in Arrow: converting nested rows to Python objects is the slow part
    return data.table(table).data.table.column(column)


def _histogram(values: pd.Series) -> dict[str, int]:
    """value -> count in ascending value order, keys as text (JSON object keys are strings)."""
    counts = values.dropna().value_counts().sort_index()
    return {_number_key(v): int(c) for v, c in counts.items()}


def _number_key(v: Any) -> str:
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(round(f, 6))


def _date(ts: int) -> str:
    return dt.datetime.fromtimestamp(int(ts), tz=dt.timezone.utc).date().isoformat()


def _interaction_stats(data: RecData) -> dict[str, Any]:
    df = data.df("interactions")
    n_users = int(df["user_id"].nunique())
    n_items = int(df["item_id"].nunique())
    n = int(len(df))
    out: dict[str, Any] = {
        "n_users": n_users,
        "n_items": n_items,
        "n_catalog_items": int(len(data.table("items"))) if data.has("items") else None,
        "n_interactions": n,
        "density": (n / (n_users * n_items)) if n_users and n_items else 0.0,
        "per_user": _spread(df.groupby("user_id", sort=False).size()) if n else None,
    }
    ratings = df["rating"]
    n_rated = int(ratings.notna().sum())
    out["n_rated"] = n_rated
    out["rating_histogram"] = _histogram(ratings) if n_rated else {}
    out["mean_rating"] = float(ratings.mean()) if n_rated else None
    ts = df["timestamp"].dropna()
    if len(ts):
        first, last = int(ts.min()), int(ts.max())
        out["time_span"] = {"first": _date(first), "last": _date(last),
                            "days": round((last - first) / 86400, 1)}
    else:
        out["time_span"] = None
    return out


def _spread(sizes: pd.Series) -> dict[str, float]:
    return {"min": int(sizes.min()), "median": float(sizes.median()), "mean": float(sizes.mean()),
            "max": int(sizes.max())}


def _dialogue_stats(data: RecData) -> dict[str, Any]:
    import pyarrow.compute as pc

    turns = _arrow_column(data, "dialogues", "turns")
    n_dialogues = len(turns)
    lengths = pc.list_value_length(turns)
    n_turns = int(pc.sum(lengths).as_py() or 0)
    out: dict[str, Any] = {
        "n_dialogues": n_dialogues,
        "n_turns": n_turns,
        "mean_turns": (n_turns / n_dialogues) if n_dialogues else 0.0,
    }
    for col in ("mentioned", "liked", "disliked"):
        flat = pc.list_flatten(_arrow_column(data, "dialogues", col))
        out[f"n_{col}_items"] = int(pc.count_distinct(flat).as_py()) if len(flat) else 0
    return out


def _judgment_stats(data: RecData) -> dict[str, Any]:
    df = data.df("judgments")
    return {
        "n_queries": int(df["query_id"].nunique()),
        "n_queries_listed": int(len(data.table("queries"))) if data.has("queries") else None,
        "n_judgments": int(len(df)),
        "n_docs": int(df["doc_id"].nunique()),
        "grade_histogram": _histogram(df["grade"]),
        "per_query": _spread(df.groupby("query_id", sort=False).size()) if len(df) else None,
    }


def compute_stats(data: RecData) -> dict[str, Any]:
    """Statistics of every table the dataset has, as plain JSON-able values."""
    stats: dict[str, Any] = {
        "dataset": data.name,
        "source": data.source,
        "tables": {name: int(len(ds)) for name, ds in data.tables.items()},
    }
    if data.has("interactions"):
        stats["interactions"] = _interaction_stats(data)
    if data.has("dialogues"):
        stats["dialogues"] = _dialogue_stats(data)
    if data.has("judgments"):
        stats["judgments"] = _judgment_stats(data)
    return stats


# --------------------------------------------------------------------------- text

def _n(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    return f"{v:,.2f}"


def _hist_line(hist: dict[str, int]) -> str:
    return "  ".join(f"{k}: {c:,}" for k, c in hist.items()) or "-"


def format_stats(stats: dict[str, Any]) -> str:
    """The output of :func:`compute_stats` as aligned, human-readable lines."""
    lines = [f"dataset   {stats.get('dataset', '?')}"]
    if stats.get("source"):
        lines.append(f"source    {stats['source']}")
    tables = stats.get("tables") or {}
    lines.append("tables    " + (", ".join(f"{t} {_n(n)}" for t, n in tables.items()) or "none"))

    def section(title: str, rows: list[tuple[str, str]]) -> None:
        lines.append("")
        lines.append(title)
        width = max(len(k) for k, _ in rows)
        lines.extend(f"  {k.ljust(width)}  {v}" for k, v in rows)

    s = stats.get("interactions")
    if s:
        items = _n(s["n_items"])
        if s.get("n_catalog_items") is not None:
            items += f" (catalog {_n(s['n_catalog_items'])})"
        rows = [("users", _n(s["n_users"])), ("items", items),
                ("interactions", _n(s["n_interactions"])),
                ("density", f"{s['density']:.4%}")]
        if s.get("per_user"):
            p = s["per_user"]
            rows.append(("per user", f"min {_n(p['min'])}, median {p['median']:g}, "
                         f"mean {p['mean']:.1f}, max {_n(p['max'])}"))
        if s.get("n_rated"):
            rows.append(("ratings", _hist_line(s["rating_histogram"])))
            rows.append(("mean rating", f"{s['mean_rating']:.3f}"))
        else:
            rows.append(("ratings", "none (implicit feedback)"))
        span = s.get("time_span")
        rows.append(("time span", f"{span['first']} .. {span['last']} ({span['days']:,} days)"
                     if span else "no timestamps"))
        section("interactions", rows)
    s = stats.get("dialogues")
    if s:
        section("dialogues", [
            ("dialogues", _n(s["n_dialogues"])), ("turns", _n(s["n_turns"])),
            ("turns per dialogue", f"{s['mean_turns']:.1f}"),
            ("mentioned items", _n(s["n_mentioned_items"])),
            ("liked / disliked items", f"{_n(s['n_liked_items'])} / {_n(s['n_disliked_items'])}"),
        ])
    s = stats.get("judgments")
    if s:
        queries = _n(s["n_queries"])
        if s.get("n_queries_listed") is not None:
            queries += f" judged (listed {_n(s['n_queries_listed'])})"
        rows = [("queries", queries), ("judgments", _n(s["n_judgments"])),
                ("documents", _n(s["n_docs"])), ("grades", _hist_line(s["grade_histogram"]))]
        if s.get("per_query"):
            p = s["per_query"]
            rows.append(("per query", f"min {_n(p['min'])}, median {p['median']:g}, "
                         f"mean {p['mean']:.1f}, max {_n(p['max'])}"))
        section("judgments", rows)
    return "\n".join(lines)
