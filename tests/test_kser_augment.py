"""Every backbone with KAR and KSER knowledge (forward + backward), residual injection at gate 0
reproducing the plain backbone, extractor-only training leaving the backbone bit-identical, and
``run_train`` with ``augment`` / ``strategy`` end to end."""

from __future__ import annotations

import copy

import pytest
import torch

from llmrec.errors import ConfigError
from llmrec.ranking import registry
from llmrec.ranking.features import FeatureConfig, build_features
from llmrec.ranking.knowledge.augment import (KnowledgeAugmented, build_augmented,
                                              dense_name)
from llmrec.ranking.knowledge.config import AugmentConfig
from llmrec.ranking.knowledge.store import load_knowledge
from llmrec.ranking.knowledge.synthetic import synthetic_embeddings
from llmrec.ranking.synthetic import make_synthetic
from llmrec.ranking.train_config import TrainConfig
from llmrec.ranking.trainer import Trainer

SMALL = {"hidden": (16, 8)}
SPECIAL = {"finalmlp": {"hidden1": (16,), "hidden2": (16,), "fusion_heads": 4, "gate_hidden": 8},
           "xdeepfm": {"hidden": (16,), "cin_layers": (8, 8)}, "fignn": {},
           "autoint": {"hidden": (16,)}, "unimixer": {"ffn": 16}, "unimixing_lite": {"ffn": 16},
           "rar": {"base_args": {"hidden": (16, 8)}}, "qin": {"num_layers": 2, "num_row": 2}}


def _args(name):
    return {"embed_dim": 8, **SPECIAL.get(name, SMALL)}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tables, split = make_synthetic(40, 30, mean_len=10, seed=0)
    fs = build_features(tables, split, FeatureConfig(max_hist_len=4, max_multi_len=3))
    ids = {k: fs.row_ids(k) for k in ("user", "item")}
    folder = synthetic_embeddings(tmp_path_factory.mktemp("emb"), ids, dim=12, max_chunks=3,
                                  coverage=0.7, seed=0)
    cfg = AugmentConfig(embeddings=str(folder), score_hidden=8, value_dim=8, kar_hidden=[16, 8])
    return fs, cfg, load_knowledge(cfg, ids)


def _loss(model, batch):
    out = model(batch)
    logits, aux = out["logit"], out.get("aux_loss")
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label"])
    return logits, loss + aux if aux is not None else loss


