"""ReLoop2: an error memory that compensates any CTR model's predictions at serving time.

Zhu et al., "ReLoop2: Building Self-Adaptive Recommendation Models via Responsive Error
Compensation Loop", KDD 2023 (arXiv 2306.08808). The base model stays as it is (slow to
retrain); a non-parametric memory keeps recent ``(key, error)`` pairs, ``error = y - p`` of the
base model's prediction ``p``, and a new sample's prediction is corrected by the errors of the
stored samples most similar to it:

    p' = clip(p + lambda * e_hat(key), 1e-6, 1 - 1e-6)      (lambda = 0: p' = p, unclipped)

- the key (:func:`representation`) is the backbone's last hidden vector, the input of its last
  ``Linear(., 1)`` output layer (``key="hidden"``), or the flattened field embeddings of the
  model's (first) feature embedding, which every backbone has (``key="embedding"``);
  L2-normalised by the memories;
- :class:`ExactKNNMemory` (the reference): cosine top-``k`` neighbours among the newest
  ``capacity`` entries, softmax(similarity / temperature) weights times each entry's decay
  weight;
- :class:`LSHMemory` (the sketch): ``n_tables`` SimHash tables of ``n_bits`` sign projections
  (``2^n_bits`` buckets each), a bucket keeps the decayed sum of errors and count; ``e_hat`` is
  the mean over the tables whose bucket is not empty of the bucket mean. Constant memory, O(1)
  insert and lookup;
- ``end_window()`` multiplies every stored weight (counts and sums) by ``decay``.

:class:`ReLoop2` wraps a model and a memory: :meth:`~ReLoop2.predict` gives ``p'``, ``p`` and
the keys, :meth:`~ReLoop2.update` stores the errors of labelled samples. The prequential
evaluation over time windows is :mod:`llmrec.ranking.stream`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from llmrec.errors import ConfigError

KEYS = ("hidden", "embedding")


def _output_layer(model: nn.Module) -> nn.Linear | None:
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.out_features == 1:
            last = m
    return last


@torch.no_grad()
def representation(model: nn.Module, batch: dict, key: str = "hidden"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keys [B, H], logit [B])`` of ``model`` (eval mode) on ``batch``. ``hidden``: the input
    of the model's last registered ``Linear(., 1)`` (its output layer), captured by a forward
    pre-hook that changes nothing; ``embedding``: the flattened field embeddings, captured by a
    forward hook on the model's feature embedding (so wrappers that add fields still work)."""
    if key not in KEYS:
        raise ConfigError(f"ReLoop2 key must be one of {', '.join(KEYS)}, not {key!r}")
    if key == "embedding":
        from llmrec.ranking.layers import FeatureEmbedding

        layer = next((m for m in model.modules() if isinstance(m, FeatureEmbedding)), None)
        if layer is None:
            raise ConfigError(f"key='embedding' needs a model that embeds the features "
                              f"(a FeatureEmbedding); {type(model).__name__} has none")
        seen: list = []
        handle = layer.register_forward_hook(lambda _m, _a, out: seen.append(out))
        try:
            out = model(batch)
        finally:
            handle.remove()
        logit = out["logit"]
        flat = [e.fields().flatten(1) for e in seen]
        fits = [f for f in flat if f.shape[0] == logit.shape[0]]
        if not fits:
            raise ConfigError(f"{type(model).__name__}'s feature embedding saw no batch")
        return fits[-1].float(), logit
    layer = _output_layer(model)  # the output layer, whatever module holds it
    if layer is None:
        raise ConfigError(f"{type(model).__name__} has no Linear(., 1) output layer to take the "
                          f"hidden vector from; use key='embedding'")
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    try:
        out = model(batch)
    finally:
        handle.remove()
    logit = out["logit"]
    fits = [h for h in seen if h.shape[0] == logit.shape[0]]
    if not fits:
        raise ConfigError(f"{type(model).__name__}'s output layer saw no [B, H] input; use "
                          f"key='embedding'")
    return fits[-1].reshape(logit.shape[0], -1).float(), logit


def _normalise(keys: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(keys.float(), dim=1)


class ExactKNNMemory:
    """The reference: exact cosine top-``k`` over the newest ``capacity`` stored samples."""

    def __init__(self, dim: int, k: int = 50, capacity: int = 50_000, temperature: float = 0.1,
                 decay: float = 0.99, chunk: int = 4096) -> None:
        if k < 1 or capacity < 1 or temperature <= 0 or not 0 < decay <= 1:
            raise ConfigError("ExactKNNMemory needs k >= 1, capacity >= 1, temperature > 0 and "
                              "0 < decay <= 1")
        self.dim, self.k, self.capacity = dim, k, capacity
        self.temperature, self.decay, self.chunk = temperature, decay, chunk
        self.keys = torch.zeros(0, dim)
        self.errors = torch.zeros(0)
        self.weights = torch.zeros(0)

    def __len__(self) -> int:
        return self.errors.numel()

    def insert(self, keys: torch.Tensor, errors: torch.Tensor) -> None:
        if keys.shape[1] != self.dim:
            raise ConfigError(f"memory keys have width {self.dim}, got {keys.shape[1]}")
        self.keys = torch.cat([self.keys, _normalise(keys).cpu()])[-self.capacity:]
        self.errors = torch.cat([self.errors, errors.float().cpu()])[-self.capacity:]
        self.weights = torch.cat([self.weights, torch.ones(errors.numel())])[-self.capacity:]

    def end_window(self) -> None:
        self.weights *= self.decay

    def estimate(self, keys: torch.Tensor) -> torch.Tensor:
        q = _normalise(keys).cpu()
        if len(self) == 0:
            return torch.zeros(q.shape[0])
        k = min(self.k, len(self))
        out = []
        for part in q.split(self.chunk):
            sim, idx = (part @ self.keys.T).topk(k, 1)
            w = torch.softmax(sim / self.temperature, 1) * self.weights[idx]
            out.append((w * self.errors[idx]).sum(1) / w.sum(1).clamp_min(1e-12))
        return torch.cat(out)

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.numel() for t in (self.keys, self.errors, self.weights))


