"""UCI Census-Income (KDD) for multi-task ranking: the two-task benchmark of the MMoE paper.

The file format (``census-income.data.gz`` / ``census-income.test.gz``): one record per line, no
header, 42 fields separated by a comma and a space (``", "``), the last field the income class
(``- 50000.`` or ``50000+.``); plain or gzip (sniffed from the bytes). Column names are those of
the MMoE reproductions (:data:`COLUMNS`); ``instance_weight`` is a survey weight, not a feature,
and is dropped.

Tasks (:class:`CensusConfig.group`), as in Ma et al. (KDD 2018):

* group 1: ``income`` = income above 50K, ``marital`` = marital status "Never married";
* group 2: ``education`` = at least a college degree (:data:`COLLEGE`: associates, bachelors,
  masters, professional school, doctorate; "Some college but no degree" is not one -- our
  reading of "at least college"), ``marital``.

Every task label is a named label column (``features.labels``), and the primary ``label`` is a
copy of one of them (:attr:`CensusConfig.primary`, default the group's first task): a multi-task
run trains on ``task.labels = [income, marital]``, a single-task baseline is a binary run with
``primary`` set to the task it learns. The columns a task is defined from (``income_50k``,
``marital_stat``, and ``education`` for group 2) are never features.

Only the UCI *test* file is staged here, so the loader re-splits one file at random with a seed
(8:1:1 by default) and says so in ``info`` ("test file only, re-split" when the file is the test
file): numbers are not comparable to results on UCI's own train/test split.
Categorical columns become context fields; :data:`NUMERIC` columns numeric fields, standardised
with the *train* split's mean and std (stored in ``info["numeric_stats"]``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmrec.config import option
from llmrec.data.splits import FlatSplit
from llmrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

COLUMNS = (
    "age", "class_worker", "det_ind_code", "det_occ_code", "education", "wage_per_hour",
    "hs_college", "marital_stat", "major_ind_code", "major_occ_code", "race", "hisp_origin", "sex",
    "union_member", "unemp_reason", "full_or_part_emp", "capital_gains", "capital_losses",
    "stock_dividends", "tax_filer_stat", "region_prev_res", "state_prev_res", "det_hh_fam_stat",
    "det_hh_summ", "instance_weight", "mig_chg_msa", "mig_chg_reg", "mig_move_reg", "mig_same",
    "mig_prev_sunbelt", "num_emp", "fam_under_18", "country_father", "country_mother",
    "country_self", "citizenship", "own_or_self", "vet_question", "vet_benefits", "weeks_worked",
    "year", "income_50k")
NUMERIC = ("age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends", "num_emp",
           "weeks_worked")
DROPPED = ("instance_weight",)
INCOME = {"- 50000.": 0, "50000+.": 1}
NEVER_MARRIED = "Never married"
COLLEGE = ("Associates degree-occup /vocational", "Associates degree-academic program",
           "Bachelors degree(BA AB BS)", "Masters degree(MA MS MEng MEd MSW MBA)",
           "Prof school degree (MD DDS DVM LLB JD)", "Doctorate degree(PhD EdD)")
GROUPS = {1: ("income", "marital"), 2: ("education", "marital")}
# the source column each task label is derived from (never a feature)
SOURCE = {"income": "income_50k", "marital": "marital_stat", "education": "education"}
SPLIT_NAMES = ("train", "valid", "test")
_SEP = ", "
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class CensusConfig:
    """Which census-income file to read, which task group to build and how to re-split it."""

    path: str = option("../shared/data/census-income-kdd/census-income.test.gz",
                       help="census-income KDD file (plain or .gz; 42 fields, ', ' separated)")
    group: Literal[1, 2] = option(1, help="task group of the MMoE paper: 1 = income > 50K and "
                                          "marital never married; 2 = education at least "
                                          "college and marital never married")
    primary: str | None = option(None, help="the task whose label is the primary `label` (a "
                                            "single-task binary run learns it); null = the "
                                            "group's first task")
    fractions: list[float] = option([0.8, 0.1, 0.1], help="train/valid/test fractions of the "
                                                          "seeded re-split")
    seed: int = option(42, help="seed of the re-split (same seed + file = same split)")
    name: str = option("census-income-kdd", help="dataset name recorded with the features")
    min_count: int = option(1, help="categorical values seen fewer times in train map to unknown")

    def __post_init__(self) -> None:
        self.group = int(self.group)
        if self.group not in GROUPS:
            raise ConfigError(f"census.group must be 1 or 2 (got {self.group})")
        if self.primary is None:
            self.primary = GROUPS[self.group][0]
        if self.primary not in GROUPS[self.group]:
            raise ConfigError(f"census.primary {self.primary!r} is not a task of group "
                              f"{self.group} ({', '.join(GROUPS[self.group])})")
        if len(self.fractions) != 3 or min(self.fractions) <= 0 \
                or abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ConfigError(f"census.fractions must be three positive fractions summing to 1 "
                              f"(train, valid, test); got {self.fractions}")
        if self.min_count < 1:
            raise ConfigError(f"census.min_count must be >= 1 (got {self.min_count})")

    @property
    def tasks(self) -> tuple[str, ...]:
        return GROUPS[self.group]


def read_census(path: str | Path):
    """Read one census-income KDD file: returns ``(frame, sha256)`` (of the file's bytes).

    ``frame`` has the :data:`COLUMNS` (minus :data:`DROPPED`): the :data:`NUMERIC` ones as
    float64, ``income_50k`` as 0/1, the others as stripped strings (``?`` stays a value). Raises
    :class:`DataError` naming the file and line for a row without 42 fields, a non-numeric value
    in a numeric column or an unknown income class.
    """
    import numpy as np
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"census-income file not found: {path}")
    try:
        with open(path, "rb") as f:
            raw = f.read()
        sha = hashlib.sha256(raw).hexdigest()  # of the file as stored (the data card's checksum)
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
        text = raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    rows = []
    lines = []
    for ln, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        values = line.rstrip().split(_SEP)
        if len(values) != len(COLUMNS):
            raise DataError(f"{path}, line {ln}: {len(values)} fields, expected {len(COLUMNS)} "
                            f"separated by ', ' ({line[:80]!r})")
        rows.append([v.strip() for v in values])
        lines.append(ln)
    if not rows:
        raise DataError(f"{path}: no records")
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    line_no = np.asarray(lines)
    bad = ~frame["income_50k"].isin(list(INCOME)).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}, line {line_no[i]}: income class {frame['income_50k'][i]!r} is "
                        f"not one of {', '.join(map(repr, INCOME))} ({int(bad.sum())} such row(s))")
    frame["income_50k"] = frame["income_50k"].map(INCOME).astype(np.int64)
    for c in NUMERIC:
        vals = pd.to_numeric(frame[c], errors="coerce")
        bad = vals.isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{path}, line {line_no[i]}: column {c!r} is not numeric "
                            f"({frame[c][i]!r}; {int(bad.sum())} such row(s))")
        frame[c] = vals.astype(np.float64)
    return frame.drop(columns=list(DROPPED)), sha


def task_labels(frame) -> dict[str, Any]:
    """The 0/1 task labels of every task of every group, from the source columns."""
    import numpy as np

    return {"income": frame["income_50k"].to_numpy().astype(np.float32),
            "marital": (frame["marital_stat"] == NEVER_MARRIED).to_numpy().astype(np.float32),
            "education": frame["education"].isin(COLLEGE).to_numpy().astype(np.float32)}


def load_census(cfg: CensusConfig | None = None):
    """Read and re-split the file of ``cfg``: returns ``(tables, split, feature_config)`` like
    :func:`llmrec.data.bars.load_bars`."""
    import numpy as np
    import pandas as pd

    from llmrec.data.tables import RecData
    from llmrec.ranking.features import FeatureConfig

    cfg = cfg or CensusConfig()
    frame, sha = read_census(cfg.path)
    n = len(frame)
    rng = np.random.default_rng(cfg.seed)
    n_train = int(round(cfg.fractions[0] * n))
    n_valid = int(round(cfg.fractions[1] * n))
    if min(n_train, n_valid, n - n_train - n_valid) < 1:
        raise DataError(f"{cfg.path}: {n} records cannot be split {cfg.fractions} with every "
                        f"split non-empty")
    split_col = np.full(n, "test", dtype=object)
    perm = rng.permutation(n)
    split_col[perm[:n_train]] = "train"
    split_col[perm[n_train:n_train + n_valid]] = "valid"
    is_train = split_col == "train"

    labels = task_labels(frame)
    tasks = list(cfg.tasks)
    excluded = {SOURCE[t] for t in tasks} | {"income_50k", "marital_stat"}
    context = [c for c in COLUMNS if c not in NUMERIC and c not in DROPPED and c not in excluded]
    stats = {}
    numeric = {}
    for c in NUMERIC:
        x = frame[c].to_numpy()
        mean, std = float(x[is_train].mean()), float(x[is_train].std())
        std = std if std > 0 else 1.0
        stats[c] = {"mean": mean, "std": std}
        numeric[c] = ((x - mean) / std).astype(np.float32)
    samples = pd.DataFrame({
        "user_id": "0", "item_id": "0", "label": labels[cfg.primary], "split": split_col,
        "position": 0, **{t: labels[t] for t in tasks}, **{c: frame[c] for c in context},
        **numeric})

    test_file = Path(cfg.path).name.startswith("census-income.test")
    counts = {s: int((split_col == s).sum()) for s in SPLIT_NAMES}
    info = {
        "file": str(cfg.path), "sha256": sha, "records": n,
        "protocol": ("test file only, re-split" if test_file else "one file, re-split")
                    + f" {':'.join(f'{f:g}' for f in cfg.fractions)} with seed {cfg.seed}",
        "group": cfg.group, "tasks": tasks, "primary": cfg.primary, "seed": cfg.seed,
        "splits": counts,
        "positive_rate": {t: {s: float(labels[t][split_col == s].mean()) for s in SPLIT_NAMES}
                          for t in tasks},
        "numeric_stats": stats, "context_fields": context, "numeric_fields": list(NUMERIC),
        "note": "not comparable to results on UCI's train/test split" if test_file else "",
    }
    fingerprint = hashlib.sha256(json.dumps(
        {"sha256": sha, "group": cfg.group, "primary": cfg.primary, "seed": cfg.seed,
         "fractions": list(cfg.fractions)}, sort_keys=True).encode()).hexdigest()[:16]
    tables = RecData(name=cfg.name, tables={}, source=str(cfg.path), info=dict(info))
    split = FlatSplit(config=cfg, samples=samples, dataset=cfg.name, fingerprint=fingerprint,
                      info=info, protocol="census-income re-split")
    feature_cfg = FeatureConfig(
        max_hist_len=0, user_fields=[], item_fields=[], item_multi_fields=[], use_user_id=False,
        use_item_id=False, use_hist_rating=False, context_fields=context,
        numeric_fields=list(NUMERIC), labels=tasks, min_count=cfg.min_count)
    log.info("census %s: %d records, %s (%s)", cfg.name, n, counts, info["protocol"])
    return tables, split, feature_cfg


def census_features(cfg: CensusConfig | None = None):
    """:func:`load_census` then :func:`build_features`: the encoded :class:`FeatureSet` with the
    census provenance (file, sha256, protocol, train stats) in ``info["census"]``."""
    from llmrec.ranking.features import build_features

    cfg = cfg or CensusConfig()
    tables, split, feature_cfg = load_census(cfg)
    fs = build_features(tables, split, feature_cfg)
    fs.info["dataset"] = cfg.name
    fs.info["split_fingerprint"] = split.fingerprint
    fs.info["census"] = dict(split.info)
    return fs
