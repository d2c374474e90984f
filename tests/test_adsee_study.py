"""The AdSEE study's plumbing (llmrec.adsee.study, bench/adsee_ml1m.py): item vectors from a
vector file or the embedding cache, nearest-neighbour distances by hand, the table, and the bench
records (every one valid, the held-out error beside every gain)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmrec import benchrecord as br
from llmrec.adsee.study import AdseeConfig, format_table, load_vectors, nearest_distance, summarise
from llmrec.errors import ConfigError, DataError

from conftest import load_bench


def test_vectors_from_a_vector_file(tmp_path):
    from llmrec.ranking.item_knowledge import save_vector_file

    path = save_vector_file(tmp_path / "v.safetensors", ["7", "9"],
                            torch.tensor([[1.0, 0.0], [0.0, 2.0]]), source={"embedder": "x"})
    vecs, source = load_vectors(AdseeConfig(vectors=str(path), output_dir=str(tmp_path)))
    assert set(vecs) == {"7", "9"}
    np.testing.assert_array_equal(vecs["9"], [0.0, 2.0])
    assert source["embedder"] == "x"


def test_embedded_texts_are_read_back_from_the_cache(tmp_path):
    texts = tmp_path / "t.json"
    texts.write_text(json.dumps({"2": "b", "1": "a"}))
    cache = tmp_path / "cache.npz"
    # a cache of the same ids and embedder is used as is: no encoder is loaded
    np.savez(cache, ids=np.array(["1", "2"]), vectors=np.eye(2, dtype=np.float32),
             embedder=np.array("minilm"))
    cfg = AdseeConfig(texts=str(texts), vector_cache=str(cache), output_dir=str(tmp_path))
    vecs, source = load_vectors(cfg)
    np.testing.assert_array_equal(vecs["2"], [0.0, 1.0])
    assert source["cache"] == str(cache)
    with pytest.raises(DataError, match="does not exist"):
        load_vectors(AdseeConfig(texts=str(tmp_path / "none.json"), output_dir=str(tmp_path)))
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(DataError, match="JSON object"):
        load_vectors(AdseeConfig(texts=str(tmp_path / "bad.json"), output_dir=str(tmp_path)))


def test_nearest_distance_by_hand():
    cat = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    q = np.array([[1.0, 0.1], [0.0, 3.0]])
    d, which = nearest_distance(q, cat)
    assert which.tolist() == [0, 1]
    d2, which2 = nearest_distance(q, cat, exclude=np.array([0, -1]))
    assert which2.tolist() == [2, 1]
    cos = (1.0 + 0.1) / (np.sqrt(1.01) * np.sqrt(2))
    assert d2[0] == pytest.approx(1 - cos)


def test_config_errors():
    with pytest.raises(ConfigError, match="budgets"):
        AdseeConfig(budgets=[0.1, -1])
    with pytest.raises(ConfigError, match="seeds"):
        AdseeConfig(seeds=[])


def _fake_seed(seed, gain):
    row = {"budget": 0.05, "distance": "cosine", "n_items": 3, "gain_mean": gain,
           "gain_median": gain, "gain_std": 0.0, "gain_over_rmse": gain / 0.2,
           "random_gain_mean": 0.0, "random_distance_mean": 0.05, "base_mean": 0.5,
           "edited_mean": 0.5 + gain, "distance_mean": 0.05, "distance_max": 0.05,
           "within_budget": True, "nn_distance_edited": 0.4, "nn_distance_original": 0.3,
           "nearest_is_self": 1.0, "outside_catalogue_range": 0.1,
           "outside_catalogue_range_original": 0.0, "nn_true_rate_gain": 0.02,
           "nn_true_rate_gain_original": 0.01, "predicted_above_1": 0.0,
           "evaluations_per_item": 10, "search_seconds": 0.1}
    held = {"n": 5, "mse": 0.04, "rmse": 0.2, "mae": 0.15, "pearson": 0.6, "spearman": 0.6,
            "ndcg@10": 0.8, "mean_mse": 0.05, "mean_rmse": 0.22, "mean_mae": 0.18,
            "mean_ndcg@10": 0.5, "truth_std": 0.22}
    return {"seed": seed, "heldout": held, "edits": [row], "rewrite": None}


def test_summary_table_and_bench_records():
    per = [_fake_seed(0, 0.1), _fake_seed(1, 0.2)]
    s = summarise(per)
    assert s["edits"][0]["gain_mean"]["mean"] == pytest.approx(0.15)
    assert s["edits"][0]["gain_mean"]["std"] == pytest.approx(np.std([0.1, 0.2], ddof=1))
    cfg = AdseeConfig()
    from llmrec.config import to_dict

    result = {"config": to_dict(cfg), "vectors": {"embedder": "minilm"}, "n_items": 10,
              "target": "like rate", "seeds": per, "summary": s}
    table = format_table(result)
    assert "| cosine 0.05 | 0.1500 +- 0.0707 |" in table
    bench = load_bench("adsee_ml1m")
    recs = bench.records(result, "python bench/adsee_ml1m.py")
    for r in recs:
        br.validate(r)
    gains = [r for r in recs if r["metric"] == "predicted_gain"]
    assert len(gains) == 1 and gains[0]["heldout_rmse"] == pytest.approx(0.2)
    assert gains[0]["value"] == pytest.approx(0.15) and gains[0]["n_seeds"] == 2
    base = [r for r in recs if r["metric"] == "heldout_rmse" and "baseline" in r]
    assert base and base[0]["value"] == pytest.approx(0.22)
