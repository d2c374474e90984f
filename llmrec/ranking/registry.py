"""The explicit list of CTR backbones, checked for duplicates.

Extension is the point here: a new backbone is one file under ``backbones/`` plus one line in
``_BUILTIN``, or a call to :func:`register` from user code. Names are case-insensitive.
Constructor keyword arguments are the model's hyper-parameters; :func:`build_backbone` rejects
unknown ones by name, the same way configs reject unknown keys.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from llmrec.errors import ConfigError

# (name, module, class): imported lazily so listing the models stays cheap
_BUILTIN: tuple[tuple[str, str, str], ...] = (
    ("dnn", "llmrec.ranking.backbones.dnn", "DNN"),
    ("deepfm", "llmrec.ranking.backbones.deepfm", "DeepFM"),
    ("dcn", "llmrec.ranking.backbones.dcn", "DCN"),
    ("dcnv2", "llmrec.ranking.backbones.dcnv2", "DCNv2"),
    ("xdeepfm", "llmrec.ranking.backbones.xdeepfm", "XDeepFM"),
    ("autoint", "llmrec.ranking.backbones.autoint", "AutoInt"),
    ("fibinet", "llmrec.ranking.backbones.fibinet", "FiBiNET"),
    ("fignn", "llmrec.ranking.backbones.fignn", "FiGNN"),
    ("din", "llmrec.ranking.backbones.din", "DIN"),
    ("dien", "llmrec.ranking.backbones.dien", "DIEN"),
    ("finalmlp", "llmrec.ranking.backbones.finalmlp", "FinalMLP"),
    ("gdcn", "llmrec.ranking.backbones.gdcn", "GDCN"),
)


def _check_unique(names: list[str]) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"backbone {n!r} is registered twice")
        seen.add(n)


_check_unique([n for n, _, _ in _BUILTIN])
_REGISTRY: dict[str, tuple[str, str] | type] = {n: (m, c) for n, m, c in _BUILTIN}


def register(name: str, cls: type) -> None:
    """Add a backbone class under ``name`` (an error if the name is taken)."""
    key = name.lower()
    if key in _REGISTRY:
        raise ValueError(f"backbone {key!r} is already registered")
    _REGISTRY[key] = cls


def list_backbones() -> list[str]:
    return list(_REGISTRY)


def get_backbone(name: str) -> type:
    key = name.lower()
    if key not in _REGISTRY:
        raise ConfigError(f"unknown backbone {name!r}; choose one of: {', '.join(_REGISTRY)}")
    entry = _REGISTRY[key]
    if isinstance(entry, tuple):
        entry = getattr(importlib.import_module(entry[0]), entry[1])
        _REGISTRY[key] = entry
    return entry


def hyper_parameters(name: str) -> dict[str, Any]:
    """The backbone's hyper-parameters and their defaults (its constructor minus the spec)."""
    sig = inspect.signature(get_backbone(name).__init__)
    return {p.name: p.default for p in list(sig.parameters.values())[2:]}


def build_backbone(name: str, spec, **kwargs: Any):
    """Instantiate backbone ``name`` for ``spec`` with hyper-parameters ``kwargs``."""
    cls = get_backbone(name)
    valid = hyper_parameters(name)
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        raise ConfigError(f"backbone {name!r} has no hyper-parameter(s) {', '.join(unknown)}; "
                          f"valid: {', '.join(valid)}")
    # YAML gives lists where constructors expect tuples
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    return cls(spec, **kwargs)
