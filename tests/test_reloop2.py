"""ReLoop2: the error memories by hand, keys from every CTR backbone, lambda 0 = the base model
bit for bit, and the MovieLens-1M time-window stream."""

from __future__ import annotations

import pytest
import torch

from conftest import shared_path
from llmrec.errors import ConfigError
from llmrec.ranking import registry
from llmrec.ranking.reloop2 import ExactKNNMemory, LSHMemory, ReLoop2, representation
from llmrec.ranking.stream import (StreamConfig, movielens_stream, prequential,
                                   wrapped_predictions)
from llmrec.ranking.trainer import seed_everything
from test_ranking_contract import SMALL, _build


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ctr_features():
    return _build("ctr")


def _dnn(fs, seed=0):
    seed_everything(seed)
    return registry.build_model("dnn", fs.spec, embed_dim=8, hidden=(16, 8), dropout=0.0).eval()


# -- memories --------------------------------------------------------------------------------

def test_exact_knn_by_hand():
    mem = ExactKNNMemory(2, k=2, capacity=3, temperature=1.0, decay=0.5)
    assert mem.estimate(torch.tensor([[1.0, 0.0]])).tolist() == [0.0]  # empty: no correction
    mem.insert(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0.4, -0.2]))
    # query (1, 0): cosine 1 and 0 -> softmax weights e^1 / (e^1 + e^0) and the rest
    w1 = torch.exp(torch.tensor(1.0)) / (torch.exp(torch.tensor(1.0)) + 1)
    got = mem.estimate(torch.tensor([[1.0, 0.0]]))
    assert torch.allclose(got, w1 * 0.4 + (1 - w1) * -0.2)
    mem.end_window()  # both weights halve: the softmax-weighted mean is unchanged
    assert torch.allclose(mem.estimate(torch.tensor([[1.0, 0.0]])), got)
    mem.insert(torch.tensor([[1.0, 1.0], [-1.0, 0.0]]), torch.tensor([1.0, 0.0]))
    assert len(mem) == 3 and mem.errors.tolist() == pytest.approx([-0.2, 1.0, 0.0])  # oldest out
    assert mem.nbytes == 3 * 2 * 4 + 3 * 4 + 3 * 4
    with pytest.raises(ConfigError, match="width"):
        mem.insert(torch.zeros(1, 3), torch.zeros(1))


def test_lsh_buckets_hold_decayed_means_and_keep_a_fixed_size():
    mem = LSHMemory(4, n_tables=3, n_bits=4, decay=0.5, seed=0)
    size = mem.nbytes
    key = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    mem.insert(key.repeat(3, 1), torch.tensor([0.1, 0.2, 0.6]))
    assert torch.allclose(mem.estimate(key), torch.tensor([0.3]))
    assert torch.allclose(mem.estimate(5 * key), torch.tensor([0.3]))  # scale-free (cosine)
    mem.end_window()
    mem.insert(key, torch.tensor([-0.3]))  # decayed: (0.45 - 0.3) / (1.5 + 1)
    assert torch.allclose(mem.estimate(key), torch.tensor([0.15 / 2.5]))
    mem.insert(torch.randn(10_000, 4), torch.rand(10_000))
    assert mem.nbytes == size
    assert mem.codes(key).shape == (1, 3) and int(mem.codes(key).max()) < 16


def test_lsh_estimate_is_close_to_exact_knn_on_clustered_keys():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(20, 16, generator=g)
    bias = torch.rand(20, generator=g) - 0.5
    c = torch.randint(0, 20, (6000,), generator=g)
    keys = centres[c] + 0.05 * torch.randn(6000, 16, generator=g)
    errors = bias[c] + 0.05 * torch.randn(6000, generator=g)
    knn, lsh = ExactKNNMemory(16, k=50, capacity=10_000), LSHMemory(16, 8, 10, seed=1)
    for m in (knn, lsh):
        m.insert(keys[:5000], errors[:5000])
    gap = (knn.estimate(keys[5000:]) - lsh.estimate(keys[5000:])).abs().mean()
    assert float(gap) < 0.02
    assert float((knn.estimate(keys[5000:]) - bias[c[5000:]]).abs().mean()) < 0.03


# -- keys and the wrapper --------------------------------------------------------------------

def test_hidden_key_is_the_output_layers_input_and_changes_nothing(ctr_features):
    fs = ctr_features
    model = _dnn(fs)
    batch = fs.batch(torch.arange(64))
    with torch.no_grad():
        plain = model(batch)["logit"]
        x = model.embed(batch).fields().flatten(1)
        hidden = model.mlp.net[:-1](x)
    keys, logit = representation(model, batch, "hidden")
    assert torch.equal(logit, plain) and torch.equal(keys, hidden)
    emb, _ = representation(model, batch, "embedding")
    assert emb.shape == (64, fs.spec.n_fields * 8)
    with pytest.raises(ConfigError, match="key"):
        representation(model, batch, "last")


