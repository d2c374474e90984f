"""The simulation engine: dialogue flow, grounded ratings, batching, resume, config checks.

Most tests use a scripted backend (exact, instant) over a toy catalog whose "embedder" counts
genre words, so every expected transcript is known; one test runs the real transformers backend
on a tiny random Llama to check batching end to end.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from llmrec.crs.catalog import Catalog, CatalogConfig, Item
from llmrec.crs.engine import Engine, SimulationConfig, TranscriptStore, format_transcript
from llmrec.crs.tasks import Persona, Task
from llmrec.errors import ConfigError
from llmrec.llm.base import Generation

VOCAB = ("space", "robot", "comedy", "romance", "horror", "western")
ITEMS = [
    Item("1", "Star Quest (1990)", ["space", "robot"], year=1990),
    Item("2", "Robot Pals (1995)", ["robot", "comedy"], year=1995),
    Item("3", "Laugh Riot (2001)", ["comedy"], year=2001),
    Item("4", "Love Actually Not (2003)", ["romance", "comedy"], year=2003),
    Item("5", "Night Fright (1984)", ["horror"], year=1984),
    Item("6", "Dusty Trails (1970)", ["western"], year=1970),
]


class ToyCatalog(Catalog):
    """Vectors are normalised counts of the genre words in a text: search is exact and obvious."""

    def embed(self, texts):
        out = np.zeros((len(texts), len(VOCAB)), dtype=np.float32)
        for i, t in enumerate(texts):
            for j, w in enumerate(VOCAB):
                out[i, j] = t.lower().count(w)
            out[i] /= max(np.linalg.norm(out[i]), 1e-6)
        return out


def toy_catalog(top_k=3):
    cat = ToyCatalog(ITEMS, CatalogConfig(top_k=top_k, cache=False))
    cat._vectors = cat.embed([" ".join(it.genres) for it in ITEMS])
    return cat


def toy_task(tid, target_id, want):
    item = ITEMS[int(target_id) - 1]
    persona = Persona(activity="Efficiency-Seeking", interests=[want], liked=["Other (1999)"],
                      disliked=[], language={"density": "brief", "tone": "neutral",
                                             "style": "casual"},
                      orientation="wants a fitting suggestion quickly")
    return Task(task_id=tid, dataset="toy", user_id=tid, target_id=target_id,
                target_title=item.title, persona=persona,
                target_hints=[f"genres: {want}", "it is old"])


class Scripted:
    """A backend that plays every role by rules: the agent searches for the user's last words
    and recommends the top result; the user names its wish; raters pick the first option."""

    name = "scripted"

    def __init__(self):
        self.calls = []

    def identity(self):
        return {"model": "scripted", "revision": "0"}

    def _reply(self, conv):
        system = conv[0]["content"] if conv[0]["role"] == "system" else ""
        prompt = conv[-1]["content"]
        if system.startswith("You are a movie recommendation assistant"):
            top = re.search(r"^Search results: 1\. (.+?\(\d{4}\)) \(", prompt)
            if prompt.endswith("Write only the search keywords."):
                return prompt.splitlines()[0]
            if prompt.endswith('separated by ";".'):
                return top.group(1)
            if top is None:
                return f"Thought: look it up.\nSearch[{prompt.splitlines()[0]}]"
            return f"Recommend[{top.group(1)}]"
        if system.startswith("You are a person looking for a movie"):
            want = re.search(r"- genres: (\w+)", system).group(1)
            return f"I want {want} please."
        return "Because of the reply."

    def generate(self, convs, sampling=None, *, seeds=None, json_schema=None):
        self.calls.append(("generate", len(convs)))
        return [Generation(text=self._reply(c)) for c in convs]

    def choose(self, convs, options):
        self.calls.append(("choose", len(convs)))
        out = []
        for c in convs:
            prompt = c[-1]["content"]
            if "What is your next action?" in prompt:  # the structured agent's kind
                want = "Recommend" if prompt.startswith("Search results:") else "Search"
                out.append("ABCD".index(re.search(rf"^([A-D])\) {want}", prompt, re.M).group(1)))
            else:
                out.append(0)
        return out

    def score_options(self, convs, options):
        return [[0.0] * len(o) for o in options]

    def close(self):
        pass


def _cfg(tmp_path, **kw):
    base = dict(max_rounds=3, in_flight=4, out=str(tmp_path / "run"), save_prompts=False)
    base.update(kw)
    cfg = SimulationConfig(**base)
    cfg.simulator.min_rounds_before_end = 10  # the user never ends early: fixed-length dialogues
    cfg.simulator.decisions = "score"
    return cfg


TASKS = [toy_task("a", "1", "space"), toy_task("b", "5", "comedy"),
         toy_task("c", "2", "comedy"), toy_task("d", "6", "horror")]


def _run(tmp_path, tasks=TASKS, backend=None, **kw):
    backend = backend or Scripted()
    engine = Engine(_cfg(tmp_path, **kw), toy_catalog(), tasks,
                    backends={"agent": backend, "simulator": backend})
    return engine.run(), backend, engine


def test_dialogue_flow_and_grounded_ratings(tmp_path):
    res, _, _ = _run(tmp_path)
    by = {r["task_id"]: r for r in res.records}
    # a: wants space; the top search hit for "I want space please." is Star Quest, the target
    a = by["a"]
    assert a["success"] and a["hit_round"] == 1 and a["recall5"] and a["end_reason"] == "accepted"
    t1 = a["turns"][1]
    assert t1["action"] == "Recommend" and t1["titles"] == ["Star Quest (1990)"]
    assert t1["searches"][0]["results"][0] == "Star Quest (1990)"
    assert t1["ratings"]["recommendation"]["rating"] == 5
    assert a["turns"][-1]["policy"] == "end_conversation" and a["turns"][-1]["accepted"]
    # b: wants comedy but the target is a horror movie: never found, out of rounds
    b = by["b"]
    assert not b["success"] and b["rounds"] == 3 and b["end_reason"] == "max_rounds"
    assert [t["role"] for t in b["turns"]] == ["user", "assistant"] * 3
    rec = b["turns"][1]["ratings"]["recommendation"]
    assert rec["rating"] == 1 and "no shared genre" in rec["reason"]
    # first options everywhere: strategy 0, no deductions; reasons generated
    r = b["turns"][1]["ratings"]
    assert r["strategy"]["rating"] == 0 and r["strategy"]["reason"] == "Because of the reply."
    assert r["expression"]["rating"] == 5
    assert r["expression"]["deductions"] == {"flexibility": 0, "coherence": 0, "guidance": 0}
    # c: the top comedy is Laugh Riot, which shares 'comedy' with the target Robot Pals
    c = by["c"]
    assert c["turns"][1]["titles"] == ["Laugh Riot (2001)"]
    assert c["turns"][1]["ratings"]["recommendation"]["rating"] in (2, 3, 4)
    assert c["turns"][2]["policy"] == "provide_feedback_on_recommendation"
    assert res.metrics["SR"] == 0.25 and res.metrics["n_tasks"] == 4
    assert "Star Quest" in format_transcript(a)


def test_each_step_is_one_batched_call(tmp_path):
    res, backend, engine = _run(tmp_path, in_flight=4)
    calls = engine.calls.summary()
    # opening: 4 user messages in one call; every agent step: one call for all live dialogues
    assert backend.calls[0] == ("generate", 4)
    assert calls["agent_generate"]["mean_batch"] > 3
    one, backend1, engine1 = _run(tmp_path / "one", in_flight=1)
    # the same work in 4x fewer calls
    assert engine1.calls.summary()["agent_generate"]["rows"] == calls["agent_generate"]["rows"]
    assert engine1.calls.summary()["agent_generate"]["calls"] >= 3 * calls["agent_generate"]["calls"]
    # ... and the same transcripts, whatever the batching
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in res.records]
    strip1 = [{k: v for k, v in r.items() if k != "seconds"} for r in one.records]
    assert strip == strip1


def test_resume_after_interruption(tmp_path):
    finished = []

    def crash(rec):
        finished.append(rec["task_id"])
        if len(finished) == 2:
            raise KeyboardInterrupt

    backend = Scripted()
    engine = Engine(_cfg(tmp_path, in_flight=1), toy_catalog(), TASKS,
                    backends={"agent": backend, "simulator": backend})
    with pytest.raises(KeyboardInterrupt):
        engine.run(on_finished=crash)
    store = TranscriptStore(tmp_path / "run")
    assert [r["task_id"] for r in store.load()] == finished
    # a kill in the middle of the next write leaves a torn line behind
    with open(store.path, "ab") as fh:
        fh.write(b'{"task_id": "c", "turns": [')
    res, backend2, _ = _run(tmp_path, in_flight=1)
    assert res.new == 2
    assert sorted(r["task_id"] for r in res.records) == ["a", "b", "c", "d"]
    lines = store.path.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(ln) for ln in lines)
    # the resumed run did only the remaining dialogues' work
    assert sum(n for _, n in backend2.calls) < sum(n for _, n in backend.calls) * 2
    # nothing left: a third run calls no model at all
    res3, backend3, _ = _run(tmp_path, in_flight=1)
    assert res3.new == 0 and backend3.calls == [] and len(res3.records) == 4
    assert (tmp_path / "run" / "transcripts.arrow").is_file()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]["n_tasks"] == 4


def test_resume_with_other_settings_is_refused(tmp_path):
    _run(tmp_path, tasks=TASKS[:1])
    with pytest.raises(ConfigError, match="max_rounds"):
        _run(tmp_path, tasks=TASKS[:1], max_rounds=2)
    # speed settings do not matter; resume=false starts over
    assert _run(tmp_path, tasks=TASKS[:1], in_flight=2)[0].new == 0
    assert _run(tmp_path, tasks=TASKS[:1], max_rounds=2, resume=False)[0].new == 1


def test_run_json_of_an_earlier_version_still_resumes(tmp_path):
    """run.json used to hold {fingerprint, config}; the fingerprint is computed the same way."""
    _run(tmp_path, tasks=TASKS[:1])
    run_file = tmp_path / "run" / "run.json"
    rec = json.loads(run_file.read_text())
    assert set(rec) == {"fingerprint", "input_fingerprints", "inputs"}
    run_file.write_text(json.dumps({"fingerprint": rec["fingerprint"], "config": rec["inputs"]}))
    assert _run(tmp_path, tasks=TASKS[:1])[0].new == 0
    with pytest.raises(ConfigError, match="holds a run with different settings"):
        _run(tmp_path, tasks=TASKS[:1], max_rounds=2)


def test_failed_turns_are_recorded_not_repaired(tmp_path):
    class Broken(Scripted):
        def _reply(self, conv):
            text = super()._reply(conv)
            return "I think you will like Star Quest." if text.startswith("Recommend[") else text

    res, _, _ = _run(tmp_path, tasks=TASKS[:1], backend=Broken())
    t = res.records[0]["turns"][1]
    assert not t["ok"] and t["error"].startswith("no action")
    assert t["raw"] == "I think you will like Star Quest."
    assert t["ratings"]["strategy"]["rating"] is None
    assert t["ratings"]["recommendation"]["rating"] == 0
    # a failed turn never counts as success, even though it names the target
    assert not res.records[0]["success"]
    assert res.metrics["failed_turn_rate"] == 1.0


def test_search_limit_makes_a_failed_turn(tmp_path):
    class SearchForever(Scripted):
        def _reply(self, conv):
            text = super()._reply(conv)
            return "Search[more space]" if text.startswith("Recommend[") else text

    res, _, _ = _run(tmp_path, tasks=TASKS[:1], backend=SearchForever())
    t = res.records[0]["turns"][1]
    assert not t["ok"] and "search limit" in t["error"]
    assert len(t["searches"]) == 2


def test_leaked_title_is_masked(tmp_path):
    class Leaky(Scripted):
        def _reply(self, conv):
            text = super()._reply(conv)
            return "I want Star Quest!" if text.startswith("I want") else text

    res, _, _ = _run(tmp_path, tasks=[toy_task("z", "1", "space")], backend=Leaky())
    user0 = res.records[0]["turns"][0]
    assert user0["leak_masked"] and user0["text"] == "I want that movie!"
    assert user0["raw"] == "I want Star Quest!"


def test_tiny_llama_batches_and_fast_decisions(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    from llmrec.llm import LLMConfig, load_backend
    from llmrec.models.tiny import tiny_llama

    llm = load_backend(LLMConfig(model=str(tiny_llama(tmp_path / "llama")), batch_size=8))
    cfg = _cfg(tmp_path, max_rounds=2, in_flight=3)
    cfg.agent.max_new_tokens = cfg.simulator.max_new_tokens = 6
    cfg.simulator.min_rounds_before_end = 1
    cfg.simulator.decisions = "auto"
    engine = Engine(cfg, toy_catalog(), TASKS[:3], backends={"agent": llm, "simulator": llm})
    res = engine.run()
    assert len(res.records) == 3
    calls = engine.calls.summary()
    assert calls["simulator_generate"]["calls"] <= 2 and calls["agent_generate"]["calls"] <= 6
    assert max(n for k, n in engine.calls.calls if k == "agent_generate") == 3
    # the policy decision (two options after round 1) used the single-token shortcut
    assert engine.decisions.fast == calls["simulator_choose"]["rows"] > 0


def test_first_token_scores_match_a_plain_forward(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    import torch

    from llmrec.crs.decide import choose, first_token_scores
    from llmrec.llm import LLMConfig, load_backend
    from llmrec.models.tiny import tiny_llama

    llm = load_backend(LLMConfig(model=str(tiny_llama(tmp_path / "llama")), batch_size=2))
    convs = [[{"role": "user", "content": "Rate it " + "please " * i}] for i in range(3)]
    opts = [list("012345"), ["A", "B"], ["0", "1", "2"]]
    got = first_token_scores(llm, convs, opts)
    for conv, o, scores in zip(convs, opts, got):
        ids = torch.tensor([llm.encode(conv)])
        with torch.no_grad():
            logp = torch.log_softmax(llm.model(input_ids=ids).logits[0, -1].float(), -1)
        want = [float(logp[llm.tok(x, add_special_tokens=False)["input_ids"][0]]) for x in o]
        assert scores == pytest.approx(want, abs=1e-4)
    assert choose(llm, convs, opts) == [int(np.argmax(s)) for s in got]
    # multi-token answers fall back to the backend's whole-answer scoring
    assert first_token_scores(llm, convs[:1], [["yes please", "no thanks"]]) is None


def test_structured_decoding_composes_and_parses(tmp_path):
    cfg_kw = dict(tasks=TASKS[:2])
    res, backend, engine = _run(tmp_path, **cfg_kw)
    backend2 = Scripted()
    cfg = _cfg(tmp_path / "s")
    cfg.agent.decoding = "structured"
    engine2 = Engine(cfg, toy_catalog(), TASKS[:2],
                     backends={"agent": backend2, "simulator": backend2})
    res2 = engine2.run()
    t = res2.records[0]["turns"][1]
    assert t["ok"] and t["action"] == "Recommend" and t["titles"] == ["Star Quest (1990)"]
    assert [s["kind"] for s in t["steps"]] == ["Search", "Recommend"]
    assert t["steps"][1]["output"] == "Recommend[Star Quest (1990)]"
    assert engine2.calls.summary()["agent_choose"]["calls"] >= 2
    # same outcomes as the free agent that writes these actions itself
    assert [r["success"] for r in res2.records] == [r["success"] for r in res.records]
