"""The return-visit proxy on a timestamped rating log: sessions, returns, anchors and labels.

Definition (every rule a :class:`ProxyConfig` field, recorded beside each result by
:meth:`ProxyConfig.definition`):

- a **session** is a maximal run of one user's ratings (sorted by time) whose consecutive gaps are
  ``< session_gap_s`` (1 h): a gap of exactly 1 h starts a new session;
- a **return** is a session (not the user's first) starting ``>= return_gap_days`` (3 days) after
  the end of the user's previous session; its **anchor** is the session's start time;
- **observable** at the anchor (what a serving system knows when the user comes back): the profile
  (gender, age group, occupation), the last ``history_len`` item ids rated strictly before the
  anchor (their genres come from the static catalogue), and numeric features: log gap length,
  hour of day and day of week of the anchor (UTC, sin/cos), log tenure (anchor minus first
  rating), log number of past ratings and of past sessions, mean past rating, log length of the
  previous session. Nothing at or after the anchor is observable;
- **onboarding content** (privileged: known only after the user has started consuming): the first
  ``content_len`` (10) items of the anchor session, in order, with their ratings (how many there
  are, up to 10, follows from the padding);
- the **label** for horizon ``h`` days: 1 if the user's next session starts within ``h`` days after
  the anchor session's last rating, 0 if it starts later or never while the log still covers
  ``h`` days after that; **censored** (NaN, dropped) if the log ends before that;
- **split by anchor time**: the ``split[0]`` and ``split[0] + split[1]`` quantiles of all anchor
  times cut train / valid / test; with ``purge`` a train (valid) anchor whose label window
  (anchor-session end + ``h``) reaches past the train/valid (valid/test) cut is dropped, so no
  label of an earlier split looks into a later split's period.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from llmrec.config import option
from llmrec.errors import ConfigError, DataError

DAY = 86400
#: the arrays the student (and every deployable model) may read
STUDENT_KEYS = ("profile", "hist_items", "num")
#: the teacher reads the onboarding content as well
TEACHER_KEYS = STUDENT_KEYS + ("content_items", "content_ratings")
NUM_FEATURES = ("log_gap_days", "hour_sin", "hour_cos", "dow_sin", "dow_cos", "log_tenure_days",
                "log_n_past_ratings", "log_n_past_sessions", "mean_past_rating",
                "log_prev_session_len")
SPLITS = ("train", "valid", "test")


@dataclass
class ProxyConfig:
    """The return-visit proxy: where the log is and every rule that turns it into labelled anchors."""

    path: str = option("../shared/data/movielens-1m", help="MovieLens-1M folder (movies.dat, "
                       "users.dat, ratings*.dat[.gz]) read with the project's ML-1M loader")
    max_user: int | None = option(2999, help="keep users with numeric id <= this (the shared copy "
                                  "holds users 1-2999); null keeps all")
    session_gap_s: int = option(3600, help="a gap >= this many seconds between two ratings of a "
                                "user starts a new session (gap < 1 h joins)")
    return_gap_days: float = option(3.0, help="a session starting >= this many days after the "
                                    "previous session's end is a return (its start = the anchor)")
    history_len: int = option(20, help="observable: the last N item ids rated before the anchor")
    content_len: int = option(10, help="onboarding content: the first N items of the anchor session")
    horizon_days: int = option(7, help="the label the models learn: next session within this many "
                               "days after the anchor session ends")
    horizons: list[int] = option([7, 14, 30], help="horizons whose labels are built and counted")
    split: list[float] = option([0.8, 0.1, 0.1], help="train / valid / test fractions, cut by "
                                "anchor time quantiles")
    purge: bool = option(True, help="drop train (valid) anchors whose label window reaches past "
                         "the next split's cut time")

    def __post_init__(self) -> None:
        if self.session_gap_s <= 0 or self.return_gap_days <= 0:
            raise ConfigError("session_gap_s and return_gap_days must be > 0")
        if self.history_len < 1 or self.content_len < 1:
            raise ConfigError("history_len and content_len must be >= 1")
        if len(self.split) != 3 or any(f <= 0 for f in self.split) or \
                abs(sum(self.split) - 1) > 1e-6:
            raise ConfigError(f"split must be three positive fractions summing to 1, got "
                              f"{self.split}")
        if self.horizon_days not in self.horizons:
            self.horizons = sorted({*self.horizons, self.horizon_days})

    def definition(self) -> dict[str, Any]:
        """The proxy's rules as a plain dict (what each result record carries)."""
        d = asdict(self)
        d["rules"] = (
            f"session = run of a user's ratings with gaps < {self.session_gap_s} s; return = a "
            f"session starting >= {self.return_gap_days} days after the previous session ends; "
            f"anchor = its start; observable = profile + last {self.history_len} items strictly "
            f"before the anchor + gap/time/history counts; onboarding content = first "
            f"{self.content_len} items of the anchor session (teacher only); label(h) = next "
            f"session starts within h days after the anchor session ends (censored if the log "
            f"ends first); split by anchor-time quantiles {self.split}, purge={self.purge}")
        return d


