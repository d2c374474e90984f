"""The explicit list of ranking models, by family, checked for duplicates.

Extension is the point here: a new model is one file in its family's folder under
``llmrec/ranking/models/`` plus one line in that family's ``MODELS``, or a call to
:func:`register` from user code. Names are case-insensitive and unique across families.
Constructor keyword arguments are the model's hyper-parameters; :func:`build_model` rejects
unknown ones by name, the same way configs reject unknown keys.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from llmrec.errors import ConfigError
from llmrec.ranking.models import ctr, ltr, multitask, sequential, slate

FAMILIES = {"ctr": ctr, "sequential": sequential, "multitask": multitask, "ltr": ltr,
            "slate": slate}


def _collect() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for family, module in FAMILIES.items():
        for name, mod, cls in module.MODELS:
            if name in out:
                raise ValueError(f"model {name!r} is registered twice ({out[name]['family']} "
                                 f"and {family})")
            out[name] = {"family": family, "module": mod, "class": cls, "loaded": None}
    return out


_REGISTRY = _collect()


def register(name: str, cls: type, family: str = "ctr") -> None:
    """Add a model class under ``name`` in ``family`` (an error if the name is taken)."""
    key = name.lower()
    if key in _REGISTRY:
        raise ValueError(f"model {key!r} is already registered")
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    _REGISTRY[key] = {"family": family, "module": cls.__module__, "class": cls.__name__,
                      "loaded": cls}


def list_models(family: str | None = None) -> list[str]:
    return [n for n, e in _REGISTRY.items() if family is None or e["family"] == family]


def list_backbones() -> list[str]:
    """The CTR family (the backbones knowledge augmentation wraps)."""
    return list_models("ctr")


def family_of(name: str) -> str:
    return _entry(name)["family"]


def family_tasks(family: str) -> tuple[str, ...]:
    return tuple(FAMILIES[family].TASKS)


def _entry(name: str) -> dict[str, Any]:
    key = name.lower()
    if key not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]


def get_model(name: str) -> type:
    entry = _entry(name)
    if entry["loaded"] is None:
        entry["loaded"] = getattr(importlib.import_module(entry["module"]), entry["class"])
    return entry["loaded"]


def hyper_parameters(name: str) -> dict[str, Any]:
    """The model's hyper-parameters and their defaults (its constructor minus the spec)."""
    sig = inspect.signature(get_model(name).__init__)
    return {p.name: p.default for p in list(sig.parameters.values())[2:]}


def build_model(name: str, spec, **kwargs: Any):
    """Instantiate model ``name`` for ``spec`` with hyper-parameters ``kwargs``."""
    cls = get_model(name)
    valid = hyper_parameters(name)
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        raise ConfigError(f"model {name!r} has no hyper-parameter(s) {', '.join(unknown)}; "
                          f"valid: {', '.join(valid)}")
    # YAML gives lists where constructors expect tuples
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    return cls(spec, **kwargs)


# the names the CTR-only engine used
get_backbone = get_model
build_backbone = build_model
