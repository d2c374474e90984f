"""Full-ranking leave-one-out table of the sequential family: variants x seeds on one recipe.

    python bench/sequential_quality.py --config eval/sequential/beauty.yaml \
        --variants learned,none,rote,cape --seeds 0,1,2 --workers 12 \
        --out bench/results/sequential_beauty.jsonl

A variant is a ``position`` of SASRec's attention (learned, none, rote, cape), or
``model:position`` for another model of the family, or a model name (``tiger``, ``fair``) for that
model with the recipe's arguments (recorded with ``position: null``), optionally ``+init`` / ``+add`` for SASRec's
LLM item-knowledge option (``learned+init``: knowledge vectors from the recipe's ``knowledge``
section as the item embeddings' initialisation; recorded as ``augment: kar-init`` / ``kar-add``). Features are encoded once; each (variant,
seed) cell trains in its own process (``--workers`` at a time, sharing the GPU, which small
sequential models leave mostly idle) with the recipe's early stopping on valid NDCG@10, and
records valid and test HR / NDCG @ 5, 10, 20 of the chosen epoch, then mean / std per variant.
The most-popular baseline is recorded on the same samples, and with every cell the share of
same-day ties in the test inputs (consecutive behaviours on one calendar day: their order is the
item-id order, not time).
"""

from __future__ import annotations

import argparse
import copy
import logging
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

METRICS = [f"{m}@{k}" for k in (5, 10, 20) for m in ("hr", "ndcg")]
AUGMENT = {"none": "none", "init": "kar-init", "add": "kar-add"}  # model_args.knowledge -> label


