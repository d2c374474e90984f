"""``llmrec rank`` commands, through a parser that holds only the ranking group."""

from __future__ import annotations

import argparse

import pytest

from llmrec.config import load_config
from llmrec.errors import ConfigError


def _parser():
    from llmrec.ranking import cli

    parser = argparse.ArgumentParser(prog="llmrec")
    cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_rank_group_and_models(capsys):
    args, rest = _parser().parse_known_args(["rank", "models"])
    assert rest == [] and args._config_cls is None
    assert args._handler(None, args) == 0
    out = capsys.readouterr().out
    assert "dcnv2" in out and "cross_layers=3" in out and "din" in out


def test_rank_train_config_resolution(tmp_path):
    args, rest = _parser().parse_known_args(
        ["rank", "train", "--model=din", "--train.epochs=2", "--model_args={embed_dim: 8}"])
    cfg = load_config(args._config_cls, None, rest)
    assert cfg.model == "din" and cfg.train.epochs == 2 and cfg.model_args == {"embed_dim": 8}
    assert cfg.features.max_hist_len == 10 and cfg.split.protocol == "kar"
    with pytest.raises(ConfigError, match="unknown model"):
        load_config(args._config_cls, None, ["--model=nope"])
    with pytest.raises(ConfigError, match="train.epoch"):
        load_config(args._config_cls, None, ["--train.epoch=3"])


def test_recipes_load():
    """Every YAML recipe under eval/ranking resolves against RankConfig."""
    from pathlib import Path

    from llmrec.ranking.pipeline import RankConfig

    root = Path(__file__).resolve().parents[1] / "eval" / "ranking"
    recipes = sorted(root.glob("*.yaml"))
    assert recipes, "no ranking recipes"
    for path in recipes:
        cfg = load_config(RankConfig, path)
        assert cfg.model
