"""FAIR-style generative recommender over semantic-id codes, scored by exact full ranking.

Items are K-code semantic ids (the item table's code columns, e.g. Beauty's ``sid_1..sid_4``:
``features.item_fields: [sid_1, sid_2, sid_3, sid_4]``, ``use_item_id: false``). The history is the
flat token sequence of its items' L x K code embeddings (a table per code slot, plus an
item-position embedding: distance to the most recent item) through a causal Transformer; from the
last token's state, K parallel heads predict the next item's K codes (non-autoregressive
multi-token prediction): L_MTP = -sum_k log p_k(c_k). Every item is ranked by
sum_k log p_k(c_k(i)), which is exact full ranking over the catalogue (no beam search): since the
log-partition terms do not depend on the item, score(i) = [h, 1] . [sum_k W_k[c_k(i)],
sum_k b_k[c_k(i)]] up to a per-user constant, so the model returns ``hidden`` / ``items`` like every
next-item model and supplies its own training objective as ``model_loss``.

Options after arXiv 2512.11254 (no code was found; our reading, documented here):

- ``focused``: focused (differential) attention, A = softmax(Q1 K1^T / sqrt(d)) - lambda *
  softmax(Q2 K2^T / sqrt(d)), out = RMSNorm(A V) * (1 - lambda_init), lambda = exp(lq1 . lk1) -
  exp(lq2 . lk2) + lambda_init, lambda_init = 0.8 - 0.6 exp(-0.3 (layer - 1)) (the Differential
  Transformer's form);
- ``nr_weight`` / ``nr_rate``: noise robustness, a copy of the input with a fraction of the valid
  code tokens replaced by random codes, L_NR = mean squared distance between the clean and the
  perturbed final states (padding is never perturbed);
- ``mi_weight`` / ``mi_temperature``: mutual information, InfoNCE between the projected sequence
  state and the target item's code embedding (in-batch negatives).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.models.sequential.base import SequentialModel, last_state


class FocusedAttention(nn.Module):
    """Causal multi-head attention; ``focused`` turns it into the difference of two maps."""

    def __init__(self, dim: int, heads: int, dropout: float, focused: bool, layer: int,
                 sub_norm: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} must be divisible by heads {heads}")
        self.heads, self.head_dim, self.focused, self.sub_norm = heads, dim // heads, focused, sub_norm
        n_qk = 2 if focused else 1
        self.q = nn.Linear(dim, n_qk * dim)
        self.k = nn.Linear(dim, n_qk * dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        if focused:
            self.lambda_init = 0.8 - 0.6 * math.exp(-0.3 * (layer - 1))
            self.lq1, self.lk1, self.lq2, self.lk2 = (
                nn.Parameter(torch.randn(self.head_dim) * 0.1) for _ in range(4))
            self.norm = nn.RMSNorm(self.head_dim) if sub_norm else nn.Identity()

    def lam(self) -> torch.Tensor:
        return (torch.exp((self.lq1 * self.lk1).sum()) - torch.exp((self.lq2 * self.lk2).sum())
                + self.lambda_init)

    def _maps(self, q, k, visible):
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        att = torch.softmax(logits.float().masked_fill(~visible, float("-inf")), dim=-1)
        return torch.nan_to_num(att).to(q.dtype)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, lam: torch.Tensor | None = None):
        b, n, _ = x.shape
        h, d = self.heads, self.head_dim
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        visible = causal[None, None] & mask[:, None, None, :]
        v = self.v(x).view(b, n, h, d).transpose(1, 2)
        if not self.focused:
            q = self.q(x).view(b, n, h, d).transpose(1, 2)
            k = self.k(x).view(b, n, h, d).transpose(1, 2)
            y = self.dropout(self._maps(q, k, visible)) @ v
        else:
            q1, q2 = self.q(x).view(b, n, 2, h, d).permute(2, 0, 3, 1, 4)
            k1, k2 = self.k(x).view(b, n, 2, h, d).permute(2, 0, 3, 1, 4)
            lam = self.lam() if lam is None else lam
            att = self._maps(q1, k1, visible) - lam * self._maps(q2, k2, visible)
            y = self.norm(self.dropout(att) @ v) * (1 - self.lambda_init)
        return self.out(y.transpose(1, 2).reshape(b, n, -1))


class _Block(nn.Module):
    def __init__(self, dim, heads, dropout, focused, layer, ffn):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = FocusedAttention(dim, heads, dropout, focused, layer)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(ffn, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask):
        x = x + self.dropout(self.attn(self.ln1(x), mask))
        x = x + self.dropout(self.ffn(self.ln2(x)))
        return x * mask[..., None].to(x.dtype)


class FAIR(SequentialModel):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 128, layers: int = 2, heads: int = 4,
                 ffn: int = 512, dropout: float = 0.2, focused: bool = True,
                 nr_weight: float = 0.0, nr_rate: float = 0.1, mi_weight: float = 0.0,
                 mi_temperature: float = 0.07) -> None:
        super().__init__(spec, embed_dim)
        codes = [(n, v) for n, v in spec.item_fields if n != "item_id"]
        if not codes or any(n == "item_id" for n, _ in spec.item_fields) or spec.item_multi_fields:
            raise ValueError("FAIR reads items as semantic-id codes only: set features.item_fields "
                             "to the code columns (e.g. [sid_1, sid_2, sid_3, sid_4]), "
                             "use_item_id: false and item_multi_fields: []")
        self.k = len(codes)
        self.vocab = [v for _, v in codes]
        D = embed_dim
        self.item_pos = nn.Embedding(spec.max_hist_len, D)
        self.blocks = nn.ModuleList(_Block(D, heads, dropout, focused, i + 1, ffn)
                                    for i in range(layers))
        self.final_ln = nn.LayerNorm(D)
        self.heads = nn.ModuleList(nn.Linear(D, v) for v in self.vocab)
        self.mi_proj = nn.Linear(D, D) if mi_weight > 0 else None
        self.nr_weight, self.nr_rate = nr_weight, nr_rate
        self.mi_weight, self.mi_temperature = mi_weight, mi_temperature
        # items are their codes: no rating embedding (it would be a parameter without gradient)
        self.embedding.rating = None
        # the code tables and the item positions start on one scale (std 0.02, as TIGER's): with
        # the shared table's default (std 1e-4) next to nn.Embedding's N(0, 1) positions the
        # code content is 1e-4 of each token, below bf16's resolution (2^-8) once normalised,
        # so under bf16 autocast the state did not depend on the history's items and the heads
        # learned only the codes' marginal frequencies (Beauty: below most-popular)
        for emb in (self.embedding.table, self.item_pos):
            nn.init.normal_(emb.weight, std=0.02)

    # -- tokens ----------------------------------------------------------------------------------
    def _tokens(self, codes: torch.Tensor, mask: torch.Tensor):
        """History codes [B, L, K] -> token embeddings [B, L*K, D] and the token mask."""
        b, l, k = codes.shape
        x = self.embedding.embed_items(codes, {})  # [B, L, K, D]: one table per code slot
        n = mask.sum(1, keepdim=True)
        dist = (n - 1 - torch.arange(l, device=codes.device)[None]).clamp_min(0)
        x = x + self.item_pos(dist)[:, :, None, :]
        tok_mask = mask[:, :, None].expand(b, l, k).reshape(b, l * k)
        return x.reshape(b, l * k, -1) * tok_mask[..., None].to(x.dtype), tok_mask

    def _encode(self, codes, mask):
        x, tok_mask = self._tokens(codes, mask)
        for block in self.blocks:
            x = block(x, tok_mask)
        x = self.final_ln(x)
        return last_state(x, tok_mask)  # the most recent item's last code token

    def perturb(self, codes: torch.Tensor, mask: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Replace a fraction ``nr_rate`` of the valid code tokens by random codes (never padding)."""
        pick = (torch.rand(codes.shape, device=codes.device, generator=generator) < self.nr_rate)
        pick &= mask[..., None]
        vocab = torch.tensor(self.vocab, device=codes.device)
        # real code ids start after the 3 special ids (padding, unknown, missing)
        rand = 3 + (torch.rand(codes.shape, device=codes.device, generator=generator)
                    * (vocab - 3).clamp_min(1)).long()
        return torch.where(pick, rand, codes)

    # -- scoring ---------------------------------------------------------------------------------
    def item_vectors(self, batch: dict) -> torch.Tensor:
        table = batch["catalog"]["item"]  # [R, K] code ids of every item row
        w = sum(head.weight[table[:, j]] for j, head in enumerate(self.heads))  # [R, D]
        bias = sum(head.bias[table[:, j]] for j, head in enumerate(self.heads))  # [R]
        return torch.cat([w, bias[:, None]], 1)

    def forward(self, batch: dict) -> dict:
        codes, mask = batch["hist_item"], batch["hist_mask"]
        h = self._encode(codes, mask)
        out = {"hidden": torch.cat([h, torch.ones_like(h[:, :1])], 1),
               "items": self.item_vectors(batch)}
        if self.training:
            target = batch["item"]  # [B, K] the next item's codes: the objective only
            loss = sum(F.cross_entropy(head(h).float(), target[:, j])
                       for j, head in enumerate(self.heads))
            out["model_loss"] = loss
            aux = None
            if self.nr_weight > 0:
                noisy = self._encode(self.perturb(codes, mask), mask)
                aux = self.nr_weight * F.mse_loss(noisy.float(), h.float())
            if self.mi_weight > 0 and h.shape[0] > 1:
                tgt = self.embedding.embed_items(target, {}).mean(1)
                z = F.normalize(self.mi_proj(h).float(), dim=-1)
                t = F.normalize(tgt.float(), dim=-1)
                logits = z @ t.T / self.mi_temperature
                mi = F.cross_entropy(logits, torch.arange(h.shape[0], device=h.device))
                aux = self.mi_weight * mi if aux is None else aux + self.mi_weight * mi
            if aux is not None:
                out["aux_loss"] = aux
        return out
