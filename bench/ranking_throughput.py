"""Training throughput of the ranking engine against FuxiCTR, on the same data and batch size.

    python bench/ranking_throughput.py --config eval/ranking/ml1m.yaml \
        --out bench/results/ranking_throughput.jsonl [--fuxictr] [--fuxictr-workers 1,8]

For DCNv2 (embedding 32, 3 cross layers, MLP 400-400) and DIN (attention MLP 64, MLP 200-80),
both with the 10-item behaviour sequence, at batch 4096 on ML-1M users 1-2999 (KAR protocol):

* ours, eager and with ``torch.compile`` (and ``reduce-overhead``, CUDA graphs): samples/s over
  ``--timed-epochs`` full epochs of our trainer's step (device-resident data, index-slice
  batches, bf16 autocast, fused Adam), after one warm-up epoch that also absorbs compilation;
* FuxiCTR's own DCNv2 / DIN from its wheel, fed by its own LongCTR DataLoader, at the same batch
  size, timed over its ``train_epoch`` (second epoch: steady state), for each worker count;
* the test AUC / LogLoss of both after training with early stopping on validation AUC.

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
}


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_ours(fs, base, name: str, variant: str, timed_epochs: int):
    """(samples/s, warm-up seconds, steps) of our trainer's step over full epochs."""
    import torch

    from llmrec.ranking.registry import build_backbone
    from llmrec.ranking.trainer import Trainer, seed_everything

    cfg = copy.deepcopy(base.train)
    cfg.compile = variant != "eager"
    if variant == "compile-reduce-overhead":
        cfg.compile_mode = "reduce-overhead"
    cfg.checkpoint = False
    seed_everything(0)
    model = build_backbone(name, copy.deepcopy(fs.spec), **HP[name])
    trainer = Trainer(model, copy.copy(fs), cfg)
    t0 = time.perf_counter()
    for idx in trainer.epoch_batches():  # warm-up epoch: compilation, allocator, cuDNN plans
        trainer.train_step(idx)
    _sync()
    warm = time.perf_counter() - t0
    n = steps = 0
    t0 = time.perf_counter()
    for _ in range(timed_epochs):
        for idx in trainer.epoch_batches():
            trainer.train_step(idx)
            n += idx.numel()
            steps += 1
    _sync()
    dt = time.perf_counter() - t0
    del trainer, model
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    torch._dynamo.reset()
    return n / dt, warm, steps


def quality_ours(fs, base, name: str, compile_: bool):
    from llmrec.ranking.pipeline import run_train

    cfg = copy.deepcopy(base)
    cfg.model = name
    cfg.model_args = dict(HP[name])
    cfg.train.compile = compile_
    cfg.train.checkpoint = False
    cfg.train.seed = 0
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
    ap.add_argument("--variants", default="eager,compile,compile-reduce-overhead")
    ap.add_argument("--timed-epochs", type=int, default=3)
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
    n_train = int(fs.split_index("train").numel())
    common = {"dataset": args.dataset_label, "augment": "none", "batch_size": bs,
              "max_hist_len": base.features.max_hist_len, "n_train": n_train,
              "command": " ".join(["python", *sys.argv])}
    models = args.models.split(",")
    ours: dict[str, float] = {}
    table = []
    records = []
    for name in models:
        best = 0.0
        for variant in args.variants.split(","):
            try:
                sps, warm, steps = time_ours(fs, base, name, variant, args.timed_epochs)
            except Exception as exc:  # a variant that fails on this stack is reported, not fatal
                log.exception("%s %s failed", name, variant)
                records.append(br.record(BENCH, "train_samples_per_s", None, "samples/s", env,
                                         model=name, engine="llmrec", variant=variant,
                                         error=repr(exc)[:500], **common))
                continue
            best = max(best, sps)
            table.append((name, f"llmrec {variant}", sps, warm))
            records.append(br.record(BENCH, "train_samples_per_s", sps, "samples/s", env,
                                     model=name, engine="llmrec", variant=variant, steps=steps,
                                     warmup_seconds=round(warm, 2), hyper_parameters=HP[name],
                                     config=to_dict(base.train), **common))
            log.info("%s %s: %.0f samples/s (warm-up %.1fs)", name, variant, sps, warm)
        ours[name] = best
        if args.quality:
            res = quality_ours(fs, base, name, compile_=False)
            for m in ("auc", "logloss", "gauc"):
                records.append(br.record(BENCH, f"test_{m}", res["test"][m], "", env, model=name,
                                         engine="llmrec", best_epoch=res["best_epoch"],
                                         epochs=res["epochs"], hyper_parameters=HP[name],
                                         config=to_dict(base.train), seed=0, **common))
            table.append((name, "llmrec test AUC", res["test"]["auc"], res["test"]["logloss"]))
        br.append(args.out, records)
        records = []

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
