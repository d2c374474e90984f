"""End-to-end ranking runs: data -> split -> features -> model -> trainer -> run folder.

This module is the one orchestrator of the ranking engine: :class:`RankConfig` is what
``llmrec rank train --config FILE.yaml`` resolves; :func:`run_train` and :func:`run_popularity`
are what the commands (and the benchmark recipes) call. Knowledge augmentation
(:mod:`llmrec.ranking.knowledge`) only builds models; the training order of its strategies
(backbone first, then the extractor) is decided here.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmrec.config import option
from llmrec.data.bars import BarsConfig
from llmrec.data.loaders import DataConfig
from llmrec.data.splits import SplitConfig
from llmrec.errors import ConfigError
from llmrec.ranking.features import FeatureConfig
from llmrec.ranking.knowledge.config import AugmentConfig
from llmrec.ranking.task_config import TaskConfig
from llmrec.ranking.train_config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class RankConfig:
    """One ranking run: which data, split, features, model, task and training settings."""

    data: DataConfig = option(default_factory=DataConfig, help="the dataset")
    bars: BarsConfig | None = option(None, help="BARS-format CTR CSV files (train / valid / test, "
                                                "e.g. Frappe_x1) instead of data + split; see "
                                                "llmrec/data/bars.py and eval/ctr/frappe.yaml")
    split: SplitConfig = option(default_factory=SplitConfig, help="the split protocol")
    split_path: str | None = option(None, help="load a split saved by `llmrec data split` instead "
                                               "of making one")
    features: FeatureConfig = option(default_factory=FeatureConfig, help="feature encoding")
    features_path: str | None = option(None, help="cache of encoded features: loaded if it "
                                                  "exists, else built and saved there")
    model: str = option("dcnv2", help="model name (see `llmrec rank models`)")
    model_args: dict[str, Any] = option({}, help="model hyper-parameters, e.g. "
                                                 "{embed_dim: 32, hidden: [400, 400]}")
    task: TaskConfig = option(default_factory=TaskConfig, help="what is learned and how it is "
                                                               "judged")
    train: TrainConfig = option(default_factory=TrainConfig, help="training settings")
    output_dir: str = option("runs/rank", help="run folder: checkpoints, best weights, metrics, "
                                               "everything `load_run` needs")
    augment: Literal["none", "kar", "kser"] = option(
        "none", help="LLM knowledge: none, kar (KAR's hybrid-expert adaptor) or kser (filtering "
                     "+ alignment); see docs/kser.md")
    strategy: Literal["all", "extractor"] = option(
        "all", help="all: train backbone and knowledge extractor together; extractor: train (or "
                    "load) the backbone without knowledge, freeze it, train only the extractor")
    knowledge: AugmentConfig = option(default_factory=AugmentConfig,
                                      help="knowledge vectors and KAR / KSER settings")
    field_dims: dict[str, int] = option({}, help="per-field embedding widths (field -> width, "
                                                 "e.g. {item_id: 6}; `llmrec rank fdo` writes "
                                                 "them): a named field gets its own narrower "
                                                 "table, projected to the model's embed_dim")

    def __post_init__(self) -> None:
        from llmrec.ranking.registry import family_of, family_tasks, list_models

        if self.model.lower() not in list_models():
            raise ValueError(f"model: unknown model {self.model!r}; choose one of: "
                             f"{', '.join(list_models())}")
        family = family_of(self.model)
        if self.task.kind not in family_tasks(family):
            raise ValueError(f"model {self.model!r} ({family} family) serves the task(s) "
                             f"{', '.join(family_tasks(family))}, not task.kind "
                             f"{self.task.kind!r}")
        if self.strategy == "extractor" and self.augment == "none":
            raise ValueError("strategy extractor trains a knowledge extractor: set augment to "
                             "kar or kser")
        if self.augment != "none" and family != "ctr":
            raise ValueError(f"augment {self.augment!r} wraps CTR models; {self.model!r} is in "
                             f"the {family} family")
        if self.bars is not None:
            if self.data != DataConfig() or self.split_path:
                raise ValueError("bars names the data files and their splits: leave data and "
                                 "split_path unset")
            if self.features_path:
                raise ValueError("features_path is not used with bars (BARS CSVs are encoded "
                                 "from the files each run); leave it unset")
        if self.knowledge.pretrain_epochs and self.task.kind != "binary":
            raise ValueError(f"knowledge.pretrain_epochs warm-starts the knowledge path on the "
                             f"binary label; task.kind is {self.task.kind!r}: set "
                             f"knowledge.pretrain_epochs: 0")
        if self.field_dims and self.augment != "none":
            raise ValueError("field_dims (per-field embedding widths) are not supported with "
                             "knowledge augmentation; set augment: none")


def prepare_features(cfg: RankConfig):
    """Load or build the encoded features for ``cfg`` (cached at ``features_path`` if given)."""
    from llmrec.ranking.features import FeatureSet, build_features
    from llmrec.ranking.inputs import check_inputs

    if cfg.bars is not None:
        from llmrec.data.bars import bars_features

        return bars_features(cfg.bars)
    check_inputs(cfg)  # split_path / features_path made from what cfg says, or refused
    if cfg.features_path and (Path(cfg.features_path) / "features.safetensors").is_file():
        log.info("loading encoded features from %s", cfg.features_path)
        return FeatureSet.load(cfg.features_path)
    from llmrec.data.loaders import load_data
    from llmrec.data.saved_split import load_saved_split
    from llmrec.data.splits import make_split

    data = load_data(cfg.data)
    split = load_saved_split(cfg.split_path, data) if cfg.split_path else make_split(data, cfg.split)
    fs = build_features(data, split, cfg.features)
    fs.info["dataset"] = data.name
    fs.info["split_fingerprint"] = getattr(split, "fingerprint", "")
    if cfg.features_path:
        fs.save(cfg.features_path, config=cfg)
    return fs


def with_field_dims(spec, field_dims: dict[str, int]):
    """A copy of ``spec`` with per-field embedding widths (checked against its fields)."""
    from llmrec.ranking.layers import check_field_dims

    out = copy.deepcopy(spec)
    out.field_dims = check_field_dims(spec, field_dims)
    return out


def model_arguments(cfg: RankConfig, spec) -> dict[str, Any]:
    """``cfg.model_args``, plus the task's label names for multi-task models that take them."""
    from llmrec.ranking.registry import hyper_parameters

    args = dict(cfg.model_args)
    if cfg.task.kind == "multitask" and "tasks" in hyper_parameters(cfg.model) \
            and "tasks" not in args:
        args["tasks"] = list(cfg.task.labels) or ["label", *spec.labels]
    return args


