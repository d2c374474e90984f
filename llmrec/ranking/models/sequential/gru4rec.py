"""GRU4Rec: a GRU over the behaviour sequence; its last valid state, projected to the item space,
scores every item by a dot product.

Hidasi, Karatzoglou, Baltrunas and Tikk, "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016 (here over a user's behaviour sequence, with full or sampled softmax from
the next-item task).
"""

from __future__ import annotations

import torch
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.models.sequential.base import SequentialModel, last_state


class GRU4Rec(SequentialModel):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 64, hidden_dim: int = 100,
                 layers: int = 1, dropout: float = 0.1) -> None:
        super().__init__(spec, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(self.item_dim, hidden_dim, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden_dim, self.item_dim)

    def encode(self, e) -> torch.Tensor:
        b, l, k, d = e.history.shape
        states, _ = self.gru(self.dropout(e.history.reshape(b, l, k * d)))
        # padding follows the valid behaviours: the state after the last valid one
        return self.out(last_state(states, e.mask))
