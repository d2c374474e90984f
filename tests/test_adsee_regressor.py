"""The click-rate predictor (llmrec.adsee.regressor): a ranking-engine backbone trained with the
regression task on item samples with a dense text-vector field recovers a synthetic target with
known weights; the like rate, the item split and the held-out report by hand; edited vectors are
scored through the dense field; the study runs end to end on synthetic items, and on ML-1M's
ratings when ../shared/data is present."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec.adsee.regressor import (ClickRateConfig, ClickRatePredictor, build_item_features,
                                    fit_regressor, heldout_report, item_rates, item_samples,
                                    split_items)
from llmrec.errors import ConfigError, DataError


class Tables:
    """What build_features reads: df(name) and has(name)."""

    def __init__(self, **frames):
        self.frames = frames

    def has(self, name):
        return name in self.frames

    def df(self, name):
        return self.frames[name]


def synthetic(n=600, d=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = np.linspace(-1, 1, d)
    rate = 0.5 + 0.4 * (x @ w) / np.abs(x @ w).max()
    ids = [str(i + 1) for i in range(n)]
    items = pd.DataFrame({"item_id": ids, "year": rng.integers(1990, 1995, n).astype(str),
                          "genres": [["Drama"] if i % 2 else ["Comedy"] for i in range(n)]})
    rates = pd.DataFrame({"item_id": ids, "n_ratings": 50, "rate": rate})
    return Tables(items=items), rates, {i: v for i, v in zip(ids, x)}, w


def small_cfg(**kw):
    base = dict(model_args={"embed_dim": 8, "hidden": [32], "dropout": 0.0}, batch_size=64,
                epochs=40, lr=3e-3, patience=6)
    return ClickRateConfig(**{**base, **kw})


def test_regression_on_dense_vectors_recovers_known_weights():
    data, rates, vectors, w = synthetic()
    cfg = small_cfg()
    samples = item_samples(rates, 0, cfg.valid_frac, cfg.test_frac)
    fs = build_item_features(data, samples, cfg, vectors)
    assert fs.spec.dense == {"text": 8}
    assert [f for f, _ in fs.spec.item_fields] == ["year"]  # no item id: held-out items are cold
    model, fit = fit_regressor(fs, cfg, seed=0)
    pred = ClickRatePredictor(model, fs)
    y = fs.labels().numpy()
    test, train = fs.split_index("test").numpy(), fs.split_index("train").numpy()
    rep = heldout_report(pred.predict(test), y[test], float(y[train].mean()))
    assert rep["pearson"] > 0.9, rep
    assert rep["rmse"] < 0.5 * rep["mean_rmse"], rep
    # the dense field is what is edited: moving along the known weights raises the prediction
    own = np.stack([vectors[i] for i in samples["item_id"].iloc[test]])
    np.testing.assert_allclose(pred.predict(test, own), pred.predict(test), atol=1e-5)
    up = pred.predict(test, own + 0.3 * w.astype(np.float32))
    down = pred.predict(test, own - 0.3 * w.astype(np.float32))
    assert (up > down).mean() > 0.95
    # several candidates per item at once: [n, P, d] -> [n, P]
    many = np.stack([own, own + 0.3 * w, own - 0.3 * w], 1)
    out = pred.predict(test, many)
    assert out.shape == (len(test), 3)
    np.testing.assert_allclose(out[:, 1], up, atol=1e-5)


def test_attributes_only_predictor_is_the_ablation():
    data, rates, vectors, _ = synthetic(n=200)
    cfg = small_cfg(use_text=False)
    fs = build_item_features(data, item_samples(rates, 0, 0.15, 0.15), cfg, None)
    assert fs.spec.dense == {}
    model, _ = fit_regressor(fs, cfg, seed=0)
    with pytest.raises(ConfigError, match="dense field"):
        ClickRatePredictor(model, fs)


def test_like_rate_by_hand():
    inter = pd.DataFrame({"user_id": list("abcdefg"), "item_id": [1, 1, 1, 2, 2, 3, 3] * 1,
                          "rating": [5, 4, 2, 3, 1, 4, 4]})
    inter = pd.concat([inter] * 2, ignore_index=True)  # each item rated twice as often
    r = item_rates(inter, min_ratings=4, like_threshold=4)
    assert r["item_id"].tolist() == ["1", "2", "3"]
    np.testing.assert_allclose(r["rate"], [2 / 3, 0.0, 1.0])
    assert r["n_ratings"].tolist() == [6, 4, 4]
    with pytest.raises(DataError, match="min_ratings"):
        item_rates(inter, min_ratings=5, like_threshold=4)
    with pytest.raises(DataError, match="rating"):
        item_rates(inter.drop(columns="rating"), 1, 4)


def test_item_split_is_seeded_and_sized():
    a, b, c = split_items(1000, 0.15, 0.2, 3), split_items(1000, 0.15, 0.2, 3), \
        split_items(1000, 0.15, 0.2, 4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a == "test").sum() == 200 and (a == "valid").sum() == 150 and (a == "train").sum() == 650


def test_heldout_report_by_hand():
    truth = np.array([0.1, 0.5, 0.9, 0.3])
    rep = heldout_report(truth.copy(), truth, train_mean=0.5)
    assert rep["mse"] == 0 and rep["mae"] == 0
    assert rep["pearson"] == pytest.approx(1.0) and rep["spearman"] == pytest.approx(1.0)
    assert rep["ndcg@10"] == pytest.approx(1.0)
    assert rep["mean_mae"] == pytest.approx((0.4 + 0 + 0.4 + 0.2) / 4)
    assert rep["mean_rmse"] == pytest.approx(np.sqrt((0.16 + 0 + 0.16 + 0.04) / 4))
    assert 0 < rep["mean_ndcg@10"] < 1
    rev = heldout_report(-truth, truth, train_mean=0.5)
    assert rev["pearson"] == pytest.approx(-1.0)
    assert rev["ndcg@10"] < rep["mean_ndcg@10"]


def test_config_errors():
    with pytest.raises(ConfigError, match="valid_frac"):
        ClickRateConfig(valid_frac=0.6, test_frac=0.5)
    data, rates, vectors, _ = synthetic(n=100)
    cfg = small_cfg()
    fs = build_item_features(data, item_samples(rates, 0, 0.15, 0.15), cfg, vectors)
    with pytest.raises(ConfigError, match="CTR backbone"):
        fit_regressor(fs, ClickRateConfig(model="sasrec"), seed=0)
    with pytest.raises(ConfigError, match="no item vectors"):
        build_item_features(data, item_samples(rates, 0, 0.15, 0.15), cfg, None)


def test_study_seed_end_to_end_on_synthetic_items():
    from llmrec.adsee.editor import EditorConfig
    from llmrec.adsee.study import AdseeConfig, run_seed, summarise

    data, rates, vectors, _ = synthetic(n=300)
    cfg = AdseeConfig(regressor=small_cfg(), n_directions=4, budgets=[0.02, 0.1], max_items=20,
                      editor=EditorConfig(population=8, parents=3, generations=4), seeds=[0])
    out = run_seed(cfg, data, rates, vectors, seed=0)
    assert out["heldout"]["n"] == 45
    rows = out["edits"]
    assert [r["budget"] for r in rows] == [0.02, 0.1]
    for r in rows:
        assert r["within_budget"] and r["distance_max"] <= r["budget"] + 1e-12
        assert r["gain_mean"] >= 0 and r["n_items"] == 20
        assert 0 <= r["nearest_is_self"] <= 1
    # the same seed gives the same study
    again = run_seed(cfg, data, rates, vectors, seed=0)
    assert again["edits"][1]["gain_mean"] == rows[1]["gain_mean"]
    s = summarise([out, again])
    assert s["edits"][0]["gain_mean"]["n_seeds"] == 2
    assert s["edits"][0]["gain_mean"]["std"] == pytest.approx(0.0, abs=1e-12)


def test_ml1m_like_rates():
    from conftest import shared_path

    from llmrec.data.config import DataConfig
    from llmrec.data.loaders import load_data

    folder = shared_path("movielens-1m", "ratings-users-1-2999.dat.gz").parent
    data = load_data(DataConfig(name="movielens-1m", path=str(folder)))
    r = item_rates(data.df("interactions"), min_ratings=20, like_threshold=4)
    assert len(r) == 2648  # ML-1M users 1-2999: items with >= 20 ratings
    assert r["rate"].between(0, 1).all() and r["n_ratings"].min() >= 20
    assert 0.4 < float(np.average(r["rate"], weights=r["n_ratings"])) < 0.7

