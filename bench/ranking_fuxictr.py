"""Run FuxiCTR's own DCNv2 / DIN (``model_zoo/LongCTR`` of the ``fuxictr`` wheel) on our data.

The reference point for the throughput benchmark: the same encoded ids, split, batch size and
hyper-parameters, fed through FuxiCTR's own pipeline (its ``LongCTRDataLoader``: a row-wise
Dataset over a Parquet file, a collate that looks behaviour sequences and item attributes up in
pandas per batch) and trained with its own ``BaseModel.fit`` / ``train_epoch``.

The GPU host has no package index, so the wheel travels with the run and is installed with
``--no-deps``; FuxiCTR imports ``polars``, ``ray`` and ``h5py`` at module level for loaders and
group metrics that this benchmark never calls, so empty stand-in modules are registered for
whichever of them is missing. Nothing of FuxiCTR's is copied here: it is imported and called.
"""

from __future__ import annotations

import logging
import sys
import time
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class _Placeholder:
    """Stands in for a class FuxiCTR names at import time (e.g. as a base class) but never uses
    on the path this benchmark runs."""


def _stub_module(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = []  # a package, so that dotted submodules can be registered below it
    mod.__getattr__ = lambda attr: _Placeholder  # type: ignore[method-assign]
    sys.modules[name] = mod
    return mod


# module-level imports of FuxiCTR 2.3.x that the LongCTR training path does not use
_STUBS = {
    "polars": [],
    "h5py": [],
    "ray": ["ray.data", "ray.data.datasource", "ray.data.datasource.filename_provider"],
}


def install_import_stubs() -> list[str]:
    """Register stand-in modules for FuxiCTR's unused imports that are not installed here."""
    stubbed = []
    for name, subs in _STUBS.items():
        try:
            __import__(name)
        except ImportError:
            _stub_module(name)
            for sub in subs:
                _stub_module(sub)
                parent, _, child = sub.rpartition(".")
                setattr(sys.modules[parent], child, sys.modules[sub])
            stubbed.append(name)
    return stubbed


def fuxictr_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("fuxictr")
    except Exception:
        return None


def export_longctr(fs, split_name: str, folder: Path, user_cols: list[str]) -> dict[str, Path]:
    """Write FuxiCTR LongCTR inputs for one split of a FeatureSet.

    ``data``: one row per sample (user_index, item_index, seq_len = the sample's position, label,
    user fields); ``user_info``: each user's item sequence (item-table rows by position), so that
    FuxiCTR's collate takes ``seq[:seq_len]`` and keeps its last ``max_len`` items: exactly our
    behaviour sequence; ``item_info``: one row per item-table row (row 0 = padding).
    """
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    t = {k: v.cpu().numpy() for k, v in fs.tensors.items()}
    paths = {"data": folder / f"{split_name}.parquet", "user_info": folder / "user_info.parquet",
             "item_info": folder / "item_info.parquet"}
    if not paths["user_info"].exists():
        # rebuild each user's sequence from the samples' behaviour windows: position p - k + j
        n_users = t["user_table"].shape[0]
        pos = t["position"]
        rows = t["hist_rows"]
        L = rows.shape[1]
        k = (rows > 0).sum(1)
        max_pos = int(pos.max()) + 1
        seqs = np.zeros((n_users, max_pos), dtype=np.int64)
        j = np.arange(L)[None, :]
        p = pos[:, None] - k[:, None] + j
        valid = j < k[:, None]
        u = np.broadcast_to(t["user_row"][:, None], p.shape)
        seqs[u[valid], p[valid]] = rows[valid]
        pd.DataFrame({"full_item_seq": list(seqs)}).to_parquet(paths["user_info"])
        item = {"item_index": np.arange(t["item_table"].shape[0])}
        for c, (name, _) in enumerate(fs.spec.item_fields):
            item[name] = t["item_table"][:, c]
        for name, _, _ in fs.spec.item_multi_fields:
            item[name] = list(t[f"item_multi.{name}"])
        pd.DataFrame(item).to_parquet(paths["item_info"])
    idx = t[f"split.{split_name}"]
    data = {"user_index": t["user_row"][idx], "item_index": t["item_row"][idx],
            "seq_len": t["position"][idx],
            # integer labels: FuxiCTR stacks all columns into one array and indexes with them
            "label": t["label"][idx].astype(np.int64)}
    for c, name in enumerate(user_cols):
        data[name] = t["user_table"][t["user_row"][idx], c]
    pd.DataFrame(data).to_parquet(paths["data"])
    return paths


def feature_map(fs, data_dir: Path, embed_dim: int):
    """A FuxiCTR FeatureMap describing the exported columns."""
    from fuxictr.features import FeatureMap

    fmap = FeatureMap("llmrec_bench", str(data_dir))
    feats: OrderedDict[str, dict[str, Any]] = OrderedDict()
    for meta in ("user_index", "item_index", "seq_len"):
        feats[meta] = {"type": "meta"}
    for name, vocab in fs.spec.user_fields:
        feats[name] = {"type": "categorical", "source": "user", "vocab_size": vocab}
    for name, vocab in fs.spec.item_fields:
        feats[name] = {"type": "categorical", "source": "item", "vocab_size": vocab}
    for name, vocab, max_len in fs.spec.item_multi_fields:
        feats[name] = {"type": "sequence", "source": "item", "vocab_size": vocab, "max_len": max_len,
                       "padding_idx": 0, "feature_encoder": "layers.MaskedAveragePooling()"}
    fmap.features = feats
    fmap.labels = ["label"]
    fmap.default_emb_dim = embed_dim
    fmap.num_fields = fmap.get_num_fields()
    fmap.set_column_index()
    return fmap


def build_model(name: str, fmap, model_root: Path, gpu: int, hp: dict[str, Any]):
    from model_zoo.LongCTR import DIN, DCNv2

    # FuxiCTR saves its best checkpoint under model_root/<dataset_id>/ without creating it
    (model_root / fmap.dataset_id).mkdir(parents=True, exist_ok=True)
    common = dict(gpu=gpu, optimizer="adam", loss="binary_crossentropy", metrics=["logloss", "AUC"],
                  model_root=str(model_root), verbose=0, monitor="AUC", monitor_mode="max",
                  early_stop_patience=hp.get("patience", 2), learning_rate=hp.get("lr", 1e-3),
                  embedding_dim=hp["embed_dim"], net_dropout=hp.get("dropout", 0.0))
    if name == "dcnv2":
        return DCNv2(fmap, model_id="DCNv2", model_structure="parallel",
                     num_cross_layers=hp["cross_layers"],
                     parallel_dnn_hidden_units=list(hp["hidden"]), **common)
    if name == "din":
        return DIN(fmap, model_id="DIN", dnn_hidden_units=list(hp["hidden"]),
                   dnn_activations="ReLU", attention_hidden_units=list(hp["attention_hidden"]),
                   attention_hidden_activations="ReLU", **common)
    raise ValueError(f"no FuxiCTR adapter for {name!r}")


def loaders(fmap, paths: dict[str, dict[str, Path]], batch_size: int, max_len: int,
            num_workers: int):
    from model_zoo.LongCTR.longctr_dataloader import LongCTRDataLoader

    out = {}
    for split, p in paths.items():
        out[split] = LongCTRDataLoader(fmap, str(p["data"]), str(p["user_info"]),
                                       str(p["item_info"]), batch_size=batch_size,
                                       shuffle=(split == "train"), num_workers=num_workers,
                                       max_len=max_len)
    return out


def time_epochs(model, train_loader, epochs: int = 2, max_gradient_norm: float = 10.0) -> list[float]:
    """Seconds per training epoch through FuxiCTR's own ``train_epoch`` (no evaluation inside)."""
    import torch

    model._max_gradient_norm = max_gradient_norm
    model._total_steps = 0
    model._eval_steps = 10**12  # keep evaluation out of the timed epochs
    model._stop_training = False
    model._epoch_index = 0
    times = []
    for e in range(epochs):
        model._epoch_index = e
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.train_epoch(train_loader)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def fit_and_test(model, dl: dict, epochs: int) -> dict[str, float]:
    """FuxiCTR's own fit (early stopping on valid AUC) then its evaluate on test."""
    model.fit(dl["train"], epochs=epochs, validation_data=dl["valid"])
    res = model.evaluate(dl["test"])
    return {"auc": float(res["AUC"]), "logloss": float(res["logloss"])}
