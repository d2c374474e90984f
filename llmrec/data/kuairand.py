"""KuaiRand (Pure / 1K / 27K) and KuaiRec watch-time logs, read in their published schemas.

KuaiRand (Gao et al., CIKM 2022; kuairand.com): logs ``log_standard_4_08_to_4_21_<v>.csv``,
``log_standard_4_22_to_5_08_<v>.csv`` and ``log_random_4_22_to_5_08_<v>.csv`` (``<v>`` = pure,
1k, 27k), one interaction per row with the columns of :data:`KUAIRAND_LOG_COLUMNS`
(``play_time_ms`` / ``duration_ms`` in milliseconds, ``time_ms`` a Unix time in milliseconds,
``long_view`` KuaiRand's own long-view flag, ``is_rand`` set for randomly exposed videos, ``tab``
the app scenario 0..14); ``user_features_<v>.csv`` (:data:`KUAIRAND_USER_COLUMNS`) and
``video_features_basic_<v>.csv`` (:data:`KUAIRAND_VIDEO_COLUMNS`). KuaiRec (Gao et al., CIKM
2022): ``big_matrix.csv`` / ``small_matrix.csv`` with :data:`KUAIREC_COLUMNS`
(``play_duration`` / ``video_duration`` in ms, ``timestamp`` in seconds).

:func:`load_kuairand` turns a log into flat samples for the ranking engine: ``watch_s`` and
``duration_s`` (seconds) are **labels**, never features, and stay beside every sample for the
watch-time labels and metrics (:mod:`llmrec.ranking.watchtime`, whose labels ``raw``, ``pcr``,
``wtg``, ``d2q``, ``d2co`` and ``long_view`` are added, fitted on the train split); the duration
may also be a numeric feature (``duration_feature``, default on: ``log1p`` seconds, standardised
with train statistics). Samples are split by time (``time_ms`` quantiles, 8:1:1 by default) and
filtered to durations in ``[min_duration_s, max_duration_s]`` (D2Co: 5..240 s, CWM: 5..400 s).
Users (profile columns as user fields) and videos (author, type, upload type, music type as item
fields) become the users / items tables; ``tab`` and the hour of ``hourmin`` are per-sample
context fields.

A file without one of its schema's columns, or with a non-numeric value where a number belongs,
is a :class:`DataError` naming the file and the column.
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

KUAIRAND_LOG_COLUMNS = (
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow",
    "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms",
    "profile_stay_time", "comment_stay_time", "is_profile_enter", "is_rand", "tab")
KUAIRAND_USER_COLUMNS = (
    "user_id", "user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
    "follow_user_num", "follow_user_num_range", "fans_user_num", "fans_user_num_range",
    "friend_user_num", "friend_user_num_range", "register_days", "register_days_range",
    *(f"onehot_feat{i}" for i in range(18)))
KUAIRAND_VIDEO_COLUMNS = (
    "video_id", "author_id", "video_type", "upload_dt", "upload_type", "visible_status",
    "video_duration", "server_width", "server_height", "music_id", "music_type", "tag")
KUAIREC_COLUMNS = ("user_id", "video_id", "play_duration", "video_duration", "time", "date",
                   "timestamp", "watch_ratio")
# categorical user / video columns used as fields (counts are kept out: their ranges are fields)
USER_FIELDS = ("user_active_degree", "is_lowactive_period", "is_live_streamer", "is_video_author",
               "follow_user_num_range", "fans_user_num_range", "friend_user_num_range",
               "register_days_range")
VIDEO_FIELDS = ("author_id", "video_type", "upload_type", "music_type")
FEEDBACK = ("is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate")
STANDARD_LOGS = ("log_standard_4_08_to_4_21_{v}.csv", "log_standard_4_22_to_5_08_{v}.csv")
RANDOM_LOG = "log_random_4_22_to_5_08_{v}.csv"
SPLIT_NAMES = ("train", "valid", "test")


@dataclass
class KuaiRandConfig:
    """Which KuaiRand / KuaiRec files to read and how to turn them into watch-time samples."""

    path: str = option("data/KuaiRand-Pure/data", help="folder holding the log (and feature) "
                                                       "files")
    source: Literal["kuairand", "kuairec"] = option("kuairand", help="kuairand logs or a KuaiRec "
                                                                     "matrix")
    version: Literal["pure", "1k", "27k"] = option("pure", help="kuairand: the file suffix")
    logs: list[str] = option([], help="log files in `path` (default kuairand: the two standard "
                                      "logs; kuairec: small_matrix.csv)")
    random_log: bool = option(False, help="kuairand: also read the randomly exposed log")
    min_duration_s: float = option(5.0, help="drop videos shorter than this (seconds)")
    max_duration_s: float = option(240.0, help="drop videos longer than this (seconds)")
    fractions: list[float] = option([0.8, 0.1, 0.1], help="train/valid/test fractions of the "
                                                          "split by time")
    duration_feature: bool = option(True, help="the video duration (log1p seconds, "
                                               "standardised) is also a numeric feature")
    tau: float = option(18.0, help="long_view threshold in seconds")
    d2co_alpha: float = option(-0.05, help="d2co label: exponent of the correction function")
    d2co_window: int = option(3, help="d2co label: moving-average half width")
    name: str = option("kuairand-pure", help="dataset name recorded with the features")
    min_count: int = option(1, help="categorical values seen fewer times in train map to unknown")

    def __post_init__(self) -> None:
        if len(self.fractions) != 3 or min(self.fractions) <= 0 \
                or abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ConfigError(f"kuairand.fractions must be three positive fractions summing to 1 "
                              f"(train, valid, test); got {self.fractions}")
        if not 0 < self.min_duration_s < self.max_duration_s:
            raise ConfigError(f"kuairand: need 0 < min_duration_s < max_duration_s (got "
                              f"{self.min_duration_s}, {self.max_duration_s})")


def _read_csv(path: Path, columns: tuple[str, ...], numeric: tuple[str, ...]):
    import pandas as pd

    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read as CSV: {exc}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing} of the published schema (has: "
                        f"{', '.join(frame.columns)})")
    for c in numeric:
        vals = pd.to_numeric(frame[c], errors="coerce")
        bad = vals.isna().to_numpy()
        if bad.any():
            i = int(bad.argmax())
            raise DataError(f"{path}, data row {i + 1}: column {c!r} is not numeric "
                            f"({frame[c].iloc[i]!r}; {int(bad.sum())} such row(s))")
        frame[c] = vals
    return frame


def read_kuairand_log(path: str | Path):
    """One KuaiRand log file (:data:`KUAIRAND_LOG_COLUMNS`, numbers parsed)."""
    numeric = tuple(c for c in KUAIRAND_LOG_COLUMNS if c not in ("user_id", "video_id"))
    return _read_csv(Path(path), KUAIRAND_LOG_COLUMNS, numeric)


def read_kuairec_matrix(path: str | Path):
    """A KuaiRec matrix (:data:`KUAIREC_COLUMNS`), in KuaiRand's log columns: ``time_ms``,
    ``play_time_ms``, ``duration_ms``, ``hourmin`` (from ``time``), ``tab`` 0."""
    f = _read_csv(Path(path), KUAIREC_COLUMNS, ("play_duration", "video_duration", "timestamp",
                                                 "watch_ratio"))
    import pandas as pd

    t = pd.to_datetime(f["time"], errors="coerce")
    return pd.DataFrame({
        "user_id": f["user_id"], "video_id": f["video_id"],
        "time_ms": (f["timestamp"] * 1000.0), "play_time_ms": f["play_duration"],
        "duration_ms": f["video_duration"],
        "hourmin": (t.dt.hour.fillna(0) * 100 + t.dt.minute.fillna(0)).astype("int64"),
        "tab": 0})


def _tables(cfg: KuaiRandConfig, folder: Path, samples):
    import pandas as pd

    users = pd.DataFrame({"user_id": sorted(samples["user_id"].unique())})
    items = pd.DataFrame({"item_id": sorted(samples["item_id"].unique())})
    user_fields, item_fields = [], []
    if cfg.source == "kuairand":
        uf = folder / f"user_features_{cfg.version}.csv"
        if uf.is_file():
            u = _read_csv(uf, KUAIRAND_USER_COLUMNS, ())
            users = users.merge(u[["user_id", *USER_FIELDS]], on="user_id", how="left")
            user_fields = list(USER_FIELDS)
        vf = folder / f"video_features_basic_{cfg.version}.csv"
        if vf.is_file():
            v = _read_csv(vf, KUAIRAND_VIDEO_COLUMNS, ()).rename(columns={"video_id": "item_id"})
            items = items.merge(v[["item_id", *VIDEO_FIELDS]], on="item_id", how="left")
            item_fields = list(VIDEO_FIELDS)
    for df, cols in ((users, user_fields), (items, item_fields)):
        for c in cols:
            df[c] = df[c].fillna("?").astype(str)
    items["title"] = ""  # the logs carry no video titles (the canonical items table wants one)
    return {"users": users, "items": items}, user_fields, item_fields


def load_kuairand(cfg: KuaiRandConfig | None = None):
    """Read the logs of ``cfg`` into watch-time samples: ``(tables, split, feature_config)`` like
    :func:`llmrec.data.census.load_census`."""
    import numpy as np
    import pandas as pd

    from llmrec.data.tables import RecData, table_from_pandas
    from llmrec.ranking.features import FeatureConfig
    from llmrec.ranking.watchtime import WatchTimeConfig, add_watch_time_labels

    cfg = cfg or KuaiRandConfig()
    folder = Path(cfg.path).expanduser()
    if cfg.source == "kuairand":
        names = list(cfg.logs) or [n.format(v=cfg.version) for n in STANDARD_LOGS]
        if cfg.random_log:
            names.append(RANDOM_LOG.format(v=cfg.version))
        frames = [read_kuairand_log(folder / n) for n in names]
    else:
        names = list(cfg.logs) or ["small_matrix.csv"]
        frames = [read_kuairec_matrix(folder / n) for n in names]
    raw = pd.concat(frames, ignore_index=True)
    n_raw = len(raw)
    d = raw["duration_ms"].to_numpy(np.float64) / 1000.0
    keep = (d >= cfg.min_duration_s) & (d <= cfg.max_duration_s)
    raw = raw[keep].reset_index(drop=True)
    if not len(raw):
        raise DataError(f"{folder}: no interaction with a duration in [{cfg.min_duration_s}, "
                        f"{cfg.max_duration_s}] s ({n_raw} read)")
    t = raw["time_ms"].to_numpy(np.float64)
    # split by time: the earliest fractions[0] of the interactions train, then valid, then test
    cut1, cut2 = np.quantile(t, [cfg.fractions[0], cfg.fractions[0] + cfg.fractions[1]])
    split_col = np.where(t <= cut1, "train", np.where(t <= cut2, "valid", "test")).astype(object)
    if any((split_col == s).sum() == 0 for s in SPLIT_NAMES):
        raise DataError(f"{folder}: {len(raw)} interactions cannot be split by time "
                        f"{cfg.fractions} with every split non-empty")
    samples = pd.DataFrame({
        "user_id": raw["user_id"].astype(str), "item_id": raw["video_id"].astype(str),
        "split": split_col, "position": 0, "timestamp": t / 1000.0,
        "watch_s": raw["play_time_ms"].to_numpy(np.float64) / 1000.0,
        "duration_s": raw["duration_ms"].to_numpy(np.float64) / 1000.0,
        "tab": raw["tab"].astype("int64").astype(str),
        "hour": (raw["hourmin"].astype("int64") // 100).astype(str)})
    for c in FEEDBACK:
        if c in raw.columns:
            samples[c] = raw[c].to_numpy(np.float32)
    wcfg = WatchTimeConfig(tau=cfg.tau, d2co_alpha=cfg.d2co_alpha, d2co_window=cfg.d2co_window)
    samples = add_watch_time_labels(samples, wcfg)
    if "long_view" in raw.columns:
        # KuaiRand's own flag against ours (it is computed from the unrounded logs)
        agree = float((raw["long_view"].to_numpy() == samples["long_view"].to_numpy()).mean())
    else:
        agree = None
    samples["label"] = samples["long_view"]
    numeric = []
    stats = {}
    if cfg.duration_feature:
        x = np.log1p(samples["duration_s"].to_numpy())
        tr = split_col == "train"
        mean, std = float(x[tr].mean()), float(x[tr].std()) or 1.0
        samples["duration_feat"] = ((x - mean) / std).astype(np.float32)
        numeric = ["duration_feat"]
        stats["duration_feat"] = {"mean": mean, "std": std}
    tables, user_fields, item_fields = _tables(cfg, folder, samples)
    labels = ["watch_s", "duration_s", "long_view", "raw", "pcr", "wtg", "d2q", "d2co",
              *[c for c in FEEDBACK if c in samples.columns]]
    counts = {s: int((split_col == s).sum()) for s in SPLIT_NAMES}
    info = {"files": [str(folder / n) for n in names], "source": cfg.source,
            "interactions_read": n_raw, "kept": len(samples), "splits": counts,
            "protocol": f"split by time {':'.join(f'{f:g}' for f in cfg.fractions)}, durations "
                        f"{cfg.min_duration_s:g}..{cfg.max_duration_s:g} s",
            "long_view_agreement": agree, "numeric_stats": stats, "tau": cfg.tau,
            "d2co": {"alpha": cfg.d2co_alpha, "window": cfg.d2co_window}}
    fingerprint = hashlib.sha256(json.dumps({"files": info["files"], "n": n_raw,
                                             "cfg": [cfg.fractions, cfg.min_duration_s,
                                                     cfg.max_duration_s]},
                                            sort_keys=True).encode()).hexdigest()[:16]
    data = RecData(name=cfg.name, tables={k: table_from_pandas(v) for k, v in tables.items()},
                   source=str(folder), info=dict(info))
    split = FlatSplit(config=cfg, samples=samples, dataset=cfg.name, fingerprint=fingerprint,
                      info=info, protocol="watch-time log split by time")
    feature_cfg = FeatureConfig(
        max_hist_len=0, user_fields=user_fields, item_fields=item_fields, item_multi_fields=[],
        use_user_id=True, use_item_id=True, use_hist_rating=False, context_fields=["tab", "hour"],
        numeric_fields=numeric, labels=labels, min_count=cfg.min_count)
    log.info("%s: %d of %d interactions kept, %s", cfg.name, len(samples), n_raw, counts)
    return data, split, feature_cfg
