"""SASRec's LLM-knowledge option: ``init`` writes the projected item vectors into the item-id
embedding, ``add`` adds a trained projection of them to every item's vector, a saved run needs no
vectors to load, and missing or mismatched vectors are errors that name the fix."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec.errors import ConfigError, DataError
from llmrec.ranking.features import N_SPECIAL, FeatureConfig, build_features
from llmrec.ranking.item_knowledge import (attach_item_knowledge, load_vector_file, project,
                                           save_vector_file, vectors_by_item_id)
from llmrec.ranking.knowledge.config import AugmentConfig
from llmrec.ranking.registry import build_model
from llmrec.ranking.synthetic import make_synthetic

D = 16  # knowledge width in these tests


@pytest.fixture(scope="module")
def fs():
    tables, split = make_synthetic(30, 25, mean_len=10, seed=3)
    return build_features(tables, split, FeatureConfig(max_hist_len=6, item_fields=[],
                                                       item_multi_fields=[]))


@pytest.fixture(scope="module")
def knowledge(fs):
    """Vectors for every item but the first, keyed by entity id (as a vector file holds them)."""
    ids = fs.row_ids("item")[1:]
    g = torch.Generator().manual_seed(0)
    return ids, torch.randn(len(ids), D, generator=g)


def _sasrec(fs, **kw):
    torch.manual_seed(0)
    return build_model("sasrec", copy.deepcopy(fs.spec), embed_dim=8, blocks=1, heads=1,
                       dropout=0.0, knowledge_dim=D, **kw)


def _batch(fs, n=5):
    idx = fs.tensors["hist_rows"].gt(0).sum(1).ge(3).nonzero().squeeze(1)[:n]
    return fs.batch(idx)


def test_vectors_are_aligned_to_the_item_id_vocabulary(fs, knowledge):
    ids, vecs = knowledge
    aligned, has = vectors_by_item_id(fs, ids, vecs)
    vocab = fs.vocabs["item_id"]
    assert aligned.shape == (len(vocab), D) and not has[:N_SPECIAL].any()
    pos = {e: i for i, e in enumerate(ids)}
    for v, item in enumerate(vocab.values, start=N_SPECIAL):
        if item in pos:
            assert has[v] and torch.equal(aligned[v], vecs[pos[item]])
        else:
            assert not has[v] and not aligned[v].any()
    assert (~has[N_SPECIAL:]).sum() == sum(i not in pos for i in vocab.values)


def test_pca_projection_is_the_centred_principal_components():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 10, generator=g) * torch.linspace(3, 0.1, 10)
    has = torch.ones(40, dtype=torch.bool)
    has[5] = False
    y = project(x, has, 4, "pca", std=0.5)
    assert not y[5].any()
    xc = (x[has] - x[has].mean(0)).double()
    _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    ref = xc @ vh[:4].T
    ref = ref * (0.5 / ref.std())
    # the same components up to the sign of each column
    signs = torch.sign((y[has].double() * ref).sum(0))
    torch.testing.assert_close(y[has].double(), ref * signs, rtol=1e-5, atol=1e-6)
    assert abs(float(y[has].std()) - 0.5) < 1e-5
    cov = y[has].double().T @ y[has].double()
    torch.testing.assert_close(cov - torch.diag(torch.diag(cov)), torch.zeros(4, 4,
                               dtype=torch.float64), atol=1e-6, rtol=0)
    r1, r2 = project(x, has, 4, "random", seed=7), project(x, has, 4, "random", seed=7)
    assert torch.equal(r1, r2) and not torch.allclose(r1, project(x, has, 4, "random", seed=8))


@pytest.mark.parametrize("method", ["pca", "random"])
def test_init_copies_the_projected_vectors_into_the_item_embedding(fs, knowledge, method):
    ids, vecs = knowledge
    aligned, has = vectors_by_item_id(fs, ids, vecs)
    plain, model = _sasrec(fs), _sasrec(fs, knowledge="init", knowledge_init=method)
    model.load_item_knowledge(aligned, has)
    want = project(aligned, has, 8, method, 0.02)
    w, w0 = model.embedding.table.weight.detach(), plain.embedding.table.weight.detach()
    off = int(model.embedding.item_offsets[0])
    rows = torch.arange(has.numel())
    torch.testing.assert_close(w[off + rows[has]], want[has], rtol=0, atol=0)
    # items without knowledge, specials and every other parameter keep the plain initialisation
    assert torch.equal(w[off + rows[~has]], w0[off + rows[~has]])
    other = {k: v for k, v in model.state_dict().items() if k != "embedding.table.weight"}
    ref = {k: v for k, v in plain.state_dict().items() if k != "embedding.table.weight"}
    assert other.keys() == ref.keys() and all(torch.equal(v, ref[k]) for k, v in other.items())
    # the scores use the knowledge: items with similar vectors get similar embeddings
    out = model(_batch(fs))
    assert torch.isfinite(out["hidden"]).all()


def test_add_is_e_plus_w_k_for_inputs_and_candidates_and_changes_the_outputs(fs, knowledge):
    ids, vecs = knowledge
    aligned, has = vectors_by_item_id(fs, ids, vecs)
    model = _sasrec(fs, knowledge="add").eval()
    model.load_item_knowledge(aligned, has)
    k = model.knowledge_vectors
    centred = aligned - aligned[has].mean(0)
    torch.testing.assert_close(k[has], centred[has])
    assert not k[~has].any()
    batch = _batch(fs)
    with torch.no_grad():
        out = model(batch)
        ids_cat = batch["catalog"]["item"][:, 0]
        plain_items = model.embedding.embed_items(batch["catalog"]["item"],
                                                  batch["catalog"]["item_multi"]).flatten(1)
        torch.testing.assert_close(out["items"], plain_items + k[ids_cat] @ model.knowledge_proj.weight.T)
        saved = k.clone()
        model.knowledge_vectors.zero_()
        without = model(batch)
        model.knowledge_vectors.copy_(saved)
    assert not torch.allclose(out["hidden"], without["hidden"])
    assert not torch.allclose(out["items"], without["items"])
    # the padding item row gets no knowledge term
    torch.testing.assert_close(out["items"][0], plain_items[0])
    # W trains
    model.train()
    out = model(batch)
    (out["hidden"] @ out["items"].T).logsumexp(1).sum().backward()
    assert model.knowledge_proj.weight.grad.abs().sum() > 0


def test_default_has_no_knowledge_parameters(fs):
    model = _sasrec(fs)
    assert model.item_knowledge == "none"
    assert not any("knowledge" in k for k in model.state_dict())


def test_a_saved_model_loads_without_the_vectors(fs, knowledge):
    ids, vecs = knowledge
    aligned, has = vectors_by_item_id(fs, ids, vecs)
    for mode in ("init", "add"):
        model = _sasrec(fs, knowledge=mode).eval()
        model.load_item_knowledge(aligned, has)
        fresh = _sasrec(fs, knowledge=mode).eval()
        fresh.load_state_dict(model.state_dict())
        batch = _batch(fs)
        with torch.no_grad():
            torch.testing.assert_close(fresh(batch)["hidden"], model(batch)["hidden"])


def test_missing_vectors_are_an_error_naming_the_fix(fs):
    model = _sasrec(fs, knowledge="add")
    with pytest.raises(ConfigError, match="knowledge.item_embeddings or knowledge.cache_dir"):
        model(_batch(fs))
    with pytest.raises(ConfigError, match="knowledge.item_embeddings .* or knowledge.cache_dir"):
        attach_item_knowledge(model, fs, AugmentConfig(kinds=["item"]))
    # a model without the option is left alone
    assert attach_item_knowledge(_sasrec(fs), fs, AugmentConfig(kinds=["item"])) is None


def test_mismatched_vectors_are_errors_naming_the_fix(fs, knowledge, tmp_path):
    ids, vecs = knowledge
    model = _sasrec(fs, knowledge="init")
    aligned, has = vectors_by_item_id(fs, ids, vecs)
    with pytest.raises(DataError, match="knowledge_dim: 12"):
        model.load_item_knowledge(aligned[:, :12], has)
    with pytest.raises(DataError, match="vectors_by_item_id"):
        model.load_item_knowledge(aligned[:-1], has[:-1])
    other = save_vector_file(tmp_path / "other.safetensors", [f"x{i}" for i in ids], vecs)
    with pytest.raises(DataError, match="another dataset"):
        attach_item_knowledge(model, fs, AugmentConfig(item_embeddings=str(other), kinds=["item"]))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a tensor file")
    with pytest.raises(DataError, match="safetensors"):
        attach_item_knowledge(model, fs, AugmentConfig(item_embeddings=str(junk), kinds=["item"]))
    with pytest.raises(ConfigError, match="does not exist"):
        attach_item_knowledge(model, fs, AugmentConfig(item_embeddings=str(tmp_path / "nope"),
                                                       kinds=["item"]))


def test_vector_file_round_trip_and_attach(fs, knowledge, tmp_path):
    ids, vecs = knowledge
    path = save_vector_file(tmp_path / "items.safetensors", ids, vecs.half(), {"model": "m"})
    got_ids, got, meta = load_vector_file(path)
    assert got_ids == ids and torch.equal(got, vecs.half().float()) and meta == {"model": "m"}
    model = _sasrec(fs, knowledge="init")
    summary = attach_item_knowledge(model, fs, AugmentConfig(item_embeddings=str(path),
                                                             kinds=["item"]))
    assert summary["items_with_knowledge"] == int(vectors_by_item_id(fs, ids, got)[1].sum())
    assert summary["dim"] == D and summary["mode"] == "init"


def test_rank_train_uses_the_knowledge_section(tmp_path):
    """End to end through the pipeline: csv data, leave-one-out, a vector file, both modes."""
    from llmrec.config import from_dict
    from llmrec.ranking.pipeline import RankConfig, run_train

    rng = np.random.default_rng(0)
    rows = [(u, int(i), 1000 * t) for u in range(12) for t, i in
            enumerate(rng.choice(20, size=8, replace=False))]
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(
        tmp_path / "inter.csv", index=False)
    vec = save_vector_file(tmp_path / "v.safetensors", [str(i) for i in range(20)],
                           torch.randn(20, D, generator=torch.Generator().manual_seed(2)))
    for mode in ("init", "add"):
        cfg = from_dict(RankConfig, dict(
            data={"name": "csv", "path": str(tmp_path / "inter.csv")},
            split={"protocol": "leave-last-out"},
            features={"max_hist_len": 5, "use_user_id": False, "user_fields": [],
                      "item_fields": [], "item_multi_fields": [], "use_hist_rating": False},
            model="sasrec", model_args={"embed_dim": 8, "blocks": 1, "knowledge": mode,
                                        "knowledge_dim": D, "knowledge_init": "random"},
            task={"kind": "next_item"}, knowledge={"item_embeddings": str(vec), "kinds": ["item"]},
            train={"epochs": 1, "batch_size": 32, "checkpoint": False, "device": "cpu"},
            output_dir=str(tmp_path / f"run-{mode}")))
        res = run_train(cfg)
        assert 0 <= res["test"]["ndcg@10"] <= 1
