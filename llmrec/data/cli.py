"""``llmrec data stats|split|show``: look at a dataset and write leakage-safe splits."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from llmrec.config import option
from llmrec.data.loaders import DataConfig, load_data
from llmrec.data.splits import SplitConfig, make_split

log = logging.getLogger(__name__)


@dataclass
class StatsConfig:
    data: DataConfig = option(default_factory=DataConfig, help="the dataset to describe")
    json: bool = option(False, help="print the statistics as JSON")


@dataclass
class SplitCommandConfig:
    data: DataConfig = option(default_factory=DataConfig, help="the dataset to split")
    split: SplitConfig = option(default_factory=SplitConfig, help="the split protocol")
    out: str = option("runs/split", help="folder to write the split into (replaced atomically)")


@dataclass
class ShowConfig:
    data: DataConfig = option(default_factory=DataConfig, help="the dataset to show")
    table: str = option("items", help="table to show: users, items, interactions, dialogues, "
                                      "judgments, queries, or a dataset-specific table")
    id: str | None = option(None, help="show only rows whose id column equals this value "
                                       "(user_id / item_id / dialogue_id / query_id)")
    n: int = option(5, help="number of rows to show")

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1 (got {self.n})")


def _stats(cfg, args) -> int:
    from llmrec.data.stats import compute_stats, format_stats

    data = load_data(cfg.data)
    stats = compute_stats(data)
    print(json.dumps(stats, indent=2) if cfg.json else format_stats(stats))
    return 0


def _split(cfg, args) -> int:
    data = load_data(cfg.data)
    split = make_split(data, cfg.split)
    split.save(cfg.out, extra_config=cfg)
    summary = split.summary()
    print(f"split of {data.name} ({cfg.split.protocol}, seed {cfg.split.seed}) -> {cfg.out}")
    for name in ("train", "valid", "test"):
        s = summary[name]
        print(f"  {name:<5} users {s['users']:>7,}  samples {s['samples']:>9,}  "
              f"positive rate {s['positive_rate']}")
    print(f"  mean LM-history length {summary['mean_lm_history']}  fingerprint {summary['fingerprint']}")
    return 0


_ID_COLUMNS = ("user_id", "item_id", "dialogue_id", "query_id", "doc_id", "dialog_id")


def _show(cfg, args) -> int:
    import pandas as pd

    from llmrec.errors import DataError

    data = load_data(cfg.data)
    df = data.df(cfg.table)
    if cfg.id is not None:
        id_cols = [c for c in _ID_COLUMNS if c in df.columns]
        if not id_cols:
            raise DataError(f"table {cfg.table!r} has no id column to filter on "
                            f"(columns: {', '.join(df.columns)})")
        df = df[df[id_cols[0]].astype(str) == cfg.id]
        if df.empty:
            raise DataError(f"no row of table {cfg.table!r} has {id_cols[0]} == {cfg.id!r}")
    rows = df.head(cfg.n)
    with pd.option_context("display.max_colwidth", 120, "display.width", 200):
        for _, row in rows.iterrows():
            print("-" * 60)
            for col, val in row.items():
                print(f"{col:>14}: {_short(val)}")
    print(f"({len(rows)} of {len(df):,} rows of {data.name}/{cfg.table})")
    return 0


def _short(val: Any, limit: int = 300) -> str:
    if hasattr(val, "tolist"):
        val = val.tolist()
    if isinstance(val, float) and val.is_integer():
        val = int(val)  # nullable integer columns (e.g. year) come back from Arrow as floats
    text = val if isinstance(val, str) else json.dumps(val, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + " ..."


def register(subparsers) -> None:
    from llmrec.cli import add_config_command

    p = subparsers.add_parser("data", help="dataset statistics, splits and rows",
                              description="Look at datasets and write leakage-safe splits.")
    p.set_defaults(_handler=None, _group_parser=p)
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    def dataset_arg(parser):
        parser.add_argument("dataset", nargs="?", default=None,
                            help="dataset name (shorthand for --data.name), e.g. ml-latest-small, "
                                 "movielens-1m, redial, trec")
        parser.set_defaults(_base_from_args=lambda a: {"data": {"name": a.dataset}} if a.dataset else {})

    for name, cls, fn, help_text, outputs in (
        ("stats", StatsConfig, _stats, "users, items, interactions, rating histogram, density, "
                                       "time span", None),
        ("split", SplitCommandConfig, _split, "write a leakage-safe split (KAR protocol or "
                                              "leave-last-out)", lambda c: [(c.out, "--out")]),
        ("show", ShowConfig, _show, "print rows of a table", None),
    ):
        add_config_command(sub, name, cls, fn, help=help_text, configure=dataset_arg,
                           outputs=outputs)
