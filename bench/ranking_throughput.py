"""Training throughput of the ranking engine against FuxiCTR, on the same data and batch size.

    python bench/ranking_throughput.py --config eval/ranking/throughput_ml1m.yaml \
        --out bench/results/ranking_throughput.jsonl [--fuxictr] [--fuxictr-workers 1,8] \
        [--batch-sizes 4096,16384,65536] [--quality --quality-seeds 0,1,2,3,4] \
        [--criteo-rows 20000000]

For DCNv2 (embedding 32, 3 cross layers, MLP 400-400) and DIN (attention MLP 64, MLP 200-80),
both with the 10-item behaviour sequence, on ML-1M users 1-2999 (KAR protocol):

* ours, per ``train.step`` variant (eager, compile, compile + reduce-overhead, graph = the whole
  step as one CUDA graph, graph-eager = the same without compilation, default = what a recipe
  gets, ``step: auto``): samples/s over ``--timed-epochs`` full epochs of our trainer's step
  (device-resident data, index-slice batches, bf16 autocast, fused Adam), after one warm-up epoch
  that also absorbs compilation and capture (its seconds are recorded, with the step's own
  compile / capture times); peak GPU memory; at ``--profile-batch`` the GPU busy share (union of
  kernel intervals over wall time, torch.profiler) and kernels per step;
* other batch sizes (``--batch-sizes``) for ``--sweep-variants``;
* FuxiCTR's own DCNv2 / DIN from its wheel, fed by its own LongCTR DataLoader, at the recipe's
  batch size, timed over its ``train_epoch`` (second epoch: steady state), for each worker count;
  the speed-up is ours on the default path over it;
* with ``--quality``: test AUC / gAUC / LogLoss after training with early stopping on validation
  AUC, per ``--quality-variants`` and seed (is the fast path as accurate as the eager one?);
* with ``--criteo-rows``: a Criteo-shaped synthetic set generated on the GPU
  (:func:`llmrec.ranking.synthetic.criteo_like_features`: 26 categorical fields with Criteo's
  cardinalities capped at ``--criteo-max-vocab``, 13 numeric), samples/s, epoch seconds, peak
  memory and test AUC after the warm-up + timed epochs, per batch size.

Records go to ``--out`` (one object per measurement, ``baseline`` names what a ratio compares to).
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

BENCH = "ranking_throughput"
HP = {
    "dcnv2": {"embed_dim": 32, "cross_layers": 3, "hidden": [400, 400], "dropout": 0.0},
    "din": {"embed_dim": 32, "attention_hidden": [64], "hidden": [200, 80], "dropout": 0.0},
    "dnn": {"embed_dim": 32, "hidden": [400, 400], "dropout": 0.0},
}
# the Criteo-shaped set: BARS-style sizes for Criteo (embedding 16, MLP 400-400-400)
CRITEO_HP = {
    "dcnv2": {"embed_dim": 16, "cross_layers": 3, "hidden": [400, 400, 400], "dropout": 0.0},
    "dnn": {"embed_dim": 16, "hidden": [400, 400, 400], "dropout": 0.0},
}


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


VARIANTS = {  # name -> TrainConfig overrides
    "eager": {"step": "eager"},
    "compile": {"step": "compile"},
    "compile-reduce-overhead": {"step": "compile", "compile_mode": "reduce-overhead"},
    "graph": {"step": "graph", "graph_compile": "always"},
    "graph-eager": {"step": "graph", "graph_compile": "never"},
    "default": {},  # what a recipe gets: train.step auto
}


def _peak_reset():
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_gib():
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def profile_steps(trainer, n_steps: int = 50) -> dict:
    """GPU busy share and kernels per step over ``n_steps`` steady-state steps (torch.profiler):
    the union of kernel intervals over the wall time from the first step to the last."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    batches = [b for b in trainer.epoch_batches() if b.numel() == trainer._graph_batch][:n_steps]
    for idx in batches[:3]:
        trainer.train_step(idx)
    _sync()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for idx in batches:
            trainer.train_step(idx)
        _sync()
        wall_us = (time.perf_counter() - t0) * 1e6
    from torch.autograd import DeviceType

    spans = sorted((e.time_range.start, e.time_range.end) for e in prof.events()
                   if e.device_type == DeviceType.CUDA)
    busy, cur_s, cur_e, kernels = 0.0, None, None, 0
    for s_, e_ in spans:
        kernels += 1
        if cur_e is None or s_ > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
            cur_s, cur_e = s_, e_
        else:
            cur_e = max(cur_e, e_)
    if cur_e is not None:
        busy += cur_e - cur_s
    gpu_span = (spans[-1][1] - spans[0][0]) if spans else 0.0
    return {"profiled_steps": len(batches), "kernels_per_step": kernels / max(1, len(batches)),
            "gpu_busy_share": busy / wall_us if wall_us else None,
            "gpu_busy_share_of_gpu_span": busy / gpu_span if gpu_span else None,
            "step_ms": wall_us / 1000 / max(1, len(batches))}


