"""Tasks and list metrics against values computed by hand: nDCG / ERR, padded lists, regression
metrics, full-catalogue ranks, whole-list batches, the listwise losses, monitor direction and the
configuration errors of tasks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from llmrec.errors import ConfigError
from llmrec.ranking.features import FeatureConfig, build_features
from llmrec.ranking.metrics import err_at_k, ndcg_at_k, pad_groups, regression_metrics
from llmrec.ranking.registry import build_model
from llmrec.ranking.synthetic import make_synthetic
from llmrec.ranking.task_config import TaskConfig
from llmrec.ranking.tasks import (build_task, full_ranking_rank, lambda_loss,
                                  softmax_list_loss)
from llmrec.ranking.trainer import TrainConfig, Trainer, seed_everything

LOG2_3 = math.log2(3)

# Three padded lists. A: scores 0.9, 0.8, 0.1 with grades 0, 2, 1; B: two items, scores 0.2, 0.7
# with grades 1, 0 (third slot is padding); C: nothing relevant (skipped by both metrics).
S = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.7, 5.0], [0.3, 0.2, 0.1]])
Y = torch.tensor([[0.0, 2.0, 1.0], [1.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
M = torch.tensor([[True, True, True], [True, True, False], [True, True, True]])

# A ranked: grades 0, 2, 1 -> gains 0, 3, 1; ideal 3, 1, 0
NDCG_A = {1: 0.0, 2: (3 / LOG2_3) / (3 + 1 / LOG2_3),
          3: (3 / LOG2_3 + 1 / 2) / (3 + 1 / LOG2_3)}
# B ranked: grades 0, 1 -> gains 0, 1; ideal 1, 0 (the padded grade 3 never counts)
NDCG_B = {1: 0.0, 2: 1 / LOG2_3, 3: 1 / LOG2_3}


@pytest.mark.parametrize("k", [1, 2, 3, 10])
def test_ndcg_exponential_gain_skips_lists_without_relevant_items(k):
    kk = min(k, 3)
    expected = (NDCG_A[kk] + NDCG_B[kk]) / 2  # C is skipped, not counted as 0
    assert ndcg_at_k(S, Y, M, k) == pytest.approx(expected, abs=1e-12)


def test_ndcg_linear_gain_and_all_irrelevant():
    # A with linear gain: ranked 0, 2, 1; ideal 2, 1, 0
    a = (2 / LOG2_3 + 1 / 2) / (2 + 1 / LOG2_3)
    b = 1 / LOG2_3
    assert ndcg_at_k(S, Y, M, 3, gain="linear") == pytest.approx((a + b) / 2, abs=1e-12)
    assert math.isnan(ndcg_at_k(S[2:], Y[2:], M[2:], 3))


def test_err_at_k_by_hand():
    # max grade 2: R = (2^y - 1) / 4. A ranked R = 0, 3/4, 1/4:
    # ERR = 0 + 1 * (3/4) / 2 + (1 - 3/4) * (1/4) / 3; B ranked R = 0, 1/4: ERR = (1/4) / 2
    err_a = 0.75 / 2 + 0.25 * 0.25 / 3
    err_b = 0.25 / 2
    assert err_at_k(S, Y, M, 3, max_grade=2) == pytest.approx((err_a + err_b) / 2, abs=1e-12)
    # at k=1 both lists put an irrelevant item first
    assert err_at_k(S, Y, M, 1, max_grade=2) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(err_at_k(S[2:], Y[2:], M[2:], 3, max_grade=2))


def test_pad_groups_layout():
    scores = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    groups = torch.tensor([5, 5, 2, 2, 2, 9])  # contiguous, in order of first appearance
    s, y, m = pad_groups(scores, labels, groups)
    assert s.tolist() == [[1.0, 2.0, 0.0], [3.0, 4.0, 5.0], [6.0, 0.0, 0.0]]
    assert y.tolist() == [[0.0, 1.0, 0.0], [2.0, 3.0, 0.0], [1.0, 0.0, 0.0]]
    assert m.tolist() == [[True, True, False], [True, True, True], [True, False, False]]
    assert y.dtype == s.dtype


def test_regression_metrics_by_hand():
    out = regression_metrics(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 1.0]))
    # errors 1, 0, -2
    assert out["mse"] == pytest.approx(5 / 3)
    assert out["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert out["mae"] == pytest.approx(1.0)
    assert out["n"] == 3


# ------------------------------------------------------------------------------------------------
# next item


SCORES = torch.tensor([[9.0, 5.0, 3.0, 7.0, 5.0, 1.0],
                       [0.0, 4.0, 6.0, 2.0, 8.0, 4.0]])
TARGET = torch.tensor([1, 5])
HISTORY = torch.tensor([[3, 0], [5, 4]])


def test_full_ranking_rank_masks_history_and_padding_not_target_nor_ties():
    # row 0: padding (9) and history row 3 (7) masked, row 4 ties the target: rank 0
    # row 1: the target (row 5) is in the history but never masked; row 4 (8) masked; row 2 (6)
    # is strictly higher, row 1 ties: rank 1
    assert full_ranking_rank(SCORES, TARGET, HISTORY).tolist() == [0, 1]
    # without a history only padding is masked: row 0 now counts rows 3 (7); row 1 rows 2, 4
    none = torch.zeros_like(HISTORY)
    assert full_ranking_rank(SCORES, TARGET, none).tolist() == [1, 2]
    assert torch.equal(SCORES, SCORES.clone())  # the caller's scores are left alone


def _next_item_task(**kw):
    return build_task(TaskConfig(kind="next_item", **kw), SimpleNamespace(labels=[], groups=[]))


def test_next_item_evaluate_hr_ndcg_by_hand():
    task = _next_item_task(ks=[1, 5])
    fs = SimpleNamespace(tensors={"item_row": TARGET, "hist_rows": HISTORY})
    items = torch.eye(SCORES.shape[1])  # hidden . items = SCORES

    def forward(idx):
        return {"hidden": SCORES[idx], "items": items}

    out = task.evaluate(forward, fs, torch.arange(2), batch_size=1)
    # ranks 0 and 1
    assert out["hr@1"] == pytest.approx(0.5) and out["ndcg@1"] == pytest.approx(0.5)
    assert out["hr@5"] == pytest.approx(1.0)
    assert out["ndcg@5"] == pytest.approx((1 + 1 / LOG2_3) / 2)
    assert out["n"] == 2
    assert (task.monitor, task.mode) == ("ndcg@10", "max")


def test_next_item_full_softmax_never_answers_padding():
    task = _next_item_task()
    out = {"hidden": torch.tensor([[100.0, 0.0, 0.0]]), "items": torch.eye(3)}
    # the padding row would win by far; masked, rows 1 and 2 tie: CE = ln 2
    loss = task.loss(out, {"item_row": torch.tensor([1])})
    assert float(loss) == pytest.approx(math.log(2))


# ------------------------------------------------------------------------------------------------
# listwise


class _Lists:
    """The part of a FeatureSet a listwise task reads."""

    def __init__(self, gid, labels, train):
        self.gid, self.y, self.train = gid, labels, train

    def groups(self, idx=None, name="user"):
        assert name == "query"
        return self.gid if idx is None else self.gid[idx]

    def labels(self, name=None):
        return self.y

    def split_index(self, name):
        assert name == "train"
        return self.train


def _listwise_task(**kw):
    return build_task(TaskConfig(kind="listwise", group="query", **kw),
                      SimpleNamespace(labels=[], groups=["query"]))


def test_listwise_batches_keep_whole_lists_and_cover_train_once():
    gen = torch.Generator().manual_seed(0)
    sizes = torch.randint(1, 9, (40,), generator=gen)
    gid = torch.repeat_interleave(torch.arange(40), sizes)
    gid = gid[torch.randperm(gid.numel(), generator=gen)]  # a list's samples are scattered
    n = gid.numel()
    # train: every list of an even id (whole lists), scattered among valid samples
    train = torch.nonzero(gid % 2 == 0).squeeze(1)
    fs = _Lists(gid, torch.zeros(n), train)
    task = _listwise_task()
    per_list = torch.bincount(gid[train], minlength=40)
    batches = task.epoch_batches(fs, train, 16, torch.Generator().manual_seed(1))
    assert len(batches) > 1
    got = torch.cat(batches)
    assert sorted(got.tolist()) == sorted(train.tolist())  # every train sample exactly once
    seen = set()
    for b in batches:
        assert b.numel() > 0
        g = gid[b]
        assert torch.equal(torch.bincount(g, minlength=40)[g.unique()], per_list[g.unique()])
        # a list's samples are adjacent within the batch (pad_groups needs that)
        change = int((g[1:] != g[:-1]).sum()) + 1
        assert change == g.unique().numel()
        assert not (set(g.tolist()) & seen)
        seen |= set(g.tolist())
    # two processes: disjoint shards of whole lists, and the same number of steps in every
    # process although the lists differ in length (else DDP's all-reduces do not line up)
    for seed in range(20):
        per_rank = [task.epoch_batches(fs, train, 16, torch.Generator().manual_seed(seed), r, 2)
                    for r in (0, 1)]
        assert len(per_rank[0]) == len(per_rank[1]) > 1
    shards = [torch.cat(b) for b in per_rank]
    g0, g1 = set(gid[shards[0]].tolist()), set(gid[shards[1]].tolist())
    assert not (g0 & g1) and len(g0) == len(g1)
    for s in shards:
        assert torch.equal(torch.bincount(gid[s], minlength=40)[gid[s].unique()],
                           per_list[gid[s].unique()])


def test_listwise_evaluate_groups_scattered_samples():
    # the lists A, B, C of the metric tests, their samples interleaved
    flat_s = torch.tensor([0.9, 0.2, 0.3, 0.8, 0.7, 0.2, 0.1, 0.1])
    flat_y = torch.tensor([0.0, 1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0])
    gid = torch.tensor([0, 1, 2, 0, 1, 2, 0, 2])
    fs = _Lists(gid, flat_y, torch.arange(8))
    task = _listwise_task(ks=[3])
    out = task.evaluate(lambda idx: {"logit": flat_s[idx]}, fs, torch.arange(8), batch_size=3)
    assert out["ndcg@3"] == pytest.approx((NDCG_A[3] + NDCG_B[3]) / 2, abs=1e-9)
    # max grade from the training labels: 2
    assert out["err@3"] == pytest.approx((0.75 / 2 + 0.25 * 0.25 / 3 + 0.25 / 2) / 2, abs=1e-9)
    assert out["n_lists"] == 3 and out["n"] == 8


def test_softmax_list_loss_by_hand():
    scores = torch.tensor([[0.0, math.log(3), 5.0], [1.0, 1.0, 1.0], [2.0, 0.0, 0.0]])
    labels = torch.tensor([[1.0, 1.0, 9.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, True], [True, True, True]])
    # list 1: softmax(0, ln 3) = 1/4, 3/4 against 1/2, 1/2 (the padded 5.0 / 9 never count);
    # list 2: target 1, 0, 0 against 1/3 each; list 3: no positive, skipped
    expected = (-(0.5 * math.log(1 / 4) + 0.5 * math.log(3 / 4)) + math.log(3)) / 2
    assert float(softmax_list_loss(scores, labels, mask)) == pytest.approx(expected, abs=1e-6)
    zero = softmax_list_loss(scores[2:], labels[2:], mask[2:])
    assert float(zero) == 0.0


def test_lambda_loss_by_hand_and_gradient_direction():
    # one pair: the relevant item 0 (score 0) is ranked below item 1 (score 1). Swapping them
    # changes DCG by |(1 - 0) * (1/log2(3) - 1)|, IDCG = 1; the pair's term is softplus(1)
    scores = torch.tensor([[0.0, 1.0, 7.0]], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0, 5.0]])
    mask = torch.tensor([[True, True, False]])
    loss = lambda_loss(scores, labels, mask)
    assert loss.item() == pytest.approx(math.log(1 + math.e) * (1 - 1 / LOG2_3), abs=1e-6)
    loss.backward()
    g = scores.grad[0]
    assert g[0] < 0 < g[1]  # raising the relevant item (or lowering the other) lowers the loss
    assert g[2] == 0  # padding gets no gradient
    with torch.no_grad():
        up = lambda_loss(scores + torch.tensor([[0.5, 0.0, 0.0]]), labels, mask)
    assert up.item() < loss.item()
    # no pair with different grades: zero, with a graph
    flat = lambda_loss(scores, torch.tensor([[1.0, 1.0, 0.0]]), mask)
    assert flat.item() == 0.0 and flat.requires_grad


# ------------------------------------------------------------------------------------------------
# multitask, monitor, configuration


def test_multitask_weighted_loss_by_hand():
    spec = SimpleNamespace(labels=["like"], groups=[])
    task = build_task(TaskConfig(kind="multitask", labels=["label", "like"], weights=[1.0, 3.0]),
                      spec)
    out = {"logits": {"label": torch.zeros(4), "like": torch.zeros(4)}}
    batch = {"label": torch.tensor([1.0, 0.0, 1.0, 0.0]), "labels": {"like": torch.ones(4)}}
    assert float(task.loss(out, batch)) == pytest.approx(4 * math.log(2))
    default = build_task(TaskConfig(kind="multitask"), spec)
    assert default.labels == ["label", "like"] and default.weights == [1.0, 1.0]


def test_task_labels_must_be_features_labels():
    spec = SimpleNamespace(labels=["click"], groups=["query"])
    for kind in ("multitask", "regression", "listwise"):
        labels = ["label", "nope"] if kind == "multitask" else ["nope"]
        with pytest.raises(ConfigError, match="nope.*have: label, click"):
            build_task(TaskConfig(kind=kind, labels=labels,
                                  group="query" if kind == "listwise" else "user"), spec)
    with pytest.raises(ConfigError, match="task.group 'session'.*user, query"):
        build_task(TaskConfig(kind="listwise", group="session"), spec)


def test_monitor_defaults_and_direction():
    spec = SimpleNamespace(labels=[], groups=[])
    reg = build_task(TaskConfig(kind="regression"), spec)
    assert (reg.monitor, reg.mode, reg.worst) == ("rmse", "min", math.inf)
    assert reg.better(0.5, 1.0, 1e-5) and not reg.better(1.0, 0.5, 1e-5)
    assert not reg.better(float("nan"), 1.0, 0.0)
    binary = build_task(TaskConfig(kind="binary"), spec)
    assert (binary.monitor, binary.mode, binary.worst) == ("auc", "max", -math.inf)
    assert binary.better(0.7, 0.6, 1e-5) and not binary.better(0.6, 0.7, 1e-5)
    assert not binary.better(0.600001, 0.6, 1e-5)  # below min_delta
    assert build_task(TaskConfig(kind="binary", monitor="logloss"), spec).mode == "min"
    assert build_task(TaskConfig(kind="regression", monitor="mae"), spec).mode == "min"
    assert build_task(TaskConfig(kind="multitask", labels=["label"], monitor="label.logloss"),
                      spec).mode == "min"
    assert build_task(TaskConfig(kind="regression", monitor="mae", mode="max"), spec).mode == "max"
    assert build_task(TaskConfig(kind="listwise"), spec).monitor == "ndcg@10"


def test_unknown_monitor_names_the_valid_metrics_when_training():
    tables, split = make_synthetic(30, 20, mean_len=8, seed=0)
    fs = build_features(tables, split, FeatureConfig(max_hist_len=3, max_multi_len=2))
    seed_everything(0)
    model = build_model("dnn", fs.spec, embed_dim=4, hidden=(8,))
    trainer = Trainer(model, fs, TrainConfig(device="cpu", epochs=1, batch_size=64,
                                             checkpoint=False),
                      task=TaskConfig(kind="regression", monitor="auc"))
    with pytest.raises(ConfigError, match=r"task.monitor 'auc'.*'regression'.*mse, rmse, mae"):
        trainer.fit()


@pytest.mark.parametrize("kw,match", [
    ({"kind": "binary", "loss": "mse"}, "does not apply to task 'binary'; choose one of auto, bce"),
    ({"kind": "regression", "loss": "softmax"}, "auto, mse, huber"),
    ({"kind": "listwise", "loss": "full"}, "auto, softmax, lambda"),
    ({"kind": "next_item", "loss": "lambda"}, "auto, full, sampled"),
    ({"kind": "multitask", "labels": ["label", "like"], "weights": [1.0]},
     "weights has 1 values but task.labels 2"),
    ({"kind": "regression", "labels": ["a", "b"]}, "learns one label"),
    ({"kind": "listwise", "labels": ["a", "b"]}, "learns one label"),
    ({"kind": "next_item", "ks": []}, "ks must be"),
    ({"kind": "next_item", "ks": [0, 10]}, "ks must be"),
    ({"kind": "next_item", "n_negatives": 0}, "n_negatives"),
    ({"kind": "pointwise"}, "task.kind must be one of"),
])
def test_task_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        TaskConfig(**kw)


def test_multitask_weights_apply_to_the_default_labels():
    from llmrec.errors import ConfigError
    from llmrec.ranking.features import FeatureSpec
    from llmrec.ranking.task_config import TaskConfig
    from llmrec.ranking.tasks import build_task

    spec = FeatureSpec(user_fields=[], item_fields=[("item_id", 5)], item_multi_fields=[],
                       rating_vocab=3, max_hist_len=1, labels=["like"])
    task = build_task(TaskConfig(kind="multitask", weights=[1.0, 0.5]), spec)
    assert task.labels == ["label", "like"] and task.weights == [1.0, 0.5]
    with pytest.raises(ConfigError, match="one weight per label"):
        build_task(TaskConfig(kind="multitask", weights=[1.0]), spec)
