"""The ML-1M entire-space proxy (llmrec.data.ml1m_ctcvr) on a hand-made ratings frame, and a
one-epoch smoke of bench/esmm_ml1m_proxy.py's training function on it."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec.data.ml1m_ctcvr import Ml1mCtcvrConfig, ml1m_ctcvr_from, proxy_samples
from llmrec.data.tables import RecData, table_from_pandas
from llmrec.errors import ConfigError, DataError
from llmrec.ranking.features import build_features

from conftest import load_bench

N_ITEMS = 40


def _ratings(n_users=30, per_user=10, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        items = rng.choice(np.arange(1, N_ITEMS + 1), per_user, replace=False)
        t0 = 1_000_000 + 1000 * u
        for j, i in enumerate(items):
            rows.append((str(u), str(i), float(rng.integers(1, 6)), t0 + 10 * j))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def _recdata(ratings):
    users = pd.DataFrame({"user_id": sorted(ratings["user_id"].unique(), key=int)})
    users = users.assign(gender=["F", "M"] * (len(users) // 2) + ["F"] * (len(users) % 2),
                         age=[18 + (int(u) % 3) * 7 for u in users["user_id"]],
                         occupation=[f"occ{int(u) % 4}" for u in users["user_id"]],
                         zip=[f"{int(u) % 5:05d}" for u in users["user_id"]])
    items = pd.DataFrame({"item_id": [str(i) for i in range(1, N_ITEMS + 1)],
                          "title": [f"m{i}" for i in range(1, N_ITEMS + 1)],
                          "genres": [["Drama"] if i % 2 else ["Comedy", "Drama"]
                                     for i in range(1, N_ITEMS + 1)],
                          "year": [1990 + i % 7 for i in range(1, N_ITEMS + 1)]})
    return RecData(name="tiny", tables={"interactions": table_from_pandas(ratings),
                                        "users": table_from_pandas(users),
                                        "items": table_from_pandas(items)})


def test_negatives_are_unrated_distinct_and_counted():
    ratings = _ratings()
    s, info = proxy_samples(ratings, Ml1mCtcvrConfig(neg_ratio=1.0))
    rated = set(zip(ratings["user_id"], ratings["item_id"]))
    neg = s[s["click"] == 0]
    assert len(neg) == len(ratings) == info["sampled_impressions"]
    assert not any((u, i) in rated for u, i in zip(neg["user_id"], neg["item_id"]))
    assert not neg.duplicated(["user_id", "item_id"]).any()
    assert (neg.groupby("user_id").size() == 10).all()
    # every impression is one (user, item) pair: rated ones and sampled ones never overlap
    assert not s.duplicated(["user_id", "item_id"]).any()
    # neg_ratio 2: twice the ratings per user
    s2, _ = proxy_samples(ratings, Ml1mCtcvrConfig(neg_ratio=2.0))
    assert (s2[s2["click"] == 0].groupby("user_id").size() == 20).all()


def test_labels_are_click_rated_and_conversion_rating_at_least_4():
    ratings = _ratings()
    s, info = proxy_samples(ratings, Ml1mCtcvrConfig())
    merged = s.merge(ratings, on=["user_id", "item_id"], how="left", suffixes=("", "_r"))
    is_rated = merged["rating"].notna()
    assert (merged["click"] == is_rated.astype(float)).all()
    assert (merged["label"] == merged["click"]).all()
    assert (merged.loc[is_rated, "conversion"]
            == (merged.loc[is_rated, "rating"] >= 4).astype(float)).all()
    assert (merged.loc[~is_rated, "conversion"] == 0).all()
    assert (s["conversion"] <= s["click"]).all()
    total = {k: sum(info["counts"][sp][k] for sp in info["counts"])
             for k in ("impressions", "clicks", "conversions")}
    assert total == {"impressions": len(s), "clicks": len(ratings),
                     "conversions": int((ratings["rating"] >= 4).sum())}
    # a different threshold changes the conversions and nothing else
    s5, _ = proxy_samples(ratings, Ml1mCtcvrConfig(convert_min_rating=5))
    assert int(s5["conversion"].sum()) == int((ratings["rating"] >= 5).sum())
    assert s5["item_id"].tolist() == s["item_id"].tolist()


def test_splits_are_per_user_by_time_and_negatives_follow_a_rated_event():
    ratings = _ratings()
    s, _ = proxy_samples(ratings, Ml1mCtcvrConfig())
    order = {"train": 0, "valid": 1, "test": 2}
    pos = s[s["click"] == 1]
    for u, g in pos.groupby("user_id"):
        g = g.sort_values("timestamp", kind="stable")
        ranks = g["split"].map(order).to_numpy()
        assert (np.diff(ranks) >= 0).all(), u  # train before valid before test in time
        assert list(g["split"].value_counts().sort_index().items()) == \
            [("test", 1), ("train", 8), ("valid", 1)]
    events = set(zip(pos["user_id"], pos["timestamp"], pos["split"]))
    neg = s[s["click"] == 0]
    assert all(e in events for e in zip(neg["user_id"], neg["timestamp"], neg["split"]))
    assert set(neg["split"]) == {"train", "valid", "test"}


def test_popularity_and_uniform_sampling_are_seeded():
    ratings = _ratings()
    a, _ = proxy_samples(ratings, Ml1mCtcvrConfig(seed=3))
    b, _ = proxy_samples(ratings, Ml1mCtcvrConfig(seed=3))
    c, _ = proxy_samples(ratings, Ml1mCtcvrConfig(seed=4))
    d, info = proxy_samples(ratings, Ml1mCtcvrConfig(seed=3, negatives="uniform"))
    assert a.equals(b)
    assert not a["item_id"].equals(c["item_id"])
    assert not a["item_id"].equals(d["item_id"])
    assert "uniformly" in info["negatives"]


def test_popularity_sampling_follows_popularity():
    # item "1" is rated by every user but the last ones; popular items are drawn more often
    rows = [(str(u), "1", 5.0, u) for u in range(1, 181)]
    rows += [(str(u), str(2 + u % 3), 3.0, 1000 + u) for u in range(1, 301)]
    rows += [(str(u), str(10 + u % 20), 2.0, 2000 + u) for u in range(1, 301)]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    s, _ = proxy_samples(ratings, Ml1mCtcvrConfig(seed=0))
    neg = s[(s["click"] == 0) & (s["user_id"].astype(int) > 180)]
    share_1 = (neg["item_id"] == "1").mean()
    su, _ = proxy_samples(ratings, Ml1mCtcvrConfig(seed=0, negatives="uniform"))
    negu = su[(su["click"] == 0) & (su["user_id"].astype(int) > 180)]
    assert share_1 > 3 * (negu["item_id"] == "1").mean()


def test_a_user_short_of_unrated_items_gets_the_whole_pool():
    # user 1 rated 8 of the 9 catalogue items: 8 negatives asked, 1 unrated item left
    rows = [("1", str(i), 4.0, i) for i in range(1, 9)] + [("2", "1", 4.0, 1),
                                                           ("2", "2", 1.0, 2),
                                                           ("2", "9", 5.0, 3)]
    ratings = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    s, info = proxy_samples(ratings, Ml1mCtcvrConfig())
    assert info["users_short_of_negatives"] == 1
    assert s[(s["user_id"] == "1") & (s["click"] == 0)]["item_id"].tolist() == ["9"]
    neg2 = s[(s["user_id"] == "2") & (s["click"] == 0)]["item_id"]
    assert len(neg2) == 3 and neg2.nunique() == 3 and set(neg2) <= {str(i) for i in range(3, 9)}


def test_errors_name_the_problem():
    with pytest.raises(DataError, match="lack column"):
        proxy_samples(pd.DataFrame({"user_id": ["1"], "item_id": ["2"]}))
    dup = pd.DataFrame({"user_id": ["1", "1"], "item_id": ["2", "2"], "rating": [3.0, 4.0],
                        "timestamp": [1, 2]})
    with pytest.raises(DataError, match="repeated"):
        proxy_samples(dup)
    with pytest.raises(ConfigError, match="neg_ratio"):
        Ml1mCtcvrConfig(neg_ratio=-1)
    with pytest.raises(ConfigError, match="negatives"):
        Ml1mCtcvrConfig(negatives="hard")


def test_features_hold_neither_ratings_nor_timestamps():
    ratings = _ratings()
    data, split, fcfg = ml1m_ctcvr_from(_recdata(ratings), Ml1mCtcvrConfig())
    assert fcfg.max_hist_len == 0 and not fcfg.use_hist_rating and not fcfg.timestamps
    assert fcfg.labels == ["click", "conversion"]
    fs = build_features(data, split, fcfg)
    names = [n for n, _ in fs.spec.user_fields + fs.spec.item_fields + fs.spec.context_fields]
    assert names == ["user_id", "gender", "age", "occupation", "zip", "item_id", "year"]
    assert not fs.spec.dense and not any("time" in k for k in fs.tensors)
    # the encoded inputs do not change when the timestamps and ratings do (labels aside)
    shuffled = split.samples.assign(timestamp=np.random.default_rng(1).permutation(
        split.samples["timestamp"].to_numpy()))
    fs2 = build_features(data, type(split)(**{**split.__dict__, "samples": shuffled}), fcfg)
    inputs = [k for k in fs.tensors if not k.startswith(("label", "split"))]
    assert inputs and all(torch.equal(fs.tensors[k], fs2.tensors[k]) for k in inputs)
    # the splits of the features are those of the samples
    for name in ("train", "valid", "test"):
        assert fs.split_index(name).numel() == int((split.samples["split"] == name).sum())
        assert split.info["counts"][name]["impressions"] == fs.split_index(name).numel()


def test_bench_metrics_and_clicked_view():
    bench = load_bench("esmm_ml1m_proxy")
    data, split, fcfg = ml1m_ctcvr_from(_recdata(_ratings()), Ml1mCtcvrConfig())
    fs = build_features(data, split, fcfg)
    view = bench.clicked_only(fs)
    for name in ("train", "valid", "test"):
        idx = view.split_index(name)
        assert idx.numel() > 0 and (fs.labels("click")[idx] == 1).all()
    assert torch.equal(view.labels(), fs.labels("conversion"))
    assert torch.equal(fs.labels(), fs.labels("click"))  # the original is untouched
    test = fs.split_index("test")
    click, conv = fs.labels("click")[test], fs.labels("conversion")[test]
    # perfect scores: pCTR = click, pCVR = conversion (as logits)
    m = bench.test_metrics(fs, "test", (click * 20 - 10).double(), (conv * 20 - 10).double())
    assert m == {"ctr_auc": 1.0, "cvr_auc_entire": 1.0, "cvr_auc_clicked": 1.0,
                 "ctcvr_auc": 1.0}
    # a pCVR that ranks unclicked impressions high loses entire-space AUC, not clicked AUC
    bad = torch.where(click > 0.5, conv * 20 - 10, torch.full_like(conv, 20.0)).double()
    m2 = bench.test_metrics(fs, "test", (click * 20 - 10).double(), bad)
    assert m2["cvr_auc_clicked"] == 1.0 and m2["cvr_auc_entire"] < 0.5


def test_bench_one_epoch_smoke():
    torch.set_num_threads(1)
    bench = load_bench("esmm_ml1m_proxy")
    data, split, fcfg = ml1m_ctcvr_from(_recdata(_ratings()), Ml1mCtcvrConfig())
    fs = build_features(data, split, fcfg)
    args = SimpleNamespace(embed_dim=4, batch_size=64, epochs=1, patience=1, lr=1e-2)
    res = bench.run_seed(fs, 0, args)
    assert set(res) == {"ctr", "esmm", "cvr_clicked"}
    for model in ("esmm", "cvr_clicked"):
        m = res[model]["metrics"]
        assert all(math.isfinite(m[k]) for k in ("cvr_auc_entire", "cvr_auc_clicked",
                                                 "ctcvr_auc")), (model, m)
    assert math.isfinite(res["ctr"]["metrics"]["ctr_auc"])
    assert res["esmm"]["train_rows"] == fs.split_index("train").numel()
    assert res["cvr_clicked"]["train_rows"] == int(
        (fs.labels("click")[fs.split_index("train")] == 1).sum())
    with pytest.raises(ValueError, match="ctr"):
        bench.run_seed(fs, 0, args, models=("cvr_clicked",))
