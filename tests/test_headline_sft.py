"""LoRA SFT on proxy targets (llmrec.headline.generate.sft_rows / run_sft) on the PENS fixture:
the exact rows, and two optimiser steps of a tiny random Llama through llmrec.llm.tuning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.data.pens import load_pens
from llmrec.errors import DataError
from llmrec.headline.generate import HeadlineSFTConfig, run_sft, sft_rows
from llmrec.llm.tuning import LoraSFTConfig, is_trl_available

FIXTURE = Path(__file__).parent / "data" / "pens"


def test_proxy_rows_exact():
    pens = load_pens(FIXTURE)
    rows = sft_rows(pens, HeadlineSFTConfig(stages="dwell", fusion="short"))
    assert [(r["user_id"], r["news_id"]) for r in rows] == [
        ("U1", "N6"), ("U2", "N7"), ("U1", "N7"), ("U1", "N8")]
    assert rows[0]["completion"] == [{"role": "assistant",
                                      "content": "Martinez hat trick lifts Atlanta past Miami"}]
    text = rows[0]["prompt"][-1]["content"]
    # U1's first history after the dwell stage: N1 (45 s), N3 (60 s), N4 (12 s); N2, N5 < 10 s
    assert ("- Atlanta United beat Orlando 3-1 in MLS derby\n- Hawks sign rookie guard to "
            "two-year deal\n- Five summer salads ready in ten minutes") in text
    assert "Stocks slip" not in text and "Heat wave" not in text
    assert "Josef Martinez scored a hat trick" in text  # the body of the target news
    # the target itself must pass the dwell stage: raise the bar above U1's 34 s and 22 s
    cfg = HeadlineSFTConfig(stages="dwell", fusion="short")
    cfg.filter.min_dwell_s = 40
    assert [(r["user_id"], r["news_id"]) for r in sft_rows(pens, cfg)] == [("U2", "N7")]
    assert len(sft_rows(pens, HeadlineSFTConfig(stages="none", max_rows=2))) == 2


def test_sft_needs_train_and_news(tmp_path):
    (tmp_path / "personalized_test.tsv").write_text((FIXTURE / "personalized_test.tsv").read_text())
    with pytest.raises(DataError, match="news.tsv not found"):
        run_sft(HeadlineSFTConfig(data_path=str(tmp_path), out=str(tmp_path / "m")))


@pytest.mark.slow
@pytest.mark.skipif(not is_trl_available(), reason="trl and peft are not installed")
def test_run_sft_two_steps_tiny(tmp_path):
    from llmrec.models import tiny_llama

    base = tiny_llama(tmp_path / "base")
    out = tmp_path / "sft"
    cfg = HeadlineSFTConfig(data_path=str(FIXTURE), base_model=str(base), stages="dwell",
                            fusion="short+long", out=str(out),
                            lora=LoraSFTConfig(max_steps=2, batch_size=2, max_length=512))
    s = run_sft(cfg, out=lambda m: None)
    assert s["steps"] == 2 and s["rows"] == 4
    meta = json.loads((out / "headline_sft.json").read_text())
    assert meta["stages"] == "dwell" and meta["fusion"] == "short+long"
    assert any(p.suffix == ".safetensors" for p in out.iterdir())
