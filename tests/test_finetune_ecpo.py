"""ECPO: the scripted expert, SGPT rows, forward EC log, rewrite checks, LoRA DPO, the loop.

The dialogue roles are played by the rule-based backend of the engine tests over the toy catalog
(exact and instant); the training stages run the real trl + peft code on a tiny random Llama with
SmolLM2's tokenizer and chat template.
"""

from __future__ import annotations

import json

import pytest

from llmrec.crs.engine import Engine, SimulationConfig
from llmrec.crs.transcript import TranscriptError
from llmrec.errors import ConfigError
from llmrec.finetune.ecpo import (Ecpo, EcpoConfig, check_rewrite, forward_log,
                                  rewrite_candidates, sgpt_rows)
from llmrec.finetune.ecpo.expert import ExpertConfig, ScriptedExpert
from test_crs_engine import TASKS, Scripted, toy_catalog, toy_task


def view(history, searches=(), left=2, rnd=1):
    return {"history": history, "searches": list(searches), "searches_left": left, "round": rnd}


def test_expert_asks_on_a_vague_opening_and_searches_on_a_specific_one():
    ex = ScriptedExpert(ExpertConfig(ask_below_words=3))
    vague = ex.step(view([{"role": "user", "text": "Hi, can you recommend a movie for me?"}]))
    assert vague.startswith("Ask[") and vague.endswith("]")
    specific = ex.step(view([{"role": "user",
                              "text": "I'd like a gritty space western with robots, please"}]))
    assert specific == "Search[gritty space western robots]"


def test_expert_recommends_unseen_results_then_searches_the_last_message():
    ex = ScriptedExpert(ExpertConfig(n_recommend=2))
    hist = [{"role": "user", "text": "space robots"},
            {"role": "assistant", "text": "Recommend[Star Quest (1990)]"},
            {"role": "user", "text": "Not that one, something funnier"}]
    # the search is built from every user message, newest first
    assert ex.step(view(hist, rnd=2)) == "Search[Not funnier space robots]"
    s1 = {"query": "q", "results": ["Star Quest (1990)", "Robot Pals (1995)", "Laugh Riot (2001)"]}
    assert ex.step(view(hist, [s1], rnd=2)) == "Recommend[Robot Pals (1995); Laugh Riot (2001)]"
    # everything found was recommended before: search again with the last message, then ask
    seen = {"query": "q", "results": ["Star Quest (1990)"]}
    assert ex.step(view(hist, [seen], left=1, rnd=2)) == "Search[Not funnier]"
    assert ex.step(view(hist, [seen], left=0, rnd=2)).startswith("Ask[")


def _expert_run(tmp_path, tasks=TASKS):
    cfg = SimulationConfig(max_rounds=3, in_flight=4, out=str(tmp_path / "expert"),
                           save_prompts=True)
    cfg.simulator.min_rounds_before_end = 10
    cfg.simulator.decisions = "score"
    sim = Scripted()
    engine = Engine(cfg, toy_catalog(), tasks,
                    backends={"agent": ScriptedExpert(ExpertConfig(ask_below_words=1)),
                              "simulator": sim})
    return engine.run()


def test_expert_drives_the_engine_and_its_steps_become_sft_rows(tmp_path):
    res = _expert_run(tmp_path)
    by = {r["task_id"]: r for r in res.records}
    # the simulated user of task a asks for "space": the expert searches and finds the target
    assert by["a"]["success"] and by["a"]["models"]["agent"]["model"] == "scripted-expert"
    assert by["b"]["success"] is False
    rows = sgpt_rows(res.records)
    assert rows and {r["task_id"] for r in rows} == {r["task_id"] for r in res.records
                                                     if r["success"]}
    a_rows = [r for r in rows if r["task_id"] == "a"]
    # one row per agent step: Search then Recommend, each with the student's prompt
    assert [r["completion"][0]["content"].split("[")[0] for r in a_rows] == ["Search",
                                                                             "Recommend"]
    first = a_rows[0]["prompt"]
    assert first[0]["role"] == "system" and first[-1] == {"role": "user",
                                                          "content": "I want space please."}
    assert a_rows[1]["prompt"][-1]["content"].startswith("Search results: 1. Star Quest")
    # the hidden target is never in what the expert was shown before it searched
    assert "Star Quest" not in json.dumps(a_rows[0]["prompt"])
    all_rows = sgpt_rows(res.records, only_successful=False)
    assert len(all_rows) > len(rows)


