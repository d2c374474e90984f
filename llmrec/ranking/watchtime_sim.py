"""Semi-synthetic watch-time logs on real preferences: MovieLens-1M ratings as the latent interest,
simulated durations and watch times (**simulated watch time**, not a real watch-time log).

Every (user, item) pair the user rated becomes one play. The generative model, all of whose
parameters live in :class:`WatchTimeSimConfig` (with the seed):

- **interest** ``q = (rating - 1) / 4`` in [0, 1] (the real rating; kept in the ``interest``
  column, never a feature).
- **duration** ``d`` per item (seconds): log-normal with median ``duration_median_s`` and log-sd
  ``duration_sigma``, clipped to ``[min_duration_s, max_duration_s]``; drawn from a generator
  seeded by ``(seed, item id)``, so an item keeps its duration whichever users are sampled. It
  is independent of the interest (ML-1M has no running times; any interest-duration link in a
  table is therefore a bias of the label, not a property of the data).
- **counterfactual watch time** (what the user would watch of an endless video):
  ``w* = scale * d^duration_exponent * exp(interest_slope * (q - 0.5) + watch_sigma * eps)``,
  ``eps ~ N(0, 1)``. ``duration_exponent`` (0.7) < 1 is the duration bias: a long video is
  watched longer in seconds at equal interest (``w*`` grows with ``d``) while its completion
  rate falls (``w* / d`` shrinks with ``d``), so raw watch time favours long videos and the
  completion rate short ones.
- **truncation**: the observed watch time is ``w = min(w*, d)`` (a completed play hides how much
  longer the user would have watched).
- **noisy watching**: a share ``noisy_share`` of the plays (chosen independently of everything
  else) has instead ``w = U(0, min(noisy_max_s, d))``, a short look independent of the interest
  (``noisy`` column).

:func:`simulate_log` turns a ratings frame into a log in KuaiRand's published log schema
(:data:`llmrec.data.kuairand.KUAIRAND_LOG_COLUMNS`, milliseconds; ``time_ms`` = the rating time,
``tab`` 0, ``is_click`` 1, the other feedback 0, ``long_view`` by KuaiRand's rule), plus the
columns ``interest``, ``rating``, ``w_star_s`` and ``noisy`` that the KuaiRand loader never reads.
:func:`write_simulated_log` writes it as the two standard-log files of KuaiRand-Pure with
``user_features_pure.csv`` (ML-1M gender, age and occupation in the ``is_lowactive_period``,
``user_active_degree`` and ``follow_user_num_range`` columns; the other user fields constant) and
``video_features_basic_pure.csv`` (the first genre as ``video_type``, the decade as
``upload_type``; author / music constant), so :func:`llmrec.data.kuairand.load_kuairand` (and
``python -m llmrec.ranking.watchtime_run``) reads it unchanged: split by time 8:1:1, durations
kept in ``[min_duration_s, max_duration_s]``. :func:`load_simulated` does both and adds the true
``interest`` to the split's samples (a column the feature builder does not read).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.config import option
from llmrec.errors import ConfigError, DataError

LOG_FILES = ("log_standard_4_08_to_4_21_pure.csv", "log_standard_4_22_to_5_08_pure.csv")
EXTRA_COLUMNS = ("interest", "rating", "w_star_s", "noisy")
SIM_LABEL = "simulated watch time"


@dataclass
class WatchTimeSimConfig:
    """The simulator's parameters (all of them) and its seed."""

    path: str = option("../shared/data/movielens-1m", help="ML-1M folder (movies.dat, "
                                                           "ratings-users-1-2999.dat.gz or "
                                                           "ratings.dat, users.dat)")
    n_users: int = option(0, help="keep this many users, drawn with user_seed (0 = all users "
                                  "of the ratings file)")
    user_seed: int = option(0, help="seed of the user subsample")
    seed: int = option(0, help="seed of the durations and watch times")
    duration_median_s: float = option(40.0, help="median of the log-normal item duration (s)")
    duration_sigma: float = option(0.9, help="log-sd of the item duration")
    min_duration_s: float = option(5.0, help="durations are clipped to at least this (s)")
    max_duration_s: float = option(400.0, help="durations are clipped to at most this (s)")
    scale: float = option(2.0, help="w* = scale * d^duration_exponent * exp(...)")
    duration_exponent: float = option(0.7, help="the duration bias: w* grows like d^this at "
                                                "equal interest (1 = no bias in the completion "
                                                "rate, 0 = none in seconds)")
    interest_slope: float = option(2.0, help="w* grows by exp(slope * (q - 0.5)) with the "
                                             "interest q in [0, 1]")
    watch_sigma: float = option(0.4, help="log-sd of the multiplicative noise of w*")
    noisy_share: float = option(0.15, help="share of plays that are noisy looks, "
                                           "w = U(0, min(noisy_max_s, d))")
    noisy_max_s: float = option(5.0, help="longest noisy look (s)")
    positive_rating: float = option(4.0, help="evaluation: a play is an interest positive "
                                              "when its rating is at least this")

    def __post_init__(self) -> None:
        if not 0 < self.min_duration_s < self.max_duration_s:
            raise ConfigError(f"watchtime_sim: need 0 < min_duration_s < max_duration_s (got "
                              f"{self.min_duration_s}, {self.max_duration_s})")
        if self.duration_median_s <= 0 or self.scale <= 0:
            raise ConfigError("watchtime_sim: duration_median_s and scale must be > 0")
        if self.duration_sigma < 0 or self.watch_sigma < 0 or self.noisy_max_s <= 0:
            raise ConfigError("watchtime_sim: duration_sigma and watch_sigma must be >= 0, "
                              "noisy_max_s > 0")
        if not 0 <= self.noisy_share < 1:
            raise ConfigError(f"watchtime_sim.noisy_share must be in [0, 1), not "
                              f"{self.noisy_share}")
        if self.n_users < 0:
            raise ConfigError("watchtime_sim.n_users must be >= 0 (0 = all users)")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def interest_from_rating(rating) -> np.ndarray:
    """``(rating - 1) / 4``: 1..5 stars onto [0, 1]."""
    r = np.asarray(rating, dtype=np.float64)
    if r.size and (r.min() < 1 or r.max() > 5):
        raise DataError(f"ratings must be 1..5 stars (got {r.min()}..{r.max()})")
    return (r - 1.0) / 4.0


