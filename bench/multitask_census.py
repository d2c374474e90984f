"""Census-income KDD (test file only, re-split 8:1:1): per-task test AUC of single-task DNNs,
shared-bottom, MMoE and PLE, over seeds, on the CPU.

    python bench/multitask_census.py --seeds 0,1,2 --out bench/results/multitask_census.jsonl

Protocol: :mod:`llmrec.data.census` with task group 1 (income > 50K, marital never married;
``--group 2``: education at least college, marital),
split seed 42 for every cell (the model seed varies the initialisation, the batch order and
dropout). Single-task rows: ``dnn`` with ``task.kind=binary`` on the primary ``label``, loaded
once with ``census.primary`` set to each task of the group (the label a binary run
learns is the loader's choice). Multi-task rows: ``task.kind=multitask`` with ``labels`` =
the group's two tasks, equal loss weights, ``--mtos`` the multi-task optimisations to run
(``task.mto``, :mod:`llmrec.ranking.mto`; default ``base``, plain Adam on the summed BCE). Early
stopping on valid AUC (single task) or mean valid AUC over the two tasks (multi-task), patience
3, at most 30 epochs; the test
AUC is that of the best valid epoch. Small models (embedding 8) so the whole table runs in
minutes on 2 CPU cores. Each cell appends one record per (label, split) with the AUC.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

DATASET = "census-income KDD (test file only, re-split)"
# the models and their hyper-parameters (embedding 8 everywhere)
MODELS = {
    "dnn": {"embed_dim": 8, "hidden": (64, 32), "dropout": 0.1},
    "shared_bottom": {"embed_dim": 8, "bottom": (64,), "tower": (16,), "dropout": 0.1},
    "mmoe": {"embed_dim": 8, "n_experts": 8, "expert": (16,), "tower": (16,), "dropout": 0.1},
    "ple": {"embed_dim": 8, "levels": 2, "n_shared": 2, "n_specific": 2, "expert": (16,),
            "tower": (16,), "dropout": 0.1},
    # EKTM on MMoE's experts, and its ablations (one part off each)
    "ektm": {"embed_dim": 8, "n_experts": 8, "expert": (16,), "tower": (16,), "dropout": 0.1},
}
for _part in ("router", "transmitter", "enhanced"):
    MODELS[f"ektm_no_{_part}"] = {**MODELS["ektm"], _part: False}
# a row name -> the registered model it builds
REGISTERED = {name: ("ektm" if name.startswith("ektm") else name) for name in MODELS}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", default="../shared/data/census-income-kdd/census-income.test.gz")
    ap.add_argument("--group", type=int, default=1, choices=(1, 2),
                    help="MMoE task group: 1 = income, marital; 2 = education, marital")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default="dnn,shared_bottom,mmoe,ple")
    ap.add_argument("--mtos", default="base",
                    help="multi-task optimisations for the multi-task models (comma-separated: "
                         "base, uw, pcgrad, nash, pub); the single-task dnn runs only with base")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: faster than 2 on a shared 2-core machine)")
    ap.add_argument("--out", default=None, help="JSONL file to append the records to")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch

    from llmrec.data.census import GROUPS, CensusConfig, census_features
    from llmrec.ranking import mto as mto_lib
    from llmrec.ranking.registry import build_model
    from llmrec.ranking.task_config import TaskConfig
    from llmrec.ranking.trainer import TrainConfig, Trainer, seed_everything

    torch.set_num_threads(args.threads)
    env = br.environment("cpu")
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",")
    mtos = args.mtos.split(",")
    bad = [m for m in mtos if m not in mto_lib.MTO_METHODS]
    if bad:
        ap.error(f"--mtos: unknown {bad}; choose from {', '.join(mto_lib.MTO_METHODS)}")
    tasks = GROUPS[args.group]
    features = {p: census_features(CensusConfig(path=args.path, group=args.group, primary=p))
                for p in tasks}
    protocol = features[tasks[0]].info["census"]["protocol"]
    records, table = [], {}

    def cell(model, fs, task_cfg, labels, seed, task_name, mto="base"):
        seed_everything(seed)
        net = build_model(REGISTERED[model], fs.spec, **MODELS[model],
                          **({"tasks": list(labels)} if task_cfg.kind == "multitask" else {}))
        cfg = TrainConfig(device="cpu", seed=seed, batch_size=args.batch_size,
                          epochs=args.epochs, lr=args.lr, patience=args.patience,
                          checkpoint=False)
        t0 = time.perf_counter()
        n_before = len(records)
        trainer = Trainer(net, fs, cfg, task=task_cfg)
        if mto != "base" and getattr(trainer, "mto", None) is None:
            # a trainer that does not read task.mto yet: give it the method's step
            mto_lib.attach(trainer, mto)
        res = trainer.fit()
        wall = time.perf_counter() - t0
        weights = getattr(getattr(trainer, "mto", None), "last_weights", None)
        for label in labels:
            for split in ("valid", "test"):
                key = "auc" if task_cfg.kind == "binary" else f"{label}.auc"
                value = float(res[split][key])
                records.append(br.record(
                    "multitask_census", "auc", value, "AUC", env, model=model, dataset=DATASET,
                    task=task_cfg.kind, mto=mto, label=label, split=split, seed=seed,
                    group=args.group, protocol=protocol, best_epoch=res.get("best_epoch"),
                    wall_seconds=round(wall, 2), task_weights=weights, config={
                        "model": MODELS[model], "epochs": args.epochs,
                        "patience": args.patience, "batch_size": args.batch_size,
                        "lr": args.lr, "task_labels": list(labels), "split_seed": 42}))
                if split == "test":
                    name = (f"{model} ({mto})" if task_cfg.kind == "multitask"
                            else f"{model} (single task)")
                    table.setdefault((name, label), []).append(value)
        if args.out:  # one cell at a time, so an interrupted run keeps what it finished
            br.append(args.out, records[n_before:])
        print(f"{model:14s} {mto:6s} {task_name:9s} seed {seed}: " + ", ".join(
            f"{lb} test {res['test']['auc' if task_cfg.kind == 'binary' else lb + '.auc']:.4f}"
            for lb in labels) + f"  ({wall:.0f} s, best epoch {res.get('best_epoch')})",
            flush=True)

    t_all = time.perf_counter()
    for seed in seeds:
        for model in models:
            if model == "dnn":
                for label in tasks:
                    cell(model, features[label], TaskConfig(kind="binary"), [label], seed, label)
            else:
                for m in mtos:
                    cell(model, features[tasks[0]],
                         TaskConfig(kind="multitask", labels=list(tasks), mto=m), tasks, seed,
                         "both", m)
    print(f"\n{DATASET}, {protocol}; test AUC mean +- std over seeds {seeds} "
          f"({time.perf_counter() - t_all:.0f} s on {env['device']})")
    print(f"| model | {' | '.join(tasks)} |\n|---|" + "---|" * len(tasks))
    for name in dict.fromkeys(k[0] for k in table):
        cells = []
        for label in tasks:
            s = br.summarise(table[(name, label)])
            cells.append(f"{s['mean']:.4f} +- {s['std']:.4f}")
        print(f"| {name} | {' | '.join(cells)} |")
    if args.out:
        print(f"appended {len(records)} records to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
