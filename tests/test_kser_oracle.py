"""Oracle knowledge (planted signals), the LM-history statistics features, DeepFM's fm_dense,
knowledge rescaling and the extractor learning-rate factor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec.errors import ConfigError, DataError
from llmrec.ranking.features import FeatureConfig, build_features, lm_history_stats
from llmrec.ranking.knowledge.config import AugmentConfig
from llmrec.ranking.knowledge.oracle import oracle_block, oracle_embeddings, signal_values
from llmrec.ranking.knowledge.store import load_knowledge
from llmrec.ranking.synthetic import make_synthetic


class _Split:
    """A hand-made split: two users, LM cutoffs 2 and 1."""

    def __init__(self):
        from llmrec.data.splits import SplitConfig

        self.config = SplitConfig()
        self.history = pd.DataFrame({
            "user_id": ["a", "a", "a", "a", "b", "b", "b"],
            "item_id": ["1", "2", "3", "4", "1", "3", "4"],
            "rating": [5.0, 2.0, 4.0, 1.0, 4.0, 5.0, 5.0],
            "position": [0, 1, 2, 3, 0, 1, 2]})
        self.cutoffs = pd.DataFrame({"user_id": ["a", "b"], "n_lm": [2, 1], "n_total": [4, 3],
                                     "split": ["train", "test"]})
        h = self.history.merge(self.cutoffs, on="user_id")
        s = h[h["position"] >= h["n_lm"]].copy()
        s["label"] = (s["rating"] >= 4).astype("int8")
        self.samples = s[["user_id", "item_id", "rating", "label", "position", "split"]]


def test_signal_values_by_source():
    sp = _Split()
    # fair: LM history only -> a: 1 of 2 positive, b: 1 of 1 -> z = -1, +1
    fair = signal_values(sp, "user", "fair")
    assert fair == pytest.approx({"a": -1.0, "b": 1.0})
    # leaky: all CTR samples (test labels included) -> a: 1/2, b: 2/2
    leaky = signal_values(sp, "user", "leaky")
    assert leaky["a"] < leaky["b"]
    # items, fair: item 1 rated 5 (a, LM) and 4 (b, LM) -> 1.0; item 2 rated 2 -> 0.0
    items = signal_values(sp, "item", "fair")
    assert set(items) == {"1", "2"} and items["1"] > items["2"]
    noise = signal_values(sp, "user", "noise", seed=3)
    assert noise == signal_values(sp, "user", "noise", seed=3) and set(noise) == {"a", "b"}
    with pytest.raises(ConfigError, match="source"):
        signal_values(sp, "user", "oracle")
    with pytest.raises(ConfigError, match="kind"):
        signal_values(sp, "query", "fair")


def test_oracle_block_layouts():
    vals = {str(i): z for i, z in enumerate(np.linspace(-2, 2, 50))}
    b = oracle_block(vals, "hidden", strength=2.0, fields=8, chunks=4, signal_field=3, dim=64)
    assert b["chunks"].shape == (50, 8, 4, 64) and b["mask"].all()
    norms = np.linalg.norm(b["chunks"], axis=-1)
    assert np.allclose(norms, 1.0, atol=1e-6)
    sig = b["chunks"][np.arange(50), 3, b["signal_slot"]]
    proj = sig @ b["direction"]
    assert np.all(np.diff(proj) > -0.15) and proj[-1] > 0.8 and proj[0] < -0.8
    assert np.allclose(b["whole"], b["chunks"].reshape(50, 32, 64).mean(1))
    w = oracle_block(vals, "whole", dim=64)
    assert w["chunks"].shape == (50, 1, 1, 64)
    assert np.allclose(w["whole"], w["chunks"][:, 0, 0])
    with pytest.raises(ConfigError, match="signal_field"):
        oracle_block(vals, "hidden", fields=2, signal_field=5)
    with pytest.raises(ConfigError, match="layout"):
        oracle_block(vals, "scattered")


def test_decoy_layout_and_readout():
    """decoy: the other fields carry the planted direction with label-free z', so the mean of
    the chunks loses the signal that the hidden layout's mean keeps; the signal field and chunk
    are built exactly as under hidden (same seed, same draws)."""
    from llmrec.ranking.knowledge.oracle import readout_r2

    rng = np.random.default_rng(0)
    vals = {str(i): float(z) for i, z in enumerate(rng.normal(size=2000))}
    h = oracle_block(vals, "hidden", fields=8, chunks=4, signal_field=3, dim=384, seed=5)
    d = oracle_block(vals, "decoy", fields=8, chunks=4, signal_field=3, dim=384, seed=5)
    assert np.allclose(np.linalg.norm(d["chunks"], axis=-1), 1.0, atol=1e-6)
    assert np.array_equal(h["signal_slot"], d["signal_slot"])
    assert np.allclose(h["chunks"][:, 3], d["chunks"][:, 3])
    # decoy chunks lie along the direction (|projection| well above a random unit vector's)
    assert np.abs(d["chunks"][:, 0] @ d["direction"]).mean() > 0.4
    assert np.abs(h["chunks"][:, 0] @ h["direction"]).mean() < 0.1
    rh, rd = readout_r2(h), readout_r2(d)
    assert rh["chunk"] == pytest.approx(rd["chunk"]) and rh["chunk"] > 0.85
    assert rh["field"] == pytest.approx(rd["field"]) and rh["field"] > 0.8
    assert 0.6 < rh["pooled"] < rh["field"]
    assert rd["pooled"] < 0.1
    w = readout_r2(oracle_block(vals, "whole", dim=384))
    assert w["pooled"] == pytest.approx(w["chunk"])


@pytest.fixture(scope="module")
def synth():
    tables, split = make_synthetic(160, 60, mean_len=24, seed=1)
    return tables, split


def test_oracle_folder_loads_and_a_leaky_signal_is_used(synth, tmp_path):
    """End to end on synthetic data: a leaky user signal (the positive rate over every sample,
    test included) as KAR's whole vector must lift test AUC clearly above the backbone's and
    above a pure-noise vector's (users here are cold: the backbone alone is near chance)."""
    from llmrec.ranking.pipeline import RankConfig, run_train

    tables, split = synth
    fcfg = FeatureConfig(max_hist_len=4, max_multi_len=3, use_user_id=False)
    fs = build_features(tables, split, fcfg)
    auc = {}
    for source in ("none", "leaky", "noise"):
        cfg = RankConfig(model="dnn", model_args={"embed_dim": 8, "hidden": [16]},
                         augment="none" if source == "none" else "kar")
        cfg.train.device, cfg.train.epochs, cfg.train.batch_size = "cpu", 4, 256
        cfg.train.lr, cfg.train.patience, cfg.train.checkpoint = 0.01, 6, False
        cfg.output_dir = str(tmp_path / source)
        if source != "none":
            folder = oracle_embeddings(tmp_path / f"or-{source}", split, {"user": source},
                                       "whole", strength=2.0, dim=16)
            cfg.knowledge = AugmentConfig(embeddings=str(folder), kinds=["user"],
                                          kar_hidden=[16, 8])
            tabs = load_knowledge(cfg.knowledge, {k: fs.row_ids(k) for k in ("user", "item")})
            assert tabs["user"].has[1:].all()  # every user has its vector
        auc[source] = run_train(cfg, features=fs)["test"]["auc"]
    assert auc["leaky"] > max(auc["none"], auc["noise"]) + 0.08, auc


