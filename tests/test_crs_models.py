"""The simulation with real models: SmolLM2 on CPU (slow) and an OpenAI-compatible server (vllm:
the session's ``vllm serve`` of SmolLM2, see the ``openai_server`` fixture in conftest.py).

Both run two short dialogues end to end over a small catalog embedded with the packaged MiniLM,
and check the transcripts' structure rather than the (model-dependent) words.
"""

from __future__ import annotations

import json
import os

import pytest

from llmrec.crs.catalog import Catalog, CatalogConfig, Item
from llmrec.crs.engine import Engine, SimulationConfig
from llmrec.crs.tasks import Persona, Task

MOVIES = [
    Item("1", "Toy Story (1995)", ["Animation", "Children", "Comedy"], 1995, ["pixar", "fun"]),
    Item("2", "Alien (1979)", ["Horror", "Sci-Fi"], 1979, ["space", "creepy"]),
    Item("3", "Heat (1995)", ["Action", "Crime", "Thriller"], 1995, ["heist"]),
    Item("4", "Notting Hill (1999)", ["Comedy", "Romance"], 1999, ["london"]),
    Item("5", "Matrix, The (1999)", ["Action", "Sci-Fi", "Thriller"], 1999, ["cyberpunk"]),
    Item("6", "Shrek (2001)", ["Adventure", "Animation", "Children", "Comedy"], 2001, ["ogre"]),
    Item("7", "Godfather, The (1972)", ["Crime", "Drama"], 1972, ["mafia"]),
    Item("8", "Finding Nemo (2003)", ["Adventure", "Animation", "Children"], 2003, ["fish"]),
]


def _tasks():
    def task(tid, target, interests, liked, hints):
        return Task(task_id=tid, dataset="toy", user_id=tid, target_id=target,
                    target_title=MOVIES[int(target) - 1].title,
                    persona=Persona(activity="Efficiency-Seeking", interests=interests,
                                    liked=liked, disliked=[],
                                    language={"density": "brief", "tone": "neutral",
                                              "style": "casual"},
                                    orientation="wants a fitting suggestion quickly"),
                    target_hints=hints)

    return [task("kids", "8", ["Animation"], ["Toy Story (1995)", "Shrek (2001)"],
                 ["genres: adventure, animation, children", "it came out in the 2000s"]),
            task("scifi", "5", ["Sci-Fi", "Action"], ["Alien (1979)", "Heat (1995)"],
                 ["genres: action, sci-fi, thriller", "it came out in the 1990s"])]


def _check(res):
    assert len(res.records) == 2
    for rec in res.records:
        turns = rec["turns"]
        assert turns[0]["role"] == "user" and turns[0]["policy"] == "ask_for_recommendation"
        assert turns[0]["text"]
        agent = [t for t in turns if t["role"] == "assistant"]
        assert 1 <= len(agent) <= 2
        for t in agent:
            assert t["ok"] or t["error"]  # every agent turn parsed, or says why not
            rec_rating = t["ratings"]["recommendation"]["rating"]
            assert rec_rating in range(6)
            if t["ok"]:
                assert t["ratings"]["strategy"]["rating"] in range(6)
                assert t["ratings"]["expression"]["rating"] in range(6)
                assert t["ratings"]["expression"]["reason"]
        assert rec["end_reason"] in ("accepted", "user_ended", "max_rounds")
    json.dumps(res.records)  # transcripts are plain JSON


def _run(tmp_path, llm_kwargs, agent_kwargs=None, **sim_kwargs):
    from llmrec.llm import LLMConfig

    cfg = SimulationConfig(max_rounds=2, in_flight=2, out=str(tmp_path / "run"))
    cfg.agent.llm = LLMConfig(**llm_kwargs)
    cfg.simulator.llm = LLMConfig(**llm_kwargs)
    cfg.agent.max_new_tokens = 40
    cfg.simulator.max_new_tokens = 32
    for k, v in (agent_kwargs or {}).items():
        setattr(cfg.agent, k, v)
    for k, v in sim_kwargs.items():
        setattr(cfg.simulator, k, v)
    catalog = Catalog(MOVIES, CatalogConfig(cache=False, device="cpu", top_k=3))
    engine = Engine(cfg, catalog, _tasks())
    try:
        return engine.run()
    finally:
        engine.close()


@pytest.mark.slow
def test_two_dialogues_with_smollm2(tmp_path):
    pytest.importorskip("torch")
    res = _run(tmp_path, {"model": "smollm2", "device": "cpu"})
    _check(res)
    assert res.records[0]["models"]["agent"]["model"] == "smollm2"


@pytest.mark.vllm
def test_two_dialogues_through_an_openai_endpoint(tmp_path, monkeypatch, openai_server):
    """Agent and simulator through the openai backend: free generation, and every structured
    decision (the agent's action kind, the policy, the three ratings) by guided decoding on the
    server (scoring through its /tokenize and prompt_logprobs where a reply does not parse).

    openai_server (tests/conftest.py) is the session's `vllm serve` of SmolLM2, or the server
    LLMREC_TEST_OPENAI_BASE_URL points at.
    """
    monkeypatch.setenv("LLMREC_TEST_OPENAI_KEY", os.environ.get("OPENAI_API_KEY", "unused"))
    llm = {"backend": "openai", "base_url": openai_server.base_url, "model": openai_server.model,
           "api_key_env": "LLMREC_TEST_OPENAI_KEY", "concurrency": 4}
    res = _run(tmp_path, llm, {"decoding": "structured", "decisions": "guided"},
               decisions="guided")
    _check(res)
    agent = res.records[0]["models"]["agent"]
    assert agent["backend"] == "openai" and agent["model"] == openai_server.model
    # the server answered every request (a request that failed after its retries would show as a
    # "backend error" turn), and the decisions really went through guided decoding
    errors = [t["error"] for r in res.records for t in r["turns"] if t.get("error")]
    assert not [e for e in errors if e.startswith("backend error")], errors
    decisions = res.metrics["run"]["decisions"]
    assert decisions["guided"] + decisions["guided_fallback"] > 0, decisions
    assert any(t["ok"] for r in res.records for t in r["turns"] if t["role"] == "assistant")
