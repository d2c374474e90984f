"""BARS-style quality table: several backbones x several seeds on one dataset and split.

    python bench/ranking_quality.py --config eval/ranking/ml1m.yaml --models all --seeds 0,1,2,3,4 \
        --out bench/results/ranking_ml1m.jsonl

Features are encoded once (the split is fixed by the recipe's split seed); each run varies the
training seed (initialisation, batch order, dropout). For every model it records the test AUC,
gAUC and LogLoss of each seed and their mean / std, and the popularity baseline on the same test
set, one JSON object per cell (see ``llmrec/benchrecord.py``). ``bench/ranking_table.py`` turns the
file into the markdown table in docs/ranking.md.
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

from llmrec.config import load_config, to_dict  # noqa: E402

METRICS = ("auc", "gauc", "logloss")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="RankConfig YAML (data, split, features, train)")
    ap.add_argument("--models", default="all", help="comma-separated backbones or 'all'")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--out", required=True, help="JSONL file to append the cells to")
    ap.add_argument("--dataset-label", default=None, help="dataset name in the records")
    ap.add_argument("--benchmark", default="ranking_quality")
    ap.add_argument("--condition", default=None, help="free-form label of the setting (ablations)")
    args, overrides = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from llmrec.ranking.pipeline import RankConfig, prepare_features, run_train
    from llmrec.ranking.popularity import evaluate_popularity
    from llmrec.ranking.registry import hyper_parameters, list_backbones

    base = load_config(RankConfig, args.config, overrides)
    base.train.checkpoint = False
    models = list_backbones() if args.models == "all" else args.models.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    env = br.environment(extra_versions=("datasets", "pyarrow", "numpy", "pandas"))
    t0 = time.perf_counter()
    fs = prepare_features(base)
    dataset = args.dataset_label or fs.info.get("dataset", base.data.name)
    common = {"dataset": dataset, "augment": "none", "split": f"{base.split.protocol}-test",
              "command": " ".join(["python", *sys.argv])}
    if args.condition:
        common["condition"] = args.condition
    log = logging.getLogger("ranking_quality")
    log.info("features ready in %.1fs: %s", time.perf_counter() - t0, fs.info)
    records = []

    pop = evaluate_popularity(fs)
    for m in METRICS:
        records.append(br.record(args.benchmark, m, pop["test"][m], "", env, model="popularity",
                                 seed=None, config={"alpha": pop["alpha"]}, **common))
    out_dir = Path(tempfile.mkdtemp(prefix="rank-bench-"))
    for name in models:
        per_seed = {m: [] for m in METRICS}
        for seed in seeds:
            cfg = copy.deepcopy(base)
            cfg.model = name
            cfg.train.seed = seed
            cfg.output_dir = str(out_dir / f"{name}-{seed}")
            t1 = time.perf_counter()
            try:
                res = run_train(cfg, features=fs)
            except Exception as exc:  # record the failure and go on with the other cells
                log.exception("%s seed %d failed", name, seed)
                records.append(br.record(args.benchmark, "auc", None, "", env, model=name,
                                         seed=seed, error=repr(exc)[:500], **common))
                continue
            wall = time.perf_counter() - t1
            hp = {**hyper_parameters(name), **cfg.model_args}
            conf = {**to_dict(cfg), "model_hyper_parameters": hp}
            for m in METRICS:
                per_seed[m].append(res["test"][m])
                records.append(br.record(args.benchmark, m, res["test"][m], "", env, model=name,
                                         seed=seed, best_epoch=res["best_epoch"],
                                         epochs=res["epochs"], stop_reason=res.get("stop_reason"),
                                         valid_auc=res["valid"]["auc"],
                                         wall_seconds=round(wall, 2),
                                         n_parameters=res["n_parameters"], config=conf, **common))
            log.info("%s seed %d: test AUC %.5f LogLoss %.5f (best epoch %d, %.1fs)", name, seed,
                     res["test"]["auc"], res["test"]["logloss"], res["best_epoch"], wall)
        if not per_seed["auc"]:
            br.append(args.out, records)
            records = []
            continue
        for m in METRICS:
            s = br.summarise(per_seed[m])
            records.append(br.record(args.benchmark, m, s["mean"], "", env, model=name,
                                     seed=None, **s, config=conf, **common))
        br.append(args.out, records)  # after every model, so a cut-off run keeps what it finished
        records = []
        print(f"{name:<9} AUC {br.summarise(per_seed['auc'])['mean']:.5f} +- "
              f"{br.summarise(per_seed['auc'])['std']:.5f}  LogLoss "
              f"{br.summarise(per_seed['logloss'])['mean']:.5f}", flush=True)
    br.append(args.out, records)
    print(f"popularity AUC {pop['test']['auc']:.5f} LogLoss {pop['test']['logloss']:.5f}")
    print(f"total {time.perf_counter() - t0:.0f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