@pytest.mark.parametrize("method", ["kar", "kser"])
@pytest.mark.parametrize("name", registry.list_backbones())
def test_every_backbone_runs_with_knowledge(name, method, setup):
    fs, cfg, tables = setup
    torch.manual_seed(0)
    model = build_augmented(name, _args(name), fs.spec, tables, method, cfg, "fields")
    assert model.backbone.spec.dense[dense_name("item")] == (8 if method == "kser" else 8)
    model.train()
    batch = fs.batch(torch.arange(16))
    logits, loss = _loss(model, batch)
    assert logits.shape == (16,) and torch.isfinite(logits).all()
    loss.backward()
    ext = [p for p in model.extractor.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert ext, "the knowledge extractor receives no gradient"
    # the dense projection of the knowledge fields is trained too
    proj = model.backbone.embedding.dense[dense_name("user")].weight
    assert proj.grad is not None and proj.grad.abs().sum() > 0


def test_missing_knowledge_gives_zero_vectors(setup):
    fs, cfg, tables = setup
    torch.manual_seed(0)
    for method in ("kar", "kser"):
        model = build_augmented("dnn", _args("dnn"), fs.spec, tables, method, cfg, "fields").eval()
        batch = fs.batch(torch.arange(len(fs)))
        vecs, _, _ = model.knowledge(batch)
        for kind, v in vecs.items():
            rows = batch[f"{kind}_row"]
            # KAR reads the whole-text vector, KSER the chunks: "has" is what each one reads
            has = tables[kind].has[rows] if method == "kar" else \
                tables[kind].index[rows].flatten(1).any(1)
            assert (~has).any() and has.any()
            assert (v[~has] == 0).all()
            assert (v[has].abs().sum(-1) > 0).all()


@pytest.mark.parametrize("name", ["dnn", "din", "dien", "deepfm"])
def test_residual_injection_starts_as_the_plain_backbone(name, setup):
    fs, cfg, tables = setup
    torch.manual_seed(0)
    backbone = registry.build_backbone(name, copy.deepcopy(fs.spec), **_args(name)).eval()
    batch = fs.batch(torch.arange(20))
    with torch.no_grad():
        plain = backbone(batch)
    model = KnowledgeAugmented(backbone, "kser", tables, cfg, "residual", freeze_backbone=True)
    with torch.no_grad():
        torch.testing.assert_close(model(batch)["logit"], plain["logit"], rtol=0, atol=0)
        model.residual_gate.fill_(1.0)
        assert not torch.equal(model(batch)["logit"], plain["logit"])


def test_fields_injection_needs_declared_fields(setup):
    fs, cfg, tables = setup
    backbone = registry.build_backbone("dnn", copy.deepcopy(fs.spec), embed_dim=8)
    with pytest.raises(ConfigError, match="lacks dense field"):
        KnowledgeAugmented(backbone, "kser", tables, cfg, "fields")


def test_extractor_only_training_keeps_the_backbone_bit_identical(setup, tmp_path):
    fs, cfg, tables = setup
    torch.manual_seed(0)
    backbone = registry.build_backbone("din", copy.deepcopy(fs.spec), embed_dim=8, hidden=(16, 8),
                                       batch_norm=True, dropout=0.2)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    model = build_augmented("din", {}, fs.spec, tables, "kser", cfg, "residual", backbone=backbone)
    ext_before = {k: v.clone() for k, v in model.extractor.state_dict().items()}
    tcfg = TrainConfig(device="cpu", batch_size=32, epochs=2, patience=5, checkpoint=False,
                       eval_test=False)
    trainer = Trainer(model, fs, tcfg, output_dir=None)
    assert all(p.requires_grad is False for p in backbone.parameters())
    # the optimiser holds only the extractor's parameters (and the residual gate)
    n_opt = sum(p.numel() for g in trainer.optimizer.param_groups for p in g["params"])
    assert n_opt == sum(p.numel() for p in model.parameters() if p.requires_grad)
    trainer.fit()
    after = backbone.state_dict()
    for k, v in before.items():  # parameters and buffers (BatchNorm statistics) alike
        assert torch.equal(v, after[k]), f"backbone {k} changed"
    assert not backbone.training
    changed = [k for k, v in model.extractor.state_dict().items() if not torch.equal(v, ext_before[k])]
    assert changed, "extractor parameters did not change"
    assert model.residual_gate.abs().sum() > 0


def test_run_train_with_augment_and_both_strategies(setup, tmp_path):
    from llmrec.ranking.pipeline import RankConfig, run_train

    fs, cfg, _ = setup
    base = RankConfig(model="dnn", model_args={"embed_dim": 8, "hidden": [16]},
                      train=TrainConfig(device="cpu", batch_size=64, epochs=1, patience=1),
                      knowledge=copy.deepcopy(cfg))
    res = {}
    for augment, strategy in (("kar", "all"), ("kser", "all"), ("kser", "extractor")):
        c = copy.deepcopy(base)
        c.augment, c.strategy = augment, strategy
        c.output_dir = str(tmp_path / f"{augment}-{strategy}")
        res[(augment, strategy)] = run_train(c, features=fs)
    for r in res.values():
        assert 0.0 < r["test"]["auc"] < 1.0
        assert set(r["coverage"]) == {"user", "item"}
    ext = res[("kser", "extractor")]
    assert ext["injection"] == "residual" and "backbone_result" in ext
    assert ext["n_trainable"] < ext["n_parameters"]
    assert (tmp_path / "kser-extractor" / "backbone" / "best.safetensors").is_file()
    assert (tmp_path / "kser-extractor" / "backbone" / "run.json").is_file()
    assert res[("kser", "all")]["injection"] == "fields"
    with pytest.raises(ValueError, match="strategy extractor"):
        RankConfig(augment="none", strategy="extractor")
