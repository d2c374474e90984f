"""``llmrec synth``: parser, config resolution, recipes, and one tiny end-to-end run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from llmrec.config import load_config
from llmrec.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _parser():
    from llmrec.synth import cli

    parser = argparse.ArgumentParser(prog="llmrec")
    cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_synth_group_and_config_resolution():
    args, rest = _parser().parse_known_args(
        ["synth", "experiment", "--ssra.rounds=3", "--embed.matryoshka_dims=[384,128]",
         "--query.lora.r=4", "--conditions=base,ssra"])
    cfg = load_config(args._config_cls, None, rest)
    assert cfg.ssra.rounds == 3 and cfg.embed.matryoshka_dims == [384, 128]
    assert cfg.query.lora.r == 4 and cfg.conditions == ["base", "ssra"]
    assert cfg.query.llm.temperature == 0.7 and cfg.score.kind == "cross-encoder"
    with pytest.raises(ConfigError, match="ssra.round"):
        load_config(args._config_cls, None, ["--ssra.round=3"])
    with pytest.raises(ConfigError, match="unknown condition"):
        load_config(args._config_cls, None, ["--conditions=base,nope"])
    args, rest = _parser().parse_known_args(["synth", "eval", "--embedder", "/x", "--eval_k=5"])
    assert args.embedder == ["/x"] and rest == ["--eval_k=5"]


def test_recipes_load():
    from llmrec.synth.pipeline import SynthConfig

    recipes = sorted((ROOT / "eval" / "synth").glob("*.yaml"))
    assert {p.stem for p in recipes} >= {"demo", "dl19"}
    for path in recipes:
        cfg = load_config(SynthConfig, path)
        assert cfg.out.startswith("runs/")


@pytest.mark.slow  # every step for real on tiny models: ~20 s on an idle 2-core machine
def test_tiny_end_to_end(tmp_path):
    """Every step on tiny random models: artifacts, provenance, resumption, the table."""
    from llmrec.models import tiny_bert, tiny_llama
    from llmrec.synth.io import load_frame, meta_of
    from llmrec.synth.pipeline import Run, SynthConfig, results_markdown

    llm, bert = tiny_llama(tmp_path / "llm"), tiny_bert(tmp_path / "bert")
    out = tmp_path / "run"
    overrides = [
        f"--query.llm.model={llm}", f"--score.model={bert}", f"--embed.model={bert}",
        "--query.llm.max_new_tokens=4", "--query.llm.device=cpu", "--query.lora.max_steps=1",
        "--query.lora.batch_size=4", "--data.n_seed_queries=3", "--data.n_eval_queries=2",
        "--data.n_log_queries=2", "--data.candidates_per_level=[2,1,1,1]", "--ssra.rounds=2",
        "--ssra.docs_per_round=2", "--ssra.stop_when_no_gain=false", "--score.epochs=1",
        "--embed.batch_size=4", "--embed.max_seq_length=32", "--score.max_length=32",
        f"--out={out}",
    ]
    cfg = load_config(SynthConfig, None, overrides)
    results = Run(cfg).experiment()
    assert results["complete"] and set(results["embedders"]) == {"base", "seed", "prompt_only",
                                                                "ssra"}
    for cond, r in results["embedders"].items():
        assert 0 <= r["ndcg@10"] <= 1 and 0 <= r["avg_ap"] <= 1, cond
    assert len(results["ssra"]["rounds"]) == 2
    r1 = load_frame(out / "ssra" / "round1")
    assert len(r1) == 8 and set(r1["reason"]) <= {"kept", "empty", "duplicate",
                                                  "level_mismatch", "order"}
    meta = meta_of(out / "ssra" / "round1")
    assert meta["round"] == 1 and meta["generator"]["prompt"]["name"] == "query"
    assert meta["score_model"]["kind"] == "cross-encoder" and meta["git_revision"] is not None
    assert meta_of(out / "ssra" / "f_round2")["round"] == 2
    assert (out / "results.md").read_text().startswith("nDCG and AP")
    assert "g's agreement" in results_markdown(results)
    saved = json.loads((out / "results.json").read_text())
    assert saved["embedders"]["seed"]["ndcg@10"] == results["embedders"]["seed"]["ndcg@10"]
    # a changed option invalidates exactly the steps that depend on it
    changed = Run(load_config(SynthConfig, None, overrides + ["--embed.epochs=2"]))
    first = Run(cfg)
    assert changed.inputs("ssra") == first.inputs("ssra")
    assert changed.inputs("embed:seed") != first.inputs("embed:seed")
    lora = Run(load_config(SynthConfig, None, overrides + ["--query.lora.r=4"]))
    assert lora.inputs("prompt_only") == first.inputs("prompt_only")
    assert lora.inputs("ssra") != first.inputs("ssra")
    # a second run reuses every finished step
    stamp = (out / "embed" / "ssra" / "llmrec_meta.json").stat().st_mtime_ns
    again = Run(cfg).experiment()
    assert (out / "embed" / "ssra" / "llmrec_meta.json").stat().st_mtime_ns == stamp
    assert again["embedders"]["ssra"] == pytest.approx(results["embedders"]["ssra"], nan_ok=True)
