"""Domain post-training: metrics by hand, loss masking (CPT all tokens, SFT answers only),
a killed stage resuming from its checkpoint, finished stages skipped, and leakage checks."""

from __future__ import annotations

import json
import math
import pytest

from llmrec.finetune.domain import metrics as M
from llmrec.finetune.domain import tasks as T

# --------------------------------------------------------------------------- metrics


def test_metrics_by_hand():
    # tp 3, fp 1, fn 1 -> P = R = 3/4
    assert M.micro_f1([["a", "b"], ["c", "x"]], [["a", "b"], ["c", "d"]]) == pytest.approx(0.75)
    assert M.micro_f1([[]], [["a"]]) == 0.0
    # pos {0.9, 0.4}, neg {0.5, 0.1}: pairs won 3 of 4
    assert M.auc([0.9, 0.5, 0.4, 0.1], [1, 0, 1, 0]) == pytest.approx(0.75)
    assert M.auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert M.auc([1.0], [1]) is None
    s = [0.1, 0.7, 0.3, 0.7]
    assert M.ranks_of(s, [1]) == [1]  # the tie with index 3 counts against it
    assert M.hit_at(s, 1, 1) == 0.0 and M.hit_at(s, 1, 2) == 1.0
    assert M.ndcg_at(s, 2, 10) == pytest.approx(1 / math.log2(4))
    assert M.ndcg_at(s, 0, 3) == 0.0
    assert M.recall_at(s, [1, 2], 2) == 0.5
    # LCS("the cat sat", "the cat on the mat sat") = 3 -> P 1, R 1/2
    assert M.rouge_l("The cat sat", "the cat on the mat sat") == pytest.approx(2 / 3)
    assert M.rouge_l("", "") == 1.0 and M.rouge_l("a", "b") == 0.0
    assert M.win_rate([1, 0.5, 0]) == 0.5 and M.win_rate([]) is None


def test_answer_parsing_and_checks():
    assert T.parse_genres("Comedy, Sci-Fi and children's, film noir") == \
        ["Children's", "Comedy", "Film-Noir", "Sci-Fi"]
    assert T.check_answer({"task": "genre", "gold": ["Drama"]}, "Drama") is True
    assert T.check_answer({"task": "genre", "gold": ["Drama"]}, "Horror, War") is False
    assert T.check_answer({"task": "plot_title", "completion": "C"}, "C. Heat (1995)") is True
    assert T.check_answer({"task": "plot_title", "completion": "C"}, "B") is False
    assert T.check_answer({"task": "rating", "completion": "No"}, "no, they will not") is True
    assert T.check_answer({"task": "next_item", "completion": "Heat (1995)"},
                          "heat (1995).") is True


def test_redial_speakers_alternate_back_from_the_seeker():
    ctx = ["Hi, any comedies?", "", "Try Ted (2012)", "Seen it, another?"]
    assert T.speakers(ctx) == [("user", "Hi, any comedies?"), ("assistant", "Try Ted (2012)"),
                               ("user", "Seen it, another?")]


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("trl")
    from llmrec.models import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("llm") / "m", layers=1, hidden=32, heads=2,
                      kv_heads=1, intermediate=64)


def _cfg(method="full", **kw):
    from llmrec.finetune.domain.train import TrainConfig

    base = dict(method=method, max_length=32, batch_size=2, max_steps=4, save_steps=2,
                learning_rate=1e-3, warmup_ratio=0.0)
    base.update(kw)
    return TrainConfig(**base)


SFT_ROWS = [{"prompt": [{"role": "user", "content": f"Genre of movie {i}?"}],
             "completion": [{"role": "assistant", "content": "Crime drama"}]} for i in range(6)]


def test_loss_masking_cpt_all_tokens_sft_answer_only(tiny, tmp_path):
    from llmrec.finetune.domain.train import make_trainer

    docs = [{"text": "Heat is a crime film set in Los Angeles. " * 3},
            {"text": "Toy Story is about toys."}] * 4
    tr, _ = make_trainer("cpt", tiny, docs, tmp_path / "w1", _cfg(), 0, quiet=True)
    batch = next(iter(tr.get_train_dataloader()))
    assert batch["input_ids"].shape[1] == 32  # packed into max_length blocks
    assert (batch["labels"] == batch["input_ids"]).all()  # every token is in the loss

    tr, tok = make_trainer("sft", tiny, SFT_ROWS, tmp_path / "w2", _cfg("lora", max_length=64), 0,
                           quiet=True)
    batch = next(iter(tr.get_train_dataloader()))
    answer = tok("Crime drama", add_special_tokens=False)["input_ids"]
    for ids, labels in zip(batch["input_ids"], batch["labels"]):
        kept = labels[labels != -100].tolist()
        # the answer, then the end-of-turn token and the template's newline; nothing of the prompt
        assert kept[:len(answer)] == answer
        assert kept[len(answer)] == tok.convert_tokens_to_ids("<|im_end|>")
        assert len(kept) == len(answer) + 2
        assert (labels != -100).sum() < (ids != tok.pad_token_id).sum()


class _Killed(Exception):
    pass


