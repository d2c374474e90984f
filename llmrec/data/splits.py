"""Leakage-safe splits of interaction data.

``kar`` (default) follows the KAR protocol (see the KSER spec): each user's interactions are sorted
by time; the first ``n_u = min((len + 1) // 2, max_lm_history)`` are the user's *LM history*, the
only interactions an LLM prompt about that user may show; CTR samples are built only from positions
``>= n_u``, labelled ``rating >= label_threshold``; users (not samples) are split into
train / valid / test, seeded. The cutoff is stored per user so the knowledge cache can key on it.

``leave-last-out`` is the usual sequential-recommendation split: per user, the last interaction is
test, the one before it valid, the rest train; the LM history is everything before the valid item.
It accepts implicit feedback (no ratings at all, e.g. Amazon 5-core reviews): every interaction is
then a positive (label 1). Ties in time are ordered by item id, which on Amazon Beauty reproduces
the S3-Rec sequences.

A :class:`Split` holds three tables (pandas): ``samples`` (what models train and evaluate on),
``history`` (every interaction, time-sorted per user, with its ``position``; behaviour sequences are
read from here, strictly before a sample's position) and ``cutoffs`` (per user: ``n_lm``,
``n_total``, ``split``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmrec.config import from_dict, option, to_dict
from llmrec.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


@dataclass
class SplitConfig:
    protocol: Literal["kar", "leave-last-out"] = option(
        "kar", help="kar: per-user time order, LM-history cutoff, users split train/valid/test; "
                    "leave-last-out: per user last item = test, second last = valid")
    seed: int = option(42, help="seed of the user shuffle (kar); same seed + data = same split")
    valid_frac: float = option(0.1, help="fraction of users in the validation split (kar)")
    test_frac: float = option(0.1, help="fraction of users in the test split (kar)")
    max_lm_history: int = option(30, help="cap on the LM-history length n_u = min((len+1)//2, cap)")
    label_threshold: float = option(4.0, help="label = 1 when rating >= this value")

    def __post_init__(self) -> None:
        if not (0 <= self.valid_frac < 1 and 0 <= self.test_frac < 1
                and self.valid_frac + self.test_frac < 1):
            raise ValueError("valid_frac and test_frac must be in [0, 1) and sum to less than 1 "
                             f"(got {self.valid_frac} and {self.test_frac})")
        if self.max_lm_history < 1:
            raise ValueError(f"max_lm_history must be >= 1 (got {self.max_lm_history})")


@dataclass
class Split:
    """The result of a split; see the module docstring for the three tables."""

    config: SplitConfig
    samples: Any
    history: Any
    cutoffs: Any
    dataset: str = ""
    fingerprint: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def part(self, name: str):
        """The samples of one split ('train', 'valid' or 'test')."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        return self.samples[self.samples["split"] == name]

    def lm_history(self, user_id: str):
        """The interactions an LLM may see for ``user_id`` (positions < n_lm), oldest first."""
        row = self.cutoffs[self.cutoffs["user_id"] == user_id]
        if row.empty:
            raise DataError(f"user {user_id!r} is not in this split")
        n_lm = int(row["n_lm"].iloc[0])
        h = self.history[self.history["user_id"] == user_id]
        return h[h["position"] < n_lm]

    def summary(self) -> dict[str, Any]:
        s = self.samples
        out: dict[str, Any] = {"protocol": self.config.protocol, "fingerprint": self.fingerprint}
        for name in SPLITS:
            part = s[s["split"] == name]
            out[name] = {"users": int(part["user_id"].nunique()), "samples": int(len(part)),
                         "positive_rate": round(float(part["label"].mean()), 4) if len(part) else None}
        out["mean_lm_history"] = round(float(self.cutoffs["n_lm"].mean()), 2)
        return out

    def save(self, path: str | Path, extra_config: Any = None) -> Path:
        """Write the split as Parquet tables + split.json + provenance, atomically."""
        from llmrec.artifacts import atomic_dir, write_meta

        path = Path(path)
        with atomic_dir(path) as tmp:
            for name in ("samples", "history", "cutoffs"):
                getattr(self, name).to_parquet(tmp / f"{name}.parquet", index=False)
            (tmp / "split.json").write_text(json.dumps(
                {"config": to_dict(self.config), "dataset": self.dataset,
                 "fingerprint": self.fingerprint, "info": self.info,
                 "summary": self.summary()}, indent=2))
            write_meta(tmp, extra_config if extra_config is not None else self.config)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        import pandas as pd

        path = Path(path)
        meta_file = path / "split.json"
        if not meta_file.is_file():
            raise DataError(f"{path} is not a saved split (no split.json inside); create one with "
                            "'llmrec data split --out DIR'")
        meta = json.loads(meta_file.read_text())
        tables = {n: pd.read_parquet(path / f"{n}.parquet") for n in ("samples", "history", "cutoffs")}
        return cls(config=from_dict(SplitConfig, meta["config"]), dataset=meta.get("dataset", ""),
                   fingerprint=meta.get("fingerprint", ""), info=meta.get("info", {}), **tables)


