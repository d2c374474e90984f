"""Run folders: everything to rebuild a trained model, and :func:`load_run`, which needs no data
pipeline.

A run folder written by ``llmrec rank train`` holds:

- ``run.json``: model name, family and hyper-parameters, the feature spec, the task, the
  knowledge augmentation (method, strategy, injection, knowledge settings), the vocabularies and
  the entity id of every user / item table row;
- ``tables.safetensors``: the entity tables (user profile rows, item attribute rows, multi-valued
  attributes, per-entity dense fields), so new samples can be encoded;
- ``best.safetensors``: the weights; ``metrics.json``; ``llmrec_meta.json`` (provenance).

Runs made by the post-training transforms (:mod:`llmrec.ranking.transforms`) are run folders
too: per-field embedding widths travel in the spec (``field_dims``), factorised linear layers in
``low_rank_linear`` (module path -> rank), which :func:`load_run` rebuilds before loading.

Knowledge-augmented runs reference their embeddings folder (``knowledge.embeddings``): its
vectors are data, not weights, and are aligned again to the stored row ids when the run is loaded.
:meth:`Run.predict` scores a table of samples (user id, item id, optional behaviour history and
context columns); ids the run never saw get the unknown id, as at training time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.errors import ConfigError, DataError

RUN_FILE = "run.json"
TABLES_FILE = "tables.safetensors"
WEIGHTS_FILE = "best.safetensors"
RUN_FORMAT = 1
_ENTITY_PREFIXES = ("user_table", "item_table", "item_multi.", "user_dense.", "item_dense.")


def save_run(out_dir: str | Path, *, model: str, model_args: dict[str, Any], features,
             task, augment: dict[str, Any] | None = None) -> Path:
    """Write ``run.json`` and ``tables.safetensors`` into ``out_dir`` (atomically).

    ``features`` is the :class:`FeatureSet` the model was trained on (its spec without knowledge
    fields); ``task`` a :class:`TaskConfig`; ``augment`` the knowledge settings or None.
    """
    from safetensors.torch import save

    from llmrec.artifacts import atomic_file, write_json_atomic
    from llmrec.config import to_dict
    from llmrec.ranking.registry import family_of

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {"format": RUN_FORMAT, "model": model, "family": family_of(model),
              "model_args": dict(model_args), "spec": features.spec.to_dict(),
              "task": to_dict(task), "augment": augment,
              "vocabs": {k: v.to_json() for k, v in features.vocabs.items()},
              "row_ids": features.info.get("row_ids"),
              "dataset": features.info.get("dataset"),
              "split_fingerprint": features.info.get("split_fingerprint")}
    tables = {k: v.detach().cpu().contiguous() for k, v in features.tensors.items()
              if k.startswith(_ENTITY_PREFIXES)}
    with atomic_file(out / TABLES_FILE) as fh:
        fh.write(save(tables))
    write_json_atomic(out / RUN_FILE, record)
    return out


@dataclass
class Run:
    """A loaded run: the model (eval mode) and what it needs to encode new samples."""

    path: Path
    model: Any
    spec: Any
    task: Any
    record: dict[str, Any]
    vocabs: dict[str, Any]
    tables: dict[str, Any]
    row_ids: dict[str, list[str]]
    knowledge: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self):
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------------------------------
    def encode(self, samples) -> Any:
        """A :class:`FeatureSet` (one split ``predict``) for a DataFrame of samples.

        Columns: ``user_id``, ``item_id``; optional ``history`` (item ids, oldest first, as a list
        or a "|"-separated string) and ``history_rating``; the spec's context and numeric columns.
        """
        import pandas as pd
        import torch

        from llmrec.ranking.features import MISSING, UNK, FeatureSet, FeatureSpec, _as_list

        spec: FeatureSpec = FeatureSpec.from_dict(self.record["spec"])
        for col in ("user_id", "item_id"):
            if col not in samples.columns:
                raise DataError(f"samples to score lack column {col!r} (have: "
                                f"{', '.join(map(str, samples.columns))})")
        missing = [f for f, _ in spec.context_fields if f not in samples.columns]
        missing += [n for n in spec.dense if n not in samples.columns
                    and not n.startswith("knowledge_") and not self._entity_dense(n)]
        if missing:
            raise DataError(f"samples to score lack the run's context / numeric column(s) "
                            f"{missing}")
        n = len(samples)
        t = {k: v.clone() for k, v in self.tables.items()}

        def rows_for(kind: str, ids) -> np.ndarray:
            index = {e: i + 1 for i, e in enumerate(self.row_ids[kind])}
            return np.array([index.get(str(x), -1) for x in ids], dtype=np.int64)

        # unknown users / items get one extra table row: unknown id, missing attributes
        def with_unknown_row(kind: str) -> int:
            table = t[f"{kind}_table"]
            fields = spec.user_fields if kind == "user" else spec.item_fields
            row = torch.tensor([[UNK if name == f"{kind}_id" else MISSING for name, _ in fields]],
                               dtype=table.dtype)
            t[f"{kind}_table"] = torch.cat([table, row])
            if kind == "item":
                for m, _, g in spec.item_multi_fields:
                    extra = torch.zeros(1, g, dtype=torch.long)
                    extra[0, 0] = MISSING
                    t[f"item_multi.{m}"] = torch.cat([t[f"item_multi.{m}"], extra])
            for k in list(t):
                if k.startswith(f"{kind}_dense."):
                    t[k] = torch.cat([t[k], torch.zeros(1, t[k].shape[1], dtype=t[k].dtype)])
            return table.shape[0]

        unknown = {k: with_unknown_row(k) for k in ("user", "item")}
        user_row = rows_for("user", samples["user_id"])
        item_row = rows_for("item", samples["item_id"])
        user_row[user_row < 0] = unknown["user"]
        item_row[item_row < 0] = unknown["item"]

        L = spec.max_hist_len
        hist_rows = np.zeros((n, L), dtype=np.int64)
        hist_rating = np.zeros((n, L), dtype=np.int64)
        if "history" in samples.columns and L > 0:
            ratings = samples["history_rating"].tolist() if "history_rating" in samples.columns \
                else [None] * n
            rating_vocab = self.vocabs.get("rating")
            for r, (h, hr) in enumerate(zip(samples["history"].tolist(), ratings)):
                items = [str(x) for x in _as_list(h)][-L:]
                if not items:
                    continue
                rows = rows_for("item", items)
                rows[rows < 0] = unknown["item"]
                hist_rows[r, : len(rows)] = rows
                if hr is not None and rating_vocab is not None:
                    vals = [float(x) for x in _as_list(hr)][-L:]
                    hist_rating[r, : len(vals)] = rating_vocab.encode(vals)[: len(rows)]
        tensors = {**t,
                   "user_row": torch.from_numpy(user_row), "item_row": torch.from_numpy(item_row),
                   "hist_rows": torch.from_numpy(hist_rows),
                   "hist_rating": torch.from_numpy(hist_rating),
                   "label": torch.zeros(n), "position": torch.zeros(n, dtype=torch.long),
                   "split.predict": torch.arange(n)}
        if spec.context_fields:
            tensors["context"] = torch.from_numpy(np.stack(
                [self.vocabs[f"context.{f}"].encode(samples[f].tolist())
                 for f, _ in spec.context_fields], 1))
        for name in spec.labels:
            tensors[f"label.{name}"] = torch.zeros(n)
        for name in spec.groups:
            codes, _ = pd.factorize(samples[name].astype(str)) if name in samples.columns \
                else (np.zeros(n, dtype=np.int64), None)
            tensors[f"group.{name}"] = torch.from_numpy(codes.astype(np.int64))
        if spec.timestamps:
            tensors["time"] = torch.from_numpy(samples["timestamp"].to_numpy().astype(np.int64)) \
                if "timestamp" in samples.columns else torch.zeros(n, dtype=torch.long)
            tensors["hist_time"] = torch.zeros(n, L, dtype=torch.long)
        for name in spec.dense:
            if name in samples.columns and not self._entity_dense(name):
                tensors[f"dense.{name}"] = torch.as_tensor(
                    samples[name].to_numpy().astype(np.float32)[:, None])
        return FeatureSet(spec, tensors, self.vocabs, {"row_ids": self.row_ids})

    def _entity_dense(self, name: str) -> bool:
        return f"user_dense.{name}" in self.tables or f"item_dense.{name}" in self.tables

    def predict(self, samples, batch_size: int = 65536):
        """Score a DataFrame of samples; returns it with the task's score column(s) added."""
        import torch

        fs = self.encode(samples).to(self.device)
        idx = fs.split_index("predict")
        cols: dict[str, list] = {}
        self.model.eval()
        with torch.no_grad():
            for chunk in idx.split(batch_size):
                out = self.model(fs.batch(chunk))
                for k, v in self.task.predict_columns(out).items():
                    cols.setdefault(k, []).append(v.cpu())
        result = samples.copy()
        for k, parts in cols.items():
            v = torch.cat(parts)
            if v.dim() == 1:
                result[k] = v.numpy()
            elif k == "top_rows":  # next-item: row ids -> item ids
                ids = ["<pad>"] + self.row_ids["item"] + ["<unk>"]
                result["top_items"] = [[ids[int(r)] for r in row] for row in v]
            else:
                result[k] = [row.tolist() for row in v]
        return result