def _kill_at_first_save():
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            raise _Killed(f"killed after saving step {state.global_step}")

    return Kill()


def test_killed_training_resumes_from_its_checkpoint(tiny, tmp_path):
    from llmrec.finetune.domain.train import train

    cfg = _cfg("lora", max_length=64)
    dest, work = tmp_path / "dest", tmp_path / "work"
    dest.mkdir()
    with pytest.raises(_Killed):
        train("sft", tiny, SFT_ROWS, dest, work, cfg, 0, quiet=True,
              callbacks=[_kill_at_first_save()])
    assert (work / "checkpoint-2").is_dir()
    s = train("sft", tiny, SFT_ROWS, dest, work, cfg, 0, quiet=True)
    assert s["resumed_from_step"] == 2 and s["steps"] == 4
    assert (dest / "config.json").is_file() and (dest / "adapter").is_dir()
    # other inputs: the old checkpoints are not resumed
    work2 = tmp_path / "work2"
    with pytest.raises(_Killed):
        train("sft", tiny, SFT_ROWS, dest, work2, cfg, 0, quiet=True,
              callbacks=[_kill_at_first_save()])
    dest2 = tmp_path / "dest2"
    dest2.mkdir()
    s = train("sft", tiny, SFT_ROWS[:4], dest2, work2, cfg, 0, quiet=True)
    assert s["resumed_from_step"] == 0


# --------------------------------------------------------------------------- the recipe


def fake_sources():
    """A small Sources in the real shapes (no files needed)."""
    from llmrec.finetune.domain.data import Movie, Sources

    genres = [["Comedy"], ["Drama"], ["Action", "Thriller"], ["Horror"], ["Comedy", "Romance"]]
    movies = {i: Movie(i, f"Movie {i} (199{i % 10})", genres[i % 5],
                       plot=f"Plot number {i}: a story about person {i} who travels far.",
                       director=f"Director {i}", actors=f"Actor {i}", released="1995",
                       year="1995", knowledge=f"Movie {i} has a fine soundtrack. Critics "
                                              "praised it.")
              for i in range(1, 41)}
    ratings = {u: [((u * 7 + k) % 40 + 1, 5 if k % 3 else 2, 1000 + k) for k in range(20)]
               for u in range(1, 13)}
    turns = [{"dialog_id": str(d), "turn_id": 2, "context": [f"I like movie {d}", "Sure",
                                                              "Anything else?"],
              "rec": [f"Film {d % 10} (2000)"], "resp": f"Try Film {d % 10} (2000)"}
             for d in range(30)]
    info = {str(k): {"name": f"Film {k} (2000)", "genre": ["drama"], "plot": f"Film {k} plot."}
            for k in range(30)}
    src = Sources(movies, ratings, turns[:20], turns[20:], info, {"Movie 1": ["fun", "old"]})
    src.eval_items, src.train_items = list(range(1, 9)), list(range(9, 41))
    src.eval_users, src.train_users = [1, 2, 3], list(range(4, 13))
    return src


def _domain_cfg(tiny, out, **over):
    from llmrec.config import from_dict
    from llmrec.finetune.domain import DomainConfig

    small = {"max_length": 64, "batch_size": 2, "max_steps": 2, "save_steps": 1,
             "learning_rate": 1e-3}
    d = {"model": str(tiny), "out": str(out), "seed": 0,
         "suite": {"n_train": 3, "n_eval": 3, "n_candidates": 4, "history": 3,
                   "genre_tokens": 4, "knowledge_tokens": 8, "reply_tokens": 4,
                   "general_tokens": 6, "general_held_out": 2},
         "cpt": {"replay_samples": 1, "max_docs": 12, "train": {**small, "method": "full"}},
         "sft": {"train": {**small, "method": "lora", "max_length": 384}},
         "dpo": {"prompts_per_task": 2, "samples": 2, "max_new_tokens": 4,
                 "train": {**small, "method": "lora", "learning_rate": 1e-4,
                           "max_length": 384}},
         "eval": {"llm": {"device": "cpu", "batch_size": 8, "fast_decode": "off"},
                  "judge": {"model": str(tiny), "device": "cpu", "fast_decode": "off"}}}
    for k, v in over.items():
        d[k] = v
    return from_dict(DomainConfig, d)


def test_stages_end_to_end_then_skipped(tiny, tmp_path):
    from llmrec.finetune.domain import Domain

    cfg = _domain_cfg(tiny, tmp_path / "run", stages=["cpt", "sft"],
                      eval={"variants": ["base", "cpt", "cpt_sft"],
                            "llm": {"device": "cpu", "batch_size": 8, "fast_decode": "off"}})
    s = Domain(cfg, sources=fake_sources(), quiet=True).run()
    assert s["cpt"]["skipped"] is False and s["cpt"]["steps"] == 2
    assert 0 < s["cpt"]["general_char_share"] < 0.6
    assert s["sft"]["cpt_sft"]["rows"] == 3 * 7
    models = tmp_path / "run" / "models"
    stamp = (models / "cpt" / "model.safetensors").stat().st_mtime_ns
    assert not (tmp_path / "run" / "work" / "cpt").exists()  # checkpoints cleared when done
    s2 = Domain(cfg, sources=fake_sources(), quiet=True).run()
    assert s2["cpt"]["skipped"] is True and s2["sft"]["cpt_sft"]["skipped"] is True
    assert (models / "cpt" / "model.safetensors").stat().st_mtime_ns == stamp
    # a changed setting is refused, not silently retrained over
    from llmrec.artifacts import StaleStepError

    cfg.cpt.train.learning_rate = 5e-4
    with pytest.raises(StaleStepError, match="trained from other inputs"):
        Domain(cfg, sources=fake_sources(), quiet=True).run()


