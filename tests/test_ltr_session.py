"""Session metrics (NUM, U-measure, sDCG, session RBP), click-derived labels (A2), the
correlation harness, the CHIIR'16 / TianGong loaders and ``llmrec ltr session-metrics``."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from llmrec.errors import DataError
from llmrec.ranking.metrics import (SessionQuery, click_session_labels, dcg_list, ndcg_list, num,
                                    rbp, sdcg, session_rbp, session_trail, u_measure)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CHIIR = DATA / "session-sat-chiir16"
TIANGONG = DATA / "tiangong-ram-clicks"


def test_num_hand_computed_two_query_example():
    # q1 shows d1 d2 d3 (snippets 100, 200, 100 chars), d2 clicked; q2 shows d4 d2 d5, d4 and d5
    # clicked. qrels grade d6 (never shown) 3. c_q = 150, c_d = 50, L = 1000, depth = last click.
    s = [SessionQuery(["d1", "d2", "d3"], clicks=[0, 1, 0], snippet_len=[100, 200, 100]),
         SessionQuery(["d4", "d2", "d5"], clicks=[1, 0, 1], snippet_len=[120, 200, 80])]
    qrels = {"d1": 0, "d2": 2, "d3": 1, "d4": 1, "d5": 2, "d6": 3}
    # trail: d1@0 (g 0), d2@100 (g 3), [click +50, reformulation +150] d4@500 (g 1),
    # d2@670 (repeat, g 0), d5@870 (g 3)
    u = 3 * (1 - 100 / 1000) + 1 * (1 - 500 / 1000) + 3 * (1 - 870 / 1000)
    # ideal: d6 (7, cost 150) d5 (3, cost 80) d2 (3, cost 200) d3 (1, 100) d4 (1, 120), +50 each
    ui = 7 * 1 + 3 * (1 - 200 / 1000) + 3 * (1 - 330 / 1000) + 1 * (1 - 580 / 1000) \
        + 1 * (1 - 730 / 1000)
    kw = dict(c_q=150, c_d=50, L=1000)
    assert num(s, qrels, **kw) == pytest.approx(u / ui, abs=1e-9)
    assert num(s, qrels, normalise=False, **kw) == pytest.approx(u, abs=1e-9)
    items, _ = session_trail(s, qrels, c_q=150, c_d=50)
    assert [(d, g, p) for d, g, p in items] == [("d1", 0, 0), ("d2", 3, 100), ("d4", 1, 500),
                                               ("d2", 0, 670), ("d5", 3, 870)]
    # ablation without the reformulation cost: d4@350, d5@720
    u_norc = 3 * 0.9 + 1 * (1 - 350 / 1000) + 3 * (1 - 720 / 1000)
    assert num(s, qrels, reformulation_cost=False, **kw) == pytest.approx(u_norc / ui, abs=1e-9)


def test_num_is_one_for_the_ideal_session_and_falls_when_relevance_moves():
    qrels = {"a": 2, "b": 1, "x": 0, "y": 0}
    ideal = [SessionQuery(["a", "b", "x"], clicks=[1, 1, 0])]
    assert num(ideal, qrels) == pytest.approx(1.0, abs=1e-12)
    assert num([["a", "b", "x"]], qrels, depth="full") == pytest.approx(1.0, abs=1e-12)
    down = num([["x", "a", "b"]], qrels, depth="full")
    further = num([["x", "y", "a", "b"]], qrels, depth="full")
    behind = num([["x", "y"], ["a", "b"]], qrels, depth="full")  # after a reformulation
    assert 1.0 > down > further > behind > 0
    assert num([["x", "y"], ["a", "b"]], qrels, depth="full", reformulation_cost=False) \
        == pytest.approx(further, abs=1e-12)
    assert math.isnan(num([["x"]], {"x": 0}, depth="full"))  # no relevant document
    with pytest.raises(ValueError, match="last_click"):
        num([["a"]], qrels)  # no click data, depth last_click


def test_a2_click_enhancement_on_a_generated_log():
    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in range(30)]
    for _ in range(50):
        session = []
        for _q in range(int(rng.integers(2, 5))):
            shown = list(rng.choice(docs, 6, replace=False))
            session.append(SessionQuery(shown, clicks=list((rng.random(6) < 0.2).astype(int))))
        labels = click_session_labels(session)
        clicked = {d for q in session for d, c in zip(q.docs, q.clicks) if c}
        assert set(labels) == clicked and all(v == 1.0 for v in labels.values())
        if not clicked:
            assert math.isnan(num(session, depth="full"))
            continue
        with_a2 = num(session, depth="full")
        without = num(session, depth="full", enhance=False)
        # A2 credits a clicked document where it first appeared (also if skipped there): never
        # later than the per-query reading, so U can only grow; both share the same ideal
        assert with_a2 >= without - 1e-12
    # a document skipped in q1 and clicked in q2 is credited at its q1 position under A2
    s = [SessionQuery(["a", "b"], clicks=[0, 1]), SessionQuery(["a", "c"], clicks=[1, 0])]
    items, lab = session_trail(s)
    assert lab == {"a": 1.0, "b": 1.0}
    assert items == [("a", 1.0, 0.0), ("b", 1.0, 150.0), ("a", 0.0, 450.0)]
    items, _ = session_trail(s, enhance=False)
    assert items == [("a", 0.0, 0.0), ("b", 1.0, 150.0), ("a", 1.0, 450.0)]
    assert num(s) == pytest.approx(1.0)
    assert num(s, enhance=False) == pytest.approx((0.85 + 0.55) / 1.85, abs=1e-12)
    # dwell grades: 1 + thresholds reached by the longest dwell
    s = [SessionQuery(["a", "b"], clicks=[1, 1], dwell=[5, 40]),
         SessionQuery(["a"], clicks=[1], dwell=[200])]
    assert click_session_labels(s, dwell_thresholds=(30, 120)) == {"a": 3.0, "b": 2.0}
    # qrels win over clicks
    assert click_session_labels(s, qrels={"z": 2}) == {"z": 2.0}


def test_u_measure_sdcg_and_session_rbp_hand_computed():
    assert u_measure([1, 3, 2], [0, 500, 1200], L=1000) == pytest.approx(1 + 1.5 + 0, abs=1e-12)
    labels = {"a": 1, "b": 2, "c": 1}
    s = [["a", "b"], ["c"]]
    assert dcg_list(["a", "b"], labels) == pytest.approx(1 + 3 / math.log2(3), abs=1e-12)
    expected = 1 + 3 / math.log2(3) + 1 * math.log(4) / math.log(5)
    assert sdcg(s, labels) == pytest.approx(expected, abs=1e-12)
    assert sdcg(s, labels, query_discount=False) == pytest.approx(2 + 3 / math.log2(3))
    # nsDCG: each query shows the ideal list b, a, c (cut at that query's length)
    ideal = (3 + 1 / math.log2(3)) + (3) * math.log(4) / math.log(5)
    assert sdcg(s, labels, normalise=True) == pytest.approx(expected / ideal, abs=1e-12)
    assert ndcg_list(["a", "b"], labels, 2) == pytest.approx(
        (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)), abs=1e-12)
    # session RBP: p = b = 0.5, a = p(1-b)/(1-pb) = 1/3; hits at (q1, r1) and (q2, r1)
    bin_labels = {"a": 1, "c": 1}
    assert session_rbp(s, bin_labels, p=0.5, b=0.5) == pytest.approx(0.5 * (1 + 1 / 3))
    # b = 1 and one query: plain RBP (the list metric of the same module)
    import torch
    y = torch.tensor([[1.0, 0.0, 2.0, 1.0]])
    sc = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    m = torch.ones_like(y, dtype=torch.bool)
    one = {"0": 1, "1": 0, "2": 2, "3": 1}
    assert session_rbp([["0", "1", "2", "3"]], one, p=0.7, b=1.0, max_grade=2) == \
        pytest.approx(rbp(sc, y, m, p=0.7, max_grade=2), abs=1e-12)


def test_session_rbp_matches_its_user_model_by_simulation():
    # the user examines (1,1); then stops w.p. 1-p, else goes down w.p. b or reformulates
    p, b = 0.8, 0.7
    rng = np.random.default_rng(1)
    gains = np.zeros((3, 40))
    gains[0, [0, 2]] = 1.0
    gains[1, 1] = 0.5
    gains[2, 0] = 1.0
    labels = {"q0r0": 1, "q0r2": 1, "q1r1": 0.5, "q2r0": 1}
    s = [[f"q{m}r{r}" for r in range(40)] for m in range(3)]
    n = 200_000
    total = np.zeros(n)
    m, r = np.zeros(n, int), np.zeros(n, int)
    alive = np.ones(n, bool)
    for _ in range(60):
        ok = alive & (m < 3) & (r < 40)
        total[ok] += gains[m[ok], r[ok]]
        go = alive & (rng.random(n) < p)
        down = rng.random(n) < b
        r = np.where(go & down, r + 1, np.where(go, 0, r))
        m = np.where(go & ~down, m + 1, m)
        alive = go & (m < 3)
    expected = session_rbp(s, labels, p=p, b=b, max_grade=1.0)
    assert (1 - p) * total.mean() == pytest.approx(expected, abs=0.004)


def test_correlate_and_its_bootstrap_interval():
    from llmrec.ltr.sessions import correlate

    rng = np.random.default_rng(0)
    x = rng.normal(size=150)
    y = x + rng.normal(size=150)
    c = correlate(x, y, n_boot=200, seed=0)
    assert c["n"] == 150
    for m in ("pearson", "spearman", "kendall"):
        assert c[m]["lo"] < c[m]["r"] < c[m]["hi"]
    assert c["pearson"]["r"] == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert 0.6 < c["pearson"]["r"] < 0.8 and c["kendall"]["r"] < c["spearman"]["r"]
    mono = correlate(np.arange(10.0), np.arange(10.0) ** 3, n_boot=50)
    assert mono["spearman"]["r"] == pytest.approx(1.0) and mono["kendall"]["r"] == \
        pytest.approx(1.0)
    # the vectorised bootstrap Kendall is scipy's tau-b (ties included)
    from scipy import stats

    from llmrec.ltr.sessions import _kendall_rows
    a = rng.integers(0, 4, (5, 40)).astype(float)
    b = rng.integers(0, 3, (5, 40)).astype(float)
    assert _kendall_rows(a, b, budget=700) == pytest.approx(
        [stats.kendalltau(u, v).statistic for u, v in zip(a, b)], abs=1e-12)
    assert correlate([1.0, np.nan, 2.0, 3.0, 5.0], [1, 2, 3, 4, 4], n_boot=20)["n_dropped"] == 1


def _write_chiir_fixture(folder: Path, bad_rank: bool = False):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "session.tsv").write_text(
        "SessionID\tUser\tTopic\tPerformance\tDifficulty\n" +
        "".join(f"{i}\tU\tT\t{r}\t3\n" for i, r in enumerate([5, 4, 2, 1, 3, 5], 1)))
    rows = ["SessionID\tQno\trank\tURL\ttitle\tsnippet"]
    rng = np.random.default_rng(3)
    qrels = ["SessionID\tURL\tRelevance"]
    for s in range(1, 7):
        for qn in (1, 2):
            if s == 2 and qn == 1:
                rows.append(f"{s}\t{qn}\tno results")
                continue
            for r in range(1, 4):
                rows.append(f"{s}\t{qn}\t{'x' if bad_rank and s == 3 else r}\tu{s}_{qn}_{r}"
                            f"\ttitle {r}\tsnippet text")
                qrels.append(f"{s}\tu{s}_{qn}_{r}\t{int(rng.integers(-1, 3))}")
        qrels.append(f"{s}\tu{s}_1_1\t2")
    with gzip.open(folder / "results.tsv.gz", "wt") as f:
        f.write("\n".join(rows) + "\n")
    with gzip.open(folder / "qrels.tsv.gz", "wt") as f:
        f.write("\n".join(qrels) + "\n")


def test_chiir_loader_on_a_fixture_and_its_errors(tmp_path):
    from llmrec.ltr.sessions import chiir16_metrics, load_chiir16

    _write_chiir_fixture(tmp_path / "ok")
    ss = load_chiir16(tmp_path / "ok")
    assert [s.rating for s in ss] == [5, 4, 2, 1, 3, 5]
    assert ss[1].queries[0].docs == [] and len(ss[1].queries) == 2  # an empty SERP is a query
    assert ss[0].queries[0].snippet_len == [len("title 1") + len("snippet text")] * 1 + \
        [len("title 2") + len("snippet text"), len("title 3") + len("snippet text")]
    values = chiir16_metrics(ss)
    assert all(len(v) == 6 for v in values.values())
    _write_chiir_fixture(tmp_path / "bad", bad_rank=True)
    with pytest.raises(DataError, match=r"results\.tsv\.gz, line \d+: rank 'x'"):
        load_chiir16(tmp_path / "bad")
    with pytest.raises(DataError, match="session.tsv"):
        load_chiir16(tmp_path)


def test_tiangong_loader_errors(tmp_path):
    from llmrec.ltr.sessions import load_tiangong

    p = tmp_path / "t.tsv"
    p.write_text("F\t[1, 0]\t[3, 0]\t4\nA\t[1, 0]\t[3]\t2\n")
    with pytest.raises(DataError, match=r"t\.tsv, line 2: 2 clicks but 1 usefulness"):
        load_tiangong(p)
    p.write_text("F\t[1, 0]\t[3, 0]\tfour\n")
    with pytest.raises(DataError, match="line 1: satisfaction 'four'"):
        load_tiangong(p)


@pytest.mark.skipif(not CHIIR.is_dir(), reason="../shared/data/session-sat-chiir16 is absent")
def test_chiir16_real_sessions_counts():
    from llmrec.ltr.sessions import load_chiir16

    ss = load_chiir16(CHIIR)
    assert len(ss) == 80
    assert sum(len(s.queries) for s in ss) == 388
    assert sum(len(q.docs) for s in ss for q in s.queries) == 3446
    assert sorted({s.rating for s in ss}) == [1, 2, 3, 4, 5]
    # every shown URL is judged for its session (the README's check)
    assert all(d in s.qrels for s in ss for q in s.queries for d in q.docs)


@pytest.mark.skipif(not (TIANGONG / "fsd_test.tsv.gz").is_file(),
                    reason="../shared/data/tiangong-ram-clicks is absent")
def test_tiangong_real_counts():
    from llmrec.ltr.sessions import load_tiangong

    rows = load_tiangong(TIANGONG / "fsd_test.tsv.gz")
    assert len(rows) == 1230 and sum(sum(q.clicks) for q in rows) == 1206
    assert np.bincount([int(q.satisfaction) for q in rows]).tolist() == [78, 101, 209, 441, 401]


def test_cli_session_metrics_on_fixtures(tmp_path, capsys):
    from llmrec.cli import main

    _write_chiir_fixture(tmp_path / "chiir")
    out = tmp_path / "table.json"
    assert main(["ltr", "session-metrics", "--data", str(tmp_path / "chiir"), "--boot", "50",
                 "--out", str(out)]) == 0
    table = json.loads(out.read_text())
    assert table["format"] == "chiir16" and table["n"] == 6
    names = [r["metric"] for r in table["rows"]]
    assert "NUM" in names and "sDCG (b=2, bq=4)" in names
    assert "pearson" in capsys.readouterr().out.lower()
    p = tmp_path / "tg.tsv"
    p.write_text("".join(f"F\t{json.dumps([int(i % 3 == 0)] * 10)}\t"
                         f"{json.dumps([i % 4] * 10)}\t{i % 5}\n" for i in range(30)))
    assert main(["ltr", "session-metrics", "--data", str(p), "--boot", "20",
                 "--max-usefulness", "3"]) == 0
    assert main(["ltr", "session-metrics", "--data", str(tmp_path / "nothing")]) != 0
