"""``llmrec rank scaling``: a scaling curve of CTR model families, AUC against model size.

Every (family, size, seed) cell trains on the same encoded features (encoded once from the
recipe) with the same epochs and early stopping; only the model's non-embedding part grows: the
embedding width is fixed across the rungs of the ladder. Per cell the curve holds the model
arguments, the total, embedding and non-embedding parameter counts, the matmul FLOPs per sample
(forward, and forward + backward, counted by :class:`torch.utils.flop_counter.FlopCounterMode` on
one real training batch), test / valid AUC, gAUC and LogLoss, the best epoch, train seconds and
samples/s. Per family it fits AUC = a + b * ln(x) by least squares over the per-size means (x =
non-embedding parameters, and separately x = training FLOPs per sample), with R^2.

The ladder (:data:`LADDER`) names five rungs, xs s m l xl, sized so that at the ML-1M features
of ``eval/ranking/ml1m.yaml`` (10 fields of width 32) the non-embedding parameters of each family
are about 0.1M, 0.4M, 1.6M, 6M and 24M, within ~25% of each other across families at a rung.
The three mixer families share tokens / token width / FFN width / blocks per rung; the chunk size
is token_dim / n_tokens, which RankMixer's head transpose (``mode: tokenmixer``) needs.

Output folder (``out``): ``curve.json`` (setup, cells, per-size summaries, fits, failed cells)
and ``curve.csv`` (one row per cell), both rewritten atomically after every cell. A rerun into the
same folder skips the cells it already holds (a failed cell is retried); a folder made with
another recipe or ladder is refused.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import logging
import math
import multiprocessing as mp
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from llmrec.benchrecord import summarise
from llmrec.config import option
from llmrec.errors import ConfigError

log = logging.getLogger(__name__)

CURVE_JSON = "curve.json"
CURVE_CSV = "curve.csv"
SIZES = ("xs", "s", "m", "l", "xl")

# (n_tokens, token_dim, ffn, blocks) of the mixer families per rung; chunk = token_dim / n_tokens
_MIXER = {"xs": (8, 32, 96, 1), "s": (8, 64, 128, 2), "m": (8, 128, 256, 2),
          "l": (8, 256, 512, 2), "xl": (8, 512, 1024, 2)}


def _mixer(extra: dict) -> dict[str, dict[str, Any]]:
    return {s: {"n_tokens": t, "token_dim": d, "chunk_size": d // t, "ffn": h, "blocks": b,
                **extra} for s, (t, d, h, b) in _MIXER.items()}


# family -> (registered model, {size: model args}); embed_dim is set separately (fixed)
LADDER: dict[str, tuple[str, dict[str, dict[str, Any]]]] = {
    "unimixer": ("unimixer", _mixer({})),
    "unimixing_lite": ("unimixing_lite", _mixer({"n_bases": 4, "rank": 4})),
    "rankmixer": ("unimixer", _mixer({"mode": "tokenmixer"})),
    "dnn": ("dnn", {"xs": {"hidden": [160, 160, 160]}, "s": {"hidden": [384, 384, 384]},
                    "m": {"hidden": [800, 800, 800]}, "l": {"hidden": [1700, 1700, 1700]},
                    "xl": {"hidden": [3400, 3400, 3400]}}),
    "dcnv2": ("dcnv2", {"xs": {"cross_layers": 1, "hidden": [32]},
                        "s": {"cross_layers": 2, "hidden": [320, 320]},
                        "m": {"cross_layers": 3, "hidden": [1000, 1000]},
                        "l": {"cross_layers": 3, "hidden": [1600, 1600, 1600]},
                        "xl": {"cross_layers": 4, "hidden": [3300, 3300, 3300]}}),
    "autoint": ("autoint", {"xs": {"attn_layers": 2, "attn_dim": 144, "heads": 4},
                            "s": {"attn_layers": 3, "attn_dim": 224, "heads": 4},
                            "m": {"attn_layers": 3, "attn_dim": 448, "heads": 8},
                            "l": {"attn_layers": 4, "attn_dim": 704, "heads": 8},
                            "xl": {"attn_layers": 5, "attn_dim": 1216, "heads": 16}}),
}
FAMILIES = tuple(LADDER)
METRICS = ("auc", "gauc", "logloss")


@dataclass
class ScalingConfig:
    """A scaling curve: model families x ladder sizes x seeds on one ranking recipe."""

    recipe: str = option("", help="the RankConfig recipe (YAML) whose data, split, features and "
                                  "training settings every cell uses, e.g. eval/ranking/ml1m.yaml")
    recipe_overrides: list[str] = option([], help="recipe options as key=value, e.g. "
                                                  "[train.batch_size=4096, train.lr=0.002]")
    families: list[str] = option(list(FAMILIES), help="model families: " + ", ".join(FAMILIES)
                                 + " (rankmixer = unimixer in mode tokenmixer)")
    sizes: list[str] = option(list(SIZES), help="ladder rungs to train: " + ", ".join(SIZES))
    seeds: list[int] = option([0, 1, 2], help="training seeds of every (family, size)")
    out: str = option("", help="output folder: curve.json and curve.csv (rewritten after every "
                               "cell; a rerun skips the cells already there)")
    embed_dim: int | None = option(None, help="embedding width of every cell (fixed across "
                                              "sizes); default: the recipe's model_args "
                                              "embed_dim, else 32")
    epochs: int | None = option(None, help="maximum epochs per cell (default: the recipe's)")
    patience: int | None = option(None, help="early-stopping patience (default: the recipe's)")
    max_minutes: float | None = option(None, help="per-cell training budget in minutes "
                                                  "(train.max_minutes; default: the recipe's)")
    device: str = option("auto", help="device of every cell: auto, cpu, cuda or cuda:N")
    workers: int = option(1, help="train this many cells at once, in spawned processes that "
                                  "share the device (CTR steps are launch-bound: ~12 keep one "
                                  "GPU busy); 1: in this process")
    threads: int = option(1, help="torch CPU threads per worker process")
    flop_batch: int = option(128, help="rows of the training batch on which FLOPs are counted")

    def __post_init__(self) -> None:
        bad = [f for f in self.families if f not in LADDER]
        if bad:
            raise ValueError(f"families: unknown family {', '.join(map(repr, bad))}; choose from "
                             f"{', '.join(FAMILIES)}")
        bad = [s for s in self.sizes if s not in SIZES]
        if bad:
            raise ValueError(f"sizes: unknown size {', '.join(map(repr, bad))}; the ladder's "
                             f"rungs are {', '.join(SIZES)}")
        for name in ("families", "sizes", "seeds"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name}: give at least one")
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: {values} repeats an entry")
        if self.workers < 1 or self.threads < 1 or self.flop_batch < 1:
            raise ValueError("workers, threads and flop_batch must be >= 1")


# ------------------------------------------------------------------------------------------------
# the ladder, parameters and FLOPs
def cell_model(family: str, size: str, embed_dim: int) -> tuple[str, dict[str, Any]]:
    """The registered model and its arguments for one rung of a family's ladder."""
    if family not in LADDER:
        raise ConfigError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    model, rungs = LADDER[family]
    if size not in rungs:
        raise ConfigError(f"unknown size {size!r} for family {family}; its rungs are "
                          f"{', '.join(rungs)}")
    return model, {"embed_dim": embed_dim, **copy.deepcopy(rungs[size])}


