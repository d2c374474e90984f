"""CTR features: canonical tables + a split, encoded once into integer tensors.

Layout (normalised so that per-sample storage is a handful of integers):

* a **user table** ``user_table [U, n_user_fields]``: row 0 is padding, one row per known user;
  column 0 is the user-id vocabulary id, the others are profile fields (gender, age, ...);
* an **item table** ``item_table [R, n_item_fields]`` (column 0 item id, then scalar attributes
  such as year) and ``item_multi.<name> [R, G]`` for multi-valued attributes (genres), padded
  with 0; row 0 is the padding item;
* per sample: ``user_row [N]``, ``item_row [N]``, ``hist_rows [N, L]`` (rows of the item table for
  the last ``max_hist_len`` items *before* the sample's position, oldest first, padding 0 after
  the valid ones), ``hist_rating [N, L]`` (rating vocabulary ids), ``label [N]`` (float),
  ``position [N]``;
* optional per-sample **context fields** ``context [N, C]`` (categorical, vocabulary ids: BARS
  Frappe's daytime, weekday, city, ...), **named labels** ``label.<name> [N]`` beside the primary
  ``label``, **group ids** ``group.<name> [N]`` (query, session; the user group is ``user_row``)
  and, when asked for, **timestamps** ``time [N]`` and ``hist_time [N, L]`` (seconds);
* optional dense fields (knowledge vectors, numeric context) at three levels: per sample
  ``dense.<name> [N, d]``, per user ``user_dense.<name> [U, d]``, per item ``item_dense.<name> [R, d]``.

The entity id of every user-table and item-table row is kept in ``info["row_ids"]`` (see
:meth:`FeatureSet.row_ids`): knowledge tables and ``rank predict`` look rows up by id.

:meth:`FeatureSet.batch` gathers a batch from index tensors with a few indexing ops, so a trainer
keeps everything on the device and never builds per-row Python objects.

Vocabularies are built from the training samples only. Index 0 is padding, 1 is *unknown*
(a value never seen in training: a cold user or item, a new zip code), 2 is *missing* (the source
has no value: a null year, an item absent from the items table). Keeping unknown and missing apart
lets a model treat "we do not know this movie's year" differently from "a year we never trained
on". Cold items keep their attributes: the item table has a row for every item of the catalogue
and only the id column falls back to unknown.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from llmrec.config import option
from llmrec.errors import DataError

log = logging.getLogger(__name__)

PAD, UNK, MISSING = 0, 1, 2
N_SPECIAL = 3
SPECIAL_TOKENS = ("<pad>", "<unk>", "<missing>")
FEATURES_FILE = "features.safetensors"
VOCAB_FILE = "vocabs.json"
SPEC_FILE = "spec.json"
SPLITS = ("train", "valid", "test")


@dataclass
class FeatureConfig:
    """Which fields become CTR features and how long the behaviour sequence is."""

    max_hist_len: int = option(10, help="behaviour-sequence length: the last N items before the "
                                        "target position (padded, with a mask)")
    user_fields: list[str] | None = option(None, help="user profile columns to use; null = every "
                                                      "scalar column of the users table")
    use_user_id: bool = option(True, help="include the user id as a field (cold users map to the "
                                          "unknown id)")
    item_fields: list[str] = option(["year"], help="scalar item attributes used as categorical "
                                                   "fields (missing columns are skipped)")
    item_multi_fields: list[str] = option(["genres"], help="list-valued item attributes (multi-hot, "
                                                           "mean-pooled)")
    max_multi_len: int = option(6, help="at most this many values per list-valued attribute")
    min_count: int = option(1, help="values seen fewer times than this in training map to unknown")
    use_hist_rating: bool = option(True, help="encode the rating of each behaviour (off: the "
                                              "sequence holds items only, as in most CTR datasets)")
    use_item_id: bool = option(True, help="include the item id as a field (off: items are known "
                                          "by their attributes only)")
    context_fields: list[str] = option([], help="per-sample categorical columns of the split's "
                                                "samples (e.g. daytime, weekday, city)")
    numeric_fields: list[str] = option([], help="per-sample numeric columns, each a dense field "
                                                "of width 1")
    labels: list[str] = option([], help="extra named label columns of the samples (multi-task, "
                                        "regression): stored as label.<name>; `label` stays the "
                                        "primary one")
    groups: list[str] = option([], help="group-id columns of the samples besides the user (query, "
                                        "session): stored as group.<name> for listwise tasks and "
                                        "grouped metrics")
    timestamps: bool = option(False, help="keep the samples' and behaviours' timestamps (seconds) "
                                          "as time / hist_time (sequential models with time)")
    lm_history_stats: bool = option(False, help="add the user's LM-history rating statistics as "
                                                "numeric fields (lm_pos_share, lm_mean_rating, "
                                                "lm_log_count; kar split only): the plain-feature "
                                                "baseline for user knowledge")

    def __post_init__(self) -> None:
        if self.max_hist_len < 0:
            raise ValueError("max_hist_len must be >= 0 (0: no behaviour sequence)")
        if self.max_multi_len < 1:
            raise ValueError("max_multi_len must be >= 1")


@dataclass
class FeatureSpec:
    """What a backbone needs to know about the features: field names, vocabulary sizes, dims.

    ``dense`` maps a dense field name to its width; a backbone projects each one to its embedding
    size and treats it as one more field, so extra knowledge vectors plug in without changing any
    backbone's code.
    """

    user_fields: list[tuple[str, int]]
    item_fields: list[tuple[str, int]]
    item_multi_fields: list[tuple[str, int, int]]  # (name, vocab size, max values)
    rating_vocab: int
    max_hist_len: int
    dense: dict[str, int] = field(default_factory=dict)
    context_fields: list[tuple[str, int]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # named labels besides the primary one
    groups: list[str] = field(default_factory=list)  # group ids besides the user
    timestamps: bool = False
    # per-field embedding widths (FDO, low-rank compression): field -> width; empty = every
    # field at the model's embed_dim (see layers.FeatureEmbedding)
    field_dims: dict[str, int] = field(default_factory=dict)

    @property
    def n_user_fields(self) -> int:
        return len(self.user_fields)

    @property
    def n_item_slots(self) -> int:
        """Fields that describe one item (id, scalar attributes, multi-valued attributes)."""
        return len(self.item_fields) + len(self.item_multi_fields)

    @property
    def n_dense(self) -> int:
        return len(self.dense)

    @property
    def n_context(self) -> int:
        return len(self.context_fields)

    @property
    def n_fields(self) -> int:
        """Fields seen by flat (non-sequence) backbones: user, target item, pooled history (when
        there is a behaviour sequence), context, dense."""
        hist = self.n_item_slots if self.max_hist_len > 0 else 0
        return self.n_user_fields + self.n_item_slots + hist + self.n_context + self.n_dense

    def to_dict(self) -> dict[str, Any]:
        return {"user_fields": [list(f) for f in self.user_fields],
                "item_fields": [list(f) for f in self.item_fields],
                "item_multi_fields": [list(f) for f in self.item_multi_fields],
                "rating_vocab": self.rating_vocab, "max_hist_len": self.max_hist_len,
                "dense": dict(self.dense),
                "context_fields": [list(f) for f in self.context_fields],
                "labels": list(self.labels), "groups": list(self.groups),
                "timestamps": self.timestamps,
                # only when set, so specs without per-field widths stay as they were
                **({"field_dims": dict(self.field_dims)} if self.field_dims else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(user_fields=[tuple(f) for f in d["user_fields"]],
                   item_fields=[tuple(f) for f in d["item_fields"]],
                   item_multi_fields=[tuple(f) for f in d["item_multi_fields"]],
                   rating_vocab=int(d["rating_vocab"]), max_hist_len=int(d["max_hist_len"]),
                   dense={k: int(v) for k, v in d.get("dense", {}).items()},
                   context_fields=[tuple(f) for f in d.get("context_fields", [])],
                   labels=list(d.get("labels", [])), groups=list(d.get("groups", [])),
                   timestamps=bool(d.get("timestamps", False)),
                   field_dims={k: int(v) for k, v in d.get("field_dims", {}).items()})


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    if isinstance(v, str) and v.strip() == "":
        return True
    try:
        return bool(np.ndim(v) == 0 and np.isnan(v))
    except TypeError:  # strings and other non-numeric scalars
        return False


def _key(v: Any) -> str:
    """One canonical string per value, so 1995, 1995.0 and "1995" share a vocabulary entry."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (np.integer,)):
        return str(int(v))
    return str(v)