def test_sgpt_rows_need_saved_prompts():
    rec = {"task_id": "x", "task": toy_task("x", "1", "space").to_dict(), "success": True,
           "turns": [{"role": "assistant", "round": 1, "ok": True,
                      "steps": [{"output": "Ask[hm?]"}]}]}
    with pytest.raises(ConfigError, match="save_prompts"):
        sgpt_rows([rec])
    # a record that is not a transcript is refused by name, not with a KeyError
    del rec["turns"][0]["ok"]
    with pytest.raises(TranscriptError, match=r"turns\[0\]\.ok: missing key"):
        sgpt_rows([rec])


def test_forward_log_and_candidates(tmp_path):
    res = _expert_run(tmp_path)
    turns = forward_log(res.records)
    agent_turns = sum(1 for r in res.records for t in r["turns"] if t["role"] == "assistant")
    assert len(turns) == agent_turns
    t = turns[0]
    assert t["context"][-1]["role"] == "user" and t["response"].startswith("Recommend[")
    assert t["rating"] == 5 and t["dialogue"][0]["role"] == "user"
    # the titles the turn's searches returned go with it (the rewriter may only recommend those)
    assert t["results"] and t["results"][0] == "Star Quest (1990)"
    fake = [dict(t, rating=r, ok=ok) for r, ok in ((0, True), (2, True), (4, True), (3, False),
                                                   (None, True), (5, True))]
    assert [c["rating"] for c in rewrite_candidates(fake, lam=4)] == [2]
    assert [c["rating"] for c in rewrite_candidates(fake, lam=5)] == [2, 4]


@pytest.mark.parametrize("original,rewrite,kind,why", [
    ("Ask[Any genre?]", "Ask[Which genre do you enjoy most, and why?]", "Ask", None),
    ("Ask[Any genre?]", "Ask[any  genre?]", "Ask", "same as the original"),
    ("Ask[Any genre?]", "Which genre?", "Ask", "invalid action"),
    ("Ask[Any genre?]", "Search[genre]", "Ask", "not a user-visible action"),
    ("Ask[Any genre?]", "Response[Enjoy!]", "Ask", "changed the action kind"),
    ("Recommend[A (1990)]", "Recommend[A (1990); B (1991)]", "Recommend", None),
])
def test_check_rewrite(original, rewrite, kind, why):
    got = check_rewrite(original, rewrite, kind)
    assert (got is None) if why is None else got.startswith(why)


def test_check_rewrite_wants_catalog_titles_in_recommendations():
    known = {"A (1990)", "B (1991)"}.__contains__
    assert check_rewrite("Recommend[A (1990)]", "Recommend[A (1990); B (1991)]", "Recommend",
                         known_title=known) is None
    # prose inside the brackets parses as one "title", but it is not a recommendation
    why = check_rewrite("Recommend[A (1990)]", "Recommend[This answer offers more context]",
                        "Recommend", known_title=known)
    assert why.startswith("recommends titles not in the catalog")


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    pytest.importorskip("trl")
    from llmrec.models import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("llm") / "m")


