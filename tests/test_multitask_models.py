"""ESMM and EKTM beyond the contract test: ESMM's entire-space product and where its CVR tower's
gradient comes from; EKTM with transfer off is MMoE, its ablations, the stop-gradient into the
source tasks, and the multitask task's ESMM / EKTM terms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmrec.ranking import registry
from llmrec.ranking.models.multitask.esmm import product_logit
from llmrec.ranking.task_config import TaskConfig
from llmrec.ranking.tasks import build_task
from llmrec.ranking.trainer import seed_everything


@pytest.fixture(scope="module")
def planted():
    from test_ranking_contract import _build

    return _build("multitask")


def _batch(fs, n=32):
    return fs.batch(fs.split_index("train")[:n])


def _esmm(fs):
    seed_everything(0)
    return registry.build_model("esmm", fs.spec, embed_dim=8, tasks=["click", "like"],
                                tower=(16,), dropout=0.0)


def test_product_logit_is_the_logit_of_the_product():
    a = torch.tensor([-30.0, -3.0, 0.0, 2.0, 8.0, 30.0], dtype=torch.float64)
    b = torch.tensor([1.0, 0.5, 0.0, -2.0, 8.0, 30.0], dtype=torch.float64)
    p = torch.sigmoid(a) * torch.sigmoid(b)
    z = product_logit(a, b)
    assert torch.isfinite(z).all()
    assert torch.allclose(torch.sigmoid(z)[:5], p[:5], rtol=1e-6, atol=1e-12)
    assert torch.sigmoid(z)[5] > 1 - 1e-6  # saturated: clamped just below 1


def test_esmm_pctcvr_is_pctr_times_pcvr(planted):
    model = _esmm(planted).eval()
    with torch.no_grad():
        out = model(_batch(planted))
    p_ctr = torch.sigmoid(out["logits"]["click"])
    p_cvr = torch.sigmoid(out["cvr_logits"]["like"])
    assert torch.allclose(torch.sigmoid(out["logits"]["like"]), p_ctr * p_cvr, atol=1e-6)
    assert out["ctcvr_of"] == {"like": "click"} and torch.equal(out["logit"], out["logits"]["click"])


def test_esmm_cvr_tower_learns_only_through_pctcvr(planted):
    model = _esmm(planted).train()
    task = build_task(TaskConfig(kind="multitask", labels=["click", "like"]), planted.spec)
    batch = _batch(planted)
    out = model(batch)
    losses = task.task_losses(out, batch)
    # the CTCVR target is click x like, over every sample
    y = batch["labels"]["click"] * batch["labels"]["like"]
    expect = F.binary_cross_entropy_with_logits(out["logits"]["like"], y)
    assert torch.allclose(losses["like"], expect)
    cvr = list(model.cvr["like"].parameters())
    # the CTR loss does not reach the CVR tower; the CTCVR loss does
    g_ctr = torch.autograd.grad(losses["click"], cvr, retain_graph=True, allow_unused=True)
    assert all(g is None for g in g_ctr)
    g_ctcvr = torch.autograd.grad(losses["like"], cvr, allow_unused=True)
    assert all(g is not None for g in g_ctcvr) and any(g.abs().sum() > 0 for g in g_ctcvr)


def test_esmm_evaluation_reports_cvr_on_clicked(planted):
    model = _esmm(planted).eval()
    task = build_task(TaskConfig(kind="multitask", labels=["click", "like"]), planted.spec)
    idx = planted.split_index("valid")
    with torch.no_grad():
        m = task.evaluate(lambda i: model(planted.batch(i)), planted, idx, 256)
    clicked = int((planted.labels("click")[idx] > 0.5).sum())
    assert m["like.cvr_n"] == clicked and 0 <= m["like.cvr_auc"] <= 1
    assert {"click.auc", "like.auc", "auc"} <= set(m)


def _ektm(fs, **kw):
    seed_everything(0)
    return registry.build_model("ektm", fs.spec, embed_dim=8, tasks=["click", "like"],
                                n_experts=2, expert=(16,), tower=(8,), dropout=0.0, **kw)


def test_ektm_without_transfer_is_mmoe(planted):
    seed_everything(0)
    mmoe = registry.build_model("mmoe", planted.spec, embed_dim=8, tasks=["click", "like"],
                                n_experts=2, expert=(16,), tower=(8,), dropout=0.0)
    ektm = _ektm(planted, transfer=False)
    assert list(dict(ektm.named_parameters())) == list(dict(mmoe.named_parameters()))
    for a, b in zip(ektm.parameters(), mmoe.parameters()):
        assert torch.equal(a, b)
    batch = _batch(planted)
    o1, o2 = ektm(batch), mmoe(batch)
    for t in ("click", "like"):
        assert torch.equal(o1["logits"][t], o2["logits"][t])
    assert "own_logits" not in o1


@pytest.mark.parametrize("flags", [{}, {"router": False}, {"transmitter": False},
                                   {"enhanced": False}, {"detach_source": False}])
def test_ektm_ablations_run_and_train(planted, flags):
    model = _ektm(planted, **flags).train()
    task = build_task(TaskConfig(kind="multitask", labels=["click", "like"]), planted.spec)
    batch = _batch(planted)
    out = model(batch)
    assert ("own_logits" in out) == flags.get("enhanced", True)
    assert hasattr(model, "queries") == flags.get("router", True)
    assert hasattr(model, "select") == flags.get("transmitter", True)
    loss = task.loss(out, batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.heads["click"].net[0].weight.grad.abs().sum() > 0


def test_ektm_stop_gradient_into_the_source_task(planted):
    batch = _batch(planted)
    task = build_task(TaskConfig(kind="multitask", labels=["click", "like"]), planted.spec)
    for detach in (True, False):
        model = _ektm(planted, detach_source=detach).train()
        out = model(batch)
        like = task.task_losses(out, batch)["like"]
        g = torch.autograd.grad(like, list(model.gates["click"].parameters()), allow_unused=True)
        reached = any(x is not None and x.abs().sum() > 0 for x in g)
        # with the stop-gradient, the like loss never moves click's gate
        assert reached == (not detach)


def test_enhanced_hinge_in_the_task_loss(planted):
    task = build_task(TaskConfig(kind="multitask", labels=["click", "like"]), planted.spec)
    batch = _batch(planted, 8)
    zeros, good = torch.zeros(8), (batch["labels"]["like"] * 8 - 4)
    y = batch["labels"]["like"]
    for main, own in ((zeros, good), (good, zeros)):
        out = {"logits": {"click": zeros, "like": main},
               "own_logits": {"click": zeros, "like": own}}
        got = task.task_losses(out, batch)["like"]
        bce, bce0 = (F.binary_cross_entropy_with_logits(z, y) for z in (main, own))
        assert torch.allclose(got, bce + bce0 + torch.relu(bce - bce0))
