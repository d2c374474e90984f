"""``llmrec rank train|popularity|features|models``: CTR backbones on the GPU ranking engine."""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)


def _rank_config():
    # the config pulls in the data layer; imported only when a rank command is built
    from llmrec.ranking.pipeline import RankConfig

    return RankConfig


def _fmt(m: dict) -> str:
    return "  ".join(f"{k} {m[k]:.5f}" for k in ("auc", "gauc", "logloss") if k in m)


def _train(cfg, args) -> int:
    import os

    from llmrec.ranking.pipeline import run_train

    result = run_train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 reports
    print(f"{cfg.model}: best epoch {result['best_epoch']} of {result['epochs']}, "
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
    from llmrec.ranking.registry import hyper_parameters, list_backbones

    for name in list_backbones():
        hp = ", ".join(f"{k}={v!r}" for k, v in hyper_parameters(name).items())
        print(f"{name:<9} {hp}")
    return 0


def register(subparsers) -> None:
    from llmrec.cli import add_config_command

    p = subparsers.add_parser("rank", help="train and evaluate CTR ranking backbones",
                              description="CTR ranking: features, backbones, GPU trainer.")
    p.set_defaults(_handler=None, _group_parser=p)
    sub = p.add_subparsers(dest="rank_command", metavar="SUBCOMMAND")
    cfg_cls = _rank_config()
    add_config_command(sub, "train", cfg_cls, _train,
                       help="train one backbone (early stopping on valid AUC) and report test "
                            "AUC / gAUC / LogLoss")
    pop = add_config_command(sub, "popularity", cfg_cls, _popularity,
                             help="evaluate the item-popularity baseline on the same features")
    pop.add_argument("--alpha", type=float, default=10.0, help="smoothing toward the prior rate")
    add_config_command(sub, "features", cfg_cls, _features,
                       help="encode features once and save them (--features_path=DIR)")
    add_config_command(sub, "models", None, _models, help="list backbones and hyper-parameters")


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
        return int(args._handler(cfg, args) or 0)
    except LlmrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