def test_lora_dpo_saves_an_adapter_plain_peft_loads(tiny_llm, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmrec.llm.tuning import LoraDPOConfig, dpo_lora

    prompt = [{"role": "system", "content": "You recommend movies."},
              {"role": "user", "content": "Something scary?"}]
    pairs = [{"prompt": prompt, "chosen": [{"role": "assistant", "content": c}],
              "rejected": [{"role": "assistant", "content": r}]}
             for c, r in (("Ask[Old or new horror?]", "Ask[What?]"),
                          ("Recommend[Night Fright (1984)]", "Response[No idea.]"))] * 2
    cfg = LoraDPOConfig(learning_rate=5e-3, epochs=1, batch_size=2, grad_accum=1, max_steps=2,
                        max_length=256)
    out = tmp_path / "dpo"
    summary = dpo_lora(tiny_llm, pairs, out, cfg, quiet=True)
    assert summary["steps"] == 2 and len(summary["curve"]) == 2
    assert summary["tokens_per_second"] > 0 and summary["trainable_parameters"] > 0
    assert "rewards/accuracies" in summary["curve"][0]
    # the saved adapter on the reference model (plain peft) == the merged model
    tok = AutoTokenizer.from_pretrained(str(out))
    ids = tok("Recommend[Night Fright (1984)]", return_tensors="pt").input_ids
    merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llm))
    peft = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    with torch.no_grad():
        a, b = merged(ids).logits, peft(ids).logits
        ref = AutoModelForCausalLM.from_pretrained(str(tiny_llm)).eval()(ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, ref, atol=1e-4)  # training moved the weights


class Rewriter(Scripted):
    """The toy roles plus a rewriter that answers the argument-mode rewrite prompt."""

    def _reply(self, conv):
        if conv[0]["content"].startswith("You improve the replies"):
            last = conv[-1]["content"]
            if "Write better recommendations" in last:
                return "Laugh Riot (2001); Robot Pals (1995)"
            return "Could you tell me which era you like?"
        return super()._reply(conv)

    @staticmethod
    def _prefer(opts):
        # expression deductions (options "0".."1" or "0".."2"): deduct one point each, so
        # turns are rated 2 and become rewrite candidates
        return [1.0 if (o == "1" and opts[0] == "0" and len(opts) <= 3) else 0.0 for o in opts]

    def score_options(self, convs, options):
        return [self._prefer(list(o)) for o in options]

    def choose(self, convs, options):
        return [max(range(len(o)), key=lambda i, o=list(o): self._prefer(o)[i])
                for o in options]


def _ecpo_cfg(tmp_path, model, stages):
    cfg = EcpoConfig(out=str(tmp_path / "ecpo"), max_rounds=2, in_flight=4, stages=stages)
    for sc in (cfg.simulator,):
        sc.min_rounds_before_end = 10
        sc.decisions = "score"
        sc.llm.model = "sim"
    cfg.agent.llm.model = str(model)
    cfg.rewrite.llm.model = "rewriter"
    cfg.rewrite.lam = 5
    cfg.expert.ask_below_words = 1
    cfg.sgpt.only_successful = True
    cfg.sgpt.lora.epochs = 1
    cfg.sgpt.lora.batch_size = 2
    cfg.sgpt.lora.max_length = 2048
    cfg.dpo.max_steps = 1
    cfg.dpo.batch_size = 2
    cfg.dpo.grad_accum = 1
    cfg.dpo.max_length = 2048
    cfg.eval.judge.model = "judge"
    return cfg


