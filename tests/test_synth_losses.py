"""Label-weighted InfoNCE: exact values on hand-made embeddings."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from llmrec.synth.losses import LabelWeightedInfoNCELoss


class _Echo(nn.Module):
    """A 'model' whose sentence embedding is the feature tensor itself."""

    def forward(self, features):
        return {"sentence_embedding": features["x"]}


def _features(*cols):
    return [{"x": torch.tensor(c, dtype=torch.float32)} for c in cols]


QUERIES = [[1.0, 0.0], [0.0, 1.0]]
POSITIVES = [[1.0, 0.0], [1.0, 1.0]]   # cos with its own query: 1 and 1/sqrt(2)
NEGATIVES = [[0.0, 1.0], [-1.0, 0.0]]


def _row_losses():
    r = 1 / math.sqrt(2)
    # candidates, in order: pos1, pos2, neg1, neg2; scale 1
    l1 = -1 + math.log(math.e ** 1 + math.e ** r + math.e ** 0 + math.e ** -1)
    l2 = -r + math.log(math.e ** 0 + math.e ** r + math.e ** 1 + math.e ** 0)
    return l1, l2


def test_exact_value_with_hard_negatives():
    loss = LabelWeightedInfoNCELoss(_Echo(), scale=1.0)
    value = loss(_features(QUERIES, POSITIVES, NEGATIVES), torch.tensor([3.0, 1.0]))
    l1, l2 = _row_losses()
    assert value.item() == pytest.approx((1.0 * l1 + (1 / 3) * l2) / 2, rel=1e-6)
    assert value.item() == pytest.approx(0.605632, abs=1e-5)  # worked out by hand


def test_level_zero_rows_carry_no_weight_and_scale_applies():
    loss = LabelWeightedInfoNCELoss(_Echo(), scale=1.0)
    l1, _ = _row_losses()
    value = loss(_features(QUERIES, POSITIVES, NEGATIVES), torch.tensor([3.0, 0.0]))
    assert value.item() == pytest.approx(l1 / 2, rel=1e-6)
    zero = loss(_features(QUERIES, POSITIVES, NEGATIVES), torch.tensor([0.0, 0.0]))
    assert zero.item() == 0.0
    # in-batch negatives only (no negative column), scale 20
    s = 20.0
    loss20 = LabelWeightedInfoNCELoss(_Echo(), scale=s)
    r = 1 / math.sqrt(2)
    l1 = -s + math.log(math.exp(s) + math.exp(s * r))
    l2 = -s * r + math.log(math.exp(0) + math.exp(s * r))
    value = loss20(_features(QUERIES, POSITIVES), torch.tensor([3.0, 3.0]))
    assert value.item() == pytest.approx((l1 + l2) / 2, rel=1e-5)


def test_gradient_flows_only_through_weighted_rows():
    q = torch.tensor(QUERIES, requires_grad=True)
    loss = LabelWeightedInfoNCELoss(_Echo(), scale=5.0)
    # explicit: another test's LLM backend may have switched autograd off process-wide
    with torch.enable_grad():
        value = loss.compute_loss_from_embeddings(
            [q, torch.tensor(POSITIVES), torch.tensor(NEGATIVES)], torch.tensor([2.0, 0.0]))
        value.backward()
    assert q.grad[0].abs().sum() > 0
    assert torch.equal(q.grad[1], torch.zeros(2))  # the level-0 row's query gets no gradient


def test_bad_inputs():
    with pytest.raises(ValueError, match="scale"):
        LabelWeightedInfoNCELoss(_Echo(), scale=0)
    loss = LabelWeightedInfoNCELoss(_Echo())
    with pytest.raises(ValueError, match="anchor and a positive"):
        loss(_features(QUERIES), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="labels for a batch"):
        loss(_features(QUERIES, POSITIVES), torch.tensor([1.0]))