def test_dpo_and_eval_on_tiny(tiny, tmp_path):
    from llmrec.finetune.domain import Domain

    cfg = _domain_cfg(tiny, tmp_path / "run",
                      suite={"tasks": ["plot_title", "reply", "general"], "n_train": 3,
                             "n_eval": 3, "reply_tokens": 4, "general_tokens": 6,
                             "general_held_out": 2},
                      eval={"variants": ["base", "cpt_sft_dpo", "per_task"],
                            "llm": {"device": "cpu", "batch_size": 8, "fast_decode": "off"},
                            "judge": {"model": str(tiny), "device": "cpu",
                                      "fast_decode": "off"}},
                      cpt={"general_ratio": 0.0, "max_docs": 6,
                           "train": {"max_length": 64, "batch_size": 2, "max_steps": 1,
                                     "method": "full"}})
    s = Domain(cfg, sources=fake_sources(), quiet=True).run()
    ev = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(ev) == {"base", "cpt_sft_dpo", "per_task"}
    assert set(ev["base"]) == {"plot_title", "reply", "general"}
    assert ev["base"]["general"]["rougeL_to_base"] == pytest.approx(1.0)  # its own references
    assert 0.0 <= ev["cpt_sft_dpo"]["reply"]["WR_vs_base"] <= 1.0
    assert set(ev["per_task"]) == {"plot_title", "reply"}
    d = s["dpo"]
    # a random tiny model samples wrong answers, so pairs exist and DPO trains
    assert d["trained"] and d["pairs"] >= 1
    assert (tmp_path / "run" / "models" / "cpt_sft_dpo" / "config.json").is_file()


# --------------------------------------------------------------------------- leakage


def test_leakage_check_catches_a_planted_leak():
    from llmrec.finetune.domain import leakage

    src = fake_sources()
    cfg = T.SuiteConfig(n_train=5, n_eval=3, n_candidates=4, history=3)
    held = [ex for t in ("genre", "plot_title") for ex in T.build_examples(t, src, "eval", cfg, 0)]
    rows = [T.sft_row(ex) for t in ("genre", "plot_title")
            for ex in T.build_examples(t, src, "train", cfg, 0)]
    assert leakage(rows, held) == []
    bad = dict(rows[0], prompt=[{"role": "user", "content": "About: " + held[0]["plot"]}])
    assert any("held-out plot" in p for p in leakage(rows + [bad], held))
    assert any("is in the training rows" in p for p in leakage([dict(rows[0],
                                                                      key=held[0]["key"])], held))


def test_no_leakage_on_the_real_data():
    from conftest import shared_path

    from llmrec.finetune.domain import leakage
    from llmrec.finetune.domain.data import DomainDataConfig, load_sources

    root = shared_path("movielens-1m")
    redial = shared_path("redial")
    latest = shared_path("movielens-latest-small")
    src = load_sources(DomainDataConfig(ml1m=str(root), redial=str(redial),
                                        ml_latest=str(latest)), 0)
    cfg = T.SuiteConfig(n_train=200, n_eval=50)
    rows = [T.sft_row(ex) for t in T.TRAINABLE for ex in T.build_examples(t, src, "train", cfg, 0)]
    held = [ex for t in T.TRAINABLE for ex in T.build_examples(t, src, "eval", cfg, 0)]
    assert len(rows) == 200 * 7 and len(held) == 50 * 7
    assert leakage(rows, held) == []
    assert not set(src.eval_items) & set(src.train_items)
    assert not set(src.eval_users) & set(src.train_users)


def test_general_mix_ratio_and_config_errors():
    from llmrec.config import load_config
    from llmrec.errors import ConfigError
    from llmrec.finetune.domain import DomainConfig, mix_general

    domain = [{"text": "x" * 300, "source": "d"}] * 10
    replay = [{"text": "y" * 100, "source": "g"}] * 2
    docs, st = mix_general(domain, replay, 0.25, 0)
    # 3000 domain characters -> at least 1000 general ones (0.25 of the total)
    assert st["general_char_share"] == pytest.approx(0.25, abs=0.01)
    assert st["replay_repeats"] == 5.0 and len(docs) == 20
    assert mix_general(domain, replay, 0.0, 0)[1]["general_char_share"] == 0.0
    with pytest.raises(ConfigError, match="learning_rat"):
        load_config(DomainConfig, None, ["--cpt.train.learning_rat=1e-4"])
    with pytest.raises((ConfigError, ValueError), match="eval.variants"):
        load_config(DomainConfig, None, ["--eval.variants=[base,nope]"])
