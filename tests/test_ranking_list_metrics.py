"""MRR@k, RBP and the shared nDCG on padded [G, M] lists against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from llmrec.ranking.metrics import mrr_at_k, ndcg_at_k, ndcg_per_list, rbp

# two lists; the second has a padded slot. Ranked by score:
#   list 0: labels 0, 2, 0, 1   list 1: labels 0, 0, 3 (slot 3 is padding with label 3)
S = torch.tensor([[0.9, 0.8, 0.7, 0.6], [0.5, 0.4, 0.3, 9.0]], dtype=torch.float64)
Y = torch.tensor([[0, 2, 0, 1], [0, 0, 3, 3]], dtype=torch.float64)
M = torch.tensor([[True, True, True, True], [True, True, True, False]])


def test_mrr_hand_computed():
    # first relevant at rank 2 (list 0) and rank 3 (list 1)
    assert mrr_at_k(S, Y, M, 10) == pytest.approx((1 / 2 + 1 / 3) / 2, abs=1e-12)
    # at k=2 list 1 has no hit in its top 2: 0, but still counts (it has a relevant item)
    assert mrr_at_k(S, Y, M, 2) == pytest.approx((1 / 2 + 0) / 2, abs=1e-12)
    # threshold 2: list 0's first grade>=2 item is at rank 2, list 1's at rank 3
    assert mrr_at_k(S, Y, M, 10, threshold=2) == pytest.approx((1 / 2 + 1 / 3) / 2, abs=1e-12)
    # threshold 3: list 0 has no grade-3 item -> skipped
    assert mrr_at_k(S, Y, M, 10, threshold=3) == pytest.approx(1 / 3, abs=1e-12)
    assert math.isnan(mrr_at_k(S[:1], Y[:1] * 0, M[:1], 10))


def test_rbp_hand_computed():
    p = 0.8
    # binary gains (max_grade=1 clips grades to 1): list 0 hits at ranks 2 and 4, list 1 at 3
    r0 = (1 - p) * (p ** 1 + p ** 3)
    r1 = (1 - p) * p ** 2
    assert rbp(S, Y, M, p=p) == pytest.approx((r0 + r1) / 2, abs=1e-12)
    # graded gains y / 3
    g0 = (1 - p) * (2 / 3 * p + 1 / 3 * p ** 3)
    g1 = (1 - p) * p ** 2
    assert rbp(S, Y, M, p=p, max_grade=3) == pytest.approx((g0 + g1) / 2, abs=1e-12)
    # cut at k=2: only list 0's rank-2 hit
    assert rbp(S, Y, M, p=0.5, k=2) == pytest.approx((0.5 * 0.5 + 0) / 2, abs=1e-12)
    # a list without relevant items counts as 0 (no normalisation)
    assert rbp(S[:1], Y[:1] * 0, M[:1]) == 0.0
    with pytest.raises(ValueError):
        rbp(S, Y, M, p=1.0)


def test_ndcg_per_list_exp_and_linear():
    per = ndcg_per_list(S, Y, M, 10, gain="exp")
    d0 = 3 / math.log2(3) + 1 / math.log2(5)
    i0 = 3 + 1 / math.log2(3)
    d1 = 7 / math.log2(4)
    assert per.tolist() == pytest.approx([d0 / i0, d1 / 7], abs=1e-12)
    lin = ndcg_per_list(S, Y, M, 10, gain="linear")
    assert lin.tolist() == pytest.approx([(2 / math.log2(3) + 1 / math.log2(5))
                                          / (2 + 1 / math.log2(3)), 3 / math.log2(4) / 3],
                                         abs=1e-12)
    assert ndcg_at_k(S, Y, M, 10) == pytest.approx(float(per.mean()), abs=1e-12)
    with pytest.raises(ValueError):
        ndcg_per_list(S, Y, M, 10, gain="log")


@pytest.mark.parametrize("seed", [0, 1])
def test_ssra_ndcg_equals_the_shared_linear_ndcg(seed):
    from llmrec.synth.metrics import dcg, mean_ndcg, ndcg_at_k as ssra_ndcg

    rng = np.random.default_rng(seed)
    qids, scores, grades, expected = [], [], [], []
    for q in range(20):
        n = int(rng.integers(1, 15))
        s = rng.integers(0, 5, n) / 4.0  # ties
        g = rng.integers(0, 4, n)
        qids += [f"q{q}"] * n
        scores += s.tolist()
        grades += g.tolist()
        ideal = dcg(sorted(g, reverse=True), 10)
        if ideal > 0:  # the pre-refactor definition, written out
            expected.append(dcg(g[np.argsort(-s, kind="stable")], 10) / ideal)
            assert ssra_ndcg(s, g, 10) == pytest.approx(expected[-1], abs=1e-12)
    res = mean_ndcg(qids, scores, grades, k=10)
    assert res["n_queries"] == len(expected)
    assert res["ndcg"] == pytest.approx(float(np.mean(expected)), abs=1e-12)