def test_lm_history_stats(synth):
    sp = _Split()
    st = lm_history_stats(sp)
    assert st.loc["a", "lm_pos_share"] == pytest.approx(0.5)
    assert st.loc["a", "lm_mean_rating"] == pytest.approx(3.5 / 5)
    assert st.loc["b", "lm_log_count"] == pytest.approx(np.log(2))
    tables, split = synth
    fs = build_features(tables, split, FeatureConfig(max_hist_len=3, lm_history_stats=True))
    assert {"lm_pos_share", "lm_mean_rating", "lm_log_count"} <= set(fs.spec.dense)
    share = fs.tensors["dense.lm_pos_share"]
    assert float(share.min()) >= 0.0 and float(share.max()) <= 1.0 and float(share.std()) > 0
    flat = sp
    flat.cutoffs = flat.cutoffs.drop(columns="n_lm")
    with pytest.raises(DataError, match="kar"):
        lm_history_stats(flat)


def test_deepfm_fm_dense_keeps_dense_fields_out_of_the_fm_term(synth):
    from llmrec.ranking.models.ctr.deepfm import fm_interaction
    from llmrec.ranking.registry import build_model

    tables, split = synth
    fs = build_features(tables, split, FeatureConfig(max_hist_len=3, lm_history_stats=True))
    batch = fs.batch(torch.arange(32))
    torch.manual_seed(0)
    on = build_model("deepfm", fs.spec, embed_dim=8, hidden=(8,), dropout=0.0)
    off = build_model("deepfm", fs.spec, embed_dim=8, hidden=(8,), dropout=0.0, fm_dense=False)
    off.load_state_dict(on.state_dict())
    on.eval(), off.eval()
    e = on.embed(batch)
    fields = e.fields()
    n_dense = e.dense.shape[1]
    diff = on(batch)["logit"] - off(batch)["logit"]
    expect = fm_interaction(fields) - fm_interaction(fields[:, :-n_dense])
    assert torch.allclose(diff, expect, atol=1e-5)
    assert float(expect.abs().max()) > 0


