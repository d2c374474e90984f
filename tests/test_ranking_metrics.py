"""Device metrics against scikit-learn on random data with ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

sklearn_metrics = pytest.importorskip("sklearn.metrics")

from llmrec.ranking.metrics import auc, ctr_metrics, gauc, group_aucs, log_loss  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=2000)
    # rounding creates many ties, which must get the average rank
    s = np.round(rng.normal(size=2000) + 0.5 * y, 1)
    assert auc(torch.tensor(y), torch.tensor(s)) == pytest.approx(
        sklearn_metrics.roc_auc_score(y, s), abs=1e-12)


def test_auc_one_class_is_nan():
    assert np.isnan(auc(torch.ones(5), torch.rand(5)))


def _reference_gauc(y, s, g):
    num = den = 0.0
    for u in np.unique(g):
        m = g == u
        if y[m].min() == y[m].max():
            continue  # single-class users are skipped
        num += m.sum() * sklearn_metrics.roc_auc_score(y[m], s[m])
        den += m.sum()
    return num / den


@pytest.mark.parametrize("seed", [0, 1])
def test_gauc_matches_per_user_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    g = rng.integers(0, 150, size=n)
    y = rng.integers(0, 2, size=n)
    s = np.round(rng.random(n) + 0.3 * y, 2)
    # a few single-class users to exercise the skip rule
    g[:20] = 1000
    y[:20] = 1
    got = gauc(torch.tensor(y), torch.tensor(s), torch.tensor(g))
    assert got == pytest.approx(_reference_gauc(y, s, g), abs=1e-12)
    uniq, aucs, size = group_aucs(torch.tensor(y), torch.tensor(s), torch.tensor(g))
    assert np.isnan(aucs[uniq == 1000].item())
    assert size.sum().item() == n


def test_logloss_matches_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=1000)
    p = rng.uniform(0.01, 0.99, size=1000)
    assert log_loss(torch.tensor(y), torch.tensor(p)) == pytest.approx(
        sklearn_metrics.log_loss(y, p), abs=1e-12)
    logits = torch.logit(torch.tensor(p))
    m = ctr_metrics(torch.tensor(y), logits, torch.tensor(rng.integers(0, 10, size=1000)))
    assert m["logloss"] == pytest.approx(sklearn_metrics.log_loss(y, p), abs=1e-9)
    assert m["auc"] == pytest.approx(sklearn_metrics.roc_auc_score(y, p), abs=1e-12)
    assert set(m) == {"auc", "logloss", "gauc", "n"}
