"""How a training step runs (train.step): the choice auto makes and why, the errors of an
impossible choice, and - on a CUDA device - that the captured whole-step CUDA graph trains
exactly like the eager step, handles short batches, falls back when a model cannot be captured,
and resumes from a checkpoint."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llmrec.errors import ConfigError
from llmrec.ranking.features import FeatureConfig, build_features
from llmrec.ranking.models.base import Backbone
from llmrec.ranking.registry import build_backbone
from llmrec.ranking.synthetic import criteo_like_features, make_synthetic
from llmrec.ranking.task_config import TaskConfig
from llmrec.ranking.trainer import GRAPH_WARMUP_STEPS, TrainConfig, Trainer, seed_everything

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _features():
    tables, split = make_synthetic(120, 50, mean_len=16, seed=5)
    return build_features(tables, split, FeatureConfig(max_hist_len=4, max_multi_len=3))


def _model(fs, name="dcnv2", **kw):
    seed_everything(3)
    args = {"dcnv2": dict(embed_dim=8, hidden=(16,), cross_layers=2, dropout=0.0),
            "din": dict(embed_dim=8, attention_hidden=(8,), hidden=(16,), dropout=0.0)}[name]
    return build_backbone(name, fs.spec, **{**args, **kw})


def test_auto_is_eager_on_cpu_and_says_why():
    fs = _features()
    t = Trainer(_model(fs), fs, TrainConfig(device="cpu", epochs=1, checkpoint=False))
    assert t.step_kind == "eager" and "CUDA" in t.step_reason
    result = t.fit()
    assert result["step"]["kind"] == "eager"


def test_graph_on_cpu_is_a_clear_error():
    fs = _features()
    with pytest.raises(ConfigError, match="train.step graph.*CUDA"):
        Trainer(_model(fs), fs, TrainConfig(device="cpu", step="graph"))


def test_legacy_compile_flag_means_compile_step():
    fs = _features()
    t = Trainer(_model(fs), fs, TrainConfig(device="cpu", compile=True, checkpoint=False))
    assert t.step_kind == "compile"
    t = Trainer(_model(fs), fs, TrainConfig(device="cpu", step="eager", compile=True))
    assert t.step_kind == "eager"


def test_criteo_shaped_set_has_criteo_fields_and_a_learnable_label():
    fs = criteo_like_features(5000, seed=1, max_vocab=500)
    assert len(fs.spec.context_fields) == 26 and len(fs.spec.dense) == 13
    assert max(v for _, v in fs.spec.context_fields) == 500 + 3
    assert 0.15 < fs.info["positive_rate"] < 0.35
    sizes = [int(fs.split_index(s).numel()) for s in ("train", "valid", "test")]
    assert sum(sizes) == 5000 and sizes[0] == 4000
    # every id lies inside its field's vocabulary (0..2 are the special ids)
    vocab = torch.tensor([v for _, v in fs.spec.context_fields])
    assert bool((fs.tensors["context"] < vocab).all()) and bool((fs.tensors["context"] >= 3).all())
    batch = fs.batch(fs.split_index("train")[:7])
    assert batch["context"].shape == (7, 26) and batch["dense"]["I13"].shape == (7, 1)


# --- on a CUDA device ----------------------------------------------------------------------------
def _cuda_cfg(**kw):
    base = dict(device="cuda", batch_size=64, epochs=2, patience=5, checkpoint=False,
                precision="fp32", graph_min_steps=0)
    return TrainConfig(**{**base, **kw})


def _train_steps(trainer, n_batches):
    losses = []
    for epoch in range(2):
        for idx in trainer.epoch_batches()[:n_batches]:
            losses.append(float(trainer.train_step(idx)))
    return losses


@cuda
@pytest.mark.parametrize("name", ["dcnv2", "din"])
def test_graph_step_matches_eager_step(name):
    """Without compilation the graph replays the eager step's kernels: same losses, same weights."""
    fs = _features()
    eager = Trainer(_model(fs, name), fs, _cuda_cfg(step="eager"))
    graph = Trainer(_model(fs, name), fs, _cuda_cfg(step="graph", graph_compile="never"))
    n = GRAPH_WARMUP_STEPS + 4  # warm-up steps, the capture step and replays
    le, lg = _train_steps(eager, n), _train_steps(graph, n)
    assert graph._graph is not None and graph.step_kind == "graph"
    torch.testing.assert_close(torch.tensor(lg), torch.tensor(le), rtol=1e-4, atol=1e-5)
    for (k, a), b in zip(eager.module.state_dict().items(), graph.module.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=k)


@cuda
def test_graph_fit_with_short_last_batch_and_compile():
    fs = _features()
    n_train = int(fs.split_index("train").numel())
    assert n_train % 64, "the test needs an epoch whose last batch is short"
    result = Trainer(_model(fs), fs, _cuda_cfg(step="graph", graph_compile="always", epochs=3, precision="auto")).fit()
    assert result["step"]["kind"] == "graph" and result["step"]["capture_seconds"] > 0
    assert result["test"]["auc"] > 0.5
    assert all(h["train_loss"] == h["train_loss"] for h in result["history"])  # not NaN


