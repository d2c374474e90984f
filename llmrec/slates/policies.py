"""Slate policies on a Bayesian slate model: greedy, Thompson sampling, in-slate Thompson sampling.

All three score every item row against each user's state (computed with the posterior-mean item
vectors: only the item vectors, the model's output layer, are sampled) and never show padding,
the no-click row or an item in ``exclude`` (e.g. what the user already clicked):

- ``greedy``: the top-k by the posterior-mean scores;
- ``thompson``: one draw of the item vectors per user, its top-k;
- ``in_slate_thompson``: a fresh draw per slot; slot j takes the best item of draw j that is not
  already in the slate (no duplicates), so one slate explores several posterior draws.
"""

from __future__ import annotations

import torch

POLICIES = ("greedy", "thompson", "in_slate_thompson")


def _mask(scores: torch.Tensor, exclude: torch.Tensor | None) -> torch.Tensor:
    scores[:, :2] = float("-inf")
    if exclude is not None:
        scores = scores.masked_fill(exclude, float("-inf"))
    return scores


@torch.no_grad()
def choose_slates(model, z: torch.Tensor, k: int, policy: str,
                  exclude: torch.Tensor | None = None, generator: torch.Generator | None = None,
                  chunk: int = 128) -> torch.Tensor:
    """``[B, k]`` item rows for user states ``z [B, D]``; ``exclude [B, R]`` bool."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if policy == "greedy":
        return _mask(model.item_scores(z), exclude).topk(k, 1).indices
    out = []
    for start in range(0, z.shape[0], chunk):
        zc = z[start:start + chunk]
        ex = None if exclude is None else exclude[start:start + chunk]
        if policy == "thompson":
            V = model.item_vectors(sample=True, n=zc.shape[0], generator=generator)
            out.append(_mask(model.item_scores(zc, V), ex).topk(k, 1).indices)
            continue
        chosen = torch.zeros(zc.shape[0], model.spec.n_items, dtype=torch.bool, device=z.device)
        if ex is not None:
            chosen |= ex
        slots = []
        for _ in range(k):
            V = model.item_vectors(sample=True, n=zc.shape[0], generator=generator)
            pick = _mask(model.item_scores(zc, V), chosen).argmax(1)
            chosen[torch.arange(zc.shape[0], device=z.device), pick] = True
            slots.append(pick)
        out.append(torch.stack(slots, 1))
    return torch.cat(out)
