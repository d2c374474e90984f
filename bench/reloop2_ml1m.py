"""ReLoop2 on a MovieLens-1M stream (users 1-2999) cut into time windows, on the CPU.

    python bench/reloop2_ml1m.py --seeds 0,1,2 --out bench/results/reloop2_ml1m.jsonl

Protocol (:mod:`llmrec.ranking.stream`): the 487,650 ratings ordered by time, label = rating
>= 4, 10 windows of equal size; the base model (``--model``, small) trains ``--epochs`` epochs
on the first ``--train-windows`` windows; each later window is scored in chunks of ``--chunk``
samples by the frozen base model, by base + error memory (exact kNN and LSH, keys ``hidden``
and ``embedding``, lambda 0.1 / 0.3 / 0.5), and by a copy fine-tuned one epoch on every finished
window (incremental); each chunk's base errors enter the memories after it is scored; the
memories decay by 0.99 per window and start with the errors of the last training window.
Records per (seed, window, condition): AUC, gAUC (by user), LogLoss; per seed: memory bytes
and entries, lookup milliseconds per 1,000 predictions, the mean |LSH - kNN| error estimate;
and mean +- std over seeds of each condition's mean window AUC / gAUC / LogLoss.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

BENCH = "reloop2_ml1m"
DATASET = "ML-1M users 1-2999, time-ordered stream"
MODELS = {"dnn": {"embed_dim": 16, "hidden": (128, 64), "dropout": 0.0},
          "dcnv2": {"embed_dim": 16, "cross_layers": 2, "hidden": (128, 64), "dropout": 0.0}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/movielens-1m")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--model", default="dnn", choices=sorted(MODELS))
    ap.add_argument("--windows", type=int, default=10)
    ap.add_argument("--train-windows", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=2000)
    ap.add_argument("--keys", default="hidden,embedding")
    ap.add_argument("--knn-capacity", type=int, default=10_000)
    ap.add_argument("--max-samples", type=int, default=None, help="smoke runs: a stream prefix")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSONL file to append the records to")
    args = ap.parse_args(argv)

    import torch

    from llmrec.ranking.registry import build_model
    from llmrec.ranking.stream import StreamConfig, movielens_stream, prequential
    from llmrec.ranking.trainer import seed_everything

    torch.set_num_threads(args.threads)
    env = br.environment("cpu", note="shared with other jobs")
    command = "python bench/reloop2_ml1m.py " + " ".join(sys.argv[1:] if argv is None else argv)
    t_all = time.perf_counter()
    fs, windows = movielens_stream(args.data, args.windows, args.max_samples)
    cfg = StreamConfig(train_windows=args.train_windows, epochs=args.epochs, chunk=args.chunk,
                       keys=args.keys.split(","), knn_capacity=args.knn_capacity)
    conf = {"model_args": MODELS[args.model], "stream": asdict(cfg), "n_windows": args.windows,
            "window_sizes": fs.info["stream"]["window_sizes"],
            "max_samples": args.max_samples}
    common = {"model": args.model, "dataset": DATASET, "label": "rating >= 4",
              "command": command, "config": conf}
    records, means = [], {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        seed_everything(seed)
        model = build_model(args.model, fs.spec, **MODELS[args.model])
        res = prequential(model, fs, windows, cfg, seed)
        per = {}
        for row in res["windows"]:
            for cond, m in row["metrics"].items():
                for metric in ("auc", "gauc", "logloss"):
                    records.append(br.record(BENCH, metric, m[metric], metric, env,
                                             condition=cond, window=row["window"],
                                             split=f"window {row['window']}", seed=seed,
                                             n=row["n"], **common))
                    per.setdefault((cond, metric), []).append(m[metric])
        for (cond, metric), vals in per.items():
            v = sum(vals) / len(vals)
            records.append(br.record(BENCH, f"mean_window_{metric}", v, metric, env,
                                     condition=cond, seed=seed, **common))
            means.setdefault((cond, metric), []).append(v)
        for name, value in res["memory_bytes"].items():
            records.append(br.record(BENCH, "memory_bytes", value, "bytes", env, memory=name,
                                     seed=seed, entries=res["memory_entries"][name], **common))
            records.append(br.record(BENCH, "lookup_ms_per_1k", res["lookup_ms_per_1k"][name],
                                     "ms per 1000 predictions", env, memory=name, seed=seed,
                                     **common))
        for key, gap in res["lsh_knn_gap"].items():
            records.append(br.record(BENCH, "lsh_knn_abs_gap", gap, "mean |e_lsh - e_knn|", env,
                                     key=key, seed=seed, **common))
        records.append(br.record(BENCH, "wall_seconds", res["wall_seconds"], "s", env,
                                 seed=seed, train_seconds=res["train_seconds"], **common))
        base = sum(per[("base", "auc")]) / len(per[("base", "auc")])
        print(f"seed {seed} ({res['wall_seconds']:.0f} s): mean window AUC base {base:.4f}, "
              + ", ".join(f"{c} {sum(v) / len(v) - base:+.4f}" for (c, m), v in per.items()
                          if m == "auc" and c != "base"), flush=True)
        print(f"  memory {res['memory_bytes']}, lookup ms/1k "
              f"{ {k: round(v, 1) for k, v in res['lookup_ms_per_1k'].items()} }, |lsh - knn| "
              f"{ {k: round(v, 4) for k, v in res['lsh_knn_gap'].items()} }", flush=True)
    print(f"\n{DATASET}, {args.model}; mean over windows {args.train_windows}.."
          f"{args.windows - 1}, mean +- std over seeds")
    print("| condition | AUC | gAUC | LogLoss |\n|---|---|---|---|")
    for cond in dict.fromkeys(c for c, _ in means):
        cells = []
        for metric in ("auc", "gauc", "logloss"):
            s = br.summarise(means[(cond, metric)])
            records.append(br.record(BENCH, f"mean_window_{metric}", s["mean"], metric, env,
                                     condition=cond, mean=s["mean"], std=s["std"],
                                     n_seeds=s["n_seeds"], **common))
            cells.append(f"{s['mean']:.4f} ± {s['std']:.4f}")
        print(f"| {cond} | " + " | ".join(cells) + " |")
    print(f"\n{len(records)} records, {time.perf_counter() - t_all:.0f} s on {env['device']}")
    if args.out:
        br.append(args.out, records)
        print(f"appended to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
