"""AdSEE's fitting part on ML-1M (users 1-2999): predicted like-rate gain of genetic edits of
item text vectors vs the cosine edit budget, with the predictor's held-out error beside it.

    OMP_NUM_THREADS=1 python bench/adsee_ml1m.py --config eval/adsee/movielens.yaml \
        [--vectors FILE] [--record bench/results/adsee.jsonl] [--key=value ...]

Runs :func:`llmrec.adsee.study.run_study` (every ``--key=value`` is an option of
``llmrec adsee run``), writes ``<output_dir>/results.json``, prints the markdown table and, with
``--record``, appends one record per number (mean, std and n_seeds over the seeds) via
``llmrec.benchrecord``: the held-out error of the predictor and of the mean predictor, and per
budget the predicted gain, the random equal-norm edit's gain, the distance used and the
off-manifold checks, each budget's records carrying the held-out RMSE / MAE / Pearson as
conditions. CPU, minutes. The gains are predicted, not observed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

EDIT_METRICS = {  # row key -> (metric name, unit)
    "gain_mean": ("predicted_gain", "like-rate points (predicted)"),
    "random_gain_mean": ("random_edit_predicted_gain", "like-rate points (predicted)"),
    "gain_over_rmse": ("predicted_gain_over_heldout_rmse", "ratio"),
    "distance_mean": ("distance_used", "cosine distance"),
    "random_distance_mean": ("random_edit_distance", "cosine distance"),
    "base_mean": ("predicted_rate_before", "like rate (predicted)"),
    "edited_mean": ("predicted_rate_after", "like rate (predicted)"),
    "nn_distance_edited": ("nn_distance_edited", "cosine distance"),
    "nn_distance_original": ("nn_distance_original", "cosine distance"),
    "nearest_is_self": ("nearest_is_self", "fraction"),
    "outside_catalogue_range": ("outside_catalogue_range", "fraction"),
    "outside_catalogue_range_original": ("outside_catalogue_range_original", "fraction"),
    "nn_true_rate_gain": ("nn_true_rate_gain_edited", "like-rate points (observed)"),
    "nn_true_rate_gain_original": ("nn_true_rate_gain_original", "like-rate points (observed)"),
    "predicted_above_1": ("predicted_above_1", "fraction"),
}
HELDOUT = ("rmse", "mae", "mse", "pearson", "spearman", "ndcg@10", "mean_rmse", "mean_mae",
           "mean_mse", "mean_ndcg@10")


def records(result: dict, command: str) -> list[dict]:
    env = br.environment()
    cfg = result["config"]
    s = result["summary"]
    h = s["heldout"]
    common = dict(dataset="ML-1M users 1-2999", model=cfg["regressor"]["model"],
                  embedder=result["vectors"].get("embedder") or cfg["embedder"],
                  vectors=result["vectors"], target=result["target"], n_items=result["n_items"],
                  split="test items", directions=cfg["directions"],
                  n_directions=cfg["n_directions"], config=cfg, command=command)
    out = []
    for k in HELDOUT:
        if k not in h:
            continue
        base = k.startswith("mean_")
        name = k[5:] if base else k
        out.append(br.record("adsee", f"heldout_{name}", h[k]["mean"], "like rate"
                             if name in ("rmse", "mae") else "score", env,
                             **({"baseline": "mean predictor (random order for ndcg)"}
                                if base else {}), std=h[k]["std"], n_seeds=h[k]["n_seeds"], **common))
    beside = {f"heldout_{k}": h[k]["mean"] for k in ("rmse", "mae", "pearson")}
    for row in s["edits"]:
        for key, (metric, unit) in EDIT_METRICS.items():
            if key not in row:
                continue
            v = row[key]
            out.append(br.record("adsee", metric, v["mean"], unit, env, std=v["std"],
                                 n_seeds=v["n_seeds"], budget=row["budget"],
                                 distance=row["distance"], within_budget=row["within_budget"],
                                 strategy="genetic" if not key.startswith("random")
                                 else "random equal norm",
                                 **beside, **common))
    rw = s.get("rewrite")
    if rw:  # LLM rewrites of the texts (first seed only)
        for key, unit in (("gain_mean", "like-rate points (predicted)"),
                          ("distance_mean", "cosine distance"), ("improved", "fraction")):
            out.append(br.record("adsee", f"rewrite_{key}", rw[key], unit, env,
                                 strategy="llm rewrite", llm=rw["llm"], budget=rw["budget"],
                                 distance="cosine", n_rewrite_items=rw["n_items"],
                                 generated=rw["generated"], rejected=rw["rejected"],
                                 seed=cfg["seeds"][0], **beside, **common))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="eval/adsee/movielens.yaml")
    ap.add_argument("--record", default=None, help="JSONL to append the records to")
    args, rest = ap.parse_known_args(argv)

    from llmrec.adsee.study import AdseeConfig, format_table, run_study
    from llmrec.artifacts import write_json_atomic, write_meta
    from llmrec.config import load_config

    cfg = load_config(AdseeConfig, args.config, rest)
    t0 = time.perf_counter()
    result = run_study(cfg)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", result)
    write_meta(out, cfg)
    print(format_table(result))
    print(f"\n{result['seconds']} s; written {out / 'results.json'}")
    if args.record:
        recs = records(result, " ".join(["python", *sys.argv]))
        br.append(args.record, recs)
        print(f"appended {len(recs)} records to {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
