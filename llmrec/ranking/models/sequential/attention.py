"""Causal self-attention for sequential models, with the position encodings of the family:
``learned`` (SASRec's table), ``none``, ``rote`` (multi-level temporal rotary encoding) and
``cape`` (contextual position encoding).

Sequences are right-padded (valid behaviours first, oldest first; ``mask`` marks them). A query
attends to itself and the earlier valid positions only.

- **learned**: a position table indexed by the distance to the most recent behaviour (0 = the
  last one), added to the input, which is what SASRec's left-padded absolute positions amount to.
- **rote** (temporal rotary encoding): q and k of each head are rotated by angles
  tau_l(t) * omega_{l,m}, omega_{l,m} = b_l^(-2m/d_h), for the calendar levels l = year, month,
  day (b = 1e6, 1e4, 100; tau in years = days / 365.25, months = days / 30.4375, days = s / 86400),
  and the rotated copies are summed with weights (1.5, 1.0, 0.5): q' = sum_l w_l R_l(t_q) q.
  Times are taken relative to the first valid behaviour of the window (``rote_relative``; the
  multi-level sum is not shift-invariant), in float64 before the cast; padded positions get time 0
  and are masked anyway. No learned table.
- **cape** (contextual position encoding): for logits a_ij, gates g_ij = 1 - sigmoid(a_ij) on
  valid, causally visible keys (0 elsewhere); position p_ij = sum_{k=j..i} g_ik, clamped to T - 1;
  bias e_ij = linear interpolation of q~_i . P[:, floor(p)] and q~_i . P[:, ceil(p)], q~ =
  SiLU(W q); logits a_ij + e_ij. Keys like the query add little distance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

POSITIONS = ("learned", "none", "rote", "cape")
ROTE_BASES = (1e6, 1e4, 100.0)
ROTE_WEIGHTS = (1.5, 1.0, 0.5)
ROTE_UNITS_S = (365.25 * 86400.0, 30.4375 * 86400.0, 86400.0)  # year, month, day in seconds


def rote_rotate(x: torch.Tensor, times: torch.Tensor, bases=ROTE_BASES, weights=ROTE_WEIGHTS,
                units=ROTE_UNITS_S) -> torch.Tensor:
    """sum_l w_l R_l(t) x for ``x [B, h, L, d]`` (d even) and ``times [B, L]`` (seconds, float64)."""
    d = x.shape[-1]
    m = torch.arange(d // 2, device=x.device, dtype=torch.float64)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.zeros_like(x)
    for base, w, unit in zip(bases, weights, units):
        omega = base ** (-2 * m / d)  # [d/2]
        angle = (times.to(torch.float64) / unit)[:, None, :, None] * omega  # [B, 1, L, d/2]
        cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
        rot = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
        out = out + w * rot
    return out


def cape_positions(logits: torch.Tensor, visible: torch.Tensor, max_pos: int) -> torch.Tensor:
    """p_ij = sum_{k=j..i} g_ik with g = 1 - sigmoid(logits) on ``visible`` keys, else 0;
    ``logits`` / ``visible`` [..., Lq, Lk]; clamped to ``max_pos``."""
    g = (1 - torch.sigmoid(logits)) * visible.to(logits.dtype)
    # suffix sums over keys: from key j up to the query's own (latest visible) position
    p = g.flip(-1).cumsum(-1).flip(-1)
    return p.clamp(max=max_pos)


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, position: str, max_len: int,
                 cape_dim: int = 32) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden width {dim} must be divisible by heads {heads}")
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {', '.join(POSITIONS)}, not {position!r}")
        self.heads, self.head_dim, self.position = heads, dim // heads, position
        if position == "rote" and self.head_dim % 2:
            raise ValueError("rote needs an even head width")
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        if position == "cape":
            self.max_pos = max_len - 1
            self.cape_q = nn.Linear(self.head_dim, cape_dim)
            self.cape_table = nn.Parameter(torch.randn(cape_dim, max_len) * 0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, times: torch.Tensor | None = None):
        b, l, _ = x.shape
        q, k, v = self.qkv(x).view(b, l, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.position == "rote":
            q, k = rote_rotate(q, times), rote_rotate(k, times)
        causal = torch.ones(l, l, dtype=torch.bool, device=x.device).tril()
        visible = causal[None, None] & mask[:, None, None, :]  # [B, 1, L, L]
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if self.position == "cape":
            p = cape_positions(logits, visible, self.max_pos)
            lo = p.floor().long()
            hi = p.ceil().long()
            frac = (p - lo.to(p.dtype))
            proj = F.silu(self.cape_q(q)) @ self.cape_table.to(q.dtype)  # [B, h, L, T]
            e_lo = proj.gather(-1, lo)
            e_hi = proj.gather(-1, hi)
            logits = logits + e_lo + frac * (e_hi - e_lo)
        logits = logits.masked_fill(~visible, float("-inf"))
        att = torch.nan_to_num(torch.softmax(logits.float(), dim=-1)).to(v.dtype)
        y = (self.dropout(att) @ v).transpose(1, 2).reshape(b, l, -1)
        return self.out(y)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + Attn(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, dropout: float, position: str, max_len: int,
                 ffn_mult: int = 1, cape_dim: int = 32) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, dropout, position, max_len, cape_dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_mult * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_mult * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask, times=None):
        x = x + self.dropout(self.attn(self.ln1(x), mask, times))
        x = x + self.dropout(self.ffn(self.ln2(x)))
        return x * mask[..., None].to(x.dtype)


class CapeBias(nn.Module):
    """CAPE's bias for target attention (DIN / DIEN): one query (the target) over the behaviours.

    ``scores [B, L]`` are the attention logits of the behaviours (oldest first, right-padded,
    ``mask [B, L]``); the query follows the most recent behaviour, so p_t sums the gates from
    behaviour t up to the last valid one.
    """

    def __init__(self, dim: int, max_len: int, cape_dim: int = 16) -> None:
        super().__init__()
        self.max_pos = max(max_len - 1, 0)
        self.q = nn.Linear(dim, cape_dim)
        self.table = nn.Parameter(torch.randn(cape_dim, max(max_len, 1)) * 0.02)

    def forward(self, query: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor):
        p = cape_positions(scores[:, None, :], mask[:, None, :], self.max_pos)[:, 0]
        lo, hi = p.floor().long(), p.ceil().long()
        proj = F.silu(self.q(query)) @ self.table.to(query.dtype)  # [B, T]
        e_lo, e_hi = proj.gather(1, lo), proj.gather(1, hi)
        return e_lo + (p - lo.to(p.dtype)) * (e_hi - e_lo)
