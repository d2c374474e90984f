"""DIEN: a GRU extracts an interest state per behaviour; an attention-gated GRU (AUGRU) evolves
the interests relevant to the candidate; an auxiliary loss teaches each state to predict the next
behaviour.

Zhou, Mou, Fan, Pi, Bian, Zhou, Zhu and Gai, "Deep Interest Evolution Network for Click-Through
Rate Prediction", AAAI 2019.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.ranking.models.base import Backbone, require_history
from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP
from llmrec.ranking.models.sequential.attention import CapeBias


class AUGRUCell(nn.Module):
    """GRU cell whose update gate is scaled by an attention score: u' = a * u, so behaviours
    unrelated to the candidate barely move the interest state."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.x2h = nn.Linear(in_dim, 3 * hidden)
        self.h2h = nn.Linear(hidden, 3 * hidden, bias=False)

    def forward(self, x: torch.Tensor, h: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        xr, xu, xn = self.x2h(x).chunk(3, -1)
        hr, hu, hn = self.h2h(h).chunk(3, -1)
        r = torch.sigmoid(xr + hr)
        u = torch.sigmoid(xu + hu) * att.unsqueeze(-1)
        n = torch.tanh(xn + r * hn)
        return (1 - u) * h + u * n


class DIEN(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 32, gru_dim: int | None = None,
                 attention_hidden: tuple[int, ...] = (64,), hidden: tuple[int, ...] = (200, 80),
                 aux_weight: float = 1.0, activation: str = "relu", dropout: float = 0.1,
                 batch_norm: bool = False, position: str = "none", cape_dim: int = 16) -> None:
        require_history(spec, "dien")
        super().__init__(spec, embed_dim)
        k = spec.n_item_slots
        item_dim = k * embed_dim
        self.gru_dim = gru_dim or item_dim
        self.aux_weight = aux_weight
        self.extractor = nn.GRU(item_dim, self.gru_dim, batch_first=True)
        self.query = nn.Linear(item_dim, self.gru_dim, bias=False)
        self.att_mlp = MLP(4 * self.gru_dim, list(attention_hidden), out_dim=1, activation=activation)
        self.augru = AUGRUCell(self.gru_dim, self.gru_dim)
        if position not in ("none", "cape"):
            raise ValueError(f"position must be none or cape, not {position!r}")
        # CAPE's contextual position bias on the interest-state attention (see din.TargetAttention)
        self.cape = CapeBias(self.gru_dim, spec.max_hist_len, cape_dim) \
            if position == "cape" else None
        # the auxiliary net scores (state, next behaviour) pairs; left out when unused so that
        # DDP finds no parameter without a gradient
        self.aux = (MLP(self.gru_dim + item_dim, [64], out_dim=1, activation="relu")
                    if aux_weight > 0 else None)
        in_dim = (spec.n_fields - k) * embed_dim + self.gru_dim
        self.mlp = MLP(in_dim, list(hidden), out_dim=1, dropout=dropout, batch_norm=batch_norm,
                       activation=activation)

    def forward(self, batch: dict) -> dict:
        e = self.embed(batch)
        b, l, k, d = e.history.shape
        seq = e.history.reshape(b, l, k * d)
        mask = e.mask
        # padding comes after the valid behaviours, so the extractor's states over the valid
        # prefix are unaffected by it and no packing is needed
        states, _ = self.extractor(seq)
        q = self.query(e.target.reshape(b, k * d)).unsqueeze(1).expand_as(states)
        scores = self.att_mlp(torch.cat([q, states, q - states, q * states], -1)).squeeze(-1)
        if self.cape is not None:
            scores = scores + self.cape(q[:, 0], scores, mask)
        att = torch.softmax(scores.float().masked_fill(~mask, float("-inf")), dim=-1)
        att = torch.nan_to_num(att).to(states.dtype)
        h = states.new_zeros(b, self.gru_dim)
        for t in range(l):
            h_new = self.augru(states[:, t], h, att[:, t])
            h = torch.where(mask[:, t, None], h_new, h)  # padded steps keep the state
        out = self.mlp(torch.cat([e.non_sequence().flatten(1), h], dim=-1)).squeeze(-1)
        if self.training and self.aux_weight > 0 and l > 1:
            return {"logit": out, "aux_loss": self.aux_weight * self._aux_loss(states, seq, mask)}
        return {"logit": out}

    def _aux_loss(self, states: torch.Tensor, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """State t should tell behaviour t+1 from another user's behaviour (in-batch negative)."""
        pos = seq[:, 1:]
        neg = seq.roll(1, dims=0)[:, 1:]
        valid = (mask[:, 1:] & mask[:, :-1]).float()
        s = states[:, :-1]
        lp = self.aux(torch.cat([s, pos], -1)).squeeze(-1).float()
        ln = self.aux(torch.cat([s, neg], -1)).squeeze(-1).float()
        loss = F.softplus(-lp) + F.softplus(ln)
        return (loss * valid).sum() / valid.sum().clamp_min(1.0)