def item_durations(items, cfg: WatchTimeSimConfig) -> np.ndarray:
    """The duration (s) of each item id of ``items`` (integers): one standard normal from a
    generator seeded by ``(cfg.seed, item)``, so it does not depend on which items are present."""
    ids = np.asarray(items, dtype=np.int64).reshape(-1)
    uniq, inv = np.unique(ids, return_inverse=True)
    z = np.array([np.random.default_rng([cfg.seed, 1, int(i)]).standard_normal() for i in uniq])
    d = cfg.duration_median_s * np.exp(cfg.duration_sigma * z)
    return np.clip(d, cfg.min_duration_s, cfg.max_duration_s)[inv]


def simulate_log(ratings, cfg: WatchTimeSimConfig | None = None):
    """A KuaiRand-schema log (DataFrame) from ``ratings`` (columns ``user_id``, ``item_id``,
    ``rating`` 1..5, ``timestamp`` Unix seconds; integer ids), one play per row, in the order
    (timestamp, user, item); with the columns of :data:`EXTRA_COLUMNS` beside the schema's."""
    import pandas as pd

    from llmrec.data.kuairand import KUAIRAND_LOG_COLUMNS

    cfg = cfg or WatchTimeSimConfig()
    need = ("user_id", "item_id", "rating", "timestamp")
    missing = [c for c in need if c not in ratings.columns]
    if missing:
        raise DataError(f"ratings lack column(s) {missing} (have: {', '.join(ratings.columns)})")
    if not len(ratings):
        raise DataError("no ratings to simulate plays from")
    r = pd.DataFrame({"user_id": pd.to_numeric(ratings["user_id"]).astype(np.int64),
                      "item_id": pd.to_numeric(ratings["item_id"]).astype(np.int64),
                      "rating": pd.to_numeric(ratings["rating"]).astype(np.float64),
                      "timestamp": pd.to_numeric(ratings["timestamp"]).astype(np.int64)})
    if r.duplicated(["user_id", "item_id"]).any():
        raise DataError("ratings hold a (user, item) pair twice; one play per rated pair")
    r = r.sort_values(["timestamp", "user_id", "item_id"], kind="stable").reset_index(drop=True)
    n = len(r)
    q = interest_from_rating(r["rating"].to_numpy())
    d = item_durations(r["item_id"].to_numpy(), cfg)
    rng = np.random.default_rng([cfg.seed, 2])
    eps = rng.standard_normal(n)
    w_star = cfg.scale * d ** cfg.duration_exponent * np.exp(
        cfg.interest_slope * (q - 0.5) + cfg.watch_sigma * eps)
    w = np.minimum(w_star, d)
    noisy = rng.random(n) < cfg.noisy_share
    look = rng.random(n) * np.minimum(cfg.noisy_max_s, d)
    w = np.where(noisy, look, w)
    d_ms = np.rint(d * 1000.0).astype(np.int64)
    w_ms = np.minimum(np.rint(w * 1000.0).astype(np.int64), d_ms)  # w <= d after rounding too
    t = pd.to_datetime(r["timestamp"], unit="s", utc=True)
    d_s, w_s = d_ms / 1000.0, w_ms / 1000.0
    log = pd.DataFrame({
        "user_id": r["user_id"], "video_id": r["item_id"],
        "date": (t.dt.year * 10000 + t.dt.month * 100 + t.dt.day).astype(np.int64),
        "hourmin": (t.dt.hour * 100 + t.dt.minute).astype(np.int64),
        "time_ms": r["timestamp"] * 1000, "is_click": 1, "is_like": 0, "is_follow": 0,
        "is_comment": 0, "is_forward": 0, "is_hate": 0,
        "long_view": np.where(d_s <= 18.0, w_s >= d_s, w_s >= 18.0).astype(np.int64),
        "play_time_ms": w_ms, "duration_ms": d_ms, "profile_stay_time": 0,
        "comment_stay_time": 0, "is_profile_enter": 0, "is_rand": 0, "tab": 0})
    assert tuple(log.columns) == KUAIRAND_LOG_COLUMNS
    log["interest"] = q
    log["rating"] = r["rating"].to_numpy()
    log["w_star_s"] = w_star
    log["noisy"] = noisy.astype(np.int64)
    return log


