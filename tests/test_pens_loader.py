"""PENS loader (llmrec.data.pens): a fixture of the four files in the published schema
(tests/data/pens, invented news) and the real personalized_test.tsv under ../shared/data."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from conftest import shared_path
from llmrec.data.pens import (history_table, load_pens, parse_time, read_impressions,
                              read_personalized_test, references)
from llmrec.errors import DataError

FIXTURE = Path(__file__).parent / "data" / "pens"


def test_fixture_reads_all_four_files():
    d = load_pens(FIXTURE)
    assert d.missing == []
    assert list(d.news["news_id"]) == [f"N{i}" for i in range(1, 9)]
    assert d.news.set_index("news_id").loc["N3", "topic"] == "basketball"
    assert d.news.set_index("news_id").loc["N1", "title_entity"].startswith('{"Atlanta United"')
    tr = d.train
    assert list(tr["user_id"]) == ["U1", "U2", "U1"]
    assert tr.iloc[0]["dwell_s"] == [45, 3, 60, 12, 8]
    assert tr.iloc[0]["time_s"][1] - tr.iloc[0]["time_s"][0] == 149  # 5:10:01 -> 5:12:30
    assert tr.iloc[2]["pos"] == ["N7", "N8"] and tr.iloc[2]["dwell_pos_s"] == [15, 22]
    assert list(d.valid["user_id"]) == ["U3"]


def test_pm_times_and_noon():
    # 11:59:59 AM -> 12:00:05 PM is 6 s; 9:00:00 PM is 21:00
    assert parse_time("6/25/2019 12:00:05 PM") - parse_time("6/25/2019 11:59:59 AM") == 6
    assert parse_time("6/21/2019 9:00:00 PM") - parse_time("6/21/2019 12:00:00 AM") == 21 * 3600


def test_history_table_takes_the_last_impression_per_user():
    d = load_pens(FIXTURE)
    h = history_table(d.train, source="impressions")
    u1 = h[h.user_id == "U1"]
    assert list(u1.news_id) == ["N1", "N2", "N3", "N4", "N5", "N6"]
    assert list(u1.dwell_s) == [45, 3, 60, 12, 8, 34]
    t = history_table(d.test)
    assert list(t[t.user_id == "NT2"].news_id) == ["N2", "N4", "N8", "N2"]
    assert t["dwell_s"].isna().all() and t["time_s"].isna().all()


def test_references_merge_duplicates_and_skip_empty():
    d = load_pens(FIXTURE)
    ex = references(d.test)
    assert [(e["user_id"], e["news_id"]) for e in ex] == [
        ("NT1", "N6"), ("NT1", "N7"), ("NT2", "N6"), ("NT2", "N7")]
    assert len(ex[0]["refs"]) == 2  # NT1 wrote two headlines for N6; the N8 one is empty


def test_missing_files_name_the_file_and_the_source(tmp_path):
    shutil.copy(FIXTURE / "personalized_test.tsv", tmp_path)
    d = load_pens(tmp_path)
    assert d.missing == ["news.tsv", "train.tsv", "valid.tsv"]
    with pytest.raises(DataError, match=r"news\.tsv not found.*msnews\.github\.io/pens"):
        d.require("news")
    with pytest.raises(DataError, match="personalized_test.tsv not found"):
        load_pens(tmp_path / "..", require=("test",))
    with pytest.raises(DataError, match="does not exist"):
        load_pens(tmp_path / "nope")


def test_bad_rows_are_named(tmp_path):
    p = tmp_path / "personalized_test.tsv"
    p.write_text("userid\tclicknewsID\tposnewID\trewrite_titles\nNT1\tN1\tN2,N3\tonly one\n")
    with pytest.raises(DataError, match="line 2: 2 posnewID but 1 rewrite_titles"):
        read_personalized_test(p)
    p.write_text("user\tclicks\n")
    with pytest.raises(DataError, match="expected the header"):
        read_personalized_test(p)
    q = tmp_path / "train.tsv"
    q.write_text("U1\tN1 N2\t5\t6/19/2019 5:10:01 AM#TAB#6/19/2019 5:12:30 AM\tN3\t\t"
                 "7/3/2019 6:43:49 AM\t7/3/2019 7:06:06 AM\t3\n")
    with pytest.raises(DataError, match="2 ClicknewsID but 1 dwelltime"):
        read_impressions(q)
    q.write_text("U1\tN1\t5\t2019-06-19 05:10\tN3\t\t\t\t3\n")
    with pytest.raises(DataError, match="not in the PENS format"):
        read_impressions(q)


def test_real_personalized_test():
    folder = shared_path("pens-test")
    d = load_pens(folder, require=("test",))
    t = d.test
    assert len(t) == 103
    assert all(len(x) == 200 for x in t["titles"])
    assert sum(map(len, t["clicks"])) == 11261
    assert min(map(len, t["clicks"])) == 50 and max(map(len, t["clicks"])) == 465
    ex = references(t)
    assert sum(len(e["refs"]) for e in ex) == 20597  # 20,600 less the empty one and 2 repeats
    assert len(ex) == 20554
    h = history_table(t)
    assert h["news_id"].nunique() == 8324 and math.isnan(h["dwell_s"].iloc[0])
    assert "news.tsv" in d.missing
