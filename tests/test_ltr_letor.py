"""LETOR / SVMlight files, 5-fold cross-validation over the MSLR / LETOR layout, the cascade click
model, and the FINN.no slates ``data.npz`` loader, all on fixtures written here in those formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmrec.errors import DataError
from llmrec.ltr.clicks import cascade_probabilities, click_probability, \
    simulate_cascade_clicks, simulate_sessions
from llmrec.ltr.letor import (cross_validate, letor_folds, load_fold, read_svmlight, to_lists,
                              write_svmlight)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


MQ_STYLE = """\
2 qid:10032 1:0.056537 2:0.000000 3:0.666667 4:1.000000 5:0.067138 #docid = GX029-35-5894638 inc = 0.0119881192468859 prob = 0.139842
0 qid:10032 1:0.279152 2:0.000000 3:0.000000 4:0.000000 5:0.279152 #docid = GX030-77-6315042 inc = 1 prob = 0.341364

1 qid:10033 2:0.5 5:-1.25e-3
# a comment-only line
0 qid:10033 4:7
"""


def test_reads_dense_and_sparse_lines_with_comments(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text(MQ_STYLE)
    f = read_svmlight(p)
    assert f.labels.tolist() == [2, 0, 1, 0]
    assert f.qids == ["10032", "10032", "10033", "10033"]
    assert f.n_features == 5
    assert f.x[0].tolist() == pytest.approx([0.056537, 0, 0.666667, 1.0, 0.067138])
    assert f.x[2].tolist() == pytest.approx([0, 0.5, 0, 0, -1.25e-3])
    assert f.x[3].tolist() == [0, 0, 0, 7, 0]
    assert f.comments[0].startswith("docid = GX029-35-5894638") and f.comments[3] == ""
    assert read_svmlight(p, n_features=8).n_features == 8
    with pytest.raises(DataError, match=r"train\.txt, line 1: feature index 5 exceeds the 4"):
        read_svmlight(p, n_features=4)
    lists = to_lists(f)
    assert lists.x.shape == (2, 2, 5) and lists.mask.all() and lists.max_grade == 2
    assert lists.query_ids == ["10032", "10033"]
    # QueryLevelNorm: feature 1 of query 10032 -> 0, 1; a constant feature -> 0
    assert lists.x[0, :, 0].tolist() == [0, 1] and lists.x[0, :, 1].tolist() == [0, 0]


@pytest.mark.parametrize("sparse", [True, False])
def test_round_trip(tmp_path, sparse):
    rng = np.random.default_rng(0)
    x = np.where(rng.random((30, 7)) < 0.4, 0.0, rng.normal(size=(30, 7)))
    labels = rng.integers(0, 5, 30)
    qids = [f"q{i // 6}" for i in range(30)]
    comments = [f"docid = d{i}" if i % 2 else "" for i in range(30)]
    p = tmp_path / "f.txt"
    write_svmlight(p, labels, qids, x, comments, sparse=sparse)
    text = p.read_text().splitlines()
    assert text[1].startswith(f"{labels[1]} qid:q0 ") and text[1].endswith("# docid = d1")
    if sparse:
        assert all(":0 " not in line and not line.endswith(":0") for line in text)
    f = read_svmlight(p, n_features=7)
    assert f.labels.tolist() == labels.tolist() and f.qids == qids
    assert f.x == pytest.approx(x.astype(np.float32))
    assert f.comments == comments
    # and again: what was read writes the same file
    q = tmp_path / "g.txt"
    write_svmlight(q, f.labels, f.qids, f.x.astype(np.float64), f.comments, sparse=sparse)
    assert read_svmlight(q, 7).x.tolist() == f.x.tolist()


@pytest.mark.parametrize("line,message", [
    ("x qid:1 1:0.5", "label 'x' is not a number"),
    ("1 1:0.5 2:0.3", "expected 'qid:<query id>' after the label, got '1:0.5'"),
    ("1 qid: 1:0.5", "expected 'qid:<query id>'"),
    ("1 qid:3 1:0.5 2-0.3", "'2-0.3' is not '<index>:<value>'"),
    ("1 qid:3 a:0.5", "feature index 'a'"),
    ("1 qid:3 0:0.5", "indices start at 1"),
    ("1 qid:3 2:0.5 2:0.1", "feature index 2 after 2"),
    ("1 qid:3 3:0.5 1:0.1", "feature index 1 after 3"),
    ("1 qid:3 1:abc", "value 'abc' of feature 1 is not a number"),
    ("1 qid:3 1:nan", "value 'nan' of feature 1 is not finite"),
    ("inf qid:3 1:1", "label 'inf' is not finite"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, message):
    p = tmp_path / "vali.txt"
    p.write_text("0 qid:1 1:0.1 2:0.2\n\n" + line + " # doc\n")
    with pytest.raises(DataError) as e:
        read_svmlight(p)
    assert f"{p}, line 3: " in str(e.value) and message in str(e.value)


def test_empty_and_missing_files(tmp_path):
    p = tmp_path / "e.txt"
    p.write_text("# only a comment\n\n")
    with pytest.raises(DataError, match="no data lines"):
        read_svmlight(p)
    with pytest.raises(DataError, match="no such file"):
        read_svmlight(tmp_path / "none.txt")


def _write_letor_folder(root, n_parts=5, q_per_part=12, docs=10, seed=0):
    """MSLR layout: 5 query partitions S1..S5; Fold i trains on 3, validates on 1, tests on 1
    (the rotation of MSLR-WEB and LETOR 4.0). Grades are a clean function of feature 1, so a
    learner from clicks can do well; lines mix dense and sparse, with LETOR-style comments."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(n_parts):
        lines = []
        for q in range(q_per_part):
            qid = s * 100 + q
            for d in range(docs):
                f = rng.random(4)
                f[3] = 0.0 if d % 3 else f[3]  # sparse-ish last feature
                y = int(min(4, np.floor(f[0] * 5)))
                feats = " ".join(f"{i + 1}:{v:.6f}" for i, v in enumerate(f)
                                 if v != 0 or (d % 2 == 0))
                lines.append(f"{y} qid:{qid} {feats} #docid = D{qid}-{d} inc = 1 prob = 0.5")
        parts.append(lines)
    for i in range(n_parts):
        fold = root / f"Fold{i + 1}"
        fold.mkdir(parents=True)
        order = [(i + j) % n_parts for j in range(n_parts)]
        tr = [line for k in order[:3] for line in parts[k]]
        (fold / "train.txt").write_text("\n".join(tr) + "\n")
        (fold / "vali.txt").write_text("\n".join(parts[order[3]]) + "\n")
        (fold / "test.txt").write_text("\n".join(parts[order[4]]) + "\n")
    return root


