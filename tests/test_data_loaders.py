"""Loaders on the real data (skipped when ../shared/data is absent) and on small fixtures."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math

import pandas as pd
import pytest

from conftest import shared_path
from llmrec.config import from_dict
from llmrec.data.loaders import DATASETS, DataConfig, bundled_path, load_data
from llmrec.data.tables import RecData

# --------------------------------------------------------------------------- contract


def test_datasets_and_config_contract():
    assert list(DATASETS) == ["ml-latest-small", "movielens-1m", "movielens-100k", "redial",
                              "redial-eval", "trec", "csv", "parquet"]
    for f in dataclasses.fields(DataConfig):
        assert f.metadata.get("help"), f"DataConfig.{f.name} lacks help text"
    cfg = from_dict(DataConfig, {"name": "csv", "path": "x.csv",
                                 "columns": {"user_id": "uid", "item_id": "iid"}})
    assert cfg.columns == {"user_id": "uid", "item_id": "iid"} and cfg.table == "interactions"
    assert DataConfig().columns == {} and DataConfig().columns is not DataConfig().columns


def test_bundled_path_has_movielens_files():
    folder = bundled_path()
    for name in ("ratings.csv", "movies.csv", "tags.csv", "links.csv", "README.txt"):
        assert (folder / name).is_file()


# --------------------------------------------------------------------------- ml-latest-small


@pytest.fixture(scope="module")
def ml_small() -> RecData:
    return load_data(DataConfig())


def test_ml_latest_small_bundled_counts(ml_small):
    assert isinstance(ml_small, RecData)
    assert len(ml_small.users) == 610
    assert len(ml_small.items) == 9742
    assert len(ml_small.interactions) == 100_836
    assert len(ml_small.table("tags")) == 3683
    inter = ml_small.df("interactions")
    assert inter["user_id"].nunique() == 610
    feats = ml_small.interactions.features
    assert feats["rating"].dtype == "float32" and feats["timestamp"].dtype == "int64"
    assert feats["user_id"].dtype == "string" and feats["item_id"].dtype == "string"
    assert ml_small.table("tags").column_names == ["user_id", "item_id", "tag", "timestamp"]


def test_ml_latest_small_item_fields(ml_small):
    items = ml_small.df("items").set_index("item_id")
    toy = items.loc["1"]
    assert toy["title"] == "Toy Story (1995)"
    assert list(toy["genres"]) == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert toy["year"] == 1995
    assert "pixar" in list(toy["tags"])
    # '(no genres listed)' becomes an empty list; a title without a year gets a null year
    no_genre = items[items["title"] == "Black Mirror"].iloc[0]
    assert list(no_genre["genres"]) == [] and pd.isna(no_genre["year"])
    assert not any("(no genres listed)" in list(g) for g in items["genres"])


def test_ml_latest_small_from_a_user_path():
    folder = shared_path("movielens-latest-small")
    data = load_data(DataConfig(path=str(folder)))
    assert (len(data.users), len(data.items), len(data.interactions)) == (610, 9742, 100_836)


# --------------------------------------------------------------------------- ML-1M


def test_ml_1m_half_real():
    folder = shared_path("movielens-1m")
    data = load_data(DataConfig(name="movielens-1m", path=str(folder)))
    inter = data.df("interactions")
    assert len(inter) == 487_650
    assert inter["user_id"].nunique() == 2999
    assert inter["rating"].between(1, 5).all()
    items = data.df("items").set_index("item_id")
    assert len(items) == 3883
    assert items.loc["73", "title"] == "Misérables, Les (1995)"  # latin-1 decoded
    assert list(items.loc["1", "genres"]) == ["Animation", "Children's", "Comedy"]
    users = data.df("users").set_index("user_id")
    assert users.loc["1"].to_dict() == {"gender": "F", "age": 1, "occupation": "K-12 student",
                                        "zip": "48067"}


def _write_ml1m(folder, ratings_name="ratings.dat", lines=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Misérables, Les (1995)::Drama|Musical\n".encode("latin-1"))
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    body = "".join(lines or ["1::1::5::978300760\n", "1::2::3::978302109\n",
                             "2::1::4::978301968\n"])
    if ratings_name.endswith(".gz"):
        with gzip.open(folder / ratings_name, "wt") as fh:
            fh.write(body)
    else:
        (folder / ratings_name).write_text(body)
    return folder


@pytest.mark.parametrize("ratings_name", ["ratings.dat", "ratings.dat.gz",
                                          "ratings-users-1-2.dat.gz"])
def test_ml_1m_finds_the_ratings_file(tmp_path, ratings_name):
    folder = _write_ml1m(tmp_path / "ml1m", ratings_name)
    data = load_data(DataConfig(name="movielens-1m", path=str(folder)))
    inter = data.df("interactions")
    assert inter["item_id"].tolist() == ["1", "2", "1"]
    assert inter["rating"].tolist() == [5.0, 3.0, 4.0]
    assert inter["timestamp"].tolist() == [978300760, 978302109, 978301968]
    assert data.df("items")["title"].tolist()[1] == "Misérables, Les (1995)"
    assert data.df("users")["occupation"].tolist() == ["K-12 student", "self-employed"]


def test_ml_1m_without_users_file(tmp_path):
    folder = _write_ml1m(tmp_path / "ml1m")
    (folder / "users.dat").unlink()
    data = load_data(DataConfig(name="movielens-1m", path=str(folder)))
    assert data.df("users")["user_id"].tolist() == ["1", "2"]


# --------------------------------------------------------------------------- ML-100K

U_GENRE = ("unknown|0\nAction|1\nAdventure|2\nAnimation|3\nChildren's|4\nComedy|5\nCrime|6\n"
           "Documentary|7\nDrama|8\nFantasy|9\nFilm-Noir|10\nHorror|11\nMusical|12\nMystery|13\n"
           "Romance|14\nSci-Fi|15\nThriller|16\nWar|17\nWestern|18\n\n")


def _flags(*on: int) -> str:
    return "|".join("1" if i in on else "0" for i in range(19))


def _write_ml100k(folder, with_genre_file=True):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
                                   "196\t1\t5\t881251000\n")
    item_lines = [
        f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|"
        f"{_flags(3, 4, 5)}",
        f"242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/M/title-exact?Kolya%20(1996)|"
        f"{_flags(5)}",
        f"302|L.A. Confidential (1997)|01-Jan-1997||http://us.imdb.com/x|{_flags(6, 10, 14)}",
        f"267|unknown||||{_flags(0)}",
        f"1300|'Til There Was You (1997)|01-Jan-1997||http://x|{_flags(8)}",
        f"1500|Café au Lait|01-Jan-1994||http://x|{_flags(5)}",
    ]
    (folder / "u.item").write_bytes(("\n".join(item_lines) + "\n").encode("latin-1"))
    (folder / "u.user").write_text("186|39|F|executive|00000\n196|49|M|writer|55105\n")
    if with_genre_file:
        (folder / "u.genre").write_text(U_GENRE)
    return folder


@pytest.mark.parametrize("with_genre_file", [True, False])
def test_ml_100k_fixture(tmp_path, with_genre_file):
    folder = _write_ml100k(tmp_path / "ml-100k", with_genre_file)
    data = load_data(DataConfig(name="movielens-100k", path=str(folder)))
    inter = data.df("interactions")
    assert inter["user_id"].tolist() == ["196", "186", "196"]
    assert inter["rating"].dtype == "float32" and inter["rating"].tolist() == [3.0, 3.0, 5.0]
    items = data.df("items").set_index("item_id")
    assert list(items.loc["1", "genres"]) == ["Animation", "Children's", "Comedy"]
    assert list(items.loc["302", "genres"]) == ["Crime", "Film-Noir", "Romance"]
    assert list(items.loc["267", "genres"]) == []  # the 'unknown' flag means no genre
    assert items.loc["1", "year"] == 1995 and pd.isna(items.loc["267", "year"])
    assert items.loc["1500", "title"] == "Café au Lait" and items.loc["1500", "year"] == 1994
    users = data.df("users").set_index("user_id")
    assert users.loc["196"].to_dict() == {"gender": "M", "age": 49, "occupation": "writer",
                                          "zip": "55105"}


# --------------------------------------------------------------------------- ReDial


def test_redial_real_test_split():
    folder = shared_path("redial")
    data = load_data(DataConfig(name="redial", path=str(folder)))
    dlg = data.df("dialogues")
    assert len(dlg) == 1342
    first = dlg.iloc[0]
    assert first["dialogue_id"] == "20001"
    assert first["seeker_id"] == "956" and first["recommender_id"] == "957"
    turns = list(first["turns"])
    assert turns[0] == {"speaker": "seeker", "text": "Hi I am looking for a movie like @111776"}
    assert turns[1]["speaker"] == "recommender"
    assert "111776" in list(first["mentioned"]) and "111776" in list(first["liked"])
    assert sum(len(t) for t in dlg["turns"]) == 23_952
    items = data.df("items").set_index("item_id")
    assert len(items) == 6924 and items.loc["111776", "title"] == "Super Troopers (2001)"
    mentioned = {m for ms in dlg["mentioned"] for m in ms}
    assert mentioned <= set(items.index)


def test_redial_answers_and_consecutive_turns(tmp_path):
    conv = {
        "conversationId": "7", "initiatorWorkerId": 1, "respondentWorkerId": 2,
        "movieMentions": {"10": "Alpha (2000)", "11": "Beta (2001)", "12": "Gamma (2002)"},
        "initiatorQuestions": {"10": {"suggested": 0, "seen": 1, "liked": 1},
                               "11": {"suggested": 1, "seen": 0, "liked": 0},
                               "12": {"suggested": 1, "seen": 2, "liked": 2}},
        "respondentQuestions": {},
        "messages": [{"text": "hi", "senderWorkerId": 1},
                     {"text": "I like @10", "senderWorkerId": 1},
                     {"text": "try @11", "senderWorkerId": 2}],
    }
    empty = dict(conv, conversationId="8", initiatorQuestions=[], movieMentions={})
    path = tmp_path / "dialogues.jsonl"
    path.write_text(json.dumps(conv) + "\n\n" + json.dumps(empty) + "\n")
    data = load_data(DataConfig(name="redial", path=str(path)))  # a file path, no movies csv
    dlg = data.df("dialogues").set_index("dialogue_id")
    a = dlg.loc["7"]
    assert [t["speaker"] for t in a["turns"]] == ["seeker", "seeker", "recommender"]
    assert list(a["liked"]) == ["10"] and list(a["disliked"]) == ["11"]
    assert list(a["suggested"]) == ["11", "12"]
    assert list(dlg.loc["8", "liked"]) == [] and list(dlg.loc["8", "mentioned"]) == []
    items = data.df("items").set_index("item_id")
    assert items.loc["12", "title"] == "Gamma (2002)" and items.loc["12", "year"] == 2002


@pytest.mark.parametrize("split,n_turns", [("test", 3341), ("valid", 2716)])
def test_redial_eval_both_splits(split, n_turns):
    folder = shared_path("redial", "ievalm")
    data = load_data(DataConfig(name="redial-eval", path=str(folder), split=split))
    turns = data.df("eval_turns")
    assert len(turns) == n_turns
    assert {"dialog_id", "turn_id", "context", "entity", "rec", "resp"} <= set(turns.columns)
    row = turns.iloc[0]
    assert isinstance(row["dialog_id"], str) and isinstance(list(row["context"])[0], str)
    items = data.df("items").set_index("item_id")
    assert len(items) == 6583
    pari = items.loc["100026"]
    assert pari["title"] == "Pari (1995)" and list(pari["genres"]) == ["drama", "romance"]
    assert list(pari["director"]) == ["Dariush Mehrjui"] and pari["plot"].startswith("Haunted")


def test_redial_eval_accepts_the_parent_folder():
    folder = shared_path("redial")
    data = load_data(DataConfig(name="redial-eval", path=str(folder)))
    assert len(data.table("eval_turns")) == 3341


# --------------------------------------------------------------------------- TREC


def test_trec_dl19_real():
    folder = shared_path("trec-dl19")
    data = load_data(DataConfig(name="trec", path=str(folder)))
    assert len(data.table("queries")) == 43
    judg = data.df("judgments")
    assert len(judg) == 9260 and judg["query_id"].nunique() == 43
    assert data.judgments.features["grade"].dtype == "int8"
    assert sorted(judg["grade"].unique().tolist()) == [0, 1, 2, 3]
    run = data.df("run")
    assert len(run) == 4300 and run.iloc[0]["rank"] == 1
    items = data.df("items")
    assert len(items) == 4297 and items["item_id"].is_unique
    assert (items["title"] == "").all() and items["text"].str.len().min() > 0


def test_trec_json_hits_become_the_run_without_a_run_file(tmp_path):
    (tmp_path / "topics.test.txt").write_text("1\tfirst query\n2\tsecond\tquery\n")
    (tmp_path / "qrels.test.txt").write_text("1 0 d1 3\n1 0 d2 0\n2 Q0 d3 1\n")
    (tmp_path / "bm25_retrieve_results_test.json").write_text(json.dumps([
        {"query": "first query", "hits": [
            {"qid": 1, "docid": "d1", "rank": 1, "score": 2.5, "content": "passage one"},
            {"qid": 1, "docid": "d3", "rank": 2, "score": 1.0, "content": "passage three"}]},
        {"query": "second", "hits": [
            {"qid": 2, "docid": "d3", "rank": 1, "score": 4.0, "content": "passage three"}]},
    ]))
    data = load_data(DataConfig(name="trec", path=str(tmp_path)))
    assert data.df("queries")["text"].tolist() == ["first query", "second\tquery"]
    assert data.df("judgments")["grade"].tolist() == [3, 0, 1]
    assert data.df("items")["item_id"].tolist() == ["d1", "d3"]
    run = data.df("run")
    assert run["query_id"].tolist() == ["1", "1", "2"] and run["score"].tolist() == [2.5, 1.0, 4.0]


# --------------------------------------------------------------------------- generic


def _generic_frames():
    inter = pd.DataFrame({"uid": [7, 7, 9], "iid": [100, 101, 100], "score": [4.5, None, 2.0],
                          "ts": [1_600_000_000, 1_600_000_100, 1_600_000_200],
                          "device": ["web", "app", "web"]})
    items = pd.DataFrame({"pid": [100, 101], "name": ["Widget", "Gadget"], "price": [3.5, 9.0]})
    return inter, items


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_generic_with_mapping(tmp_path, fmt):
    inter, items = _generic_frames()
    ipath, mpath = tmp_path / f"inter.{fmt}", tmp_path / f"items.{fmt}"
    if fmt == "csv":
        inter.to_csv(ipath, index=False)
        items.to_csv(mpath, index=False)
    else:
        inter.to_parquet(ipath)
        items.to_parquet(mpath)
    cfg = DataConfig(name=fmt, path=str(ipath),
                     columns={"user_id": "uid", "item_id": "iid", "rating": "score",
                              "timestamp": "ts"},
                     items_path=str(mpath), items_columns={"item_id": "pid", "title": "name"})
    data = load_data(cfg)
    df = data.df("interactions")
    assert df["user_id"].tolist() == ["7", "7", "9"]
    assert df["item_id"].tolist() == ["100", "101", "100"]
    assert df["rating"].iloc[0] == 4.5 and math.isnan(df["rating"].iloc[1])
    assert df["timestamp"].tolist() == [1_600_000_000, 1_600_000_100, 1_600_000_200]
    assert df["device"].tolist() == ["web", "app", "web"]  # unmapped columns are kept
    assert data.interactions.features["rating"].dtype == "float32"
    items_df = data.df("items")
    assert items_df["item_id"].tolist() == ["100", "101"]
    assert items_df["title"].tolist() == ["Widget", "Gadget"]


def test_generic_csv_fills_missing_optional_columns(tmp_path):
    path = tmp_path / "clicks.tsv"
    path.write_text("user_id\titem_id\tts\nu1\ti1\t2020-01-02T00:00:00Z\nu2\ti1\t2020-01-03\n")
    data = load_data(DataConfig(name="csv", path=str(path), sep="\\t",
                                columns={"timestamp": "ts"}))
    df = data.df("interactions")
    assert df["rating"].isna().all()
    assert df["timestamp"].tolist() == [1577923200, 1578009600]
    assert data.interactions.features["rating"].dtype == "float32"
    assert data.interactions.features["timestamp"].dtype == "int64"


def test_generic_judgments_table(tmp_path):
    path = tmp_path / "qrels.csv"
    path.write_text("qid,pid,label\nq1,p1,3\nq1,p2,0\n")
    data = load_data(DataConfig(name="csv", path=str(path), table="judgments",
                                columns={"query_id": "qid", "doc_id": "pid", "grade": "label"}))
    assert data.judgments.features["grade"].dtype == "int8"
    assert data.df("judgments")["grade"].tolist() == [3, 0]