class Vocab:
    """Value -> id with reserved ids 0 (padding), 1 (unknown) and 2 (missing)."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values: list[str] = []
        self._index: dict[str, int] = {}
        for v in values:
            self.add(v)

    def add(self, value: str) -> None:
        if value not in self._index:
            self._index[value] = N_SPECIAL + len(self.values)
            self.values.append(value)

    @classmethod
    def build(cls, values: Iterable[Any], min_count: int = 1) -> Vocab:
        """A vocabulary of the non-missing values seen at least ``min_count`` times, sorted."""
        import pandas as pd

        # count the distinct raw values first, then merge the ones that share a key (1995, 1995.0)
        raw = pd.Series(list(values), dtype=object).value_counts(dropna=True)
        return cls.from_counts(raw.items(), min_count)

    @classmethod
    def from_counts(cls, pairs: Iterable[tuple[Any, int]], min_count: int = 1) -> Vocab:
        """:meth:`build` from (value, count) pairs: missing values dropped, keys merged."""
        counts: dict[str, int] = {}
        for v, c in pairs:
            if _is_missing(v):
                continue
            k = _key(v)
            counts[k] = counts.get(k, 0) + int(c)
        return cls(sorted(k for k, c in counts.items() if c >= min_count))

    def __len__(self) -> int:
        """The embedding-table size: specials plus values."""
        return N_SPECIAL + len(self.values)

    def id(self, value: Any) -> int:
        if _is_missing(value):
            return MISSING
        return self._index.get(_key(value), UNK)

    def encode(self, values: Iterable[Any]) -> np.ndarray:
        import pandas as pd

        # look up each distinct value once; nulls (codes < 0) are missing
        codes, uniques = pd.factorize(pd.Series(list(values), dtype=object), use_na_sentinel=True)
        ids = np.array([self.id(u) for u in uniques] + [MISSING], dtype=np.int64)
        return ids[np.where(codes < 0, len(uniques), codes)]

    def to_json(self) -> dict[str, Any]:
        return {"specials": list(SPECIAL_TOKENS), "values": self.values}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Vocab:
        return cls(d["values"])


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, str):
        # tolerate "A|B|C" strings from raw files
        return [x for x in v.split("|") if x]
    if isinstance(v, float) and np.isnan(v):
        return []
    return list(v)


class FeatureSet:
    """Encoded CTR features as tensors (see the module docstring for the layout)."""

    def __init__(self, spec: FeatureSpec, tensors: dict[str, Any], vocabs: dict[str, Vocab],
                 info: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.tensors = tensors
        self.vocabs = vocabs
        self.info = dict(info or {})
        self._index_plan()

    def _index_plan(self) -> None:
        self._multi = [name for name, _, _ in self.spec.item_multi_fields]

    # ----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.tensors["label"].shape[0])

    @property
    def device(self):
        return self.tensors["label"].device

    def split_index(self, name: str):
        """Sample indices of split ``name`` (int64 tensor on the features' device)."""
        key = f"split.{name}"
        if key not in self.tensors:
            raise DataError(f"feature set has no {name!r} split (has: {', '.join(self.split_names)})")
        return self.tensors[key]

    @property
    def split_names(self) -> list[str]:
        return [k.split(".", 1)[1] for k in self.tensors if k.startswith("split.")]

    def to(self, device) -> FeatureSet:
        """Move every tensor to ``device`` once (a trainer then slices batches there)."""
        self.tensors = {k: v.to(device) for k, v in self.tensors.items()}
        return self

    def add_dense(self, name: str, values, level: str = "sample") -> None:
        """Add a dense field (e.g. a knowledge vector): ``level`` is sample, user or item.

        ``values`` has one row per sample, per user-table row or per item-table row (row 0 is the
        padding row and should be zeros).
        """
        import torch

        prefix = {"sample": "dense.", "user": "user_dense.", "item": "item_dense."}.get(level)
        if prefix is None:
            raise ValueError(f"level must be sample, user or item, not {level!r}")
        expected = {"sample": len(self), "user": self.tensors["user_table"].shape[0],
                    "item": self.tensors["item_table"].shape[0]}[level]
        values = torch.as_tensor(values, dtype=torch.float32)
        if values.ndim != 2 or values.shape[0] != expected:
            raise DataError(f"dense field {name!r}: expected shape [{expected}, d] for level "
                            f"{level!r}, got {tuple(values.shape)}")
        if name in self.spec.dense:
            raise DataError(f"dense field {name!r} already exists")
        self.tensors[prefix + name] = values.to(self.device)
        self.spec.dense[name] = int(values.shape[1])

    # ----------------------------------------------------------------------------------------
    def batch(self, idx) -> dict[str, Any]:
        """Gather the samples ``idx`` (int64 tensor) into the dict every model takes.

        Keys: ``user [B, n_user_fields]``, ``item [B, n_item_fields]``, ``item_multi`` {name:
        [B, G]}, ``hist_item [B, L, n_item_fields]``, ``hist_multi`` {name: [B, L, G]},
        ``hist_rating [B, L]``, ``hist_mask [B, L]`` (bool), ``dense`` {name: [B, d]},
        ``label [B]`` (float), ``user_row`` / ``item_row [B]`` and ``hist_rows [B, L]`` (table
        rows, for lookups such as
        knowledge vectors and full-catalogue scoring), ``catalog`` (the whole item table and its
        multi-valued attributes, ungathered); when the features have them, ``context
        [B, C]``, ``labels`` {name: [B]}, ``groups`` {name: [B]}, ``time [B]`` and
        ``hist_time [B, L]``.
        """
        t = self.tensors
        user_row = t["user_row"][idx]
        item_row = t["item_row"][idx]
        hist_rows = t["hist_rows"][idx]
        out: dict[str, Any] = {
            "user": t["user_table"][user_row],
            "item": t["item_table"][item_row],
            "item_multi": {m: t[f"item_multi.{m}"][item_row] for m in self._multi},
            "hist_item": t["item_table"][hist_rows],
            "hist_multi": {m: t[f"item_multi.{m}"][hist_rows] for m in self._multi},
            "hist_rating": t["hist_rating"][idx],
            "hist_mask": hist_rows > 0,
            "label": t["label"][idx],
            "user_row": user_row,
            "item_row": item_row,
            "hist_rows": hist_rows,
            # the whole item table, not gathered: what full-catalogue scoring embeds
            "catalog": {"item": t["item_table"],
                        "item_multi": {m: t[f"item_multi.{m}"] for m in self._multi}},
        }
        if self.spec.context_fields:
            out["context"] = t["context"][idx]
        if self.spec.labels:
            out["labels"] = {n: t[f"label.{n}"][idx] for n in self.spec.labels}
        if self.spec.groups:
            out["groups"] = {n: t[f"group.{n}"][idx] for n in self.spec.groups}
        if self.spec.timestamps:
            out["time"] = t["time"][idx]
            out["hist_time"] = t["hist_time"][idx]
        dense = {}
        for name in self.spec.dense:
            if f"dense.{name}" in t:
                dense[name] = t[f"dense.{name}"][idx]
            elif f"user_dense.{name}" in t:
                dense[name] = t[f"user_dense.{name}"][user_row]
            else:
                dense[name] = t[f"item_dense.{name}"][item_row]
        out["dense"] = dense
        return out

    def groups(self, idx=None, name: str = "user"):
        """Group id per sample: the user-table row for ``user``, else ``group.<name>``."""
        key = "user_row" if name == "user" else f"group.{name}"
        if key not in self.tensors:
            raise DataError(f"the features have no {name!r} group ids (have: user"
                            f"{''.join(', ' + g for g in self.spec.groups)}); add the column to "
                            f"features.groups")
        return self.tensors[key] if idx is None else self.tensors[key][idx]

    def labels(self, name: str | None = None):
        """The primary label (``name`` None or ``label``) or the named label ``name``: [N]."""
        if name in (None, "label"):
            return self.tensors["label"]
        if f"label.{name}" not in self.tensors:
            raise DataError(f"the features have no label {name!r} (have: label"
                            f"{''.join(', ' + n for n in self.spec.labels)}); add the column to "
                            f"features.labels")
        return self.tensors[f"label.{name}"]

    def row_ids(self, kind: str) -> list[str]:
        """Entity id of every row of the ``user`` or ``item`` table (index i = row i + 1)."""
        ids = self.info.get("row_ids")
        if not ids or kind not in ids:
            raise DataError("these encoded features carry no entity ids per table row "
                            "(info.row_ids; features saved by an older llmrec): rebuild them by "
                            "deleting the features_path folder")
        return ids[kind]

    @property
    def n_items(self) -> int:
        """Rows of the item table, padding row 0 included (the catalogue of next-item tasks)."""
        return int(self.tensors["item_table"].shape[0])

    # ----------------------------------------------------------------------------------------
    def save(self, path: str | Path, config: Any = None) -> Path:
        """Write tensors (safetensors), vocabularies and spec (JSON) and provenance, atomically."""
        from safetensors.torch import save_file

        from llmrec.artifacts import atomic_dir, write_meta

        path = Path(path)
        with atomic_dir(path) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.tensors.items()},
                      str(tmp / FEATURES_FILE))
            (tmp / VOCAB_FILE).write_text(json.dumps(
                {k: v.to_json() for k, v in self.vocabs.items()}, indent=1))
            (tmp / SPEC_FILE).write_text(json.dumps({"spec": self.spec.to_dict(),
                                                     "info": self.info}, indent=2))
            write_meta(tmp, config)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> FeatureSet:
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / FEATURES_FILE).is_file():
            raise DataError(f"{path} holds no encoded features ({FEATURES_FILE} missing); "
                            f"build them with `llmrec rank features` or FeatureSet.save")
        tensors = load_file(str(path / FEATURES_FILE), device=str(device))
        vocabs = {k: Vocab.from_json(v) for k, v in json.loads((path / VOCAB_FILE).read_text()).items()}
        meta = json.loads((path / SPEC_FILE).read_text())
        return cls(FeatureSpec.from_dict(meta["spec"]), tensors, vocabs, meta.get("info"))


