"""SDIM (SimHash sampling, its separable BSE), UniMixer / UniMixing-Lite (mixing modes,
Sinkhorn, tau schedule, parameter counts) and RAR (the training-split retrieval index: leakage,
self-exclusion, recall list, reload); the contract test covers shapes and learning."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from llmrec.ranking.features import FeatureConfig, build_features
from llmrec.ranking.models.ctr.rar import RAR, RetrievalIndex
from llmrec.ranking.models.ctr.sdim import SDIM, BehaviourSequenceEncoder, last_valid
from llmrec.ranking.models.ctr.unimixer import (Mixer, UniMixer, UniMixingLite, head_transpose,
                                                sinkhorn)
from llmrec.ranking.synthetic import make_synthetic

from conftest import load_bench


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def features():
    tables, split = make_synthetic(n_users=120, n_items=60, mean_len=30, seed=0)
    return build_features(tables, split, FeatureConfig(max_hist_len=20,
                                                       user_fields=["gender", "age"]))


def _trained_embedding(model, seed=0):
    """Embeddings at a trained-like scale (the init std 1e-4 makes every hash the same)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embedding" in name:
                p.copy_(torch.randn(p.shape, generator=g))
    return model


# ------------------------------------------------------------------------------------------------
# SDIM


def test_last_valid_takes_the_most_recent_behaviours_oldest_first():
    hist = torch.tensor([[1, 2, 3, 4, 5, 0], [7, 8, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    got, keep = last_valid(hist, hist > 0, 3)
    assert got.shape == keep.shape == (3, 3)
    assert got[0].tolist() == [3, 4, 5] and keep[0].all()
    assert got[1, :2].tolist() == [7, 8] and keep[1].tolist() == [True, True, False]
    assert not keep[2].any()


def test_zero_hash_bits_give_the_masked_sum():
    g = torch.Generator().manual_seed(0)
    hist = torch.randn(4, 9, 6, generator=g)
    mask = torch.arange(9)[None] < torch.tensor([9, 3, 1, 0])[:, None]
    target = torch.randn(4, 6, generator=g)
    expected = (hist * mask[..., None]).sum(1)
    raw = BehaviourSequenceEncoder(6, num_hashes=3, hash_bits=0, normalise=False)
    assert torch.allclose(raw(target, hist, mask), expected, atol=1e-6)
    normed = BehaviourSequenceEncoder(6, num_hashes=3, hash_bits=0, normalise=True)
    assert torch.allclose(normed(target, hist, mask), F.normalize(expected, dim=-1), atol=1e-6)
    assert normed(target, hist, mask)[3].abs().sum() == 0  # empty history: zeros


def test_collision_rate_follows_the_angle():
    """P[same bucket] = (1 - angle / pi)^tau, estimated over many independent hash functions."""
    dim, tau = 16, 3
    bse = BehaviourSequenceEncoder(dim, num_hashes=4000, hash_bits=tau, seed=1)
    g = torch.Generator().manual_seed(2)
    t = torch.randn(dim, generator=g)
    other = torch.randn(dim, generator=g)
    other = other - (other @ t) / (t @ t) * t  # orthogonal to t
    for angle in (0.3, 1.0, 2.0):
        k = math.cos(angle) * t / t.norm() + math.sin(angle) * other / other.norm()
        rate = (bse.signatures(t) == bse.signatures(k)).float().mean().item()
        assert abs(rate - (1 - angle / math.pi) ** tau) < 0.03, (angle, rate)


def test_sdim_from_precomputed_buckets_equals_the_in_model_path(features):
    model = _trained_embedding(SDIM(copy.deepcopy(features.spec), embed_dim=8, hash_bits=2,
                                    short_seq_len=4)).eval()
    batch = features.batch(features.split_index("train")[:32])
    assert batch["hist_mask"].sum(1).max() > 8  # long enough for the short window to matter
    with torch.no_grad():
        direct = model(batch)["logit"]
        buckets = model.encode_behaviours(batch)
        assert buckets.shape == (32, 2, 4, features.spec.n_item_slots * 8)
        via_bse = model({**batch, "sdim_buckets": buckets})["logit"]
        # with the buckets, the long history is not needed: the last short_seq_len suffice
        short = _truncate(batch, 4)
        via_short = model({**short, "sdim_buckets": buckets})["logit"]
        without = model(short)["logit"]  # no buckets: only the short history's long term
    assert torch.allclose(direct, via_bse, atol=1e-5)
    assert torch.allclose(direct, via_short, atol=1e-5)
    assert not torch.allclose(direct, without, atol=1e-3)


def test_one_users_buckets_serve_every_candidate(features):
    model = _trained_embedding(SDIM(copy.deepcopy(features.spec), embed_dim=8)).eval()
    idx = features.split_index("train")[:16]
    batch = features.batch(idx)
    # every row: sample 0's user and history, another sample's candidate item
    one = {k: (v[:1].expand(16, *v.shape[1:]) if torch.is_tensor(v) and k.startswith(("hist", "user"))
               else v) for k, v in batch.items()}
    one["hist_multi"] = {m: v[:1].expand_as(v) for m, v in batch["hist_multi"].items()}
    with torch.no_grad():
        buckets = model.encode_behaviours({**one, **{k: v[:1] for k, v in one.items()
                                                      if torch.is_tensor(v)},
                                           "item_multi": {m: v[:1] for m, v in
                                                          batch["item_multi"].items()},
                                           "hist_multi": {m: v[:1] for m, v in
                                                          batch["hist_multi"].items()},
                                           "dense": {}})
        shared = model({**one, "sdim_buckets": buckets.expand(16, -1, -1, -1)})["logit"]
        direct = model(one)["logit"]
    assert torch.allclose(shared, direct, atol=1e-5)
    assert shared.std() > 0  # the candidates are told apart


def _truncate(batch, n):
    """The batch with its behaviour sequence cut to the last ``n`` valid behaviours."""
    mask = batch["hist_mask"]
    out = dict(batch)
    for key in ("hist_item", "hist_rating", "hist_rows"):
        out[key], keep = last_valid(batch[key], mask, n)
        out[key] = out[key] * (keep if out[key].dim() == 2 else keep[..., None])
    out["hist_multi"] = {m: last_valid(v, mask, n)[0] * keep[..., None]
                         for m, v in batch["hist_multi"].items()}
    out["hist_mask"] = keep
    return out


# ------------------------------------------------------------------------------------------------
# UniMixer


def test_sinkhorn_is_doubly_stochastic():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(12, 12, generator=g)
    sym = (w + w.T) / 2
    p = sinkhorn(sym, 5)  # tau 1, five iterations (the default)
    assert (p >= 0).all()
    assert torch.allclose(p.sum(0), torch.ones(12), atol=1e-3)
    assert torch.allclose(p.sum(1), torch.ones(12), atol=1e-3)
    # at the initial logits' scale (0.01) even the final temperature converges in five
    small = sinkhorn(sym * 0.01 / 0.05, 5)
    assert torch.allclose(small.sum(1), torch.ones(12), atol=1e-3)
    # sharp matrices (tau 0.05 on unit-scale logits) need many more iterations: the columns are
    # exact after each round, the rows converge slowly (measured: 0.63 after 5, 0.005 after 200)
    errs = [(sinkhorn(sym / 0.05, it).sum(1) - 1).abs().max().item() for it in (5, 50, 200)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.01
    assert torch.allclose(sinkhorn(sym / 0.05, 5).sum(0), torch.ones(12), atol=1e-5)


def test_tokenmixer_mode_is_rankmixers_head_transpose():
    T, b = 4, 3
    mixer = Mixer(T, T * b, b, mode="tokenmixer")
    x = torch.randn(5, T, T * b)
    expected = x.view(5, T, T, b).transpose(1, 2).reshape(5, T, T * b)
    assert torch.equal(mixer(x), expected)
    assert torch.equal(head_transpose(T, T) @ head_transpose(T, T), torch.eye(T * T))
    assert not list(mixer.parameters())


def test_attention_mode_is_softmax_attention_over_chunks():
    torch.manual_seed(0)
    mixer = Mixer(4, 8, 4, mode="attention")
    x = torch.randn(3, 4, 8)
    y = x.reshape(3, 8, 4)
    expected = F.scaled_dot_product_attention(mixer.q(y), mixer.k(y), y).reshape(3, 4, 8)
    assert torch.allclose(mixer(x), expected, atol=1e-5)


def test_unimixer_global_matrix_and_tau_schedule():
    torch.manual_seed(0)  # the peakedness check below fails for about 1 logit draw in 200
    mixer = Mixer(4, 8, 4, tau_end=0.05, anneal_steps=10)
    x = torch.randn(2, 4, 8)
    assert mixer.tau().item() == pytest.approx(1.0)
    mixer.eval()
    mixer(x)
    assert mixer.steps.item() == 0  # evaluation does not advance the schedule
    mixer.train()
    for _ in range(5):
        mixer(x)
    assert mixer.tau().item() == pytest.approx(1 - 0.95 * 0.5)
    for _ in range(20):
        mixer(x)
    assert mixer.tau().item() == pytest.approx(0.05)
    w = mixer.global_matrix()  # initial logits (scale 0.01) at the final temperature
    assert torch.allclose(w.sum(0), torch.ones(8), atol=1e-3)
    assert torch.allclose(w.sum(1), torch.ones(8), atol=1e-3)
    with torch.no_grad():
        mixer.global_logits.copy_(torch.randn(8, 8))
    # unit-scale logits at tau 0.05: close to a permutation (each row has one dominant entry)
    assert (mixer.global_matrix().max(1).values > 0.5).float().mean() > 0.5


def test_lite_parameter_counts():
    n_tok, dim, b, bases, rank = 4, 16, 8, 3, 2
    n = n_tok * dim // b
    full = Mixer(n_tok, dim, b)
    lite = Mixer(n_tok, dim, b, lite=True, n_bases=bases, rank=rank)
    assert sum(p.numel() for p in full.parameters()) == n * b * b + n * n
    assert sum(p.numel() for p in lite.parameters()) == bases * b * b + n * bases + 2 * n * rank
    assert lite.global_matrix().shape == (n, n)
    assert torch.linalg.matrix_rank(lite.global_matrix().detach()) <= rank


def test_unimixer_models_score_and_reject_bad_shapes(features):
    spec = copy.deepcopy(features.spec)
    batch = features.batch(features.split_index("train")[:8])
    for cls in (UniMixer, UniMixingLite):
        for mode in ("unimixer", "attention"):
            out = cls(spec, embed_dim=8, n_tokens=4, token_dim=16, chunk_size=8, ffn=16,
                      mode=mode)(batch)
            assert out["logit"].shape == (8,) and torch.isfinite(out["logit"]).all()
    assert UniMixingLite(spec, embed_dim=8).blocks.__len__() == 4
    with pytest.raises(ValueError, match="chunk_size"):
        UniMixer(spec, embed_dim=8, n_tokens=3, token_dim=10, chunk_size=4)
    with pytest.raises(ValueError, match="tokenmixer"):
        UniMixer(spec, embed_dim=8, n_tokens=4, token_dim=16, chunk_size=8, mode="tokenmixer")


# ------------------------------------------------------------------------------------------------
# RAR


def _rar(features, **kw):
    torch.manual_seed(0)
    args = {"embed_dim": 8, "attn_dim": 8, "k_users": 5, "k_items": 5, "neighbours": 6,
            "base_args": {"hidden": (16,)}, **kw}
    return RAR(copy.deepcopy(features.spec), **args)


def _scrambled(features, seed=1):
    """The features with every valid / test sample's item, history and label replaced."""
    fs = copy.copy(features)
    fs.tensors = dict(features.tensors)
    g = torch.Generator().manual_seed(seed)
    other = torch.cat([features.split_index("valid"), features.split_index("test")])
    n_rows = features.tensors["item_table"].shape[0]
    for key in ("item_row", "hist_rows", "label", "position", "user_row"):
        t = fs.tensors[key].clone()
        shape = (other.numel(), *t.shape[1:])
        if key == "label":
            t[other] = torch.randint(0, 2, shape, generator=g).float()
        elif key == "user_row":
            t[other] = torch.randint(1, fs.tensors["user_table"].shape[0], shape, generator=g)
        else:
            t[other] = torch.randint(1, n_rows if key != "position" else 99, shape, generator=g)
        fs.tensors[key] = t
    return fs


def test_index_reads_the_training_split_only(features):
    idx = RetrievalIndex.from_features(features, neighbours=6)
    alt = RetrievalIndex.from_features(_scrambled(features), neighbours=6)
    for name, t in idx.tensors().items():
        assert torch.equal(t, alt.tensors()[name]), name  # valid / test never read
    tr = features.split_index("train")
    t = features.tensors
    train_users = set(t["user_row"][tr].tolist())
    assert set(idx.pool_rows.tolist()) == train_users
    other = torch.cat([features.split_index("valid"), features.split_index("test")])
    assert not set(idx.pool_rows.tolist()) & set(t["user_row"][other].tolist())
    # every neighbour pair co-occurs in a training sample (its item and one of its history items)
    pairs = set()
    for item, hist in zip(t["item_row"][tr].tolist(), t["hist_rows"][tr].tolist()):
        for h in hist:
            if h and h != item:
                pairs.update({(item, h), (h, item)})
    got = {(i, j) for i, row in enumerate(idx.neighbour_rows.tolist()) for j in row if j}
    assert got and got <= pairs
    # pool histories are training interactions of that user
    seen = {}
    for u, item, hist in zip(t["user_row"][tr].tolist(), t["item_row"][tr].tolist(),
                             t["hist_rows"][tr].tolist()):
        seen.setdefault(u, set()).update([item, *hist])
    for u, hist in zip(idx.pool_rows.tolist(), idx.pool_hist.tolist()):
        assert set(h for h in hist if h) <= seen[u]


def test_neighbours_are_ranked_by_normalised_cooccurrence(features):
    idx = RetrievalIndex.from_features(features, neighbours=3)
    tr = features.split_index("train")
    t = features.tensors
    n = t["item_table"].shape[0]
    counts = torch.zeros(n, n)
    for item, hist in zip(t["item_row"][tr].tolist(), t["hist_rows"][tr].tolist()):
        for h in hist:
            if h and h != item:
                counts[item, h] += 1
                counts[h, item] += 1
    score = counts / (counts.sum(1)[:, None] * counts.sum(1)[None]).clamp_min(1).sqrt()
    for i in range(1, n):
        row = [j for j in idx.neighbour_rows[i].tolist() if j]
        if not row:
            assert counts[i].sum() == 0
            continue
        best = score[i].max().item()
        assert score[i, row[0]].item() == pytest.approx(best)
        vals = [score[i, j].item() for j in row]
        assert vals == sorted(vals, reverse=True)


def test_retrieval_excludes_the_user_and_the_target(features):
    model = _trained_embedding(_rar(features, k_users=200))  # more than the pool: all of it
    model.prepare(features)
    model.eval()
    batch = features.batch(features.split_index("train")[:40])
    with torch.no_grad():
        r = model.retrieve(batch)
    chosen = model.pool_rows[r["pool_index"]]
    assert not (chosen == batch["user_row"][:, None])[r["users_ok"]].any()
    assert (r["users_ok"].sum(1) == model.pool_rows.numel() - 1).all()  # all but the user
    items = r["item_rows"]
    assert not (items == batch["item_row"][:, None])[r["items_ok"]].any()
    for row, ok in zip(items.tolist(), r["items_ok"].tolist()):
        picked = [i for i, o in zip(row, ok) if o]
        assert len(picked) == len(set(picked)) and 0 not in picked


def test_recall_comes_from_the_last_behaviours_and_pools_are_capped(features):
    model = _trained_embedding(_rar(features, recall_from=1, pool_hist_len=4, k_items=50))
    model.prepare(features)
    full = RetrievalIndex.from_features(features, neighbours=6)
    assert model.pool_hist.shape[1] == 4
    # the capped pool holds the last 4 items of each full pool history
    for short, long in zip(model.pool_hist.tolist(), full.pool_hist.tolist()):
        items = [i for i in long if i]
        assert [i for i in short if i] == items[-4:]
    batch = features.batch(features.split_index("train")[:40])
    with torch.no_grad():
        r = model.eval().retrieve(batch)
    n = batch["hist_mask"].sum(1)
    for b in range(40):
        picked = set(r["item_rows"][b][r["items_ok"][b]].tolist())
        if n[b] == 0:
            assert not picked
            continue
        last = int(batch["hist_rows"][b, n[b] - 1])
        allowed = set(model.neighbour_rows[last].tolist()) - {0, int(batch["item_row"][b])}
        assert picked == allowed  # k_items 50 > 6 neighbours: all of them, nothing else


def test_rar_index_survives_a_reload_and_drives_the_fields(features):
    model = _trained_embedding(_rar(features))
    model.prepare(features)
    model.eval()
    batch = features.batch(features.split_index("test")[:16])
    with torch.no_grad():
        before = model(batch)["logit"]
    fresh = _rar(features)
    assert not fresh.has_index
    state = model.state_dict()
    # the backbone's embedding is the model's own, saved once
    assert fresh.embedding is fresh.base.embedding
    assert not [k for k in state if k.startswith("base.embedding.")]
    fresh.load_state_dict(state)
    fresh.eval()
    with torch.no_grad():
        assert torch.allclose(fresh(batch)["logit"], before, atol=1e-6)
        # an index of other users changes the scores: the retrieved sets are used
        fresh.pool_hist = fresh.pool_hist.roll(1, 0)
        assert not torch.allclose(fresh(batch)["logit"], before, atol=1e-4)


def test_rar_ablations_and_training_outputs(features):
    batch = features.batch(features.split_index("train")[:16])
    for use, fields in (("u2u", ["rar_u2u"]), ("i2i", ["rar_i2i"]),
                        ("both", ["rar_u2u", "rar_i2i"])):
        model = _rar(features, use=use)
        model.prepare(features)
        assert [f for f in model.base.spec.dense] == fields
        out = model.train()(batch)
        assert out["logit"].shape == (16,)
        assert ("aux_loss" in out) == (use != "u2u")
        loss = F.binary_cross_entropy_with_logits(out["logit"], batch["label"])
        loss = loss + out.get("aux_loss", 0.0)
        loss.backward()
        used = [n for n, p in model.named_parameters() if p.grad is None]
        assert not used, f"{use}: parameters without a gradient: {used}"
    with pytest.raises(ValueError, match="base"):
        _rar(features, base="sasrec")


def test_run_train_prepares_the_index_and_load_run_keeps_it(features, tmp_path):
    from llmrec.ranking.pipeline import RankConfig, run_train
    from llmrec.ranking.runs import load_run

    cfg = RankConfig(model="rar", output_dir=str(tmp_path / "run"),
                     model_args={"embed_dim": 8, "attn_dim": 8, "base_args": {"hidden": [16]}})
    cfg.train.device, cfg.train.epochs, cfg.train.batch_size = "cpu", 1, 256
    cfg.train.checkpoint = False
    res = run_train(cfg, features=features)
    assert res["test"]["auc"] > 0
    run = load_run(tmp_path / "run")
    assert run.model.has_index
    assert run.model.pool_rows.numel() == len(set(
        features.tensors["user_row"][features.split_index("train")].tolist()))


# ------------------------------------------------------------------------------------------------
# bench/sdim_long_history.py: shorter histories cut from one long build


def test_truncated_history_equals_a_build_at_that_length():
    bench = load_bench("sdim_long_history")
    tables, split = make_synthetic(n_users=80, n_items=50, mean_len=40, seed=1)
    cfg = {"user_fields": ["gender", "age"], "timestamps": True}
    long = build_features(tables, split, FeatureConfig(max_hist_len=30, **cfg))
    assert (long.tensors["hist_rows"] > 0).sum(1).max() > 8
    for length in (8, 30):
        cut = bench.truncate_history(long, length)
        ref = build_features(tables, split, FeatureConfig(max_hist_len=length, **cfg))
        assert cut.spec.max_hist_len == length
        for key in ("hist_rows", "hist_rating", "hist_time"):
            assert torch.equal(cut.tensors[key], ref.tensors[key]), (length, key)
    with pytest.raises(ValueError, match="cannot cut"):
        bench.truncate_history(long, 31)
