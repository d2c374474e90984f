"""SSRA metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmrec.synth.metrics import (
    agreement, average_precision, avg_ap, dcg, duplicate_rate, level_balance, mean_ndcg,
    ndcg_at_k, normalize_query,
)


def test_dcg_linear_gain_log2_discount():
    # ranks 1..3 with gains 3, 2, 0: 3/log2(2) + 2/log2(3) + 0
    assert dcg([3, 2, 0], 10) == pytest.approx(3 + 2 / math.log2(3))
    assert dcg([3, 2, 1], 2) == pytest.approx(3 + 2 / math.log2(3))  # cut at k


def test_ndcg_hand_computed():
    # scores rank the docs d2 (grade 1), d0 (grade 3), d1 (grade 0), d3 (grade 2)
    scores = [0.8, 0.1, 0.9, 0.05]
    grades = [3, 0, 1, 2]
    got = 1 + 3 / math.log2(3) + 0 + 2 / math.log2(5)
    ideal = 3 + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(scores, grades, k=10) == pytest.approx(got / ideal)
    # at k=1 only the top document counts: gain 1 against an ideal 3
    assert ndcg_at_k(scores, grades, k=1) == pytest.approx(1 / 3)
    assert ndcg_at_k(grades, grades) == pytest.approx(1.0)


def test_ndcg_ties_keep_input_order_and_no_gain_is_none():
    # all scores tied: ranking = input order, whatever the grades
    assert ndcg_at_k([0.5, 0.5], [0, 3], k=1) == 0.0
    assert ndcg_at_k([0.5, 0.5], [3, 0], k=1) == 1.0
    assert ndcg_at_k([0.3, 0.2], [0, 0]) is None


def test_mean_ndcg_skips_queries_without_gain():
    res = mean_ndcg(["a", "a", "b", "b"], [0.9, 0.1, 0.4, 0.6], [3, 0, 0, 0], k=10)
    assert res == {"ndcg": 1.0, "n_queries": 1, "n_skipped": 1}


def test_average_precision_hand_computed():
    # ranked labels 1, 0, 1: precision at the hits 1/1 and 2/3 -> AP = (1 + 2/3) / 2
    assert average_precision([1, 0, 1], [0.9, 0.5, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    assert math.isnan(average_precision([0, 0], [0.1, 0.2]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn_with_ties(seed):
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    y[0] = 1
    s = rng.integers(0, 12, 200) / 4.0  # many ties
    assert average_precision(y, s) == pytest.approx(sklearn.average_precision_score(y, s))


def test_avg_ap_means_the_three_thresholds():
    sklearn = pytest.importorskip("sklearn.metrics")
    grades = np.array([3, 2, 0, 1, 0, 3, 2, 1])
    scores = np.array([0.9, 0.3, 0.4, 0.35, 0.1, 0.7, 0.6, 0.2])
    res = avg_ap(grades, scores)
    per = [sklearn.average_precision_score(grades >= t, scores) for t in (1, 2, 3)]
    assert [res["ap_ge1"], res["ap_ge2"], res["ap_ge3"]] == pytest.approx(per)
    assert res["avg_ap"] == pytest.approx(np.mean(per))
    # a threshold without positives is left out of the mean
    res = avg_ap([0, 1, 2, 1], [0.1, 0.5, 0.9, 0.2])
    assert math.isnan(res["ap_ge3"]) and res["avg_ap"] == pytest.approx(
        np.mean([res["ap_ge1"], res["ap_ge2"]]))


def test_level_balance_and_duplicates():
    assert level_balance([0, 0, 3, 1]) == {"0": 0.5, "1": 0.25, "2": 0.0, "3": 0.25, "n": 4}
    assert normalize_query("  Funny  MOVIES, please! ") == "funny movies please"
    assert duplicate_rate(["a b", "A  b!", "c", "d"]) == pytest.approx(0.25)
    assert duplicate_rate([]) == 0.0


def test_agreement_per_level():
    res = agreement(predicted=[0, 0, 1, 2, 3, 3], gold=[0, 1, 1, 2, 3, 2])
    assert res["accuracy"] == pytest.approx(4 / 6)
    assert res["agreement_1"] == 0.5 and res["agreement_2"] == 0.5
    assert res["agreement_0"] == 1.0 and res["precision_0"] == 0.5
    assert res["precision_3"] == 0.5
    assert res["confusion"][2] == [0, 0, 1, 1]
    assert res["macro_agreement"] == pytest.approx(np.mean([1, 0.5, 0.5, 1]))