# ------------------------------------------------------------------------------------------------
def _history_index(user_start: np.ndarray, positions: np.ndarray, max_len: int):
    """Rows of the time-sorted history table for each sample's last ``max_len`` past items.

    Slot j of a sample at position p with k = min(p, L) past items holds position p - k + j for
    j < k (oldest first), and -1 (padding) for j >= k. Only positions < p ever appear: the target
    and anything after it are never part of its own history.
    """
    L = max_len
    k = np.minimum(positions, L)
    j = np.arange(L)[None, :]
    pos = positions[:, None] - k[:, None] + j
    valid = j < k[:, None]
    rows = user_start[:, None] + pos
    return np.where(valid, rows, -1), valid


LM_STATS = ("lm_pos_share", "lm_mean_rating", "lm_log_count")


def lm_history_stats(split):
    """Per user, statistics of the LM history (the interactions before the user's cutoff, the only
    ones a knowledge prompt may show): the share rated ``>= label_threshold``, the mean rating / 5
    and log(1 + count). A DataFrame indexed by user id (str) with the :data:`LM_STATS` columns."""
    import pandas as pd

    cutoffs = getattr(split, "cutoffs", None)
    if cutoffs is None or "n_lm" not in cutoffs.columns or split.history is None:
        raise DataError("features.lm_history_stats needs a split with LM-history cutoffs "
                        "(split.protocol: kar)")
    threshold = float(getattr(getattr(split, "config", None), "label_threshold", 4.0))
    from llmrec.data.splits import lm_history_rows

    lm = lm_history_rows(split)
    if lm["rating"].isna().all():
        raise DataError("features.lm_history_stats needs ratings in the LM history")
    g = lm.assign(pos=(lm["rating"] >= threshold).astype(np.float64),
                  r=lm["rating"].astype(np.float64) / 5.0).groupby(
        lm["user_id"].astype(str), sort=True)
    out = pd.DataFrame({"lm_pos_share": g["pos"].mean(), "lm_mean_rating": g["r"].mean(),
                        "lm_log_count": np.log1p(g.size().astype(np.float64))})
    return out.astype(np.float32)


