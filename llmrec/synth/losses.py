"""Label-weighted InfoNCE with hard negatives, as a sentence-transformers loss module.

Input columns, in order: ``anchor`` (query), ``positive`` (the labelled document), then
``negative_1 .. negative_k`` (hard negatives: level-0 documents of the same query), and a
``label`` column with the pair's relevance level s in 0..3.

For row i with query embedding q_i and candidate set C (every positive and every negative of
the batch, in-batch negatives included), with cosine similarity and scale tau^-1:

    l_i = -log( exp(cos(q_i, p_i) / tau) / sum_{c in C} exp(cos(q_i, c) / tau) )
    loss = mean_i ( s_i / max_level * l_i )

so a level-3 pair counts fully, a level-1 pair a third, and a level-0 pair not at all as a
positive (its documents still serve as negatives of the other rows). The mean runs over all rows
of the batch, zero-weight rows included, which keeps the scale of the loss independent of how
the levels happen to fall into batches.

Rows of the same query, or rows sharing a document, must not share a batch (a level-2 document
of query A would become a negative of A's level-3 row): train with
``BatchSamplers.NO_DUPLICATES``, as :mod:`llmrec.synth.embedder` does.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor, nn


def _cos_sim(a: Tensor, b: Tensor) -> Tensor:
    a = torch.nn.functional.normalize(a, p=2, dim=-1)
    b = torch.nn.functional.normalize(b, p=2, dim=-1)
    return a @ b.T


class LabelWeightedInfoNCELoss(nn.Module):
    """InfoNCE over in-batch and hard negatives, each row's term scaled by ``label / max_level``.

    Works inside ``sentence_transformers.losses.MatryoshkaLoss`` (which wraps the model's
    forward), since it embeds every column through ``model(features)``.
    """

    def __init__(self, model: nn.Module, scale: float = 20.0, max_level: float = 3.0) -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if max_level <= 0:
            raise ValueError(f"max_level must be > 0, got {max_level}")
        self.model = model
        self.scale = float(scale)
        self.max_level = float(max_level)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        # One forward per column (not sentence-transformers' merged forward): the query column is
        # much shorter than the documents, and this keeps the loss independent of internal APIs.
        embeddings = [self.model(features)["sentence_embedding"] for features in sentence_features]
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> Tensor:
        if len(embeddings) < 2:
            raise ValueError(f"need an anchor and a positive column, got {len(embeddings)} "
                             "column(s)")
        queries = embeddings[0]
        candidates = torch.cat(embeddings[1:], dim=0)  # positives first, then each negative column
        logits = _cos_sim(queries, candidates) * self.scale
        target = torch.arange(queries.size(0), device=queries.device)
        per_row = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        if labels is None:
            raise ValueError("LabelWeightedInfoNCELoss needs a 'label' column with levels 0..3")
        weights = labels.to(per_row.dtype).reshape(-1) / self.max_level
        if weights.numel() != per_row.numel():
            raise ValueError(f"{weights.numel()} labels for a batch of {per_row.numel()} rows")
        return (weights * per_row).mean()

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "max_level": self.max_level, "similarity": "cosine"}
