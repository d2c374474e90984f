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


# The 26 categorical cardinalities of the Criteo Kaggle display-advertising set (raw counts, as
# commonly listed for it); fields above ``max_vocab`` are hashed down to it, as CTR pipelines do.
CRITEO_CARDINALITIES = (1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683,
                        8351593, 3194, 27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15,
                        286181, 105, 142572)
CRITEO_NUMERIC = 13


def criteo_like_features(n_rows: int, seed: int = 0, device: str = "cpu",
                         max_vocab: int = 1_000_000, positive_rate: float = 0.25,
                         splits: tuple[float, float, float] = (0.8, 0.1, 0.1)):
    """A Criteo-shaped :class:`~llmrec.ranking.features.FeatureSet`, generated on ``device``.

    Shape, not content: 26 categorical context fields with Criteo's cardinalities (capped at
    ``max_vocab``) and skewed (log-uniform) value frequencies, 13 numeric fields (log1p of
    heavy-tailed counts, one dense field of width 1 each), no user, item or behaviour fields, and
    a label drawn from a planted logistic model (per-value weights of every field, a numeric
    term and one pairwise interaction) so that AUC says whether a model learned. Rows are split
    at random ``splits`` (train / valid / test). Everything is built with tensor ops on
    ``device``, so tens of millions of rows take seconds on a GPU.
    """
    import torch

    from llmrec.ranking.features import N_SPECIAL, FeatureSet, FeatureSpec

    if n_rows < 10:
        raise ValueError("criteo_like_features needs at least 10 rows")
    dev = torch.device(device)
    g = torch.Generator(device=dev)
    g.manual_seed(seed)
    cards = [min(c, max_vocab) for c in CRITEO_CARDINALITIES]
    context = torch.empty((n_rows, len(cards)), dtype=torch.int64, device=dev)
    logit = torch.zeros(n_rows, device=dev)
    for f, card in enumerate(cards):
        u = torch.rand(n_rows, generator=g, device=dev)
        # log-uniform ranks: a few values are very frequent, most are rare (as in Criteo)
        raw = (torch.pow(float(card), u) - 1.0).long().clamp_(0, card - 1)
        context[:, f] = raw + N_SPECIAL
        weights = torch.randn(card, generator=g, device=dev) * (0.6 if f % 3 == 0 else 0.15)
        logit += weights[raw]
    a, b = context[:, 0] - N_SPECIAL, context[:, 4] - N_SPECIAL  # one planted field-pair effect
    pair = torch.randn(64 * 64, generator=g, device=dev)
    logit += 0.5 * pair[(a % 64) * 64 + (b % 64)]
    numeric = {}
    beta = torch.randn(CRITEO_NUMERIC, generator=g, device=dev) * 0.3
    for j in range(CRITEO_NUMERIC):
        counts = torch.exp(torch.randn(n_rows, generator=g, device=dev) * 1.5).floor()
        x = torch.log1p(counts)
        numeric[f"I{j + 1}"] = x[:, None]
        logit += beta[j] * (x - x.mean())
    # shift the intercept so the positive rate is about ``positive_rate``
    shift = torch.quantile(logit[: min(n_rows, 1_000_000)].float(), 1.0 - positive_rate)
    p = torch.sigmoid(2.0 * (logit - shift))
    label = (torch.rand(n_rows, generator=g, device=dev) < p).float()
    order = torch.randperm(n_rows, generator=g, device=dev)
    n_train, n_valid = int(splits[0] * n_rows), int(splits[1] * n_rows)
    zeros = torch.zeros(n_rows, dtype=torch.int64, device=dev)
    tensors = {
        "user_table": torch.zeros((2, 0), dtype=torch.int64, device=dev),
        "item_table": torch.zeros((2, 0), dtype=torch.int64, device=dev),
        "user_row": zeros + 1, "item_row": zeros + 1,
        "hist_rows": torch.zeros((n_rows, 0), dtype=torch.int64, device=dev),
        "hist_rating": torch.zeros((n_rows, 0), dtype=torch.int64, device=dev),
        "label": label, "position": zeros, "context": context,
        "split.train": order[:n_train].sort().values,
        "split.valid": order[n_train:n_train + n_valid].sort().values,
        "split.test": order[n_train + n_valid:].sort().values,
        **{f"dense.{k}": v for k, v in numeric.items()},
    }
    spec = FeatureSpec(user_fields=[], item_fields=[], item_multi_fields=[], rating_vocab=3,
                       max_hist_len=0, dense={k: 1 for k in numeric},
                       context_fields=[(f"C{f + 1}", c + N_SPECIAL) for f, c in enumerate(cards)])
    info = {"dataset": "criteo-shaped synthetic", "n_samples": n_rows,
            "positive_rate": float(label.mean()), "cardinalities": cards, "seed": seed,
            "row_ids": {"user": ["<pad>", "all"], "item": ["<pad>", "all"]}}
    return FeatureSet(spec, tensors, {}, info)