def build_features(data, split, cfg: FeatureConfig | None = None) -> FeatureSet:
    """Encode ``split.samples`` of ``data`` into a :class:`FeatureSet` (vocabularies from train).

    ``data`` is a :class:`~llmrec.data.tables.RecData` (or anything with ``df(name)`` and
    ``has(name)``); ``split`` has the ``samples`` and ``history`` DataFrames of
    :mod:`llmrec.data.splits`. ``history`` may be None or empty (flat CTR data such as the BARS
    sets: no behaviour sequences), and then ``position`` may be absent from the samples.
    """
    import pandas as pd
    import torch

    cfg = cfg or FeatureConfig()
    samples = split.samples.reset_index(drop=True)
    history = split.history
    if history is None or len(history) == 0:
        history = pd.DataFrame({"user_id": pd.Series([], dtype=object),
                                "item_id": pd.Series([], dtype=object),
                                "position": pd.Series([], dtype=np.int64)})
        if "position" not in samples.columns:
            samples = samples.assign(position=0)
    if len(samples) == 0:
        raise DataError("the split has no samples to encode")
    numeric_fields = list(cfg.numeric_fields)
    if cfg.lm_history_stats:
        stats = lm_history_stats(split)
        samples = samples.merge(stats, left_on=samples["user_id"].astype(str),
                                right_index=True, how="left").drop(columns="key_0")
        samples[list(LM_STATS)] = samples[list(LM_STATS)].fillna(0.0)
        numeric_fields += [f for f in LM_STATS if f not in numeric_fields]
    wanted = ["user_id", "item_id", "label", "position", "split", *cfg.context_fields,
              *numeric_fields, *cfg.labels, *cfg.groups]
    if cfg.timestamps:
        wanted.append("timestamp")
    for col in wanted:
        if col not in samples.columns:
            raise DataError(f"split.samples lacks column {col!r} (has: {', '.join(samples.columns)})"
                            + ("; timestamps need a timestamp column in the samples and history"
                               if col == "timestamp" else ""))
    samples = samples.assign(user_id=samples["user_id"].astype(str),
                             item_id=samples["item_id"].astype(str))
    history = history.assign(user_id=history["user_id"].astype(str),
                             item_id=history["item_id"].astype(str))
    history = history.sort_values(["user_id", "position"], kind="stable").reset_index(drop=True)
    # every user's positions must be 0..n-1 so that row = user_start + position
    n_per_user = history.groupby("user_id", sort=False).size()
    user_start_map = pd.Series(np.concatenate([[0], np.cumsum(n_per_user.to_numpy())[:-1]])
                               if len(n_per_user) else np.zeros(0, dtype=np.int64),
                               index=n_per_user.index)
    expected_pos = np.arange(len(history)) - user_start_map.loc[history["user_id"]].to_numpy()
    if not np.array_equal(expected_pos, history["position"].to_numpy()):
        raise DataError("split.history positions must run 0..n-1 per user in time order")
    missing_users = ~samples["user_id"].isin(user_start_map.index)
    if len(history) and missing_users.any():
        raise DataError(f"{int(missing_users.sum())} samples belong to users absent from "
                        f"split.history (e.g. {samples.loc[missing_users, 'user_id'].iloc[0]!r})")

    # ---- behaviour sequences (past only) ------------------------------------------------------
    L = cfg.max_hist_len
    starts = (user_start_map.reindex(samples["user_id"]).fillna(0).to_numpy().astype(np.int64)
              if len(history) else np.zeros(len(samples), dtype=np.int64))
    positions = samples["position"].to_numpy().astype(np.int64)
    if not len(history):
        positions = np.zeros(len(samples), dtype=np.int64)
    hist_idx, hist_valid = _history_index(starts, positions, L)
    safe = np.where(hist_valid, hist_idx, 0)
    # behaviours as codes of the history's distinct items and ratings (-1: none), so that long
    # sequences cost integer gathers, not an [N, L] array of id objects
    item_codes, item_uniques = (pd.factorize(history["item_id"]) if len(history)
                                else (np.zeros(0, dtype=np.int64), np.array([], dtype=object)))
    hist_item_code = (np.where(hist_valid, item_codes[safe], -1) if len(history)
                      else np.full(hist_valid.shape, -1, dtype=np.int64))
    rating_codes, rating_uniques = (pd.factorize(history["rating"])  # NaN -> code -1
                                    if "rating" in history.columns and len(history)
                                    else (np.zeros(0, dtype=np.int64), np.array([])))
    if np.asarray(rating_uniques).dtype.kind in "iuf":  # as the float64 values they were read as
        rating_uniques = np.asarray(rating_uniques, dtype=np.float64)
    hist_rating_code = (np.where(hist_valid, rating_codes[safe], -1) if len(rating_codes)
                        else np.full(hist_valid.shape, -1, dtype=np.int64))
    if cfg.timestamps:
        if "timestamp" not in history.columns and len(history):
            raise DataError("features.timestamps: split.history lacks a timestamp column")
        hist_time = (np.where(hist_valid, history["timestamp"].to_numpy()[safe], 0)
                     if len(history) else np.zeros(hist_valid.shape))

    is_train = (samples["split"] == "train").to_numpy()
    if not is_train.any():
        raise DataError("the split has no training samples: vocabularies are built from train")

    # ---- vocabularies (train only) ------------------------------------------------------------
    vocabs: dict[str, Vocab] = {}
    # a training sample's item and every item of its history window count once each
    train_hist = hist_item_code[is_train][hist_valid[is_train]]
    hist_counts = np.bincount(train_hist, minlength=len(item_uniques))
    vocabs["item_id"] = Vocab.from_counts(
        [*samples.loc[is_train, "item_id"].value_counts().items(),
         *((v, c) for v, c in zip(item_uniques, hist_counts) if c)], cfg.min_count)
    train_users = samples.loc[is_train, "user_id"]
    users_df = data.df("users") if data.has("users") else pd.DataFrame({"user_id": []})
    users_df = users_df.assign(user_id=users_df["user_id"].astype(str)).drop_duplicates("user_id")
    if cfg.user_fields is None:
        user_fields = [c for c in users_df.columns if c != "user_id"
                       and not users_df[c].map(lambda v: isinstance(v, (list, np.ndarray))).any()]
    else:
        absent = [c for c in cfg.user_fields if c not in users_df.columns]
        if absent:
            raise DataError(f"user field(s) {absent} not in the users table (has: "
                            f"{', '.join(users_df.columns)})")
        user_fields = list(cfg.user_fields)
    user_ids_train = set(train_users)
    users_train_df = users_df[users_df["user_id"].isin(user_ids_train)]
    # profile vocabularies count users, not samples: a heavy user does not make a value "common"
    for f in user_fields:
        vocabs[f"user.{f}"] = Vocab.build(users_train_df[f].tolist(), cfg.min_count)
    if cfg.use_user_id:
        vocabs["user_id"] = Vocab.build(train_users.unique(), 1)

    items_df = data.df("items") if data.has("items") else pd.DataFrame({"item_id": []})
    items_df = items_df.assign(item_id=items_df["item_id"].astype(str)).drop_duplicates("item_id")
    item_fields = [f for f in cfg.item_fields if f in items_df.columns]
    multi_fields = [f for f in cfg.item_multi_fields if f in items_df.columns]
    skipped = [f for f in list(cfg.item_fields) + list(cfg.item_multi_fields)
               if f not in items_df.columns]
    if skipped:
        log.info("item attribute(s) %s not in the items table; skipped", skipped)
    train_item_set = set(vocabs["item_id"].values)
    items_train_df = items_df[items_df["item_id"].isin(train_item_set)]
    for f in item_fields:
        vocabs[f"item.{f}"] = Vocab.build(items_train_df[f].tolist(), cfg.min_count)
    for f in multi_fields:
        vocabs[f"item.{f}"] = Vocab.build(
            (x for v in items_train_df[f].tolist() for x in _as_list(v)), cfg.min_count)
    train_rc = hist_rating_code[is_train][hist_valid[is_train]]
    vocabs["rating"] = Vocab.from_counts(
        zip(rating_uniques, np.bincount(train_rc[train_rc >= 0], minlength=len(rating_uniques))), 1)

    # ---- user table ---------------------------------------------------------------------------
    all_users = pd.Index(pd.unique(pd.concat([users_df["user_id"], history["user_id"],
                                              samples["user_id"]])))
    prof = users_df.set_index("user_id").reindex(all_users)
    cols = []
    if cfg.use_user_id:
        cols.append(vocabs["user_id"].encode(all_users))
    for f in user_fields:
        cols.append(vocabs[f"user.{f}"].encode(prof[f].tolist()))
    # zero columns is allowed (no profile and no user id): the user is then known only through
    # the behaviour sequence
    user_table = np.zeros((len(all_users) + 1, len(cols)), dtype=np.int64)
    if cols:
        user_table[1:] = np.stack(cols, axis=1)

    # ---- item table ---------------------------------------------------------------------------
    all_items = pd.Index(pd.unique(pd.concat([items_df["item_id"], history["item_id"],
                                              samples["item_id"]])))
    attrs = items_df.set_index("item_id").reindex(all_items)
    icols = [vocabs["item_id"].encode(all_items)] if cfg.use_item_id else []
    for f in item_fields:
        icols.append(vocabs[f"item.{f}"].encode(attrs[f].tolist()))
    item_table = np.zeros((len(all_items) + 1, len(icols)), dtype=np.int64)
    if icols:
        item_table[1:] = np.stack(icols, axis=1)
    G = cfg.max_multi_len
    multi_tables = {}
    for f in multi_fields:
        tab = np.zeros((len(all_items) + 1, G), dtype=np.int64)
        voc = vocabs[f"item.{f}"]
        for r, v in enumerate(attrs[f].tolist(), start=1):
            vals = _as_list(v) if not (isinstance(v, float) and np.isnan(v)) else []
            if not vals:
                tab[r, 0] = MISSING
                continue
            ids = [voc.id(x) for x in vals][:G]
            tab[r, : len(ids)] = ids
        multi_tables[f] = tab

    # ---- per-sample tensors -------------------------------------------------------------------
    # table rows are 1-based: row 0 is padding
    user_row = all_users.get_indexer(samples["user_id"]) + 1
    item_row = all_items.get_indexer(samples["item_id"]) + 1
    row_of_code = (all_items.get_indexer(item_uniques) + 1).astype(np.int64)
    hist_rows = (np.where(hist_valid, row_of_code[np.maximum(hist_item_code, 0)], 0)
                 if len(item_uniques) else np.zeros(hist_valid.shape, dtype=np.int64))
    hist_rating = np.zeros(hist_valid.shape, dtype=np.int64)
    if cfg.use_hist_rating:
        # each distinct rating encoded once; a behaviour without a rating is missing
        id_of_code = np.append(vocabs["rating"].encode(list(rating_uniques)), MISSING)
        hist_rating = np.where(hist_valid, id_of_code[hist_rating_code], 0).astype(np.int64)

    tensors: dict[str, Any] = {
        "user_table": torch.from_numpy(user_table),
        "item_table": torch.from_numpy(item_table),
        "user_row": torch.from_numpy(user_row.astype(np.int64)),
        "item_row": torch.from_numpy(item_row.astype(np.int64)),
        "hist_rows": torch.from_numpy(hist_rows),
        "hist_rating": torch.from_numpy(hist_rating),
        "label": torch.from_numpy(samples["label"].to_numpy().astype(np.float32)),
        "position": torch.from_numpy(positions),
    }
    for f, tab in multi_tables.items():
        tensors[f"item_multi.{f}"] = torch.from_numpy(tab)
    # ---- per-sample context, labels, groups, timestamps ----------------------------------------
    for f in cfg.context_fields:
        vocabs[f"context.{f}"] = Vocab.build(samples.loc[is_train, f].tolist(), cfg.min_count)
    if cfg.context_fields:
        tensors["context"] = torch.from_numpy(np.stack(
            [vocabs[f"context.{f}"].encode(samples[f].tolist()) for f in cfg.context_fields], 1))
    for name in cfg.labels:
        try:
            values = samples[name].to_numpy().astype(np.float32)
        except (TypeError, ValueError) as exc:
            raise DataError(f"label column {name!r} is not numeric: {exc}") from None
        tensors[f"label.{name}"] = torch.from_numpy(values)
    for name in cfg.groups:
        codes, _ = pd.factorize(samples[name].astype(str))
        tensors[f"group.{name}"] = torch.from_numpy(codes.astype(np.int64))
    if cfg.timestamps:
        tensors["time"] = torch.from_numpy(samples["timestamp"].to_numpy().astype(np.int64))
        tensors["hist_time"] = torch.from_numpy(np.asarray(hist_time).astype(np.int64))
    numeric = {}
    for name in numeric_fields:
        try:
            numeric[name] = samples[name].to_numpy().astype(np.float32)[:, None]
        except (TypeError, ValueError) as exc:
            raise DataError(f"numeric field {name!r} is not numeric: {exc}") from None
    split_col = samples["split"].to_numpy()
    for s in pd.unique(split_col):
        tensors[f"split.{s}"] = torch.from_numpy(np.flatnonzero(split_col == s).astype(np.int64))

    user_field_specs = ([("user_id", len(vocabs["user_id"]))] if cfg.use_user_id else []) + \
        [(f, len(vocabs[f"user.{f}"])) for f in user_fields]
    spec = FeatureSpec(
        user_fields=user_field_specs,
        item_fields=([("item_id", len(vocabs["item_id"]))] if cfg.use_item_id else [])
        + [(f, len(vocabs[f"item.{f}"])) for f in item_fields],
        item_multi_fields=[(f, len(vocabs[f"item.{f}"]), G) for f in multi_fields],
        rating_vocab=len(vocabs["rating"]),
        max_hist_len=L,
        context_fields=[(f, len(vocabs[f"context.{f}"])) for f in cfg.context_fields],
        labels=list(cfg.labels), groups=list(cfg.groups), timestamps=cfg.timestamps,
    )
    info = {
        "n_samples": int(len(samples)),
        "splits": {s: int((split_col == s).sum()) for s in pd.unique(split_col)},
        "positive_rate": {s: float(samples.loc[split_col == s, "label"].mean())
                          for s in pd.unique(split_col)},
        "n_users": int(len(all_users)), "n_items": int(len(all_items)),
        "unknown_rate": {
            "item_id": float((item_table[item_row, 0] == UNK)[~is_train].mean())
            if cfg.use_item_id and (~is_train).any() else 0.0,
            "user_id": float((user_table[user_row, 0] == UNK)[~is_train].mean())
            if cfg.use_user_id and (~is_train).any() else 0.0,
        },
    }
    # the entity of every table row, in table order: what knowledge lookups and predict key on
    info["row_ids"] = {"user": [str(u) for u in all_users], "item": [str(i) for i in all_items]}
    log.info("encoded %d samples (%s), %d users, %d items", info["n_samples"], info["splits"],
             info["n_users"], info["n_items"])
    fs = FeatureSet(spec, tensors, vocabs, info)
    for name, values in numeric.items():
        fs.add_dense(name, values, "sample")
    return fs