def test_five_fold_cross_validation_on_the_letor_layout(tmp_path):
    root = _write_letor_folder(tmp_path / "MSLR")
    folds = letor_folds(root)
    assert [n for n, _ in folds] == [f"Fold{i}" for i in range(1, 6)]
    d = load_fold(folds[0][1])
    assert d["train"].x.shape == (36, 10, 4) and d["test"].x.shape == (12, 10, 4)
    assert d["train"].max_grade == 4
    # every query is a test query exactly once over the 5 folds
    test_q = [q for _, files in folds for q in load_fold(files)["test"].query_ids]
    assert sorted(test_q) == sorted(set(test_q)) and len(test_q) == 60
    res = cross_validate(root, learner="ipw", model="linear", eta=1.0, seed=0, n_sessions=2000,
                         steps=80, logger_frac=0.01)
    assert res["n_folds"] == 5 and len(res["folds"]) == 5
    s = res["summary"]
    assert s["test/n_queries"] == 60
    for k in ("ndcg@1", "ndcg@3", "ndcg@5", "ndcg@10", "err@10"):
        assert 0 <= s[f"test/{k}"]["mean"] <= 1
    # the features determine the grades: learning from clicks must beat chance by far
    assert s["test/ndcg@10"]["mean"] > 0.85, s["test/ndcg@10"]
    with pytest.raises(DataError, match="Fold1..Fold5"):
        letor_folds(tmp_path)
    (root / "Fold3" / "vali.txt").unlink()
    with pytest.raises(DataError, match=r"Fold3: missing .*vali\.txt"):
        letor_folds(root)