def parameter_counts(model) -> dict[str, int]:
    """Total, embedding (the feature tables and their projections) and non-embedding
    parameters."""
    from llmrec.ranking.transforms import count_parameters

    c = count_parameters(model)
    return {"n_parameters": c["total"], "embedding_parameters": c["embedding"],
            "non_embedding_parameters": c["total"] - c["embedding"]}


def count_flops(model, batch: dict) -> dict[str, float]:
    """Matmul FLOPs per sample of a forward pass and of a forward + backward pass (BCE on the
    logit) on ``batch``, as FlopCounterMode counts them (matmuls, einsums, attention; not
    elementwise ops or embedding lookups). The model is put in training mode."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    n = int(batch["label"].shape[0])
    model.train()
    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as fwd:
        model(batch)
    with FlopCounterMode(display=False) as both:
        logit = model(batch)["logit"]
        F.binary_cross_entropy_with_logits(logit.float(), batch["label"].float()).backward()
    model.zero_grad(set_to_none=True)
    return {"forward_flops_per_sample": fwd.get_total_flops() / n,
            "train_flops_per_sample": both.get_total_flops() / n}


def describe_size(family: str, size: str, spec, embed_dim: int, batch: dict | None = None
                  ) -> dict[str, Any]:
    """Model, arguments, parameter counts and (with ``batch``) FLOPs of one (family, size)."""
    import torch

    from llmrec.ranking.registry import build_model

    name, args = cell_model(family, size, embed_dim)
    torch.manual_seed(0)
    model = build_model(name, copy.deepcopy(spec), **args)
    out = {"family": family, "size": size, "model": name, "model_args": args,
           **parameter_counts(model)}
    if batch is not None:
        out.update(count_flops(model, batch))
    return out


# ------------------------------------------------------------------------------------------------
# fits and summaries
def fit_log(x: list[float], y: list[float]) -> dict[str, float]:
    """Least squares y = a + b * ln(x): a, b, R^2 and the number of points."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("fit_log needs at least two (x, y) points")
    if min(x) <= 0:
        raise ValueError("fit_log needs x > 0")
    lx = [math.log(v) for v in x]
    mx, my = sum(lx) / len(lx), sum(y) / len(y)
    sxx = sum((v - mx) ** 2 for v in lx)
    if sxx == 0:
        raise ValueError("fit_log needs at least two distinct x")
    b = sum((u - mx) * (v - my) for u, v in zip(lx, y)) / sxx
    a = my - b * mx
    ss_res = sum((v - (a + b * u)) ** 2 for u, v in zip(lx, y))
    ss_tot = sum((v - my) ** 2 for v in y)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)
    return {"a": a, "b": b, "b_per_decade": b * math.log(10), "r2": r2, "n_points": len(x)}