@cuda
def test_auto_picks_graph_for_a_long_run_and_eager_for_a_short_one():
    fs = _features()
    long = Trainer(_model(fs), fs, _cuda_cfg(step="auto", graph_min_steps=10))
    short = Trainer(_model(fs), fs, _cuda_cfg(step="auto", graph_min_steps=10**6))
    assert long.step_kind == "graph" and short.step_kind == "eager"
    assert "graph_min_steps" in short.step_reason
    listwise = Trainer(_model(fs), fs, _cuda_cfg(step="auto"),
                       task=TaskConfig(kind="listwise", group="user"))
    assert listwise.step_kind == "eager" and "list" in listwise.step_reason


class _HostSync(Backbone):
    """A model whose forward reads a value back to the host: it cannot be captured."""

    def __init__(self, spec, embed_dim: int = 8):
        super().__init__(spec, embed_dim)
        self.out = nn.Linear(embed_dim, 1)

    def forward(self, batch):
        x = self.embed(batch).fields().mean(1)
        if float(x.abs().sum()) < 0:  # a host sync, never true
            x = -x
        return {"logit": self.out(x).squeeze(-1)}


@cuda
def test_auto_falls_back_when_capture_fails_and_graph_says_why():
    fs = _features()
    seed_everything(0)
    t = Trainer(_HostSync(fs.spec), fs, _cuda_cfg(step="auto", graph_compile="never"))
    assert t.step_kind == "graph"
    result = t.fit()
    assert result["step"]["kind"] == "eager" and "capture failed" in result["step"]["reason"]
    assert result["test"]["auc"] == result["test"]["auc"]
    seed_everything(0)
    t = Trainer(_HostSync(fs.spec), fs, _cuda_cfg(step="graph", graph_compile="never"))
    with pytest.raises(ConfigError, match="cannot be captured"):
        t.fit()


@cuda
def test_graph_resume_continues_from_checkpoint(tmp_path):
    fs = _features()
    full = Trainer(_model(fs), fs, _cuda_cfg(step="graph", graph_compile="never", epochs=3,
                                             checkpoint=True), output_dir=tmp_path / "a").fit()
    Trainer(_model(fs), fs, _cuda_cfg(step="graph", graph_compile="never", epochs=1,
                                      checkpoint=True), output_dir=tmp_path / "b").fit()
    resumed = Trainer(_model(fs), fs, _cuda_cfg(step="graph", graph_compile="never", epochs=3,
                                                checkpoint=True, resume=True),
                      output_dir=tmp_path / "b").fit()
    assert resumed["epochs"] == 3
    a = [h["train_loss"] for h in full["history"]]
    b = [h["train_loss"] for h in resumed["history"]]
    assert b[0] == a[0]
    torch.testing.assert_close(torch.tensor(b[1:]), torch.tensor(a[1:]), rtol=1e-4, atol=1e-5)


def _contract_cases():
    import test_ranking_contract as contract

    return contract, [(f, n) for f, n in contract.CASES if f in ("ctr", "sequential", "multitask")]


@cuda
@pytest.mark.parametrize("family,name", _contract_cases()[1])
def test_every_model_trains_the_same_under_the_graph_step(family, name):
    """Each registered model of the fixed-shape families, on the contract's planted data: either
    capture falls back to eager (and says so) or the replayed graph gives the eager step's losses
    and weights - a model whose Python-side state changed between steps would differ here."""
    from llmrec.ranking import registry

    contract, _ = _contract_cases()
    fs = contract._build(family, name)
    hp = registry.hyper_parameters(name)
    args = {k: v for k, v in contract.SMALL.items() if k in hp}
    runs = []
    for step in ("eager", "graph"):
        seed_everything(0)
        model = registry.build_model(name, fs.spec, **args)
        cfg = _cuda_cfg(step=step, graph_compile="never")
        t = Trainer(model, fs, cfg, task=contract.TASKS[family])
        runs.append((t, _train_steps(t, GRAPH_WARMUP_STEPS + 4)))
    (eager, le), (graph, lg) = runs
    if graph.step_kind == "eager":
        assert "capture failed" in graph.step_info["reason"]
        pytest.skip(f"{name}: {graph.step_info['reason']}")
    # the same kernels, but cuDNN / atomic-add reductions may sum in another order: losses agree
    # to 0.5%, weights to a few Adam steps of lr 1e-3 (a frozen Python-side state would not)
    torch.testing.assert_close(torch.tensor(lg), torch.tensor(le), rtol=5e-3, atol=1e-4)
    for (k, a), b in zip(eager.module.state_dict().items(), graph.module.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-2, atol=5e-3, msg=k)


@pytest.mark.parametrize("name", ["din", "dien"])
def test_attention_models_refuse_flat_features_with_the_fix(name):
    fs = criteo_like_features(200, seed=0, max_vocab=50)
    with pytest.raises(ConfigError, match=f"{name} attends over the behaviour sequence.*flat model"):
        build_backbone(name, fs.spec)
