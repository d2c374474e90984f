"""OCARM on the MovieLens-1M return-visit **proxy** (:mod:`llmrec.retention.proxy`), on the CPU:
event counts, then the four rows over seeds.

    python bench/ocarm_ml1m.py --config eval/retention/ml1m_ocarm.yaml \
        --out bench/results/ocarm_ml1m.jsonl

Protocol: ML-1M users 1-2999 through the project's loader; sessions, returns, labels and the
time split as in :class:`~llmrec.retention.proxy.ProxyConfig` (the full definition goes into
every record as ``proxy``). First the counts (anchors, positives per horizon, per split) are
recorded. Then, per horizon in ``train_horizons`` and per seed (the model seed: initialisation,
batch order, dropout; the split is fixed by time):

- ``teacher``: observable + onboarding content, scored with the content (leaky upper bound, not
  deployable);
- ``content_zero_at_serve``: the same trained teacher scored with every content input zeroed;
- ``student_only``: observable-only encoder, BCE only (lambda 0);
- ``ocarm``: the same student with BCE + lambda * alignment to the frozen teacher's ``h_T``, for
  each (lambda, distance) of the grid; the reported OCARM row is the grid point with the best
  mean **valid** AUC over seeds (chosen on valid, reported on test; every grid point is recorded).

Early stopping on valid AUC (patience from the recipe). Metrics on the test split: AUC and GAUC
(per-user AUC weighted by the user's anchors over users with both labels; that user count is
recorded). One record per (row, grid point, seed, horizon, split, metric), then summary records
(mean, std over seeds) of the test metrics. Before the models, single-feature references: the test
AUC / GAUC of each raw numeric observable feature, and of the number of onboarding items
(privileged), as a score (``model = feature:<name>``; no sign flip, so < 0.5 means the feature
ranks inversely).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402
from llmrec.config import load_config, option, to_dict  # noqa: E402
from llmrec.retention.model import OcarmConfig  # noqa: E402
from llmrec.retention.proxy import ProxyConfig  # noqa: E402

BENCH = "ocarm_ml1m"
DATASET = "movielens-1m users 1-2999, return-visit proxy"


@dataclass
class OcarmBenchConfig:
    """What bench/ocarm_ml1m.py runs: the proxy, the models and the OCARM grid."""

    proxy: ProxyConfig = option(default_factory=ProxyConfig, help="the return-visit proxy")
    model: OcarmConfig = option(default_factory=OcarmConfig, help="widths and training")
    seeds: list[int] = option([0, 1, 2], help="model seeds")
    train_horizons: list[int] = option([7], help="label horizons (days) to train and report")
    lams: list[float] = option([0.1, 1.0, 10.0], help="OCARM lambda grid")
    distances: list[str] = option(["l2", "cosine"], help="OCARM alignment distances")
    threads: int = option(1, help="torch CPU threads")
    notes: list[str] = field(default_factory=list, metadata={"help": "free-text notes recorded"})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="eval/retention/ml1m_ocarm.yaml")
    ap.add_argument("--out", default=None, help="JSONL file to append the records to")
    args, overrides = ap.parse_known_args(argv)
    cfg = load_config(OcarmBenchConfig, args.config, overrides)

    import torch

    from llmrec.retention.model import run_seed
    from llmrec.retention.proxy import load_events

    torch.set_num_threads(cfg.threads)
    env = br.environment("cpu")
    definition = cfg.proxy.definition()
    ev = load_events(cfg.proxy)
    counts = ev.counts()
    command = "python bench/ocarm_ml1m.py " + " ".join(argv if argv is not None else sys.argv[1:])
    common = {"dataset": DATASET, "proxy": definition, "command": command}
    records = [br.record(BENCH, "anchors", counts["anchors"], "count", env, **common,
                         counts=counts)]
    for h, c in counts["horizons"].items():
        records.append(br.record(BENCH, "positives", c["positives"], "count", env, **common,
                                 horizon_days=h, known=c["known"], censored=c["censored"],
                                 splits=c["splits"]))
    print(json.dumps(counts, indent=1))
    if counts["anchors"] < 2000:
        print(f"WARNING: only {counts['anchors']} return anchors (< 2,000): the proxy is thin")
    if args.out:
        br.append(args.out, records)

    # single-feature references on test: how much a lone observable feature (or the onboarding
    # content's length) ranks, globally and within users
    from llmrec.retention.model import evaluate
    from llmrec.retention.proxy import NUM_FEATURES

    refs = []
    for h in cfg.train_horizons:
        idx = ev.split_index("test", h)
        y = torch.as_tensor(ev.labels[h][idx])
        feats = {f: ev.num[idx, j] for j, f in enumerate(NUM_FEATURES)}
        feats["content_count (privileged)"] = (ev.content_items[idx] > 0).sum(1)
        for name, v in feats.items():
            r = evaluate(y, torch.as_tensor(v, dtype=torch.float64), ev.user[idx])
            for metric in ("auc", "gauc"):
                refs.append(br.record(BENCH, metric, r[metric], metric.upper(), env, **common,
                                      model=f"feature:{name}", split="test", horizon_days=h,
                                      n=r["n"], gauc_users=r["gauc_users"]))
            print(f"horizon {h} feature {name}: test AUC {r['auc']:.3f}, GAUC {r['gauc']:.3f}")
    if args.out:
        br.append(args.out, refs)

    grid = list(itertools.product(cfg.lams, cfg.distances))
    config = {"model": to_dict(cfg.model), "grid": grid, "seeds": cfg.seeds}
    t_all = time.perf_counter()
    for h in cfg.train_horizons:
        rows = []
        for seed in cfg.seeds:
            t0 = time.perf_counter()
            out = run_seed(ev, cfg.model, seed, grid=grid, horizon=h)
            batch = []
            for r in out:
                for split in ("valid", "test"):
                    for metric in ("auc", "gauc"):
                        batch.append(br.record(
                            BENCH, metric, r[split][metric], metric.upper(), env, **common,
                            model=r["row"], split=split, seed=seed, horizon_days=h,
                            lam=r.get("lam"), distance=r.get("distance"),
                            deployable=r["deployable"], best_epoch=r["best_epoch"],
                            epochs_run=r["epochs_run"], wall_seconds=r["wall_seconds"],
                            n=r[split]["n"], positives=r[split]["positives"],
                            gauc_users=r[split]["gauc_users"],
                            gauc_anchors=r[split]["gauc_anchors"], config=config))
            rows.extend(out)
            if args.out:
                br.append(args.out, batch)
            print(f"horizon {h} seed {seed}: {len(out)} models in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)

        def key(r):
            return (r["row"], r.get("lam") if r["row"] == "ocarm" else None,
                    r.get("distance") if r["row"] == "ocarm" else None)

        groups = {}
        for r in rows:
            groups.setdefault(key(r), []).append(r)
        ocarm = {k: v for k, v in groups.items() if k[0] == "ocarm"}
        best = max(ocarm, key=lambda k: br.summarise(r["valid"]["auc"] for r in ocarm[k])["mean"])
        summary = []
        print(f"\nhorizon {h} days, test split, mean +- std over seeds {cfg.seeds}")
        print("| row | deployable | lambda, distance | AUC | GAUC | GAUC users |\n"
              "|---|---|---|---|---|---|")
        order = [("student_only", None, None), ("teacher", None, None),
                 ("content_zero_at_serve", None, None), best]
        order += sorted(k for k in ocarm if k != best)
        for k in order:
            rs = groups[k]
            s_auc = br.summarise(r["test"]["auc"] for r in rs)
            s_gauc = br.summarise(r["test"]["gauc"] for r in rs)
            s_vauc = br.summarise(r["valid"]["auc"] for r in rs)
            tag = "ocarm (selected on valid)" if k == best else k[0]
            for metric, s in (("auc", s_auc), ("gauc", s_gauc)):
                summary.append(br.record(
                    BENCH, metric, s["mean"], metric.upper(), env, **common, model=k[0],
                    split="test", horizon_days=h, lam=k[1], distance=k[2], selected=k == best,
                    deployable=k[0] != "teacher", mean=s["mean"], std=s["std"],
                    n_seeds=s["n_seeds"], valid_auc_mean=s_vauc["mean"],
                    gauc_users=rs[0]["test"]["gauc_users"], config=config))
            lamd = f"{k[1]}, {k[2]}" if k[0] == "ocarm" else "-"
            print(f"| {tag} | {'no (leaky)' if k[0] == 'teacher' else 'yes'} | {lamd} | "
                  f"{s_auc['mean']:.4f} +- {s_auc['std']:.4f} | "
                  f"{s_gauc['mean']:.4f} +- {s_gauc['std']:.4f} | "
                  f"{rs[0]['test']['gauc_users']} |")
        if args.out:
            br.append(args.out, summary)
    print(f"\n{time.perf_counter() - t_all:.0f} s on {env['device']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