def test_cli_train_accepts_a_letor_folder(tmp_path):
    from llmrec.cli import main

    root = _write_letor_folder(tmp_path / "L", q_per_part=4, docs=6)
    out = tmp_path / "cv.json"
    assert main(["ltr", "train", "--letor", str(root), "--out", str(out), "--learner", "dla",
                 "--click-model", "cascade", "--steps", "30", "--sessions", "500"]) == 0
    res = json.loads(out.read_text())
    assert res["n_folds"] == 5 and res["click_model"] == "cascade"
    assert len(res["folds"][0]["propensity"]) == 6
    # neither or both of --clicks / --letor: an error naming both
    assert main(["ltr", "train", "--out", str(out)]) == 2


def test_cascade_ctr_matches_its_closed_form_on_1e5_sessions():
    rng = np.random.default_rng(0)
    grades = np.array([[0, 2, 1, 3, 0, 0, 1, 2, 0, 1]])
    g = np.repeat(grades, 100_000, 0)
    c = simulate_cascade_clicks(g, rng, max_grade=3)
    exam, ctr = cascade_probabilities(grades, max_grade=3)
    r = click_probability(grades[0], 3)
    closed = [r[k] * np.prod(1 - r[:k]) for k in range(10)]
    assert ctr[0] == pytest.approx(closed, abs=1e-12)
    assert np.abs(c.mean(0) - ctr[0]).max() < 0.01  # within 1 point of CTR at every rank
    assert c.sum(1).max() == 1  # stops after the first click
    # P(no click) = prod (1 - r)
    assert (c.sum(1) == 0).mean() == pytest.approx(np.prod(1 - r), abs=0.005)
    # on varying lists (with padding), through simulate_sessions
    Q, K, M = 50, 10, 20
    grades = rng.integers(0, 4, (Q, M)).astype(np.float32)
    shown = np.tile(np.arange(K), (Q, 1))
    mask = np.ones((Q, K), bool)
    mask[:5, 7:] = False
    sess = simulate_sessions(shown, mask, grades, 100_000, seed=1, click_model="cascade")
    g = np.take_along_axis(grades, shown, 1)[sess["query"]]
    exam, ctr = cascade_probabilities(g, 3, shown_mask=mask[sess["query"]])
    assert np.abs(sess["clicks"].mean(0) - ctr.mean(0)).max() < 0.01
    assert sess["theta"] == pytest.approx(exam.mean(0))
    assert sess["clicks"][mask[sess["query"]] == 0].sum() == 0
    with pytest.raises(ValueError, match="click_model"):
        simulate_sessions(shown, mask, grades, 10, click_model="dbn")


# -- FINN.no slates data.npz ------------------------------------------------------------------

def _finn_arrays(U=40, T=20, S=25, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, S + 1, (U, T))
    steps = rng.integers(8, T + 1, U)  # later steps are padding
    slate = np.zeros((U, T, S), dtype=np.int32)
    click = np.zeros((U, T), dtype=np.int32)
    idx = np.zeros((U, T), dtype=np.int32)
    itype = np.zeros((U, T), dtype=np.int32)
    for u in range(U):
        for t in range(steps[u]):
            n = lengths[u, t]
            slate[u, t, :n] = rng.choice(np.arange(3, 500), n, replace=False)
            itype[u, t] = rng.integers(1, 3)
            if rng.random() < 0.3:
                click[u, t] = 1  # no click
            else:
                idx[u, t] = rng.integers(0, n)
                click[u, t] = slate[u, t, idx[u, t]]
        lengths[u, steps[u]:] = 0
    return {"userId": np.arange(U, dtype=np.int32) + 1000, "click": click, "click_idx": idx,
            "slate_lengths": lengths.astype(np.int32), "slate": slate, "interaction_type": itype}


