"""The KSER comparison table: none | KAR | KSER (all / extractor-only / without ESFNet / without
alignment) x backbones x seeds, mean +- std, one JSON object per cell.

    python bench/kser_quality.py --config eval/kser/ml1m.yaml --models din,dcnv2,deepfm,autoint \
        --seeds 0,1,2,3,4 --workers 8 --dataset-label "ML-1M users 1-2999" \
        --out bench/results/kser_ml1m.jsonl

Features are encoded once and the knowledge embedded once (``knowledge.cache_dir`` is embedded on
demand, content-addressed); then every (variant, backbone, seed) run is a job for a pool of
worker processes that share one GPU (CTR steps are launch-bound, so several processes keep it
busy). Extractor-only runs reuse the ``none`` run of the same backbone and seed as their frozen
backbone, so they start after it. ``bench/kser_table.py`` renders the file into docs/kser.md.

Completing a table: ``--skip-existing bench/results/kser_ml1m.jsonl`` runs only the (variant,
backbone, seed) cells that file lacks *with the same settings* (``kser_table.settings_key``: the
exact config less seed, backbone and temporary paths); it stops before any training if the file
has cells of this dataset but none with these settings (a changed flag would otherwise silently
start a new table). An extractor-only cell whose ``none`` cell is already recorded trains its
frozen backbone inside the job (``run_train`` does, with the same seed), kept as
``backbone_result``. ``--order model`` queues backbone by backbone in ``--models`` order, so a
run cut short by ``--time-limit`` completes the first backbones first.
"""

from __future__ import annotations

import argparse
import copy
import logging
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmrec import benchrecord as br  # noqa: E402
from kser_table import settings_key  # noqa: E402

from llmrec.config import load_config, to_dict  # noqa: E402

METRICS = ("auc", "gauc", "logloss")
# variant -> (augment, strategy, knowledge overrides)
VARIANTS = {
    "none": ("none", "all", {}),
    "kar": ("kar", "all", {}),
    "kser": ("kser", "all", {}),
    "kser_extractor": ("kser", "extractor", {}),
    "kser_no_esfnet": ("kser", "all", {"esfnet": False}),
    "kser_no_align": ("kser", "all", {"alignment": "mlp"}),
}

_FS = None  # the worker's feature set, loaded once per process


def _init_worker(features_path: str, threads: int) -> None:
    global _FS
    import torch

    from llmrec.ranking.features import FeatureSet

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)
    _FS = FeatureSet.load(features_path)


def _run_job(job: dict) -> dict:
    from llmrec.ranking.pipeline import run_train

    t = time.perf_counter()
    try:
        res = run_train(job["cfg"], features=_FS)
    except Exception as exc:  # one failed cell must not lose the others
        import traceback

        return {**job, "error": repr(exc)[:500], "trace": traceback.format_exc()[-2000:]}
    keep = {k: res[k] for k in ("valid", "test", "best_epoch", "epochs", "n_parameters",
                                "n_trainable", "coverage", "backbone_result", "train_seconds")
            if k in res}
    return {**job, "result": keep, "wall": time.perf_counter() - t}


def make_cfg(base, variant: str, model: str, seed: int, out_dir: Path, none_dirs: dict):
    augment, strategy, overrides = VARIANTS[variant]
    cfg = copy.deepcopy(base)
    cfg.model, cfg.augment, cfg.strategy = model, augment, strategy
    cfg.train.seed = seed
    cfg.train.checkpoint = False
    cfg.output_dir = str(out_dir / f"{variant}-{model}-{seed}")
    for k, v in overrides.items():
        setattr(cfg.knowledge, k, v)
    if strategy == "extractor":
        # None: no none run of this seed here (already recorded): run_train trains the backbone
        cfg.knowledge.backbone_path = none_dirs.get((model, seed))
    return cfg


