"""The base of next-item models: item vectors from the shared feature embedding, a sequence
encoder per model.

``forward(batch)`` returns ``{"hidden": [B, H], "items": [R, H]}``: the representation of the
behaviour sequence before each sample's position and one vector per item-table row (row 0, the
padding row, is never a candidate). Items are embedded through the same
:class:`~llmrec.ranking.layers.FeatureEmbedding` slots as the behaviours (id, attributes, pooled
genres), flattened to H = K * embed_dim, so input and output item spaces are tied.
"""

from __future__ import annotations

import torch

from llmrec.ranking.models.base import Backbone


def last_state(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state at the last valid position of right-padded sequences: ``states [B, L, H]``,
    ``mask [B, L]`` -> [B, H]; zeros for an empty sequence (it has no state)."""
    last = (mask.sum(1) - 1).clamp_min(0)
    h = states[torch.arange(states.shape[0], device=states.device), last]
    return h * mask.any(1, keepdim=True).to(h.dtype)


class SequentialModel(Backbone):
    """Subclasses implement :meth:`encode` (``Embedded`` -> [B, H])."""

    def __init__(self, spec, embed_dim: int) -> None:
        super().__init__(spec, embed_dim)
        if spec.max_hist_len < 1:
            raise ValueError("sequential models need a behaviour sequence (features.max_hist_len "
                             ">= 1)")
        self.item_dim = spec.n_item_slots * embed_dim

    def item_vectors(self, batch: dict) -> torch.Tensor:
        """[R, H]: every item-table row embedded like a behaviour (rating and mask aside)."""
        table, multi = batch["catalog"]["item"], batch["catalog"]["item_multi"]
        return self.embedding.embed_items(table, multi).flatten(1)

    def encode(self, e) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, batch: dict) -> dict:
        e = self.embed(batch)
        return {"hidden": self.encode(e), "items": self.item_vectors(batch)}
