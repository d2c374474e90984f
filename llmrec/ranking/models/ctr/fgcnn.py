"""FGCNN: a CNN over the field axis finds local feature patterns and a dense layer recombines them
into new feature embeddings; an IPNN-style classifier (the flattened fields plus every pairwise
inner product, then an MLP) reads the raw and the generated features together.

Liu, Tang, Chen, Yu, Guo and Zhang, "Feature Generation by Convolutional Neural Network for
Click-Through Rate Prediction", WWW 2019.

The generator has its own embedding of the fields (``share_embedding=False``, as in the paper and
FuxiCTR's template), viewed as a one-channel image ``[B, 1, F, D]``. Layer i: a ``(h, 1)``
convolution along the field axis with "same" padding and ``c_i`` channels, BatchNorm, tanh, a
``(p, 1)`` max-pool that keeps a partial last window (``F_i = ceil(F_{i-1} / p)``), then
``flatten [B, c_i F_i D] -> Linear -> tanh`` gives ``r_i F_i`` new D-vectors. The classifier
sees ``N = F + sum_i r_i F_i`` fields. The CNN is local, so the field order matters: it is the
fixed order of :meth:`Embedded.fields` (user, target item, pooled history, context, dense).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from llmrec.errors import ConfigError
from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP, FeatureEmbedding
from llmrec.ranking.models.base import Backbone


def _per_layer(value: int | tuple[int, ...], n: int, name: str) -> list[int]:
    vals = [int(value)] * n if isinstance(value, int) else [int(v) for v in value]
    if len(vals) != n:
        raise ConfigError(f"fgcnn: {name} has {len(vals)} values for {n} convolution layers; "
                          f"give one value or one per layer of channels")
    if any(v < 1 for v in vals):
        raise ConfigError(f"fgcnn: every {name} value must be >= 1, got {vals}")
    return vals


def generated_field_heights(n_fields: int, pooling: list[int]) -> list[int]:
    """Field-axis height after each convolution layer's pooling: F_i = ceil(F_{i-1} / p_i)."""
    heights, f = [], n_fields
    for p in pooling:
        f = math.ceil(f / p)
        heights.append(f)
    return heights


def n_generated_fields(n_fields: int, pooling: list[int], recombined: list[int]) -> int:
    """New fields of the generator: sum_i r_i F_i."""
    return sum(r * f for r, f in zip(recombined, generated_field_heights(n_fields, pooling)))


class FeatureGenerator(nn.Module):
    """conv (h, 1) -> BN -> tanh -> max-pool (p, 1) per layer; each layer's pooled maps are
    recombined by a dense layer into ``r_i F_i`` new field embeddings."""

    def __init__(self, n_fields: int, embed_dim: int, channels: list[int], kernels: list[int],
                 pooling: list[int], recombined: list[int]) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.heights = generated_field_heights(n_fields, pooling)
        self.convs = nn.ModuleList()
        self.recombine = nn.ModuleList()
        in_ch = 1
        for c, h, p, r, f in zip(channels, kernels, pooling, recombined, self.heights):
            self.convs.append(nn.Sequential(
                nn.Conv2d(in_ch, c, kernel_size=(h, 1), padding="same"),
                nn.BatchNorm2d(c), nn.Tanh(),
                nn.MaxPool2d(kernel_size=(p, 1), stride=(p, 1), ceil_mode=True)))
            self.recombine.append(nn.Sequential(nn.Linear(c * f * embed_dim, r * f * embed_dim),
                                                nn.Tanh()))
            in_ch = c
        self.n_new = sum(r * f for r, f in zip(recombined, self.heights))

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        """[B, F, D] generator embeddings -> [B, sum r_i F_i, D] new features."""
        b = fields.shape[0]
        x = fields.unsqueeze(1)
        new = []
        for conv, recombine in zip(self.convs, self.recombine):
            x = conv(x)
            new.append(recombine(x.flatten(1)).view(b, -1, self.embed_dim))
        return torch.cat(new, dim=1)


def pairwise_inner_products(fields: torch.Tensor) -> torch.Tensor:
    """All N(N-1)/2 inner products <e_i, e_j>, i < j, of [B, N, D] fields: [B, N(N-1)/2]."""
    n = fields.shape[1]
    rows, cols = torch.triu_indices(n, n, offset=1, device=fields.device)
    gram = torch.bmm(fields, fields.transpose(1, 2))
    return gram[:, rows, cols]


class FGCNN(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 20,
                 channels: tuple[int, ...] = (38, 40, 42, 44),
                 kernel_heights: int | tuple[int, ...] = 9,
                 pooling_sizes: int | tuple[int, ...] = 2,
                 recombined_channels: int | tuple[int, ...] = 3,
                 hidden: tuple[int, ...] = (4096, 2048), dropout: float = 0.0,
                 batch_norm: bool = False, activation: str = "relu",
                 share_embedding: bool = False) -> None:
        super().__init__(spec, embed_dim)
        channels = [int(c) for c in channels]
        if not channels or any(c < 1 for c in channels):
            raise ConfigError(f"fgcnn: channels must be a non-empty list of positive ints, got "
                              f"{channels}")
        n = len(channels)
        kernels = _per_layer(kernel_heights, n, "kernel_heights")
        pooling = _per_layer(pooling_sizes, n, "pooling_sizes")
        recombined = _per_layer(recombined_channels, n, "recombined_channels")
        self.generator_embedding = None if share_embedding else FeatureEmbedding(spec, embed_dim)
        self.generator = FeatureGenerator(self.n_fields, embed_dim, channels, kernels, pooling,
                                          recombined)
        self.n_total_fields = self.n_fields + self.generator.n_new
        nt = self.n_total_fields
        self.mlp = MLP(nt * embed_dim + nt * (nt - 1) // 2, list(hidden), out_dim=1,
                       dropout=dropout, batch_norm=batch_norm, activation=activation)

    def forward(self, batch: dict) -> dict:
        raw = self.embed(batch).fields()
        gen_in = raw if self.generator_embedding is None else \
            self.generator_embedding(batch).fields()
        fields = torch.cat([raw, self.generator(gen_in)], dim=1)
        x = torch.cat([fields.flatten(1), pairwise_inner_products(fields)], dim=1)
        return {"logit": self.mlp(x).squeeze(-1)}