def load_run(path: str | Path, device: str = "cpu") -> Run:
    """Rebuild the model of a run folder from its files alone (no dataset, no split)."""
    import torch
    from safetensors.torch import load_file

    from llmrec.config import from_dict
    from llmrec.ranking.features import FeatureSpec, Vocab
    from llmrec.ranking.registry import build_model
    from llmrec.ranking.task_config import TaskConfig
    from llmrec.ranking.tasks import build_task

    path = Path(path)
    if not (path / RUN_FILE).is_file():
        hint = (" (a run of an older llmrec: retrain it)" if (path / WEIGHTS_FILE).is_file()
                else "")
        raise ConfigError(f"{path} is not a run folder: no {RUN_FILE}{hint}; runs are written "
                          f"by `llmrec rank train`")
    if not (path / WEIGHTS_FILE).is_file():
        raise ConfigError(f"{path} has no {WEIGHTS_FILE}: the run did not finish (resume it with "
                          f"`llmrec rank train ... --train.resume=true`)")
    record = json.loads((path / RUN_FILE).read_text())
    if record.get("format") != RUN_FORMAT:
        raise ConfigError(f"{path / RUN_FILE}: format {record.get('format')!r}, this llmrec "
                          f"reads format {RUN_FORMAT}")
    spec = FeatureSpec.from_dict(record["spec"])
    vocabs = {k: Vocab.from_json(v) for k, v in record["vocabs"].items()}
    tables = load_file(str(path / TABLES_FILE))
    task_cfg = from_dict(TaskConfig, record["task"])
    args = dict(record["model_args"])
    augment = record.get("augment")
    knowledge: dict[str, Any] = {}
    if augment:
        from llmrec.ranking.knowledge.augment import build_augmented
        from llmrec.ranking.knowledge.config import AugmentConfig
        from llmrec.ranking.knowledge.store import load_knowledge

        kcfg = from_dict(AugmentConfig, augment["knowledge"])
        knowledge = load_knowledge(kcfg, record["row_ids"])
        backbone = None
        if augment["strategy"] == "extractor":
            backbone = build_model(record["model"], spec, **args)
        model = build_augmented(record["model"], args, spec, knowledge, augment["method"], kcfg,
                                augment["injection"], backbone=backbone)
    else:
        model = build_model(record["model"], spec, **args)
    if record.get("low_rank_linear"):
        # a compressed run (`llmrec rank compress`): rebuild its factorised linear layers
        from llmrec.ranking.lowrank import factorise_structure

        factorise_structure(model, record["low_rank_linear"])
    state = load_file(str(path / WEIGHTS_FILE))
    model.load_state_dict(state)
    model.to(torch.device(device)).eval()
    return Run(path=path, model=model, spec=spec, task=build_task(task_cfg, spec), record=record,
               vocabs=vocabs, tables=tables, row_ids=record["row_ids"], knowledge=knowledge)
