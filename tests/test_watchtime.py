"""Watch-time labels, the CWM loss and the watch-time metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec.errors import ConfigError, DataError
from llmrec.ranking import watchtime as wt


def test_long_view_is_kuairands_definition():
    w = [5, 10, 20, 17, 18, 3]
    d = [10, 10, 30, 30, 30, 2]
    assert wt.long_view(w, d).tolist() == [0, 1, 1, 0, 1, 1]
    assert wt.long_view(w, d, tau=10).tolist() == [0, 1, 1, 1, 1, 1]


def test_pcr_wtg_d2q_hand_computed():
    w, d = np.array([1.0, 3.0, 10.0]), np.array([10.0, 10.0, 20.0])
    assert wt.watch_time_label("pcr", w, d).tolist() == [0.1, 0.3, 0.5]
    # duration 10: mean 2, std 1; duration 20: one sample, std 0 -> 0
    assert wt.watch_time_label("wtg", w, d).tolist() == [-1.0, 1.0, 0.0]
    # fitted on the first two only: the 20 s sample takes the nearest duration (10 s)
    assert wt.watch_time_label("wtg", w, d, fit=[True, True, False]).tolist() == [-1, 1, 8]
    # d2q, one group: mid-rank percentiles (less + equal / 2) / n
    q = wt.watch_time_label("d2q", [1, 2, 2, 4], [10] * 4, d2q_groups=1)
    assert q.tolist() == [0.125, 0.5, 0.5, 0.875]
    # two duration groups: each sample ranked in its own group only
    q2 = wt.watch_time_label("d2q", [1, 5, 2, 6], [10, 10, 30, 30], d2q_groups=2)
    assert q2.tolist() == [0.25, 0.75, 0.25, 0.75]
    # denoise: watch times under 5 s count as 0
    assert wt.watch_time_label("raw", [1, 6], [10, 10], denoise_below=5).tolist() == [0, 6]


def test_gmm_means_on_a_two_cluster_toy():
    x = np.concatenate([np.tile([1.9, 2.0, 2.1], 10), np.tile([19.5, 20.0, 20.5], 5)])
    means, var, pi = wt.gmm_1d(x)
    assert means == pytest.approx([2.0, 20.0], abs=1e-6)
    assert var == pytest.approx([0.02 / 3, 0.5 / 3], rel=1e-4)
    assert pi == pytest.approx([2 / 3, 1 / 3], abs=1e-6)
    assert wt.gmm_1d([4.0, 4.0])[0].tolist() == [4.0, 4.0]


def test_d2co_bounds_smoothing_and_label():
    # duration 10: clusters 1 / 9; 11: 3 / 13 (neighbours for window 2); 20: 5 / 15, alone
    w = [1, 1, 9, 9, 3, 3, 13, 13, 5, 5, 15, 15]
    d = [10] * 4 + [11] * 4 + [20] * 4
    durs, counts, lo, hi = wt.d2co_bounds(w, d, window=2)
    assert durs.tolist() == [10, 11, 20] and counts.tolist() == [4, 4, 4]
    assert lo == pytest.approx([2.0, 2.0, 5.0], abs=1e-6)
    assert hi == pytest.approx([11.0, 11.0, 15.0], abs=1e-6)
    # window 1: no smoothing
    _, _, lo1, hi1 = wt.d2co_bounds(w, d, window=1)
    assert lo1 == pytest.approx([1, 3, 5], abs=1e-6) and hi1 == pytest.approx([9, 13, 15], abs=1e-6)
    # the correction function: linear for a = 0, exponential otherwise, clipped to [0, 1]
    assert wt.d2co_label([2, 6.5, 11, 0, 30], 2, 11, alpha=0).tolist() == [0, 0.5, 1, 0, 1]
    a = -0.05
    expect = (math.exp(a * 6.5) - math.exp(a * 2)) / (math.exp(a * 11) - math.exp(a * 2))
    assert wt.d2co_label([6.5], 2, 11, alpha=a)[0] == pytest.approx(expect, rel=1e-12)
    assert wt.d2co_label([6, 3, 5], 5, 5).tolist() == [1.0, 0.0, 0.5]  # degenerate bounds
    r = wt.watch_time_label("d2co", w, d, d2co_window=2, d2co_alpha=0)
    assert r[:4] == pytest.approx([0, 0, 7 / 9, 7 / 9])  # (w - 2) / (11 - 2)


def test_cwm_censored_and_uncensored_terms():
    c, sigma = 40.0, 2.0
    w = torch.tensor([9.0, 9.0])
    d = torch.tensor([20.0, 9.0])  # first: not completed (uncensored); second: completed
    s = torch.tensor([0.5, 0.5])
    target = -4.0 - math.log(1 - math.exp(-4.0))  # logit exp(-40 / 10)
    z = (0.5 - target) / sigma
    per = wt.cwm_loss(s, w, d, c, sigma, reduce=False)
    assert per[0].item() == pytest.approx(0.5 * z * z, rel=1e-5)
    assert per[1].item() == pytest.approx(math.log1p(math.exp(-z)), rel=1e-5)
    assert wt.cwm_loss(s, w, d, c, sigma).item() == pytest.approx(per.mean().item())
    # prediction inverts r(w): the score logit r(9) gives back 9 s; clipped at the duration
    pred = wt.cwm_predict(torch.tensor([target, target]), torch.tensor([100.0, 5.0]), c)
    assert pred.tolist() == pytest.approx([9.0, 5.0], abs=1e-3)
    # censored samples are pushed up, never down: the gradient is negative at any score
    g = torch.tensor([3.0, 30.0], requires_grad=True)
    wt.cwm_loss(g, torch.tensor([9.0, 9.0]), torch.tensor([9.0, 9.0])).backward()
    assert (g.grad < 0).all()


def test_xauc_xgauc_gauc_ndcg_hand_computed():
    assert wt.xauc([1, 2, 3], [1, 3, 2]) == pytest.approx(2 / 3)
    assert wt.xauc([1, 2, 3], [1, 1, 2]) == pytest.approx(2.5 / 3)  # a score tie counts 1/2
    assert wt.xauc([1, 1, 2], [5, 0, 1]) == pytest.approx(0.5)  # equal true times: no pair
    assert math.isnan(wt.xauc([4, 4], [1, 2]))
    users = ["a", "a", "b", "b", "b", "c", "c"]
    t = [1, 2, 1, 2, 3, 5, 5]
    s = [0, 1, 1, 3, 2, 0, 1]
    assert wt.xgauc(users, t, s) == pytest.approx((2 * 1 + 3 * (2 / 3)) / 5)
    y = [1, 0, 1, 0, 0, 0, 0]
    sc = [0.9, 0.1, 0.2, 0.5, 0.1, 0.3, 0.4]
    assert wt.gauc(users, y, sc) == pytest.approx((2 * 1 + 3 * 0.5) / 5)
    # nDCG@2: a = 1; b ranks 0.5 (neg), 0.2 (pos) -> 1 / log2(3); c has no positive
    assert wt.ndcg(users, y, sc, 2) == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert wt.mae([1, 2], [2, 4]) == 1.5 and wt.rmse([1, 2], [2, 4]) == pytest.approx(
        math.sqrt(2.5))


def test_xauc_estimate_on_many_pairs_matches_exact():
    rng = np.random.default_rng(0)
    t = rng.exponential(10, 2500)
    s = t + rng.normal(0, 5, t.size)
    exact = wt.xauc(t, s, max_pairs=10 ** 8)
    est = wt.xauc(t, s, max_pairs=200_000, seed=1)
    assert abs(exact - est) < 0.01


def test_duration_bins_and_topk_shares():
    d = np.array([5, 5, 50, 50, 5, 50], dtype=float)
    w = np.array([5, 1, 30, 2, 5, 40], dtype=float)
    users = np.array([0, 0, 0, 1, 1, 1])
    score = np.array([1, 0, 2, 0, 3, 1], dtype=float)  # user 0 prefers the long video
    lv = wt.long_view(w, d)
    out = wt.duration_bins(d, w, score, users=users, long=lv, n_bins=2, top_k=1)
    assert [r["n"] for r in out["bins"]] == [3, 3]
    assert out["bins"][0]["w_mean"] == pytest.approx(11 / 3)
    assert out["bins"][1]["long_view_rate"] == pytest.approx(2 / 3)
    # top-1: user 0 -> the 50 s video, user 1 -> a 5 s video; positives: two of each bin
    assert out["top_share"] == [0.5, 0.5] and out["positive_share"] == [0.5, 0.5]
    m = wt.watch_time_metrics(users, w, d, score, w_pred=w)
    assert m["mae"] == 0.0 and {"gauc", "xauc", "xgauc", "ndcg@1", "ndcg@5"} <= set(m)


def test_add_labels_fits_on_train_and_rejects_bad_input():
    df = pd.DataFrame({"watch_s": [1.0, 3.0, 2.0, 30.0], "duration_s": [10.0, 10.0, 10.0, 20.0],
                       "split": ["train", "train", "test", "test"]})
    out = wt.add_watch_time_labels(df)
    assert set(wt.LABELS) | {"long_view"} <= set(out.columns)
    assert out["wtg"].tolist() == pytest.approx([-1, 1, 0, 28])  # train mean 2, std 1
    with pytest.raises(DataError, match="durations finite and > 0"):
        wt.watch_time_label("pcr", [1.0], [0.0])
    with pytest.raises(DataError, match="differ in length"):
        wt.watch_time_label("pcr", [1.0, 2.0], [3.0])
    with pytest.raises(ConfigError, match="cwm is a loss"):
        wt.watch_time_label("cwm", [1.0], [2.0])
    with pytest.raises(ConfigError, match="watchtime.label"):
        wt.WatchTimeConfig(label="watch")
