"""ULTR on TREC DL19 with simulated clicks (PBM): naive / IPW (true propensities) / DLA / full
labels, linear and MLP rankers, per seed and eta; nDCG@k (exp gain) and ERR@10 on held-out
queries' true labels, over all 100 BM25 candidates and over the BM25 top 10 (re-ranking the
list the logger shows, where the clicks carry information).

Protocol: per seed a seeded 70/30 query split (30 train / 13 test of the 43 judged queries);
clicks on the training queries' BM25 top 10 from the position-based model, theta_k = rho_k^eta
(rho of the spec), P(click | e, y) = 0.1 + 0.9 (2^y - 1) / 7; the same click log for every
learner and model of a (seed, eta) cell. The BM25 ranking (the logging ranker) is reported
beside them.

``--generated`` runs the same learners on generated lists instead (500 train / 500 test queries,
10 documents, 6 Gaussian features, grade = clip(round(0.9 w.x + 1 + N(0, 0.5^2)), 0, 3), w =
[1, -0.5, 0.8, 0, 0.3, 0]; the logger ranks by 0.5 w.x + 1.5 x_6 + noise, so position correlates
with an irrelevant feature): where the data identify the propensities, as a check of the
paper's finding. Its rows say ``dataset: "generated-lists"``. ``--logger random`` shows each
training query's documents in a random order instead (rank uncorrelated with relevance: the
setting where examination and relevance are separable, for DLA's propensity recovery; records
carry ``propensity_max_rel_error``).

Usage:
  python bench/ltr_dl19.py [--data ../shared/data/trec-dl19] [--etas 0.5 1 2] [--seeds 0 1 2]
      [--steps 1000] [--sessions 20000] [--out bench/results/ltr_dl19.jsonl]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LABEL = "simulated clicks (PBM)"
METRICS = ("ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "err@10")
CANDIDATES = {"all": "all 100 BM25 candidates", "top10": "BM25 top 10 (re-ranking the shown list)"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "trec-dl19"))
    ap.add_argument("--etas", type=float, nargs="+", default=[1.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--learners", nargs="+", default=["naive", "ipw", "dla", "full"])
    ap.add_argument("--models", nargs="+", default=["linear", "mlp"])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--sessions", type=int, default=20000)
    ap.add_argument("--test-frac", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ltr_dl19.jsonl"))
    ap.add_argument("--generated", action="store_true", help="generated lists, not DL19")
    ap.add_argument("--logger", choices=sorted(LOGGERS), default="relevance",
                    help="--generated: the logging ranker (random: a permutation per query, so "
                         "examination and relevance are separable)")
    args = ap.parse_args(argv)
    if args.generated:
        return generated(args, argv)

    import numpy as np
    import torch

    from llmrec import benchrecord as br
    from llmrec.ltr.clicks import RHO
    from llmrec.ltr.features import load_dl19
    from llmrec.ltr.train import evaluate, run_experiment, split_queries

    torch.set_num_threads(args.threads)
    env = br.environment("cpu", note=f"{args.threads} torch thread(s)")
    data = load_dl19(args.data)
    common = {"dataset": "trec-dl19", "label": LABEL, "split": f"seeded {1 - args.test_frac:.0%}"
              f"/{args.test_frac:.0%} query split per seed",
              "config": {"steps": args.steps, "sessions": args.sessions, "batch_size": 256,
                         "lr": 0.05, "optimiser": "Adagrad", "clip": 5.0, "mlp_hidden": [64, 32],
                         "top_k_shown": 10, "epsilon": 0.1, "propensity": "rho^eta",
                         "logging_ranker": "bm25", "features": data.feature_names},
              "command": "python bench/ltr_dl19.py " + " ".join(argv or sys.argv[1:])}
    cells: dict[tuple, list[dict]] = {}
    for eta in args.etas:
        records = []
        for seed in args.seeds:
            _, te = split_queries(len(data.query_ids), seed, args.test_frac)
            dte = data.subset(te)
            neg_rank = -torch.as_tensor(dte.x[..., 1])  # BM25's order
            for cand, bm25 in (("all", evaluate(neg_rank, dte.y, dte.mask)),
                               ("top10", evaluate(neg_rank[:, :10], dte.y[:, :10],
                                                  dte.mask[:, :10]))):
                cells.setdefault((eta, "bm25", "none", cand), []).append(bm25)
                for name in METRICS:
                    records.append(br.record("ltr_dl19", name, bm25[name], "score", env,
                                             **common, model="none", strategy="bm25",
                                             candidates=CANDIDATES[cand], eta=eta, seed=seed))
            for model in args.models:
                for learner in args.learners:
                    t = time.time()
                    out = run_experiment(data, learner, model, eta, seed,
                                         n_sessions=args.sessions, steps=args.steps,
                                         test_frac=args.test_frac)
                    secs = time.time() - t
                    m = out["metrics"]
                    cells.setdefault((eta, learner, model, "all"), []).append(m)
                    cells.setdefault((eta, learner, model, "top10"), []).append(
                        out["metrics_top"])
                    extra = {}
                    if out["propensity"] is not None:
                        true = (RHO ** eta) / RHO[0] ** eta
                        extra["propensity_estimate"] = [round(float(v), 4)
                                                        for v in out["propensity"]]
                        extra["propensity_true"] = [round(float(v), 4) for v in true]
                    for cand, mm in (("all", m), ("top10", out["metrics_top"])):
                        for name in METRICS:
                            records.append(br.record(
                                "ltr_dl19", name, mm[name], "score", env, **common, model=model,
                                strategy=learner, candidates=CANDIDATES[cand], eta=eta,
                                seed=seed, n_test_queries=mm["n_queries"],
                                train_seconds=round(secs, 2), **extra))
                    print(f"eta={eta} seed={seed} {model:6s} {learner:5s} "
                          f"ndcg@10={m['ndcg@10']:.4f} err@10={m['err@10']:.4f} "
                          f"top10 ndcg@10={out['metrics_top']['ndcg@10']:.4f} "
                          f"({secs:.1f}s)", flush=True)
        br.append(args.out, records)
    summary = []
    print(f"\n{LABEL}: nDCG@10 / ERR@10 on held-out queries, mean +- std over "
          f"{len(args.seeds)} seeds")
    for (eta, learner, model, cand), ms in cells.items():
        row = []
        for name in METRICS:
            s = br.summarise([m[name] for m in ms])
            summary.append(br.record("ltr_dl19", name, s["mean"], "score", env, **common,
                                     model=model, strategy=learner,
                                     candidates=CANDIDATES[cand], eta=eta, std=s["std"],
                                     mean=s["mean"], n_seeds=s["n_seeds"]))
            row.append(f"{s['mean']:.4f} +- {s['std']:.4f}")
        print(f"eta={eta:<4} {cand:5s} {model:6s} {learner:5s} ndcg@10 {row[3]}  "
              f"err@10 {row[4]}")
    br.append(args.out, summary)
    return 0


LOGGERS = {"relevance": "0.5 w.x + 1.5 x_6 + noise",
           "random": "a random permutation per query (rank uncorrelated with relevance)"}


def _gen_lists(seed: int, n_queries: int, n_docs: int = 10, logger_kind: str = "relevance"):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_queries, n_docs, 6)).astype(np.float32)
    z = x @ np.array([1.0, -0.5, 0.8, 0.0, 0.3, 0.0])
    y = np.clip(np.round(0.9 * z + 1.0 + rng.normal(size=z.shape) * 0.5), 0, 3)
    logger = 0.5 * z + 1.5 * x[..., 5] + rng.normal(size=z.shape) * 0.5
    if logger_kind == "random":
        logger = rng.random(size=z.shape)
    return x, y.astype(np.float32), np.argsort(-logger, 1)


def generated(args, argv) -> int:
    import numpy as np
    import torch

    from llmrec import benchrecord as br
    from llmrec.ltr.clicks import RHO, simulate_sessions
    from llmrec.ltr.train import TrainConfig, evaluate, score, train_from_clicks

    torch.set_num_threads(args.threads)
    env = br.environment("cpu", note=f"{args.threads} torch thread(s)")
    common = {"dataset": "generated-lists", "label": LABEL, "logger": args.logger,
              "split": "500 train / 500 test generated queries (test seed = seed + 1000)",
              "candidates": "all 10 documents", "config": {
                  "steps": args.steps, "sessions": args.sessions, "batch_size": 256, "lr": 0.05,
                  "optimiser": "Adagrad", "clip": 5.0, "mlp_hidden": [64, 32], "epsilon": 0.1,
                  "propensity": "rho^eta", "logging_ranker": LOGGERS[args.logger]},
              "command": "python bench/ltr_dl19.py " + " ".join(argv or sys.argv[1:])}
    cells: dict[tuple, list[float]] = {}
    for eta in args.etas:
        records = []
        for seed in args.seeds:
            x, y, shown = _gen_lists(seed, 500, logger_kind=args.logger)
            xt, yt, _ = _gen_lists(seed + 1000, 500)
            mt = np.ones_like(yt, bool)
            sess = simulate_sessions(shown, np.ones_like(shown, bool), y, args.sessions, eta=eta,
                                     seed=seed)
            for model in args.models:
                for learner in args.learners:
                    t = time.time()
                    res = train_from_clicks(torch.as_tensor(x), shown, sess, TrainConfig(
                        learner=learner, model=model, steps=args.steps, seed=seed), grades=y)
                    secs = time.time() - t
                    m = evaluate(score(res.ranker, torch.as_tensor(xt)), yt, mt)
                    cells.setdefault((eta, learner, model), []).append(m["ndcg@10"])
                    extra = {}
                    if res.propensity is not None:
                        extra["propensity_estimate"] = [round(float(v), 4)
                                                        for v in res.propensity]
                        true = (RHO / RHO[0]) ** eta
                        extra["propensity_true"] = [round(float(v), 4) for v in true]
                        extra["propensity_max_rel_error"] = round(float(np.abs(
                            np.asarray(res.propensity)[:len(true)] / true - 1).max()), 4)
                    for name in METRICS:
                        records.append(br.record("ltr_dl19", name, m[name], "score", env,
                                                 **common, model=model, strategy=learner,
                                                 eta=eta, seed=seed,
                                                 train_seconds=round(secs, 2), **extra))
                    print(f"generated eta={eta} seed={seed} {model:6s} {learner:5s} "
                          f"ndcg@10={m['ndcg@10']:.4f} ({secs:.1f}s)", flush=True)
        br.append(args.out, records)
    summary = []
    for (eta, learner, model), vals in cells.items():
        s = br.summarise(vals)
        summary.append(br.record("ltr_dl19", "ndcg@10", s["mean"], "score", env, **common,
                                 model=model, strategy=learner, eta=eta, std=s["std"],
                                 mean=s["mean"], n_seeds=s["n_seeds"]))
        print(f"generated eta={eta:<4} {model:6s} {learner:5s} ndcg@10 "
              f"{s['mean']:.4f} +- {s['std']:.4f}")
    br.append(args.out, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
