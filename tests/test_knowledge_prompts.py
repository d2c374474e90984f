"""Prompt templates and reply parsing."""

from __future__ import annotations

import pytest

from llmrec.errors import ConfigError
from llmrec.knowledge.parse import RAW_FIELD, parse_fields
from llmrec.knowledge.templates import load_template, prompts_dir

ITEM = {"item": {"title": "Toy Story", "year": 1995, "genres": ["Animation", "Comedy"],
                 "tags": ["pixar", "fun"], "text": ""}}
USER = {"profile": {"age": 25}, "max_rating": 5,
        "history": [{"title": "Heat", "year": 1995, "genres": ["Action"], "rating": 4.5},
                    {"title": "Jumanji", "year": None, "genres": [], "rating": 2}]}


@pytest.mark.parametrize("name,ctx", [("item_movie", ITEM), ("user_movie", USER),
                                      ("item_generic", ITEM), ("user_generic", USER)])
def test_every_template_renders_one_answer_per_field(name, ctx):
    t = load_template(name)
    msgs = t.messages(ctx)
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    for f in t.fields:
        assert f'"{f.id}"' in user
    assert t.entity == name.split("_")[0]
    repair = t.repair_messages(ctx, "some earlier answer")
    assert "some earlier answer" in repair[-1]["content"]
    schema = t.json_schema()
    assert schema["required"] == t.field_ids


def test_user_prompt_shows_the_history_it_is_given():
    user = load_template("user_movie").messages(USER)[1]["content"]
    assert "- Heat (1995) [Action]: 4.5 stars" in user
    assert "- Jumanji: 2 stars" in user
    assert "age 25" in user


def test_kar_factors_for_movies():
    assert load_template("item_movie").field_ids == [
        "genre", "director_actors", "time_period_country", "character", "plot_theme",
        "mood_tone", "critical_acclaim", "production_quality", "soundtrack"]


def test_template_hash_follows_content(tmp_path):
    src = (prompts_dir() / "knowledge" / "item_movie.jinja").read_text()
    a = tmp_path / "a.jinja"
    a.write_text(src)
    b = tmp_path / "b.jinja"
    b.write_text(src.replace("film expert", "film critic"))
    assert load_template(str(a)).hash == load_template("item_movie").hash
    assert load_template(str(b)).hash != load_template(str(a)).hash


def test_template_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="item_movie"):
        load_template("no_such_template")
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% block user %}hi{% endblock %}")
    with pytest.raises(ConfigError, match="front-matter"):
        load_template(str(bad))
    strict = tmp_path / "strict.jinja"
    strict.write_text("{#---\nentity: item\nfields: [{id: a}]\n---#}\n"
                      "{% block user %}{{ item.nope }}{% endblock %}")
    with pytest.raises(Exception, match="nope"):
        load_template(str(strict)).messages({"item": {}})


F = load_template("item_movie").fields


@pytest.mark.parametrize("text,expect,status", [
    ('{"genre": "Animation.", "director_actors": "John Lasseter."}',
     {"genre": "Animation.", "director_actors": "John Lasseter."}, "partial"),
    ('Sure!\n```json\n{"Genre": "Animation", "Director/Actors": ["Lasseter", "Hanks"]}\n```',
     {"genre": "Animation", "director_actors": "Lasseter; Hanks"}, "partial"),
    ('{"genre": "Animation", "plot_theme": "Toys come to li',  # cut off at max_new_tokens
     {"genre": "Animation", "plot_theme": "Toys come to li"}, "partial"),
    ('**Genre:** Animation.\n- Director and actors: John Lasseter\n  and Tom Hanks.\nMood/tone: warm',
     {"genre": "Animation.", "director_actors": "John Lasseter and Tom Hanks.", "mood_tone": "warm"},
     "partial"),
    ("A lovely movie.", {RAW_FIELD: "A lovely movie."}, "raw"),
])
def test_parse_is_lenient(text, expect, status):
    p = parse_fields(text, F)
    assert p.fields == expect
    assert p.status == status


def test_parse_all_fields_is_ok_and_keeps_template_order():
    import json

    ids = [f.id for f in F]
    text = json.dumps({k: f"About {k}." for k in reversed(ids)})
    p = parse_fields(text, F)
    assert p.status == "ok" and list(p.fields) == ids and p.missing == []
