"""Every registered backbone: forward shapes, finite gradients, a step changes the parameters,
extra dense fields plug in; the registry rejects duplicates and unknown hyper-parameters."""

from __future__ import annotations

import pytest
import torch

from llmrec.errors import ConfigError
from llmrec.ranking import registry
from llmrec.ranking.features import FeatureConfig, build_features
from llmrec.ranking.synthetic import make_synthetic

EXPECTED = ["dnn", "deepfm", "dcn", "dcnv2", "xdeepfm", "autoint", "fibinet", "fignn", "din",
            "dien", "finalmlp", "gdcn"]
# small hyper-parameters keep the test fast; FinalMLP's fusion heads must divide its widths
SMALL = {"hidden": (16, 8)}
SPECIAL = {"finalmlp": {"hidden1": (16,), "hidden2": (16,), "fusion_heads": 4, "gate_hidden": 8},
           "xdeepfm": {"hidden": (16,), "cin_layers": (8, 8)},
           "fignn": {}, "autoint": {"hidden": (16,)}}


@pytest.fixture(scope="module")
def features():
    tables, split = make_synthetic(30, 25, mean_len=10, seed=0)
    fs = build_features(tables, split, FeatureConfig(max_hist_len=4, max_multi_len=3))
    fs.add_dense("knowledge", torch.randn(fs.tensors["item_table"].shape[0], 5), level="item")
    return fs


def _model(name, spec):
    torch.manual_seed(0)
    return registry.build_backbone(name, spec, embed_dim=8, **SPECIAL.get(name, SMALL))


def test_registry_is_explicit_and_complete():
    assert registry.list_backbones()[: len(EXPECTED)] == EXPECTED
    with pytest.raises(ValueError):
        registry.register("dnn", object)  # a name is unique across families
    with pytest.raises(ValueError):
        registry.register("DCNv2", object)
    with pytest.raises(ConfigError, match="no hyper-parameter"):
        registry.build_backbone("dnn", None, hiden=(3,))
    with pytest.raises(ConfigError, match="unknown model"):
        registry.get_backbone("nope")


@pytest.mark.parametrize("name", EXPECTED)
def test_forward_backward_step(name, features):
    model = _model(name, features.spec)
    model.train()
    batch = features.batch(torch.arange(12))
    out = model(batch)
    logits, aux = out["logit"], out.get("aux_loss")
    assert logits.shape == (12,) and torch.isfinite(logits).all()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label"])
    if aux is not None:
        loss = loss + aux
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads, "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads.values())
    # the embeddings and the dense-field projection are trained
    assert grads["embedding.table.weight"].abs().sum() > 0
    assert grads["embedding.dense.knowledge.weight"].abs().sum() > 0
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.optim.Adam(model.parameters(), lr=1e-2).step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) >= len(grads) // 2 and "embedding.table.weight" in changed
    model.eval()
    with torch.no_grad():
        ev = model(batch)
    assert "aux_loss" not in ev and ev["logit"].shape == (12,)