def test_lora_training_that_diverges_is_refused_and_saves_nothing(tiny_llm, tmp_path):
    """A model whose training loss is NaN (here: a base weight set to NaN, as a diverged run or
    a broken attention kernel leaves it) is not saved: it would answer token 0 forever."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmrec.errors import LlmrecError
    from llmrec.llm.tuning import LoraSFTConfig, sft_lora

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llm))
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "mlp" in n).fill_(float("nan"))
    broken = tmp_path / "broken"
    model.save_pretrained(str(broken))
    AutoTokenizer.from_pretrained(str(tiny_llm)).save_pretrained(str(broken))
    rows = [{"prompt": [{"role": "user", "content": "Something scary?"}],
             "completion": [{"role": "assistant", "content": "Ask[Old or new horror?]"}]}] * 4
    out = tmp_path / "sft"
    out.mkdir()
    cfg = LoraSFTConfig(epochs=1, batch_size=2, max_steps=2, max_length=128)
    with pytest.raises(LlmrecError, match="diverged: the loss was not finite from step 1"):
        sft_lora(broken, rows, out, cfg, quiet=True)
    assert list(out.iterdir()) == []


def test_the_loop_end_to_end_and_resume(tiny_llm, tmp_path, monkeypatch):
    """Every stage on toy data: the scripted roles play the dialogues, the tiny Llama is really
    fine-tuned (SFT, then DPO on top); a rerun reuses every artifact."""
    backend = Rewriter()
    train = [toy_task("a", "1", "space"), toy_task("c", "2", "robot"),
             toy_task("d", "6", "horror")]
    held = [toy_task("e", "3", "comedy"), toy_task("f", "5", "horror")]
    # the toy catalog is made fresh for each Ecpo (the engine caches nothing in it)
    cfg = _ecpo_cfg(tmp_path, tiny_llm, ["expert", "sgpt", "forward", "rewrite", "dpo", "eval"])
    # the agent's LLM is the scripted role too (its replies do not depend on the weights), the
    # models are still trained and saved
    runner = Ecpo(cfg, catalog=toy_catalog(), train=train, held_out=held,
                  backend_factory=lambda llm: backend)
    summary = runner.run()
    out = tmp_path / "ecpo"
    assert summary["expert"]["SR"] > 0
    assert summary["sgpt"]["rows"] > 0 and (out / "models" / "sgpt" / "adapter").is_dir()
    meta = json.loads((out / "models" / "sgpt" / "llmrec_meta.json").read_text())
    assert meta["data_hash"] and meta["training"]["steps"] >= 1
    assert (out / "models" / "sgpt" / "curve.jsonl").is_file()
    assert (out / "forward_ec.jsonl").is_file()
    ec = [json.loads(x) for x in (out / "pairs" / "ec.jsonl").read_text().splitlines()]
    assert ec and all(p["chosen"][0]["content"] != p["rejected"][0]["content"] for p in ec)
    assert summary["dpo"]["ecpo"]["trained"] and summary["dpo"]["ecpo_noec"]["trained"]
    assert set(summary["eval"]) == {"base", "sgpt", "ecpo", "ecpo_noec"}
    assert 0.0 <= summary["eval"]["ecpo"]["WR_vs_base"]["overall"] <= 1.0
    # the judge's position bias sits beside its WR: both orders of every comparison were judged
    bias = summary["eval"]["ecpo"]["judge_position_bias"]
    assert bias["total"] == 2 * 2 * len(cfg.eval.judge_criteria)
    shares = [bias["share_first"], bias["share_second"], bias["share_tie"]]
    assert abs(sum(shares) - 1.0) < 1e-3
    results = json.loads((out / "results.json").read_text())
    assert results["base"]["n_tasks"] == 2
    # rerun: nothing is retrained (same data), the transcripts are reused
    mtime = (out / "models" / "ecpo" / "llmrec_meta.json").stat().st_mtime
    Ecpo(cfg, catalog=toy_catalog(), train=train, held_out=held,
         backend_factory=lambda llm: backend).run()
    assert (out / "models" / "ecpo" / "llmrec_meta.json").stat().st_mtime == mtime
    # other pairs for an existing model: refused, not silently overwritten
    (out / "pairs" / "ec.jsonl").write_text(
        (out / "pairs" / "ec.jsonl").read_text().splitlines()[0] + "\n")
    cfg2 = _ecpo_cfg(tmp_path, tiny_llm, ["dpo"])
    with pytest.raises(ConfigError, match="trained on other data"):
        Ecpo(cfg2, catalog=toy_catalog(), train=train, held_out=held,
             backend_factory=lambda llm: backend).run()


def test_no_successful_expert_dialogue_is_a_clear_error(tiny_llm, tmp_path):
    backend = Rewriter()
    train = [toy_task("b", "5", "comedy")]  # the user asks for comedy, the target is horror
    cfg = _ecpo_cfg(tmp_path, tiny_llm, ["expert", "sgpt"])
    with pytest.raises(ConfigError, match="succeeded on 0 of 1"):
        Ecpo(cfg, catalog=toy_catalog(), train=train, held_out=[toy_task("e", "3", "comedy")],
             backend_factory=lambda llm: backend).run()


def test_config_checks():
    from llmrec.finetune.ecpo import RewriteConfig

    with pytest.raises(ValueError, match="lambda"):
        RewriteConfig(lam=7)
    with pytest.raises(ValueError, match="stages"):
        EcpoConfig(stages=["sft"])
    with pytest.raises(ValueError, match="expert.llm"):
        ExpertConfig(kind="llm")
