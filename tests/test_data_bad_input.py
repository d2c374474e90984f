"""Bad input raises DataError naming the file, the line or column, and what to do."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from llmrec.data.loaders import DataConfig, bundled_path, load_data
from llmrec.errors import DataError

RATINGS_HEADER = "userId,movieId,rating,timestamp\n"
MOVIES = "movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n2,Jumanji (1995),Adventure\n"


def _ml_small(folder, ratings_body, movies=MOVIES):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.csv").write_text(RATINGS_HEADER + ratings_body)
    (folder / "movies.csv").write_text(movies)
    return folder


def _load_error(**kw) -> str:
    with pytest.raises(DataError) as info:
        load_data(DataConfig(**kw))
    return str(info.value)


def _snapshot(folder):
    return sorted((p.relative_to(folder), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in folder.rglob("*"))


# --------------------------------------------------------------------------- names and paths


def test_unknown_dataset_lists_valid_names():
    msg = _load_error(name="movielens-10m", path="/nowhere")
    assert "unknown dataset 'movielens-10m'" in msg
    for name in ("ml-latest-small", "movielens-1m", "movielens-100k", "redial", "redial-eval",
                 "trec", "csv", "parquet"):
        assert name in msg


def test_missing_folder_names_it(tmp_path):
    missing = tmp_path / "no-such-folder"
    msg = _load_error(name="movielens-1m", path=str(missing))
    assert str(missing) in msg and "does not exist" in msg and "movies.dat" in msg


def test_path_required_for_unbundled_dataset():
    msg = _load_error(name="trec")
    assert "needs a path" in msg and "topics" in msg and "qrels" in msg


def test_bundled_path_unknown_name():
    with pytest.raises(DataError, match="no bundled copy of 'ml-25m'.*ml-latest-small"):
        bundled_path("ml-25m")


@pytest.mark.parametrize("name,expected", [
    ("ml-latest-small", ["ratings.csv", "movies.csv"]),
    ("movielens-1m", ["movies.dat"]),
    ("movielens-100k", ["u.data", "u.item"]),
    ("trec", ["topics*.txt"]),
])
def test_empty_folder_says_which_files_were_expected(tmp_path, name, expected):
    msg = _load_error(name=name, path=str(tmp_path))
    assert str(tmp_path) in msg and "the folder is empty" in msg
    for f in expected:
        assert f in msg


def test_folder_lacking_one_file_lists_what_it_holds(tmp_path):
    (tmp_path / "movies.csv").write_text(MOVIES)
    msg = _load_error(path=str(tmp_path))
    assert "lacks ratings.csv" in msg and "it holds: movies.csv" in msg


def test_ml_1m_without_ratings_file(tmp_path):
    (tmp_path / "movies.dat").write_text("1::Toy Story (1995)::Comedy\n")
    msg = _load_error(name="movielens-1m", path=str(tmp_path))
    assert "no ratings file" in msg and "ratings.dat.gz" in msg and "movies.dat" in msg


def test_ml_1m_two_ratings_files_is_ambiguous(tmp_path):
    (tmp_path / "movies.dat").write_text("1::Toy Story (1995)::Comedy\n")
    (tmp_path / "ratings-a.dat").write_text("1::1::5::978300760\n")
    (tmp_path / "ratings-b.dat").write_text("1::1::5::978300760\n")
    msg = _load_error(name="movielens-1m", path=str(tmp_path))
    assert "ratings-a.dat" in msg and "ratings-b.dat" in msg and "keep only one" in msg


# --------------------------------------------------------------------------- malformed rows


def test_ratings_csv_too_many_fields(tmp_path):
    folder = _ml_small(tmp_path, "1,1,4.0,964982703\n1,2,3.0,964982704,extra\n")
    msg = _load_error(path=str(folder))
    assert "ratings.csv, line 3" in msg and "expected 4 fields" in msg and "found 5" in msg


def test_ratings_csv_too_few_fields(tmp_path):
    folder = _ml_small(tmp_path, "1,1,4.0,964982703\n\n1,2\n")
    msg = _load_error(path=str(folder))
    # the blank line still counts, so the number matches what an editor shows
    assert "ratings.csv, line 4" in msg and "expected 4 fields" in msg and "found 2" in msg
    assert "'1,2'" in msg


def test_ratings_csv_non_numeric_rating(tmp_path):
    folder = _ml_small(tmp_path, "1,1,4.0,964982703\n1,2,four,964982704\n")
    msg = _load_error(path=str(folder))
    assert "ratings.csv, line 3, column 'rating'" in msg and "'four' is not a number" in msg
    assert "fix or remove" in msg


def test_ratings_csv_missing_header_column(tmp_path):
    tmp_path.joinpath("ratings.csv").write_text("user,movie,rating,timestamp\n1,1,4,5\n")
    tmp_path.joinpath("movies.csv").write_text(MOVIES)
    msg = _load_error(path=str(tmp_path))
    assert "ratings.csv has no column 'userId'" in msg and "user, movie, rating, timestamp" in msg


def test_duplicate_movie_id_names_both_lines(tmp_path):
    folder = _ml_small(tmp_path, "1,1,4.0,964982703\n",
                       movies=MOVIES + "1,Toy Story again (1995),Comedy\n")
    msg = _load_error(path=str(folder))
    assert "movies.csv, line 4, column 'movieId'" in msg and "first at line 2" in msg


def test_empty_ratings_file(tmp_path):
    tmp_path.joinpath("ratings.csv").write_text("")
    tmp_path.joinpath("movies.csv").write_text(MOVIES)
    msg = _load_error(path=str(tmp_path))
    assert "ratings.csv is empty" in msg and "header" in msg


def test_invalid_utf8_reports_the_line(tmp_path):
    _ml_small(tmp_path, "1,1,4.0,964982703\n")
    tmp_path.joinpath("movies.csv").write_bytes(
        MOVIES.encode() + "3,Misérables (1995),Drama\n".encode("latin-1"))
    msg = _load_error(path=str(tmp_path))
    assert "movies.csv, line 4" in msg and "not valid utf-8" in msg and "re-save" in msg


@pytest.mark.parametrize("line,problem", [
    ("1::1::5::978300760::9", "expected 4 fields"),
    ("1::1::five::978300760", "'five' is not a number"),
    ("1::1::5", "expected 4 fields (UserID::MovieID::Rating::Timestamp) but found 3"),
    ("1::1::5::97830076.5", "is not a whole number"),
])
@pytest.mark.parametrize("gz", [False, True])
def test_ml_1m_bad_ratings_line(tmp_path, line, problem, gz):
    (tmp_path / "movies.dat").write_text("1::Toy Story (1995)::Comedy\n")
    body = "1::1::5::978300760\n2::1::3::978300761\n" + line + "\n"
    name = "ratings.dat.gz" if gz else "ratings.dat"
    if gz:
        with gzip.open(tmp_path / name, "wt") as fh:
            fh.write(body)
    else:
        (tmp_path / name).write_text(body)
    msg = _load_error(name="movielens-1m", path=str(tmp_path))
    assert f"{name}, line 3" in msg and problem in msg


def test_ml_100k_bad_genre_flag(tmp_path):
    (tmp_path / "u.data").write_text("1\t1\t5\t881250949\n")
    flags = "|".join(["0"] * 18 + ["7"])
    (tmp_path / "u.item").write_text(f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags}\n")
    msg = _load_error(name="movielens-100k", path=str(tmp_path))
    assert "u.item, line 1, column 'genre:Western'" in msg and "outside 0..1" in msg


def test_redial_bad_json_line(tmp_path):
    good = {"conversationId": "1", "messages": [], "initiatorWorkerId": 1,
            "respondentWorkerId": 2, "movieMentions": {}, "initiatorQuestions": {}}
    path = tmp_path / "test_data.jsonl"
    path.write_text(json.dumps(good) + "\n" + '{"conversationId": "2", "messages": [\n')
    msg = _load_error(name="redial", path=str(tmp_path))
    assert "test_data.jsonl, line 2" in msg and "not valid JSON" in msg


def test_redial_record_lacking_a_key(tmp_path):
    path = tmp_path / "test_data.jsonl"
    path.write_text(json.dumps({"conversationId": "1", "messages": []}) + "\n")
    msg = _load_error(name="redial", path=str(tmp_path))
    assert "line 1" in msg and "initiatorWorkerId" in msg and "movieMentions" in msg


def test_redial_eval_unknown_split_lists_present_ones(tmp_path):
    (tmp_path / "test_data_processed.jsonl").write_text("")
    (tmp_path / "id2info.json").write_text("{}")
    msg = _load_error(name="redial-eval", path=str(tmp_path), split="train")
    assert "train_data_processed.jsonl" in msg and "splits present: test" in msg


def test_trec_malformed_topic_and_grade(tmp_path):
    (tmp_path / "topics.txt").write_text("1\tgood query\n2 no tab here\n")
    (tmp_path / "qrels.txt").write_text("1 0 d1 3\n")
    msg = _load_error(name="trec", path=str(tmp_path))
    assert "topics.txt, line 2" in msg and "query id<TAB>query text" in msg

    (tmp_path / "topics.txt").write_text("1\tgood query\n")
    (tmp_path / "qrels.txt").write_text("1 0 d1 3\n1 0 d2 high\n")
    msg = _load_error(name="trec", path=str(tmp_path))
    assert "qrels.txt, line 2, column 'grade'" in msg and "'high' is not a number" in msg


# --------------------------------------------------------------------------- column mappings


def test_mapping_names_a_column_not_in_the_file(tmp_path):
    path = tmp_path / "inter.csv"
    path.write_text("uid,iid,score\n1,2,3\n")
    msg = _load_error(name="csv", path=str(path),
                      columns={"user_id": "uid", "item_id": "item", "rating": "score"})
    assert "inter.csv has no column 'item'" in msg and "columns.item_id" in msg
    assert "uid, iid, score" in msg


def test_mapping_with_an_unknown_canonical_key(tmp_path):
    path = tmp_path / "inter.csv"
    path.write_text("uid,iid,score\n1,2,3\n")
    msg = _load_error(name="csv", path=str(path),
                      columns={"user_id": "uid", "item_id": "iid", "rateing": "score"})
    assert "'rateing'" in msg and "user_id, item_id, rating, timestamp" in msg


def test_unmapped_required_column(tmp_path):
    path = tmp_path / "inter.csv"
    path.write_text("uid,iid\n1,2\n")
    msg = _load_error(name="csv", path=str(path), columns={"user_id": "uid"})
    assert "no column for item_id" in msg and "uid, iid" in msg and "columns=" in msg


def test_generic_bad_rating_names_line_and_column(tmp_path):
    path = tmp_path / "inter.csv"
    path.write_text("uid,iid,score\n1,2,3\n1,3,n/a?\n")
    msg = _load_error(name="csv", path=str(path),
                      columns={"user_id": "uid", "item_id": "iid", "rating": "score"})
    assert "inter.csv, line 3, column 'rating'" in msg and "'n/a?'" in msg


def test_parquet_bad_value_names_the_row(tmp_path):
    path = tmp_path / "inter.parquet"
    pd.DataFrame({"uid": ["1", "2", "3"], "iid": ["a", "b", "c"],
                  "score": ["4", "5", "bad"]}).to_parquet(path)
    msg = _load_error(name="parquet", path=str(path),
                      columns={"user_id": "uid", "item_id": "iid", "rating": "score"})
    assert "inter.parquet, row 3, column 'rating'" in msg and "'bad'" in msg


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "inter.parquet"
    path.write_text("uid,iid\n1,2\n")
    msg = _load_error(name="parquet", path=str(path))
    assert "inter.parquet is not a readable Parquet file" in msg


def test_generic_unsupported_table(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a\n1\n")
    msg = _load_error(name="csv", path=str(path), table="dialogues")
    assert "table='dialogues'" in msg and "interactions, items, users" in msg


# --------------------------------------------------------------------------- nothing written


def test_loads_never_write_into_the_data_folder(tmp_path):
    bad = _ml_small(tmp_path / "bad", "1,1,4.0,964982703\n1,2,x,1\n")
    good = _ml_small(tmp_path / "good", "1,1,4.0,964982703\n")
    before = _snapshot(tmp_path)
    with pytest.raises(DataError):
        load_data(DataConfig(path=str(bad)))
    assert len(load_data(DataConfig(path=str(good))).interactions) == 1
    assert _snapshot(tmp_path) == before


def test_extra_field_on_the_first_line_is_not_dropped(tmp_path):
    # pandas would only warn and silently drop the extra field here
    (tmp_path / "movies.dat").write_text("1::Toy Story (1995)::Comedy\n")
    (tmp_path / "ratings.dat").write_text("1::1::5::978300760::7\n1::1::4::978300761\n")
    msg = _load_error(name="movielens-1m", path=str(tmp_path))
    assert "ratings.dat, line 1: expected 4 fields" in msg and "found 5" in msg


def test_unclosed_quote_names_the_line(tmp_path):
    path = tmp_path / "inter.csv"
    path.write_text('uid,iid\n1,2\n3,"4\n5,6\n')
    msg = _load_error(name="csv", path=str(path), columns={"user_id": "uid", "item_id": "iid"})
    assert "inter.csv, line 3" in msg and "quot" in msg


# --------------------------------------------------------------------------- the row rule
# A row parses into what the table promises or is an error naming its line (issue 22, item 6).

UIR = {"user_id": "uid", "item_id": "iid", "rating": "r"}


def _csv_error(tmp_path, text, **kw) -> str:
    path = tmp_path / "inter.csv"
    path.write_text(text)
    return _load_error(name="csv", path=str(path), **{"columns": UIR, **kw})


@pytest.mark.parametrize("body,line,found", [
    ("1,2,3\n1,3\n", 3, 2),  # the optional rating would have read as missing
    ("1,2,3\n\n\n4,5\n", 5, 2),  # blank lines still counted
])
def test_generic_row_with_too_few_fields(tmp_path, body, line, found):
    msg = _csv_error(tmp_path, "uid,iid,r\n" + body)
    assert f"inter.csv, line {line}: expected 3 fields (uid,iid,r) but found {found}" in msg


def test_items_row_with_too_few_fields(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("item_id,title,genre\n1,a,x\n2,b\n")
    msg = _load_error(name="csv", path=str(path), table="items")
    assert "items.csv, line 3: expected 3 fields" in msg and "'2,b'" in msg


def test_header_only_files_are_errors(tmp_path):
    assert "has a header line but no data rows" in _csv_error(tmp_path, "uid,iid,r\n")
    folder = _ml_small(tmp_path / "ml", "")
    assert "ratings.csv has a header line but no data rows" in _load_error(path=str(folder))
    folder = _ml_small(tmp_path / "ml2", "1,1,4.0,964982703\n", movies="movieId,title,genres\n")
    assert "movies.csv has a header line but no data rows" in _load_error(path=str(folder))
    # optional side files may be empty
    folder = _ml_small(tmp_path / "ml3", "1,1,4.0,964982703\n")
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n")
    assert len(load_data(DataConfig(path=str(folder))).interactions) == 1


def test_a_column_named_twice_in_the_header(tmp_path):
    folder = _ml_small(tmp_path / "ml", "")
    (folder / "ratings.csv").write_text("userId,movieId,rating,rating,timestamp\n1,1,4,3,1\n")
    msg = _load_error(path=str(folder))
    assert "ratings.csv, line 1: the header names the column 'rating' twice" in msg


@pytest.mark.parametrize("row,problem", [
    ("1,1,-4.0,964982703", "the rating '-4.0' is outside 0.5..5.0"),
    ("1,1,400,964982703", "the rating '400' is outside 0.5..5.0"),
    ("1,1,inf,964982703", "the rating 'inf' is not a finite number"),
    ("1,1,4.0,964982703000", "is after the year 2100 in Unix seconds (if it is in milliseconds"),
    ("1,1,4.0,-5", "the timestamp '-5' is before 1970"),
])
def test_values_outside_the_plausible_range(tmp_path, row, problem):
    folder = _ml_small(tmp_path / "ml", "1,1,4.0,964982703\n" + row + "\n")
    msg = _load_error(path=str(folder))
    assert "ratings.csv, line 3" in msg and problem in msg


def test_ml_1m_rating_off_its_scale(tmp_path):
    (tmp_path / "movies.dat").write_text("1::Toy Story (1995)::Comedy\n")
    (tmp_path / "ratings.dat").write_text("1::1::5::978300760\n1::1::0::978300761\n")
    msg = _load_error(name="movielens-1m", path=str(tmp_path))
    assert "ratings.dat, line 2, column 'Rating': the rating '0' is outside 1.0..5.0" in msg


def test_generic_timestamps_in_milliseconds_and_infinite_ratings(tmp_path):
    msg = _csv_error(tmp_path, "uid,iid,r,t\n1,2,3,1600000000000\n",
                     columns={**UIR, "timestamp": "t"})
    assert "line 2, column 'timestamp'" in msg and "milliseconds" in msg
    assert "not a finite number" in _csv_error(tmp_path, "uid,iid,r\n1,2,-inf\n")


def test_lines_after_a_quoted_multi_line_title_are_named_right(tmp_path):
    # the title of movie 1 spans lines 2-3, so the duplicate is on line 5 and the empty id on 4
    folder = _ml_small(tmp_path / "ml", "1,1,4.0,964982703\n", movies=(
        'movieId,title,genres\n1,"Toy\nStory (1995)",Animation\n,Jumanji (1995),Adventure\n'))
    msg = _load_error(path=str(folder))
    assert "movies.csv, line 4, column 'movieId': the movie id is empty" in msg
    (folder / "movies.csv").write_text('movieId,title,genres\n1,"Toy\nStory (1995)",Animation\n'
                                       '2,Jumanji (1995),Adventure\n1,Dup (1995),Drama\n')
    msg = _load_error(path=str(folder))
    assert "movies.csv, line 5, column 'movieId': movie id '1' appears again (first at line 2)" \
        in msg
    (folder / "movies.csv").write_text('movieId,title,genres\n1,"Toy\nStory (1995)",Animation\n'
                                       '2,Jumanji (1995)\n')
    msg = _load_error(path=str(folder))
    assert "movies.csv, line 4: expected 3 fields (movieId,title,genres) but found 2" in msg


def test_the_bundled_data_still_loads_whole():
    data = load_data(DataConfig())
    assert (len(data.df("interactions")), len(data.df("items"))) == (100_836, 9_742)
