"""An entire-space click / conversion **proxy** built from MovieLens-1M, for ESMM-style models.

MovieLens has no impression log, so one is made up, and every number measured on it is a proxy:

- **impressions**: every rated (user, item) pair, plus, per user, ``neg_ratio`` x (the user's
  number of ratings) sampled items the user never rated (``negatives``: ``popularity``, drawn in
  proportion to the item's number of ratings among the loaded users, or ``uniform`` over the
  items rated by at least one of them; without replacement, seeded by ``seed``). A user whose
  unrated pool is smaller than asked gets the whole pool (counted in ``info``);
- **click** = the user rated the item (a sampled impression is a non-click);
- **conversion** = rating >= ``convert_min_rating`` (4 by default), on clicks only, so a
  conversion always implies a click (the click-to-conversion funnel of Ali-CCP).

Split by time per user: a user's ratings sorted by (timestamp, item id), the last ``test_frac``
go to test, the ``valid_frac`` before them to valid, the rest to train (every user is in every
split; a user with fewer than 3 ratings is all train). A sampled impression takes the timestamp
and therefore the split of a random rated event of the same user, so each split holds about
``neg_ratio`` sampled impressions per rating.

Features: the user id and profile (gender, age group, occupation, zip code from users.dat), the
item id, year and genres (movies.dat). Ratings and timestamps are never features (no behaviour
sequence, no rating of past behaviours, no time field); ``timestamp`` stays in the samples only
to show where each sample fell.

:func:`load_ml1m_ctcvr` returns ``(tables, split, feature_config)`` in the shape of
:func:`llmrec.data.aliccp.load_ctcvr` (``click`` and ``conversion`` as named labels, ``label`` =
click), so :func:`llmrec.ranking.features.build_features` and the multitask task take it as is.
:func:`proxy_samples` builds the samples from any ratings frame (tests use a hand-made one).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Literal

from llmrec.config import option
from llmrec.data.splits import FlatSplit
from llmrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "valid", "test")
USER_FIELDS = ("gender", "age", "occupation", "zip")
PROXY_NAME = "ml-1m entire-space proxy (click = rated, conversion = rating >= 4)"


@dataclass
class Ml1mCtcvrConfig:
    """How the ML-1M entire-space proxy is made (see :mod:`llmrec.data.ml1m_ctcvr`)."""

    path: str = option("../shared/data/movielens-1m", help="the MovieLens-1M folder (movies.dat, "
                                                           "users.dat, ratings*.dat[.gz])")
    neg_ratio: float = option(1.0, help="sampled unrated impressions per rated one, per user")
    negatives: Literal["popularity", "uniform"] = option(
        "popularity", help="how unrated items are drawn: popularity = in proportion to their "
                           "number of ratings; uniform = over every rated-at-least-once item")
    convert_min_rating: float = option(4.0, help="a click converts when its rating is >= this")
    valid_frac: float = option(0.1, help="share of each user's ratings (by time) in valid")
    test_frac: float = option(0.1, help="share of each user's last ratings in test")
    max_users: int = option(0, help="use a seeded sample of this many users (0: all)")
    seed: int = option(0, help="seed of the negative sampling (and of the user sample)")
    use_user_id: bool = option(True, help="the user id as a feature (every user is in train)")
    min_count: int = option(1, help="categorical values seen fewer times in train map to unknown")
    name: str = option(PROXY_NAME, help="dataset name in records")

    def __post_init__(self) -> None:
        if self.neg_ratio < 0:
            raise ConfigError(f"ml1m_ctcvr.neg_ratio must be >= 0, got {self.neg_ratio}")
        if self.negatives not in ("popularity", "uniform"):
            raise ConfigError(f"ml1m_ctcvr.negatives must be popularity or uniform, got "
                              f"{self.negatives!r}")
        if not (0 < self.valid_frac < 1 and 0 < self.test_frac < 1
                and self.valid_frac + self.test_frac < 1):
            raise ConfigError(f"ml1m_ctcvr.valid_frac ({self.valid_frac}) and test_frac "
                              f"({self.test_frac}) must be in (0, 1) with a sum below 1")
        if self.max_users < 0:
            raise ConfigError(f"ml1m_ctcvr.max_users must be >= 0 (0: all), got {self.max_users}")


def _time_split(ratings, cfg: Ml1mCtcvrConfig):
    """``ratings`` sorted per user by (timestamp, item id) with a ``split`` column."""
    import numpy as np

    df = ratings.sort_values(["user_id", "timestamp", "item_id"], kind="stable"
                             ).reset_index(drop=True)
    n = df.groupby("user_id", sort=False)["item_id"].transform("size").to_numpy()
    pos = df.groupby("user_id", sort=False).cumcount().to_numpy()
    n_test = np.maximum(1, np.rint(n * cfg.test_frac)).astype(np.int64)
    n_valid = np.maximum(1, np.rint(n * cfg.valid_frac)).astype(np.int64)
    split = np.where(pos >= n - n_test, "test",
                     np.where(pos >= n - n_test - n_valid, "valid", "train")).astype(object)
    split[n < 3] = "train"
    return df.assign(split=split)


def proxy_samples(ratings, cfg: Ml1mCtcvrConfig | None = None):
    """The proxy's impressions from a ratings frame (``user_id, item_id, rating, timestamp``):
    ``(samples, info)`` with ``user_id, item_id, split, position, timestamp, label, click,
    conversion`` per impression (rated ones first, in per-user time order) and the counts."""
    import numpy as np
    import pandas as pd

    cfg = cfg or Ml1mCtcvrConfig()
    missing = [c for c in ("user_id", "item_id", "rating", "timestamp") if c not in ratings]
    if missing:
        raise DataError(f"ml1m proxy: the ratings lack column(s) {missing} (has: "
                        f"{', '.join(ratings.columns)})")
    if len(ratings) == 0:
        raise DataError("ml1m proxy: no ratings")
    ratings = ratings[["user_id", "item_id", "rating", "timestamp"]].assign(
        user_id=ratings["user_id"].astype(str), item_id=ratings["item_id"].astype(str))
    dup = ratings.duplicated(["user_id", "item_id"])
    if dup.any():
        raise DataError(f"ml1m proxy: {int(dup.sum())} repeated (user, item) ratings, e.g. "
                        f"{tuple(ratings.loc[dup].iloc[0][['user_id', 'item_id']])}; one "
                        f"impression per pair needs them removed first")
    if ratings["timestamp"].isna().any():
        raise DataError("ml1m proxy: a time split needs a timestamp on every rating")
    pos = _time_split(ratings, cfg)
    rng = np.random.default_rng(cfg.seed)

    # the catalogue: items rated at least once; popularity = their number of ratings
    item_codes, catalogue = pd.factorize(pos["item_id"], sort=True)
    counts = np.bincount(item_codes, minlength=len(catalogue)).astype(np.float64)
    log_w = np.log(counts) if cfg.negatives == "popularity" else np.zeros(len(catalogue))
    user_codes, users = pd.factorize(pos["user_id"], sort=False)  # pos is sorted by user
    starts = np.concatenate([[0], np.flatnonzero(np.diff(user_codes)) + 1, [len(pos)]])
    ts = pos["timestamp"].to_numpy()
    splits = pos["split"].to_numpy()
    neg_item, neg_user, neg_event, short = [], [], [], 0
    for u in range(len(users)):
        lo, hi = starts[u], starts[u + 1]
        rated = item_codes[lo:hi]
        want = int(round(cfg.neg_ratio * (hi - lo)))
        if want == 0:
            continue
        # Gumbel top-k: a weighted sample without replacement over the unrated items
        keys = log_w + rng.gumbel(size=len(catalogue))
        keys[rated] = -np.inf
        pool = len(catalogue) - len(rated)
        if want > pool:
            short += 1
            want = pool
        if want == 0:
            continue
        pick = np.argpartition(-keys, want - 1)[:want]
        neg_item.append(pick)
        neg_user.append(np.full(want, u))
        neg_event.append(rng.integers(lo, hi, size=want))  # the rated event it borrows
    if neg_item:
        neg_item, neg_user, neg_event = (np.concatenate(a) for a in
                                         (neg_item, neg_user, neg_event))
    else:
        neg_item = neg_user = neg_event = np.zeros(0, dtype=np.int64)
    click_pos = np.ones(len(pos), dtype=np.float32)
    conv_pos = (pos["rating"].to_numpy(np.float64) >= cfg.convert_min_rating).astype(np.float32)
    samples = pd.DataFrame({
        "user_id": np.concatenate([pos["user_id"].to_numpy(object),
                                   np.asarray(users, dtype=object)[neg_user]]),
        "item_id": np.concatenate([pos["item_id"].to_numpy(object),
                                   np.asarray(catalogue, dtype=object)[neg_item]]),
        "split": np.concatenate([splits, splits[neg_event]]),
        "timestamp": np.concatenate([ts, ts[neg_event]]),
        "click": np.concatenate([click_pos, np.zeros(len(neg_item), dtype=np.float32)]),
        "conversion": np.concatenate([conv_pos, np.zeros(len(neg_item), dtype=np.float32)]),
    })
    samples["label"] = samples["click"]
    samples["position"] = 0
    counts_per = {s: {"impressions": int((m := samples["split"] == s).sum()),
                      "clicks": int(samples.loc[m, "click"].sum()),
                      "conversions": int(samples.loc[m, "conversion"].sum())}
                  for s in SPLIT_NAMES}
    how = ("by item popularity (number of ratings)" if cfg.negatives == "popularity"
           else "uniformly")
    info = {"users": int(len(users)), "items_in_catalogue": int(len(catalogue)),
            "ratings": int(len(pos)), "sampled_impressions": int(len(neg_item)),
            "users_short_of_negatives": short, "counts": counts_per,
            "proxy": {k: v for k, v in asdict(cfg).items() if k not in ("path", "name")},
            "negatives": (f"{cfg.neg_ratio:g} per rating per user, never rated by that user, "
                          f"drawn without replacement {how} "
                          f"over the {len(catalogue)} items rated at least once, seed {cfg.seed}; "
                          f"each takes the timestamp and split of a random rated event of the "
                          f"same user"),
            "split": (f"per user by time: last {cfg.test_frac:g} test, the {cfg.valid_frac:g} "
                      f"before valid, the rest train"),
            "labels": f"click = rated; conversion = rating >= {cfg.convert_min_rating:g} "
                      f"(clicks only)"}
    return samples, info


def ml1m_ctcvr_from(data, cfg: Ml1mCtcvrConfig | None = None):
    """``(tables, split, feature_config)`` of the proxy from a loaded ML-1M-style
    :class:`~llmrec.data.tables.RecData` (interactions with ratings and timestamps; users and
    items tables for the profile and item fields)."""
    import numpy as np

    from llmrec.data.tables import RecData
    from llmrec.ranking.features import FeatureConfig

    cfg = cfg or Ml1mCtcvrConfig()
    if not data.has("interactions"):
        raise DataError(f"dataset {data.name!r} has no interactions table to build the proxy from")
    ratings = data.df("interactions")
    if cfg.max_users:
        users = np.sort(ratings["user_id"].astype(str).unique())
        if cfg.max_users < len(users):
            keep = set(np.random.default_rng(cfg.seed).choice(users, cfg.max_users,
                                                               replace=False))
            ratings = ratings[ratings["user_id"].astype(str).isin(keep)]
    samples, info = proxy_samples(ratings, cfg)
    user_fields = []
    if data.has("users"):
        cols = data.df("users").columns
        user_fields = [f for f in USER_FIELDS if f in cols]
    info["features"] = {"user": (["user_id"] if cfg.use_user_id else []) + user_fields,
                        "item": ["item_id", "year", "genres"]}
    info["max_users"] = cfg.max_users
    fingerprint = hashlib.sha256(json.dumps(info, sort_keys=True, default=str).encode()
                                 ).hexdigest()[:16]
    tables = {k: v for k, v in data.tables.items() if k in ("users", "items")}
    out = RecData(name=cfg.name, tables=tables, source=data.source, info=dict(info))
    split = FlatSplit(config=cfg, samples=samples, dataset=cfg.name, fingerprint=fingerprint,
                      info=info, protocol=info["split"])
    feature_cfg = FeatureConfig(
        max_hist_len=0, user_fields=user_fields, use_user_id=cfg.use_user_id,
        item_fields=["year"], item_multi_fields=["genres"], use_item_id=True,
        use_hist_rating=False, timestamps=False, context_fields=[], numeric_fields=[],
        labels=["click", "conversion"], min_count=cfg.min_count)
    log.info("%s: %s", cfg.name, info["counts"])
    return out, split, feature_cfg


def load_ml1m_ctcvr(cfg: Ml1mCtcvrConfig | None = None):
    """``(tables, split, feature_config)`` of the proxy from the MovieLens-1M folder
    ``cfg.path`` (see the module)."""
    from llmrec.data.config import DataConfig
    from llmrec.data.loaders import load_data

    cfg = cfg or Ml1mCtcvrConfig()
    data = load_data(DataConfig(name="movielens-1m", path=cfg.path))
    return ml1m_ctcvr_from(data, cfg)