def load_ml1m_ratings(cfg: WatchTimeSimConfig):
    """``(ratings, users, items)`` DataFrames of the ML-1M folder ``cfg.path`` through the
    project's loader (:func:`llmrec.data.movielens.load_ml_1m`), users subsampled to
    ``cfg.n_users`` with ``cfg.user_seed``."""
    from llmrec.data.config import DataConfig
    from llmrec.data.movielens import load_ml_1m

    data = load_ml_1m(DataConfig(name="movielens-1m", path=cfg.path))
    ratings = data.df("interactions")
    users = data.df("users") if data.has("users") else None
    items = data.df("items")
    if cfg.n_users:
        have = np.unique(ratings["user_id"].astype(np.int64).to_numpy())
        if cfg.n_users > have.size:
            raise ConfigError(f"watchtime_sim.n_users = {cfg.n_users} but {cfg.path} has only "
                              f"{have.size} users with ratings; lower it (0 = all)")
        keep = np.random.default_rng(cfg.user_seed).choice(have, cfg.n_users, replace=False)
        ratings = ratings[ratings["user_id"].astype(np.int64).isin(keep)]
    return ratings.reset_index(drop=True), users, items


def _user_table(log, users):
    import pandas as pd

    from llmrec.data.kuairand import KUAIRAND_USER_COLUMNS

    ids = np.unique(log["user_id"].to_numpy())
    u = pd.DataFrame({c: "0" for c in KUAIRAND_USER_COLUMNS}, index=range(len(ids)))
    u["user_id"] = ids
    if users is not None and len(users):
        prof = users.assign(user_id=users["user_id"].astype(np.int64)).set_index("user_id")
        prof = prof.reindex(ids)
        for src, dst in (("gender", "is_lowactive_period"), ("age", "user_active_degree"),
                         ("occupation", "follow_user_num_range")):
            if src in prof.columns:
                u[dst] = prof[src].astype(str).fillna("?").to_numpy()
    return u


