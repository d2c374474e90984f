"""``llmrec rank train|predict|popularity|features|fdo|compress|scaling|models``: the GPU ranking
engine."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from llmrec.config import option

log = logging.getLogger(__name__)


def _rank_config():
    # the config pulls in the data layer; imported only when a rank command is built
    from llmrec.ranking.pipeline import RankConfig

    return RankConfig


def _fmt(m: dict) -> str:
    # per-task metrics of multi-task runs ("click.auc") are in metrics.json; show the summary
    return "  ".join(f"{k} {v:.5f}" for k, v in m.items()
                     if isinstance(v, float) and "." not in k)


def _train(cfg, args) -> int:
    import os

    from llmrec.ranking.pipeline import run_train

    result = run_train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 reports
    print(f"{cfg.model} ({cfg.task.kind}, watching valid {result['task']['monitor']}): "
          f"best epoch {result['best_epoch']} of {result['epochs']}, "
          f"{result['samples_per_s'] or 0:,.0f} train samples/s on {result['device']}")
    if result.get("augment"):
        cov = ", ".join(f"{k} {c.get('test', 0):.0%}" for k, c in result["coverage"].items())
        print(f"  knowledge: {result['augment']}, strategy {result['strategy']}, injected as "
              f"{result['injection']}; test samples with knowledge: {cov} (the others get a "
              f"zero knowledge vector)")
        if "backbone_result" in result:
            print(f"  frozen backbone alone: test {_fmt(result['backbone_result']['test'])}")
    print(f"  valid  {_fmt(result['valid'])}")
    if "test" in result:
        print(f"  test   {_fmt(result['test'])}")
    print(f"  -> {cfg.output_dir}")
    return 0


def _popularity(cfg, args) -> int:
    from llmrec.ranking.pipeline import run_popularity

    result = run_popularity(cfg, alpha=args.alpha)
    for split in ("valid", "test"):
        if split in result:
            print(f"popularity {split:<5} {_fmt(result[split])}")
    return 0


def _features(cfg, args) -> int:
    from llmrec.errors import ConfigError
    from llmrec.ranking.pipeline import prepare_features

    if not cfg.features_path:
        raise ConfigError("rank features needs --features_path=DIR to write the encoded features to")
    fs = prepare_features(cfg)
    # the per-row entity ids (for knowledge lookups) would drown the summary
    info = {k: v for k, v in fs.info.items() if k != "row_ids"}
    print(json.dumps({"spec": fs.spec.to_dict(), "info": info}, indent=2, default=str))
    return 0


def _models(cfg, args) -> int:
    from llmrec.ranking.registry import FAMILIES, family_tasks, hyper_parameters, list_models

    for family in FAMILIES:
        names = list_models(family)
        print(f"{family} (tasks: {', '.join(family_tasks(family))}){'' if names else ': none yet'}")
        for name in names:
            hp = ", ".join(f"{k}={v!r}" for k, v in hyper_parameters(name).items())
            print(f"  {name:<13} {hp}")
    return 0


@dataclass
class PredictConfig:
    """Score a file of samples with a trained run."""

    run_dir: str = option("runs/rank", help="a run folder written by `llmrec rank train`")
    samples: str = option("", help="CSV or Parquet file of samples: user_id, item_id, optional "
                                   "history (item ids, '|'-separated or a list), history_rating "
                                   "and the run's context columns")
    out: str = option("", help="where to write the scored samples (.csv or .parquet; default: "
                               "print the first rows)")
    device: str = option("cpu", help="cpu or cuda")
    batch_size: int = option(65536, help="samples per forward pass")


def _read_samples(path: str):
    import pandas as pd

    from llmrec.errors import DataError

    p = Path(path)
    if not path or not p.is_file():
        raise DataError(f"rank predict: --samples={path!r} is not a file; give a CSV or Parquet "
                        f"file with user_id and item_id columns")
    df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p, dtype={
        "user_id": str, "item_id": str})
    return df


def _predict(cfg: PredictConfig, args) -> int:
    from llmrec.artifacts import atomic_file
    from llmrec.ranking.runs import load_run

    run = load_run(cfg.run_dir, device=cfg.device)
    scored = run.predict(_read_samples(cfg.samples), batch_size=cfg.batch_size)
    if not cfg.out:
        print(scored.head(20).to_string(index=False))
        return 0
    out = Path(cfg.out)
    with atomic_file(out) as fh:
        if out.suffix == ".parquet":
            scored.to_parquet(fh, index=False)
        else:
            fh.write(scored.to_csv(index=False).encode())
    print(f"scored {len(scored)} samples with {run.record['model']} -> {out}")
    return 0


def _fdo(cfg, args) -> int:
    from llmrec.ranking.transforms import fdo

    report = fdo(cfg)
    dims = ", ".join(f"{n} {f['dim']}" for n, f in report["fields"].items())
    emb = report["embedding_parameters"]
    print(f"fdo (rho {cfg.threshold}) of {report['model']}: per-field widths {dims} "
          f"(embed_dim {report['embed_dim']}); embedding parameters {emb['before']:,} -> "
          f"{emb['after']:,}")
    if "retrained" in report:
        r = report["retrained"]
        print(f"  retrained: {r['n_parameters']:,} parameters, best epoch {r['best_epoch']}")
        print(f"  valid  {_fmt(r['valid'])}")
        if r.get("test"):
            print(f"  test   {_fmt(r['test'])}")
    print(f"  -> {cfg.out}")
    return 0


def _compress(cfg, args) -> int:
    from llmrec.ranking.transforms import compress

    report = compress(cfg)
    p = report["parameters"]
    done = [k for k, v in report["layers"].items() if v["factorised"]]
    print(f"compress ({'rank ' + str(cfg.rank) if cfg.rank else 'energy ' + str(cfg.energy)}) "
          f"of {report['model']}: {len(done)} of {len(report['layers'])} matrices factorised; "
          f"parameters {p['before']['total']:,} -> {p['after']['total']:,} "
          f"({report['reduction']}x smaller)")
    for name, m in report.get("metrics", {}).items():
        if m.get("test"):
            print(f"  {name:<10} test {_fmt(m['test'])}")
    print(f"  -> {cfg.out}")
    return 0


def _scaling(cfg, args) -> int:
    from llmrec.ranking.scaling import format_fits, run_scaling

    curve = run_scaling(cfg)
    for r in curve["sizes"]:
        auc = (f"test AUC {r['test_auc_mean']:.5f} +- {r['test_auc_std']:.5f}"
               if "test_auc_mean" in r else "no test AUC")
        print(f"{r['family']:<15} {r['size']:<3} {r['non_embedding_parameters']:>12,} "
              f"non-embedding parameters  {r['train_flops_per_sample']:.3g} train FLOPs/sample  "
              f"{auc}  ({len(r['seeds'])} seeds)")
    if curve["fits"]:
        print(format_fits(curve))
    if curve["failed"]:
        print(f"{len(curve['failed'])} cell(s) failed (see the log; a rerun retries them)")
    print(f"  -> {cfg.out}")
    return 1 if curve["failed"] else 0


def _features_output(cfg) -> tuple:
    """``features_path`` is written only when it holds no features yet."""
    fp = cfg.features_path
    if fp and not (Path(fp) / "features.safetensors").is_file():
        return (fp, "--features_path")
    return (None, "--features_path")


def register(subparsers) -> None:
    from llmrec.cli import add_config_command

    p = subparsers.add_parser("rank", help="train, evaluate and apply ranking models (CTR, "
                              "sequential, multi-task, learning to rank)",
                              description="The ranking engine: features, tasks, model families, "
                                          "GPU trainer, runs.")
    p.set_defaults(_handler=None, _group_parser=p)
    sub = p.add_subparsers(dest="rank_command", metavar="SUBCOMMAND")
    cfg_cls = _rank_config()
    add_config_command(sub, "train", cfg_cls, _train,
                       help="train one model for its task (early stopping on the task's valid "
                            "metric) and report its test metrics",
                       outputs=lambda c: [(c.output_dir, "--output_dir"),
                                          _features_output(c)])
    add_config_command(sub, "predict", PredictConfig, _predict,
                       help="score a file of samples with a trained run (no dataset needed)",
                       outputs=lambda c: [(c.out or None, "--out", False)])
    pop = add_config_command(sub, "popularity", cfg_cls, _popularity,
                             help="evaluate the item-popularity baseline on the same features",
                             outputs=lambda c: [_features_output(c)])
    pop.add_argument("--alpha", type=float, default=10.0, help="smoothing toward the prior rate")
    add_config_command(sub, "features", cfg_cls, _features,
                       help="encode features once and save them (--features_path=DIR)",
                       outputs=lambda c: [_features_output(c)])
    from llmrec.ranking.transforms import CompressConfig, FdoConfig

    add_config_command(sub, "fdo", FdoConfig, _fdo,
                       help="field-dimension optimisation (GDCN): per-field embedding widths by "
                            "PCA of a trained run's embeddings, and the run retrained with them",
                       outputs=lambda c: [(c.out or None, "--out")])
    add_config_command(sub, "compress", CompressConfig, _compress,
                       help="low-rank compression of a trained run (truncated SVD of embedding "
                            "tables and linear layers) into a new run, optionally fine-tuned",
                       outputs=lambda c: [(c.out or None, "--out")])
    from llmrec.ranking.scaling import ScalingConfig

    add_config_command(sub, "scaling", ScalingConfig, _scaling,
                       help="scaling curve: CTR model families x a size ladder x seeds on one "
                            "recipe's features; AUC vs non-embedding parameters and FLOPs, with "
                            "the fit AUC = a + b ln N (curve.csv, curve.json)",
                       outputs=lambda c: [(c.out or None, "--out")])
    add_config_command(sub, "models", None, _models,
                       help="list the models of every family and their hyper-parameters")


def main(argv: list[str] | None = None) -> int:
    """``python -m llmrec.ranking.cli train ...``: the rank group on its own.

    For launchers that run a module per process, e.g.
    ``torchrun --nproc_per_node=2 -m llmrec.ranking.cli train --config eval/ranking/ml1m.yaml``.
    """
    import argparse
    import logging as _logging
    import sys

    from llmrec.config import load_config
    from llmrec.errors import LlmrecError

    parser = argparse.ArgumentParser(prog="python -m llmrec.ranking.cli")
    register(parser.add_subparsers(dest="command"))
    args, rest = parser.parse_known_args(["rank", *(sys.argv[1:] if argv is None else argv)])
    _logging.basicConfig(level=_logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_handler", None):
        args._group_parser.print_help()
        return 2
    try:
        cfg = load_config(args._config_cls, getattr(args, "config", None), rest) \
            if args._config_cls is not None else None
        from llmrec.cli import check_outputs

        check_outputs(args, cfg)
        return int(args._handler(cfg, args) or 0)
    except LlmrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
