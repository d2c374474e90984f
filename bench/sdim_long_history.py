"""SDIM vs DIN vs DIN on the last 50 behaviours, at long history lengths: test AUC / gAUC /
LogLoss and train / inference samples per second.

    python bench/sdim_long_history.py --config eval/ranking/ml1m.yaml \
        --lengths 200,500,1000 --seeds 0,1 --epochs 2 \
        --out bench/results/sdim_long_history.jsonl

The features are built once at the longest length (``features.max_hist_len`` overridden) and
cut to each shorter one by :func:`truncate_history` (the last L valid behaviours, oldest first:
the same rows ``build_features`` gives at max_hist_len L; the vocabularies are those of the
longest build, so every length sees the same item ids). Per length and seed:

* ``sdim`` (its defaults: embed 32, 2 hashes x 4 bits, short-term attention over the last 50)
  on the L-long history;
* ``din`` (its defaults: attention MLP 64, MLP 200-80) on the L-long history;
* ``din_last50``: the same DIN on the last 50 behaviours (trained once per seed: its data do
  not depend on L, its row is repeated under every L).

Each model trains for ``--epochs`` epochs (no early stopping; the best validation epoch is
restored, as in every run), then the test split is scored. Train samples/s are those of the
last epoch (the first one absorbs allocator and kernel warm-up); inference samples/s time
``Trainer.predict`` over the test split, second pass. ``--step`` sets the trainer's step
(eager by default, so compilation is not part of any number).

``--smoke`` runs the same code on a small synthetic set (CPU, seconds): lengths 20,40 with a
short window of 10.
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

BENCH = "sdim_long_history"
SHORT = 50


def truncate_history(fs, length: int):
    """A FeatureSet whose behaviour sequences are the last ``length`` valid ones of ``fs``'s.

    Valid behaviours come first in each row (padding after), so the last ``length`` of a row with
    n valid ones are positions max(0, n - length) .. n - 1; every per-behaviour tensor
    (``hist_rows``, ``hist_rating``, ``hist_time``) is cut the same way.
    """
    import torch

    from llmrec.ranking.features import FeatureSet

    t = fs.tensors
    rows = t["hist_rows"]
    if length > rows.shape[1]:
        raise ValueError(f"cannot cut histories of length {rows.shape[1]} to {length}")
    if length == rows.shape[1]:
        return fs
    n = (rows > 0).sum(1)
    j = torch.arange(length, device=rows.device)[None]
    pos = (n - length).clamp_min(0)[:, None] + j
    keep = j < n.clamp_max(length)[:, None]
    pos = torch.where(keep, pos, torch.zeros_like(pos))
    tensors = dict(t)
    for key in ("hist_rows", "hist_rating", "hist_time"):
        if key in t:
            tensors[key] = torch.where(keep, t[key].gather(1, pos), torch.zeros_like(pos))
    spec = copy.deepcopy(fs.spec)
    spec.max_hist_len = length
    return FeatureSet(spec, tensors, fs.vocabs, dict(fs.info))


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_one(fs, name: str, hp: dict, train_cfg, seed: int) -> dict:
    """Train ``name`` on ``fs``; test metrics, train and inference samples/s."""
    import torch

    from llmrec.ranking.registry import build_model
    from llmrec.ranking.trainer import Trainer, seed_everything

    cfg = copy.deepcopy(train_cfg)
    cfg.seed = seed
    seed_everything(seed)
    model = build_model(name, copy.deepcopy(fs.spec), **hp)
    n_params = sum(p.numel() for p in model.parameters())
    trainer = Trainer(model, copy.copy(fs), cfg)
    res = trainer.fit()
    test = trainer.features.split_index("test")
    times = []
    for _ in range(2):  # the first pass warms up
        _sync()
        t0 = time.perf_counter()
        trainer.predict(test)
        _sync()
        times.append(time.perf_counter() - t0)
    hist = res["history"]
    out = {"test": res["test"], "n_parameters": n_params, "best_epoch": res["best_epoch"],
           "epochs": res["epochs"], "train_samples_per_s": hist[-1]["samples_per_s"],
           "train_samples_per_s_by_epoch": [h["samples_per_s"] for h in hist],
           "infer_samples_per_s": test.numel() / times[-1], "step": res.get("step"),
           "peak_memory_gb": (torch.cuda.max_memory_allocated() / 2**30
                              if torch.cuda.is_available() else None)}
    del trainer, model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return out


def _smoke_features(max_len: int):
    from llmrec.ranking.features import FeatureConfig, build_features
    from llmrec.ranking.synthetic import make_synthetic

    tables, split = make_synthetic(n_users=150, n_items=80, mean_len=60, seed=0)
    return build_features(tables, split, FeatureConfig(max_hist_len=max_len,
                                                       user_fields=["gender", "age"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="eval/ranking/ml1m.yaml")
    ap.add_argument("--out", default="bench/results/sdim_long_history.jsonl")
    ap.add_argument("--lengths", default="200,500,1000")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--models", default="sdim,din,din_last50")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    ap.add_argument("--eval-batch-size", type=int, default=4096,
                    help="prediction batch (DIN at L=1000 builds [B, L, 4 KD] activations)")
    ap.add_argument("--step", default="eager", help="trainer step: eager, compile, graph, auto")
    ap.add_argument("--smoke", action="store_true", help="small synthetic set on the CPU")
    ap.add_argument("--dataset-label", default="ML-1M users 1-2999 (KAR protocol)")
    args, overrides = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    log = logging.getLogger(BENCH)

    from llmrec.config import load_config, to_dict
    from llmrec.ranking.pipeline import RankConfig, prepare_features

    lengths = sorted(int(x) for x in args.lengths.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",")
    short = SHORT
    base = load_config(RankConfig, args.config, overrides)
    if args.smoke:
        if args.lengths == "200,500,1000":
            lengths = [20, 40]
        short = 10
        base.train.device = "cpu"
        base.train.batch_size = args.batch_size or 256
        label = "synthetic (smoke)"
    else:
        label = args.dataset_label
    train_cfg = base.train
    if args.batch_size:
        train_cfg.batch_size = args.batch_size
    train_cfg.eval_batch_size = args.eval_batch_size
    train_cfg.epochs = args.epochs
    train_cfg.patience = args.epochs
    train_cfg.checkpoint = False
    if hasattr(train_cfg, "step"):
        train_cfg.step = args.step
    elif args.step == "compile":
        train_cfg.compile = True

    env = br.environment(extra_versions=("numpy", "pandas"))
    t0 = time.perf_counter()
    if args.smoke:
        full = _smoke_features(max(lengths))
    else:
        base.features.max_hist_len = max(lengths)
        full = prepare_features(base)
    build_s = time.perf_counter() - t0
    import torch

    if torch.cuda.is_available() and train_cfg.device in ("auto", "cuda"):
        # once: the views below are cut on the device and no run copies histories to it again
        full = full.to("cuda")
    valid_len = (full.tensors["hist_rows"] > 0).sum(1).float()
    log.info("features at max_hist_len %d built in %.1fs: %d samples, valid behaviours per "
             "sample mean %.0f, max %d", max(lengths), build_s, len(full), valid_len.mean(),
             int(valid_len.max()))
    hp = {"sdim": ("sdim", {"short_seq_len": short}), "din": ("din", {}),
          "din_last50": ("din", {})}
    common = {"dataset": label, "augment": "none", "batch_size": train_cfg.batch_size,
              "epochs_trained": args.epochs, "feature_build_seconds": round(build_s, 1),
              "short_seq_len": short, "config": args.config, "train": to_dict(train_cfg),
              "command": " ".join(["python", *sys.argv])}
    results: dict[tuple[str, int], list[dict]] = {}
    records = []
    views = {length: truncate_history(full, length) for length in {*lengths, short}}
    # seeds outermost: a run cut short still has every length for its first seeds
    for seed in seeds:
        last_short = None  # din_last50: its data do not depend on L, trained once per seed
        for length in lengths:
            fs = views[length]
            hist_len = (fs.tensors["hist_rows"] > 0).sum(1).float()
            for key in models:
                name, extra = hp[key]
                if key == "din_last50":
                    if last_short is None:
                        last_short = run_one(views[short], name, extra, train_cfg, seed)
                    res, used_len = last_short, short
                else:
                    res, used_len = run_one(fs, name, extra, train_cfg, seed), length
                results.setdefault((key, length), []).append(res)
                cond = {**common, "model": key, "backbone": name, "hyper_parameters": extra,
                        "max_hist_len": length, "history_used": used_len, "seed": seed,
                        "n_parameters": res["n_parameters"], "best_epoch": res["best_epoch"],
                        "mean_valid_behaviours": round(float(hist_len.mean()), 1)}
                for m in ("auc", "gauc", "logloss"):
                    records.append(br.record(BENCH, f"test_{m}", res["test"][m], "", env, **cond))
                records.append(br.record(BENCH, "train_samples_per_s",
                                         res["train_samples_per_s"], "samples/s", env,
                                         by_epoch=res["train_samples_per_s_by_epoch"],
                                         step=res["step"], peak_memory_gb=res["peak_memory_gb"],
                                         **cond))
                records.append(br.record(BENCH, "infer_samples_per_s", res["infer_samples_per_s"],
                                         "samples/s", env, eval_batch_size=args.eval_batch_size,
                                         **cond))
                log.info("L=%d seed %d %s: test AUC %.4f, train %.0f/s, infer %.0f/s "
                         "(%.0fs so far)", length, seed, key, res["test"]["auc"],
                         res["train_samples_per_s"], res["infer_samples_per_s"],
                         time.perf_counter() - t0)
            br.append(args.out, records)
            records = []

    def stat(key, length, get):
        vals = [get(r) for r in results.get((key, length), [])]
        if not vals:
            return "-"
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        return f"{statistics.mean(vals):.4f} ± {sd:.4f}" if vals[0] < 2 else \
            f"{statistics.mean(vals):,.0f}"

    print(f"\n{'L':>5} {'model':<11} {'test AUC':>17} {'train/s':>10} {'infer/s':>10} "
          f"{'params':>9}   ({env['device']}, {len(seeds)} seed(s), {args.epochs} epochs)")
    for length in lengths:
        for key in models:
            rs = results.get((key, length), [])
            if not rs:
                continue
            print(f"{length:>5} {key:<11} {stat(key, length, lambda r: r['test']['auc']):>17} "
                  f"{stat(key, length, lambda r: r['train_samples_per_s']):>10} "
                  f"{stat(key, length, lambda r: r['infer_samples_per_s']):>10} "
                  f"{rs[0]['n_parameters']:>9,}")
    print(f"feature build at L={max(lengths)}: {build_s:.1f}s; total {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