def _finish(trainer, cfg: RankConfig, fs, model, args: dict, augment: dict | None) -> dict:
    from llmrec.ranking.runs import save_run

    try:
        result = trainer.fit()
    finally:
        trainer.close()
    if cfg.output_dir and trainer.rank == 0:
        save_run(cfg.output_dir, model=cfg.model, model_args=args, features=fs, task=cfg.task,
                 augment=augment)
    result["model"] = cfg.model
    result["n_parameters"] = sum(p.numel() for p in model.parameters())
    result["device"] = str(trainer.device)
    return result


def run_train(cfg: RankConfig, features=None) -> dict[str, Any]:
    """Train ``cfg.model`` and write the run folder (checkpoint, best weights, metrics,
    ``run.json``) under ``output_dir``."""
    from llmrec.ranking.item_knowledge import attach_item_knowledge
    from llmrec.ranking.registry import build_model
    from llmrec.ranking.trainer import Trainer, seed_everything

    fs = features if features is not None else prepare_features(cfg)
    if features is not None:
        # a shared FeatureSet may have been moved to another device by an earlier run
        fs = copy.copy(fs)
    if cfg.augment != "none":
        return _run_augmented(cfg, fs)
    if cfg.field_dims:
        # the widths travel in the spec, so run.json (and load_run) rebuild the same tables
        fs = copy.copy(fs)
        fs.spec = with_field_dims(fs.spec, cfg.field_dims)
    seed_everything(cfg.train.seed)
    args = model_arguments(cfg, fs.spec)
    model = build_model(cfg.model, copy.deepcopy(fs.spec), **args)
    # item knowledge into a model's own embedding (SASRec's knowledge option); no-op otherwise
    attach_item_knowledge(model, fs, cfg.knowledge)
    # a model that precomputes from the training split (RAR's retrieval index) does it here
    if callable(getattr(model, "prepare", None)):
        model.prepare(fs)
    trainer = Trainer(model, fs, cfg.train, output_dir=cfg.output_dir, run_config=cfg,
                      task=cfg.task)
    return _finish(trainer, cfg, fs, model, args, None)


def _frozen_backbone(cfg: RankConfig, fs):
    """Strategy extractor: the trained backbone (``knowledge.backbone_path``, or one trained here
    without knowledge into ``output_dir/backbone``) and the result of training it, if any."""
    from llmrec.ranking.runs import load_run

    kcfg = cfg.knowledge
    base_result = None
    source = kcfg.backbone_path
    if not source:
        base_cfg = copy.deepcopy(cfg)
        base_cfg.augment, base_cfg.strategy = "none", "all"
        base_cfg.output_dir = str(Path(cfg.output_dir) / "backbone")
        base_result = run_train(base_cfg, features=fs)
        source = base_cfg.output_dir
    run = load_run(source)
    if run.record["model"] != cfg.model or run.record["spec"] != fs.spec.to_dict():
        raise ConfigError(f"knowledge.backbone_path: {source} holds a {run.record['model']!r} "
                          f"trained on other features than this run's {cfg.model!r}; train the "
                          f"backbone on the same data, split and features settings")
    log.info("extractor-only: backbone from %s, frozen", source)
    return run.model, base_result


