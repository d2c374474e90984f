"""The sequential family: SASRec's causality, the RoTE and CAPE position encodings against their
definitions, the implicit-feedback leave-one-out split, and the most-popular baseline reproducing
the reference values of the Amazon Beauty data card."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec.errors import DataError
from llmrec.ranking.features import FeatureConfig, build_features
from llmrec.ranking.models.sequential.attention import cape_positions, rote_rotate
from llmrec.ranking.registry import build_model
from llmrec.ranking.synthetic import make_synthetic

from conftest import shared_path


@pytest.fixture(scope="module")
def fs():
    tables, split = make_synthetic(40, 30, mean_len=14, seed=2)
    return build_features(tables, split, FeatureConfig(max_hist_len=8, max_multi_len=2,
                                                       timestamps=True))


@pytest.mark.parametrize("position", ["learned", "none", "rote", "cape"])
def test_sasrec_position_t_never_sees_a_later_item(fs, position):
    torch.manual_seed(0)
    model = build_model("sasrec", fs.spec, embed_dim=8, blocks=2, heads=2, dropout=0.0,
                        position=position).eval()
    full = fs.tensors["hist_rows"].gt(0).all(1).nonzero().squeeze(1)[:6]
    batch = fs.batch(full)
    t = 4
    other = dict(batch)
    other["hist_item"] = batch["hist_item"].clone()
    other["hist_item"][:, t + 1:, 0] = (batch["hist_item"][:, t + 1:, 0] + 1) % 5 + 3
    with torch.no_grad():
        a = model.states(model.embed(batch), batch)
        b = model.states(model.embed(other), other)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, t + 1:], b[:, t + 1:])
    out = model(batch)
    h = fs.spec.n_item_slots * 8  # tied item space: every item slot, flattened
    assert out["hidden"].shape == (6, h) and out["items"].shape == (fs.n_items, h)


def test_rote_keeps_norms_and_with_one_level_depends_on_time_differences():
    torch.manual_seed(0)
    q, k = torch.randn(2, 1, 5, 8, dtype=torch.float64), torch.randn(2, 1, 5, 8, dtype=torch.float64)
    t = torch.tensor([[0, 86400, 3 * 86400, 40 * 86400, 400 * 86400]] * 2, dtype=torch.float64)
    one = dict(bases=(100.0,), weights=(1.0,), units=(86400.0,))
    torch.testing.assert_close(rote_rotate(q, t, **one).norm(dim=-1), q.norm(dim=-1))
    dots = rote_rotate(q, t, **one) @ rote_rotate(k, t, **one).transpose(-1, -2)
    shifted = rote_rotate(q, t + 12345.0, **one) @ rote_rotate(k, t + 12345.0, **one).transpose(-1, -2)
    torch.testing.assert_close(dots, shifted)


def test_rote_with_positions_as_times_is_rope():
    torch.manual_seed(1)
    x = torch.randn(1, 1, 6, 4, dtype=torch.float64)
    pos = torch.arange(6, dtype=torch.float64)[None]
    got = rote_rotate(x, pos, bases=(10000.0,), weights=(1.0,), units=(1.0,))
    d = 4
    inv = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = pos[0, :, None] * inv  # [L, d/2]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    want = torch.stack([x1 * ang.cos() - x2 * ang.sin(), x1 * ang.sin() + x2 * ang.cos()], -1)
    torch.testing.assert_close(got, want.flatten(-2))


def test_cape_positions_are_suffix_sums_of_gates_over_visible_keys():
    logits = torch.tensor([[[0.0, 2.0, -1.0, 0.5], [1.0, -2.0, 0.0, 3.0]]])  # [1, Lq=2, Lk=4]
    visible = torch.tensor([[[True, True, True, False], [True, True, False, False]]])
    p = cape_positions(logits, visible, max_pos=10)
    g = (1 - torch.sigmoid(logits)) * visible
    assert torch.allclose(p[0, 0, 0], g[0, 0, :3].sum())
    assert torch.allclose(p[0, 1, 1], g[0, 1, 1])
    assert (p[..., 3] == 0).all() and (p[0, 1, 2:] == 0).all()  # invisible keys add nothing
    assert (p[..., :-1] >= p[..., 1:]).all()  # non-increasing in the key index
    assert cape_positions(logits * 0 - 20, visible, max_pos=1).max() == 1  # clamped


def test_cape_integer_positions_give_the_table_column_exactly():
    from llmrec.ranking.models.sequential.attention import CausalSelfAttention

    torch.manual_seed(0)
    att = CausalSelfAttention(4, 1, 0.0, "cape", max_len=5, cape_dim=3)
    q = torch.randn(1, 1, 1, 4)
    proj = torch.nn.functional.silu(att.cape_q(q)) @ att.cape_table
    p = torch.tensor([[[[2.0]]]])
    lo, hi = p.floor().long(), p.ceil().long()
    e = proj.gather(-1, lo) + (p - lo) * (proj.gather(-1, hi) - proj.gather(-1, lo))
    assert torch.equal(e[..., 0], proj[..., 2])


def test_leave_last_out_accepts_implicit_feedback_and_kar_refuses_it():
    from llmrec.data.splits import SplitConfig, make_split

    df = pd.DataFrame({"user_id": ["1"] * 4 + ["2"] * 3, "item_id": list("abcdabc"),
                       "rating": np.nan, "timestamp": [1, 2, 2, 3, 5, 6, 7]})
    sp = make_split(df, SplitConfig(protocol="leave-last-out"))
    assert (sp.samples["label"] == 1).all()
    u1 = sp.samples[sp.samples["user_id"] == "1"].sort_values("position")
    # the time tie (b, c at t=2) is ordered by item id; last = test, second last = valid
    assert u1["item_id"].tolist() == ["a", "b", "c", "d"]
    assert u1["split"].tolist() == ["train", "train", "valid", "test"]
    with pytest.raises(DataError, match="leave-last-out"):
        make_split(df, SplitConfig(protocol="kar"))


@pytest.mark.slow
def test_most_popular_reproduces_the_beauty_reference_values():
    folder = shared_path("amazon-beauty-2014-5core")
    from llmrec.config import from_dict
    from llmrec.ranking.pipeline import RankConfig, prepare_features
    from llmrec.ranking.popularity import next_item_popularity

    cfg = from_dict(RankConfig, {
        "data": {"name": "csv", "path": str(folder / "interactions.csv.gz"),
                 "items_path": str(folder / "items.csv")},
        "split": {"protocol": "leave-last-out"}, "model": "sasrec",
        "features": {"max_hist_len": 50, "use_user_id": False, "user_fields": [],
                     "item_fields": [], "item_multi_fields": [], "use_hist_rating": False},
        "task": {"kind": "next_item"}})
    fs = prepare_features(cfg)
    assert fs.info["splits"] == {"train": 153776, "valid": 22363, "test": 22363}
    got = next_item_popularity(fs)["test"]
    # the data card's values (most-popular by train counts, full ranking, history masked)
    want = {"hr@5": 0.0075, "hr@10": 0.0114, "hr@20": 0.0203,
            "ndcg@5": 0.0041, "ndcg@10": 0.0054, "ndcg@20": 0.0076}
    for k, v in want.items():
        assert math.isclose(round(got[k], 4), v), (k, got[k], v)


@pytest.mark.parametrize("name", ["din", "dien"])
def test_cape_in_target_attention_trains_and_none_is_the_plain_model(fs, name):
    torch.manual_seed(0)
    plain = build_model(name, fs.spec, embed_dim=8, hidden=(16,))
    torch.manual_seed(0)
    cape = build_model(name, fs.spec, embed_dim=8, hidden=(16,), position="cape", cape_dim=4)
    batch = fs.batch(torch.arange(32))
    cape.train()
    out = cape(batch)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out["logit"], batch["label"])
    loss = loss + out.get("aux_loss", 0.0)
    loss.backward()
    grads = [p.grad for n, p in cape.named_parameters() if "cape" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    # position none builds exactly the plain model (same parameters, same outputs)
    assert [n for n, _ in plain.named_parameters()] == \
        [n for n, _ in cape.named_parameters() if "cape" not in n]


def test_sequence_training_loss_equals_the_mean_of_the_per_position_losses():
    from llmrec.data.splits import SplitConfig, make_split
    from llmrec.ranking.task_config import TaskConfig
    from llmrec.ranking.tasks import build_task

    tables, _ = make_synthetic(20, 30, mean_len=8, seed=4)
    split = make_split(tables.df("interactions"), SplitConfig(protocol="leave-last-out"))
    fs = build_features(tables, split, FeatureConfig(max_hist_len=12, max_multi_len=2))
    torch.manual_seed(0)
    model = build_model("sasrec", fs.spec, embed_dim=8, blocks=2, heads=2, dropout=0.0,
                        position="none").eval()
    seq_task = build_task(TaskConfig(kind="next_item", sequence_training=True), fs.spec)
    one_task = build_task(TaskConfig(kind="next_item"), fs.spec)
    t = fs.tensors
    train = fs.split_index("train")
    # a user whose whole training history fits in the window
    user = next(int(u) for u in t["user_row"][train].unique()
                if int(t["position"][train][t["user_row"][train] == u].max()) <= fs.spec.max_hist_len)
    mine = train[t["user_row"][train] == user]
    last = mine[t["position"][mine].argmax()][None]
    prefixes = mine[t["hist_rows"][mine, 0] > 0]
    with torch.no_grad():
        seq = seq_task.loss(model(fs.batch(last)), fs.batch(last))
        per = torch.stack([one_task.loss(model(fs.batch(i[None])), fs.batch(i[None]))
                           for i in prefixes])
    assert len(prefixes) == int(t["position"][last]) >= 2
    torch.testing.assert_close(seq, per.mean(), rtol=1e-5, atol=1e-6)


def test_sequence_samples_cover_every_training_target_once():
    from types import SimpleNamespace

    from llmrec.ranking.tasks import sequence_samples

    pos = torch.tensor(list(range(1, 121)) + list(range(1, 11)))
    users = torch.tensor([1] * 120 + [2] * 10)
    fs = SimpleNamespace(tensors={"user_row": users, "position": pos},
                         spec=SimpleNamespace(max_hist_len=50))
    kept = sequence_samples(fs, torch.arange(130))
    assert pos[kept].tolist() == [20, 70, 120, 10]


def test_fair_focused_attention_with_lambda_zero_is_standard_attention():
    from llmrec.ranking.models.sequential.fair import FocusedAttention

    torch.manual_seed(0)
    focused = FocusedAttention(8, 2, 0.0, focused=True, layer=1, sub_norm=False)
    plain = FocusedAttention(8, 2, 0.0, focused=False, layer=1)
    with torch.no_grad():  # the plain layer gets the focused one's first query/key maps
        plain.q.weight.copy_(focused.q.weight[:8])
        plain.q.bias.copy_(focused.q.bias[:8])
        plain.k.weight.copy_(focused.k.weight[:8])
        plain.k.bias.copy_(focused.k.bias[:8])
        plain.v.load_state_dict(focused.v.state_dict())
        plain.out.load_state_dict(focused.out.state_dict())
    x = torch.randn(3, 6, 8)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] + [False] * 5])
    with torch.no_grad():
        out_f = focused(x, mask, lam=torch.tensor(0.0)) - focused.out.bias
        out_p = plain(x, mask) - plain.out.bias
    # lambda 0 leaves softmax(Q1 K1^T) V, scaled by (1 - lambda_init) without the sub-norm
    torch.testing.assert_close(out_f, out_p * (1 - focused.lambda_init), rtol=1e-5, atol=1e-6)


def test_fair_scores_every_item_by_its_codes_and_never_perturbs_padding():
    from llmrec.data.splits import SplitConfig, make_split

    tables, _ = make_synthetic(30, 40, mean_len=8, seed=6)
    items = tables.frames["items"].copy()
    n = len(items)
    items["c1"] = [f"a{i // 8}" for i in range(n)]
    items["c2"] = [f"b{i % 8}" for i in range(n)]
    tables.frames["items"] = items
    split = make_split(tables.df("interactions"), SplitConfig(protocol="leave-last-out"))
    fs = build_features(tables, split, FeatureConfig(max_hist_len=6, use_item_id=False,
                                                     item_fields=["c1", "c2"],
                                                     item_multi_fields=[]))
    codes = fs.tensors["item_table"][1:]
    assert len({tuple(r) for r in codes.tolist()}) == codes.shape[0]  # unique per item
    torch.manual_seed(0)
    model = build_model("fair", fs.spec, embed_dim=8, heads=2, ffn=16, nr_weight=1.0,
                        mi_weight=0.5)
    batch = fs.batch(torch.arange(20))
    out = model(batch)
    assert out["items"].shape[0] == fs.n_items and torch.isfinite(out["items"]).all()
    assert {"model_loss", "aux_loss"} <= set(out)
    # the score of item i is sum_k of the code heads' logits for its codes (up to a constant)
    model.eval()
    with torch.no_grad():
        h = model._encode(batch["hist_item"], batch["hist_mask"])
        direct = sum(head(h)[:, fs.tensors["item_table"][:, j]] for j, head in
                     enumerate(model.heads))
        got = model(batch)
        torch.testing.assert_close(got["hidden"] @ got["items"].T, direct, rtol=1e-5, atol=1e-5)
    model.nr_rate = 1.0
    noisy = model.perturb(batch["hist_item"], batch["hist_mask"])
    pad = ~batch["hist_mask"]
    assert torch.equal(noisy[pad], batch["hist_item"][pad])
    assert (noisy[batch["hist_mask"]] >= 3).all()  # never a special id


def _window_targets(batch):
    hist = batch["hist_rows"]
    n = (hist > 0).sum(1)
    nxt = torch.cat([hist[:, 1:], torch.zeros_like(hist[:, :1])], 1)
    j = torch.arange(hist.shape[1])[None]
    return torch.where(j == (n - 1)[:, None], batch["item_row"][:, None], nxt), j < n[:, None]


def test_sequence_training_bce_is_one_negative_per_position_outside_the_users_items():
    from llmrec.data.splits import SplitConfig, make_split
    from llmrec.ranking.task_config import TaskConfig
    from llmrec.ranking.tasks import build_task

    tables, _ = make_synthetic(20, 30, mean_len=8, seed=4)
    split = make_split(tables.df("interactions"), SplitConfig(protocol="leave-last-out"))
    fs = build_features(tables, split, FeatureConfig(max_hist_len=12, max_multi_len=2))
    torch.manual_seed(0)
    model = build_model("sasrec", fs.spec, embed_dim=8, blocks=1, heads=2, dropout=0.0,
                        position="none").eval()
    task = build_task(TaskConfig(kind="next_item", loss="bce", sequence_training=True), fs.spec)
    train = fs.split_index("train")
    idx = train[fs.tensors["hist_rows"][train, 0] > 0][:16]
    batch = fs.batch(idx)
    with torch.no_grad():
        out = model(batch)
        torch.manual_seed(7)
        loss = task.loss(out, batch)
        states, items = out["hidden_seq"].float(), out["items"].float()
        target, valid = _window_targets(batch)
        torch.manual_seed(7)
        # one negative per valid position, drawn in row-major order of the positions
        neg = iter(torch.randint(1, items.shape[0], (int(valid.sum()),)).tolist())
        terms, excluded = [], 0
        for b in range(len(idx)):
            mine = set(batch["hist_rows"][b].tolist()) | {int(batch["item_row"][b])}
            for j in range(target.shape[1]):
                if not valid[b, j]:
                    continue
                s, k = states[b, j], next(neg)
                term = torch.nn.functional.softplus(-(s @ items[target[b, j]]))
                if k not in mine:
                    term = term + torch.nn.functional.softplus(s @ items[k])
                else:
                    excluded += 1
                terms.append(term)
        assert excluded, "the fixture should draw at least one negative among the user's items"
    torch.testing.assert_close(loss, torch.stack(terms).mean(), rtol=1e-5, atol=1e-6)
    # the sampled softmax over the same positions
    sampled = build_task(TaskConfig(kind="next_item", loss="sampled", n_negatives=5,
                                    sequence_training=True), fs.spec)
    with torch.no_grad():
        torch.manual_seed(3)
        ls = sampled.loss(out, batch)
        torch.manual_seed(3)
        negs = torch.randint(1, items.shape[0], (5,))
    h, t = states[valid], target[valid]
    logits = torch.cat([(h * items[t]).sum(1, keepdim=True),
                        (h @ items[negs].T).masked_fill(negs[None] == t[:, None], float("-inf"))], 1)
    torch.testing.assert_close(ls, torch.nn.functional.cross_entropy(
        logits, torch.zeros_like(t)), rtol=1e-5, atol=1e-6)
