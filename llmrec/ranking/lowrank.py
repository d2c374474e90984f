"""Low-rank linear layers: the factor pairs a compressed run (``llmrec rank compress``) holds in
place of its linear layers, and how :func:`~llmrec.ranking.runs.load_run` rebuilds them."""

from __future__ import annotations

from torch import nn

from llmrec.errors import ConfigError


def _set_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, new)


def low_rank_linear(lin: nn.Linear, k: int) -> nn.Sequential:
    """An untrained in -> k -> out factor pair shaped to replace ``lin``."""
    first = nn.Linear(lin.in_features, k, bias=False)
    second = nn.Linear(k, lin.out_features, bias=lin.bias is not None)
    return nn.Sequential(first, second).to(device=lin.weight.device, dtype=lin.weight.dtype)


def factorise_structure(model: nn.Module, ranks: dict[str, int]) -> None:
    """Replace the linear layers named in ``ranks`` by factor pairs of those ranks (what
    ``load_run`` does before loading a compressed run's weights)."""
    for path, k in ranks.items():
        try:
            lin = model.get_submodule(path)
        except AttributeError:
            raise ConfigError(f"low_rank_linear names {path!r}, which this model does not "
                              f"have") from None
        if not isinstance(lin, nn.Linear):
            raise ConfigError(f"low_rank_linear names {path!r}, which is not a linear layer")
        _set_module(model, path, low_rank_linear(lin, int(k)))
