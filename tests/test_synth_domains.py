"""The two SSRA domains: the movie labelling rule and leakage-free query splits."""

from __future__ import annotations

import pytest

from llmrec.config import load_config
from llmrec.errors import ConfigError
from llmrec.synth.domains import MovieQuery, SynthDataConfig, SynthTask, build_task, movie_query

from conftest import shared_path


def test_movie_rule_grades():
    q = MovieQuery(source="1", key=("Film-Noir", "Crime"), decade=1940, tags=("noir", "dark"))
    assert q.text == "film-noir and crime movie from the 1940s, tagged: noir, dark"
    assert q.grade({"Film-Noir", "Crime", "Drama"}, 1940, {"noir", "dark", "x"}) == 3
    assert q.grade({"Film-Noir", "Crime"}, 1950, {"noir", "dark"}) == 2  # decade differs
    assert q.grade({"Film-Noir", "Crime"}, 1940, {"noir"}) == 2          # a tag missing
    assert q.grade({"Crime", "Drama"}, 1940, {"noir", "dark"}) == 1      # one key genre
    assert q.grade({"Drama"}, 1940, {"noir", "dark"}) == 0               # no key genre


def test_movie_query_picks_rarest_genres_and_common_tags():
    attrs = ({"Drama", "Film-Noir", "Crime"}, 1940, {"noir", "dark", "rare"})
    genre_freq = {"Drama": 100, "Crime": 20, "Film-Noir": 3}
    tag_freq = {"noir": 5, "dark": 9, "rare": 1}
    q = movie_query("7", attrs, genre_freq, tag_freq)
    assert q.key == ("Film-Noir", "Crime") and q.tags == ("dark", "noir") and q.decade == 1940
    assert movie_query("8", ({"Drama"}, 1940, {"x"}), genre_freq, tag_freq) is None
    assert movie_query("9", ({"Drama", "Crime"}, None, {"x"}), genre_freq, tag_freq) is None


def test_movies_task_splits_and_labels(tmp_path):
    cfg = SynthDataConfig(n_seed_queries=3, n_eval_queries=2, n_log_queries=2,
                          candidates_per_level=[2, 1, 1, 1])
    task = build_task(cfg)
    seed_q, eval_q = set(task.seed["query_id"]), set(task.eval["query_id"])
    assert len(seed_q) == 3 and len(eval_q) == 2 and not seed_q & eval_q
    assert set(task.unlabelled.columns) == {"query_id", "query", "doc_id"}
    assert not set(task.unlabelled["query_id"]) & (seed_q | eval_q)
    # each query's source movie is one of its level-3 candidates
    for qid, grp in task.seed.groupby("query_id"):
        assert grp.loc[grp["doc_id"] == qid[1:], "grade"].tolist() == [3]
    assert not set(task.pool["doc_id"]) & set(task.eval["doc_id"])
    text = task.doc_text()
    assert all(d in text for d in task.seed["doc_id"]) and "Genres:" in text[task.seed["doc_id"][0]]
    # same seed, same task; saved and loaded intact
    again = build_task(cfg)
    assert again.seed.equals(task.seed) and again.eval.equals(task.eval)
    task.save(tmp_path / "task")
    loaded = SynthTask.load(tmp_path / "task")
    assert loaded.seed.equals(task.seed) and loaded.info["domain"] == "movies"
    assert (tmp_path / "task" / "llmrec_meta.json").is_file()


def test_config_errors():
    with pytest.raises(ConfigError, match="candidates_per_level"):
        load_config(SynthDataConfig, None, ["--candidates_per_level=[1,2]"])
    with pytest.raises(ConfigError, match="data.path"):
        build_task(SynthDataConfig(domain="trec"))


def test_trec_task_is_split_by_query():
    path = shared_path("trec-dl19")
    task = build_task(SynthDataConfig(domain="trec", path=str(path), n_seed_queries=10,
                                      n_eval_queries=5, split_seed=3))
    seed_q, eval_q = set(task.seed["query_id"]), set(task.eval["query_id"])
    assert len(seed_q) == 10 and len(eval_q) == 5 and not seed_q & eval_q
    assert task.info["seed_query_ids"] == sorted(seed_q, key=task.info["seed_query_ids"].index)
    # logs are seed queries' unjudged passages; the pool holds no held-out query's passage
    assert set(task.unlabelled["query_id"]) <= seed_q
    judged = set(zip(task.seed["query_id"], task.seed["doc_id"]))
    assert not judged & set(zip(task.unlabelled["query_id"], task.unlabelled["doc_id"]))
    assert not set(task.pool["doc_id"]) & set(task.eval["doc_id"])
    assert task.seed["grade"].between(0, 3).all()
    other = build_task(SynthDataConfig(domain="trec", path=str(path), n_seed_queries=10,
                                       n_eval_queries=5, split_seed=4, cross_log_pairs=40))
    assert set(other.seed["query_id"]) != set(task.seed["query_id"])
    # cross pairs: a seed query with a passage BM25 retrieved for another seed query
    extra = len(other.unlabelled) - len(build_task(SynthDataConfig(
        domain="trec", path=str(path), n_seed_queries=10, n_eval_queries=5,
        split_seed=4)).unlabelled)
    assert extra == 40
    assert set(other.unlabelled["query_id"]) <= set(other.seed["query_id"])
