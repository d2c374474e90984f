"""FGCNN, OptInter and QIN: the behaviour each paper specifies, beyond the registry contract
(``tests/test_ranking_contract.py -k "fgcnn or optinter or qin"``).

- FGCNN: the number of generated fields is F + sum_i r_i ceil(F_{i-1} / p_i), also when F is not
  divisible by the pooling size; the parameter count matches the closed formula.
- OptInter: the architecture weights are a softmax with the annealed temperature, zero on the
  memorised method of pairs without ids; pair ids are exact where the table holds every pair;
  the search run's choices are exported as JSON and the retrain stage builds exactly the chosen
  methods (tables, MLP input, gradients) from the JSON file, the run folder or a mapping.
- QIN: the target attention is a masked ReLU (exact zeros, masked behaviours contribute nothing,
  an empty history gives u = t); the quadratic layer's rows sum to one linear map; the quadratic
  network works as the head of a flat model; the embedding L2 is the training aux loss.
"""

from __future__ import annotations

import json
import math
import runpy
import sys
from unittest import mock

import pytest
import torch
from torch import nn

from llmrec.errors import ConfigError
from llmrec.ranking.features import FeatureConfig, FeatureSpec, build_features
from llmrec.ranking.layers import FeatureEmbedding
from llmrec.ranking.models.ctr.fgcnn import FGCNN, n_generated_fields
from llmrec.ranking.models.ctr.optinter import (CHOICES_FILE, METHODS, OptInter, export_choices,
                                                field_names, pair_ids)
from llmrec.ranking.models.ctr.qin import QIN, QuadraticLayer, QuadraticNetwork
from llmrec.ranking.registry import build_model
from llmrec.ranking.synthetic import make_synthetic


pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(n_user=3, n_item=2, n_multi=1, hist=4, context=1, dense=None) -> FeatureSpec:
    return FeatureSpec(user_fields=[(f"u{i}", 5 + i) for i in range(n_user)],
                       item_fields=[("item_id", 30)] + [(f"i{i}", 7) for i in range(n_item - 1)],
                       item_multi_fields=[(f"m{i}", 6, 3) for i in range(n_multi)],
                       rating_vocab=7, max_hist_len=hist, dense=dict(dense or {}),
                       context_fields=[(f"c{i}", 4) for i in range(context)])


def _batch(spec: FeatureSpec, b: int = 16, seed: int = 0, lengths=None) -> dict:
    g = torch.Generator().manual_seed(seed)

    def ids(vocab, *shape):
        return torch.randint(1, vocab, shape, generator=g)

    L = spec.max_hist_len
    lengths = torch.randint(0, L + 1, (b,), generator=g) if lengths is None else lengths
    mask = torch.arange(L)[None, :] < lengths[:, None]
    item_cols = [v for _, v in spec.item_fields]
    batch = {
        "user": torch.stack([ids(v, b) for _, v in spec.user_fields], 1)
        if spec.user_fields else torch.zeros(b, 0, dtype=torch.long),
        "item": torch.stack([ids(v, b) for v in item_cols], 1),
        "item_multi": {n: ids(v, b, g_) for n, v, g_ in spec.item_multi_fields},
        "hist_item": torch.stack([ids(v, b, L) for v in item_cols], -1) * mask[..., None],
        "hist_multi": {n: ids(v, b, L, g_) * mask[..., None] for n, v, g_ in
                       spec.item_multi_fields},
        "hist_rating": ids(spec.rating_vocab, b, L) * mask,
        "hist_mask": mask,
        "dense": {n: torch.randn(b, d, generator=g) for n, d in spec.dense.items()},
    }
    if spec.context_fields:
        batch["context"] = torch.stack([ids(v, b) for _, v in spec.context_fields], 1)
    return batch