def test_rescale_and_lr_scale(synth, tmp_path):
    from llmrec.ranking.knowledge.augment import build_augmented, field_means, input_scales
    from llmrec.ranking.knowledge.store import training_rows
    from llmrec.ranking.knowledge.synthetic import synthetic_embeddings
    from llmrec.ranking.train_config import TrainConfig
    from llmrec.ranking.trainer import Trainer

    tables, split = synth
    fs = build_features(tables, split, FeatureConfig(max_hist_len=3))
    ids = {k: fs.row_ids(k) for k in ("user", "item")}
    folder = synthetic_embeddings(tmp_path / "emb", ids, dim=16, max_chunks=3, seed=0)
    cfg = AugmentConfig(embeddings=str(folder), score_hidden=8, value_dim=8, kar_hidden=[16, 8],
                        rescale=True, lr_scale=4.0)
    tabs = load_knowledge(cfg, ids)
    for method in ("kar", "kser"):
        means = field_means(tabs, fs) if method == "kser" else None
        scales = input_scales(tabs, fs, method, means)
        for k, t in tabs.items():
            rows = training_rows(fs, k)
            rows = rows[t.has[rows]]
            if method == "kar":  # the scaled whole vectors have per-dimension RMS 1
                rms = (t.whole[rows] * scales[k]).pow(2).mean().sqrt()
                assert float(rms) == pytest.approx(1.0, rel=1e-4)
            else:  # unit-norm 16-d chunks, field means removed: RMS below 1/4 per dimension
                assert float(scales[k]) > 4.0, (k, scales[k])
        m = build_augmented("dnn", {"embed_dim": 8, "hidden": (8,)}, fs.spec, tabs, method,
                            cfg, "fields", means=means, scales=scales)
        assert float(m.scale_user) == pytest.approx(float(scales["user"]))
        assert "scale_item" in m.state_dict()  # saved with the model, like KSER's means
        tr = Trainer(m, fs, TrainConfig(device="cpu", lr=0.01, batch_size=64, checkpoint=False))
        lrs = sorted(g["lr"] for g in tr.optimizer.param_groups)
        assert lrs == pytest.approx([0.01, 0.04])
        n_group = sum(p.numel() for g in tr.optimizer.param_groups for p in g["params"])
        assert n_group == sum(p.numel() for p in m.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="lr_scale"):
        AugmentConfig(lr_scale=0)