def existing_cells(path: str, common: dict, benchmark: str, jobs: list[dict], log) -> dict:
    """(variant, model, seed) -> {metric: value} of the jobs that ``path`` already records with
    the same settings. Exits if the file has cells of this dataset but none with these settings."""
    recs = [r for r in br.read(path) if r.get("seed") is not None and r.get("value") is not None
            and r.get("variant") and r.get("dataset") == common["dataset"]]
    if not recs:
        log.info("--skip-existing: no cells of %s in %s", common["dataset"], path)
        return {}
    want = {}
    for job in jobs:
        probe = {"benchmark": benchmark, "config": to_dict(job["cfg"]), **common}
        want[(job["variant"], job["model"], job["seed"])] = settings_key(probe)
    found: dict[tuple, dict] = {}
    for r in recs:
        key = (r["variant"], r["model"], r["seed"])
        if key in want and settings_key(r) == want[key]:
            found.setdefault(key, {})[r["metric"]] = r["value"]
    found = {k: v for k, v in found.items() if set(METRICS) <= set(v)}
    if not found:
        import difflib
        import json

        r = recs[-1]
        key = (r["variant"], r["model"], r["seed"])
        mine = want.get(key) or next(iter(want.values()))
        diff = difflib.unified_diff(json.dumps(json.loads(settings_key(r)), indent=1).splitlines(),
                                    json.dumps(json.loads(mine), indent=1).splitlines(),
                                    "recorded", "this run", lineterm="", n=0)
        log.error("--skip-existing: %s has %d cells of %s, none with this run's settings:\n%s",
                  path, len(recs), common["dataset"], "\n".join(diff))
        raise SystemExit(4)
    log.info("--skip-existing: %d of %d cells already in %s with the same settings",
             len(found), len(jobs), path)
    return found