@dataclass
class ReturnEvents:
    """One row per return anchor. Item ids are remapped to 1..n_items (0 = padding)."""

    user: np.ndarray            # (n,) original user id (int)
    anchor_time: np.ndarray     # (n,) anchor = start of the return session (unix s)
    anchor_end: np.ndarray      # (n,) last rating of the anchor session
    gap_s: np.ndarray           # (n,) anchor minus the previous session's end
    profile: np.ndarray         # (n, 3) gender, age group, occupation indices (0 = unknown)
    hist_items: np.ndarray      # (n, history_len) last items before the anchor, most recent last
    hist_time: np.ndarray       # (n, history_len) their timestamps (-1 = padding): provenance
    num: np.ndarray             # (n, len(NUM_FEATURES)) raw numeric features (unstandardised)
    content_items: np.ndarray   # (n, content_len) first items of the anchor session
    content_time: np.ndarray    # (n, content_len) their timestamps (-1 = padding)
    content_ratings: np.ndarray  # (n, content_len) their ratings (0 = padding)
    labels: dict[int, np.ndarray]  # horizon days -> (n,) 1 / 0 / NaN (censored)
    genre_matrix: np.ndarray    # (n_items + 1, n_genres) row-normalised multi-hot, row 0 zeros
    vocab: dict[str, int]       # sizes: items, gender, age, occupation (each incl. index 0)
    log_end: int = 0            # last timestamp of the log
    n_sessions: int = 0
    n_users: int = 0
    cuts: tuple[float, float] = (math.inf, math.inf)
    cfg: ProxyConfig = field(default_factory=ProxyConfig)

    def __len__(self) -> int:
        return len(self.user)

    def split_index(self, name: str, horizon: int | None = None) -> np.ndarray:
        """Anchor rows of split ``name`` with a known label at ``horizon`` (purged if configured)."""
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
        h = self.cfg.horizon_days if horizon is None else horizon
        if h not in self.labels:
            raise ConfigError(f"horizon {h} was not built; add it to horizons "
                              f"({sorted(self.labels)})")
        t1, t2 = self.cuts
        known = ~np.isnan(self.labels[h])
        window_end = self.anchor_end + h * DAY
        if name == "train":
            keep = self.anchor_time < t1
            if self.cfg.purge:
                keep &= window_end < t1
        elif name == "valid":
            keep = (self.anchor_time >= t1) & (self.anchor_time < t2)
            if self.cfg.purge:
                keep &= window_end < t2
        else:
            keep = self.anchor_time >= t2
        return np.flatnonzero(keep & known)

    def inputs(self, idx: np.ndarray, content: bool = False) -> dict[str, np.ndarray]:
        """The arrays a model reads for rows ``idx``: :data:`STUDENT_KEYS`, plus the onboarding
        content when ``content`` (teacher only)."""
        keys = TEACHER_KEYS if content else STUDENT_KEYS
        return {k: getattr(self, k)[idx] for k in keys}

    def counts(self) -> dict[str, Any]:
        """Event counts: anchors, positives per horizon, censored, and per split (after purge)."""
        out: dict[str, Any] = {"users_in_log": self.n_users, "sessions": self.n_sessions,
                               "anchors": len(self),
                               "users_with_anchor": int(len(np.unique(self.user))),
                               "split_cut_times": [float(c) for c in self.cuts], "horizons": {}}
        for h, y in sorted(self.labels.items()):
            known = ~np.isnan(y)
            per = {}
            for s in SPLITS:
                idx = self.split_index(s, h)
                per[s] = {"anchors": int(len(idx)), "positives": int(np.nansum(y[idx])),
                          "users": int(len(np.unique(self.user[idx])))}
            out["horizons"][h] = {"known": int(known.sum()), "censored": int((~known).sum()),
                                  "positives": int(np.nansum(y)),
                                  "positive_rate": float(np.nanmean(y)) if known.any() else None,
                                  "splits": per}
        return out