def test_every_ctr_backbone_gives_keys(ctr_features):
    fs = ctr_features
    batch = fs.batch(torch.arange(32))
    for name in registry.list_models("ctr"):
        hp = registry.hyper_parameters(name)
        seed_everything(0)
        model = registry.build_model(name, fs.spec, **{k: v for k, v in SMALL.items()
                                                       if k in hp}).eval()
        for key in ("hidden", "embedding"):
            keys, logit = representation(model, batch, key)
            assert keys.dim() == 2 and keys.shape[0] == 32, (name, key)
            assert torch.isfinite(keys).all() and logit.shape == (32,)


def test_lambda_zero_is_bit_identical_to_the_base_model(ctr_features):
    fs = ctr_features
    model = _dnn(fs)
    idx = torch.arange(fs.tensors["label"].numel())
    with torch.no_grad():
        base = torch.cat([torch.sigmoid(model(fs.batch(c))["logit"].float())
                          for c in idx.split(100)])
    dim = representation(model, fs.batch(idx[:2]), "hidden")[0].shape[1]
    for memory in (ExactKNNMemory(dim, k=5), LSHMemory(dim, 4, 6)):
        memory.insert(torch.randn(200, dim), torch.rand(200) - 0.5)  # a memory with content
        got = wrapped_predictions(model, memory, 0.0, fs, idx, chunk=100)
        assert torch.equal(got, base)
        moved = wrapped_predictions(model, memory, 0.5, fs, idx, chunk=100)
        assert not torch.equal(moved, base)
    with pytest.raises(ConfigError, match="lambda"):
        ReLoop2(model, ExactKNNMemory(dim), lam=-0.1)


def test_prequential_lambda_zero_scores_like_base_and_memory_helps_a_biased_stream(ctr_features):
    """Windows of the planted CTR set; lambda 0 conditions score exactly as the base model. The
    second half of the stream flips the label of one user segment (a shift the frozen base
    model cannot follow): the memory, refreshed online, recovers AUC there."""
    fs = ctr_features
    y = fs.tensors["label"]
    n = y.numel()
    seg = fs.tensors["user_table"][fs.tensors["user_row"], 0]
    shifted = (torch.arange(n) >= n // 2) & (seg == seg.unique()[0])
    fs.tensors["label"] = torch.where(shifted, 1 - y, y)
    try:
        windows = list(torch.arange(n).tensor_split(6))
        cfg = StreamConfig(train_windows=3, epochs=8, batch_size=64, lr=1e-2, chunk=200,
                           lambdas=[0.0, 0.5], keys=["hidden", "embedding"], knn_capacity=2000,
                           lsh_bits=6, incremental_lr=1e-2)
        res = prequential(_dnn(fs), fs, windows, cfg, seed=0)
    finally:
        fs.tensors["label"] = y
    assert len(res["windows"]) == 3
    for row in res["windows"]:
        m = row["metrics"]
        for cond in ("knn[hidden]@0.0", "lsh[hidden]@0.0", "knn[embedding]@0.0"):
            assert m[cond] == m["base"]
    mean = {c: sum(r["metrics"][c]["auc"] for r in res["windows"]) / 3
            for c in res["windows"][0]["metrics"]}
    assert mean["knn[embedding]@0.5"] > mean["base"] + 0.02, mean
    assert set(res["memory_bytes"]) == {"knn[hidden]", "lsh[hidden]", "knn[embedding]",
                                        "lsh[embedding]"}
    with pytest.raises(ConfigError, match="train_windows"):
        prequential(_dnn(fs), fs, windows, StreamConfig(train_windows=6), 0)


# -- MovieLens-1M stream ---------------------------------------------------------------------

@pytest.mark.slow  # parses all 487,650 ratings (about 10 s on an idle core)
def test_movielens_stream_is_time_ordered_windows():
    folder = shared_path("movielens-1m")
    fs, windows = movielens_stream(folder, n_windows=4, max_samples=8000)
    info = fs.info["stream"]
    assert info["window_sizes"] == [2000] * 4 and len(windows) == 4
    assert info["window_start"] == sorted(info["window_start"])
    assert torch.equal(torch.cat(windows), torch.arange(8000))
    assert set(fs.tensors["label"].unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ConfigError, match="n_windows"):
        movielens_stream(folder, n_windows=1)