@dataclass
class FlatSplit:
    """Samples whose source already assigned them to train / valid / test (flat CTR files, a
    re-split table), in the shape ``build_features`` takes: ``history`` is None (no behaviour
    sequences). ``protocol`` names how the samples were split, for summaries."""

    config: Any
    samples: Any
    protocol: str
    history: Any = None
    cutoffs: Any = None
    dataset: str = ""
    fingerprint: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def part(self, name: str):
        """The samples of one split ('train', 'valid' or 'test')."""
        return self.samples[self.samples["split"] == name]

    def summary(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "fingerprint": self.fingerprint, **self.info}


def lm_history_rows(split):
    """Every user's LM history at once: the rows of ``split.history`` before the user's cutoff
    (``position < n_lm``), the only interactions a knowledge prompt may show."""
    h = split.history.merge(split.cutoffs[["user_id", "n_lm"]], on="user_id", how="left")
    return h[h["position"] < h["n_lm"]].drop(columns="n_lm")


def _sorted_history(interactions):
    """Interactions time-sorted per user with their 0-based ``position``.

    Ties in time are broken by item id so the order does not depend on the file's row order.
    """
    import pandas as pd

    df = interactions[["user_id", "item_id", "rating", "timestamp"]].copy()
    if df["timestamp"].isna().any():
        raise DataError("a time-ordered split needs a timestamp on every interaction; "
                        f"{int(df['timestamp'].isna().sum())} are missing")
    df = df.sort_values(["user_id", "timestamp", "item_id"], kind="stable").reset_index(drop=True)
    df["position"] = df.groupby("user_id", sort=False).cumcount().astype("int32")
    return pd.DataFrame(df)


def _fingerprint(history, cfg: SplitConfig) -> str:
    import pandas as pd

    h = hashlib.sha256()
    h.update(json.dumps(to_dict(cfg), sort_keys=True).encode())
    h.update(pd.util.hash_pandas_object(history[["user_id", "item_id", "rating", "timestamp"]],
                                        index=False).values.tobytes())
    return h.hexdigest()[:16]


def make_split(data, cfg: SplitConfig | None = None) -> Split:
    """Split a RecData's interactions (or an interactions DataFrame) by ``cfg.protocol``."""
    import pandas as pd

    cfg = cfg or SplitConfig()
    if isinstance(data, pd.DataFrame):
        interactions, name = data, ""
    else:
        interactions, name = data.df("interactions"), data.name
    missing_rating = interactions["rating"].isna()
    implicit = bool(missing_rating.all())
    if implicit and cfg.protocol != "leave-last-out":
        raise DataError("the interactions have no ratings (implicit feedback): the kar protocol "
                        "labels samples by rating >= label_threshold; use "
                        "--split.protocol=leave-last-out, where every interaction is a positive")
    if missing_rating.any() and not implicit:
        raise DataError("labels come from ratings (rating >= label_threshold), but "
                        f"{int(missing_rating.sum())} interactions have no rating")
    history = _sorted_history(interactions)
    n_total = history.groupby("user_id", sort=True).size()
    users = n_total.index.to_numpy()

    if cfg.protocol == "kar":
        n_lm = np.minimum((n_total.to_numpy() + 1) // 2, cfg.max_lm_history)
        rng = np.random.default_rng(cfg.seed)
        order = rng.permutation(len(users))
        n_test = int(round(cfg.test_frac * len(users)))
        n_valid = int(round(cfg.valid_frac * len(users)))
        assign = np.empty(len(users), dtype=object)
        assign[order[:n_test]] = "test"
        assign[order[n_test:n_test + n_valid]] = "valid"
        assign[order[n_test + n_valid:]] = "train"
        cutoffs = pd.DataFrame({"user_id": users, "n_lm": n_lm.astype("int32"),
                                "n_total": n_total.to_numpy().astype("int32"), "split": assign})
        merged = history.merge(cutoffs[["user_id", "n_lm", "split"]], on="user_id", how="left")
        samples = merged[merged["position"] >= merged["n_lm"]].drop(columns=["n_lm"])
    else:  # leave-last-out
        tot = n_total.to_numpy()
        cutoffs = pd.DataFrame({"user_id": users, "n_lm": np.maximum(tot - 2, 0).astype("int32"),
                                "n_total": tot.astype("int32"), "split": "train"})
        merged = history.merge(cutoffs[["user_id", "n_total"]], on="user_id", how="left")
        from_end = merged["n_total"] - merged["position"]
        # users with fewer than 3 interactions keep everything in train
        enough = merged["n_total"] >= 3
        merged["split"] = np.where(enough & (from_end == 1), "test",
                                   np.where(enough & (from_end == 2), "valid", "train"))
        samples = merged.drop(columns=["n_total"])

    samples = samples.copy()
    # implicit feedback (no ratings, leave-last-out): every interaction is a positive
    samples["label"] = (np.ones(len(samples), dtype="int8") if implicit
                        else (samples["rating"] >= cfg.label_threshold).astype("int8"))
    samples = samples[["user_id", "item_id", "rating", "timestamp", "label", "position", "split"]]
    samples = samples.reset_index(drop=True)
    split = Split(config=cfg, samples=samples, history=history, cutoffs=cutoffs, dataset=name,
                  fingerprint=_fingerprint(history, cfg))
    log.info("split %s (%s): %s", name or "interactions", cfg.protocol, split.summary())
    return split
