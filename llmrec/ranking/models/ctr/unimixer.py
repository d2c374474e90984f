"""UniMixer and UniMixing-Lite: token mixing as a learned structured matrix.

The fields [B, F, D] are flattened and cut into ``n_tokens`` groups, each projected by its own
linear map to a token of width ``token_dim`` (RankMixer's tokenisation). A mixing layer flattens
the T tokens to T * token_dim, cuts that into n chunks of ``chunk_size`` b and applies

* a local map per chunk, y_i = x_i W_B^i (b x b), then
* a global map over chunks, z_i = sum_j W_G[i, j] y_j (n x n).

Modes (``mode``): ``unimixer`` learns W_B^i and W_G = Sinkhorn(exp(sym(W) / tau)) (``sinkhorn_iters``
row / column normalisations of the log-domain matrix: doubly stochastic), tau annealed linearly
from 1 to ``tau_end`` over ``anneal_steps`` training steps; ``tokenmixer`` fixes W_B = I and W_G
to RankMixer's head transpose (token t's head h goes to token h's slot t; needs token_dim =
n_tokens * chunk_size); ``attention`` fixes W_B = I and W_G = softmax(Q K^T / sqrt(b)) over the
chunks (per sample). UniMixing-Lite (:class:`UniMixingLite`) shares the local maps, W_B^i =
sum_j alpha_ij E_j over ``n_bases`` bases, and makes the global map low-rank, W_G = A B^T
(rank ``rank``).

Block f: a = RMSNorm(u + Mix(u)); f(u) = a + SwiGLU_t(a) (a per-token feed-forward). Blocks are
stacked with SiameseNorm, two residual streams that see the same updates: a raw one (pre-norm
style, never normalised) and a normalised one (post-norm style). Each block reads both,
u = RMSNorm(raw) + norm, and with delta = f(u) - u: raw <- raw + delta, norm <- RMSNorm(norm +
delta). The output RMSNorm(raw) + norm, flattened over tokens -> linear -> logit. (Feeding the
block from the normalised stream alone trained 4-block stacks much more slowly on the contract's
planted data: valid AUC 0.54 after 10 epochs against 0.83.)

Ha et al., "UniMixer" (Kuaishou), arXiv 2604.00590. No official code was found; this follows
the architecture as summarised in ``specs/ctr-wave2.md``: the SiameseNorm wiring, the
tokeniser and the defaults (8 tokens of 64, chunks of 16, 2 blocks; Lite: 4 blocks, 4 bases,
rank 4) are this implementation's choices.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.models.base import Backbone

MODES = ("unimixer", "tokenmixer", "attention")


def sinkhorn(logits: torch.Tensor, iters: int = 5) -> torch.Tensor:
    """exp(logits) scaled to a doubly stochastic matrix by ``iters`` alternating row and column
    normalisations in the log domain (the last one makes the columns sum to 1 exactly)."""
    x = logits.float()
    for _ in range(iters):
        x = x - torch.logsumexp(x, dim=-1, keepdim=True)
        x = x - torch.logsumexp(x, dim=-2, keepdim=True)
    return x.exp()


def head_transpose(n_tokens: int, heads: int) -> torch.Tensor:
    """RankMixer's token mixing as a permutation of chunks: output chunk (h, t) = input chunk
    (t, h), i.e. P[h * T + t, t * H + h] = 1."""
    n = n_tokens * heads
    perm = torch.zeros(n, n)
    for t in range(n_tokens):
        for h in range(heads):
            perm[h * n_tokens + t, t * heads + h] = 1.0
    return perm


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (out * self.weight).to(x.dtype)


class TokenSwiGLU(nn.Module):
    """A SwiGLU feed-forward with its own weights per token: [B, T, D] -> [B, T, D]."""

    def __init__(self, n_tokens: int, dim: int, hidden: int) -> None:
        super().__init__()
        s = 1 / math.sqrt(dim)
        self.w_in = nn.Parameter(torch.randn(n_tokens, dim, 2 * hidden) * s)
        self.w_out = nn.Parameter(torch.randn(n_tokens, hidden, dim) / math.sqrt(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = torch.einsum("btd,tdh->bth", x, self.w_in.to(x.dtype)).chunk(2, -1)
        return torch.einsum("bth,thd->btd", F.silu(gate) * up, self.w_out.to(x.dtype))


class Mixer(nn.Module):
    """The mixing layer over [B, T, D] tokens (see the module docstring for the modes)."""

    def __init__(self, n_tokens: int, token_dim: int, chunk_size: int, mode: str = "unimixer",
                 lite: bool = False, n_bases: int = 4, rank: int = 4, sinkhorn_iters: int = 5,
                 tau_end: float = 0.05, anneal_steps: int = 2000) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        total = n_tokens * token_dim
        if total % chunk_size:
            raise ValueError(f"n_tokens * token_dim = {total} is not divisible by chunk_size "
                             f"{chunk_size}")
        self.mode, self.lite = mode, lite
        self.b = chunk_size
        self.n = total // chunk_size
        self.iters, self.tau_end, self.anneal_steps = sinkhorn_iters, tau_end, max(1, anneal_steps)
        n, b = self.n, self.b
        if mode == "tokenmixer":
            if token_dim != n_tokens * chunk_size:
                raise ValueError(f"mode tokenmixer splits each token into n_tokens heads: "
                                 f"token_dim ({token_dim}) must be n_tokens * chunk_size "
                                 f"({n_tokens * chunk_size})")
            self.register_buffer("perm", head_transpose(n_tokens, n_tokens), persistent=False)
        elif mode == "attention":
            self.q = nn.Linear(b, b, bias=False)
            self.k = nn.Linear(b, b, bias=False)
        elif lite:
            self.bases = nn.Parameter(torch.eye(b).repeat(n_bases, 1, 1)
                                      + torch.randn(n_bases, b, b) / math.sqrt(b) * 0.1)
            self.alpha = nn.Parameter(torch.full((n, n_bases), 1.0 / n_bases))
            self.g_a = nn.Parameter(torch.randn(n, rank) / math.sqrt(rank))
            self.g_b = nn.Parameter(torch.randn(n, rank) / math.sqrt(n))
        else:
            self.local = nn.Parameter(torch.eye(b).repeat(n, 1, 1)
                                      + torch.randn(n, b, b) / math.sqrt(b) * 0.1)
            self.global_logits = nn.Parameter(torch.randn(n, n) * 0.01)
        # training steps seen (tau's schedule); advanced by the forward in training mode
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def tau(self) -> torch.Tensor:
        frac = (self.steps.float() / self.anneal_steps).clamp(max=1.0)
        return 1.0 - (1.0 - self.tau_end) * frac

    def global_matrix(self, y: torch.Tensor | None = None) -> torch.Tensor:
        """W_G: [n, n] (``attention``: [B, n, n] from the chunks ``y``)."""
        if self.mode == "tokenmixer":
            return self.perm
        if self.mode == "attention":
            scores = self.q(y) @ self.k(y).transpose(-1, -2) / math.sqrt(self.b)
            return torch.softmax(scores.float(), dim=-1)
        if self.lite:
            return self.g_a @ self.g_b.T
        w = self.global_logits
        return sinkhorn((w + w.T) / 2 / self.tau(), self.iters)

    def local_maps(self) -> torch.Tensor | None:
        """W_B^i: [n, b, b] (None: identity)."""
        if self.mode != "unimixer":
            return None
        if self.lite:
            return torch.einsum("nj,jab->nab", self.alpha, self.bases)
        return self.local

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.steps.add_(1)
        shape = x.shape
        y = x.reshape(shape[0], self.n, self.b)
        w_b = self.local_maps()
        if w_b is not None:
            y = torch.einsum("bni,nij->bnj", y, w_b.to(y.dtype))
        w_g = self.global_matrix(y)
        if w_g.dim() == 2:
            z = torch.einsum("ij,bjd->bid", w_g.to(y.dtype), y)
        else:
            z = w_g.to(y.dtype) @ y
        return z.reshape(shape)


class MixerBlock(nn.Module):
    def __init__(self, n_tokens: int, token_dim: int, ffn: int, dropout: float, **mix) -> None:
        super().__init__()
        self.mix = Mixer(n_tokens, token_dim, **mix)
        self.norm = RMSNorm(token_dim)
        self.ffn = TokenSwiGLU(n_tokens, token_dim, ffn)
        self.drop = nn.Dropout(dropout)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        a = self.norm(u + self.drop(self.mix(u)))
        return a + self.drop(self.ffn(a))


class UniMixer(Backbone):
    LITE = False

    def __init__(self, spec: FeatureSpec, embed_dim: int = 32, n_tokens: int = 8,
                 token_dim: int = 64, chunk_size: int = 16, blocks: int = 2, ffn: int = 128,
                 mode: str = "unimixer", n_bases: int = 4, rank: int = 4,
                 sinkhorn_iters: int = 5, tau_end: float = 0.05, anneal_steps: int = 2000,
                 dropout: float = 0.0) -> None:
        super().__init__(spec, embed_dim)
        flat = self.flat_dim
        self.n_tokens = n_tokens
        self.group = math.ceil(flat / n_tokens)  # fields' values per token (zero-padded)
        self.tokenise = nn.Parameter(torch.randn(n_tokens, self.group, token_dim)
                                     / math.sqrt(self.group))
        self.tokenise_bias = nn.Parameter(torch.zeros(n_tokens, token_dim))
        mix = {"chunk_size": chunk_size, "mode": mode, "lite": self.LITE, "n_bases": n_bases,
               "rank": rank, "sinkhorn_iters": sinkhorn_iters, "tau_end": tau_end,
               "anneal_steps": anneal_steps}
        self.blocks = nn.ModuleList(MixerBlock(n_tokens, token_dim, ffn, dropout, **mix)
                                    for _ in range(blocks))
        # SiameseNorm: per block, a norm of the raw stream (block input) and of the normed stream
        self.in_norms = nn.ModuleList(RMSNorm(token_dim) for _ in range(blocks))
        self.post_norms = nn.ModuleList(RMSNorm(token_dim) for _ in range(blocks))
        self.out_norm = RMSNorm(token_dim)
        self.head = nn.Linear(n_tokens * token_dim, 1)
        # the flattened output has O(1) entries: a default-initialised head starts at logits of
        # std ~1 (initial loss ~1.5 on ML-1M); a small one starts near the prior (not zero: the
        # body would get no gradient on the first step)
        nn.init.normal_(self.head.weight, std=1e-3)

    def tokens(self, batch: dict) -> torch.Tensor:
        """The fields as T tokens: [B, T, token_dim]."""
        x = self.embed(batch).fields().flatten(1)
        pad = self.n_tokens * self.group - x.shape[1]
        if pad:
            x = F.pad(x, (0, pad))
        x = x.view(x.shape[0], self.n_tokens, self.group)
        return torch.einsum("btg,tgd->btd", x, self.tokenise.to(x.dtype)) + self.tokenise_bias

    def forward(self, batch: dict) -> dict:
        x = self.tokens(batch)
        raw, norm = x, x
        for block, in_norm, post_norm in zip(self.blocks, self.in_norms, self.post_norms):
            u = in_norm(raw) + norm
            delta = block(u) - u
            raw = raw + delta
            norm = post_norm(norm + delta)
        h = self.out_norm(raw) + norm
        return {"logit": self.head(h.flatten(1)).squeeze(-1)}


class UniMixingLite(UniMixer):
    """UniMixing-Lite: shared local bases and a low-rank global map (4 blocks by default)."""

    LITE = True

    def __init__(self, spec: FeatureSpec, embed_dim: int = 32, n_tokens: int = 8,
                 token_dim: int = 64, chunk_size: int = 16, blocks: int = 4, ffn: int = 128,
                 mode: str = "unimixer", n_bases: int = 4, rank: int = 4,
                 sinkhorn_iters: int = 5, tau_end: float = 0.05, anneal_steps: int = 2000,
                 dropout: float = 0.0) -> None:
        super().__init__(spec, embed_dim, n_tokens, token_dim, chunk_size, blocks, ffn, mode,
                         n_bases, rank, sinkhorn_iters, tau_end, anneal_steps, dropout)
