"""The RecBole export of bench/sequential_throughput.py: the atomic file holds exactly our
leave-one-out sequences (so RecBole's time order and split see the same data), and the import
stand-ins only fill in what is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmrec.errors import DataError
from llmrec.ranking.features import FeatureConfig, build_features

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import sequential_throughput as st  # noqa: E402


class _Data:
    def __init__(self, inter):
        self.inter = inter
        self.name = "tiny"

    def has(self, name):
        return name == "interactions"

    def df(self, name):
        return self.inter


def _features(rows, max_hist_len=3):
    from llmrec.data.splits import SplitConfig, make_split

    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).assign(rating=None)
    data = _Data(inter)
    split = make_split(data, SplitConfig(protocol="leave-last-out"))
    return build_features(data, split, FeatureConfig(max_hist_len=max_hist_len, use_user_id=False,
                                                     user_fields=[], item_fields=[],
                                                     item_multi_fields=[],
                                                     use_hist_rating=False))


# user "a" has a same-second tie (items 9 and 4 at t=20): the split orders ties by item id
ROWS = [("a", 7, 10), ("a", 9, 20), ("a", 4, 20), ("a", 5, 30), ("a", 2, 40),
        ("b", 4, 5), ("b", 7, 6), ("b", 3, 7), ("b", 9, 8),
        ("c", 5, 1), ("c", 2, 2), ("c", 7, 3), ("c", 4, 4), ("c", 3, 5), ("c", 9, 6)]


@pytest.fixture(scope="module")
def fs():
    return _features(ROWS)


def _expected():
    df = pd.DataFrame(ROWS, columns=["u", "i", "t"]).sort_values(["u", "t", "i"], kind="stable")
    return {u: [str(i) for i in g["i"]] for u, g in df.groupby("u")}


def test_sequences_are_the_split_order_over_all_splits(fs):
    seqs = st.user_sequences(fs)
    users, items = fs.row_ids("user"), fs.row_ids("item")
    got = {users[u - 1]: [items[r - 1] for r in rows] for u, rows in seqs.items()}
    assert got == _expected()


def test_atomic_file_reproduces_the_sequences_and_its_header(fs, tmp_path):
    path = st.export_atomic(fs, tmp_path, "tiny")
    assert path == tmp_path / "tiny" / "tiny.inter"
    lines = path.read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float"
    assert len(lines) == 1 + len(ROWS)
    back = st.read_atomic(path)
    users, items = fs.row_ids("user"), fs.row_ids("item")
    decoded = {users[int(u) - 1]: [items[int(r) - 1] for r in seq] for u, seq in back.items()}
    assert decoded == _expected()
    # timestamps are positions: unique per user, so no tie is left to RecBole's sort
    per_user = {}
    for ln in lines[1:]:
        u, _, t = ln.split("\t")
        per_user.setdefault(u, []).append(float(t))
    assert all(ts == list(map(float, range(len(ts)))) for ts in per_user.values())


def test_training_prefix_count_matches_the_leave_one_out_protocol(fs):
    # RecBole's augmentation: one sample per prefix of the train part (n - 2 items) with >= 1
    # item before it, i.e. n - 3 per user; ours: training samples with at least one behaviour
    train = fs.split_index("train")
    ours = int((fs.tensors["hist_rows"][train, 0] > 0).sum())
    assert ours == sum(len(s) - 3 for s in _expected().values())


def test_export_refuses_samples_that_are_not_every_interaction(fs):
    broken = type(fs)(fs.spec, dict(fs.tensors), fs.vocabs, fs.info)
    pos = broken.tensors["position"].clone()
    pos[0] += 7
    broken.tensors["position"] = pos
    with pytest.raises(DataError, match="leave-last-out"):
        st.user_sequences(broken)


def test_stand_ins_only_for_missing_modules(monkeypatch):
    # only these two: the real list would leave stand-ins for ray etc. in this test session
    monkeypatch.setattr(st, "_STUBS", {"llmrec_no_such_module": ["llmrec_no_such_module.sub"],
                                       "numpy": []})
    for name in ("llmrec_no_such_module", "llmrec_no_such_module.sub"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    stubbed = st.install_import_stubs()
    assert "llmrec_no_such_module" in stubbed and "numpy" not in stubbed
    from llmrec_no_such_module.sub import SummaryWriter  # type: ignore[import-not-found]

    w = SummaryWriter("somewhere")
    assert w.add_scalar("loss", 1.0, 0) is None
    assert sys.modules["numpy"] is np
    for name in ("llmrec_no_such_module", "llmrec_no_such_module.sub"):
        sys.modules.pop(name, None)
