"""compute_stats against hand-computed values, on real data, and its speed on ML-1M (half)."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from conftest import shared_path
from llmrec.data.loaders import DataConfig, load_data
from llmrec.data.stats import compute_stats, format_stats
from llmrec.data.tables import RecData, table_from_pandas

DAY = 86_400
T0 = 1_600_000_000  # 2020-09-13 UTC


def _tiny() -> RecData:
    inter = pd.DataFrame({
        "user_id": ["u1", "u1", "u2", "u3", "u3"],
        "item_id": ["a", "b", "a", "c", "a"],
        "rating": np.array([4.0, 3.5, 4.0, 1.0, 5.0], dtype=np.float32),
        "timestamp": pd.array([T0, T0 + DAY, T0 + 2 * DAY, T0 + 10 * DAY, None], dtype="Int64"),
    })
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "title": ["A", "B", "C", "D"]})
    dialogues = pd.DataFrame({
        "dialogue_id": ["1", "2"],
        "turns": [[{"speaker": "seeker", "text": "hi"}, {"speaker": "recommender", "text": "yo"},
                   {"speaker": "seeker", "text": "ok"}],
                  [{"speaker": "seeker", "text": "x"}]],
        "mentioned": [["a", "b"], ["b", "c"]],
        "liked": [["a"], ["c"]],
        "disliked": [[], ["b"]],
    })
    judgments = pd.DataFrame({"query_id": ["q1", "q1", "q2"], "doc_id": ["d1", "d2", "d1"],
                              "grade": np.array([3, 0, 3], dtype=np.int8)})
    queries = pd.DataFrame({"query_id": ["q1", "q2", "q3"], "text": ["x", "y", "z"]})
    return RecData(name="tiny", tables={
        "interactions": table_from_pandas(inter), "items": table_from_pandas(items),
        "dialogues": table_from_pandas(dialogues), "judgments": table_from_pandas(judgments),
        "queries": table_from_pandas(queries)})


def test_hand_computed_values():
    stats = compute_stats(_tiny())
    json.dumps(stats)  # plain JSON-able values only
    assert stats["tables"] == {"interactions": 5, "items": 4, "dialogues": 2, "judgments": 3,
                               "queries": 3}
    s = stats["interactions"]
    assert (s["n_users"], s["n_items"], s["n_catalog_items"], s["n_interactions"]) == (3, 3, 4, 5)
    assert s["density"] == pytest.approx(5 / 9)
    assert s["rating_histogram"] == {"1": 1, "3.5": 1, "4": 2, "5": 1}
    assert list(s["rating_histogram"]) == ["1", "3.5", "4", "5"]  # sorted by value
    assert s["mean_rating"] == pytest.approx(17.5 / 5)
    assert s["time_span"] == {"first": "2020-09-13", "last": "2020-09-23", "days": 10.0}
    assert s["per_user"] == {"min": 1, "median": 2.0, "mean": 5 / 3, "max": 2}
    d = stats["dialogues"]
    assert d == {"n_dialogues": 2, "n_turns": 4, "mean_turns": 2.0, "n_mentioned_items": 3,
                 "n_liked_items": 2, "n_disliked_items": 1}
    j = stats["judgments"]
    assert (j["n_queries"], j["n_queries_listed"], j["n_judgments"], j["n_docs"]) == (2, 3, 3, 2)
    assert j["grade_histogram"] == {"0": 1, "3": 2}


def test_only_sections_whose_tables_exist():
    items = table_from_pandas(pd.DataFrame({"item_id": ["a"], "title": ["A"]}))
    stats = compute_stats(RecData(name="items-only", tables={"items": items}))
    assert stats["tables"] == {"items": 1}
    assert not {"interactions", "dialogues", "judgments"} & set(stats)
    assert "items 1" in format_stats(stats)


def test_implicit_feedback_without_timestamps():
    inter = pd.DataFrame({"user_id": ["u"], "item_id": ["i"],
                          "rating": np.array([np.nan], dtype=np.float32),
                          "timestamp": pd.array([None], dtype="Int64")})
    stats = compute_stats(RecData(name="implicit",
                                  tables={"interactions": table_from_pandas(inter)}))
    s = stats["interactions"]
    assert s["rating_histogram"] == {} and s["n_rated"] == 0 and s["time_span"] is None
    assert s["n_catalog_items"] is None
    text = format_stats(stats)
    assert "implicit feedback" in text and "no timestamps" in text


def test_format_stats_lines():
    text = format_stats(compute_stats(_tiny()))
    assert text.splitlines()[0] == "dataset   tiny"
    assert "  items         3 (catalog 4)" in text
    assert "1: 1  3.5: 1  4: 2  5: 1" in text
    assert "2020-09-13 .. 2020-09-23 (10.0 days)" in text
    assert "turns per dialogue      2.0" in text
    assert "2 judged (listed 3)" in text and "0: 1  3: 2" in text


def test_ml_latest_small_stats():
    stats = compute_stats(load_data(DataConfig()))
    s = stats["interactions"]
    assert (s["n_users"], s["n_items"], s["n_catalog_items"], s["n_interactions"]) == \
        (610, 9724, 9742, 100_836)
    assert sum(s["rating_histogram"].values()) == 100_836
    assert list(s["rating_histogram"])[0] == "0.5" and list(s["rating_histogram"])[-1] == "5"
    assert s["time_span"]["first"] == "1996-03-29" and s["time_span"]["last"] == "2018-09-24"
    assert stats["tables"]["tags"] == 3683


def test_ml_1m_half_stats_are_fast():
    folder = shared_path("movielens-1m")
    data = load_data(DataConfig(name="movielens-1m", path=str(folder)))
    start = time.perf_counter()
    stats = compute_stats(data)
    elapsed = time.perf_counter() - start
    s = stats["interactions"]
    assert (s["n_users"], s["n_interactions"]) == (2999, 487_650)
    assert s["rating_histogram"] == {"1": 27_472, "2": 53_838, "3": 127_216, "4": 170_579,
                                     "5": 108_545}
    assert elapsed < 3.0, f"compute_stats took {elapsed:.2f}s on 487,650 ratings"


def test_real_dialogue_and_judgment_stats():
    redial = load_data(DataConfig(name="redial", path=str(shared_path("redial"))))
    d = compute_stats(redial)["dialogues"]
    assert d["n_dialogues"] == 1342 and d["n_turns"] == 23_952
    trec = load_data(DataConfig(name="trec", path=str(shared_path("trec-dl19"))))
    j = compute_stats(trec)["judgments"]
    assert (j["n_queries"], j["n_queries_listed"], j["n_judgments"]) == (43, 43, 9260)
    assert j["grade_histogram"] == {"0": 5158, "1": 1601, "2": 1804, "3": 697}
