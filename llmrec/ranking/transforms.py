"""Post-training transforms of a run folder: a run in, a new run folder + a JSON report out.

- **Field-dimension optimisation** (FDO; Wang et al., "Towards Deeper, Lighter and Interpretable
  Cross Network for CTR Prediction", CIKM 2023, section on field-level dimension optimisation):
  per categorical field, PCA of its trained embedding rows; the field's width d_f is the fewest
  principal components that explain at least ``threshold`` (rho) of the variance. The model is
  then retrained from scratch with those per-field widths (:func:`fdo`).
- **Low-rank compression** by truncated SVD of the weights (:func:`compress`): each field's
  embedding rows E_f [v, D] ~ (U_k S_k) V_k^T, stored as a table of width k and a k -> D map;
  each selected linear layer W [out, in] ~ U_k (S_k V_k^T), stored as two linear layers
  in -> k (no bias) -> out (the original bias). k is a fixed ``rank`` or, per matrix, the fewest
  singular values holding ``energy`` of sum(s^2). A factor pair is kept only where it has fewer
  parameters than the matrix (unless ``force``). Optionally a short fine-tune on the run's
  training data.

Both rely on per-field widths in the engine (``FeatureSpec.field_dims``, see
:class:`llmrec.ranking.layers.FeatureEmbedding`): a field of width d_f < embed_dim is projected
to embed_dim, so every model keeps its input shape and the saving is in the embedding tables
(and, for compression, in the factorised linear layers). Factorised linear layers are recorded in
``run.json`` (``low_rank_linear``: module path -> rank), from which
:func:`llmrec.ranking.runs.load_run` rebuilds the same structure before loading the weights.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from llmrec.config import option
from llmrec.errors import ConfigError
from llmrec.ranking.lowrank import factorise_structure

log = logging.getLogger(__name__)

LOW_RANK_KEY = "low_rank_linear"
FDO_FILE = "fdo.json"
COMPRESS_FILE = "compression.json"
# vocabulary ids 0, 1, 2 are padding / unknown / missing (llmrec.ranking.features)
N_RESERVED = 3


# ------------------------------------------------------------------------------------------------
# configs
@dataclass
class FdoConfig:
    """Field-dimension optimisation of a trained run (GDCN's FDO)."""

    run: str = option("", help="the trained run folder (written by `llmrec rank train`)")
    out: str = option("", help="the new run folder: fdo.json (per-field widths) and, with "
                               "retrain, the model retrained with them")
    threshold: float = option(0.9, help="rho: a field keeps the fewest principal components of "
                                        "its embedding rows that explain this share of their "
                                        "variance (the paper uses 0.5-0.99)")
    retrain: bool = option(True, help="retrain from scratch with the per-field widths (needs "
                                      "the run's data); false: write fdo.json only")
    seed: int | None = option(None, help="training seed of the retrain (default: the run's)")
    device: str | None = option(None, help="device of the retrain (default: the run's setting)")
    epochs: int | None = option(None, help="maximum epochs of the retrain (default: the run's)")

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1] (got {self.threshold})")


@dataclass
class CompressConfig:
    """Low-rank compression of a trained run by truncated SVD."""

    run: str = option("", help="the trained run folder (written by `llmrec rank train`)")
    out: str = option("", help="the new run folder (loadable with load_run, scored by `llmrec "
                               "rank predict`) with compression.json")
    rank: int | None = option(None, help="keep this many singular values per matrix (capped at "
                                         "its smaller side); set rank or energy")
    energy: float | None = option(None, help="per matrix, keep the fewest singular values whose "
                                             "squares hold this share of sum(s^2), e.g. 0.9")
    embeddings: bool = option(True, help="factorise the categorical fields' embedding rows")
    linear: Literal["mlp", "all", "none"] = option(
        "mlp", help="which linear layers to factorise: mlp (the layers of every MLP block), all "
                    "(every nn.Linear, e.g. also DCN cross layers and heads) or none")
    force: bool = option(False, help="factorise even where the factors have more parameters "
                                     "than the matrix (e.g. at full rank, to check exactness)")
    finetune_epochs: int = option(0, help="fine-tune the compressed model this many epochs on "
                                          "the run's training data (0: no fine-tune)")
    finetune_lr: float | None = option(None, help="fine-tune learning rate (default: the run's)")
    evaluate: bool = option(False, help="score the original and the compressed model on the "
                                        "run's valid/test data (needs the data; implied by "
                                        "finetune_epochs > 0)")
    device: str = option("cpu", help="device for the evaluation and fine-tune")

    def __post_init__(self) -> None:
        if (self.rank is None) == (self.energy is None):
            raise ValueError("set exactly one of rank (e.g. --rank 8) or energy (e.g. "
                             "--energy 0.9)")
        if self.rank is not None and self.rank < 1:
            raise ValueError(f"rank must be >= 1 (got {self.rank})")
        if self.energy is not None and not 0.0 < self.energy <= 1.0:
            raise ValueError(f"energy must be in (0, 1] (got {self.energy})")
        if self.finetune_epochs < 0:
            raise ValueError("finetune_epochs must be >= 0")
        if not self.embeddings and self.linear == "none":
            raise ValueError("nothing to compress: embeddings is false and linear is none")


