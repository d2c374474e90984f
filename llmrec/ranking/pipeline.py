"""End-to-end ranking runs: data -> split -> features -> backbone -> trainer -> metrics on disk.

:class:`RankConfig` is what ``llmrec rank train --config FILE.yaml`` resolves; :func:`run_train`
and :func:`run_popularity` are what the commands (and the benchmark recipes) call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmrec.config import option
from llmrec.data.loaders import DataConfig
from llmrec.data.splits import SplitConfig
from llmrec.ranking.features import FeatureConfig
from llmrec.ranking.knowledge.config import AugmentConfig
from llmrec.ranking.train_config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class RankConfig:
    """One ranking run: which data, split, features, backbone and training settings."""

    data: DataConfig = option(default_factory=DataConfig, help="the dataset")
    split: SplitConfig = option(default_factory=SplitConfig, help="the split protocol")
    split_path: str | None = option(None, help="load a split saved by `llmrec data split` instead "
                                               "of making one")
    features: FeatureConfig = option(default_factory=FeatureConfig, help="feature encoding")
    features_path: str | None = option(None, help="cache of encoded features: loaded if it "
                                                  "exists, else built and saved there")
    model: str = option("dcnv2", help="backbone name (see `llmrec rank models`)")
    model_args: dict[str, Any] = option({}, help="backbone hyper-parameters, e.g. "
                                                 "{embed_dim: 32, hidden: [400, 400]}")
    train: TrainConfig = option(default_factory=TrainConfig, help="training settings")
    output_dir: str = option("runs/rank", help="folder for checkpoints, best weights, metrics")
    augment: Literal["none", "kar", "kser"] = option(
        "none", help="LLM knowledge: none, kar (KAR's hybrid-expert adaptor) or kser (filtering "
                     "+ alignment); see docs/kser.md")
    strategy: Literal["all", "extractor"] = option(
        "all", help="all: train backbone and knowledge extractor together; extractor: train (or "
                    "load) the backbone without knowledge, freeze it, train only the extractor")
    knowledge: AugmentConfig = option(default_factory=AugmentConfig,
                                      help="knowledge vectors and KAR / KSER settings")

    def __post_init__(self) -> None:
        from llmrec.ranking.registry import list_backbones

        if self.model.lower() not in list_backbones():
            raise ValueError(f"model: unknown backbone {self.model!r}; choose one of: "
                             f"{', '.join(list_backbones())}")
        if self.strategy == "extractor" and self.augment == "none":
            raise ValueError("strategy extractor trains a knowledge extractor: set augment to "
                             "kar or kser")


def prepare_features(cfg: RankConfig):
    """Load or build the encoded features for ``cfg`` (cached at ``features_path`` if given)."""
    from llmrec.ranking.features import FeatureSet, build_features

    if cfg.features_path and (Path(cfg.features_path) / "features.safetensors").is_file():
        log.info("loading encoded features from %s", cfg.features_path)
        return FeatureSet.load(cfg.features_path)
    from llmrec.data.loaders import load_data
    from llmrec.data.splits import Split, make_split

    data = load_data(cfg.data)
    split = Split.load(cfg.split_path) if cfg.split_path else make_split(data, cfg.split)
    fs = build_features(data, split, cfg.features)
    # knowledge augmentation looks entities up by id; rows do not name them otherwise
    from llmrec.ranking.knowledge.store import attach_row_ids

    attach_row_ids(fs, data, split)
    fs.info["dataset"] = data.name
    fs.info["split_fingerprint"] = getattr(split, "fingerprint", "")
    if cfg.features_path:
        fs.save(cfg.features_path, config=cfg)
    return fs


def run_train(cfg: RankConfig, features=None) -> dict[str, Any]:
    """Train ``cfg.model`` and write checkpoint, best weights and metrics under ``output_dir``."""
    import copy

    from llmrec.ranking.registry import build_backbone
    from llmrec.ranking.trainer import Trainer, seed_everything

    fs = features if features is not None else prepare_features(cfg)
    if features is not None:
        # a shared FeatureSet may have been moved to another device by an earlier run
        fs = copy.copy(fs)
    if cfg.augment != "none":
        from llmrec.ranking.knowledge.augment import run_augmented_train

        return run_augmented_train(cfg, fs)
    seed_everything(cfg.train.seed)
    model = build_backbone(cfg.model, copy.deepcopy(fs.spec), **cfg.model_args)
    trainer = Trainer(model, fs, cfg.train, output_dir=cfg.output_dir, run_config=cfg)
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    result["model"] = cfg.model
    result["n_parameters"] = sum(p.numel() for p in model.parameters())
    result["device"] = str(trainer.device)
    return result


def run_popularity(cfg: RankConfig, features=None, alpha: float = 10.0) -> dict[str, Any]:
    from llmrec.ranking.popularity import evaluate_popularity

    fs = features if features is not None else prepare_features(cfg)
    return evaluate_popularity(fs, alpha)