def _video_table(log, items):
    import pandas as pd

    from llmrec.data.kuairand import KUAIRAND_VIDEO_COLUMNS

    ids = np.unique(log["video_id"].to_numpy())
    v = pd.DataFrame({c: "0" for c in KUAIRAND_VIDEO_COLUMNS}, index=range(len(ids)))
    v["video_id"] = ids
    dur = log.groupby("video_id")["duration_ms"].first().reindex(ids)
    v["video_duration"] = dur.to_numpy()
    if items is not None and len(items):
        it = items.assign(item_id=items["item_id"].astype(np.int64)).set_index("item_id")
        it = it.reindex(ids)
        if "genres" in it.columns:
            v["video_type"] = [g[0] if g is not None and len(g) else "?" for g in it["genres"]]
        if "year" in it.columns:
            y = pd.to_numeric(it["year"], errors="coerce")
            v["upload_type"] = [f"{int(x) // 10 * 10}s" if x == x else "?" for x in y]
    return v


def write_simulated_log(log, folder: str | Path, users=None, items=None) -> list[Path]:
    """Write ``log`` (from :func:`simulate_log`) into ``folder`` as KuaiRand-Pure's two standard
    logs (first / second half in time) with its user and video feature files; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    half = len(log) // 2
    paths = [folder / LOG_FILES[0], folder / LOG_FILES[1]]
    log.iloc[:half].to_csv(paths[0], index=False)
    log.iloc[half:].to_csv(paths[1], index=False)
    extra = [folder / "user_features_pure.csv", folder / "video_features_basic_pure.csv"]
    _user_table(log, users).to_csv(extra[0], index=False)
    _video_table(log, items).to_csv(extra[1], index=False)
    return paths + extra


def kuairand_config(folder: str | Path, cfg: WatchTimeSimConfig, **overrides):
    """The :class:`~llmrec.data.kuairand.KuaiRandConfig` that reads a simulated log folder."""
    from llmrec.data.kuairand import KuaiRandConfig

    kw = dict(path=str(folder), source="kuairand", version="pure",
              min_duration_s=cfg.min_duration_s, max_duration_s=cfg.max_duration_s,
              fractions=[0.8, 0.1, 0.1], duration_feature=True,
              name="ml1m-simulated-watch-time")
    kw.update(overrides)
    return KuaiRandConfig(**kw)


def attach_interest(samples, log):
    """``samples`` (the KuaiRand loader's) with ``interest`` and ``rating`` of ``log`` joined on
    (user, item); a sample without its play in ``log`` is a :class:`DataError`."""
    key = log[["user_id", "video_id", "interest", "rating"]].astype(
        {"user_id": str, "video_id": str}).rename(columns={"video_id": "item_id"})
    out = samples.merge(key, on=["user_id", "item_id"], how="left", validate="many_to_one")
    if out["interest"].isna().any():
        raise DataError(f"{int(out['interest'].isna().sum())} samples have no simulated play "
                        f"(was the log written from another simulation?)")
    return out


def load_simulated(cfg: WatchTimeSimConfig, folder: str | Path, ratings=None, users=None,
                   items=None, **kuairand_overrides):
    """Simulate (from ``ratings``, default: the ML-1M folder of ``cfg``), write to ``folder``,
    read back with :func:`llmrec.data.kuairand.load_kuairand`; returns ``(data, split,
    feature_config, log)`` with ``interest`` / ``rating`` in ``split.samples`` (not features)."""
    from llmrec.data.kuairand import load_kuairand

    if ratings is None:
        ratings, users, items = load_ml1m_ratings(cfg)
    log = simulate_log(ratings, cfg)
    write_simulated_log(log, folder, users, items)
    data, split, fcfg = load_kuairand(kuairand_config(folder, cfg, **kuairand_overrides))
    split.samples = attach_interest(split.samples, log)
    split.info["simulation"] = {"what": SIM_LABEL, "config": cfg.as_dict(),
                                "plays": len(log), "noisy_share": float(log["noisy"].mean()),
                                "completed_share": float((log["play_time_ms"]
                                                          >= log["duration_ms"]).mean())}
    for c in EXTRA_COLUMNS:
        if c in fcfg.labels or c in fcfg.numeric_fields or c in fcfg.context_fields:
            raise DataError(f"simulated column {c!r} must never be a feature or label")
    return data, split, fcfg, log


__all__ = ["WatchTimeSimConfig", "interest_from_rating", "item_durations", "simulate_log",
           "load_ml1m_ratings", "write_simulated_log", "kuairand_config", "attach_interest",
           "load_simulated", "LOG_FILES", "EXTRA_COLUMNS", "SIM_LABEL"]
