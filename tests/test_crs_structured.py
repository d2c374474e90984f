"""Structured decoding for any instruct model: the argument step's two accepted forms.

An instruct model that follows the few-shot examples answers the argument step with the whole
action (``Ask[question]``) instead of the bare argument; wrapping that again gave
``Ask[Ask[...]]`` and failed the turn. These tests pin the rule: a bare argument is wrapped, a
written-out action of the chosen kind is taken as written, anything else still fails.
"""

from __future__ import annotations

import pytest
from test_crs_engine import TASKS, Scripted, _cfg, toy_catalog

from llmrec.crs.agent import Agent, AgentConfig
from llmrec.crs.engine import Engine


@pytest.fixture(scope="module")
def agent():
    return Agent(AgentConfig(decoding="structured"), top_k=3)


@pytest.mark.parametrize("kind,text,raw", [
    ("Ask", "Do you like space films?", "Ask[Do you like space films?]"),
    ("Ask", "  Ask[Do you like space films?] ", "Ask[Do you like space films?]"),
    ("Search", "Search[space robots]", "Search[space robots]"),
    ("Recommend", "Recommend[Star Quest (1990); Robot Pals (1995)]",
     "Recommend[Star Quest (1990); Robot Pals (1995)]"),
    ("Response", "Thought: be kind.\nResponse[Enjoy!]", "Thought: be kind.\nResponse[Enjoy!]"),
    ("Search", "Ask[what?]", "Ask[what?]"),  # kept as written: the kind check fails it below
    ("Ask", "", "Ask[]"),
])
def test_compose_never_wraps_an_action_twice(agent, kind, text, raw):
    assert agent.compose(kind, text) == raw


@pytest.mark.parametrize("kind,text", [
    ("Ask", "Ask[Do you like space films?]"),
    ("Ask", "Do you like space films?"),
    ("Recommend", "Recommend[Star Quest (1990)]"),
    ("Response", "Thought: be kind.\nResponse[Enjoy!]"),
])
def test_both_forms_give_the_same_action(agent, kind, text):
    parsed = agent.parse(agent.compose(kind, text), kind)
    assert parsed.ok and parsed.action.kind == kind
    assert "[" not in parsed.action.argument


@pytest.mark.parametrize("kind,text,error", [
    ("Search", "Ask[what do you like?]", "wrote Ask[...] at the argument step of Search[...]"),
    ("Ask", "Ask[Ask[nested?]]", "an action inside Ask[...]"),
    ("Ask", "Ask[unclosed", "unclosed bracket"),
    ("Ask", "Ask[one] Ask[two]", "more than one action"),
    ("Ask", "", "empty argument"),
    ("Recommend", "Recommend[a; b; c; d; e; f]", "6 titles"),
])
def test_malformed_replies_still_fail(agent, kind, text, error):
    parsed = agent.parse(agent.compose(kind, text), kind)
    assert not parsed.ok
    assert error in parsed.error


def test_kind_check_only_in_structured_parsing(agent):
    # the free agent's parse is unchanged: any kind is an action
    assert agent.parse("Ask[what do you like?]").ok


class WritesFullActions(Scripted):
    """The scripted agent, answering the argument step the way an instruct model that copies the
    few-shot examples does: with the whole action."""

    def _reply(self, conv):
        text = super()._reply(conv)
        prompt = conv[-1]["content"]
        if prompt.endswith("Write only the search keywords."):
            return f"Search[{text}]"
        if prompt.endswith('separated by ";".'):
            return f"Recommend[{text}]"
        return text


def _structured_run(tmp_path, backend):
    cfg = _cfg(tmp_path)
    cfg.agent.decoding = "structured"
    engine = Engine(cfg, toy_catalog(), TASKS[:2], backends={"agent": backend,
                                                              "simulator": backend})
    return engine.run()


def test_full_action_arguments_give_the_same_dialogues_as_bare_ones(tmp_path):
    bare = _structured_run(tmp_path / "bare", Scripted())
    full = _structured_run(tmp_path / "full", WritesFullActions())
    turns = lambda res: [[(t.get("action"), t.get("ok"), tuple(t.get("titles", ())))
                          for t in r["turns"] if t["role"] == "assistant"] for r in res.records]
    assert turns(full) == turns(bare)
    agent_turns = [t for r in full.records for t in r["turns"] if t["role"] == "assistant"]
    assert agent_turns and all(t["ok"] for t in agent_turns)
    step = agent_turns[0]["steps"][0]
    assert step["argument_output"].startswith("Search[") and step["output"].count("[") == 1