def test_finn_loader_on_a_fixture_in_the_data_npz_layout(tmp_path):
    from llmrec.ltr.finn import load_finn_npz, split_users

    a = _finn_arrays()
    np.savez(tmp_path / "data.npz", **a)
    d = load_finn_npz(tmp_path)  # the folder, as the release lays it out
    assert d.n_users == 40 and d.slate.shape == (40, 20, 25)
    st = d.stats()
    assert st["steps"] == int((a["click"] != 0).sum())
    assert st["item_clicks"] + st["no_click_steps"] == st["steps"]
    assert st["interaction_types"] == [1, 2]
    assert d.n_items == int(a["slate"].max()) + 1
    sp = split_users(d, 0.1, 0.1, seed=0)
    assert len(sp["valid"]) == 4 and len(sp["test"]) == 4 and len(sp["train"]) == 32
    assert not set(sp["valid"]) & set(sp["test"])
    assert sp["train_mask"][sp["test"], 5:].sum() == 0
    assert (sp["train_mask"][sp["test"], :5] == d.step_mask[sp["test"], :5]).all()
    assert (sp["train_mask"][sp["train"]] == d.step_mask[sp["train"]]).all()
    sub = d.subset(sp["test"])
    assert sub.n_users == 4 and (sub.user_id == a["userId"][sp["test"]]).all()


@pytest.mark.parametrize("break_it,message", [
    (lambda a: a.pop("click_idx"), "missing array.*click_idx"),
    (lambda a: a.__setitem__("slate", a["slate"][:, :, :, None]), "slate has shape"),
    (lambda a: a.__setitem__("slate_lengths", a["slate_lengths"][:, :5]),
     "slate_lengths has shape"),
    (lambda a: a.__setitem__("click", a["click"].astype(np.float32)), "click has dtype float32"),
    (lambda a: a["click_idx"].__setitem__((0, 0), 30), "click_idx outside|slate\\[click_idx\\]"),
    (lambda a: a["slate"].__setitem__((2, 1, 24), 7) if a["slate_lengths"][2, 1] < 25 else
     a["slate_lengths"].__setitem__((2, 1), 30), "after the slate's length|outside 1..25"),
])
def test_finn_loader_errors(tmp_path, break_it, message):
    from llmrec.ltr.finn import load_finn_npz

    a = _finn_arrays(seed=1)
    a["click"][0, 0] = a["slate"][0, 0, 0]  # step (0, 0) is an item click at slot 0
    a["click_idx"][0, 0] = 0
    break_it(a)
    np.savez(tmp_path / "data.npz", **a)
    with pytest.raises(DataError, match=message):
        load_finn_npz(tmp_path / "data.npz")


def test_finn_click_must_match_the_slate(tmp_path):
    from llmrec.ltr.finn import load_finn_npz

    a = _finn_arrays(seed=2)
    u, t = np.argwhere(a["click"] > 1)[0]
    a["click"][u, t] = 2  # an item that is not at click_idx
    np.savez(tmp_path / "data.npz", **a)
    with pytest.raises(DataError, match=f"slate\\[click_idx\\] differs from click at user row "
                                        f"{u}, step {t} \\(1 such\\)"):
        load_finn_npz(tmp_path / "data.npz")
    with pytest.raises(DataError, match="no such file"):
        load_finn_npz(tmp_path / "nothing")
