"""The agent's action parser: exact parses of valid replies, a reason for every invalid one."""

from __future__ import annotations

import pytest

from llmrec.crs.actions import Action, parse_action


@pytest.mark.parametrize("text, expected", [
    ("Search[space opera with robots]", Action("Search", "space opera with robots")),
    ("  Ask[Do you prefer comedies or dramas?]\n", Action("Ask", "Do you prefer comedies or dramas?")),
    ("Response[Happy to help!]", Action("Response", "Happy to help!")),
    ("Recommend[Heat (1995)]", Action("Recommend", "Heat (1995)", ("Heat (1995)",))),
    ("Recommend[Matrix, The (1999); Alien (1979) ;Up]",
     Action("Recommend", "Matrix, The (1999); Alien (1979) ;Up",
            ("Matrix, The (1999)", "Alien (1979)", "Up"))),
    ("Thought: the user wants sci-fi.\nAction: Search[sci-fi classics]",
     Action("Search", "sci-fi classics", thought="the user wants sci-fi.")),
    ("They liked Alien, so look for similar films. Search[alien horror in space]",
     Action("Search", "alien horror in space",
            thought="They liked Alien, so look for similar films.")),
    ("Ask[Which of [the two] do you mean?]", Action("Ask", "Which of [the two] do you mean?")),
    ("Response[Line one.\nLine two.]", Action("Response", "Line one.\nLine two.")),
])
def test_valid_replies_parse_exactly(text, expected):
    p = parse_action(text)
    assert p.ok and p.error is None
    assert p.action == expected


@pytest.mark.parametrize("text, reason", [
    ("", "empty reply"),
    ("   \n ", "empty reply"),
    ("I would recommend The Matrix.", "no action"),
    ("search[comedy]", "malformed action"),
    ("Search [comedy]", "malformed action"),
    ("SEARCH[comedy]", "malformed action"),
    ("Search[comedy", "unclosed bracket"),
    ("Ask[What do you like?] Thanks!", "text after the action"),
    ("Search[comedy] Ask[Which era?]", "more than one action"),
    ("Ask[]", "empty argument"),
    ("Response[   ]", "empty argument"),
    ("Response[Let me Search[comedy]]", "an action inside"),
    ("[1] Search[comedy]", "brackets before the action"),
    ("Recommend[Heat (1995);]", "empty title"),
    ("Recommend[A; B; C; D; E; F]", "6 titles"),
])
def test_invalid_replies_fail_with_reason(text, reason):
    p = parse_action(text)
    assert not p.ok and p.action is None
    assert reason in p.error


def test_max_titles_is_configurable():
    assert not parse_action("Recommend[A; B; C]", max_titles=2).ok
    assert parse_action("Recommend[A; B]", max_titles=2).action.titles == ("A", "B")


def test_user_text_and_render():
    a = parse_action("Recommend[Alien (1979); Aliens (1986)]").action
    assert a.user_text() == "I recommend: Alien (1979); Aliens (1986)"
    assert a.render() == "Recommend[Alien (1979); Aliens (1986)]"
    assert a.visible
    assert not parse_action("Search[x]").action.visible
    assert parse_action("Ask[Why?]").action.user_text() == "Why?"