def time_ours(fs, base, name: str, variant: str, timed_epochs: int, batch_size: int | None = None,
              hp: dict | None = None, profile: bool = False, evaluate: bool = False):
    """Samples/s of our trainer's step over full epochs, after one warm-up epoch (compilation,
    capture, allocator), with the step kind, its compile/capture seconds and peak memory."""
    import torch

    from llmrec.ranking.registry import build_backbone
    from llmrec.ranking.trainer import Trainer, seed_everything

    cfg = copy.deepcopy(base.train)
    for k, v in VARIANTS[variant].items():
        setattr(cfg, k, v)
    if batch_size:
        cfg.batch_size = batch_size
    cfg.checkpoint = False
    seed_everything(0)
    _peak_reset()
    model = build_backbone(name, copy.deepcopy(fs.spec), **(hp or HP[name]))
    trainer = Trainer(model, copy.copy(fs), cfg)
    t0 = time.perf_counter()
    for idx in trainer.epoch_batches():  # warm-up epoch: compilation, capture, allocator
        trainer.train_step(idx)
    _sync()
    warm = time.perf_counter() - t0
    n = steps = 0
    epoch_seconds = []
    for _ in range(timed_epochs):
        te = time.perf_counter()
        for idx in trainer.epoch_batches():
            trainer.train_step(idx)
            n += idx.numel()
            steps += 1
        _sync()
        epoch_seconds.append(time.perf_counter() - te)
    dt = sum(epoch_seconds)
    out = {"samples_per_s": n / dt, "warmup_seconds": warm, "steps": steps,
           "epoch_seconds": [round(x, 4) for x in epoch_seconds], "step": dict(trainer.step_info),
           "peak_memory_gib": _peak_gib(), "batch_size": cfg.batch_size}
    if evaluate:  # after the fixed warm-up + timed epochs, no early stopping
        out["test"] = {k: v for k, v in trainer.evaluate("test").items() if k != "n"}
    if profile and torch.cuda.is_available():
        try:
            out["profile"] = profile_steps(trainer)
        except Exception as exc:  # the profiler is optional evidence, not the measurement
            out["profile"] = {"error": repr(exc)[:300]}
    del trainer, model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    torch._dynamo.reset()
    return out


