"""SASRec: causal self-attention over the behaviour sequence; the state of the most recent
behaviour scores every item by a dot product with the (tied) item embeddings.

Kang and McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018. The position encoding is
an option of the attention layer (``position``: learned, none, rote, cape; see
:mod:`llmrec.ranking.models.sequential.attention`): RoTE (temporal rotary encoding) and CAPE
(contextual position encoding) are SASRec with another ``position``, not separate models.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.models.sequential.attention import Block
from llmrec.ranking.models.sequential.base import SequentialModel, last_state


class SASRec(SequentialModel):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 64, blocks: int = 2, heads: int = 1,
                 dropout: float = 0.5, position: str = "learned", ffn_mult: int = 1,
                 cape_dim: int = 32, rote_relative: bool = True) -> None:
        super().__init__(spec, embed_dim)
        if position == "rote" and not spec.timestamps:
            raise ValueError("position rote needs timestamps: set features.timestamps: true")
        L, H = spec.max_hist_len, self.item_dim
        self.position = position
        self.rote_relative = rote_relative
        self.positions = nn.Embedding(L, H) if position == "learned" else None
        self.input_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(H, heads, dropout, position, L, ffn_mult, cape_dim)
                                    for _ in range(blocks))
        self.final_ln = nn.LayerNorm(H)
        # SASRec's initialisation: xavier-normal weights
        for name, p in self.named_parameters():
            if p.dim() > 1 and not name.startswith("embedding."):
                nn.init.xavier_normal_(p)

    def _times(self, batch: dict, mask: torch.Tensor):
        if self.position != "rote":
            return None
        t = batch["hist_time"].to(torch.float64)
        if self.rote_relative:
            t = t - t[:, :1]  # the window's first (oldest) behaviour is time 0
        return torch.where(mask, t, torch.zeros_like(t))

    def states(self, e, batch: dict | None = None) -> torch.Tensor:
        """The output state of every position [B, L, H] (position t sees positions <= t only)."""
        b, l, k, d = e.history.shape
        mask = e.mask
        x = e.history.reshape(b, l, k * d) * math.sqrt(k * d)
        if self.positions is not None:
            # distance to the most recent behaviour (0 = last valid), as SASRec's left padding
            n = mask.sum(1, keepdim=True)
            dist = (n - 1 - torch.arange(l, device=x.device)[None]).clamp_min(0)
            x = x + self.positions(dist) * mask[..., None].to(x.dtype)
        x = self.input_dropout(x) * mask[..., None].to(x.dtype)
        times = self._times(batch, mask) if batch is not None else None
        for block in self.blocks:
            x = block(x, mask, times)
        return self.final_ln(x)

    def encode(self, e, batch: dict | None = None) -> torch.Tensor:
        return last_state(self.states(e, batch), e.mask)

    def forward(self, batch: dict) -> dict:
        e = self.embed(batch)
        states = self.states(e, batch)
        # every position's state: the next-item task's sequence training reads it
        return {"hidden": last_state(states, e.mask), "hidden_seq": states,
                "items": self.item_vectors(batch)}
