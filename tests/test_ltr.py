"""ULTR: PBM click statistics, IPW unbiasedness, DLA's propensity recovery, an end-to-end run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from llmrec.ltr.clicks import RHO, click_probability, propensities, simulate_clicks, \
    simulate_sessions
from llmrec.ltr.features import build_features
from llmrec.ltr.train import TrainConfig, evaluate, run_experiment, score, train_from_clicks


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny matrices: extra threads only contend (several times slower on a busy 2-core host)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_propensities_and_click_probability():
    assert propensities(10, 1.0) == pytest.approx(RHO)
    assert propensities(3, 2.0) == pytest.approx(RHO[:3] ** 2)
    assert propensities(3, 0.0) == pytest.approx([1, 1, 1])
    assert propensities(4, 1.0, "inverse_rank") == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4])
    # the spec's eps = 0.1, ymax = 4 row: [0.10, 0.16, 0.28, 0.52, 1.0]
    assert click_probability([0, 1, 2, 3, 4], max_grade=4) == pytest.approx(
        [0.1, 0.1 + 0.9 / 15, 0.1 + 0.9 * 3 / 15, 0.1 + 0.9 * 7 / 15, 1.0])
    with pytest.raises(ValueError):
        propensities(11, 1.0)


@pytest.mark.parametrize("eta", [0.5, 1.0, 2.0])
def test_ctr_per_rank_matches_theta_on_1e5_sessions(eta):
    theta = propensities(10, eta)
    rng = np.random.default_rng(0)
    # grade = ymax: every examined document is clicked, so CTR per rank = theta_k
    c = simulate_clicks(np.full((100_000, 10), 3), theta, rng, max_grade=3)
    assert np.abs(c.mean(0) - theta).max() < 0.01
    # graded: CTR = theta_k * P(click | e, y)
    g = np.tile([3, 2, 1, 0, 3, 2, 1, 0, 3, 2], (100_000, 1))
    c = simulate_clicks(g, theta, rng, max_grade=3)
    assert np.abs(c.mean(0) - theta * click_probability(g[0])).max() < 0.01


def test_ipw_is_unbiased_naive_is_not():
    # one list shown many times: mean of c_k / theta_k estimates P(click | e, y_k), the relevance
    grades = np.array([[0, 1, 3, 0, 2, 3, 1, 0, 2, 3]])
    theta = propensities(10, 1.0)
    sess = simulate_sessions(np.arange(10)[None], np.ones((1, 10), bool), grades.astype(float),
                             200_000, eta=1.0, seed=1)
    truth = click_probability(grades[0])
    ipw = (sess["clicks"] / theta).mean(0)
    naive = sess["clicks"].mean(0)
    assert np.abs(ipw / truth - 1).max() < 0.08
    # naive under-rates the lower ranks: a grade-3 document at rank 10 looks far less relevant
    # than the same grade at rank 3
    assert naive[9] < 0.2 * naive[2]
    assert ipw[9] == pytest.approx(ipw[2], rel=0.1)


def _toy(seed=0, Q=500, K=10, F=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(Q, K, F)).astype(np.float32)
    z = x @ np.array([1.0, -0.5, 0.8, 0.0, 0.3])
    y = np.clip(np.round(z * 0.9 + 1.0), 0, 3).astype(np.float32)
    return x, y


def test_dla_recovers_the_propensities():
    # random lists (rank uncorrelated with relevance across queries), a linear true relevance
    x, y = _toy()
    shown = np.tile(np.arange(10), (len(x), 1))
    sess = simulate_sessions(shown, np.ones_like(shown, bool), y, 50_000, eta=1.0, seed=0)
    res = train_from_clicks(torch.as_tensor(x), shown, sess,
                            TrainConfig(learner="dla", model="linear", steps=1000))
    rel = res.propensity
    assert rel[0] == pytest.approx(1.0)
    assert np.abs(rel / (RHO / RHO[0]) - 1).max() < 0.10  # the spec's "within 10%"
    # and the ranker it learned ranks better than the logged (random) order
    m = np.ones_like(y, bool)
    learned = evaluate(score(res.ranker, torch.as_tensor(x)), y, m)["ndcg@10"]
    logged = evaluate(-torch.arange(10.0).expand(len(x), -1), y, m)["ndcg@10"]
    assert learned > logged + 0.1


def _trec_folder(tmp_path):
    rng = np.random.default_rng(0)
    words = ["apple", "banana", "cherry", "date", "fig", "grape", "kiwi", "lemon", "mango"]
    topics, qrels, run, hits = [], [], [], []
    for q in range(12):
        qw = rng.choice(words, 2, replace=False)
        topics.append(f"q{q}\t{' '.join(qw)}")
        for r in range(15):
            n_match = int(rng.integers(0, 3))
            text = " ".join(list(qw[:n_match]) + list(rng.choice(words, 5)))
            grade = min(3, n_match + int(rng.integers(0, 2)))
            doc = f"d{q}_{r}"
            run.append(f"q{q} Q0 {doc} {r + 1} {20 - r + rng.random():.3f} bm25")
            if r % 3:  # some pairs unjudged -> grade 0
                qrels.append(f"q{q} 0 {doc} {grade}")
            hits.append({"qid": f"q{q}", "docid": doc, "rank": r + 1, "score": 0.0,
                         "content": text})
    (tmp_path / "topics.test.txt").write_text("\n".join(topics) + "\n")
    (tmp_path / "qrels.test.txt").write_text("\n".join(qrels) + "\n")
    (tmp_path / "bm25_trec_results_test.txt").write_text("\n".join(run) + "\n")
    (tmp_path / "bm25_retrieve_results_test.json").write_text(
        json.dumps([{"query": "", "hits": hits}]))
    return tmp_path


def test_features_hand_checked():
    d = build_features({"a": "red apple pie"}, [("a", "d1", 1, 9.0), ("a", "d2", 2, 5.0),
                                                ("a", "d3", 3, 1.0)],
                       {"d1": "apple pie", "d2": "red red", "d3": "nothing"},
                       {("a", "d1"): 3, ("a", "d3"): 1})
    assert d.x.shape == (1, 3, 8) and d.y.tolist() == [[3, 0, 1]]
    f = dict(zip(d.feature_names, d.x[0].T))
    assert f["bm25"].tolist() == pytest.approx([1, 0.5, 0])  # min-max within the query
    assert f["overlap"].tolist() == pytest.approx([1, 0.5, 0])  # 2, 1, 0 common terms
    assert f["doc_len"].tolist() == pytest.approx([1, 1, 0])  # 2, 2, 1 tokens


def test_end_to_end_small_run(tmp_path):
    from llmrec.ltr.features import load_dl19

    data = load_dl19(str(_trec_folder(tmp_path)))
    assert data.x.shape == (12, 15, 8)
    out = run_experiment(data, "dla", "mlp", eta=1.0, seed=0, n_sessions=2000, steps=30,
                         hidden=(8,))
    m = out["metrics"]
    assert out["n_train_queries"] + out["n_test_queries"] == 12
    assert all(math.isfinite(m[k]) for k in ("ndcg@10", "err@10", "mrr@10"))
    assert out["propensity"].shape == (10,)


def test_cli_simulate_train_eval(tmp_path):
    from llmrec.ltr.cli import main

    folder = _trec_folder(tmp_path / "data" if (tmp_path / "data").mkdir() is None else None)
    clicks, model = tmp_path / "clicks.npz", tmp_path / "ranker.pt"
    assert main(["simulate", "--data", str(folder), "--out", str(clicks), "--sessions", "500",
                 "--eta", "1"]) == 0
    assert main(["train", "--clicks", str(clicks), "--out", str(model), "--learner", "ipw",
                 "--steps", "20"]) == 0
    res = tmp_path / "eval.json"
    assert main(["eval", "--model", str(model), "--out", str(res)]) == 0
    got = json.loads(res.read_text())
    assert 0.0 <= got["ndcg@10"] <= 1.0 and got["learner"] == "ipw"


def test_llmrec_ltr_group(tmp_path, capsys):
    from llmrec.cli import main

    folder = tmp_path / "data"
    folder.mkdir()
    _trec_folder(folder)
    clicks = tmp_path / "c.npz"
    assert main(["ltr", "simulate", "--data", str(folder), "--out", str(clicks),
                 "--sessions", "200"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sessions"] == 200
    assert main(["ltr"]) == 2  # the group alone prints its help
