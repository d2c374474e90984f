"""Where does KAR's published gain come from? The decomposition table on ML-1M users 1-2999.

    python bench/kar_regime.py --models din,dcnv2,deepfm,autoint --seeds 0,1,2,3,4 \
        --item item=DIR --user smollm2=DIR --user history=DIR --user history+answer=DIR \
        --workers 15 --out bench/results/kar_regime.jsonl

Rows: backbone x feature regime (``ours``: ``eval/kser/ml1m.yaml``; ``kar``:
``eval/kser/ml1m_kar_regime.yaml``, KAR's feature set and schedule). Columns (``condition``):

- ``none``: the backbone alone; ``stats``: the backbone plus the user's LM-history rating
  statistics as three numeric features (``features.lm_history_stats``: what the history holds,
  given directly, no text and no LLM);
- ``kar:item`` / ``kser:item``: item knowledge only;
- ``kar:user:<name>`` / ``kser:user:<name>`` for each ``--user name=DIR`` (SmolLM2's parsed
  answer; the history text, no LLM; the history text with the LLM answer appended).

In the KAR regime DeepFM keeps knowledge out of its FM term (``fm_dense: false``) as KAR's
DeepFM does; ``--deepfm-fm-off-ours`` adds DeepFM rows in our regime with the same setting.
Every cell is recorded with ``regime``, ``condition``, ``augment``, ``strategy``, ``knowledge``
and the exact config; ``--time-limit`` stops queueing (seed-major order, so the first seeds
complete every column first).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cellpool import cell_records, run_cells  # noqa: E402

from llmrec import benchrecord as br  # noqa: E402
from llmrec.config import load_config  # noqa: E402

METRICS = ("auc", "logloss", "gauc")
REGIMES = {"ours": "eval/kser/ml1m.yaml", "kar": "eval/kser/ml1m_kar_regime.yaml"}


def named(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not Path(path).is_dir():
            raise SystemExit(f"{flag} {v!r}: expected NAME=FOLDER with an existing folder")
        out[name] = path
    return out


def cell_cfg(base, model: str, seed: int, condition: str, folders: dict, fm_off: bool,
             out_dir: Path):
    cfg = copy.deepcopy(base)
    cfg.model, cfg.strategy = model, "all"
    cfg.train.seed = seed
    cfg.train.checkpoint = False
    cfg.output_dir = str(out_dir / f"{condition.replace(':', '_')}-{model}-{seed}")
    if model == "deepfm" and fm_off:
        cfg.model_args["fm_dense"] = False
    if condition in ("none", "stats"):
        cfg.augment = "none"
        return cfg
    method, kind, *name = condition.split(":")
    cfg.augment = method
    k = cfg.knowledge
    k.cache_dir = k.embeddings = k.item_embeddings = k.user_embeddings = None
    k.kinds = [kind]
    setattr(k, f"{kind}_embeddings", folders[kind][name[0] if name else kind])
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="din,dcnv2,deepfm,autoint")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--regimes", default="ours,kar")
    ap.add_argument("--methods", default="kar,kser")
    ap.add_argument("--item", action="append", default=[], help="item=FOLDER (item knowledge)")
    ap.add_argument("--user", action="append", default=[], help="NAME=FOLDER (user knowledge)")
    ap.add_argument("--deepfm-fm-off-ours", action="store_true")
    ap.add_argument("--no-baselines", action="store_true", help="skip the none and stats cells "
                    "(adding knowledge columns to a recorded table; gains pair with its none)")
    ap.add_argument("--data-path", default=None, help="MovieLens-1M folder (overrides the recipes)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=None)
    ap.add_argument("--out", required=True)
    args, overrides = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("kar_regime")

    from llmrec.ranking.pipeline import RankConfig, prepare_features

    t0 = time.perf_counter()
    folders = {"item": named(args.item, "--item"), "user": named(args.user, "--user")}
    if folders["item"] and set(folders["item"]) != {"item"}:
        raise SystemExit("--item takes item=FOLDER")
    work = Path(tempfile.mkdtemp(prefix="kar-regime-"))
    methods = args.methods.split(",")
    conditions = [] if args.no_baselines else ["none", "stats"]
    for m in methods:
        conditions += [f"{m}:item"] * bool(folders["item"])
        conditions += [f"{m}:user:{n}" for n in folders["user"]]
    models = args.models.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    env = br.environment(extra_versions=("numpy", "pandas"))
    bases = {}
    for regime in args.regimes.split(","):
        extra = [f"--data.path={args.data_path}"] if args.data_path else []
        for stats in (False, True):
            b = load_config(RankConfig, REGIMES[regime], [*overrides, *extra,
                                                          f"--features.lm_history_stats={stats}"])
            b.features_path = str(work / f"features-{regime}-{int(stats)}")
            prepare_features(b)
            bases[(regime, stats)] = b
    rows = [(r, m, False) for r in args.regimes.split(",") for m in models]
    if args.deepfm_fm_off_ours and "ours" in args.regimes.split(",") and "deepfm" in models:
        rows.append(("ours", "deepfm", True))
    jobs = []
    for seed in seeds:
        for regime, model, fm_flag in rows:
            fm_off = fm_flag or regime == "kar"
            for cond in conditions:
                if fm_flag and cond in ("none", "stats"):
                    continue  # identical to the plain DeepFM rows: no dense field in the FM term
                base = bases[(regime, cond == "stats")]
                jobs.append({"regime": regime + ("-fm_off" if fm_flag else ""), "model": model,
                             "seed": seed, "condition": cond, "features": base.features_path,
                             "cfg": cell_cfg(base, model, seed, cond, folders, fm_off, work)})
    log.info("features ready in %.0fs; %d cells", time.perf_counter() - t0, len(jobs))
    common = {"dataset": "ML-1M users 1-2999", "split": "kar-test",
              "command": " ".join(["python", *sys.argv])}
    results: dict[tuple, dict] = {}

    def on_result(r: dict) -> None:
        cond = r["condition"]
        method = cond.split(":")[0] if ":" in cond else "none"
        keys = dict(model=r["model"], regime=r["regime"], condition=cond, augment=method,
                    strategy="all", knowledge=(cond.split(":", 1)[1] if ":" in cond
                                               else ("lm_history_stats" if cond == "stats"
                                                     else "none")),
                    seed=r["seed"], **common)
        br.append(args.out, cell_records("kar_regime", r, env, keys, METRICS))
        if "error" in r:
            log.error("%s failed: %s\n%s", (r["regime"], r["model"], cond, r["seed"]),
                      r["error"], r.get("trace"))
            return
        res = r["result"]
        results.setdefault((r["regime"], r["model"], cond), {})[r["seed"]] = res["test"]
        log.info("%-11s %-8s %-26s seed %d: test AUC %.5f (epoch %d/%d, %.0fs)", r["regime"],
                 r["model"], cond, r["seed"], res["test"]["auc"], res["best_epoch"],
                 res["epochs"], r["wall"])

    skipped = run_cells(jobs, args.workers, on_result, args.threads, args.time_limit)
    summary = []
    for (regime, model, cond), per in sorted(results.items()):
        st = br.summarise([p["auc"] for p in per.values()])
        none = results.get((regime.split("-")[0], model, "none"), {})
        paired = [per[s]["auc"] - none[s]["auc"] for s in per if s in none]
        gain = br.summarise(paired) if paired and cond != "none" else None
        extra = ({"gain_mean": gain["mean"], "gain_std": gain["std"],
                  "gain_positive": sum(p > 0 for p in paired)} if gain else {})
        summary.append(br.record("kar_regime", "auc", st["mean"], "", env, model=model,
                                 regime=regime, condition=cond, seed=None, seeds=sorted(per),
                                 **st, **extra, **common))
        g = f" gain {gain['mean']:+.5f} +- {gain['std']:.5f}" if gain else ""
        print(f"{regime:<11} {model:<8} {cond:<26} AUC {st['mean']:.5f} +- {st['std']:.5f} "
              f"(n={st['n_seeds']}){g}")
    br.append(args.out, summary)
    print(f"{skipped} cells not started; total {time.perf_counter() - t0:.0f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
