"""Config loading: YAML, overrides, strict keys, types, secrets, help text."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import pytest

from llmrec.config import describe, format_help, load_config, option, to_dict
from llmrec.errors import ConfigError


@dataclass
class Inner:
    lr: float = option(1e-3, help="learning rate")
    layers: list[int] = option([400, 400], help="hidden sizes")


@dataclass
class Outer:
    name: str = option("din", help="model name")
    mode: Literal["all", "extractor"] = option("all", help="training strategy")
    seed: int = option(0, help="seed")
    compile: bool = option(False, help="torch.compile")
    path: str | None = option(None, help="optional path")
    token: str = option("", help="credential", secret=True)
    inner: Inner = option(default_factory=Inner, help="inner block")


def test_defaults_yaml_then_flags(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("seed: 3\ninner:\n  lr: 0.5\n")
    cfg = load_config(Outer, y, ["--inner.layers=[8,4]", "--seed", "7", "--compile"])
    assert cfg.seed == 7 and cfg.compile is True
    assert cfg.inner.lr == 0.5 and cfg.inner.layers == [8, 4]
    assert cfg.name == "din" and cfg.path is None


def test_unknown_flag_names_key_and_valid_ones():
    with pytest.raises(ConfigError) as e:
        load_config(Outer, None, ["--inner.lrr=0.1"])
    msg = str(e.value)
    assert "inner.lrr" in msg and "lr, layers" in msg and "Did you mean 'inner.lr'" in msg


def test_unknown_yaml_key_rejected(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("sed: 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'sed'.*Valid keys: name, mode, seed"):
        load_config(Outer, y)


@pytest.mark.parametrize("flag,match", [
    ("--seed=abc", "seed: expected an integer"),
    ("--mode=both", "mode: 'both' is not one of all, extractor"),
    ("--compile=maybe", "compile: expected true or false"),
    ("--inner.lr=fast", "inner.lr: expected a number"),
])
def test_bad_values(flag, match):
    with pytest.raises(ConfigError, match=match):
        load_config(Outer, None, [flag])


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "nope.yaml")
    y = tmp_path / "bad.yaml"
    y.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, y)
    y.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Outer, y)


def test_string_values_kept_verbatim_and_none():
    cfg = load_config(Outer, None, ["--name=1e3", "--path=none"])
    assert cfg.name == "1e3" and cfg.path is None


def test_secret_not_saved():
    cfg = load_config(Outer, None, ["--token=abc"])
    assert cfg.token == "abc"
    assert "token" not in to_dict(cfg)


def test_positional_argument_rejected():
    with pytest.raises(ConfigError, match="unexpected argument 'stray'"):
        load_config(Outer, None, ["stray"])


def test_help_lists_every_option():
    keys = [row[0] for row in describe(Outer)]
    assert keys == ["name", "mode", "seed", "compile", "path", "token", "inner.lr", "inner.layers"]
    text = format_help(Outer)
    assert "--inner.lr=float" in text and "learning rate" in text


def test_option_requires_help():
    with pytest.raises(ValueError):
        option(1, help="")


def test_all_project_configs_have_help():
    """Every config dataclass in the package documents every field."""
    import importlib
    import pkgutil

    import llmrec

    seen = 0
    for mod in pkgutil.walk_packages(llmrec.__path__, "llmrec."):
        if mod.name.endswith(("vllm_backend",)) or ".cli" in mod.name:
            continue
        try:
            m = importlib.import_module(mod.name)
        except ImportError:
            continue
        for obj in vars(m).values():
            if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__name__.endswith("Config"):
                for f in dataclasses.fields(obj):
                    assert f.metadata.get("help"), f"{obj.__name__}.{f.name} has no help text"
                seen += 1
    assert seen >= 1