def _pretrain_knowledge(model, fs, cfg: RankConfig) -> dict[str, Any]:
    """``knowledge.pretrain_epochs``: train the knowledge path of ``model`` alone (the extractor
    and its knowledge-only heads predict the label; the whole backbone, the embeddings KSER's
    queries read included, stays frozen), early-stopped on validation, and keep the best weights
    for joint training.

    Skipped (``{"skipped": reason}``) when the main run is about to resume from its checkpoint,
    which already holds the warm-started weights."""
    from llmrec.ranking.trainer import CHECKPOINT_DIR, Trainer

    if cfg.train.resume and cfg.output_dir and (Path(cfg.output_dir) / CHECKPOINT_DIR).is_dir():
        return {"skipped": "the run resumes from its checkpoint"}
    pre = copy.deepcopy(cfg.train)
    pre.epochs = cfg.knowledge.pretrain_epochs
    pre.checkpoint = False
    # the backbone stays as initialised: KSER's queries read its embeddings, and letting the
    # knowledge-only loss train them (user profile fields included) fits the training users and
    # hands joint training a distorted backbone
    frozen = [p for p in model.backbone.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    model.knowledge_only = True
    try:
        trainer = Trainer(model, fs, pre, output_dir=None, run_config=cfg, task=cfg.task)
        try:
            res = trainer.fit()
        finally:
            trainer.close()
    finally:
        model.knowledge_only = False
        for p in frozen:
            p.requires_grad_(True)
    log.info("knowledge-only warm start: best epoch %d of %d, valid %s", res["best_epoch"],
             res["epochs"], {k: round(v, 5) for k, v in res["valid"].items()
                              if isinstance(v, float)})
    return {k: res[k] for k in ("best_epoch", "epochs", "valid", "test", "stop_reason",
                                "train_seconds") if k in res}


def _run_augmented(cfg: RankConfig, fs) -> dict[str, Any]:
    """``rank train`` with ``augment: kar|kser`` (either strategy); see
    :mod:`llmrec.ranking.knowledge.augment`."""
    from llmrec.config import to_dict
    from llmrec.ranking.knowledge.augment import (build_augmented, field_means, input_scales,
                                                  resolve_injection)
    from llmrec.ranking.knowledge.store import coverage, load_knowledge
    from llmrec.ranking.trainer import Trainer, seed_everything

    kcfg = cfg.knowledge
    injection = resolve_injection(kcfg.injection, cfg.strategy)
    tables = load_knowledge(kcfg, {k: fs.row_ids(k) for k in ("user", "item")})
    cov = coverage(fs, tables)
    for kind, c in cov.items():
        if min(c.values()) < 0.5:
            log.warning("%s knowledge covers only %s of the samples per split: samples without "
                        "it get a zero knowledge vector (masked)", kind, c)
    backbone, base_result = (_frozen_backbone(cfg, fs) if cfg.strategy == "extractor"
                             else (None, None))
    seed_everything(cfg.train.seed)
    means = field_means(tables, fs) if cfg.augment == "kser" else None
    scales = input_scales(tables, fs, cfg.augment, means) if kcfg.rescale else None
    args = dict(cfg.model_args)
    model = build_augmented(cfg.model, args, fs.spec, tables, cfg.augment, kcfg, injection,
                            backbone=backbone, means=means, scales=scales)
    pretrain = _pretrain_knowledge(model, fs, cfg) if kcfg.pretrain_epochs > 0 else None
    trainer = Trainer(model, fs, cfg.train, output_dir=cfg.output_dir, run_config=cfg,
                      task=cfg.task)
    augment = {"method": cfg.augment, "strategy": cfg.strategy, "injection": injection,
               "knowledge": to_dict(kcfg)}
    result = _finish(trainer, cfg, fs, model, args, augment)
    result.update(augment=cfg.augment, strategy=cfg.strategy, injection=injection, coverage=cov,
                  n_trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
                  knowledge={k: t.summary() for k, t in tables.items()})
    if pretrain is not None:
        result["pretrain"] = pretrain
    if base_result is not None:
        result["backbone_result"] = {k: base_result[k] for k in ("valid", "test", "best_epoch")
                                     if k in base_result}
    return result


def run_popularity(cfg: RankConfig, features=None, alpha: float = 10.0) -> dict[str, Any]:
    from llmrec.ranking.popularity import evaluate_popularity

    fs = features if features is not None else prepare_features(cfg)
    return evaluate_popularity(fs, alpha)