def test_select_lr_scale_groups(synth, tmp_path):
    """KSER's selection parameters (scorer, query, gate, prior) get lr * lr_scale *
    select_lr_scale; the value path and alignment lr * lr_scale; the backbone lr. KAR ignores
    it (no selection)."""
    from llmrec.ranking.knowledge.augment import build_augmented, field_means
    from llmrec.ranking.knowledge.synthetic import synthetic_embeddings
    from llmrec.ranking.train_config import TrainConfig
    from llmrec.ranking.trainer import Trainer

    tables, split = synth
    fs = build_features(tables, split, FeatureConfig(max_hist_len=3))
    ids = {k: fs.row_ids(k) for k in ("user", "item")}
    folder = synthetic_embeddings(tmp_path / "emb", ids, dim=16, max_chunks=3, seed=0)
    cfg = AugmentConfig(embeddings=str(folder), score_hidden=8, value_dim=8, kar_hidden=[16, 8],
                        lr_scale=2.0, select_lr_scale=10.0, field_prior=True)
    tabs = load_knowledge(cfg, ids)
    m = build_augmented("dnn", {"embed_dim": 8, "hidden": (8,)}, fs.spec, tabs, "kser", cfg,
                        "fields", means=field_means(tabs, fs))
    tr = Trainer(m, fs, TrainConfig(device="cpu", lr=0.01, batch_size=64, checkpoint=False))
    by_lr = {round(g["lr"], 6): {id(p) for p in g["params"]} for g in tr.optimizer.param_groups}
    assert sorted(by_lr) == pytest.approx([0.01, 0.02, 0.2])
    esf = m.extractor.esf["user"]
    for p in (esf.v, esf.key_w, esf.field_bias, esf.query.weight):
        assert id(p) in by_lr[0.2]
    assert id(esf.value_w) in by_lr[0.02]
    assert all(id(p) in by_lr[0.01] for p in m.backbone.parameters())
    n_group = sum(len(v) for v in by_lr.values())
    assert n_group == sum(1 for p in m.parameters() if p.requires_grad)
    # KAR has no selection: select_lr_scale alone leaves one group
    kar = build_augmented("dnn", {"embed_dim": 8, "hidden": (8,)}, fs.spec, tabs, "kar",
                          AugmentConfig(embeddings=str(folder), kar_hidden=[16, 8],
                                        select_lr_scale=10.0), "fields")
    assert kar.optimizer_groups() is None
    with pytest.raises(ValueError, match="select_lr_scale"):
        AugmentConfig(select_lr_scale=0)


def test_history_text_uses_only_the_lm_history():
    from llmrec.knowledge.history_text import history_chunks, profile_sentence, user_texts

    assert profile_sentence({"gender": "F", "age": 25, "occupation": "writer"}) == \
        "A female user, age group 25, occupation: writer."
    assert history_chunks(["A (1990)", "B (1991)", "C (1992)"], [5, 2, 4], per_chunk=2) == \
        ['Rated "A (1990)" 5 of 5; "B (1991)" 2 of 5.', 'Rated "C (1992)" 4 of 5.']

    class _Data:
        def __init__(self):
            self.t = {"items": pd.DataFrame({"item_id": ["1", "2", "3", "4"],
                                             "title": ["One", "Two", "Three", "Four"]}),
                      "users": pd.DataFrame({"user_id": ["a", "b"], "gender": ["M", "F"],
                                             "age": [18, 35], "occupation": ["x", "y"]})}

        def df(self, name):
            return self.t[name]

        def has(self, name):
            return name in self.t

    texts = user_texts(_Data(), _Split())
    # a: cutoff 2 -> items 1, 2 only; b: cutoff 1 -> item 1 only (later ratings never shown)
    assert texts["a"]["history"] == ['Rated "One" 5 of 5; "Two" 2 of 5.']
    assert texts["b"]["history"] == ['Rated "One" 4 of 5.']
    assert texts["b"]["profile"] == "A female user, age group 35, occupation: y."