def same_day_tie_share(fs) -> float:
    """Share of consecutive behaviour pairs of the test inputs that fall on the same UTC day."""
    import torch

    idx = fs.split_index("test")
    t = fs.tensors["hist_time"][idx]
    m = fs.tensors["hist_rows"][idx] > 0
    pair = m[:, 1:] & m[:, :-1]
    same = (t[:, 1:] // 86400) == (t[:, :-1] // 86400)
    return float((same & pair).sum()) / max(int(pair.sum()), 1) if pair.any() else float("nan")


def _cell(job):
    key, cfg, features_path, seed = job
    from llmrec.ranking.features import FeatureSet
    from llmrec.ranking.pipeline import run_train

    if cfg.train.device.startswith("cuda:"):  # --gpus: this process's device is the current one
        import torch

        torch.cuda.set_device(cfg.train.device)
    fs = FeatureSet.load(features_path)
    t0 = time.perf_counter()
    res = run_train(cfg, features=fs)
    res["wall_seconds"] = time.perf_counter() - t0
    res["seed"] = seed
    return key, cfg, res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="RankConfig YAML of the sequential family")
    ap.add_argument("--variants", default="learned,none,rote,cape")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--workers", type=int, default=1, help="cells trained at once")
    ap.add_argument("--gpus", type=int, default=1, help="CUDA devices to spread the cells over "
                    "(cell i trains on cuda:i mod gpus; 1: the recipe's train.device)")
    ap.add_argument("--out", required=True, help="JSONL file to append the cells to")
    ap.add_argument("--dataset-label", default=None)
    ap.add_argument("--benchmark", default="sequential_quality")
    args, overrides = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("sequential_quality")

    from llmrec.config import load_config, to_dict
    from llmrec.ranking.pipeline import RankConfig, prepare_features
    from llmrec.ranking.popularity import next_item_popularity
    from llmrec.ranking.registry import hyper_parameters, list_models

    base = load_config(RankConfig, args.config, overrides)
    base.train.checkpoint = False
    work = Path(tempfile.mkdtemp(prefix="seq-bench-"))
    base.features_path = str(work / "features")
    fs = prepare_features(base)
    ties = same_day_tie_share(fs) if fs.spec.timestamps else None
    dataset = args.dataset_label or fs.info.get("dataset", base.data.name)
    env = br.environment(extra_versions=("datasets", "pyarrow", "numpy", "pandas"))
    common = {"dataset": dataset, "split": "loo-full",
              "same_day_tie_share": ties, "command": " ".join(["python", *sys.argv])}
    records = []
    pop = next_item_popularity(fs)
    for split in ("valid", "test"):
        for m in METRICS:
            records.append(br.record(args.benchmark, m, pop[split][m], "fraction", env,
                                     model="popularity", position=None, seed=None,
                                     eval_split=split, augment="none", **common))
    br.append(args.out, records)
    log.info("popularity test: %s; same-day ties in test inputs: %s",
             {k: round(v, 4) for k, v in pop["test"].items()}, ties)

    seeds = [int(s) for s in args.seeds.split(",")]
    if "+" in args.variants or base.model_args.get("knowledge", "none") != "none":
        # embed the knowledge cache (if that is the source) once, not in every cell's process
        from llmrec.ranking.item_knowledge import item_source

        base.knowledge.item_embeddings = str(item_source(base.knowledge))
    jobs = []
    for variant in args.variants.split(","):
        variant, _, knowledge = variant.partition("+")
        model, _, position = variant.rpartition(":")
        if not model and position in list_models("sequential") and position != "sasrec":
            model, position = position, None  # a model of the family as the recipe sets it
        model = model or base.model
        if knowledge and (model != "sasrec" or knowledge not in ("init", "add")):
            raise SystemExit(f"variant {variant}+{knowledge}: +init / +add are options of sasrec")
        knowledge = knowledge or str(base.model_args.get("knowledge", "none"))
        for seed in seeds:
            cfg = copy.deepcopy(base)
            cfg.model = model
            if model == "sasrec":
                cfg.model_args = {**cfg.model_args, "position": position, "knowledge": knowledge}
            else:  # the recipe's SASRec arguments that this model also has
                valid = hyper_parameters(model)
                cfg.model_args = {k: v for k, v in cfg.model_args.items() if k in valid}
                knowledge = "none"
            cfg.train.seed = seed
            if args.gpus > 1:
                cfg.train.device = f"cuda:{len(jobs) % args.gpus}"
            cfg.output_dir = str(work / f"{model}-{position}-{knowledge}-{seed}")
            jobs.append(((model, position, AUGMENT[knowledge]), cfg, base.features_path, seed))
    ctx = mp.get_context("spawn")
    results: dict[tuple, list] = {}
    with ctx.Pool(max(1, args.workers)) as pool:
        # cells are recorded as they finish, so a run cut off by a time limit keeps them
        for key, cfg, res in pool.imap_unordered(_cell, jobs):
            results.setdefault(key, []).append(res)
            model, position, augment = key
            recs = []
            for split in ("valid", "test"):
                for m in METRICS:
                    recs.append(br.record(args.benchmark, m, res[split][m], "fraction", env,
                                          model=model, position=position, seed=res["seed"],
                                          eval_split=split, best_epoch=res["best_epoch"],
                                          epochs=res["epochs"],
                                          stop_reason=res.get("stop_reason"),
                                          wall_seconds=round(res["wall_seconds"], 1),
                                          samples_per_s=res["samples_per_s"],
                                          n_parameters=res["n_parameters"],
                                          augment=augment, config=to_dict(cfg), **common))
            br.append(args.out, recs)
            log.info("%s/%s/%s seed %d: test ndcg@10 %.4f hr@10 %.4f (best epoch %d of %d, "
                     "%.0fs)", model, position, augment, res["seed"], res["test"]["ndcg@10"], res["test"]["hr@10"],
                     res["best_epoch"], res["epochs"], res["wall_seconds"])
    summary = []
    for (model, position, augment), rs in results.items():
        for m in METRICS:
            s = br.summarise([r["test"][m] for r in rs])
            summary.append(br.record(args.benchmark, m, s["mean"], "fraction", env, model=model,
                                     position=position, seed=None, eval_split="test",
                                     augment=augment, **s, **common))
        print(f"{model}/{position}/{augment:<10} test " + "  ".join(
            f"{m} {br.summarise([r['test'][m] for r in rs])['mean']:.4f}" for m in METRICS),
            flush=True)
    br.append(args.out, summary)
    print("popularity       test " + "  ".join(f"{m} {pop['test'][m]:.4f}" for m in METRICS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