def step_time_ms(base, fs, tables, model: str, steps: int = 20) -> float:
    """Mean wall time of a KSER training step (after 5 warm-up steps) on the train device."""
    import torch

    from llmrec.ranking.knowledge.augment import build_augmented, field_means
    from llmrec.ranking.trainer import Trainer

    cfg = copy.deepcopy(base)
    cfg.train.checkpoint = False
    m = build_augmented(model, dict(cfg.model_args), fs.spec, tables, "kser", cfg.knowledge,
                        "fields", means=field_means(tables, fs))
    tr = Trainer(m, fs, cfg.train)
    batches = tr.epoch_batches()[: steps + 5]
    for i, idx in enumerate(batches):
        if i == 5:
            tr._sync()
            t = time.perf_counter()
        tr.train_step(idx)
    tr._sync()
    out = (time.perf_counter() - t) * 1000 / max(1, len(batches) - 5)
    fs.to("cpu")
    del tr, m
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def explain_run(run_dir: Path, args, dataset: str, env: dict, log) -> None:
    """What ESFNet learned: explanations of a few items and users, one JSON file."""
    import json

    from llmrec.knowledge.explain import _load_run, explain_entity

    if not (run_dir / "best.safetensors").is_file():
        log.warning("no KSER run at %s to explain", run_dir)
        return
    _, fs, model, tables = _load_run(run_dir)
    out = []
    for kind, ids in (("item", args.explain_items), ("user", args.explain_users)):
        for eid in [i for i in ids.split(",") if i]:
            try:
                out.append(explain_entity(model, fs, tables, kind, eid, n=3))
            except Exception as exc:  # an id without knowledge: say so, go on
                out.append({"entity": kind, "id": eid, "error": str(exc)})
    path = Path(args.out).with_name(Path(args.out).stem + "_explain.json")
    path.write_text(json.dumps({"run": str(run_dir), "dataset": dataset, "date": env["date"],
                                "commit": env["commit"], "device": env["device"],
                                "explanations": out}, indent=1, ensure_ascii=False))
    log.info("explanations of %d entities -> %s", len(out), path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="RankConfig YAML with a knowledge section")
    ap.add_argument("--models", default="din,dcnv2,deepfm,autoint")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per worker")
    ap.add_argument("--out", required=True, help="JSONL file to append the cells to")
    ap.add_argument("--dataset-label", default=None)
    ap.add_argument("--benchmark", default="kser_quality")
    ap.add_argument("--condition", default=None, help="free-form label of the setting (probes)")
    ap.add_argument("--time-limit", type=float, default=None,
                    help="seconds after which no new job starts (finished cells are kept)")
    ap.add_argument("--explain-items", default="", help="item ids to explain with the KSER model "
                    "of the first backbone and seed (JSON written next to --out)")
    ap.add_argument("--max-step-ms", type=float, default=None,
                    help="before the pool starts, time a few KSER training steps of the first "
                         "backbone and stop if one takes longer than this (saves device time)")
    ap.add_argument("--explain-users", default="", help="user ids to explain likewise")
    ap.add_argument("--skip-existing", default=None, metavar="JSONL",
                    help="run only the cells this file lacks with the same settings "
                         "(resume or complete a table; see the module docstring)")
    ap.add_argument("--order", choices=("seed", "model"), default="seed",
                    help="queue seed by seed (default) or backbone by backbone (--models order)")
    args, overrides = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("kser_quality")

    from llmrec.ranking.knowledge.store import embeddings_folder, load_knowledge
    from llmrec.ranking.pipeline import RankConfig, prepare_features
    from llmrec.ranking.popularity import evaluate_popularity

    t0 = time.perf_counter()
    base = load_config(RankConfig, args.config, overrides)
    work = Path(tempfile.mkdtemp(prefix="kser-bench-"))
    if not base.features_path:
        base.features_path = str(work / "features")
    fs = prepare_features(base)
    # embed once here (content-addressed), so the workers only load vectors
    for kind in base.knowledge.kinds:
        folder = str(embeddings_folder(base.knowledge, kind))
        setattr(base.knowledge, f"{kind}_embeddings", folder)
    tables = load_knowledge(base.knowledge, {k: fs.row_ids(k) for k in ("user", "item")})
    log.info("features and knowledge ready in %.1fs: %s", time.perf_counter() - t0,
             {k: t.summary() for k, t in tables.items()})
    if args.max_step_ms:
        ms = step_time_ms(base, fs, tables, args.models.split(",")[0])
        log.info("KSER training step: %.1f ms", ms)
        if ms > args.max_step_ms:
            log.error("a KSER step takes %.1f ms > --max-step-ms %.1f: stopping", ms,
                      args.max_step_ms)
            return 3
    env = br.environment(extra_versions=("datasets", "pyarrow", "numpy", "pandas"))
    dataset = args.dataset_label or fs.info.get("dataset", base.data.name)
    common = {"dataset": dataset, "split": f"{base.split.protocol}-test",
              "command": " ".join(["python", *sys.argv])}
    if args.condition:
        common["condition"] = args.condition
    pop = evaluate_popularity(fs)
    if args.skip_existing:  # same split and features: the popularity baseline must agree
        old = [r["value"] for r in br.read(args.skip_existing) if r.get("model") == "popularity"
               and r.get("metric") == "auc" and r.get("dataset") == dataset]
        if old and abs(old[-1] - pop["test"]["auc"]) > 1e-6:
            log.warning("popularity AUC %.6f differs from the recorded %.6f: a different split "
                        "or features?", pop["test"]["auc"], old[-1])
        elif old:
            log.info("popularity AUC %.6f as recorded", pop["test"]["auc"])
    records = [br.record(args.benchmark, m, pop["test"][m], "", env, model="popularity",
                         augment="none", strategy="-", variant="popularity", seed=None, **common)
               for m in METRICS]
    br.append(args.out, records)

    models = args.models.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    if "kser_extractor" in variants and "none" not in variants:
        raise SystemExit("kser_extractor reuses the none runs as frozen backbones: include none")
    none_dirs = {(m, s): str(work / f"none-{m}-{s}") for m in models for s in seeds}
    # seed-major order (default), so a run cut short by --time-limit still has every variant for
    # its first seeds; an extractor-only job is queued (first) as soon as its frozen backbone exists
    order = ([(s, m) for s in seeds for m in models] if args.order == "seed"
             else [(s, m) for m in models for s in seeds])
    cells = [{"variant": v, "model": m, "seed": s, "cfg": make_cfg(base, v, m, s, work, none_dirs)}
             for s, m in order for v in variants]
    existing = (existing_cells(args.skip_existing, common, args.benchmark, cells, log)
                if args.skip_existing else {})
    todo = {(c["variant"], c["model"], c["seed"]) for c in cells} - set(existing)
    queue = []
    for c in cells:
        key = (c["variant"], c["model"], c["seed"])
        if key not in todo:
            continue
        if c["variant"] == "kser_extractor":
            if ("none", c["model"], c["seed"]) in todo:
                continue  # queued when its none run finishes
            c["cfg"] = make_cfg(base, "kser_extractor", c["model"], c["seed"], work, {})
        queue.append(c)
    log.info("%d cells to run (%d already recorded)", len(todo), len(existing))
    results: dict[tuple, dict] = {}

    def record_job(r: dict) -> None:
        key = (r["variant"], r["model"], r["seed"])
        cfg = r["cfg"]
        aug, strategy, _ = VARIANTS[r["variant"]]
        keys = dict(model=r["model"], augment=aug, strategy=strategy, variant=r["variant"],
                    seed=r["seed"], **common)
        if "error" in r:
            log.error("%s failed: %s\n%s", key, r["error"], r.get("trace", ""))
            br.append(args.out, [br.record(args.benchmark, "auc", None, "", env, error=r["error"],
                                           **keys)])
            return
        res = r["result"]
        results[key] = res
        conf = to_dict(cfg)
        recs = [br.record(args.benchmark, m, res["test"][m], "", env, best_epoch=res["best_epoch"],
                          epochs=res["epochs"], valid_auc=res["valid"]["auc"],
                          wall_seconds=round(r["wall"], 2), n_parameters=res.get("n_parameters"),
                          n_trainable=res.get("n_trainable"), coverage=res.get("coverage"),
                          backbone_result=res.get("backbone_result"), config=conf, **keys)
                for m in METRICS]
        br.append(args.out, recs)
        log.info("%-15s %-8s seed %d: test AUC %.5f LogLoss %.5f (epoch %d/%d, %.1fs)",
                 r["variant"], r["model"], r["seed"], res["test"]["auc"], res["test"]["logloss"],
                 res["best_epoch"], res["epochs"], r["wall"])

    deadline = t0 + args.time_limit if args.time_limit else None
    fs_path = base.features_path
    del fs
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers, initializer=_init_worker, initargs=(fs_path, args.threads)) as pool:
        pending = []
        while queue or pending:
            late = deadline is not None and time.perf_counter() > deadline
            while queue and not late and len(pending) < 2 * args.workers:
                job = queue.pop(0)
                pending.append((job, pool.apply_async(_run_job, (job,))))
            if late and queue:
                log.warning("time limit reached: %d jobs not started", len(queue))
                queue = []
            done = [(j, p) for j, p in pending if p.ready()]
            if not done:
                time.sleep(0.05)
                continue
            for j, p in done:
                pending.remove((j, p))
                r = p.get()
                record_job(r)
                if (r["variant"] == "none" and ("kser_extractor", r["model"], r["seed"]) in todo
                        and "error" not in r):
                    queue.insert(0, {"variant": "kser_extractor", "model": r["model"],
                                     "seed": r["seed"], "cfg": make_cfg(
                                         base, "kser_extractor", r["model"], r["seed"], work,
                                         none_dirs)})

    # summaries over every seed with these settings: this run's and the recorded (--skip-existing)
    tests = {k: r["test"] for k, r in results.items()}
    tests.update({k: v for k, v in existing.items() if k not in tests})
    summary = []
    for m in models:
        for v in variants:
            done = [s for s in seeds if (v, m, s) in tests]
            per = [tests[(v, m, s)] for s in done]
            if not per:
                continue
            aug, strategy, _ = VARIANTS[v]
            for metric in METRICS:
                st = br.summarise([p[metric] for p in per])
                summary.append(br.record(args.benchmark, metric, st["mean"], "", env, model=m,
                                         augment=aug, strategy=strategy, variant=v, seed=None,
                                         seeds=done, seeds_this_run=[s for s in done
                                                                     if (v, m, s) in results],
                                         **st, **common))
            st = br.summarise([p["auc"] for p in per])
            print(f"{m:<8} {v:<15} AUC {st['mean']:.5f} +- {st['std']:.5f} (n={st['n_seeds']})")
    br.append(args.out, summary)
    if args.explain_items or args.explain_users:
        explain_run(work / f"kser-{models[0]}-{seeds[0]}", args, dataset, env, log)
    print(f"popularity AUC {pop['test']['auc']:.5f}; total {time.perf_counter() - t0:.0f}s "
          f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
