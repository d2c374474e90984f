"""A time-ordered CTR stream cut into windows, and the prequential evaluation of ReLoop2 on it.

:func:`movielens_stream`: the ratings of a MovieLens-1M folder (here users 1-2999) ordered by
time (ties by user, then item), label = rating >= 4, cut into ``n_windows`` windows of equal
size. Fields: user id, gender, age, occupation, item id, year, genres (no behaviour history).
Vocabularies cover the whole stream (as a hashed production vocabulary would: an id seen first
in a later window has an embedding row that only training on that window moves).

:func:`prequential`: train the base model on windows ``0 .. train_windows - 1``; then for each
later window, in consecutive chunks of ``chunk`` samples (time order): predict with the frozen
base model, with base + each memory (exact kNN and LSH, per key of ``keys``) at each
``lambda``, and with the incrementally fine-tuned copy; score; then insert the chunk's
base-model errors into the memories. After a window the
memories decay and the incremental copy trains one epoch on that window. The memories start
with the errors of the last training window. Metrics per window: AUC, gAUC (by user), LogLoss.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from llmrec.config import option
from llmrec.errors import ConfigError
from llmrec.ranking.metrics import ctr_metrics
from llmrec.ranking.reloop2 import ExactKNNMemory, LSHMemory, ReLoop2, representation

log = logging.getLogger(__name__)


def movielens_stream(path: str | Path, n_windows: int = 10, max_samples: int | None = None):
    """``(features, windows)``: a :class:`FeatureSet` of the time-ordered samples and the sample
    indices of each window (``[n_windows]`` int64 tensors, in time order)."""
    import pandas as pd

    from llmrec.data.loaders import DataConfig, load_data
    from llmrec.ranking.features import FeatureConfig, build_features
    from llmrec.ranking.synthetic import SimpleSplit

    if n_windows < 2:
        raise ConfigError(f"n_windows must be >= 2, got {n_windows}")
    data = load_data(DataConfig(name="movielens-1m", path=str(path)))
    inter = data.df("interactions")
    df = pd.DataFrame({"user_id": inter["user_id"].astype(str),
                       "item_id": inter["item_id"].astype(str),
                       "timestamp": inter["timestamp"].astype("int64"),
                       "label": (inter["rating"] >= 4).astype(np.float32)})
    df = df.assign(_u=df["user_id"].astype(int), _i=df["item_id"].astype(int))
    df = df.sort_values(["timestamp", "_u", "_i"], kind="stable").drop(columns=["_u", "_i"])
    if max_samples:
        df = df.iloc[:max_samples]
    df = df.reset_index(drop=True).assign(split="train", position=0)
    cfg = FeatureConfig(max_hist_len=0, user_fields=["gender", "age", "occupation"],
                        item_fields=["year"], item_multi_fields=["genres"],
                        use_hist_rating=False)
    fs = build_features(data, SimpleSplit(df, None), cfg)
    row_user = np.asarray(fs.info["row_ids"]["user"], dtype=object)
    if not (row_user[fs.tensors["user_row"].numpy() - 1] == df["user_id"].to_numpy()).all():
        raise ConfigError("the encoded samples are not in the stream's order")
    ts = torch.as_tensor(df["timestamp"].to_numpy().copy())
    windows = list(torch.arange(len(df)).tensor_split(n_windows))
    fs.info["stream"] = {"n_samples": len(df), "n_windows": n_windows,
                         "window_sizes": [int(w.numel()) for w in windows],
                         "window_start": [int(ts[w[0]]) for w in windows]}
    return fs, windows


@dataclass
class StreamConfig:
    """The prequential protocol's settings."""

    train_windows: int = option(5, help="the first N time windows train the base model; the "
                                         "rest are scored in order")
    epochs: int = option(2, help="base model training epochs on the first windows")
    batch_size: int = option(1024, help="training batch size")
    lr: float = option(1e-3, help="base model learning rate")
    incremental_epochs: int = option(1, help="epochs of the fine-tuned copy on each finished "
                                             "window")
    incremental_lr: float = option(1e-3, help="learning rate of the incremental fine-tuning")
    chunk: int = option(2000, help="samples predicted before their errors enter the memory")
    lambdas: list[float] = option(default_factory=lambda: [0.1, 0.3, 0.5],
                                  help="compensation weights tried for the error memory")
    keys: list[str] = option(default_factory=lambda: ["hidden"],
                             help="memory keys (reloop2.KEYS): hidden or embedding")
    knn_k: int = option(50, help="neighbours of the exact kNN memory")
    knn_capacity: int = option(20_000, help="samples the exact kNN memory keeps")
    knn_temperature: float = option(0.1, help="softmax temperature of the kNN weights")
    lsh_tables: int = option(8, help="hash tables of the LSH sketch")
    lsh_bits: int = option(10, help="bits per LSH table")
    decay: float = option(0.99, help="per-update decay of the LSH sketch's error sums")


def train_epochs(model, fs, idx: torch.Tensor, epochs: int, batch_size: int, lr: float,
                 seed: int, optimizer=None):
    """Plain BCE training on the samples ``idx`` (shuffled per epoch)."""
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for b in idx[torch.randperm(idx.numel(), generator=g)].split(batch_size):
            batch = fs.batch(b)
            opt.zero_grad(set_to_none=True)
            out = model(batch)
            loss = F.binary_cross_entropy_with_logits(out["logit"].float(), batch["label"])
            if "aux_loss" in out:
                loss = loss + out["aux_loss"]
            loss.backward()
            opt.step()
    model.eval()
    return opt


