"""Issue 14's scaling curve: CTR families x a size ladder x seeds, AUC vs non-embedding parameters.

    # ML-1M users 1-2999, KAR protocol (one H200, 12 cells at a time)
    python bench/ctr_scaling.py --config eval/ranking/ml1m.yaml --seeds 0,1,2 --workers 12 \
        --device cuda --folder runs/scaling/ml1m
    # print the markdown tables of what bench/results/ctr_scaling.jsonl holds for a dataset
    python bench/ctr_scaling.py --table movielens-1m
    # a CPU smoke run (Frappe, 1 epoch, sizes xs and s, 1 seed; scratch folder and JSONL)
    python bench/ctr_scaling.py --config eval/ctr/frappe.yaml --smoke --device cpu

It runs ``llmrec rank scaling`` (:func:`llmrec.ranking.scaling.run_scaling`): features encoded
once, every cell with the recipe's epochs and early stopping (``--epochs`` / ``--patience``
override them), the curve in ``--folder`` (curve.csv, curve.json; a rerun skips the cells it
holds). Records go through ``llmrec/benchrecord.py`` into ``bench/results/ctr_scaling.jsonl``: one
per newly trained cell and test metric (appended as each cell finishes), then, over every cell of
the folder, one mean/std record per (family, size, metric) and one record per fit (family,
metric, against parameters or FLOPs: value b of y = a + b ln x). Extra ``--key=value`` flags
override the recipe (e.g. ``--train.batch_size=4096``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

BENCHMARK = "ctr_scaling"
OUT = Path(__file__).resolve().parent / "results" / "ctr_scaling.jsonl"
METRICS = ("auc", "gauc", "logloss")
COUNTS = ("n_parameters", "embedding_parameters", "non_embedding_parameters",
          "forward_flops_per_sample", "train_flops_per_sample")


def _cell_records(cell: dict, setup: dict, env: dict, common: dict) -> list[dict]:
    return [br.record(BENCHMARK, m, cell[f"test_{m}"], "", env, family=cell["family"],
                      size=cell["size"], seed=cell["seed"], model=cell["model"],
                      model_args=cell["model_args"], **{k: cell[k] for k in COUNTS},
                      valid_auc=cell.get("valid_auc"), best_epoch=cell["best_epoch"],
                      epochs=cell["epochs"], train_seconds=round(cell["train_seconds"] or 0, 2),
                      samples_per_s=cell.get("samples_per_s"),
                      wall_seconds=round(cell["wall_seconds"], 2), **common)
            for m in METRICS if cell.get(f"test_{m}") is not None]


def _summary_records(curve: dict, env: dict, common: dict) -> list[dict]:
    out = []
    for r in curve["sizes"]:
        for m in METRICS:
            if f"test_{m}_mean" not in r:
                continue
            out.append(br.record(BENCHMARK, m, r[f"test_{m}_mean"], "", env, family=r["family"],
                                 size=r["size"], seed=None, model=r["model"],
                                 model_args=r["model_args"], mean=r[f"test_{m}_mean"],
                                 std=r[f"test_{m}_std"], n_seeds=len(r["seeds"]),
                                 seeds=r["seeds"], **{k: r[k] for k in COUNTS},
                                 valid_auc_mean=r.get("valid_auc_mean"),
                                 best_epoch_mean=r.get("best_epoch_mean"),
                                 train_seconds_mean=r.get("train_seconds_mean"), **common))
    for f in curve["fits"]:
        out.append(br.record(BENCHMARK, "fit_b", f["b"], "per ln x", env, family=f["family"],
                             fit_metric=f["metric"], against=f["against"], a=f["a"],
                             b_per_decade=f["b_per_decade"], r2=f["r2"],
                             n_points=f["n_points"], sizes=f["sizes"], seed=None, **common))
    return out


def run(args, overrides: list[str]) -> int:
    from llmrec.config import load_config
    from llmrec.ranking.scaling import FAMILIES, SIZES, ScalingConfig, format_fits, run_scaling

    out = Path(args.out)
    folder = args.folder or str(Path("runs") / "scaling" / Path(args.config).stem)
    sizes = args.sizes or ",".join(SIZES)
    seeds, epochs, condition = args.seeds, args.epochs, args.condition
    if args.smoke:
        sizes = args.sizes or "xs,s"
        seeds, epochs, condition = args.seeds.split(",")[0], 1, "smoke (1 epoch)"
        scratch = Path(tempfile.mkdtemp(prefix="ctr-scaling-smoke-"))
        if out == OUT:
            out = scratch / "ctr_scaling_smoke.jsonl"
        if not args.folder:
            folder = str(scratch / "curve")
    opts = [f"--recipe={args.config}", f"--families={args.families or ','.join(FAMILIES)}",
            f"--sizes={sizes}", f"--seeds={seeds}", f"--out={folder}",
            f"--workers={args.workers}", f"--device={args.device}"]
    if epochs is not None:
        opts.append(f"--epochs={epochs}")
    if args.patience is not None:
        opts.append(f"--patience={args.patience}")
    cfg = load_config(ScalingConfig, None, opts)
    cfg.recipe_overrides = [o.lstrip("-") for o in overrides]
    env = br.environment(device=cfg.device,
                         extra_versions=("datasets", "pyarrow", "numpy", "pandas"))
    common = {"config_file": args.config, "folder": folder,
              "command": " ".join(["python", *sys.argv])}
    if condition:
        common["condition"] = condition
    t0 = time.perf_counter()

    def on_cell(cell: dict, setup: dict) -> None:
        extra = {"dataset": args.dataset_label or setup["dataset"], "epochs_max": setup["epochs"],
                 "patience": setup["patience"], "embed_dim": setup["embed_dim"],
                 "fingerprint": setup["fingerprint"]}
        br.append(out, _cell_records(cell, setup, env, {**common, **extra}))

    curve = run_scaling(cfg, on_cell=on_cell)
    setup = curve["setup"]
    extra = {"dataset": args.dataset_label or setup["dataset"], "epochs_max": setup["epochs"],
             "patience": setup["patience"], "embed_dim": setup["embed_dim"],
             "fingerprint": setup["fingerprint"]}
    br.append(out, _summary_records(curve, env, {**common, **extra}))
    print(format_fits(curve))
    print(f"{len(curve['cells'])} cells ({len(curve['failed'])} failed), "
          f"{time.perf_counter() - t0:.0f}s -> {folder}, records -> {out}")
    return 1 if curve["failed"] else 0


def _fmt_n(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def table(dataset: str, path: Path = OUT) -> str:
    """Markdown tables (per family and size; the fits) of the latest records for ``dataset``."""
    from llmrec.ranking.scaling import FAMILIES, SIZES

    recs = [r for r in br.read(path) if r.get("dataset") == dataset and r.get("seed") is None
            and not r.get("condition")]
    if not recs:
        return f"_no {dataset} results in {path.name} yet_"
    latest: dict[tuple, dict] = {}
    for r in recs:
        key = ((r["family"], r["size"], r["metric"]) if r["metric"] != "fit_b" else
               (r["family"], r["fit_metric"], r["against"], "fit"))
        if key not in latest or r["date"] >= latest[key]["date"]:
            latest[key] = r
    lines = ["| family | size | non-embedding params | train FLOPs / sample | test AUC | "
             "test gAUC | test LogLoss | best epoch | seeds |", "|---|---|---|---|---|---|---|---|---|"]
    fam_order = {f: i for i, f in enumerate(FAMILIES)}
    rows = sorted({(k[0], k[1]) for k in latest if len(k) == 3},
                  key=lambda k: (fam_order.get(k[0], 99), SIZES.index(k[1])
                                 if k[1] in SIZES else 99))
    for family, size in rows:
        cells = []
        for m in METRICS:
            r = latest.get((family, size, m))
            cells.append("" if r is None else f"{r['mean']:.4f} ± {r['std']:.4f}")
        r = latest[(family, size, "auc")]
        lines.append(f"| {family} | {size} | {_fmt_n(r['non_embedding_parameters'])} | "
                     f"{r['train_flops_per_sample'] / 1e6:.2f}M | {' | '.join(cells)} | "
                     f"{r.get('best_epoch_mean') or 0:.1f} | {r.get('n_seeds', '-')} |")
    fits = [v for k, v in latest.items() if len(k) == 4 and k[1] == "test_auc"]
    if fits:
        lines += ["", "| family | fit against | a | b (per ln x) | b per decade | R^2 | sizes |",
                  "|---|---|---|---|---|---|---|"]
        for f in sorted(fits, key=lambda f: (fam_order.get(f["family"], 99), f["against"])):
            lines.append(f"| {f['family']} | {f['against']} | {f['a']:.4f} | {f['value']:.5f} | "
                         f"{f['b_per_decade']:.5f} | {f['r2']:.3f} | {f['n_points']} |")
    any_rec = next(iter(latest.values()))
    runs = sorted({(r["device"], r["commit"], r["versions"].get("torch")) for r in latest.values()})
    lines += [""] + [f"Device: {d}; commit `{c}`; torch {t}." for d, c, t in runs]
    lines.append(f"Dataset: {dataset}; up to {any_rec.get('epochs_max')} epochs, patience "
                 f"{any_rec.get('patience')}, embedding width {any_rec.get('embed_dim')}; latest "
                 f"record {max(r['date'] for r in latest.values())}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="RankConfig recipe (eval/ranking/ml1m.yaml, "
                                     "eval/ctr/frappe.yaml)")
    ap.add_argument("--families", default="", help="comma-separated families (default: all of "
                                                   "llmrec.ranking.scaling.FAMILIES)")
    ap.add_argument("--sizes", default="", help="comma-separated rungs (default: xs,s,m,l,xl)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--workers", type=int, default=1, help="cells trained at once (spawned "
                                                           "processes sharing the device)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--patience", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--folder", default="", help="the curve folder (default: "
                                                 "runs/scaling/<recipe name>)")
    ap.add_argument("--out", default=str(OUT), help="JSONL file the records are appended to")
    ap.add_argument("--dataset-label", default=None, help="dataset name in the records")
    ap.add_argument("--condition", default=None, help="free-form label of a variant setting "
                                                      "(left out of --table)")
    ap.add_argument("--smoke", action="store_true", help="1 epoch, sizes xs,s, 1 seed, into a "
                                                         "scratch folder and JSONL")
    ap.add_argument("--table", metavar="DATASET", help="print the markdown tables for DATASET "
                                                       "from --out and exit")
    args, overrides = ap.parse_known_args(argv)
    if args.table:
        print(table(args.table, Path(args.out)))
        return 0
    if not args.config:
        ap.error("--config is required (or --table DATASET)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(args, overrides)


if __name__ == "__main__":
    sys.exit(main())
