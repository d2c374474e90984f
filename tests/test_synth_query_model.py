"""The query model f: prompt, output cleaning, seeds, SFT rows, generation and LoRA SFT."""

from __future__ import annotations

import pandas as pd
import pytest

from llmrec.synth.query_model import (
    QueryModelConfig, clean_query, generate_queries, query_messages, query_seed, sft_rows,
    train_query_model,
)


def test_clean_query():
    assert clean_query('Query: "best noir films of the 40s"', 12) == "best noir films of the 40s"
    assert clean_query("\n\n1. cheap flights to rome.\nThis query asks ...", 12) == \
        "cheap flights to rome"
    assert clean_query("Search query - goldfish growth", 12) == "goldfish growth"
    assert clean_query("one two three four five", 3) == "one two three"
    assert clean_query("   \n ", 5) == ""


def test_query_seed_is_stable_and_distinct():
    assert query_seed(0, "d1", 2, 1) == query_seed(0, "d1", 2, 1)
    assert len({query_seed(0, "d1", lv, 1) for lv in range(4)}) == 4
    assert query_seed(0, "d1", 2, 1) != query_seed(0, "d1", 2, 2)


def test_prompt_and_sft_rows():
    from llmrec.synth.prompts import load_prompt

    cfg = QueryModelConfig(max_doc_words=3, max_query_words=7)
    msgs = query_messages(load_prompt(cfg.prompt), "a b c d e", 1, cfg)
    assert msgs[0]["role"] == "system" and msgs[-1]["role"] == "user"
    user = msgs[-1]["content"]
    assert "a b c ..." in user and "at most 7 words" in user and "level 1 (partially" in user
    for lv in range(4):
        assert f"{lv} = " in user  # all four definitions
    rows = sft_rows(pd.DataFrame({"doc_id": ["d"], "level": [3], "query": ["q"]}),
                    {"d": "text"}, cfg)
    assert rows[0]["completion"] == [{"role": "assistant", "content": "q"}]
    assert rows[0]["prompt"][-1]["content"].count("level 3 (fully relevant)") == 1


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    from llmrec.models import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("llm") / "m")


def test_generate_queries_shape_and_provenance(tiny_llm):
    cfg = QueryModelConfig()
    cfg.llm.max_new_tokens = 4
    cfg.llm.device = "cpu"
    df, ident = generate_queries(str(tiny_llm), ["a", "a", "b"], [0, 3, 1],
                                 {"a": "doc a", "b": "doc b"}, cfg, round_=2)
    assert df["doc_id"].tolist() == ["a", "a", "b"] and df["level"].tolist() == [0, 3, 1]
    assert df["seed"].tolist() == [query_seed(cfg.llm.seed, d, lv, 2)
                                   for d, lv in [("a", 0), ("a", 3), ("b", 1)]]
    assert ident["prompt"]["name"] == "query" and len(ident["prompt"]["sha256"]) == 64
    assert ident["model"] == str(tiny_llm) and ident["sampling"]["temperature"] == 0.7


def test_lora_sft_changes_the_weights(tiny_llm, tmp_path):
    import torch
    from safetensors.torch import load_file

    from llmrec.artifacts import read_meta

    cfg = QueryModelConfig()
    cfg.lora.max_steps = 2
    cfg.lora.batch_size = 2
    cfg.lora.learning_rate = 1e-2
    pairs = pd.DataFrame({"doc_id": ["a", "b", "a", "b"], "level": [0, 1, 2, 3],
                          "query": ["w x", "y z", "x y", "z w"]})
    out = train_query_model(str(tiny_llm), pairs, {"a": "doc a", "b": "doc b"},
                            tmp_path / "f", cfg, round=1)
    base = load_file(str(tiny_llm / "model.safetensors"))
    tuned = load_file(str(out / "model.safetensors"))
    assert set(base) == set(tuned)  # merged back into a plain checkpoint
    changed = [k for k in base if not torch.equal(base[k], tuned[k])]
    assert changed and all(any(m in k for m in ("q_proj", "k_proj", "v_proj", "o_proj"))
                           for k in changed)
    assert (out / "adapter" / "adapter_config.json").is_file()
    meta = read_meta(out)
    assert meta["round"] == 1 and meta["sft"]["steps"] == 2 and meta["sft"]["rows"] == 4
    assert meta["prompt"]["name"] == "query"
