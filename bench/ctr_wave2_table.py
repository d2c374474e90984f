"""Issue 14's CTR tables: models x seeds on one recipe, AUC / gAUC / LogLoss and parameter counts.

    # Frappe (train on the Frappe_x1 valid file, test on its test file; not BARS-comparable)
    python bench/ctr_wave2_table.py --config eval/ctr/frappe.yaml --models existing --seeds 0,1,2
    # ML-1M users 1-2999, KAR protocol (GPU)
    python bench/ctr_wave2_table.py --config eval/ranking/ml1m.yaml --models all --seeds 0,1,2
    # print the markdown table of what bench/results/ctr_wave2.jsonl holds for a dataset
    python bench/ctr_wave2_table.py --table frappe-x1-valtest
    # a CPU smoke run (2 models, 1 seed, 1 epoch, results to a scratch file)
    python bench/ctr_wave2_table.py --config eval/ctr/frappe.yaml --smoke
    # the transforms on each trained cell: truncated-SVD compression at ranks 8/4/2 (every
    # linear layer + embeddings; scored as is and after a 1-epoch fine-tune) and FDO retrains
    python bench/ctr_wave2_table.py --config eval/ranking/ml1m.yaml --models dcnv2,dnn \
        --compress-ranks 16,8,4,2 --finetune-epochs 1 --fdo 0.5,0.7,0.9,0.99

Features are encoded once per recipe (the split is fixed by the recipe); each cell varies only
the training seed. One record per (model, seed, metric) and one mean/std record per (model,
metric), each with the parameter count, through ``llmrec/benchrecord.py`` into
``bench/results/ctr_wave2.jsonl`` (appended after every model, so a cut-off run keeps what it
finished); the item-popularity baseline is recorded once per run. A model that fails is recorded
with its error and the table goes on. Extra ``--key=value`` flags override the recipe (e.g.
``--train.device=cuda``).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

BENCHMARK = "ctr_wave2"
OUT = Path(__file__).resolve().parent / "results" / "ctr_wave2.jsonl"
METRICS = ("auc", "gauc", "logloss")
# the twelve CTR models before issue 14, then the ones it adds
EXISTING = ["dnn", "deepfm", "dcn", "dcnv2", "xdeepfm", "autoint", "fibinet", "fignn", "din",
            "dien", "finalmlp", "gdcn"]
NEW = ["fgcnn", "optinter", "qin", "sdim", "unimixer", "rar"]
# BARS Frappe_x1 leaderboard (AUC, logloss), for reference only: trained on the 202,027-row
# train file we do not have (reczoo/BARS@5b5e61f, as listed in specs/ctr-wave2.md)
BARS_FRAPPE = {"finalmlp": (0.9861, 0.1484), "dcnv2": (0.9845, 0.1491),
               "xdeepfm": (0.9845, 0.1466), "deepfm": (0.9842, 0.1482), "dnn": (0.9833, 0.1622),
               "fm": (0.9671, 0.2065)}
NAMES = {"popularity": "Popularity", "dnn": "DNN", "deepfm": "DeepFM", "dcn": "DCN",
         "dcnv2": "DCNv2", "xdeepfm": "xDeepFM", "autoint": "AutoInt", "fibinet": "FiBiNET",
         "fignn": "FiGNN", "din": "DIN", "dien": "DIEN", "finalmlp": "FinalMLP", "gdcn": "GDCN",
         "fgcnn": "FGCNN", "optinter": "OptInter", "qin": "QIN", "sdim": "SDIM",
         "unimixer": "UniMixer", "rar": "RAR"}


def _models(arg: str) -> list[str]:
    from llmrec.ranking.registry import list_backbones

    have = list_backbones()
    if arg == "existing":
        return [m for m in EXISTING if m in have]
    if arg == "all":  # every registered CTR model, the order first
        return [m for m in EXISTING + NEW if m in have] + [m for m in have
                                                           if m not in EXISTING + NEW]
    wanted = arg.split(",")
    unknown = [m for m in wanted if m not in have]
    if unknown:
        raise SystemExit(f"unknown CTR model(s) {unknown}; registered: {', '.join(have)}")
    return wanted


def _split_label(base, fs) -> str:
    if base.bars is not None:
        bars = fs.info.get("bars", {})
        return ("bars" if bars.get("bars_comparable") else
                f"bars-format: train={Path(base.bars.train).name} minus "
                f"{base.bars.valid_frac:.0%} valid (seed {base.bars.seed}), "
                f"test={Path(base.bars.test).name}")
    return f"{base.split.protocol}-test"


def run_table(args, overrides: list[str]) -> int:
    from llmrec.config import load_config, to_dict
    from llmrec.ranking.pipeline import RankConfig, prepare_features, run_train
    from llmrec.ranking.popularity import evaluate_popularity
    from llmrec.ranking.registry import hyper_parameters

    log = logging.getLogger("ctr_wave2")
    base = load_config(RankConfig, args.config, overrides)
    base.train.checkpoint = False
    models = _models(args.models)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out
    if args.smoke:
        models, seeds = models[:2], seeds[:1]
        base.train.epochs = 1
        out = args.out if args.out != str(OUT) else str(Path(tempfile.gettempdir())
                                                           / "ctr_wave2_smoke.jsonl")
    env = br.environment(device=base.train.device,
                         extra_versions=("datasets", "pyarrow", "numpy", "pandas"))
    t0 = time.perf_counter()
    fs = prepare_features(base)
    dataset = args.dataset_label or fs.info.get("dataset", base.data.name)
    common = {"dataset": dataset, "augment": "none", "split": _split_label(base, fs),
              "config_file": args.config, "command": " ".join(["python", *sys.argv])}
    if base.bars is not None:
        common["bars_comparable"] = bool(fs.info.get("bars", {}).get("bars_comparable"))
        if not common["bars_comparable"]:
            common["note"] = "not BARS-comparable: " + fs.info["bars"].get("note", "")
    if args.condition:
        common["condition"] = args.condition
    if args.smoke:
        common["condition"] = "smoke (1 epoch)"
    log.info("features ready in %.1fs (%s)", time.perf_counter() - t0, common["split"])

    pop = evaluate_popularity(fs)
    br.append(out, [br.record(BENCHMARK, m, pop["test"][m], "", env, model="popularity",
                              seed=None, n_parameters=0, config={"alpha": pop["alpha"]},
                              **common) for m in METRICS])
    scratch = Path(tempfile.mkdtemp(prefix="ctr-wave2-"))
    for name in models:
        per_seed: dict[str, list[float]] = {m: [] for m in METRICS}
        records, n_params, walls, conf = [], None, [], None
        for seed in seeds:
            cfg = copy.deepcopy(base)
            cfg.model = name
            cfg.train.seed = seed
            cfg.output_dir = str(scratch / f"{name}-{seed}")
            t1 = time.perf_counter()
            try:
                res = run_train(cfg, features=fs)
            except Exception as exc:  # record the failure, go on with the other cells
                log.exception("%s seed %d failed", name, seed)
                records.append(br.record(BENCHMARK, "auc", None, "", env, model=name, seed=seed,
                                         error=repr(exc)[:500], **common))
                continue
            wall = time.perf_counter() - t1
            walls.append(wall)
            n_params = res["n_parameters"]
            conf = {**to_dict(cfg), "model_hyper_parameters": {**hyper_parameters(name),
                                                               **cfg.model_args}}
            for m in METRICS:
                per_seed[m].append(res["test"][m])
                records.append(br.record(
                    BENCHMARK, m, res["test"][m], "", env, model=name, seed=seed,
                    best_epoch=res["best_epoch"], epochs=res["epochs"],
                    stop_reason=res.get("stop_reason"),
                    valid_auc=res["valid"]["auc"], wall_seconds=round(wall, 2),
                    n_parameters=n_params, config=conf, **common))
            log.info("%s seed %d: test AUC %.5f LogLoss %.5f, %d parameters (best epoch %d, "
                     "%.1fs)", name, seed, res["test"]["auc"], res["test"]["logloss"], n_params,
                     res["best_epoch"], wall)
            if args.compress_ranks or args.fdo:
                records += transform_cells(args, cfg, fs, res, env, common)
        if per_seed["auc"]:
            for m in METRICS:
                records.append(br.record(BENCHMARK, m, br.summarise(per_seed[m])["mean"], "", env,
                                         model=name, seed=None, **br.summarise(per_seed[m]),
                                         n_parameters=n_params,
                                         mean_wall_seconds=round(sum(walls) / len(walls), 2),
                                         config=conf, **common))
            s = br.summarise(per_seed["auc"])
            print(f"{name:<10} AUC {s['mean']:.5f} +- {s['std']:.5f}  LogLoss "
                  f"{br.summarise(per_seed['logloss'])['mean']:.5f}  {n_params:,} parameters",
                  flush=True)
        br.append(out, records)
    print(f"popularity AUC {pop['test']['auc']:.5f} LogLoss {pop['test']['logloss']:.5f}")
    print(f"total {time.perf_counter() - t0:.0f}s -> {out}")
    return 0


def transform_cells(args, cfg, fs, res, env, common) -> list[dict]:
    """Compression (per rank, as is and fine-tuned) and FDO (per rho, retrained) of one trained
    cell, each scored on the test split; one record per (transform, setting, metric)."""
    from llmrec.ranking.pipeline import run_train
    from llmrec.ranking.runs import load_run
    from llmrec.ranking.trainer import Trainer, seed_everything
    from llmrec.ranking.transforms import (CompressConfig, _evaluate, compress_model,
                                           count_parameters, fdo_dims)

    log = logging.getLogger("ctr_wave2")
    run = load_run(cfg.output_dir, device=str(fs.device))
    before = count_parameters(run.model)
    base = {"model": cfg.model, "seed": cfg.train.seed, "parameters_before": before,
            "test_auc_before": res["test"]["auc"], **common}
    out = []

    def emit(transform, setting, metrics, params, **extra):
        for m in METRICS:
            if m in metrics:
                out.append(br.record(BENCHMARK, m, metrics[m], "", env, transform=transform,
                                     **setting, n_parameters=params["total"],
                                     embedding_parameters=params["embedding"],
                                     reduction=round(before["total"] / params["total"], 4),
                                     **extra, **base))

    for r in [int(x) for x in args.compress_ranks.split(",")] if args.compress_ranks else []:
        ccfg = CompressConfig(rank=r, linear="all")
        new, spec, ranks, layers = compress_model(run.model.cpu(), run.spec, cfg.model,
                                                  dict(run.record["model_args"]), ccfg)
        new.to(fs.device)
        params = count_parameters(new)
        err = max((v["relative_error"] for v in layers.values() if v["factorised"]), default=0)
        emit("compress", {"rank": r}, _evaluate(new, run.task, fs, "test"), params,
             finetune_epochs=0, max_relative_error=err)
        log.info("%s seed %d compress rank %d: %d -> %d parameters", cfg.model, cfg.train.seed,
                 r, before["total"], params["total"])
        if args.finetune_epochs:
            tcfg = copy.deepcopy(cfg.train)
            tcfg.epochs, tcfg.checkpoint, tcfg.resume = args.finetune_epochs, False, False
            seed_everything(tcfg.seed)
            trainer = Trainer(new, copy.copy(fs), tcfg, output_dir=None, task=cfg.task)
            try:
                ft = trainer.fit()
            finally:
                trainer.close()
            emit("compress", {"rank": r}, ft["test"], params,
                 finetune_epochs=args.finetune_epochs, max_relative_error=err)
        run.model.to(fs.device)
    for rho in [float(x) for x in args.fdo.split(",")] if args.fdo else []:
        fields = fdo_dims(run.model, rho)
        emb_dim = run.model.embedding.embed_dim
        dims = {n: f["dim"] for n, f in fields.items() if f["dim"] < emb_dim}
        fcfg = copy.deepcopy(cfg)
        fcfg.field_dims = dims
        fcfg.output_dir = f"{cfg.output_dir}-fdo{rho}"
        fres = run_train(fcfg, features=fs)
        params = count_parameters(load_run(fcfg.output_dir).model)
        emit("fdo", {"threshold": rho}, fres["test"], params, field_dims=dims,
             best_epoch=fres["best_epoch"])
        log.info("%s seed %d fdo rho %.2f: widths %s, test AUC %.5f, %d parameters", cfg.model,
                 cfg.train.seed, rho, dims, fres["test"]["auc"], params["total"])
    return out


def table(dataset: str, path: Path = OUT) -> str:
    """Markdown table of the latest mean cell of every model for ``dataset`` (Frappe: with the
    BARS Frappe_x1 numbers beside, for reference only)."""
    # the models as their recipe trains them: no transform records, no smoke runs, no variant
    # (a --condition other than "transforms", whose trained cells are the plain recipe)
    recs = [r for r in br.read(path) if r.get("dataset") == dataset and not r.get("transform")
            and r.get("condition") in (None, "transforms")]
    if not recs:
        return f"_no {dataset} results in {path.name} yet_"
    latest: dict[tuple[str, str], dict] = {}
    for r in recs:
        if r.get("value") is None or (r["model"] != "popularity" and r.get("mean") is None):
            continue
        key = (r["model"], r["metric"])
        if key not in latest or r["date"] >= latest[key]["date"]:
            latest[key] = r
    order = ["popularity"] + EXISTING + NEW
    models = [m for m in order if (m, "auc") in latest] + sorted(
        {m for m, _ in latest} - set(order))
    frappe = dataset.startswith("frappe")
    head = "| model | test AUC | test gAUC | test LogLoss | parameters | seeds |"
    sep = "|---|---|---|---|---|---|"
    if frappe:
        head += " BARS Frappe_x1 AUC / LogLoss (not comparable) |"
        sep += "---|"
    lines = [head, sep]
    for m in models:
        cells = []
        for metric in METRICS:
            r = latest.get((m, metric))
            cells.append("" if r is None else f"{r['mean']:.4f} ± {r['std']:.4f}"
                         if r.get("mean") is not None else f"{r['value']:.4f}")
        r = latest[(m, "auc")]
        params = f"{r['n_parameters']:,}" if r.get("n_parameters") else "-"
        row = (f"| {NAMES.get(m, m)} | {cells[0]} | {cells[1]} | {cells[2]} | {params} | "
               f"{r.get('n_seeds', '-')} |")
        if frappe:
            ref = BARS_FRAPPE.get(m)
            row += f" {ref[0]:.4f} / {ref[1]:.4f} |" if ref else " |"
        lines.append(row)
    if frappe:
        ref = BARS_FRAPPE["fm"]
        lines.append(f"| FM (not run here) | | | | | | {ref[0]:.4f} / {ref[1]:.4f} |")
    any_rec = latest[(models[-1], "auc")]
    # the rows may come from different runs: one line per (device, commit, torch) with its models
    runs: dict[tuple, list[str]] = {}
    for m in models:
        r = latest[(m, "auc")]
        if m == "popularity":
            continue
        key = (r["device"], r["commit"], r["versions"].get("torch"))
        runs.setdefault(key, []).append(NAMES.get(m, m))
    lines += [""] + [f"Device: {dev}; commit `{commit}`; torch {torch}: {', '.join(names)}."
                     for (dev, commit, torch), names in runs.items()]
    lines += [f"Dataset: {dataset}, split: {any_rec['split']}; latest record "
              f"{max(r['date'] for r in latest.values())}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="RankConfig recipe (eval/ctr/frappe.yaml, "
                                     "eval/ranking/ml1m.yaml)")
    ap.add_argument("--models", default="existing",
                    help="'existing' (the 12 CTR models before issue 14), 'all' (every "
                         "registered CTR model) or a comma-separated list")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=str(OUT), help="JSONL file the records are appended to")
    ap.add_argument("--dataset-label", default=None, help="dataset name in the records")
    ap.add_argument("--condition", default=None, help="free-form label of the setting")
    ap.add_argument("--smoke", action="store_true",
                    help="2 models, 1 seed, 1 epoch, into a scratch JSONL (unless --out)")
    ap.add_argument("--compress-ranks", default="", help="after each trained cell: compress "
                    "it at these ranks (e.g. 8,4,2; embeddings + every linear layer) and score it")
    ap.add_argument("--finetune-epochs", type=int, default=0,
                    help="with --compress-ranks: also score after this many fine-tune epochs")
    ap.add_argument("--fdo", default="", help="after each trained cell: FDO widths at these "
                    "thresholds (e.g. 0.5,0.9) and a retrain with them")
    ap.add_argument("--table", metavar="DATASET", help="print the markdown table for DATASET "
                                                       "from --out and exit")
    args, overrides = ap.parse_known_args(argv)
    if args.table:
        print(table(args.table, Path(args.out)))
        return 0
    if not args.config:
        ap.error("--config is required (or --table DATASET)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_table(args, overrides)


if __name__ == "__main__":
    sys.exit(main())
