"""Split invariants: leakage safety, disjoint users, determinism, stored cutoffs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec.data.splits import Split, SplitConfig, make_split
from llmrec.errors import ConfigError, DataError


def _interactions(n_users=200, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(1, 80))
        ts = rng.integers(0, 10_000, size=n)  # ties included on purpose
        for t in ts:
            rows.append((f"u{u}", f"i{int(rng.integers(0, 300))}", float(rng.integers(1, 11)) / 2, int(t)))
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)  # file order is not time order


@pytest.fixture(scope="module")
def inter():
    return _interactions()


def test_kar_cutoff_and_no_sample_at_or_before_it(inter):
    s = make_split(inter, SplitConfig(seed=3))
    n_total = inter.groupby("user_id").size()
    cut = s.cutoffs.set_index("user_id")
    expected = np.minimum((n_total + 1) // 2, 30)
    assert (cut.loc[n_total.index, "n_lm"] == expected).all()
    assert (cut.loc[n_total.index, "n_total"] == n_total).all()
    merged = s.samples.merge(s.cutoffs[["user_id", "n_lm"]], on="user_id")
    assert (merged["position"] >= merged["n_lm"]).all()
    # exactly the post-cutoff interactions become samples
    assert len(s.samples) == int((n_total - expected).sum())
    # a sample's LM history strictly precedes it in time order
    for uid in ["u0", "u7", "u42"]:
        lm = s.lm_history(uid)
        later = s.samples[s.samples.user_id == uid]
        if len(lm) and len(later):
            assert lm["timestamp"].max() <= later["timestamp"].min()
            assert set(lm["position"]).isdisjoint(set(later["position"]))


def test_labels_and_positions_follow_time(inter):
    s = make_split(inter, SplitConfig(label_threshold=4.0))
    assert ((s.samples["rating"] >= 4.0).astype("int8") == s.samples["label"]).all()
    h = s.history
    for uid, g in h.groupby("user_id"):
        assert list(g["position"]) == list(range(len(g)))
        assert g["timestamp"].is_monotonic_increasing


def test_users_disjoint_and_fractions(inter):
    s = make_split(inter, SplitConfig(seed=0, valid_frac=0.1, test_frac=0.2))
    by = {k: set(s.cutoffs.loc[s.cutoffs.split == k, "user_id"]) for k in ("train", "valid", "test")}
    assert not (by["train"] & by["valid"]) and not (by["train"] & by["test"]) and not (by["valid"] & by["test"])
    assert len(by["test"]) == 40 and len(by["valid"]) == 20 and len(by["train"]) == 140
    for k in ("train", "valid", "test"):
        assert set(s.part(k)["user_id"]) <= by[k]


def test_deterministic_and_seed_sensitive(inter):
    a = make_split(inter, SplitConfig(seed=5))
    b = make_split(inter.sample(frac=1.0, random_state=9), SplitConfig(seed=5))  # row order irrelevant
    pd.testing.assert_frame_equal(a.samples, b.samples)
    pd.testing.assert_frame_equal(a.cutoffs, b.cutoffs)
    assert a.fingerprint == b.fingerprint
    c = make_split(inter, SplitConfig(seed=6))
    assert not a.cutoffs["split"].equals(c.cutoffs["split"])
    assert a.fingerprint != c.fingerprint


def test_save_load_roundtrip(tmp_path, inter):
    s = make_split(inter)
    s.save(tmp_path / "sp")
    t = Split.load(tmp_path / "sp")
    pd.testing.assert_frame_equal(s.samples, t.samples)
    assert t.config == s.config and t.fingerprint == s.fingerprint
    assert (tmp_path / "sp" / "llmrec_meta.json").is_file()
    assert not list(tmp_path.glob(".sp.tmp-*"))


def test_leave_last_out(inter):
    s = make_split(inter, SplitConfig(protocol="leave-last-out"))
    n_total = inter.groupby("user_id").size()
    big = n_total[n_total >= 3].index
    test = s.part("test").set_index("user_id")
    valid = s.part("valid").set_index("user_id")
    assert set(test.index) == set(big) and set(valid.index) == set(big)
    assert (test.loc[big, "position"] == n_total[big] - 1).all()
    assert (valid.loc[big, "position"] == n_total[big] - 2).all()
    assert len(s.samples) == len(inter)


def test_bad_inputs(inter):
    with pytest.raises(ValueError):
        SplitConfig(valid_frac=0.6, test_frac=0.5)
    from llmrec.config import load_config
    with pytest.raises(ConfigError, match="sum to less than 1"):
        load_config(SplitConfig, None, ["--valid_frac=0.6", "--test_frac=0.5"])
    bad = inter.copy()
    bad.loc[0, "timestamp"] = None
    with pytest.raises(DataError, match="timestamp"):
        make_split(bad)
    with pytest.raises(DataError, match="not a saved split"):
        Split.load("/nonexistent")


@pytest.mark.slow
def test_kar_split_on_ml1m_users_1_2999():
    from conftest import shared_path

    from llmrec.data.loaders import DataConfig, load_data

    data = load_data(DataConfig(name="movielens-1m", path=str(shared_path("movielens-1m"))))
    s = make_split(data, SplitConfig(seed=42))
    assert s.cutoffs["user_id"].nunique() == 2999
    # every ML-1M user has >= 20 ratings, so every cutoff hits min((n+1)//2, 30) with n >= 20
    assert s.cutoffs["n_lm"].between(10, 30).all()
    assert len(s.samples) == 487_650 - int(s.cutoffs["n_lm"].sum())
    merged = s.samples.merge(s.cutoffs[["user_id", "n_lm"]], on="user_id")
    assert (merged["position"] >= merged["n_lm"]).all()
    assert set(s.part("test")["user_id"]).isdisjoint(s.part("train")["user_id"])
