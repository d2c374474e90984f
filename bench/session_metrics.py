"""Session and query metrics against real user satisfaction (CPU, no training).

1. ``session-sat-chiir16`` (Jiang & Allan, CHIIR'16): 80 sessions, 388 queries, session qrels,
   the user's rating of each session (Performance, 1-5). Per session: NUM (L = 1000, c_q = 150,
   snippet cost = title + snippet characters, every shown result read, cut at 9), its ablations
   (no reformulation cost, L = 5000, unnormalised session U-measure), sDCG and nsDCG (b = 2,
   bq = 4), session RBP (p = 0.8, b = 0.8), mean / sum / last nDCG@9, number of queries.
   No clicks in this set: NUM's click enhancement (A2) is off.
2. ``tiangong-ram-clicks`` (TianGong-SS-FSD and TianGong-QRef, bootstrap sample 0 of Chen et al.,
   CIKM 2021): per query impression DCG@10, RBP (p = 0.8), nDCG@10 and U-measure on the
   usefulness labels, the same with clicks as relevance, against query satisfaction (0-4).

Pearson, Spearman and Kendall tau-b with percentile-bootstrap 95% intervals (resampling sessions
or impressions). One record per (dataset, metric, correlation).

Usage:
  python bench/session_metrics.py [--data ../shared/data] [--boot 1000] [--seed 0]
      [--out bench/results/session_metrics.jsonl]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Pearson / Spearman from the README of xuanyuan14/Reformulation-Aware-Metrics (their bootstraps;
# metrics computed with cwl_eval, parameters not stated there)
PUBLISHED = {
    ("tiangong-ss-fsd", "DCG@10 (usefulness, linear gain)"): {"pearson": 0.5290,
                                                              "spearman": 0.5022},
    ("tiangong-ss-fsd", "RBP (p=0.8, usefulness)"): {"pearson": 0.5222, "spearman": 0.4898},
    ("tiangong-qref", "DCG@10 (usefulness, linear gain)"): {"pearson": 0.4182,
                                                            "spearman": 0.4434},
    ("tiangong-qref", "RBP (p=0.8, usefulness)"): {"pearson": 0.4180, "spearman": 0.4375},
}
PUBLISHED_SOURCE = ("github.com/xuanyuan14/Reformulation-Aware-Metrics README (RBP, DCG rows; "
                    "uDBN: FSD Pearson 0.6207, QRef 0.4458)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "session_metrics.jsonl"))
    args = ap.parse_args(argv)

    from llmrec import benchrecord as br
    from llmrec.ltr import sessions as S

    env = br.environment("cpu")
    data = Path(args.data)
    command = "python bench/session_metrics.py " + " ".join(argv or sys.argv[1:])
    jobs = []
    chiir = data / "session-sat-chiir16"
    if chiir.is_dir():
        ss = S.load_chiir16(chiir)
        jobs.append(("session-sat-chiir16", "all 80 sessions", "session rating (Performance 1-5)",
                     S.chiir16_metrics(ss), [s.rating for s in ss], {}))
    tg = data / "tiangong-ram-clicks"
    for name, prefix, mx in (("tiangong-ss-fsd", "fsd", 4.0), ("tiangong-qref", "qref", 3.0)):
        for split in ("test", "train"):
            f = tg / f"{prefix}_{split}.tsv.gz"
            if not f.is_file():
                continue
            qs = S.load_tiangong(f)
            jobs.append((name, f"bootstrap sample 0, {split} file", "query satisfaction (0-4)",
                         S.tiangong_metrics(qs, mx), [q.satisfaction for q in qs],
                         {"click_usefulness_agreement": S.click_usefulness_agreement(qs)}))
    if not jobs:
        print(f"no data under {data}", file=sys.stderr)
        return 2
    for dataset, split, target, values, ratings, extra in jobs:
        t = time.time()
        rows = S.satisfaction_table(values, ratings, args.boot, args.seed)
        records = []
        print(f"\n{dataset} ({split}): correlation with {target}, n = {rows[0]['n']}, "
              f"95% bootstrap intervals ({args.boot} resamples)")
        for r in rows:
            pub = PUBLISHED.get((dataset, r["metric"])) if "test" in split else None
            for m in ("pearson", "spearman", "kendall"):
                c = r[m]
                rec = br.record("session_metrics", m, c["r"], "correlation", env,
                                dataset=dataset, split=split, model=r["metric"], target=target,
                                label="real user ratings", ci_low=c["lo"], ci_high=c["hi"],
                                ci="percentile bootstrap 95%", n_boot=args.boot,
                                p_value=c["p"], n=r["n"], n_dropped=r["n_dropped"],
                                seed=args.seed, command=command, **extra)
                if pub and m in pub:
                    rec["published"] = pub[m]
                    rec["published_source"] = PUBLISHED_SOURCE
                records.append(rec)
            print(f"  {r['metric']:44s} " + "  ".join(
                f"{m[:1].upper()} {r[m]['r']:+.3f} [{r[m]['lo']:+.3f}, {r[m]['hi']:+.3f}]"
                for m in ("pearson", "spearman", "kendall")))
        if extra:
            print(f"  clicks vs usefulness > 0: {extra['click_usefulness_agreement']}")
        br.append(args.out, records)
        print(f"  ({time.time() - t:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