def _index(values, what: str) -> tuple[dict[Any, int], int]:
    vocab = {v: i + 1 for i, v in enumerate(sorted({str(v) for v in values}))}
    return vocab, len(vocab) + 1


def build_events(interactions, items=None, users=None, cfg: ProxyConfig | None = None
                 ) -> ReturnEvents:
    """Build the return anchors from pandas frames: ``interactions`` (user_id, item_id,
    timestamp, optional rating), ``items`` (item_id, genres: list of str; optional), ``users``
    (user_id, gender, age, occupation; optional)."""
    cfg = cfg or ProxyConfig()
    for col in ("user_id", "item_id", "timestamp"):
        if col not in interactions.columns:
            raise DataError(f"interactions lack column {col!r} (have {list(interactions.columns)});"
                            f" the retention proxy needs user_id, item_id and timestamp")
    df = interactions
    try:
        uid = df["user_id"].astype(np.int64).to_numpy()
    except (TypeError, ValueError) as exc:
        raise DataError(f"user ids must be integers for the retention proxy: {exc}") from None
    if cfg.max_user is not None:
        df = df[uid <= cfg.max_user]
        uid = uid[uid <= cfg.max_user]
    if len(df) == 0:
        raise DataError("no interactions left after max_user; check path and max_user")
    ts = df["timestamp"].astype(np.int64).to_numpy()
    rating = (df["rating"].astype(np.float64).to_numpy() if "rating" in df.columns
              else np.zeros(len(df)))
    raw_items = df["item_id"].astype(str).to_numpy()

    # items: catalogue order, then any item only in the log; 0 = padding
    cat_ids = [str(i) for i in items["item_id"]] if items is not None else []
    item_vocab = {i: k + 1 for k, i in enumerate(dict.fromkeys(cat_ids + sorted(set(raw_items))))}
    item = np.array([item_vocab[i] for i in raw_items], dtype=np.int64)
    genres_of = {}
    if items is not None and "genres" in items.columns:
        genres_of = {str(i): list(g) if g is not None else []
                     for i, g in zip(items["item_id"], items["genres"])}
    genre_vocab = sorted({g for gs in genres_of.values() for g in gs})
    gmat = np.zeros((len(item_vocab) + 1, max(len(genre_vocab), 1)), dtype=np.float32)
    gpos = {g: k for k, g in enumerate(genre_vocab)}
    for i, k in item_vocab.items():
        gs = [gpos[g] for g in genres_of.get(i, [])]
        if gs:
            gmat[k, gs] = 1.0 / len(gs)

    # profile
    prof_vocab, prof_of = {}, {}
    sizes = {"items": len(item_vocab) + 1}
    for col in ("gender", "age", "occupation"):
        if users is not None and col in users.columns:
            v, n = _index(users[col], col)
            prof_vocab[col] = v
            sizes[col] = n
        else:
            prof_vocab[col], sizes[col] = {}, 1
    if users is not None:
        for row in users.itertuples(index=False):
            d = row._asdict()
            prof_of[int(d["user_id"])] = [prof_vocab[c].get(str(d.get(c)), 0)
                                          for c in ("gender", "age", "occupation")]

    order = np.lexsort((ts, uid))  # by user, then time (stable for ties)
    uid, ts, item, rating = uid[order], ts[order], item[order], rating[order]
    log_end = int(ts.max())
    n = len(ts)
    new_user = np.r_[True, uid[1:] != uid[:-1]]
    gap = np.r_[0, np.diff(ts)]
    new_sess = new_user | (gap >= cfg.session_gap_s)
    s_start = np.flatnonzero(new_sess)                   # first rating of each session
    s_last = np.r_[s_start[1:], n] - 1                   # last rating of each session
    s_user = uid[s_start]
    first_of_user = np.r_[True, s_user[1:] != s_user[:-1]]
    last_of_user = np.r_[s_user[1:] != s_user[:-1], True]
    prev_end = np.r_[0, ts[s_last[:-1]]]
    is_return = ~first_of_user & (ts[s_start] - prev_end >= cfg.return_gap_days * DAY)
    user_first_row = np.flatnonzero(new_user)
    user_row0 = user_first_row[np.searchsorted(uid[user_first_row], s_user)]
    # session rank within user
    sess_rank = np.arange(len(s_start)) - np.searchsorted(s_user, s_user, side="left")

    H, C = cfg.history_len, cfg.content_len
    rows = np.flatnonzero(is_return)
    m = len(rows)
    hist_items = np.zeros((m, H), dtype=np.int64)
    hist_time = np.full((m, H), -1, dtype=np.int64)
    content_items = np.zeros((m, C), dtype=np.int64)
    content_time = np.full((m, C), -1, dtype=np.int64)
    content_ratings = np.zeros((m, C), dtype=np.float32)
    num = np.zeros((m, len(NUM_FEATURES)), dtype=np.float32)
    labels = {h: np.full(m, np.nan) for h in cfg.horizons}
    profile = np.zeros((m, 3), dtype=np.int64)
    anchor = ts[s_start[rows]]
    a_end = ts[s_last[rows]]
    for k, s in enumerate(rows):
        a, lo = s_start[s], user_row0[s]
        # observable history: ratings strictly before the anchor (the user's earlier sessions)
        h_lo = max(lo, a - H)
        hist_items[k, H - (a - h_lo):] = item[h_lo:a]
        hist_time[k, H - (a - h_lo):] = ts[h_lo:a]
        c_hi = min(s_last[s] + 1, a + C)
        content_items[k, :c_hi - a] = item[a:c_hi]
        content_time[k, :c_hi - a] = ts[a:c_hi]
        content_ratings[k, :c_hi - a] = rating[a:c_hi]
        t = int(ts[a])
        hour = (t % DAY) / 3600.0
        dow = ((t // DAY) + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
        prev_len = s_last[s - 1] - s_start[s - 1] + 1
        num[k] = (math.log1p((t - prev_end[s]) / DAY),
                  math.sin(2 * math.pi * hour / 24), math.cos(2 * math.pi * hour / 24),
                  math.sin(2 * math.pi * dow / 7), math.cos(2 * math.pi * dow / 7),
                  math.log1p((t - ts[lo]) / DAY), math.log1p(a - lo),
                  math.log1p(sess_rank[s]), float(rating[lo:a].mean()), math.log1p(prev_len))
        profile[k] = prof_of.get(int(uid[a]), [0, 0, 0])
        end = int(ts[s_last[s]])
        nxt = None if last_of_user[s] else int(ts[s_start[s + 1]])
        for h in cfg.horizons:
            if nxt is not None and nxt - end <= h * DAY:
                labels[h][k] = 1.0
            elif nxt is not None or log_end - end >= h * DAY:
                labels[h][k] = 0.0
    if m:
        q1 = cfg.split[0]
        q2 = cfg.split[0] + cfg.split[1]
        cuts = (float(np.quantile(anchor, q1)), float(np.quantile(anchor, q2)))
    else:
        cuts = (math.inf, math.inf)
    return ReturnEvents(
        user=uid[s_start[rows]], anchor_time=anchor, anchor_end=a_end,
        gap_s=anchor - prev_end[rows], profile=profile, hist_items=hist_items,
        hist_time=hist_time, num=num, content_items=content_items, content_time=content_time,
        content_ratings=content_ratings, labels=labels, genre_matrix=gmat, vocab=sizes, log_end=log_end,
        n_sessions=int(len(s_start)), n_users=int(new_user.sum()), cuts=cuts, cfg=cfg)


def load_events(cfg: ProxyConfig | None = None) -> ReturnEvents:
    """Load ML-1M with :func:`llmrec.data.loaders.load_data` and build the return anchors."""
    from llmrec.data.loaders import DataConfig, load_data

    cfg = cfg or ProxyConfig()
    data = load_data(DataConfig(name="movielens-1m", path=cfg.path))
    users = data.df("users") if data.has("users") else None
    return build_events(data.df("interactions"), data.df("items"), users, cfg)


__all__ = ["DAY", "NUM_FEATURES", "STUDENT_KEYS", "TEACHER_KEYS", "SPLITS", "ProxyConfig",
           "ReturnEvents", "build_events", "load_events"]
