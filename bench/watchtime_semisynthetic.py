"""Watch-time labels on a semi-synthetic log (simulated watch time on real ML-1M preferences):
raw watch time vs PCR, WTG, D2Q, D2Co and the CWM loss, on two CTR backbones, scored against the
known interest.

    python bench/watchtime_semisynthetic.py --seeds 0,1,2 \
        --out bench/results/watchtime_semisynthetic.jsonl
    python bench/watchtime_semisynthetic.py --table bench/results/watchtime_semisynthetic.jsonl

Protocol (every number is on **simulated watch time**): :mod:`llmrec.ranking.watchtime_sim`
with its default parameters on the ML-1M ratings of users 1-2999 (all of them by default;
``--n-users N`` keeps N drawn with user seed 0, the same users for every seed). Seed ``s`` re-simulates the durations and watch times with
simulator seed ``s`` *and* seeds the model (initialisation, batch order, dropout), so the std
covers both. The log is written in KuaiRand-Pure's schema and read back by
:func:`llmrec.data.kuairand.load_kuairand` (split by time 8:1:1, durations 5..400 s, the
duration a numeric feature, the labels fitted on train), then the training path of
``llmrec.ranking.watchtime_run``: the backbone's logit trained by :class:`WatchTimeTask` (MSE on
the label, or the CWM likelihood), Adam, early stopping on the validation long-view GAUC (an
observable metric: the interest is never used for training or model selection).

Scored on the test split against the **known interest** ``q = (rating - 1) / 4``:
``interest_gauc`` (per-user AUC, weighted by samples, of the interest positives: rating >= 4,
over users with both classes), ``interest_ndcg@5/10`` (gain q, users with a positive gain),
the mean duration and mean interest of each user's top 5 (``top5_*``; ``all_*`` the test
means), and the watch-time metrics of the task (long-view GAUC, XAUC / XGAUC against the
observed watch time). Two references without training: ``random`` scores and ``duration``
(score = the duration: pure duration bias). Per duration bin (10 equal-frequency bins of the
test durations): mean duration, mean interest, the interest GAUC inside the bin, and the share of
the users' top 5 that falls in the bin beside the share of the interest positives there.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

BENCH = "watchtime_semisynthetic"
DATASET = "ML-1M ratings (users 1-2999) + simulated watch time"
MODELS = {
    "deepfm": {"embed_dim": 16, "hidden": (128, 64), "dropout": 0.1},
    "dcnv2": {"embed_dim": 16, "cross_layers": 2, "hidden": (128, 64), "dropout": 0.1},
}
KINDS = ("raw", "pcr", "wtg", "d2q", "d2co", "cwm")
SCALARS = ("interest_gauc", "interest_ndcg@5", "interest_ndcg@10", "top5_duration",
           "top5_interest", "gauc", "xgauc", "xauc")


def score_against_interest(users, interest, positive, w, d, score, n_bins=10, k=5):
    """The scalar metrics and the per-duration-bin rows of one test scoring."""
    import numpy as np

    from llmrec.ranking.watchtime import (duration_bins, gauc, ndcg, top_k_per_user,
                                          watch_time_metrics)

    top = top_k_per_user(users, score, k)
    out = {"interest_gauc": gauc(users, positive, score),
           "interest_ndcg@5": ndcg(users, interest, score, 5),
           "interest_ndcg@10": ndcg(users, interest, score, 10),
           "top5_duration": float(d[top].mean()), "top5_interest": float(interest[top].mean()),
           "all_duration": float(d.mean()), "all_interest": float(interest.mean())}
    wt = watch_time_metrics(users, w, d, score, ks=(5,))
    out.update(gauc=wt["gauc"], xauc=wt["xauc"], xgauc=wt["xgauc"])
    bins = duration_bins(d, w, score, users=users, label=interest, long=positive,
                         n_bins=n_bins, top_k=k)
    edges = np.asarray(bins["edges"])
    b = np.searchsorted(edges, d, side="right")
    rows = []
    for row, ts, ps in zip(bins["bins"], bins["top_share"], bins["positive_share"]):
        in_top = top[b[top] == row["bin"]]
        rows.append({"bin": row["bin"], "n": row["n"], "d_mean": row["d_mean"],
                     "d_min": row["d_min"], "d_max": row["d_max"],
                     "interest_mean": row["label_mean"], "positive_rate": row["long_view_rate"],
                     "interest_gauc": row["gauc"], "top5_share": ts, "positive_share": ps,
                     "top5_interest": float(interest[in_top].mean()) if in_top.size else None})
    return out, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", default="../shared/data/movielens-1m")
    ap.add_argument("--n-users", type=int, default=0,
                    help="ML-1M users to keep (0 = all of the ratings file)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default="deepfm,dcnv2")
    ap.add_argument("--labels", default=",".join(KINDS))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--patience", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--folder", default="runs/watchtime_sim", help="where the simulated logs "
                                                                   "are written")
    ap.add_argument("--out", default=None, help="JSONL file to append the records to")
    ap.add_argument("--variant-name", default=None, help="--table: which simulator variant "
                                                         "(default: the default parameters)")
    ap.add_argument("--sim", action="append", default=[], metavar="KEY=VALUE",
                    help="override a simulator parameter (WatchTimeSimConfig), e.g. "
                         "duration_exponent=0; the records name the variant")
    ap.add_argument("--references", type=int, default=1,
                    help="also score the random / duration references (0 = skip)")
    ap.add_argument("--table", default=None, help="print the markdown tables of this JSONL "
                                                  "file and exit")
    args = ap.parse_args(argv)
    if args.table:
        print_tables(args.table, args.variant_name)
        return 0
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import numpy as np
    import torch

    from llmrec.ranking.features import build_features
    from llmrec.ranking.registry import build_model
    from llmrec.ranking.task_config import TaskConfig
    from llmrec.ranking.trainer import TrainConfig, Trainer, seed_everything
    from llmrec.ranking.watchtime import WatchTimeConfig, WatchTimeTask
    from llmrec.ranking.watchtime_sim import (SIM_LABEL, WatchTimeSimConfig, load_ml1m_ratings,
                                              load_simulated)

    torch.set_num_threads(1)
    env = br.environment("cpu")
    seeds = [int(s) for s in args.seeds.split(",")]
    models, kinds = args.models.split(","), args.labels.split(",")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        ap.error(f"--labels: unknown {bad}; choose from {', '.join(KINDS)}")
    overrides = {}
    for kv in args.sim:
        key, _, val = kv.partition("=")
        if key not in WatchTimeSimConfig.__dataclass_fields__ or not val:
            ap.error(f"--sim {kv!r}: expected KEY=VALUE with KEY a WatchTimeSimConfig field")
        overrides[key] = type(getattr(WatchTimeSimConfig(), key))(val)
    variant = ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in overrides.items()) or "default"
    base = WatchTimeSimConfig(path=args.path, n_users=args.n_users, **overrides)
    ratings, users_t, items_t = load_ml1m_ratings(base)
    t_all = time.perf_counter()
    for seed in seeds:
        sim = WatchTimeSimConfig(**{**base.as_dict(), "seed": seed})
        data, split, fcfg, log = load_simulated(sim, Path(args.folder) / variant / f"seed{seed}",
                                                ratings,
                                                users_t, items_t)
        fs = build_features(data, split, fcfg)
        assert "interest" not in fs.spec.labels  # the interest is never a feature or label
        test_rows = fs.split_index("test").cpu().numpy()
        s = split.samples.reset_index(drop=True).iloc[test_rows]
        users, q = s["user_id"].to_numpy(), s["interest"].to_numpy(np.float64)
        pos = (s["rating"].to_numpy() >= sim.positive_rating).astype(np.float64)
        w, d = s["watch_s"].to_numpy(np.float64), s["duration_s"].to_numpy(np.float64)
        sim_info = {**split.info["simulation"], "splits": split.info["splits"],
                    "test_users": int(np.unique(users).size),
                    "protocol": split.info["protocol"]}
        common = dict(dataset=DATASET, simulated=SIM_LABEL, variant=variant, seed=seed,
                      split="test",
                      positive=f"rating >= {sim.positive_rating:g}", simulation=sim_info)

        def emit(model, kind, score, extra):
            metrics, rows = score_against_interest(users, q, pos, w, d, score)
            recs = [br.record(BENCH, m, float(metrics[m]), "", env, model=model, label=kind,
                              **common, **extra) for m in SCALARS]
            recs.append(br.record(BENCH, "duration_bins", rows, "rows", env, model=model,
                                  label=kind, all_duration=metrics["all_duration"],
                                  all_interest=metrics["all_interest"], **common, **extra))
            if args.out:
                br.append(args.out, recs)
            print(f"seed {seed} {model:9s} {kind:5s}: interest GAUC "
                  f"{metrics['interest_gauc']:.4f} nDCG@10 {metrics['interest_ndcg@10']:.4f} "
                  f"top5 d {metrics['top5_duration']:.1f} s (all {metrics['all_duration']:.1f}) "
                  f"q {metrics['top5_interest']:.3f} (all {metrics['all_interest']:.3f}) "
                  f"{extra.get('wall_seconds', '')}", flush=True)

        if args.references:
            rng = np.random.default_rng(seed)
            emit("reference", "random", rng.random(len(s)), {})
            emit("reference", "duration", d.copy(), {})
        for model in models:
            for kind in kinds:
                seed_everything(seed)
                net = build_model(model, fs.spec, **MODELS[model])
                wcfg = WatchTimeConfig(label=kind)
                task = WatchTimeTask(TaskConfig(kind="regression", monitor="gauc", mode="max"),
                                     fs.spec, wcfg)
                tcfg = TrainConfig(device="cpu", seed=seed, batch_size=args.batch_size,
                                   epochs=args.epochs, lr=args.lr, patience=args.patience,
                                   checkpoint=False)
                t0 = time.perf_counter()
                trainer = Trainer(net, fs, tcfg, task=task)
                res = trainer.fit()
                score = trainer.predict(fs.split_index("test")).cpu().numpy().astype(np.float64)
                emit(model, kind, score, {
                    "wall_seconds": round(time.perf_counter() - t0, 1),
                    "best_epoch": res.get("best_epoch"), "epochs": res.get("epochs"),
                    "valid_long_view_gauc": res["valid"].get("gauc"),
                    "config": {"model": MODELS[model], "watchtime": vars(wcfg),
                               "epochs": args.epochs, "patience": args.patience,
                               "batch_size": args.batch_size, "lr": args.lr,
                               "monitor": "valid long-view gauc"}})
    print(f"\n{time.perf_counter() - t_all:.0f} s")
    if args.out:
        print_tables(args.out, variant)
    return 0


def print_tables(path: str, variant: str | None = None) -> None:
    """Markdown tables (mean ± std over seeds) of the records in ``path`` for the simulator
    ``variant`` (default: the default parameters): the latest run per (model, label, seed)."""
    import json
    from collections import defaultdict

    recs = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    variant = variant or "default"
    recs = [r for r in recs if r.get("benchmark") == BENCH
            and r.get("variant", "default") == variant]
    if not recs:
        raise SystemExit(f"{path}: no {BENCH} records of simulator variant {variant!r}")
    latest = {}
    for r in recs:  # a later record of the same cell replaces an earlier one
        latest[(r["model"], r["label"], r["seed"], r["metric"])] = r
    cells = defaultdict(list)
    bins = defaultdict(list)
    for (model, label, seed, metric), r in sorted(latest.items(), key=lambda kv: kv[0][2]):
        if metric == "duration_bins":
            bins[(model, label)].append(r)
        else:
            cells[(model, label, metric)].append(r["value"])
    rows = list(dict.fromkeys((m, lb) for m, lb, _ in cells))
    order = {k: i for i, k in enumerate(("random", "duration", *KINDS))}
    rows.sort(key=lambda x: (x[0] != "reference", x[0], order.get(x[1], 99)))
    seeds = sorted({k[2] for k in latest})

    def ms(vals, f=".4f"):
        if not vals:
            return "n/a"
        s = br.summarise([v for v in vals if v == v])
        return f"{s['mean']:{f}} ± {s['std']:{f.lstrip('+')}}"

    any_bins = next(iter(bins.values()))[0]
    print(f"\n### Interest ranking on the test split (simulated watch time, simulator {variant}; "
          f"seeds {seeds}, mean ± std)\n")
    print(f"positives: {any_bins['positive']}; gain of nDCG: interest (rating - 1) / 4; "
          f"mean test duration {any_bins['all_duration']:.1f} s, mean interest "
          f"{any_bins['all_interest']:.3f}\n")
    heads = ("interest GAUC", "interest nDCG@5", "interest nDCG@10", "top-5 duration (s)",
             "top-5 interest", "long-view GAUC", "XGAUC")
    keys = ("interest_gauc", "interest_ndcg@5", "interest_ndcg@10", "top5_duration",
            "top5_interest", "gauc", "xgauc")
    print("| backbone | label | " + " | ".join(heads) + " |")
    print("|---|---|" + "---|" * len(heads))
    for m, lb in rows:
        vals = [ms(cells[(m, lb, k)], ".1f" if k == "top5_duration" else ".4f") for k in keys]
        print(f"| {m} | {lb} | " + " | ".join(vals) + " |")
    # gains over raw
    print(f"\n### Gain over raw watch time, same backbone and seed (simulated watch time; mean ± "
          f"std of the per-seed differences)\n")
    print("| backbone | label | Δ interest GAUC | Δ interest nDCG@10 |\n|---|---|---|---|")
    for m, lb in rows:
        if m == "reference" or lb == "raw":
            continue
        out = []
        for k in ("interest_gauc", "interest_ndcg@10"):
            a = {r: latest[(m, lb, r, k)]["value"] for r in seeds if (m, lb, r, k) in latest}
            b = {r: latest[(m, "raw", r, k)]["value"] for r in seeds
                 if (m, "raw", r, k) in latest}
            out.append(ms([a[r] - b[r] for r in a if r in b], "+.4f"))
        print(f"| {m} | {lb} | " + " | ".join(out) + " |")
    # per duration bin
    first = bins[rows[0]][0]["value"]
    print(f"\n### Per duration bin (simulated watch time; 10 equal-frequency bins of the test "
          f"durations, seeds {seeds}, mean over seeds)\n")
    print("column heads: the bin's mean duration (s), mean interest q and share of the interest "
          "positives")
    for name, key in (("share of the users' top 5 in the bin", "top5_share"),
                      ("interest GAUC inside the bin", "interest_gauc")):
        print(f"\n{name} (simulated watch time):\n")
        heads = []
        for i in range(len(first)):
            dm = _mean([r["value"][i]["d_mean"] for r in bins[rows[0]]])
            qm = _mean([r["value"][i]["interest_mean"] for r in bins[rows[0]]])
            ps = _mean([r["value"][i]["positive_share"] for r in bins[rows[0]]])
            heads.append(f"{dm:.0f}s q{qm:.2f} p{ps:.2f}" if key == "top5_share"
                         else f"{dm:.0f}s")
        print("| backbone | label | " + " | ".join(heads) + " |")
        print("|---|---|" + "---|" * len(heads))
        for m, lb in rows:
            if key == "interest_gauc" and lb == "random":
                continue
            vals = []
            for i in range(len(first)):
                v = _mean([r["value"][i][key] for r in bins[(m, lb)]])
                vals.append("n/a" if v != v else f"{v:.3f}")
            print(f"| {m} | {lb} | " + " | ".join(vals) + " |")


def _mean(vals):
    vals = [v for v in vals if v is not None and v == v]
    return sum(vals) / len(vals) if vals else float("nan")


if __name__ == "__main__":
    raise SystemExit(main())