@torch.no_grad()
def predict_base(model, fs, idx: torch.Tensor, key: str, batch: int = 8192):
    keys, ps = [], []
    for b in idx.split(batch):
        k, logit = representation(model, fs.batch(b), key)
        keys.append(k)
        ps.append(torch.sigmoid(logit.float()))
    return torch.cat(keys), torch.cat(ps)


@torch.no_grad()
def predict_probs(model, fs, idx: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    model.eval()
    return torch.cat([torch.sigmoid(model(fs.batch(b))["logit"].float()) for b in idx.split(batch)])


def condition(kind: str, key: str, lam: float) -> str:
    """The name of a compensated condition, e.g. ``lsh[hidden]@0.3``."""
    return f"{kind}[{key}]@{lam}"


def _metrics(y, p, groups):
    z = torch.logit(p.double().clamp(1e-7, 1 - 1e-7))
    return ctr_metrics(y, z, groups)


def prequential(model, fs, windows: list[torch.Tensor], cfg: StreamConfig, seed: int = 0
                ) -> dict:
    """Run the protocol of the module docstring on a freshly built ``model``; returns per window
    and condition the metrics, plus memory sizes, lookup times and the LSH-vs-kNN gap."""
    if not 1 <= cfg.train_windows < len(windows):
        raise ConfigError(f"train_windows must be in 1..{len(windows) - 1}, got "
                          f"{cfg.train_windows}")
    t0 = time.perf_counter()
    train_idx = torch.cat(windows[:cfg.train_windows])
    train_epochs(model, fs, train_idx, cfg.epochs, cfg.batch_size, cfg.lr, seed)
    train_s = time.perf_counter() - t0
    inc = copy.deepcopy(model)
    inc_opt = None
    y_all = fs.labels()
    users = fs.groups()
    mems = {}
    seed_idx = windows[cfg.train_windows - 1]
    for key in cfg.keys:
        keys, p = predict_base(model, fs, seed_idx, key)
        dim = keys.shape[1]
        for kind, mem in (("knn", ExactKNNMemory(dim, cfg.knn_k, cfg.knn_capacity,
                                                 cfg.knn_temperature, cfg.decay)),
                          ("lsh", LSHMemory(dim, cfg.lsh_tables, cfg.lsh_bits, cfg.decay, seed))):
            mem.insert(keys, y_all[seed_idx] - p)
            mem.end_window()
            mems[(kind, key)] = mem
    out = {"windows": [], "train_seconds": round(train_s, 2),
           "key_dim": {key: mems[("knn", key)].dim for key in cfg.keys}}
    lookup = {m: 0.0 for m in mems}
    n_lookups = 0
    gap = {key: 0.0 for key in cfg.keys}
    for w in range(cfg.train_windows, len(windows)):
        idx = windows[w]
        preds = {"base": [], "incremental": []}
        preds.update({condition(kind, key, lam): [] for kind, key in mems for lam in cfg.lambdas})
        for c in idx.split(cfg.chunk):
            p = None
            for key in cfg.keys:
                k, p = predict_base(model, fs, c, key)
                est = {}
                for kind in ("knn", "lsh"):
                    t = time.perf_counter()
                    est[kind] = mems[(kind, key)].estimate(k)
                    lookup[(kind, key)] += time.perf_counter() - t
                    for lam in cfg.lambdas:
                        preds[condition(kind, key, lam)].append(
                            p if lam == 0 else (p + lam * est[kind]).clamp(1e-6, 1 - 1e-6))
                    mems[(kind, key)].insert(k, y_all[c] - p)
                gap[key] += float((est["lsh"] - est["knn"]).abs().sum())
            preds["base"].append(p)
            preds["incremental"].append(predict_probs(inc, fs, c))
            n_lookups += c.numel()
        for mem in mems.values():
            mem.end_window()
        y, g = y_all[idx], users[idx]
        row = {"window": w, "n": int(idx.numel()), "positive_rate": float(y.mean())}
        row["metrics"] = {name: _metrics(y, torch.cat(v), g) for name, v in preds.items()}
        out["windows"].append(row)
        inc_opt = train_epochs(inc, fs, idx, cfg.incremental_epochs, cfg.batch_size,
                               cfg.incremental_lr, seed + w, inc_opt)
        log.info("window %d: %s", w, {k: round(v["auc"], 4) for k, v in row["metrics"].items()})
    out["memory_bytes"] = {f"{kind}[{key}]": m.nbytes for (kind, key), m in mems.items()}
    out["memory_entries"] = {f"{kind}[{key}]": len(m) for (kind, key), m in mems.items()}
    out["lookup_ms_per_1k"] = {f"{kind}[{key}]": 1e6 * v / max(n_lookups, 1)
                               for (kind, key), v in lookup.items()}
    out["lsh_knn_gap"] = {key: v / max(n_lookups, 1) for key, v in gap.items()}
    out["wall_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def wrapped_predictions(model, memory, lam: float, fs, idx: torch.Tensor, key: str = "hidden",
                        chunk: int = 2000) -> torch.Tensor:
    """Predictions of :class:`ReLoop2` over ``idx`` in chunks, inserting each chunk's errors
    after predicting it (the serving loop, through the wrapper rather than
    :func:`prequential`'s shared base predictions)."""
    wrap = ReLoop2(model, memory, lam, key)
    y = fs.labels()
    out = []
    for c in idx.split(chunk):
        r = wrap.predict(fs.batch(c))
        out.append(r["p"])
        wrap.update(r["keys"], y[c], r["p_base"])
    return torch.cat(out)