def quality_ours(fs, base, name: str, variant: str = "eager", seed: int = 0):
    from llmrec.ranking.pipeline import run_train

    cfg = copy.deepcopy(base)
    cfg.model = name
    cfg.model_args = dict(HP[name])
    for k, v in VARIANTS[variant].items():
        setattr(cfg.train, k, v)
    cfg.train.checkpoint = False
    cfg.train.seed = seed
    cfg.output_dir = tempfile.mkdtemp(prefix="rank-tp-")
    res = run_train(cfg, features=fs)
    import torch

    torch._dynamo.reset()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="dcnv2,din")
    ap.add_argument("--variants", default="eager,compile,compile-reduce-overhead,graph,default",
                    help=f"at the recipe's batch size; of {', '.join(VARIANTS)}")
    ap.add_argument("--batch-sizes", default="", help="batch sizes to time (default: the recipe's)")
    ap.add_argument("--sweep-variants", default="eager,default",
                    help="variants timed at the batch sizes other than the recipe's")
    ap.add_argument("--profile-batch", type=int, default=16384,
                    help="profile at this batch (GPU busy share, kernels per step)")
    ap.add_argument("--profile-variants", default="default", help="the variants profiled")
    ap.add_argument("--timed-epochs", type=int, default=3)
    ap.add_argument("--quality-variants", default="eager,default")
    ap.add_argument("--quality-seeds", default="0")
    ap.add_argument("--criteo-rows", type=int, default=0, help="also time the Criteo-shaped set")
    ap.add_argument("--criteo-models", default="dcnv2")
    ap.add_argument("--criteo-batch-sizes", default="4096,16384,65536")
    ap.add_argument("--criteo-variants", default="default")
    ap.add_argument("--criteo-timed-epochs", type=int, default=1)
    ap.add_argument("--criteo-max-vocab", type=int, default=1_000_000)
    ap.add_argument("--fuxictr", action="store_true", help="also run FuxiCTR's models")
    ap.add_argument("--fuxictr-workers", default="1,8", help="DataLoader worker counts to time")
    ap.add_argument("--fuxictr-timed-epochs", type=int, default=2)
    ap.add_argument("--quality", action="store_true", help="also train to early stopping for AUC")
    ap.add_argument("--dataset-label", default="ML-1M users 1-2999")
    args, overrides = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log = logging.getLogger(BENCH)

    import torch

    from llmrec.config import load_config, to_dict
    from llmrec.ranking.pipeline import RankConfig, prepare_features

    base = load_config(RankConfig, args.config, overrides)
    env = br.environment(extra_versions=("datasets", "pyarrow", "numpy", "pandas"))
    fs = prepare_features(base)
    bs = base.train.batch_size
    args.batch_sizes = args.batch_sizes or str(bs)
    n_train = int(fs.split_index("train").numel())
    common = {"dataset": args.dataset_label, "augment": "none", "batch_size": bs,
              "max_hist_len": base.features.max_hist_len, "n_train": n_train,
              "command": " ".join(["python", *sys.argv])}
    models = args.models.split(",")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    ours: dict[str, float] = {}
    table = []
    records = []

    def timed(fs_, name, variant, batch, hp, label, epochs, profile=False, evaluate=False):
        try:
            r = time_ours(fs_, base, name, variant, epochs, batch, hp, profile, evaluate)
        except Exception as exc:  # a variant that fails on this stack is reported, not fatal
            log.exception("%s %s batch %d failed", name, variant, batch)
            records.append(br.record(BENCH, "train_samples_per_s", None, "samples/s", env,
                                     model=name, engine="llmrec", variant=variant,
                                     error=repr(exc)[:500], **{**common, **label,
                                                              "batch_size": batch}))
            return None
        extra = {k: r[k] for k in ("steps", "epoch_seconds", "step", "peak_memory_gib",
                                   "profile", "test") if k in r}
        records.append(br.record(BENCH, "train_samples_per_s", r["samples_per_s"], "samples/s",
                                 env, model=name, engine="llmrec", variant=variant,
                                 warmup_seconds=round(r["warmup_seconds"], 2),
                                 hyper_parameters=hp, config=to_dict(base.train),
                                 **{**common, **label, "batch_size": batch}, **extra))
        table.append((name, f"llmrec {variant} b{batch} [{r['step']['kind']}]",
                      r["samples_per_s"], r["warmup_seconds"]))
        log.info("%s %s batch %d: %.0f samples/s (step %s, warm-up %.1fs, peak %.2f GiB) %s",
                 name, variant, batch, r["samples_per_s"], r["step"], r["warmup_seconds"],
                 r["peak_memory_gib"] or 0, r.get("profile", ""))
        return r

    for name in models:
        best = 0.0
        for batch in batch_sizes:
            variants = args.variants if batch == bs else args.sweep_variants
            for variant in [v for v in variants.split(",") if v and v != "none"]:
                r = timed(fs, name, variant, batch, HP[name], {}, args.timed_epochs,
                          profile=(batch == args.profile_batch and
                                   variant in args.profile_variants.split(",")))
                if r is None:
                    continue
                best = max(best, r["samples_per_s"])
                if batch == bs and variant == "default":
                    ours[name] = r["samples_per_s"]
        ours.setdefault(name, best)
        for variant in (args.quality_variants.split(",") if args.quality else []):
            for seed in [int(x) for x in args.quality_seeds.split(",")]:
                res = quality_ours(fs, base, name, variant, seed)
                for m in ("auc", "logloss", "gauc"):
                    records.append(br.record(BENCH, f"test_{m}", res["test"][m], "", env,
                                             model=name, engine="llmrec", variant=variant,
                                             step=res.get("step"), best_epoch=res["best_epoch"],
                                             epochs=res["epochs"], hyper_parameters=HP[name],
                                             config=to_dict(base.train), seed=seed, **common))
                table.append((name, f"llmrec {variant} seed {seed} test AUC", res["test"]["auc"],
                              res["test"]["logloss"]))
        br.append(args.out, records)
        records = []

    if args.criteo_rows:
        from llmrec.ranking.synthetic import criteo_like_features

        dev = "cuda" if torch.cuda.is_available() else "cpu"
        t0 = time.perf_counter()
        cfs = criteo_like_features(args.criteo_rows, seed=0, device=dev,
                                   max_vocab=args.criteo_max_vocab)
        _sync()
        gen = time.perf_counter() - t0
        label = {"dataset": f"criteo-shaped synthetic ({args.criteo_rows:,} rows)",
                 "n_train": int(cfs.split_index("train").numel()), "max_hist_len": 0,
                 "generation_seconds": round(gen, 2), "criteo_max_vocab": args.criteo_max_vocab,
                 "positive_rate": cfs.info["positive_rate"]}
        log.info("criteo-shaped set: %d rows in %.1fs", args.criteo_rows, gen)
        for name in args.criteo_models.split(","):
            hp = CRITEO_HP[name]
            for batch in [int(b) for b in args.criteo_batch_sizes.split(",")]:
                for variant in [v for v in args.criteo_variants.split(",") if v != "none"]:
                    timed(cfs, name, variant, batch, hp, label, args.criteo_timed_epochs,
                          profile=False, evaluate=True)
            br.append(args.out, records)
            records = []
        del cfs
        torch.cuda.empty_cache() if torch.cuda.is_available() else None

    if args.fuxictr:
        import ranking_fuxictr as fx

        stubbed = fx.install_import_stubs()
        work = Path(tempfile.mkdtemp(prefix="fuxictr-"))
        user_cols = [n for n, _ in fs.spec.user_fields]
        paths = {s: fx.export_longctr(fs, s, work / "data", user_cols) for s in ("train", "valid", "test")}
        gpu = 0 if torch.cuda.is_available() else -1
        fx_common = {**common, "engine": "fuxictr", "fuxictr_version": fx.fuxictr_version(),
                     "stubbed_imports": stubbed, "precision": "fp32 (FuxiCTR default)"}
        for name in models:
            fmap = fx.feature_map(fs, work / "data", HP[name]["embed_dim"])
            hp = {**HP[name], "lr": base.train.lr, "patience": base.train.patience}
            for workers in [int(w) for w in args.fuxictr_workers.split(",")]:
                torch.manual_seed(0)
                model = fx.build_model(name, fmap, work / "models", gpu, hp)
                dl = fx.loaders(fmap, paths, bs, base.features.max_hist_len, workers)
                times = fx.time_epochs(model, dl["train"], args.fuxictr_timed_epochs)
                sps = n_train / times[-1]
                records.append(br.record(BENCH, "train_samples_per_s", sps, "samples/s", env,
                                         model=name, num_workers=workers, epoch_seconds=times,
                                         hyper_parameters=hp, **fx_common))
                ratio = ours[name] / sps if sps else None
                records.append(br.record(BENCH, "speedup", ratio, "x", env, model=name,
                                         engine="llmrec", baseline=f"fuxictr num_workers={workers}",
                                         ours_samples_per_s=ours[name], fuxictr_samples_per_s=sps,
                                         **common))
                table.append((name, f"fuxictr workers={workers}", sps, times[0]))
                log.info("fuxictr %s workers=%d: %.0f samples/s (epochs %s) -> ours x%.1f", name,
                         workers, sps, [round(t, 2) for t in times], ratio or 0)
                del model, dl
            if args.quality:
                torch.manual_seed(0)
                model = fx.build_model(name, fmap, work / "models", gpu, hp)
                dl = fx.loaders(fmap, paths, bs, base.features.max_hist_len,
                                max(int(w) for w in args.fuxictr_workers.split(",")))
                res = fx.fit_and_test(model, dl, base.train.epochs)
                for m in ("auc", "logloss"):
                    records.append(br.record(BENCH, f"test_{m}", res[m], "", env, model=name,
                                             hyper_parameters=hp, seed=0, **fx_common))
                table.append((name, "fuxictr test AUC", res["auc"], res["logloss"]))
            br.append(args.out, records)
            records = []
    br.append(args.out, records)
    print(f"\n{'model':<7} {'engine':<34} {'value':>14} {'extra':>10}   ({env['device']})")
    for name, eng, v, extra in table:
        print(f"{name:<7} {eng:<34} {v:>14,.4f} {extra:>10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
