"""AutoInt: stacked multi-head self-attention over fields ("interacting layers") with residual
connections; ``hidden`` adds the parallel MLP of AutoInt+.

Song, Shi, Xiao, Duan, Xu, Zhang and Tang, "AutoInt: Automatic Feature Interaction Learning via
Self-Attentive Neural Networks", CIKM 2019.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.ranking.models.base import Backbone
from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import MLP


class InteractingLayer(nn.Module):
    """Multi-head self-attention across fields; a linear residual keeps the input's information."""

    def __init__(self, in_dim: int, attn_dim: int, heads: int, use_residual: bool = True) -> None:
        super().__init__()
        if attn_dim % heads:
            raise ValueError(f"attn_dim {attn_dim} must be divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(in_dim, 3 * attn_dim, bias=False)
        self.residual = nn.Linear(in_dim, attn_dim, bias=False) if use_residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:  # [B, F, H*d] -> [B, H, F, d]
            return t.view(b, f, self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        out = out.transpose(1, 2).reshape(b, f, -1)
        if self.residual is not None:
            out = out + self.residual(x)
        return torch.relu(out)


class AutoInt(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 32, attn_layers: int = 3,
                 attn_dim: int = 32, heads: int = 2, use_residual: bool = True,
                 hidden: tuple[int, ...] = (), dropout: float = 0.1,
                 batch_norm: bool = False) -> None:
        super().__init__(spec, embed_dim)
        dims = [embed_dim] + [attn_dim] * attn_layers
        self.layers = nn.ModuleList(InteractingLayer(dims[i], attn_dim, heads, use_residual)
                                    for i in range(attn_layers))
        self.attn_head = nn.Linear(self.n_fields * dims[-1], 1)
        self.mlp = (MLP(self.flat_dim, list(hidden), out_dim=1, dropout=dropout,
                        batch_norm=batch_norm) if hidden else None)

    def forward(self, batch: dict) -> dict:
        fields = self.embed(batch).fields()
        x = fields
        for layer in self.layers:
            x = layer(x)
        out = self.attn_head(x.flatten(1)).squeeze(-1)
        if self.mlp is not None:
            out = out + self.mlp(fields.flatten(1)).squeeze(-1)
        return {"logit": out}
