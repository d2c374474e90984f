"""One watch-time run from a recipe: ``python -m llmrec.ranking.watchtime_run --config FILE.yaml``.

A KuaiRand / KuaiRec log (:mod:`llmrec.data.kuairand`), its watch-time labels, a CTR backbone and
the :class:`~llmrec.ranking.watchtime.WatchTimeTask`; kept apart from :mod:`llmrec.ranking.watchtime`
(labels, losses, metrics) because the loader itself uses those labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmrec.config import option
from llmrec.ranking.watchtime import WatchTimeConfig, WatchTimeTask


def _run_config_types():
    from llmrec.data.kuairand import KuaiRandConfig
    from llmrec.ranking.train_config import TrainConfig

    return KuaiRandConfig, TrainConfig


_KuaiRandConfig, _TrainConfig = _run_config_types()


@dataclass
class WatchTimeRun:
    """One watch-time run: a KuaiRand / KuaiRec log, a label (or CWM), a backbone, training."""

    kuairand: _KuaiRandConfig = option(default_factory=_KuaiRandConfig,
                                       help="the log (llmrec.data.kuairand)")
    watchtime: WatchTimeConfig = option(default_factory=WatchTimeConfig,
                                        help="label / loss and their parameters")
    model: str = option("deepfm", help="a CTR backbone (`llmrec rank models`)")
    model_args: dict[str, Any] = option({}, help="its hyper-parameters")
    train: _TrainConfig = option(default_factory=_TrainConfig, help="training settings")
    output: str = option("", help="JSON file for the result (empty: print only)")


def run_watchtime(cfg: WatchTimeRun) -> dict[str, Any]:
    """Load the log, add the labels, train ``cfg.model`` on ``cfg.watchtime.label``; returns the
    trainer's result with the valid / test watch-time metrics."""
    from llmrec.data.kuairand import load_kuairand
    from llmrec.ranking.features import build_features
    from llmrec.ranking.registry import build_model
    from llmrec.ranking.task_config import TaskConfig
    from llmrec.ranking.trainer import Trainer, seed_everything

    kcfg, tcfg = cfg.kuairand, cfg.train
    kcfg.tau, kcfg.d2co_alpha, kcfg.d2co_window = (cfg.watchtime.tau, cfg.watchtime.d2co_alpha,
                                                   cfg.watchtime.d2co_window)
    data, split, fcfg = load_kuairand(kcfg)
    fs = build_features(data, split, fcfg)
    seed_everything(tcfg.seed)
    model = build_model(cfg.model, fs.spec, **cfg.model_args)
    task = WatchTimeTask(TaskConfig(kind="regression", monitor="gauc", mode="max"), fs.spec,
                         cfg.watchtime)
    result = Trainer(model, fs, tcfg, task=task).fit()
    result.update(model=cfg.model, label=cfg.watchtime.label, dataset=kcfg.name,
                  data=split.info)
    if cfg.output:
        from llmrec.artifacts import write_json_atomic

        write_json_atomic(cfg.output, result)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m llmrec.ranking.watchtime_run --config FILE.yaml [--key=value ...]``."""
    import argparse
    import json
    import logging

    from llmrec.config import load_config

    ap = argparse.ArgumentParser(description="one watch-time run (see eval/watchtime/README.md)")
    ap.add_argument("--config", required=True)
    args, rest = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO)
    cfg = load_config(WatchTimeRun, args.config, rest)
    res = run_watchtime(cfg)
    print(json.dumps({"label": res["label"], "model": res["model"], "valid": res["valid"],
                      "test": res.get("test")}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