class LSHMemory:
    """SimHash sketch: ``n_tables`` tables of ``2^n_bits`` buckets of decayed error sums and
    counts; a fixed size whatever the number of samples inserted."""

    def __init__(self, dim: int, n_tables: int = 8, n_bits: int = 10, decay: float = 0.99,
                 seed: int = 0) -> None:
        if n_tables < 1 or not 1 <= n_bits <= 24 or not 0 < decay <= 1:
            raise ConfigError("LSHMemory needs n_tables >= 1, 1 <= n_bits <= 24 and "
                              "0 < decay <= 1")
        g = torch.Generator().manual_seed(seed)
        self.dim, self.n_tables, self.n_bits, self.decay = dim, n_tables, n_bits, decay
        self.planes = torch.randn(dim, n_tables * n_bits, generator=g)
        self.powers = 2 ** torch.arange(n_bits)
        self.sums = torch.zeros(n_tables, 2 ** n_bits, dtype=torch.float64)
        self.counts = torch.zeros(n_tables, 2 ** n_bits, dtype=torch.float64)
        self.offsets = torch.arange(n_tables) * 2 ** n_bits

    def codes(self, keys: torch.Tensor) -> torch.Tensor:
        """Bucket id per table ``[N, n_tables]``."""
        if keys.shape[1] != self.dim:
            raise ConfigError(f"memory keys have width {self.dim}, got {keys.shape[1]}")
        bits = (keys.float().cpu() @ self.planes > 0).long()  # normalising does not change signs
        return (bits.view(-1, self.n_tables, self.n_bits) * self.powers).sum(-1)

    def insert(self, keys: torch.Tensor, errors: torch.Tensor) -> None:
        flat = (self.codes(keys) + self.offsets).reshape(-1)
        e = errors.double().cpu()[:, None].expand(-1, self.n_tables).reshape(-1)
        self.sums.view(-1).index_add_(0, flat, e)
        self.counts.view(-1).index_add_(0, flat, torch.ones_like(e))

    def end_window(self) -> None:
        self.sums *= self.decay
        self.counts *= self.decay

    def estimate(self, keys: torch.Tensor) -> torch.Tensor:
        flat = self.codes(keys) + self.offsets
        s, c = self.sums.view(-1)[flat], self.counts.view(-1)[flat]
        filled = c > 0
        mean = torch.where(filled, s / c.clamp_min(1e-12), torch.zeros_like(s))
        n = filled.sum(1)
        return torch.where(n > 0, mean.sum(1) / n.clamp_min(1), torch.zeros_like(n,
                           dtype=mean.dtype)).float()

    def __len__(self) -> int:
        return int(round(float(self.counts[0].sum())))

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.numel() for t in (self.planes, self.sums, self.counts))


class ReLoop2:
    """A CTR model plus an error memory; ``lam`` is the compensation weight."""

    def __init__(self, model: nn.Module, memory, lam: float = 0.3, key: str = "hidden") -> None:
        if not math.isfinite(lam) or lam < 0:
            raise ConfigError(f"ReLoop2 lambda must be a finite number >= 0, got {lam}")
        if key not in KEYS:
            raise ConfigError(f"ReLoop2 key must be one of {', '.join(KEYS)}, not {key!r}")
        self.model, self.memory, self.lam, self.key = model, memory, lam, key

    @torch.no_grad()
    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        """``{"p": compensated, "p_base": the model's sigmoid, "keys", "e_hat"}``."""
        self.model.eval()
        keys, logit = representation(self.model, batch, self.key)
        p_base = torch.sigmoid(logit.float())
        e_hat = self.memory.estimate(keys).to(p_base.device)
        if self.lam == 0:
            p = p_base
        else:
            p = (p_base + self.lam * e_hat).clamp(1e-6, 1 - 1e-6)
        return {"p": p, "p_base": p_base, "keys": keys, "e_hat": e_hat}

    def update(self, keys: torch.Tensor, labels: torch.Tensor, p_base: torch.Tensor) -> None:
        """Store the base model's errors ``y - p`` of labelled samples."""
        self.memory.insert(keys, labels.float().to(p_base.device) - p_base)