# ------------------------------------------------------------------------------------------------
# shared helpers
def _feature_embeddings(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from llmrec.ranking.layers import FeatureEmbedding

    return [(n, m) for n, m in model.named_modules() if isinstance(m, FeatureEmbedding)]


def _check_run(path: str, what: str):
    """``load_run(path)`` for a plain (not knowledge-augmented) run with feature embeddings."""
    from llmrec.ranking.runs import load_run

    if not path:
        raise ConfigError(f"rank {what}: --run DIR is required (a folder written by `llmrec rank "
                          f"train`)")
    run = load_run(path)
    if run.record.get("augment"):
        raise ConfigError(f"rank {what}: {path} is a knowledge-augmented run "
                          f"({run.record['augment'].get('method')}); {what} applies to plain "
                          f"runs (augment: none)")
    if not _feature_embeddings(run.model):
        raise ConfigError(f"rank {what}: the model of {path} ({run.record['model']}) has no "
                          f"feature embedding to transform")
    return run


def _check_out(out: str, run_dir: str, what: str) -> Path:
    if not out:
        raise ConfigError(f"rank {what}: --out DIR is required (the new run folder)")
    o, r = Path(out).resolve(), Path(run_dir).resolve()
    if o == r or r in o.parents:
        raise ConfigError(f"rank {what}: --out {out} is the input run or inside it; write the new "
                          f"run to another folder")
    return Path(out)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameters in total, in the feature embeddings and in the linear layers."""
    emb = sum(p.numel() for _, m in _feature_embeddings(model) for p in m.parameters())
    linear = sum(p.numel() for m in model.modules() if isinstance(m, nn.Linear)
                 for p in m.parameters(recurse=False))
    # linear maps inside an embedding (dense-field and width projections) count as embedding
    linear -= sum(p.numel() for _, e in _feature_embeddings(model) for m in e.modules()
                  if isinstance(m, nn.Linear) for p in m.parameters(recurse=False))
    return {"total": sum(p.numel() for p in model.parameters()), "embedding": emb,
            "linear": linear}


def _run_config(run):
    """The RankConfig the run was trained with (from its llmrec_meta.json)."""
    from llmrec.artifacts import read_meta
    from llmrec.config import from_dict
    from llmrec.ranking.pipeline import RankConfig

    meta = read_meta(run.path) or {}
    if not isinstance(meta.get("config"), dict):
        raise ConfigError(f"{run.path} records no training config (llmrec_meta.json): the run's "
                          f"data cannot be found again to retrain, fine-tune or evaluate")
    return from_dict(RankConfig, meta["config"])


def _run_features(run, cfg):
    """The run's features, checked to be the data and split it was trained on."""
    from llmrec.ranking.pipeline import prepare_features

    fs = prepare_features(cfg)
    want = run.record.get("split_fingerprint")
    have = fs.info.get("split_fingerprint")
    if want and have and want != have:
        raise ConfigError(f"{run.path}: its data now gives another split (fingerprint {have}, "
                          f"the run was trained on {want}); the data files have changed")
    base_spec = {k: v for k, v in run.record["spec"].items() if k != "field_dims"}
    if fs.spec.to_dict() != base_spec:
        raise ConfigError(f"{run.path}: its data now encodes to other features than the run's "
                          f"(vocabularies or fields differ)")
    return fs


def _evaluate(model, task, fs, split: str, batch_size: int = 65536) -> dict[str, float]:
    idx = fs.split_index(split)
    model.eval()
    with torch.no_grad():
        return task.evaluate(lambda i: model(fs.batch(i)), fs, idx, batch_size)


def _finish_meta(folder: Path, final: Path) -> None:
    """Record the final folder (not the temporary one it was built in) in llmrec_meta.json."""
    from llmrec.artifacts import write_json_atomic

    p = folder / "llmrec_meta.json"
    if p.is_file():
        meta = json.loads(p.read_text())
        if isinstance(meta.get("config"), dict):
            meta["config"]["output_dir"] = str(final)
        write_json_atomic(p, meta)


# ------------------------------------------------------------------------------------------------
# FDO
def pca_dim(rows: torch.Tensor, threshold: float) -> tuple[int, list[float]]:
    """Fewest principal components of ``rows`` [n, D] explaining ``threshold`` of the variance,
    and the cumulative explained ratios (1 component if the rows do not vary)."""
    x = rows.detach().double()
    if x.shape[0] < 2:
        return 1, [1.0]
    x = x - x.mean(0, keepdim=True)
    s = torch.linalg.svdvals(x)
    var = s.square()
    total = float(var.sum())
    if total <= 0.0 or not math.isfinite(total):
        return 1, [1.0] * len(var)
    cum = (var.cumsum(0) / total).tolist()
    # the fewest k with cum[k-1] >= threshold (a tiny tolerance for rounding at threshold 1.0)
    k = next((i + 1 for i, c in enumerate(cum) if c >= threshold - 1e-12), len(cum))
    return k, cum


def fdo_dims(model: nn.Module, threshold: float) -> dict[str, Any]:
    """Per categorical field: the PCA width at ``threshold`` of its trained value rows (ids >= 3;
    padding / unknown / missing rows excluded), with its vocabulary and explained variance."""
    from llmrec.ranking.layers import FeatureEmbedding

    embeddings = _feature_embeddings(model)
    emb: FeatureEmbedding = embeddings[0][1]
    fields: dict[str, Any] = {}
    for name, group, vocab in emb.categorical_fields():
        ks, spectra = [], []
        for _, e in embeddings:
            with torch.no_grad():
                rows = e.field_rows(name)
            values = rows[N_RESERVED:] if rows.shape[0] > N_RESERVED + 1 else rows
            k, cum = pca_dim(values, threshold)
            ks.append(k)
            spectra.append(cum)
        k = max(ks)
        fields[name] = {"group": group, "vocab": int(vocab), "dim": int(k),
                        "explained": round(spectra[0][k - 1], 6) if len(spectra[0]) >= k else 1.0,
                        "cumulative_variance": [round(c, 6) for c in spectra[0]]}
    return fields


def _embedding_parameters(spec, embed_dim: int, dims: dict[str, int]) -> int:
    """Parameters of the categorical tables (+ width projections) of one embedding."""
    total = 0
    fields = ([(n, v) for n, v in spec.user_fields] + [(n, v) for n, v in spec.item_fields]
              + [(n, v) for n, v, _ in spec.item_multi_fields] + [(n, v) for n, v in
                                                                 spec.context_fields])
    for name, v in fields:
        d = dims.get(name)
        total += v * embed_dim if d is None else v * d + d * embed_dim
    return total


def fdo(cfg: FdoConfig) -> dict[str, Any]:
    """Per-field widths of ``cfg.run`` by PCA at ``cfg.threshold``; with ``retrain``, a new run
    trained from scratch with them. Writes ``cfg.out`` (atomically): fdo.json (+ the run)."""
    from llmrec.artifacts import atomic_dir, write_json_atomic
    from llmrec.ranking.pipeline import run_train

    run = _check_run(cfg.run, "fdo")
    out = _check_out(cfg.out, cfg.run, "fdo")
    emb = _feature_embeddings(run.model)[0][1]
    embed_dim = emb.embed_dim
    fields = fdo_dims(run.model, cfg.threshold)
    dims = {n: f["dim"] for n, f in fields.items()}
    # a field that keeps the full width stays in the shared table
    field_dims = {n: d for n, d in dims.items() if d < embed_dim}
    base = {k: v for k, v in run.record["spec"].items() if k != "field_dims"}
    from llmrec.ranking.features import FeatureSpec

    spec = FeatureSpec.from_dict(base)
    report: dict[str, Any] = {
        "method": "fdo", "source_run": str(run.path), "model": run.record["model"],
        "threshold": cfg.threshold, "embed_dim": embed_dim, "fields": fields,
        "field_dims": field_dims,
        "embedding_parameters": {
            "before": _embedding_parameters(spec, embed_dim, spec.field_dims),
            "after": _embedding_parameters(spec, embed_dim, field_dims)},
        "parameters_before": count_parameters(run.model),
    }
    with atomic_dir(out) as tmp:
        if cfg.retrain:
            rcfg = _run_config(run)
            rcfg.field_dims = field_dims
            rcfg.output_dir = str(tmp)
            rcfg.train.resume = False
            if cfg.seed is not None:
                rcfg.train.seed = cfg.seed
            if cfg.device is not None:
                rcfg.train.device = cfg.device
            if cfg.epochs is not None:
                rcfg.train.epochs = cfg.epochs
            fs = _run_features(run, rcfg)
            result = run_train(rcfg, features=fs)
            _finish_meta(tmp, out)
            report["retrained"] = {
                "valid": result["valid"], "test": result.get("test"),
                "best_epoch": result["best_epoch"], "epochs": result["epochs"],
                "n_parameters": result["n_parameters"], "seed": rcfg.train.seed}
            report["source_metrics"] = _source_metrics(run.path)
        write_json_atomic(tmp / FDO_FILE, report)
    return report


def _source_metrics(path: Path) -> dict[str, Any] | None:
    p = Path(path) / "metrics.json"
    if not p.is_file():
        return None
    m = json.loads(p.read_text())
    return {k: m.get(k) for k in ("valid", "test", "best_epoch")}


# ------------------------------------------------------------------------------------------------
# low-rank compression
def svd_rank(s: torch.Tensor, rank: int | None, energy: float | None) -> int:
    """How many singular values to keep: ``rank`` (capped), or the fewest holding ``energy``."""
    if rank is not None:
        return max(1, min(int(rank), len(s)))
    e = s.double().square()
    total = float(e.sum())
    if total <= 0.0:
        return 1
    cum = (e.cumsum(0) / total).tolist()
    return next((i + 1 for i, c in enumerate(cum) if c >= energy - 1e-12), len(cum))


def _truncated(w: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``w`` [m, n] ~ a @ b with a [m, k], b [k, n]; and the relative Frobenius error."""
    w64 = w.detach().double()
    u, s, vh = torch.linalg.svd(w64, full_matrices=False)
    a = u[:, :k] * s[:k]
    b = vh[:k]
    norm = float(torch.linalg.matrix_norm(w64))
    err = float(torch.linalg.matrix_norm(w64 - a @ b)) / norm if norm > 0 else 0.0
    return a.to(w.dtype), b.to(w.dtype), err


def _linear_targets(model: nn.Module, which: str) -> list[str]:
    from llmrec.ranking.layers import MLP

    if which == "none":
        return []
    inside_embedding = {f"{p}.{n}" if p else n for p, e in _feature_embeddings(model)
                        for n, m in e.named_modules() if isinstance(m, nn.Linear)}
    if which == "all":
        names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    else:
        names = [f"{p}.{n}" if p else n for p, mlp in model.named_modules()
                 if isinstance(mlp, MLP) for n, m in mlp.named_modules()
                 if isinstance(m, nn.Linear)]
    return [n for n in dict.fromkeys(names) if n not in inside_embedding]


def compress_model(model: nn.Module, spec, model_name: str, model_args: dict,
                   cfg: CompressConfig) -> tuple[nn.Module, Any, dict[str, int], dict[str, Any]]:
    """A factorised copy of ``model``: ``(new_model, new_spec, linear_ranks, layers_report)``."""
    from llmrec.ranking.registry import build_model

    embeddings = _feature_embeddings(model)
    layers: dict[str, Any] = {}
    new_dims = dict(spec.field_dims)
    factors: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    if cfg.embeddings:
        first = embeddings[0][1]
        for name, group, vocab in first.categorical_fields():
            with torch.no_grad():
                mats = [e.field_rows(name) for _, e in embeddings]
            D = mats[0].shape[1]
            ks = [svd_rank(torch.linalg.svdvals(m.detach().double()), cfg.rank, cfg.energy)
                  for m in mats]
            k = max(ks)
            before = vocab * D if name not in spec.field_dims else \
                vocab * spec.field_dims[name] + spec.field_dims[name] * D
            after = vocab * k + k * D
            entry = {"kind": "embedding", "shape": [int(vocab), int(D)], "rank": int(k),
                     "parameters_before": int(before), "parameters_after": int(after)}
            if after >= before and not cfg.force:
                entry.update(factorised=False, reason="the factors would not be smaller",
                             parameters_after=int(before), relative_error=0.0)
            else:
                fl = [_truncated(m, k) for m in mats]
                factors[name] = [(a, b) for a, b, _ in fl]
                new_dims[name] = int(k)
                entry.update(factorised=True, relative_error=max(e for _, _, e in fl))
            layers[f"field:{name}"] = entry
    linear_ranks: dict[str, int] = {}
    linear_factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for path in _linear_targets(model, cfg.linear):
        lin = model.get_submodule(path)
        w = lin.weight
        k = svd_rank(torch.linalg.svdvals(w.detach().double()), cfg.rank, cfg.energy)
        n_bias = lin.out_features if lin.bias is not None else 0
        before = w.numel() + n_bias
        after = k * (lin.in_features + lin.out_features) + n_bias
        entry = {"kind": "linear", "shape": [lin.out_features, lin.in_features], "rank": int(k),
                 "parameters_before": int(before), "parameters_after": int(after)}
        if after >= before and not cfg.force:
            entry.update(factorised=False, reason="the factors would not be smaller",
                         parameters_after=int(before), relative_error=0.0)
        else:
            a, b, err = _truncated(w, k)
            linear_ranks[path] = int(k)
            linear_factors[path] = (a, b)
            entry.update(factorised=True, relative_error=err)
        layers[path] = entry

    new_spec = copy.deepcopy(spec)
    new_spec.field_dims = new_dims
    new = build_model(model_name, new_spec, **model_args)
    factorise_structure(new, linear_ranks)
    # every tensor of the old model that keeps its name and shape carries over; the embeddings
    # and the factorised layers are filled below
    old_state = model.state_dict()
    new_state = new.state_dict()
    emb_prefixes = tuple(f"{p}." if p else "" for p, _ in embeddings)
    carried = {}
    for key, val in old_state.items():
        in_emb = any(key.startswith(p) and key[len(p):].split(".")[0] in
                     ("table", "narrow", "proj", "multi") for p in emb_prefixes)
        if not in_emb and key in new_state and new_state[key].shape == val.shape:
            carried[key] = val
    new.load_state_dict(carried, strict=False)
    with torch.no_grad():
        for (p, old_e), (_, new_e) in zip(embeddings, _feature_embeddings(new)):
            _fill_embedding(old_e, new_e, factors, [i for i, (pp, _) in enumerate(embeddings)
                                                    if pp == p][0])
        for path, (a, b) in linear_factors.items():
            pair = new.get_submodule(path)
            old = model.get_submodule(path)
            pair[0].weight.copy_(b)
            pair[1].weight.copy_(a)
            if old.bias is not None:
                pair[1].bias.copy_(old.bias)
    missing = [k for k in new_state if k not in carried and not _filled(k, emb_prefixes,
                                                                        linear_ranks)]
    if missing:
        raise RuntimeError(f"compression left parameters unset: {missing[:5]}")
    return new, new_spec, linear_ranks, layers


def _filled(key: str, emb_prefixes: tuple[str, ...], linear_ranks: dict[str, int]) -> bool:
    if any(key.startswith(p) and key[len(p):].split(".")[0] in ("table", "narrow", "proj",
                                                                  "multi")
           for p in emb_prefixes):
        return True
    return any(key.startswith(f"{path}.") for path in linear_ranks)


def _fill_embedding(old, new, factors, index: int) -> None:
    """Copy every field's rows of ``old`` into ``new``: factor pairs where given, the full rows
    (in ``new``'s own layout) elsewhere."""
    for name, group, _ in old.categorical_fields():
        if name in factors:
            a, b = factors[name][index]  # rows [v, k], map [k, D]
            table = new.multi[name] if group == "multi" else new.narrow[name]
            table.weight.copy_(a)
            new.proj[name].weight.copy_(b.T)
            continue
        rows = old.field_rows(name)
        if name in new.proj:  # an FDO width left as it was: copy table and projection
            src_t = old.multi[name] if group == "multi" else old.narrow[name]
            dst_t = new.multi[name] if group == "multi" else new.narrow[name]
            dst_t.weight.copy_(src_t.weight)
            new.proj[name].weight.copy_(old.proj[name].weight)
        elif group == "multi":
            new.multi[name].weight.copy_(rows)
        else:
            new.table.weight[new._shared_slice(name, group)] = rows


def compress(cfg: CompressConfig) -> dict[str, Any]:
    """Compress ``cfg.run`` into the run folder ``cfg.out`` (atomically) with compression.json."""
    from safetensors.torch import save_file

    from llmrec.artifacts import atomic_dir, write_json_atomic, write_meta
    from llmrec.ranking.runs import WEIGHTS_FILE, load_run

    run = _check_run(cfg.run, "compress")
    out = _check_out(cfg.out, cfg.run, "compress")
    if run.record.get(LOW_RANK_KEY):
        raise ConfigError(f"rank compress: {cfg.run} is already a compressed run; compress the "
                          f"original run instead")
    model = run.model.cpu()
    spec = copy.deepcopy(run.spec)
    new, new_spec, linear_ranks, layers = compress_model(
        model, spec, run.record["model"], dict(run.record["model_args"]), cfg)
    report: dict[str, Any] = {
        "method": "truncated-svd", "source_run": str(run.path), "model": run.record["model"],
        "rank": cfg.rank, "energy": cfg.energy, "embeddings": cfg.embeddings,
        "linear": cfg.linear, "force": cfg.force,
        "parameters": {"before": count_parameters(model), "after": count_parameters(new)},
        "layers": layers, "field_dims": dict(new_spec.field_dims),
        LOW_RANK_KEY: linear_ranks,
    }
    b, a = report["parameters"]["before"]["total"], report["parameters"]["after"]["total"]
    report["reduction"] = round(b / a, 4) if a else None
    evaluate = cfg.evaluate or cfg.finetune_epochs > 0
    with atomic_dir(out) as tmp:
        fs = None
        rcfg = None
        if evaluate:
            rcfg = _run_config(run)
            rcfg.train.device = cfg.device
            fs = _run_features(run, rcfg).to(torch.device(cfg.device))
            report["metrics"] = {}
            for name, m in (("original", model), ("compressed", new)):
                m.to(torch.device(cfg.device))
                report["metrics"][name] = {s: _evaluate(m, run.task, fs, s)
                                           for s in ("valid", "test") if s in fs.split_names}
        if cfg.finetune_epochs > 0:
            from llmrec.ranking.trainer import Trainer, seed_everything

            seed_everything(rcfg.train.seed)
            tcfg = copy.deepcopy(rcfg.train)
            tcfg.epochs = cfg.finetune_epochs
            tcfg.resume = False
            tcfg.checkpoint = False
            if cfg.finetune_lr is not None:
                tcfg.lr = cfg.finetune_lr
            rcfg.train = tcfg
            rcfg.output_dir = str(out)
            trainer = Trainer(new, fs, tcfg, output_dir=tmp, run_config=rcfg, task=rcfg.task)
            try:
                result = trainer.fit()
            finally:
                trainer.close()
            new = trainer.module if hasattr(trainer, "module") else new
            report["metrics"]["finetuned"] = {"valid": result["valid"],
                                              "test": result.get("test")}
            report["finetune"] = {"epochs": cfg.finetune_epochs, "lr": tcfg.lr,
                                  "best_epoch": result["best_epoch"]}
        else:
            sd = {k: v.detach().cpu().contiguous() for k, v in new.state_dict().items()}
            save_file(sd, str(tmp / WEIGHTS_FILE))
            meta_src = Path(run.path) / "llmrec_meta.json"
            if meta_src.is_file():  # keep the training config, so the data can be found again
                meta = json.loads(meta_src.read_text())
                meta["transform"] = {"kind": "compress", "source_run": str(run.path)}
                write_json_atomic(tmp / "llmrec_meta.json", meta)
            else:
                write_meta(tmp, None, transform={"kind": "compress",
                                                 "source_run": str(run.path)})
        _save_transformed_run(tmp, run, new_spec, {LOW_RANK_KEY: linear_ranks,
                                                   "transform": {"kind": "compress",
                                                                 "source_run": str(run.path)}})
        write_json_atomic(tmp / COMPRESS_FILE, report)
        # the folder must load (with the parameter count reported) before it is moved into place
        check = load_run(tmp)
        if sum(p.numel() for p in check.model.parameters()) != \
                report["parameters"]["after"]["total"]:
            raise RuntimeError("the compressed run reloads with another parameter count")
    return report


def _save_transformed_run(folder: Path, run, spec, extra: dict[str, Any]) -> None:
    """run.json + tables.safetensors for the transformed model, from the source run's record."""
    from safetensors.torch import save

    from llmrec.artifacts import atomic_file, write_json_atomic
    from llmrec.ranking.runs import RUN_FILE, TABLES_FILE

    record = copy.deepcopy(run.record)
    record["spec"] = spec.to_dict()
    record.update(extra)
    with atomic_file(folder / TABLES_FILE) as fh:
        fh.write(save({k: v.contiguous() for k, v in run.tables.items()}))
    write_json_atomic(folder / RUN_FILE, record)
