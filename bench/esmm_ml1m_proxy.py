"""ESMM against a CVR model trained on clicked samples only, on the ML-1M entire-space **proxy**
(:mod:`llmrec.data.ml1m_ctcvr`: impression = rated item or a sampled unrated one, click = rated,
conversion = rating >= 4), on the CPU, over seeds.

    python bench/esmm_ml1m_proxy.py --seeds 0,1,2 --out bench/results/esmm_ml1m_proxy.jsonl

Per seed (the model seed: initialisation, batch order, dropout; the proxy's negative sampling
is fixed at ``--proxy-seed``):

- ``esmm``: ESMM (tasks click, conversion) over every training impression, early stopping on its
  mean valid AUC (CTR, CTCVR);
- ``cvr_clicked``: a DNN with the architecture of one ESMM tower (same embedding width), label
  conversion, trained and early-stopped (valid CVR AUC on clicked samples) on ``click = 1`` rows
  only: the sample-selection-biased CVR baseline;
- ``ctr``: the same DNN, label click, on every impression (its pCTR times ``cvr_clicked``'s pCVR
  gives that baseline's pCTCVR).

Test metrics, each an AUC: ``ctr_auc`` (pCTR vs click over all impressions), ``cvr_auc_entire``
(pCVR vs conversion over **all** impressions: what a CVR model served on every impression is
asked to rank), ``cvr_auc_clicked`` (pCVR vs conversion on clicked impressions) and
``ctcvr_auc`` (pCTR x pCVR vs click x conversion over all impressions). ESMM's pCVR is its CVR
tower's probability (``out["cvr_logits"]``). One record per (model, seed, metric), then mean/std
summary records.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

BENCH = "esmm_ml1m_proxy"
METRICS = ("ctr_auc", "cvr_auc_entire", "cvr_auc_clicked", "ctcvr_auc")
TOWER = (64, 32)
DROPOUT = 0.1


def clicked_only(fs):
    """A view of ``fs`` whose train / valid / test splits hold only the clicked samples and whose
    primary label is ``conversion`` (the tensors are shared, not copied)."""
    view = copy.copy(fs)
    click = fs.labels("click") > 0.5
    tensors = dict(fs.tensors)
    for name in fs.split_names:
        idx = fs.split_index(name)
        tensors[f"split.{name}"] = idx[click[idx]]
    tensors["label"] = fs.labels("conversion")
    view.tensors = tensors
    return view


def _train(net, fs, task, seed, args):
    from llmrec.ranking.trainer import TrainConfig, Trainer

    cfg = TrainConfig(device="cpu", seed=seed, batch_size=args.batch_size, epochs=args.epochs,
                      lr=args.lr, patience=args.patience, checkpoint=False, eval_test=False)
    trainer = Trainer(net, fs, cfg, task=task)
    t0 = time.perf_counter()
    res = trainer.fit()
    return trainer, res, time.perf_counter() - t0


def _scores(trainer, idx, keys):
    """Per key path (e.g. ("logit",) or ("cvr_logits", "conversion")) the logits of ``idx``."""
    import torch

    out = {k: [] for k in keys}
    for chunk in idx.split(trainer.cfg.eval_batch_size):
        o = trainer.forward_eval(chunk)
        for k in keys:
            v = o
            for part in k:
                v = v[part]
            out[k].append(v.float())
    return {k: torch.cat(v) for k, v in out.items()}


def test_metrics(fs, split, p_ctr_logit, p_cvr_logit):
    """The four AUCs of :data:`METRICS` on ``split`` from logits of pCTR and pCVR (one per
    sample of the split)."""
    import torch.nn.functional as F

    from llmrec.ranking.metrics import auc

    idx = fs.split_index(split)
    click, conv = fs.labels("click")[idx], fs.labels("conversion")[idx]
    clicked = click > 0.5
    log_ctcvr = F.logsigmoid(p_ctr_logit.double()) + F.logsigmoid(p_cvr_logit.double())
    return {"ctr_auc": auc(click, p_ctr_logit), "cvr_auc_entire": auc(conv, p_cvr_logit),
            "cvr_auc_clicked": auc(conv[clicked], p_cvr_logit[clicked]),
            "ctcvr_auc": auc(click * conv, log_ctcvr)}


def run_seed(fs, seed, args, models=("esmm", "cvr_clicked", "ctr")):
    """Train the models of one seed; ``{model: {"metrics": {...}, "best_epoch", "epochs",
    "wall_seconds"}}`` with the test metrics (``cvr_clicked``'s pCTR from ``ctr``, which it
    therefore needs)."""
    from llmrec.ranking.registry import build_model
    from llmrec.ranking.task_config import TaskConfig
    from llmrec.ranking.trainer import seed_everything

    if "cvr_clicked" in models and "ctr" not in models:
        raise ValueError("cvr_clicked's pCTCVR needs the ctr model's pCTR: add ctr to the models")
    test = fs.split_index("test")
    out, ctr_logit = {}, None
    for model in [m for m in ("ctr", "esmm", "cvr_clicked") if m in models]:
        seed_everything(seed)
        if model == "esmm":
            net = build_model("esmm", fs.spec, embed_dim=args.embed_dim,
                              tasks=["click", "conversion"], tower=TOWER, dropout=DROPOUT)
            trainer, res, wall = _train(net, fs, TaskConfig(kind="multitask",
                                                            labels=["click", "conversion"]),
                                        seed, args)
            s = _scores(trainer, test, [("logits", "click"), ("cvr_logits", "conversion")])
            metrics = test_metrics(fs, "test", s[("logits", "click")],
                                   s[("cvr_logits", "conversion")])
        else:
            net = build_model("dnn", fs.spec, embed_dim=args.embed_dim, hidden=TOWER,
                              dropout=DROPOUT)
            view = clicked_only(fs) if model == "cvr_clicked" else fs
            trainer, res, wall = _train(net, view, TaskConfig(kind="binary"), seed, args)
            logit = _scores(trainer, test, [("logit",)])[("logit",)]
            if model == "ctr":
                ctr_logit = logit
                metrics = {"ctr_auc": test_metrics(fs, "test", logit, logit)["ctr_auc"]}
            else:
                metrics = test_metrics(fs, "test", ctr_logit, logit)
                metrics["ctr_auc"] = None  # the ctr model's, recorded under ctr
        out[model] = {"metrics": metrics, "best_epoch": res["best_epoch"],
                      "epochs": res["epochs"], "wall_seconds": round(wall, 2),
                      "train_rows": int(trainer.features.split_index("train").numel())}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", default="../shared/data/movielens-1m")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default="esmm,cvr_clicked,ctr")
    ap.add_argument("--neg-ratio", type=float, default=1.0)
    ap.add_argument("--negatives", default="popularity", choices=("popularity", "uniform"))
    ap.add_argument("--proxy-seed", type=int, default=0, help="seed of the negative sampling")
    ap.add_argument("--max-users", type=int, default=0, help="subsample users (0: all)")
    ap.add_argument("--embed-dim", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patience", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSONL file to append the records to")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch

    from llmrec.data.ml1m_ctcvr import Ml1mCtcvrConfig, load_ml1m_ctcvr
    from llmrec.ranking.features import build_features

    torch.set_num_threads(args.threads)
    env = br.environment("cpu")
    pcfg = Ml1mCtcvrConfig(path=args.path, neg_ratio=args.neg_ratio, negatives=args.negatives,
                           seed=args.proxy_seed, max_users=args.max_users)
    data, split, fcfg = load_ml1m_ctcvr(pcfg)
    fs = build_features(data, split, fcfg)
    info = split.info
    print(f"{pcfg.name}: {info['users']} users, counts {info['counts']}", flush=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    models = tuple(args.models.split(","))
    conditions = {"dataset": pcfg.name, "split": "test", "protocol": info["split"],
                  "proxy": {"negatives": info["negatives"], "labels": info["labels"],
                            "users": info["users"], "max_users": args.max_users,
                            "counts": info["counts"], "fingerprint": split.fingerprint},
                  "config": {"embed_dim": args.embed_dim, "tower": list(TOWER),
                             "dropout": DROPOUT, "epochs": args.epochs,
                             "patience": args.patience, "batch_size": args.batch_size,
                             "lr": args.lr, "threads": args.threads}}
    table: dict[tuple[str, str], list[float]] = {}
    t_all = time.perf_counter()
    for seed in seeds:
        res = run_seed(fs, seed, args, models)
        recs = []
        for model, r in res.items():
            for metric, value in r["metrics"].items():
                if value is None:
                    continue
                recs.append(br.record(BENCH, metric, float(value), "AUC", env, model=model,
                                      seed=seed, best_epoch=r["best_epoch"], epochs=r["epochs"],
                                      train_rows=r["train_rows"],
                                      wall_seconds=r["wall_seconds"], **conditions))
                table.setdefault((model, metric), []).append(float(value))
            print(f"seed {seed} {model:12s} " + "  ".join(
                f"{k} {v:.4f}" for k, v in r["metrics"].items() if v is not None)
                + f"  (best epoch {r['best_epoch']}/{r['epochs']}, {r['wall_seconds']:.0f} s)",
                flush=True)
        if args.out:  # one seed at a time, so an interrupted run keeps what it finished
            br.append(args.out, recs)
    summary = []
    for (model, metric), vals in table.items():
        s = br.summarise(vals)
        summary.append(br.record(BENCH, f"{metric}_mean", s["mean"], "AUC", env, model=model,
                                 summary=True, std=s["std"], n_seeds=s["n_seeds"], seeds=seeds,
                                 **conditions))
    if args.out:
        br.append(args.out, summary)
    print(f"\n{pcfg.name}; test AUC mean +- std over seeds {seeds} "
          f"({time.perf_counter() - t_all:.0f} s on {env['device']})")
    print("| model | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS))
    for model in dict.fromkeys(m for m, _ in table):
        cells = []
        for metric in METRICS:
            vals = table.get((model, metric))
            if vals:
                s = br.summarise(vals)
                cells.append(f"{s['mean']:.4f} +- {s['std']:.4f}")
            else:
                cells.append("-")
        print(f"| {model} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