def test_aux_weight_adds_a_knowledge_only_loss_in_training(synth, tmp_path):
    """knowledge.aux_weight: a linear head per kind predicts the label from the knowledge vector
    alone; its BCE times the weight is the training aux loss (gradient into the extractor, not
    the backbone); absent in evaluation and when the weight is 0 (no head built)."""
    import torch.nn.functional as F

    from llmrec.ranking.knowledge.augment import build_augmented, field_means
    from llmrec.ranking.knowledge.synthetic import synthetic_embeddings

    tables, split = synth
    fs = build_features(tables, split, FeatureConfig(max_hist_len=3))
    ids = {k: fs.row_ids(k) for k in ("user", "item")}
    folder = synthetic_embeddings(tmp_path / "emb", ids, dim=16, max_chunks=3, seed=0)
    batch = fs.batch(fs.split_index("train")[:64])
    for method in ("kar", "kser"):
        plain_cfg = AugmentConfig(embeddings=str(folder), score_hidden=8, value_dim=8,
                                  kar_hidden=[16, 8])
        cfg = AugmentConfig(embeddings=str(folder), score_hidden=8, value_dim=8,
                            kar_hidden=[16, 8], aux_weight=0.5)
        tabs = load_knowledge(cfg, ids)
        means = field_means(tabs, fs) if method == "kser" else None
        torch.manual_seed(0)
        plain = build_augmented("dnn", {"embed_dim": 8, "hidden": (8,)}, fs.spec, tabs, method,
                                plain_cfg, "fields", means=means)
        torch.manual_seed(0)
        m = build_augmented("dnn", {"embed_dim": 8, "hidden": (8,)}, fs.spec, tabs, method,
                            cfg, "fields", means=means)
        assert plain.aux_head is None and "aux_loss" not in plain.train()(batch)
        m.train()
        out = m(batch)
        vecs, _, _ = m.knowledge(batch)
        y = batch["label"].float()
        expect = 0.5 * sum(F.binary_cross_entropy_with_logits(
            m.aux_head[k](v.float()).squeeze(-1), y) for k, v in vecs.items())
        torch.testing.assert_close(out["aux_loss"], expect)
        m.zero_grad()
        out["aux_loss"].backward()
        ext = [p.grad for p in m.extractor.parameters() if p.grad is not None]
        assert ext and any(float(g.abs().sum()) > 0 for g in ext)
        touched = [n for n, p in m.backbone.named_parameters()
                   if p.grad is not None and float(p.grad.abs().sum()) > 0]
        # KAR's vectors do not depend on the backbone; KSER's queries are its embeddings
        assert all(n.startswith("embedding.") for n in touched), touched
        assert method == "kser" or not touched, (method, touched)
        assert "aux_loss" not in m.eval()(batch)
    with pytest.raises(Exception, match="aux_weight"):
        build_augmented("dnn", {"embed_dim": 8, "hidden": (8,)}, fs.spec, tabs, "kar",
                        AugmentConfig(embeddings=str(folder), aux_weight=-1.0), "fields")


def test_pretrain_epochs_warm_starts_the_knowledge_path_alone(synth, tmp_path):
    """knowledge.pretrain_epochs: the knowledge path trains alone first (its heads predict the
    label from the knowledge vectors), early-stopped on validation; the backbone is untouched
    by it and trainable again afterwards; the result reports the warm start, and a
    leaky signal is found by the knowledge-only predictor (AUC well above chance)."""
    from llmrec.ranking import pipeline
    from llmrec.ranking.pipeline import RankConfig, run_train

    tables, split = synth
    fs = build_features(tables, split, FeatureConfig(max_hist_len=4, max_multi_len=3,
                                                     use_user_id=False))
    folder = oracle_embeddings(tmp_path / "or", split, {"user": "leaky"}, "hidden",
                               strength=2.0, fields=3, chunks=2, signal_field=1, dim=16)
    seen = {}
    real = pipeline._pretrain_knowledge

    def spy(model, fs_, cfg):
        before = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
        out = real(model, fs_, cfg)
        seen[cfg.augment] = (before, {n: p.detach().clone()
                                      for n, p in model.backbone.named_parameters()},
                             model.knowledge_only,
                             all(p.requires_grad for p in model.backbone.parameters()))
        return out

    pipeline._pretrain_knowledge = spy
    try:
        for method in ("kar", "kser"):
            cfg = RankConfig(model="dnn", model_args={"embed_dim": 8, "hidden": [16]},
                             augment=method)
            cfg.train.device, cfg.train.epochs, cfg.train.batch_size = "cpu", 2, 256
            cfg.train.lr, cfg.train.patience, cfg.train.checkpoint = 0.01, 2, False
            cfg.output_dir = str(tmp_path / method)
            cfg.knowledge = AugmentConfig(embeddings=str(folder), kinds=["user"],
                                          kar_hidden=[16, 8], score_hidden=8, value_dim=8,
                                          pretrain_epochs=5)
            res = run_train(cfg, features=fs)
            pre = res["pretrain"]
            assert 1 <= pre["best_epoch"] <= pre["epochs"] <= 5
            assert pre["valid"]["auc"] > 0.6, (method, pre)
            assert "auc" in res["test"] and res["epochs"] >= 1
            before, after, flag, trainable = seen[method]
            assert flag is False and trainable  # back to the backbone's output, trainable
            changed = [n for n in before if not torch.equal(before[n], after[n])]
            # the backbone is frozen during the warm start (KSER's queries read it unchanged)
            assert not changed, (method, changed)
    finally:
        pipeline._pretrain_knowledge = real
    with pytest.raises(ValueError, match="pretrain_epochs"):
        AugmentConfig(pretrain_epochs=-1)
