"""SDIM: the long behaviour sequence is summarised by SimHash sampling instead of target
attention; a multi-head target attention covers the most recent behaviours.

Long term: ``num_hashes`` (m) hash functions, each ``hash_bits`` (tau) fixed random hyperplanes
R_j [KD, tau]; a vector's bucket under hash j is the bit pattern of sign(x R_j). Per hash, the
unmasked behaviours in the target's bucket are summed (and, with ``normalise``, L2-normalised);
the result is averaged over the hashes. A behaviour k lands in the target's bucket with
probability (1 - angle(t, k) / pi)^tau, so its expected weight is that, without any attention
score being computed. tau = 0 puts every behaviour in one bucket: the masked sum.

Short term: multi-head scaled dot-product target attention over the last ``short_seq_len`` valid
behaviours (softmax over them; an empty history gives zeros).

x = [user, target, context, dense fields, long, short] -> MLP -> logit.

The hashing of a user's sequence is separable from the target (the paper's Behavior Sequence
Encoding, BSE): :class:`BehaviourSequenceEncoder.encode` turns a sequence into per-hash, per-bucket
sums once ([B, m, 2^tau, KD], independent of the candidate); :meth:`SDIM.encode_behaviours`
computes them from a batch, and a batch that carries them as ``batch["sdim_buckets"]`` is scored
from them (only the short-term behaviours are then read from the batch's history). Both paths
give the same logits (tested).

Cao, Xu, Zhang, Zhang, Hu, Wang and Zhou, "Sampling Is All You Need on Modeling Long-Term User
Behaviors for CTR Prediction", CIKM 2022 (Meituan). Defaults: FuxiCTR's SDIM template
(reczoo/FuxiCTR@0245987, model_zoo/LongCTR/SDIM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP
from llmrec.ranking.models.base import Backbone

BUCKETS_KEY = "sdim_buckets"


class BehaviourSequenceEncoder(nn.Module):
    """SimHash of behaviour sequences (BSE): fixed random hyperplanes, no trained parameters.

    ``hyperplanes`` [m, dim, tau] are drawn from ``seed`` (and saved with the model, so a loaded
    run hashes exactly as it trained).
    """

    def __init__(self, dim: int, num_hashes: int = 2, hash_bits: int = 4, seed: int = 0,
                 normalise: bool = True) -> None:
        super().__init__()
        if num_hashes < 1:
            raise ValueError(f"num_hashes must be >= 1, not {num_hashes}")
        if not 0 <= hash_bits <= 16:
            raise ValueError(f"hash_bits must be in 0..16 (2^hash_bits buckets), not {hash_bits}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("hyperplanes", torch.randn(num_hashes, dim, hash_bits, generator=g))
        self.register_buffer("powers", 2 ** torch.arange(hash_bits), persistent=False)
        self.num_hashes = num_hashes
        self.hash_bits = hash_bits
        self.n_buckets = 2 ** hash_bits
        self.normalise = normalise

    def signatures(self, x: torch.Tensor) -> torch.Tensor:
        """Bucket id under each hash: [..., dim] -> [..., m] (int64 in 0..2^tau - 1)."""
        # fp32 whatever the autocast: a bucket must not depend on the precision it was hashed in
        with torch.autocast(device_type=x.device.type, enabled=False):
            proj = torch.einsum("...d,mdt->...mt", x.float(), self.hyperplanes.float())
        return ((proj > 0).long() * self.powers).sum(-1)

    def encode(self, history: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-hash, per-bucket sums of the unmasked behaviours: [B, L, dim] -> [B, m, 2^tau, dim].

        Independent of the target: computed once per user sequence and reused for every candidate.
        """
        sig = self.signatures(history)  # [B, L, m]
        onehot = F.one_hot(sig, self.n_buckets).to(history.dtype)  # [B, L, m, n_buckets]
        onehot = onehot * mask[:, :, None, None].to(history.dtype)
        return torch.einsum("blmk,bld->bmkd", onehot, history)

    def lookup(self, buckets: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The long-term interest from precomputed buckets: [B, m, 2^tau, dim], [B, dim] -> [B, dim]."""
        sig = self.signatures(target)  # [B, m]
        idx = sig[:, :, None, None].expand(-1, -1, 1, buckets.shape[-1])
        return self._combine(buckets.gather(2, idx).squeeze(2))

    def forward(self, target: torch.Tensor, history: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """The long-term interest straight from the sequence (no bucket table): [B, dim]."""
        collide = self.signatures(history) == self.signatures(target)[:, None]  # [B, L, m]
        collide = (collide & mask[:, :, None]).to(history.dtype)
        return self._combine(torch.einsum("blm,bld->bmd", collide, history))

    def _combine(self, per_hash: torch.Tensor) -> torch.Tensor:
        if self.normalise:
            per_hash = F.normalize(per_hash, dim=-1)  # an empty bucket stays 0
        return per_hash.mean(1)


def last_valid(history: torch.Tensor, mask: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``n`` valid behaviours, oldest first, padding after: [B, L, ...] -> [B, n, ...].

    Valid behaviours come first in the engine's layout (padding after), so they are positions
    count - n .. count - 1.
    """
    b, l = mask.shape
    n = min(n, l)
    count = mask.sum(1)
    pos = (count - n).clamp_min(0)[:, None] + torch.arange(n, device=mask.device)[None]
    keep = torch.arange(n, device=mask.device)[None] < count.clamp_max(n)[:, None]
    pos = torch.where(keep, pos, torch.zeros_like(pos))
    idx = pos.view(b, n, *([1] * (history.dim() - 2))).expand(b, n, *history.shape[2:])
    return history.gather(1, idx), keep


class MultiHeadTargetAttention(nn.Module):
    """Scaled dot-product attention of the target over the behaviours: [B, dim] x [B, L, dim] ->
    [B, attention_dim]; masked positions get no weight, an empty history gives zeros."""

    def __init__(self, dim: int, attention_dim: int = 64, heads: int = 2) -> None:
        super().__init__()
        if attention_dim % heads:
            raise ValueError(f"attention_dim {attention_dim} must be divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(dim, attention_dim, bias=False)
        self.kv = nn.Linear(dim, 2 * attention_dim, bias=False)
        self.out = nn.Linear(attention_dim, attention_dim, bias=False)

    def forward(self, target: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, l, _ = keys.shape
        h = self.heads
        q = self.q(target).view(b, h, 1, -1)
        k, v = self.kv(keys).view(b, l, 2, h, -1).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-1, -2)).squeeze(2).float() / k.shape[-1] ** 0.5  # [B, h, L]
        w = torch.softmax(scores.masked_fill(~mask[:, None], float("-inf")), dim=-1)
        w = torch.nan_to_num(w).to(v.dtype)
        return self.out((w.unsqueeze(2) @ v).squeeze(2).reshape(b, -1))


class SDIM(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 32, attention_dim: int = 64,
                 heads: int = 2, num_hashes: int = 2, hash_bits: int = 4,
                 short_seq_len: int = 50, normalise: bool = True, hash_seed: int = 0,
                 hidden: tuple[int, ...] = (64, 32), activation: str = "relu",
                 dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__(spec, embed_dim)
        if spec.max_hist_len < 1:
            raise ValueError("SDIM needs a behaviour sequence: features.max_hist_len >= 1")
        if short_seq_len < 1:
            raise ValueError(f"short_seq_len must be >= 1, not {short_seq_len}")
        k = spec.n_item_slots
        item_dim = k * embed_dim
        self.short_seq_len = short_seq_len
        self.bse = BehaviourSequenceEncoder(item_dim, num_hashes, hash_bits, hash_seed, normalise)
        self.short = MultiHeadTargetAttention(item_dim, attention_dim, heads)
        in_dim = (spec.n_fields - k) * embed_dim + item_dim + attention_dim
        self.mlp = MLP(in_dim, list(hidden), out_dim=1, dropout=dropout, batch_norm=batch_norm,
                       activation=activation)

    def encode_behaviours(self, batch: dict) -> torch.Tensor:
        """BSE of the batch's behaviour sequences: [B, m, 2^tau, KD] (independent of the target)."""
        e = self.embed(batch)
        b, l, k, d = e.history.shape
        return self.bse.encode(e.history.reshape(b, l, k * d), e.mask)

    def forward(self, batch: dict) -> dict:
        e = self.embed(batch)
        b, l, k, d = e.history.shape
        seq = e.history.reshape(b, l, k * d)
        target = e.target.reshape(b, k * d)
        buckets = batch.get(BUCKETS_KEY)
        if buckets is not None:
            long = self.bse.lookup(buckets.to(seq.dtype), target)
        else:
            long = self.bse(target, seq, e.mask)
        recent, keep = last_valid(seq, e.mask, self.short_seq_len)
        short = self.short(target, recent, keep)
        x = torch.cat([e.non_sequence().flatten(1), long.to(short.dtype), short], dim=-1)
        return {"logit": self.mlp(x).squeeze(-1)}
