"""The markdown tables of docs/adsee.md from bench/results/adsee.jsonl (the latest run of each
direction kind): the predictor's held-out error beside the mean predictor's, and per budget the
predicted gain, the random equal-norm edit and the off-manifold checks.

    python bench/adsee_table.py [--results bench/results/adsee.jsonl]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402


def _pm(r, p=4):
    return f"{r['value']:.{p}f} +- {r['std']:.{p}f}"


def tables(recs: list[dict]) -> str:
    out = []
    for kind in ("pca", "projection"):
        mine = [r for r in recs if r.get("directions") == kind]
        if not mine:
            continue
        date = max(r["date"] for r in mine)
        mine = [r for r in mine if r["date"] == date]  # the latest run of this kind
        m = {(r["metric"], r.get("budget"), "baseline" in r): r for r in mine}
        n = mine[0]["n_directions"]
        out.append(f"### {kind} directions ({n}), {mine[0]['dataset']}, commit "
                   f"{mine[0]['commit']}, {date}\n")
        out.append("| | RMSE | MAE | Pearson | Spearman | nDCG@10 |\n|---|---|---|---|---|---|")
        get = lambda k, b=False: m.get((f"heldout_{k}", None, b))  # noqa: E731
        out.append("| predictor | " + " | ".join(
            _pm(get(k), 4 if k in ("rmse", "mae") else 3)
            for k in ("rmse", "mae", "pearson", "spearman", "ndcg@10")) + " |")
        out.append(f"| mean predictor | {_pm(get('rmse', True))} | {_pm(get('mae', True))} | - | "
                   f"- | {_pm(get('ndcg@10', True), 3)} (random order) |\n")
        out.append("| cosine budget | predicted gain, genetic | gain / held-out RMSE | random "
                   "edit, equal norm | distance used | NN distance edited / original | nearest "
                   "is self | outside catalogue range (unedited) | nearest other item's true "
                   "rate - item's (unedited) |\n|---|---|---|---|---|---|---|---|---|")
        for b in sorted({r["budget"] for r in mine if r.get("budget") is not None}):
            g = lambda k: m[(k, b, False)]  # noqa: E731
            orig = m.get(("outside_catalogue_range_original", b, False))
            out.append(
                f"| {b:g} | {_pm(g('predicted_gain'))} | "
                f"{g('predicted_gain_over_heldout_rmse')['value']:.2f} | "
                f"{_pm(g('random_edit_predicted_gain'))} | {g('distance_used')['value']:.4f} | "
                f"{g('nn_distance_edited')['value']:.3f} / "
                f"{g('nn_distance_original')['value']:.3f} | "
                f"{g('nearest_is_self')['value']:.2f} | "
                f"{g('outside_catalogue_range')['value']:.2f}"
                + (f" ({orig['value']:.3f})" if orig else "") + " | "
                f"{g('nn_true_rate_gain_edited')['value']:+.3f} "
                f"({g('nn_true_rate_gain_original')['value']:+.3f}) |")
        out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="bench/results/adsee.jsonl")
    args = ap.parse_args(argv)
    print(tables(br.read(args.results, check=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
