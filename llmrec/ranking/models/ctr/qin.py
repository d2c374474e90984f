"""QIN: sparse target attention over the behaviour sequence, then a quadratic interaction network
instead of an MLP.

Li et al., "Quadratic Interest Network for Multimodal Click-Through Rate Prediction", 2025 (second
place in the WWW'25 multimodal CTR challenge); design from the official repository
salmon1802/QIN@5d07dd1 (``QIN_variety_v9``).

Attention: with ``t`` the target item's slots flattened ``[B, KD]`` and ``H`` the behaviours
``[B, L, KD]``, ``q = W_q t``, ``k = W_k H``, ``v = W_v H`` (width ``2KD``, no bias);
``s = ReLU(q.k / sqrt(2KD) * mask)``: no softmax, so weights are unnormalised and every behaviour
with a negative score gets exactly zero (sparse); ``u = W_o(sum_l s_l v_l) + t``. ``W_o`` has no
bias here (the official layer has one), so an empty history gives ``u = t`` exactly.

Quadratic network (:class:`QuadraticNetwork`, a reusable head for any flat input): per layer
``h = Linear(x)`` reshaped ``[B, R, n]``, ``y = x * sum_r h_r``, BatchNorm, PReLU, dropout, plus
the residual ``x``; a final linear map gives the logit. Note that ``sum_r h_r = (sum_r W_r) x +
sum_r b_r``: the R rows are a reparametrisation of one ``n x n`` map (they change the
initialisation and the optimisation, not the function class), which ``tests/test_ctr_wave2_a.py``
checks.

Without a behaviour sequence (``max_hist_len: 0``, the BARS sets) QIN is the quadratic network
over the flat fields.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.models.base import Backbone


class SparseTargetAttention(nn.Module):
    """``u = W_o(sum_l ReLU(q.k_l / sqrt(a) * m_l) v_l) + t`` with attention width ``a``."""

    def __init__(self, dim: int, attention_dim: int | None = None) -> None:
        super().__init__()
        a = attention_dim or 2 * dim
        self.scale = 1.0 / math.sqrt(a)
        self.w_q = nn.Linear(dim, a, bias=False)
        self.w_k = nn.Linear(dim, a, bias=False)
        self.w_v = nn.Linear(dim, a, bias=False)
        self.w_o = nn.Linear(a, dim, bias=False)

    def scores(self, target: torch.Tensor, history: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        """Attention weights [B, L]: ReLU of the masked scaled dot products (0 where masked)."""
        q = self.w_q(target).unsqueeze(1)
        k = self.w_k(history)
        s = (q * k).sum(-1) * self.scale
        return torch.relu(s * mask.to(s.dtype))

    def forward(self, target: torch.Tensor, history: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        s = self.scores(target, history, mask)
        pooled = torch.bmm(s.unsqueeze(1), self.w_v(history)).squeeze(1)
        return self.w_o(pooled) + target


class QuadraticLayer(nn.Module):
    """``y = x * sum_r (W_r x + b_r)``: ``Linear(n, R n)`` reshaped to ``[B, R, n]`` and summed."""

    def __init__(self, dim: int, num_row: int = 4) -> None:
        super().__init__()
        if num_row < 1:
            raise ValueError(f"qin: num_row must be >= 1, got {num_row}")
        self.dim = dim
        self.num_row = num_row
        self.linear = nn.Linear(dim, num_row * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x).view(x.shape[0], self.num_row, self.dim)
        return x * h.sum(1)


class QuadraticNetwork(nn.Module):
    """A stack of quadratic layers (each: BatchNorm, PReLU, dropout, residual) and a linear
    read-out: ``[B, n] -> [B, out_dim]``. Usable as the head of any flat model in place of an MLP,
    e.g. ``QuadraticNetwork(fields.flatten(1).shape[1])`` over ``embed(batch).fields()``."""

    def __init__(self, in_dim: int, num_layers: int = 4, num_row: int = 4,
                 dropout: float = 0.1, batch_norm: bool = True, out_dim: int = 1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(QuadraticLayer(in_dim, num_row) for _ in range(num_layers))
        self.norms = nn.ModuleList(nn.BatchNorm1d(in_dim) if batch_norm else nn.Identity()
                                   for _ in range(num_layers))
        self.activations = nn.ModuleList(nn.PReLU() for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, norm, act in zip(self.layers, self.norms, self.activations):
            x = x + self.dropout(act(norm(layer(x))))
        return self.out(x)


class QIN(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 128, num_layers: int = 4,
                 num_row: int = 4, dropout: float = 0.1, batch_norm: bool = True,
                 attention_dim: int | None = None, embedding_l2: float = 2e-4) -> None:
        super().__init__(spec, embed_dim)
        k = spec.n_item_slots
        self.item_dim = k * embed_dim
        self.embedding_l2 = embedding_l2
        self.attention = (SparseTargetAttention(self.item_dim, attention_dim)
                          if spec.max_hist_len > 0 else None)
        # sequence data: [other fields, t, u]; flat data: the fields
        in_dim = self.flat_dim if self.attention is None else \
            (spec.n_fields - k) * embed_dim + self.item_dim
        self.qnn = QuadraticNetwork(in_dim, num_layers, num_row, dropout, batch_norm)

    def forward(self, batch: dict) -> dict:
        e = self.embed(batch)
        if self.attention is None:
            x = e.fields().flatten(1)
        else:
            b, l, k, d = e.history.shape
            u = self.attention(e.target.reshape(b, k * d), e.history.reshape(b, l, k * d), e.mask)
            # non_sequence() holds the target slots, so this is [other fields, t, u]
            x = torch.cat([e.non_sequence().flatten(1), u], dim=1)
        out = {"logit": self.qnn(x).squeeze(-1)}
        if self.training and self.embedding_l2 > 0:
            out["aux_loss"] = self.embedding_penalty()
        return out

    def embedding_penalty(self) -> torch.Tensor:
        """(lambda / 2) * sum of squared embedding weights (the official embedding regulariser,
        over the whole tables)."""
        total = sum(m.weight.float().pow(2).sum() for m in self.embedding.modules()
                    if isinstance(m, nn.Embedding))
        return 0.5 * self.embedding_l2 * total
