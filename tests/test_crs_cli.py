"""``llmrec simulate`` / ``llmrec eval crs``: registration, recipes, scoring and recording."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import llmrec.cli as cli
from llmrec.config import load_config
from llmrec.crs.cli import CrsEvalConfig
from llmrec.crs.engine import Engine, SimulationConfig

from test_crs_engine import TASKS, Scripted, _cfg, toy_catalog

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def with_crs(monkeypatch):
    """The CLI with the crs stage registered (whether or not llmrec.cli lists it already)."""
    if "llmrec.crs.cli" not in cli.STAGE_CLIS:
        monkeypatch.setattr(cli, "STAGE_CLIS", tuple(cli.STAGE_CLIS) + ("llmrec.crs.cli",))


def test_commands_are_registered(with_crs, capsys):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert "simulate" in sub.choices and "eval" in sub.choices
    assert cli.main(["eval"]) == 2  # the group alone prints its help
    assert "crs" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["simulate", "--help"])
    out = capsys.readouterr().out
    assert "--agent.llm.model" in out and "--simulator.decisions" in out


def test_eval_group_is_shared(monkeypatch):
    """A stage that registers its own `eval` group first keeps it; `crs` is added to it."""
    import argparse

    from llmrec.crs.cli import register

    parser = argparse.ArgumentParser()
    subs = parser.add_subparsers()
    other = subs.add_parser("eval")
    other_sub = other.add_subparsers()
    other_sub.add_parser("ranking")
    register(subs)
    assert set(other_sub.choices) == {"ranking", "crs"}


def test_unknown_option_is_an_error(with_crs, capsys):
    assert cli.main(["simulate", "--agent.llm.temprature=1"]) == 2
    err = capsys.readouterr().err
    assert "agent.llm.temprature" in err and "temperature" in err


@pytest.mark.parametrize("path", sorted((ROOT / "simulators").glob("*.yaml")), ids=lambda p: p.name)
def test_simulator_recipes_load(path):
    cfg = load_config(SimulationConfig, path)
    assert cfg.out.startswith("runs/")


@pytest.mark.parametrize("path", sorted((ROOT / "eval" / "crs").glob("*.yaml")), ids=lambda p: p.name)
def test_eval_recipes_load(path):
    cfg = load_config(CrsEvalConfig, path)
    assert cfg.simulation.out.startswith("runs/")


def test_eval_scores_a_finished_run_and_records(with_crs, tmp_path, capsys):
    backend = Scripted()
    Engine(_cfg(tmp_path), toy_catalog(), TASKS,
           backends={"agent": backend, "simulator": backend}).run()
    results = tmp_path / "results.jsonl"
    rc = cli.main(["eval", "crs", f"--simulation.out={tmp_path / 'run'}", "--run=false",
                   f"--record={results}", "--simulation.agent.label=scripted", "--show=1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "SR" in out and "Star Quest" in out
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    by_metric = {x["metric"]: x for x in lines}
    assert by_metric["SR"]["value"] == 0.25
    assert by_metric["Recall@5"]["value"] == 0.5  # task c: the target is 2nd in a search
    assert by_metric["avg_rounds"]["unit"] == "rounds"
    for key in ("benchmark", "metric", "value", "unit", "device", "commit", "date", "model",
                "dataset", "n_tasks", "agent", "config", "versions"):
        assert key in by_metric["SR"]
    assert by_metric["SR"]["model"] == "scripted" and by_metric["SR"]["dataset"] == "toy"
    assert by_metric["SR"]["n_tasks"] == 4
    eval_json = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert eval_json["metrics"]["SR"] == 0.25
