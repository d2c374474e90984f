"""Feature encoding: past-only behaviour sequences, train-only vocabularies, unknown vs missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec.errors import DataError
from llmrec.ranking.features import (
    MISSING,
    PAD,
    UNK,
    FeatureConfig,
    FeatureSet,
    Vocab,
    build_features,
)
from llmrec.ranking.synthetic import SimpleSplit, Tables, make_synthetic


def _hand_made():
    """Two train users and one test user with known item orders."""
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "gender": ["F", "M", None]})
    items = pd.DataFrame({
        "item_id": [f"i{k}" for k in range(8)] + ["cold"],
        "title": ["t"] * 9,
        "genres": [["A"], ["B"], ["A", "B"], ["C"], ["A"], ["B"], ["C"], [], ["Zzz"]],
        "year": [1990.0, 1991.0, np.nan, 1990.0, 1992.0, 1993.0, 1990.0, 1990.0, 2020.0],
    })
    hist = []
    for u, seq in (("u1", ["i0", "i1", "i2", "i3", "i4", "i5"]), ("u2", ["i3", "i2", "i1", "i0"]),
                   ("u3", ["i6", "i7", "cold", "i1"])):
        for p, it in enumerate(seq):
            hist.append((u, it, float(3 + p % 3), 1000 + p, p))
    history = pd.DataFrame(hist, columns=["user_id", "item_id", "rating", "timestamp", "position"])
    cut = {"u1": (2, "train"), "u2": (1, "train"), "u3": (2, "test")}
    rows = history[[p >= cut[u][0] for u, p in zip(history.user_id, history.position)]].copy()
    rows["split"] = [cut[u][1] for u in rows.user_id]
    rows["label"] = (rows["rating"] >= 4).astype("int8")
    tables = Tables({"users": users, "items": items, "interactions": history})
    return tables, SimpleSplit(samples=rows.reset_index(drop=True), history=history)


def _item_names(fs: FeatureSet, rows: torch.Tensor) -> list:
    names = fs.vocabs["item_id"].values
    out = []
    for r in rows.tolist():
        vid = int(fs.tensors["item_table"][r, 0])
        out.append(None if r == 0 else (names[vid - 3] if vid >= 3 else f"<{vid}>"))
    return out


def test_history_is_past_only_and_post_padded():
    tables, split = _hand_made()
    fs = build_features(tables, split, FeatureConfig(max_hist_len=3))
    s = split.samples
    for k in range(len(s)):
        user, pos = s.user_id[k], s.position[k]
        seq = split.history[split.history.user_id == user].sort_values("position")
        expected = seq[seq.position < pos].item_id.tolist()[-3:]
        rows = fs.tensors["hist_rows"][k]
        got_ids = [int(fs.tensors["item_table"][r, 0]) for r in rows.tolist() if r > 0]
        exp_ids = [fs.vocabs["item_id"].id(x) for x in expected]
        assert got_ids == exp_ids, (user, pos)
        # valid slots first, padding after; the mask marks exactly the valid ones
        n = len(expected)
        assert (rows[:n] > 0).all() and (rows[n:] == 0).all()
    # the target is never in its own history: u1 at position 2 sees i0, i1 only
    k = int(np.flatnonzero((s.user_id == "u1").to_numpy() & (s.position == 2).to_numpy())[0])
    assert _item_names(fs, fs.tensors["hist_rows"][k][:2]) == ["i0", "i1"]
    assert fs.tensors["position"][k] == 2


def test_vocab_from_train_unknown_and_missing():
    tables, split = _hand_made()
    fs = build_features(tables, split, FeatureConfig(max_hist_len=4))
    v = fs.vocabs
    # i6, i7 and cold appear only for the test user: their ids are unknown
    for it in ("i6", "i7", "cold"):
        assert v["item_id"].id(it) == UNK
    assert v["user_id"].id("u3") == UNK
    # a cold item keeps its attributes: its row has the year id (2020 unseen -> unknown) and genres
    names = pd.Index(pd.unique(pd.concat([tables.df("items").item_id, split.history.item_id])))
    cold_row = names.get_loc("cold") + 1
    assert fs.tensors["item_table"][cold_row, 0] == UNK
    assert fs.tensors["item_table"][cold_row, 1] == UNK  # year 2020 not in train items
    assert fs.tensors["item_multi.genres"][cold_row, 0] == UNK  # genre Zzz not in train
    i2_row = names.get_loc("i2") + 1
    assert fs.tensors["item_table"][i2_row, 1] == MISSING  # null year
    assert fs.tensors["item_multi.genres"][i2_row, :2].tolist() == [v["item.genres"].id("A"),
                                                                   v["item.genres"].id("B")]
    assert fs.tensors["item_multi.genres"][i2_row, 2:].eq(PAD).all()
    # i7 has an empty genre list: missing, not padding
    assert fs.tensors["item_multi.genres"][names.get_loc("i7") + 1, 0] == MISSING
    # u3's gender is null -> missing; years 1990 and 1990.0 share one entry
    assert v["user.gender"].id(None) == MISSING
    assert v["item.year"].id(1990) == v["item.year"].id(1990.0) == v["item.year"].id("1990")
    assert fs.spec.item_fields[0] == ("item_id", len(v["item_id"]))


def test_vocab_specials_and_min_count():
    voc = Vocab.build(["a", "b", "a", None, float("nan"), ""], min_count=2)
    assert voc.values == ["a"]
    assert voc.id("a") == 3 and voc.id("b") == UNK and voc.id(None) == MISSING
    assert voc.encode(["a", None, "zz"]).tolist() == [3, MISSING, UNK]
    assert len(voc) == 4


def test_batch_shapes_save_load_and_dense(tmp_path):
    tables, split = make_synthetic(40, 30, mean_len=12, seed=1)
    fs = build_features(tables, split, FeatureConfig(max_hist_len=5, max_multi_len=3))
    n_items = fs.tensors["item_table"].shape[0]
    fs.add_dense("item_kn", torch.randn(n_items, 7), level="item")
    fs.add_dense("user_kn", torch.randn(fs.tensors["user_table"].shape[0], 4), level="user")
    idx = torch.arange(6)
    b = fs.batch(idx)
    assert b["user"].shape == (6, fs.spec.n_user_fields)
    assert b["hist_item"].shape == (6, 5, len(fs.spec.item_fields))
    assert b["hist_multi"]["genres"].shape == (6, 5, 3)
    assert b["dense"]["item_kn"].shape == (6, 7) and b["dense"]["user_kn"].shape == (6, 4)
    assert fs.spec.dense == {"item_kn": 7, "user_kn": 4}
    fs.save(tmp_path / "fs")
    assert (tmp_path / "fs" / "vocabs.json").is_file()
    back = FeatureSet.load(tmp_path / "fs")
    assert back.spec == fs.spec
    assert back.vocabs["item_id"].values == fs.vocabs["item_id"].values
    for k, v in fs.tensors.items():
        assert torch.equal(back.tensors[k], v), k
    with pytest.raises(DataError, match="expected shape"):
        fs.add_dense("bad", torch.randn(3, 2), level="item")


def test_history_ratings_can_be_left_out():
    tables, split = _hand_made()
    with_r = build_features(tables, split, FeatureConfig(max_hist_len=3))
    without = build_features(tables, split, FeatureConfig(max_hist_len=3, use_hist_rating=False))
    assert with_r.tensors["hist_rating"][with_r.tensors["hist_rows"] > 0].ge(3).all()
    assert without.tensors["hist_rating"].eq(PAD).all()
    assert torch.equal(with_r.tensors["hist_rows"], without.tensors["hist_rows"])
