"""Multi-task optimisation (llmrec.ranking.mto): the bargaining solver, PCGrad's projection, UW's
loss, PUB's step (bit-for-bit Adam with one task) and every method driven end to end through a
trainer step on a small planted two-task set."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from llmrec.errors import ConfigError
from llmrec.ranking import mto, registry
from llmrec.ranking.task_config import TaskConfig
from llmrec.ranking.tasks import build_task
from llmrec.ranking.trainer import TrainConfig, Trainer, seed_everything


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


# ------------------------------------------------------------------------------------------------
# the solver of G alpha = 1 / alpha


def test_nash_weights_solve_the_bargaining_condition():
    G = torch.tensor([[2.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 0.7]], dtype=torch.float64)
    a = mto.nash_weights(G)
    assert (a > 0).all()
    assert torch.allclose(G @ a, 1 / a, atol=1e-4)
    # diagonal G: alpha_i = 1 / sqrt(G_ii) exactly (the start value)
    D = torch.diag(torch.tensor([4.0, 0.25], dtype=torch.float64))
    assert torch.equal(mto.nash_weights(D), torch.tensor([0.5, 2.0], dtype=torch.float64))
    # symmetric tasks get equal weights; one task gets exactly 1 from a normalised G
    S = torch.tensor([[1.0, 0.3], [0.3, 1.0]], dtype=torch.float64)
    s = mto.nash_weights(S)
    assert abs(float(s[0] - s[1])) < 1e-12 and abs(float(s[0]) - 1 / math.sqrt(1.3)) < 1e-9
    assert mto.nash_weights(torch.ones(1, 1, dtype=torch.float64)).item() == 1.0


def test_nash_weights_zero_gradient_task_is_left_out():
    G = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    a = mto.nash_weights(G)
    assert torch.isfinite(a).all() and a[0].item() == 1.0


# ------------------------------------------------------------------------------------------------
# PCGrad and UW


def test_pcgrad_projection_hand_computed():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    # g1' = g1 - (g1.g2)/|g2|^2 g2 = (0.5, 0.5); g2' = g2 - (g2.g1)/|g1|^2 g1 = (0, 1)
    out = mto.project_conflicts([g1, g2], torch.Generator().manual_seed(0))
    assert torch.allclose(out, torch.tensor([0.5, 1.5]))
    # no conflict: the plain sum
    h1, h2 = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.1])
    assert torch.allclose(mto.project_conflicts([h1, h2]), h1 + h2)


def test_uncertainty_weighting_loss_and_gradient():
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    m = mto.UncertaintyWeighting(["a", "b"], [w], lr=0.1)
    la, lb = (w[0] * 3).pow(2), w[1] * 0.5  # 9, 1
    total = m.backward({"a": la, "b": lb})
    assert float(total) == pytest.approx(10.0)
    # d/ds (exp(-s) L + s / 2) at s = 0 is -L + 1/2
    assert m.log_vars.grad.tolist() == pytest.approx([-9 + 0.5, -1 + 0.5])
    assert w.grad.tolist() == pytest.approx([18.0, 0.5])  # d(9 w^2)/dw at 1; exp(0) = 1


def test_shared_parameters_are_the_ones_two_tasks_reach():
    trunk, ha, hb = nn.Linear(3, 4), nn.Linear(4, 1), nn.Linear(4, 1)
    params = [*trunk.parameters(), *ha.parameters(), *hb.parameters()]
    x = torch.randn(5, 3)
    h = trunk(x)
    grads = mto.task_gradients([ha(h).sum(), hb(h).pow(2).sum()], params)
    shared, single = mto._split(grads, len(params))
    assert shared == [0, 1] and single == [2, 3, 4, 5]


# ------------------------------------------------------------------------------------------------
# PUB


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1))


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_pub_with_one_task_is_adam_bit_for_bit(weight_decay):
    a, b = _mlp(), _mlp()
    adam = torch.optim.Adam(a.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=weight_decay,
                            foreach=False)
    pub = mto.PUBAdam(b.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=weight_decay,
                      every=3)
    g = torch.Generator().manual_seed(1)
    for step in range(25):
        x, y = torch.randn(16, 6, generator=g), torch.randn(16, 1, generator=g)
        for net in (a, b):
            net.zero_grad(set_to_none=True)
            (net(x) - y).pow(2).mean().backward()
        adam.step()
        # even steps: the shared-parameter path with K = 1; odd steps: the plain path (p.grad)
        if step % 2 == 0:
            pub.task_grads = {p: [p.grad.clone()] for p in b.parameters()}
            for p in b.parameters():
                p.grad = None
        pub.step()
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert torch.equal(pa, pb), f"step {step}: PUB with one task differs from Adam"
    assert pub.alpha is not None and pub.alpha.tolist() == [1.0]
    # the state round-trips through state_dict (alpha included)
    sd = pub.state_dict()
    fresh = mto.PUBAdam(b.parameters(), lr=3e-3)
    fresh.load_state_dict(sd)
    assert fresh.alpha.tolist() == [1.0]


def test_pub_symmetric_tasks_get_equal_weights_and_the_update_is_balanced():
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(10))
    opt = mto.PUBAdam([p], lr=1e-2, every=1)
    g = torch.randn(10)
    before = p.detach().clone()
    opt.task_grads = {p: [g.clone(), g.clone()]}
    opt.step()
    a = opt.alpha
    assert abs(float(a[0] - a[1])) < 1e-12
    # two identical updates u: G = [[1, 1], [1, 1]] / 2, alpha solves alpha (alpha + alpha) / 2
    # = 1 / alpha -> alpha = 1, and the step is 2 lr u: u = m / (sqrt(v) + eps) with bias
    # corrections, m = 0.1 g / 0.1 = g, v = g^2 -> u = sign(g) (up to eps)
    assert a.tolist() == pytest.approx([1.0, 1.0])
    assert torch.allclose(before - p.detach(), 2 * 1e-2 * torch.sign(g), atol=1e-6)


def test_pub_recomputes_alpha_every_n_steps():
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(4))
    opt = mto.PUBAdam([p], lr=1e-2, every=3)
    seen = []
    for _ in range(7):
        opt.task_grads = {p: [torch.randn(4), 3 * torch.randn(4)]}
        opt.step()
        seen.append(tuple(opt.alpha.tolist()))
    # steps 0, 3, 6 solve anew; the steps between reuse the weights
    assert seen[0] == seen[1] == seen[2] and seen[3] == seen[4] == seen[5]
    assert seen[3] != seen[2] and seen[6] != seen[5]


# ------------------------------------------------------------------------------------------------
# end to end through a trainer step (what the trainer does with task.mto)


@pytest.fixture(scope="module")
def planted():
    from test_ranking_contract import _build

    return _build("multitask")


def _trainer(fs, model="mmoe", seed=0, epochs=3, task=None):
    seed_everything(seed)
    net = registry.build_model(model, fs.spec, embed_dim=8, tasks=["click", "like"],
                               **({"n_experts": 2, "expert": (16,), "tower": (8,)}
                                  if model != "esmm" else {"tower": (16,)}), dropout=0.0)
    cfg = TrainConfig(device="cpu", seed=seed, batch_size=64, epochs=epochs, lr=1e-2,
                      patience=epochs, checkpoint=False)
    return Trainer(net, fs, cfg, task=task or TaskConfig(kind="multitask",
                                                        labels=["click", "like"]))


def test_base_through_the_mto_step_equals_the_plain_trainer(planted):
    plain = _trainer(planted, epochs=1)
    driven = _trainer(planted, epochs=1)
    mto.attach(driven, "base")
    idx = plain.epoch_batches()[:5]
    for i in idx:
        assert torch.equal(plain.train_step(i), driven.train_step(i))
    for pa, pb in zip(plain.module.parameters(), driven.module.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("method", ["uw", "pcgrad", "nash", "pub"])
def test_every_method_trains_a_multitask_model(planted, method):
    t = _trainer(planted, epochs=4)
    m = mto.attach(t, method)
    before = {n: p.detach().clone() for n, p in t.module.named_parameters()}
    res = t.fit()
    assert all(math.isfinite(h["train_loss"]) for h in res["history"])
    changed = [n for n, p in t.module.named_parameters() if not torch.equal(p, before[n])]
    # every parameter moved, but the rating embedding (no ratings in these features)
    assert set(before) - set(changed) == {"embedding.rating.weight"}
    # 4 epochs: the easy label is learnt, the harder interaction (click) only starts to be
    # (base reaches click 0.65 / like 0.89 after 6 epochs; 20 in the contract test)
    losses = [h["train_loss"] for h in res["history"]]
    assert losses[-1] < 0.85 * losses[0], losses
    assert res["test"]["like.auc"] > 0.8, (method, res["test"])
    assert res["test"]["click.auc"] > 0.5, (method, res["test"])
    if method in ("uw", "nash", "pub"):
        w = m.last_weights
        assert set(w) == {"click", "like"} and all(v > 0 for v in w.values())


def test_mto_with_esmm_and_one_task(planted):
    t = _trainer(planted, model="esmm", epochs=1)
    mto.attach(t, "pub")
    loss = t.train_step(t.epoch_batches()[0])
    assert torch.isfinite(loss)
    # one task: nothing is shared between tasks, PUB is plain Adam on every parameter
    single = _trainer(planted, epochs=1, task=TaskConfig(kind="multitask", labels=["click"]))
    ref = _trainer(planted, epochs=1, task=TaskConfig(kind="multitask", labels=["click"]))
    mto.attach(single, "pub")
    for i in single.epoch_batches()[:3]:
        single.train_step(i)
        ref.train_step(i)
    for pa, pb in zip(single.module.parameters(), ref.module.parameters()):
        assert torch.equal(pa, pb)


def test_task_config_and_bad_input(planted):
    with pytest.raises(ValueError, match="needs task.kind multitask"):
        TaskConfig(kind="binary", mto="pub")
    with pytest.raises(ValueError, match="mto must be one of"):
        TaskConfig(kind="multitask", mto="mgda")
    with pytest.raises(ConfigError, match="DDP"):
        mto.build_mto("pcgrad", ["a"], [nn.Parameter(torch.zeros(1))], lr=1e-3, world=2)
    t = _trainer(planted, epochs=1, task=TaskConfig(kind="binary"))
    with pytest.raises(ConfigError, match="per-task losses"):
        mto.attach(t, "pub")
    # a trainer that only sums the losses refuses task.mto instead of ignoring it
    t = _trainer(planted, epochs=1, task=TaskConfig(kind="multitask", labels=["click", "like"],
                                                    mto="pub"))
    if getattr(t, "mto", None) is None:
        with pytest.raises(ConfigError, match="needs a trainer"):
            t.train_step(t.epoch_batches()[0])
    task = build_task(TaskConfig(kind="multitask", labels=["click", "like"]), planted.spec)
    batch = planted.batch(planted.split_index("train")[:8])
    out = {"logits": {"click": torch.zeros(8), "like": torch.zeros(8)}}
    losses = task.task_losses(out, batch)
    assert set(losses) == {"click", "like"}
    assert torch.allclose(task.loss(out, batch), losses["click"] + losses["like"])
    with pytest.raises(ConfigError, match="no loss for task"):
        mto.MTO(["click", "other"], [nn.Parameter(torch.zeros(1))]).backward(losses)


def test_patched_trainer_reads_task_mto(planted):
    t = _trainer(planted, epochs=1, task=TaskConfig(kind="multitask", labels=["click", "like"],
                                                    mto="pcgrad"))
    if getattr(t, "mto", None) is None:
        pytest.skip("the trainer does not read task.mto yet")
    assert isinstance(t.mto, mto.PCGrad)
    assert torch.isfinite(t.train_step(t.epoch_batches()[0]))