def summarise_sizes(cells: list[dict]) -> list[dict]:
    """Per (family, size): the mean and std over seeds of every metric, with the size's counts."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["family"], c["size"]), []).append(c)
    out = []
    for (family, size), cs in groups.items():
        row = {k: cs[0][k] for k in ("family", "size", "model", "model_args", "n_parameters",
                                     "embedding_parameters", "non_embedding_parameters",
                                     "forward_flops_per_sample", "train_flops_per_sample")}
        row["seeds"] = sorted(c["seed"] for c in cs)
        for split in ("test", "valid"):
            for m in METRICS:
                key = f"{split}_{m}"
                vals = [c[key] for c in cs if c.get(key) is not None]
                if vals:
                    s = summarise(vals)
                    row[f"{key}_mean"], row[f"{key}_std"] = s["mean"], s["std"]
        for key in ("best_epoch", "train_seconds", "samples_per_s"):
            vals = [c[key] for c in cs if c.get(key) is not None]
            if vals:
                row[f"{key}_mean"] = sum(vals) / len(vals)
        out.append(row)
    order = {s: i for i, s in enumerate(SIZES)}
    fam = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(out, key=lambda r: (fam.get(r["family"], 99), order.get(r["size"], 99)))


def fit_curves(sizes: list[dict]) -> list[dict]:
    """Per family, AUC (and LogLoss) of the size means against ln(non-embedding parameters) and
    against ln(training FLOPs per sample)."""
    out = []
    for family in dict.fromkeys(r["family"] for r in sizes):
        rows = [r for r in sizes if r["family"] == family]
        for metric in ("test_auc", "test_logloss", "valid_auc"):
            pts = [r for r in rows if f"{metric}_mean" in r]
            for against in ("non_embedding_parameters", "train_flops_per_sample"):
                xs = [float(r[against]) for r in pts]
                if len(set(xs)) < 2 or min(xs, default=0) <= 0:
                    continue
                out.append({"family": family, "metric": metric, "against": against,
                            "sizes": [r["size"] for r in pts],
                            **fit_log(xs, [r[f"{metric}_mean"] for r in pts])})
    return out


# ------------------------------------------------------------------------------------------------
# the curve folder
CSV_COLUMNS = ("family", "size", "seed", "model", "model_args", "n_parameters",
               "embedding_parameters", "non_embedding_parameters", "forward_flops_per_sample",
               "train_flops_per_sample", "test_auc", "test_gauc", "test_logloss", "valid_auc",
               "valid_gauc", "valid_logloss", "best_epoch", "epochs", "train_seconds",
               "samples_per_s", "wall_seconds", "device")


def _key(c: dict) -> tuple[str, str, int]:
    return (c["family"], c["size"], int(c["seed"]))


def write_curve(out: Path, setup: dict, cells: list[dict], failed: list[dict]) -> dict:
    """Rewrite curve.json and curve.csv (atomically) from ``cells``; returns the JSON."""
    from llmrec.artifacts import atomic_file, write_json_atomic

    cells = sorted(cells, key=lambda c: (FAMILIES.index(c["family"]) if c["family"] in FAMILIES
                                         else 99, SIZES.index(c["size"]), c["seed"]))
    sizes = summarise_sizes(cells)
    curve = {"setup": setup, "cells": cells, "sizes": sizes, "fits": fit_curves(sizes),
             "failed": failed}
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for c in cells:
        w.writerow({**c, "model_args": json.dumps(c["model_args"], sort_keys=True)})
    with atomic_file(out / CURVE_CSV, "w") as fh:
        fh.write(buf.getvalue())
    write_json_atomic(out / CURVE_JSON, curve)
    return curve


def read_curve(out: str | Path) -> dict | None:
    p = Path(out) / CURVE_JSON
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p} is not valid JSON ({exc}); move it away to start the curve "
                          f"afresh") from None


# ------------------------------------------------------------------------------------------------
# running the cells
def resolve_recipe(cfg: ScalingConfig):
    """The RankConfig every cell starts from (recipe + overrides + epochs / patience)."""
    from llmrec.config import load_config
    from llmrec.ranking.pipeline import RankConfig

    if not cfg.recipe:
        raise ConfigError("rank scaling: --recipe FILE is required (a RankConfig YAML such as "
                          "eval/ranking/ml1m.yaml)")
    base = load_config(RankConfig, cfg.recipe, [f"--{o.lstrip('-')}" for o in cfg.recipe_overrides])
    if base.task.kind != "binary":
        raise ConfigError(f"rank scaling trains CTR models (task.kind binary); the recipe's "
                          f"task.kind is {base.task.kind!r}")
    if base.augment != "none" or base.field_dims:
        raise ConfigError("rank scaling: the recipe must train plain models (augment: none, no "
                          "field_dims)")
    if cfg.epochs is not None:
        base.train.epochs = cfg.epochs
    if cfg.patience is not None:
        base.train.patience = cfg.patience
    if cfg.max_minutes is not None:
        base.train.max_minutes = cfg.max_minutes
    base.train.device = cfg.device
    base.train.checkpoint = False
    base.output_dir = ""
    return base


def _setup(cfg: ScalingConfig, base, embed_dim: int, fs) -> dict:
    from llmrec.config import to_dict

    recipe = to_dict(base)
    recipe["train"].pop("seed", None)
    recipe["train"].pop("device", None)
    recipe.pop("model", None)
    recipe.pop("model_args", None)
    recipe.pop("output_dir", None)
    ladder = {f: LADDER[f] for f in sorted(cfg.families)}
    ident = {"recipe": recipe, "embed_dim": embed_dim, "ladder": ladder}
    fp = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"recipe_file": cfg.recipe, "recipe_overrides": list(cfg.recipe_overrides),
            "dataset": fs.info.get("dataset", base.data.name), "embed_dim": embed_dim,
            "epochs": base.train.epochs, "patience": base.train.patience,
            "batch_size": base.train.batch_size, "lr": base.train.lr,
            "n_train": len(fs.split_index("train")), "n_valid": len(fs.split_index("valid")),
            "n_test": len(fs.split_index("test")) if "test" in fs.split_names else 0,
            "n_fields": fs.spec.n_fields, "flop_batch": cfg.flop_batch,
            "flops": "torch.utils.flop_counter.FlopCounterMode, matmul FLOPs per sample on one "
                     "training batch (forward; forward + backward of BCE)",
            "fit": "least squares y = a + b ln(x) over the per-size means",
            "fingerprint": fp, "recipe": recipe}


def _cell_config(base, model: str, args: dict, seed: int):
    c = copy.deepcopy(base)
    c.model, c.model_args = model, dict(args)
    c.train.seed = seed
    return c


def _train_cell(cfg, fs) -> dict:
    from llmrec.ranking.pipeline import run_train

    t = time.perf_counter()
    res = run_train(cfg, features=fs)
    out = {"best_epoch": res["best_epoch"], "epochs": res["epochs"],
           "train_seconds": res.get("train_seconds"), "samples_per_s": res.get("samples_per_s"),
           "wall_seconds": time.perf_counter() - t, "device": res.get("device"),
           "n_parameters_trained": res["n_parameters"]}
    for split in ("valid", "test"):
        for m in METRICS:
            if split in res and m in res[split]:
                out[f"{split}_{m}"] = float(res[split][m])
    return out


_WORKER_FS: dict[str, Any] = {}


def _worker_init(features: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)
    from llmrec.ranking.features import FeatureSet

    _WORKER_FS["fs"] = FeatureSet.load(features)


def _worker_run(job: dict) -> dict:
    try:
        return {**job, "result": _train_cell(job["cfg"], _WORKER_FS["fs"])}
    except Exception as exc:  # one failed cell must not lose the others
        import traceback

        return {**job, "error": repr(exc)[:500], "trace": traceback.format_exc()[-2000:]}


def run_scaling(cfg: ScalingConfig, features=None,
                on_cell: Callable[[dict, dict], None] | None = None) -> dict:
    """Train the missing cells of the curve in ``cfg.out`` and return the curve (curve.json).

    ``features``: an encoded FeatureSet to use instead of encoding the recipe's data (tests).
    ``on_cell(cell, setup)`` is called in this process after each finished cell."""
    import torch

    from llmrec.progress import progress
    from llmrec.ranking.pipeline import prepare_features

    if not cfg.out:
        raise ConfigError("rank scaling: --out DIR is required (the folder for curve.json and "
                          "curve.csv)")
    out = Path(cfg.out)
    base = resolve_recipe(cfg)
    embed_dim = cfg.embed_dim or int(base.model_args.get("embed_dim", 32))
    t0 = time.perf_counter()
    fs = features if features is not None else prepare_features(base)
    log.info("features ready in %.1fs: %d samples, %d fields", time.perf_counter() - t0, len(fs),
             fs.spec.n_fields)
    setup = _setup(cfg, base, embed_dim, fs)
    old = read_curve(out)
    cells: list[dict] = []
    if old is not None:
        if old.get("setup", {}).get("fingerprint") != setup["fingerprint"]:
            raise ConfigError(f"{out / CURVE_JSON} holds a curve of another recipe, embedding "
                              f"width or ladder (fingerprint {old.get('setup', {}).get('fingerprint')}"
                              f" vs {setup['fingerprint']}); write to another --out or remove it")
        cells = list(old.get("cells", []))
    done = {_key(c) for c in cells}

    # the sizes: model args, parameter counts and FLOPs, on one real training batch (CPU)
    g = torch.Generator().manual_seed(0)
    train_idx = fs.split_index("train").cpu()
    pick = train_idx[torch.randperm(len(train_idx), generator=g)[: cfg.flop_batch]]
    cpu_fs = fs if str(fs.device) == "cpu" else fs.to("cpu")
    batch = cpu_fs.batch(pick)
    sizes = {}
    for family in cfg.families:
        for size in cfg.sizes:
            sizes[(family, size)] = d = describe_size(family, size, fs.spec, embed_dim, batch)
            log.info("%s %s: %s, %s parameters (%s non-embedding), %.3g train FLOPs/sample",
                     family, size, d["model_args"], f"{d['n_parameters']:,}",
                     f"{d['non_embedding_parameters']:,}", d["train_flops_per_sample"])
    jobs = []
    for family in cfg.families:
        for size in cfg.sizes:
            for seed in cfg.seeds:
                if (family, size, seed) in done:
                    continue
                d = sizes[(family, size)]
                jobs.append({"family": family, "size": size, "seed": seed,
                             "cfg": _cell_config(base, d["model"], d["model_args"], seed)})
    skipped = len(cfg.families) * len(cfg.sizes) * len(cfg.seeds) - len(jobs)
    if skipped:
        log.info("%d cells already in %s: skipped", skipped, out)
    # largest first: the long cells start early and the pool drains evenly
    jobs.sort(key=lambda j: -sizes[(j["family"], j["size"])]["train_flops_per_sample"])
    failed: list[dict] = []
    out.mkdir(parents=True, exist_ok=True)
    curve = write_curve(out, setup, cells, failed)

    def finish(job: dict, bar) -> None:
        nonlocal curve
        d = sizes[(job["family"], job["size"])]
        if "error" in job:
            log.error("%s %s seed %d failed: %s\n%s", job["family"], job["size"], job["seed"],
                      job["error"], job.get("trace", ""))
            failed.append({k: job[k] for k in ("family", "size", "seed", "error")})
        else:
            cell = {**d, "seed": job["seed"], **job["result"]}
            cells.append(cell)
            log.info("%s %s seed %d: test AUC %.5f LogLoss %.5f, best epoch %d of %d, %.1fs "
                     "train", job["family"], job["size"], job["seed"], cell.get("test_auc", 0),
                     cell.get("test_logloss", 0), cell["best_epoch"], cell["epochs"],
                     cell.get("train_seconds") or 0)
            if on_cell is not None:
                on_cell(cell, setup)
        curve = write_curve(out, setup, cells, failed)
        bar.update(1)

    with progress(total=len(jobs), desc="scaling cells", unit="cell") as bar:
        if cfg.workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                try:
                    job = {**job, "result": _train_cell(job["cfg"], fs)}
                except Exception as exc:  # record it, go on with the other cells
                    import traceback

                    job = {**job, "error": repr(exc)[:500], "trace": traceback.format_exc()}
                finish(job, bar)
        elif jobs:
            feat_dir = Path(tempfile.mkdtemp(prefix="llmrec-scaling-"))
            try:
                cpu_fs.save(feat_dir / "features")
                ctx = mp.get_context("spawn")
                with ctx.Pool(min(cfg.workers, len(jobs)), initializer=_worker_init,
                              initargs=(str(feat_dir / "features"), cfg.threads)) as pool:
                    for job in pool.imap_unordered(_worker_run, jobs):
                        finish(job, bar)
            finally:
                shutil.rmtree(feat_dir, ignore_errors=True)
    log.info("scaling: %d cells in %s (%d failed), %.0fs", len(cells), out, len(failed),
             time.perf_counter() - t0)
    return curve


def format_fits(curve: dict) -> str:
    lines = []
    for f in curve.get("fits", []):
        if f["metric"] != "test_auc":
            continue
        lines.append(f"{f['family']:<15} test AUC = {f['a']:.4f} + {f['b']:.5f} ln({f['against']})"
                     f"  R^2 {f['r2']:.3f} ({f['n_points']} sizes)")
    return "\n".join(lines)
