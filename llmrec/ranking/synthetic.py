"""Synthetic CTR data with the shapes of the canonical tables and a KAR split.

For tests, demos and throughput benchmarks that must not depend on a data download: users with a
profile, items with genres and a year, time-ordered ratings drawn from a latent preference model
(so that a model can learn something), and the ``samples`` / ``history`` frames of
:mod:`llmrec.data.splits` built with the KAR cutoff n_u = min((len + 1) // 2, 30).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Animation")


@dataclass
class Tables:
    """The part of :class:`~llmrec.data.tables.RecData` that feature building uses."""

    frames: dict[str, Any]
    name: str = "synthetic"

    def df(self, table: str):
        return self.frames[table]

    def has(self, table: str) -> bool:
        return table in self.frames


@dataclass
class SimpleSplit:
    """``samples`` / ``history`` / ``cutoffs`` frames with the columns of a real split."""

    samples: Any
    history: Any
    cutoffs: Any = None
    info: dict[str, Any] = field(default_factory=dict)


def make_synthetic(n_users: int = 200, n_items: int = 100, mean_len: int = 30, seed: int = 0,
                   valid_frac: float = 0.1, test_frac: float = 0.1, max_lm_history: int = 30):
    """Return ``(tables, split)``: users split by user into train/valid/test like KAR."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    dim = 4
    u_vec = rng.normal(size=(n_users, dim))
    i_vec = rng.normal(size=(n_items, dim))
    item_genres = [sorted(rng.choice(GENRES, size=rng.integers(1, 4), replace=False).tolist())
                   for _ in range(n_items)]
    years = rng.integers(1970, 2010, size=n_items).astype(float)
    years[rng.random(n_items) < 0.05] = np.nan  # some items without a year
    users = pd.DataFrame({"user_id": [str(u + 1) for u in range(n_users)],
                          "gender": rng.choice(["F", "M"], size=n_users),
                          "age": rng.choice([18, 25, 35, 45, 56], size=n_users)})
    items = pd.DataFrame({"item_id": [str(i + 1) for i in range(n_items)],
                          "title": [f"Movie {i + 1}" for i in range(n_items)],
                          "genres": item_genres, "year": years})
    rows = []
    for u in range(n_users):
        n = max(2, int(rng.poisson(mean_len)))
        its = rng.choice(n_items, size=min(n, n_items), replace=False)
        score = (u_vec[u] * i_vec[its]).sum(1) + 0.5 * rng.normal(size=its.size)
        rating = np.clip(np.round(3 + score), 1, 5)
        ts = np.sort(rng.integers(0, 10**6, size=its.size)) + 10**9
        for i, r, t in zip(its, rating, ts):
            rows.append((str(u + 1), str(i + 1), float(r), int(t)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    inter["rating"] = inter["rating"].astype("float32")
    history = inter.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    history["position"] = history.groupby("user_id").cumcount()
    n_total = history.groupby("user_id").size()
    n_lm = np.minimum((n_total + 1) // 2, max_lm_history)
    uids = n_total.index.to_numpy()
    r = rng.random(len(uids))
    user_split = np.where(r < test_frac, "test", np.where(r < test_frac + valid_frac, "valid", "train"))
    cutoffs = pd.DataFrame({"user_id": uids, "n_lm": n_lm.to_numpy(), "n_total": n_total.to_numpy(),
                            "split": user_split})
    merged = history.merge(cutoffs[["user_id", "n_lm", "split"]], on="user_id")
    samples = merged[merged["position"] >= merged["n_lm"]].drop(columns="n_lm").copy()
    samples["label"] = (samples["rating"] >= 4).astype("int8")
    samples = samples.reset_index(drop=True)
    tables = Tables({"users": users, "items": items, "interactions": inter})
    return tables, SimpleSplit(samples=samples, history=history[["user_id", "item_id", "rating",
                                                                  "timestamp", "position"]],
                               cutoffs=cutoffs)