def _n(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------------------
# FGCNN


@pytest.mark.parametrize("n_user,pool,recombined", [(3, 2, 3), (4, 2, 3), (2, 3, (1, 2, 3, 4))])
def test_fgcnn_generated_field_count_matches_the_formula(n_user, pool, recombined):
    spec = _spec(n_user=n_user)  # F = n_user + 2 * 3 item slots + 1 context: 10, 11, 9
    f = spec.n_fields
    torch.manual_seed(0)
    model = FGCNN(spec, embed_dim=4, channels=(3, 4, 5, 6), kernel_heights=3, pooling_sizes=pool,
                  recombined_channels=recombined, hidden=(8,))
    rs = [recombined] * 4 if isinstance(recombined, int) else list(recombined)
    heights, h = [], f
    for _ in range(4):
        h = -(-h // pool)  # ceil: the partial last window is kept
        heights.append(h)
    expected_new = sum(r * hh for r, hh in zip(rs, heights))
    assert model.generator.heights == heights
    assert model.generator.n_new == expected_new == n_generated_fields(f, [pool] * 4, rs)
    assert model.n_total_fields == f + expected_new
    if n_user == 4:
        assert f % pool == 1  # the case the formula's ceil is for
    batch = _batch(spec)
    model.eval()
    gen = model.generator(model.generator_embedding(batch).fields())
    assert gen.shape == (16, expected_new, 4)
    assert model(batch)["logit"].shape == (16,)


def test_fgcnn_parameter_count_matches_the_formula():
    spec = _spec(n_user=4)  # F = 11, not divisible by the pooling size 2
    d, ch, k, p, r, hidden = 6, [3, 5, 4], 9, 2, 2, [16, 8]
    model = FGCNN(spec, embed_dim=d, channels=tuple(ch), kernel_heights=k, pooling_sizes=p,
                  recombined_channels=r, hidden=tuple(hidden))
    f = spec.n_fields
    emb = _n(FeatureEmbedding(spec, d))
    total, c_in, h = 2 * emb, 1, f  # classifier + generator embeddings
    n_new = 0
    for c in ch:
        h = math.ceil(h / p)
        total += c_in * c * k + c + 2 * c  # conv weight + bias, BatchNorm affine
        total += (c * h * d) * (r * h * d) + r * h * d  # recombination
        n_new += r * h
        c_in = c
    n = f + n_new
    dims = [n * d + n * (n - 1) // 2, *hidden, 1]
    total += sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
    assert _n(model) == total
    shared = FGCNN(spec, embed_dim=d, channels=tuple(ch), kernel_heights=k, pooling_sizes=p,
                   recombined_channels=r, hidden=tuple(hidden), share_embedding=True)
    assert _n(shared) == total - emb


def test_fgcnn_rejects_mismatched_layer_lists():
    with pytest.raises(ConfigError, match="kernel_heights"):
        FGCNN(_spec(), channels=(3, 4), kernel_heights=(3, 3, 3))


# ------------------------------------------------------------------------------------------------
# OptInter


def test_optinter_arch_weights_and_temperature():
    spec = _spec(n_user=2, n_item=2, n_multi=1, hist=3, context=1)
    torch.manual_seed(0)
    model = OptInter(spec, embed_dim=4, cross_dim=3, hidden=(8,))
    names = field_names(spec)
    assert names == ["u0", "u1", "item_id", "i0", "m0", "hist:item_id", "hist:i0", "hist:m0", "c0"]
    w = model.arch_weights()
    assert w.shape == (36, 3)
    torch.testing.assert_close(w.sum(-1), torch.ones(36))
    mem = torch.tensor(model.memorisable)
    # memorisable: pairs among u0, u1, item_id, i0, c0 = 10 pairs
    assert int(mem.sum()) == 10
    assert (w[~mem, 0] == 0).all() and (w[mem, 0] > 0).all()
    batch = _batch(spec)
    model.train()
    for _ in range(3):
        model(batch)
    model.eval()
    model(batch)  # evaluation does not anneal
    assert int(model.step) == 3
    assert model.temperature() == pytest.approx(1 - 3 * 5e-5)
    model.step.fill_(10**6)
    assert model.temperature() == pytest.approx(0.01)
    # at t = 0.01 the weights are nearly one-hot on the argmax
    assert (model.arch_weights().max(-1).values > 0.99).mean(dtype=torch.float) > 0.9


def test_optinter_alpha_moves_alpha_lr_scale_times_faster():
    spec = _spec(n_user=2, n_item=1, n_multi=0, hist=0, context=0)
    torch.manual_seed(0)
    model = OptInter(spec, embed_dim=4, cross_dim=3, hidden=(8,), alpha_lr_scale=10.0)
    batch = _batch(spec)
    before = (model.alpha * model.alpha_lr_scale).detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    y = torch.randint(0, 2, (16,)).float()
    loss = nn.functional.binary_cross_entropy_with_logits(model(batch)["logit"], y)
    loss.backward()
    opt.step()
    step = (model.alpha * model.alpha_lr_scale).detach() - before
    moved = step.abs() > 0
    assert moved.any()
    # Adam's first step is lr * sign(grad) on the stored parameter: 10 x 1e-4 on alpha
    torch.testing.assert_close(step[moved].abs(), torch.full((int(moved.sum()),), 1e-3),
                               rtol=1e-2, atol=0)  # Adam eps: 1e-8 against |grad|


def test_optinter_pair_ids_exact_and_hashed():
    x = torch.arange(40).repeat_interleave(30)
    y = torch.arange(30).repeat(40)
    exact = pair_ids(x, y, torch.tensor(30), torch.tensor(1200), torch.tensor(True))
    assert sorted(exact.tolist()) == list(range(1200))  # one row per value pair
    big_x = torch.arange(3000).repeat_interleave(100)
    big_y = torch.arange(100).repeat(3000)
    size = 5000
    h = pair_ids(big_x, big_y, torch.tensor(100), torch.tensor(size), torch.tensor(False))
    assert h.min() >= 0 and h.max() < size
    # 300,000 pairs into 5,000 buckets: every bucket used, loads close to uniform (mean 60)
    counts = torch.bincount(h, minlength=size)
    assert (counts > 0).all() and counts.max() < 3 * 60


def test_optinter_hash_size_bounds_the_tables():
    spec = _spec(n_user=2, n_item=2, n_multi=0, hist=0, context=0)
    # vocabularies 5, 6, 30, 7: u0*u1 = 30, u0*item = 150, u1*item = 180, item*i0 = 210, ...
    model = OptInter(spec, embed_dim=4, cross_dim=3, hidden=(8,), hash_size=100)
    sizes = model.mem_size.tolist()
    products = [30, 150, 35, 180, 42, 210]
    assert sizes == [min(p, 100) for p in products]
    assert model.mem_exact.tolist() == [p <= 100 for p in products]
    assert model.cross.num_embeddings == sum(sizes)


@pytest.fixture(scope="module")
def synthetic_features():
    tables, split = make_synthetic(40, 25, mean_len=10, seed=0)
    return build_features(tables, split, FeatureConfig(max_hist_len=4, max_multi_len=3))


# running the module as __main__ after the package imported it is the point of the check
@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
def test_optinter_search_export_retrain_honours_the_choices(synthetic_features, tmp_path):
    from llmrec.ranking.runs import save_run
    from llmrec.ranking.task_config import TaskConfig
    from llmrec.ranking.trainer import TrainConfig, Trainer

    fs = synthetic_features
    torch.manual_seed(0)
    args = {"embed_dim": 4, "cross_dim": 3, "hidden": [16]}
    search = build_model("optinter", fs.spec, **args)
    run_dir = tmp_path / "search"
    cfg = TrainConfig(device="cpu", seed=0, batch_size=64, epochs=1, lr=1e-2, checkpoint=False)
    Trainer(search, fs, cfg, output_dir=run_dir, task=TaskConfig()).fit()
    save_run(run_dir, model="optinter", model_args=args, features=fs, task=TaskConfig())
    path = export_choices(run_dir)
    assert path == run_dir / CHOICES_FILE
    doc = json.loads(path.read_text())
    assert doc["fields"] == field_names(fs.spec)
    # the JSON holds the argmax of the best weights, which the trainer restored into the model
    expected = search.chosen()
    assert list(doc["choices"].values()) == expected
    assert sum(doc["counts"].values()) == len(search.pairs)
    assert set(doc["choices"].values()) <= set(METHODS)

    # the command (`python -m llmrec.ranking.models.ctr.optinter RUN_DIR`) writes the same file
    path.unlink()
    with pytest.raises(SystemExit) as exit_code:
        with mock.patch.object(sys, "argv", ["optinter", str(run_dir)]):
            runpy.run_module("llmrec.ranking.models.ctr.optinter", run_name="__main__")
    assert exit_code.value.code == 0
    assert json.loads(path.read_text())["choices"] == doc["choices"]
    path.unlink()  # a retrain given the run folder exports it again
    for source in (str(run_dir), str(path), doc, doc["choices"]):
        retrain = build_model("optinter", fs.spec, **args, mode="retrain", choices=source)
        assert retrain.chosen() == expected
    # the tables and the MLP input are those of the chosen methods only
    mem = [p for p, c in enumerate(expected) if c == "memorized"]
    fac = [p for p, c in enumerate(expected) if c == "factorized"]
    assert retrain.mem_pairs.tolist() == mem and retrain.fac_pairs.tolist() == fac
    assert (retrain.cross is None) == (not mem) and (retrain.factor is None) == (not fac)
    assert retrain.alpha is None
    first = retrain.mlp[0]
    assert first.in_features == len(doc["fields"]) * 4 + (len(mem) + len(fac)) * 3


def test_optinter_retrain_builds_exactly_the_given_methods(synthetic_features):
    fs = synthetic_features
    names = field_names(fs.spec)
    base = OptInter(fs.spec, embed_dim=4, cross_dim=3, hidden=(8,), mode="retrain",
                    choices="naive")
    keys = [f"{names[i]}*{names[j]}" for i, j in base.pairs]
    # one memorised pair, one factorised pair, the rest naive
    p_mem = base.memorisable.index(True)
    p_fac = next(p for p, m in enumerate(base.memorisable) if not m)
    choices = {k: "naive" for k in keys}
    choices[keys[p_mem]], choices[keys[p_fac]] = "memorized", "factorized"
    torch.manual_seed(0)
    model = OptInter(fs.spec, embed_dim=4, cross_dim=3, hidden=(8,), mode="retrain",
                     choices=choices)
    assert model.chosen() == [choices[k] for k in keys]
    assert model.mlp[0].in_features == len(names) * 4 + 2 * 3
    batch = fs.batch(fs.split_index("train")[:32])
    model.train()
    loss = model(batch)["logit"].sum()
    loss.backward()
    # the memorised pair's table and the factorised pair's field vectors get gradient, and the
    # memorised table has exactly the rows of that one pair
    assert model.cross.weight.grad.abs().sum() > 0
    assert model.cross.num_embeddings == int(model.mem_size.sum()) and model.mem_size.numel() == 1
    assert model.factor.table.weight.grad.abs().sum() > 0
    # naive pairs contribute nothing: all pairs naive = the field embeddings alone
    naive = OptInter(fs.spec, embed_dim=4, cross_dim=3, hidden=(8,), mode="retrain",
                     choices="naive")
    assert naive.cross is None and naive.factor is None
    assert naive.mlp[0].in_features == len(names) * 4
    every_mem = OptInter(fs.spec, embed_dim=4, cross_dim=3, hidden=(8,), mode="retrain",
                         choices="memorized")
    assert every_mem.chosen() == ["memorized" if m else "factorized" for m in base.memorisable]


def test_optinter_bad_choices_are_named(synthetic_features, tmp_path):
    fs = synthetic_features
    names = field_names(fs.spec)
    base = OptInter(fs.spec, embed_dim=4, mode="retrain", choices="naive", hidden=(8,))
    keys = [f"{names[i]}*{names[j]}" for i, j in base.pairs]
    full = {k: "naive" for k in keys}
    with pytest.raises(ConfigError, match="missing"):
        OptInter(fs.spec, mode="retrain", choices={k: full[k] for k in keys[1:]})
    bad = dict(full)
    bad[keys[base.memorisable.index(False)]] = "memorized"
    with pytest.raises(ConfigError, match="cannot be memorised"):
        OptInter(fs.spec, mode="retrain", choices=bad)
    with pytest.raises(ConfigError, match="searched over fields"):
        OptInter(fs.spec, mode="retrain", choices={"fields": ["a", "b"], "choices": full})
    with pytest.raises(ConfigError, match="needs choices"):
        OptInter(fs.spec, mode="retrain")
    with pytest.raises(ConfigError, match="does not exist"):
        OptInter(fs.spec, mode="retrain", choices=str(tmp_path / "nope.json"))
    with pytest.raises(ConfigError, match="for mode=retrain"):
        OptInter(fs.spec, choices="naive")


# ------------------------------------------------------------------------------------------------
# QIN


def test_qin_attention_is_sparse_and_masked():
    spec = _spec(n_user=2, n_item=2, n_multi=1, hist=6, context=0)
    torch.manual_seed(0)
    model = QIN(spec, embed_dim=4, num_layers=2, num_row=2)
    lengths = torch.tensor([0, 1, 3, 6] * 4)
    batch = _batch(spec, lengths=lengths)
    model.eval()
    e = model.embed(batch)
    b, l, k, d = e.history.shape
    t, h = e.target.reshape(b, k * d), e.history.reshape(b, l, k * d)
    s = model.attention.scores(t, h, e.mask)
    assert (s >= 0).all()
    assert (s[~e.mask] == 0).all()  # masked positions score exactly 0
    valid = s[e.mask]
    # ReLU, no softmax: some valid behaviours get exactly zero weight, others do not
    assert (valid == 0).any() and (valid > 0).any()
    # an empty history gives u = t exactly
    u = model.attention(t, h, e.mask)
    empty = lengths == 0
    torch.testing.assert_close(u[empty], t[empty], rtol=0, atol=0)
    # masked behaviours contribute nothing, whatever their embeddings
    h2 = h.clone()
    h2[~e.mask] = torch.randn_like(h2[~e.mask]) * 10
    torch.testing.assert_close(model.attention(t, h2, e.mask), u)
    # and a sample's u is unnormalised: doubling the only weighted value doubles its part
    one = lengths == 1
    pooled = model.attention(t, h, e.mask) - t
    s1 = s[one, 0]
    manual = model.attention.w_o(s1[:, None] * model.attention.w_v(h[one, 0]))
    torch.testing.assert_close(pooled[one], manual)


def test_quadratic_layer_rows_are_one_linear_map():
    torch.manual_seed(0)
    layer = QuadraticLayer(6, num_row=4)
    x = torch.randn(5, 6)
    w = layer.linear.weight.view(4, 6, 6).sum(0)
    bias = layer.linear.bias.view(4, 6).sum(0)
    torch.testing.assert_close(layer(x), x * (x @ w.T + bias))


def test_qnn_is_a_head_for_flat_fields():
    """A flat model (fields -> QuadraticNetwork) learns a product of two inputs that a linear
    read-out of the same fields cannot."""
    torch.manual_seed(0)
    x = torch.randn(2048, 4)
    y = ((x[:, 0] * x[:, 1]) > 0).float()

    def fit(head):
        opt = torch.optim.Adam(head.parameters(), lr=1e-2)
        for _ in range(150):
            idx = torch.randint(0, 1536, (256,))
            loss = nn.functional.binary_cross_entropy_with_logits(head(x[idx]).squeeze(-1), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            pred = head(x[1536:]).squeeze(-1) > 0
        return float((pred == y[1536:].bool()).float().mean())

    acc_q = fit(QuadraticNetwork(4, num_layers=2, num_row=2, dropout=0.0))
    acc_lin = fit(nn.Linear(4, 1))
    assert acc_q > 0.85 and acc_lin < 0.65, (acc_q, acc_lin)
    # QIN without a behaviour sequence is that head over the flat fields
    spec = _spec(n_user=2, n_item=2, n_multi=0, hist=0, context=1)
    model = QIN(spec, embed_dim=4, num_layers=2, num_row=2)
    assert model.attention is None
    assert model.qnn.layers[0].dim == spec.n_fields * 4
    model.eval()
    assert model(_batch(spec))["logit"].shape == (16,)


def test_qin_embedding_l2_is_the_training_aux_loss():
    spec = _spec(n_user=2, n_item=2, n_multi=1, hist=3, context=0)
    model = QIN(spec, embed_dim=4, num_layers=1, num_row=2, embedding_l2=2e-4)
    batch = _batch(spec)
    model.train()
    out = model(batch)
    tables = [m.weight for m in model.embedding.modules() if isinstance(m, nn.Embedding)]
    expected = 0.5 * 2e-4 * sum(float(w.detach().pow(2).sum()) for w in tables)
    assert float(out["aux_loss"].detach()) == pytest.approx(expected, rel=1e-5)
    model.eval()
    assert "aux_loss" not in model(batch)
    off = QIN(spec, embed_dim=4, num_layers=1, num_row=2, embedding_l2=0.0)
    off.train()
    assert "aux_loss" not in off(batch)
