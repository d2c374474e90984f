"""``llmrec simulate`` and ``llmrec eval crs``: simulated dialogues and their evaluation.

``simulate`` runs (or resumes) one simulator run and prints its metrics and a transcript.
``eval crs`` runs or resumes the same, then scores it: SR, Recall@5, rounds, rater averages and,
given another run on the same tasks (``compare_with``), the pairwise win rate judged by an LLM in
both orders; with ``record`` set it appends one JSON line per metric to a results file
(``bench/results/crs_runs.jsonl``) with the model, dataset, agent, config and environment.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.config import option, to_dict
from llmrec.crs.decide import DecisionMode
from llmrec.crs.engine import SimulationConfig
from llmrec.llm.config import LLMConfig

log = logging.getLogger(__name__)


@dataclass
class CrsEvalConfig:
    """An evaluation suite: a simulator run plus its scoring."""

    simulation: SimulationConfig = option(default_factory=SimulationConfig,
                                          help="the simulator run to evaluate")
    run: bool = option(True, help="run or resume the simulation first; false: score the "
                                  "transcripts already in simulation.out")
    compare_with: str | None = option(
        None, help="folder of another run on the same tasks: WR of this run's agent against it")
    judge: LLMConfig = option(default_factory=LLMConfig, help="the judge's backend and model")
    judge_prompt: str = option("judge", help="judge template (prompts/crs/)")
    judge_criteria: list[str] = option(["flexibility", "coherence", "guidance", "overall"],
                                       help="criteria the judge compares")
    judge_decisions: DecisionMode = option("auto", help="how the judge's verdicts are chosen "
                                                        "(see simulator.decisions)")
    record: str | None = option(None, help="append one JSON line per metric to this file "
                                           "(e.g. bench/results/crs_runs.jsonl)")
    benchmark: str = option("crs_eval", help="the `benchmark` key of recorded lines")
    show: int = option(0, help="transcripts to print")


def _device(llm: LLMConfig) -> str:
    if llm.backend == "openai":
        return f"remote ({llm.base_url})"
    try:
        import torch

        if llm.device != "cpu" and torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    import os

    return f"cpu ({os.cpu_count()} cores)"


def _print_metrics(metrics: dict[str, Any]) -> None:
    keys = ("n_tasks", "SR", "Recall@5", "avg_rounds", "avg_recommendation", "avg_strategy",
            "avg_expression", "failed_turn_rate")
    for k in keys:
        print(f"  {k:<20} {metrics.get(k)}")
    for k in ("actions", "end_reasons", "policies", "SR_by_activity"):
        print(f"  {k:<20} {json.dumps(metrics.get(k))}")
    run = metrics.get("run")
    if run:
        print(f"  {'seconds':<20} {run['seconds']}  ({run['dialogues_per_minute']} dialogues/min "
              f"for {run['new_dialogues']} new)")


def _simulate(cfg: SimulationConfig, args) -> int:
    from llmrec.crs.engine import format_transcript, run_simulation

    res = run_simulation(cfg)
    print(f"{len(res.records)} dialogues ({res.new} new) in {res.out}")
    _print_metrics(res.metrics)
    for r in res.records[:cfg.show]:
        print()
        print(format_transcript(r))
    return _report_abandoned(res)


def _report_abandoned(res) -> int:
    """1 (and one line) when dialogues were dropped by backend failures, else 0."""
    import sys

    if not res.abandoned:
        return 0
    first_id, first_error = next(iter(res.abandoned.items()))
    print(f"error: {len(res.abandoned)} dialogue(s) were dropped after backend failures (e.g. "
          f"{first_id}: {first_error}); they are not recorded: rerun the same command to redo "
          f"them", file=sys.stderr)
    return 1


def record_results(path: str | Path, rows: dict[str, float | None], *, cfg: CrsEvalConfig,
                   records: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> int:
    """Append one JSON object per metric to ``path`` (never rewriting earlier lines).

    Model, dataset and rounds are read from the transcripts themselves, so a run scored later
    (``run: false``) is recorded with the settings it actually ran with.
    """
    from llmrec.artifacts import git_revision, now_iso, package_versions

    sim = cfg.simulation
    first = records[0]
    models = first.get("models", {})
    split = ",".join(sorted({str(r["task"].get("source", {}).get("split", "test"))
                             for r in records}))
    base = {
        "benchmark": cfg.benchmark, "device": _device(sim.agent.llm),
        "commit": git_revision(), "date": now_iso(),
        "model": models.get("agent", {}).get("model"),
        "simulator_model": models.get("simulator", {}).get("model"),
        "dataset": first["task"]["dataset"], "n_tasks": len(records),
        "agent": models.get("agent", {}).get("label", sim.agent.label),
        "max_rounds": first.get("max_rounds"), "split": split,
        "config": to_dict(cfg), "versions": package_versions(), **(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "a") as fh:
        for metric, value in rows.items():
            if value is None:
                continue
            unit = "rounds" if metric == "avg_rounds" else (
                "rating 0-5" if metric.startswith("avg_") else "fraction")
            fh.write(json.dumps({**base, "metric": metric, "value": value, "unit": unit},
                                default=str) + "\n")
            n += 1
    return n


def _eval_crs(cfg: CrsEvalConfig, args) -> int:
    from llmrec.artifacts import write_json_atomic
    from llmrec.crs.engine import TranscriptStore, format_transcript, run_simulation
    from llmrec.crs.metrics import summarize
    from llmrec.errors import ConfigError

    sim = cfg.simulation
    if cfg.run:
        res = run_simulation(sim)
        if _report_abandoned(res):
            return 1  # scoring an incomplete run would report numbers for fewer tasks
        records, metrics = res.records, res.metrics
    else:
        records = TranscriptStore(sim.out).load()
        if not records:
            raise ConfigError(f"no transcripts in {sim.out}; run the simulation first (run=true)")
        metrics = summarize(records)
    models = records[0].get("models", {}) if records else {}
    print(f"evaluation of {sim.out}: agent {sim.agent.label} ({models.get('agent', {}).get('model')}"
          f"), simulator {models.get('simulator', {}).get('model')}")
    _print_metrics(metrics)
    result: dict[str, Any] = {"metrics": metrics}
    # scoring an existing run against another records only the comparison: the run's own
    # metrics were recorded when it ran
    rows = {} if (cfg.compare_with and not cfg.run) else {
        k: metrics.get(k) for k in ("SR", "Recall@5", "avg_rounds", "avg_recommendation",
                                    "avg_strategy", "avg_expression", "failed_turn_rate")}
    if cfg.compare_with:
        from llmrec.crs.metrics import judge, position_bias, win_rates
        from llmrec.llm import load_backend

        other = TranscriptStore(cfg.compare_with).load()
        if not other:
            raise ConfigError(f"compare_with: no transcripts in {cfg.compare_with}")
        backend = load_backend(cfg.judge)
        try:
            verdicts, info = judge(backend, records, other, prompt=cfg.judge_prompt,
                                   criteria=cfg.judge_criteria, mode=cfg.judge_decisions)
        finally:
            backend.close()
        wr = win_rates(verdicts)
        bias = position_bias(verdicts)
        result["wr"] = {"against": cfg.compare_with, "judge": cfg.judge.model, **info,
                        "position_bias": bias, "criteria": wr}
        # the judge's position bias comes first: a judge that always answers "A" gives WR 0.5
        print(f"  judge position bias over {bias['total']} verdicts: first shown chosen "
              f"{bias['share_first']:.3f} (agent A first {bias['share_first_a_first']:.3f}, "
              f"agent B first {bias['share_first_b_first']:.3f}), tie {bias['share_tie']:.3f}")
        rows.update({"judge_share_first": bias["share_first"],
                     "judge_share_first_a_first": bias["share_first_a_first"],
                     "judge_share_first_b_first": bias["share_first_b_first"],
                     "judge_share_tie": bias["share_tie"]})
        print(f"  WR against {cfg.compare_with} on {info['n_shared_tasks']} shared tasks "
              f"(judge {cfg.judge.model}, both orders):")
        for crit, r in wr.items():
            print(f"    {crit:<12} WR {r['WR']:.3f}  (wins {r['wins']}, ties {r['ties']}, "
                  f"losses {r['losses']} of {r['total']})")
            rows[f"WR_{crit}"] = r["WR"]
        with open(Path(sim.out) / "judge_verdicts.jsonl", "w") as fh:
            for v in verdicts:
                fh.write(json.dumps(v.__dict__) + "\n")
    write_json_atomic(Path(sim.out) / "eval.json", result)
    if cfg.record:
        n = record_results(cfg.record, rows, cfg=cfg, records=records,
                           extra={"baseline": cfg.compare_with} if cfg.compare_with else None)
        print(f"recorded {n} results in {cfg.record}")
    for r in records[:cfg.show]:
        print()
        print(format_transcript(r))
    return 0


def _subparsers_of(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _eval_group(subparsers):
    """The ``eval`` group's sub-parsers, shared with any other stage that adds eval suites."""
    existing = subparsers.choices.get("eval")
    if existing is not None:
        sub = _subparsers_of(existing)
        if sub is not None:
            return sub
    p = subparsers.add_parser("eval", help="evaluation suites",
                              description="Evaluation suites; see eval/ for the recipes.")
    p.set_defaults(_handler=None, _group_parser=p)
    return p.add_subparsers(dest="eval_command", metavar="SUITE")


def register(subparsers) -> None:
    from llmrec.cli import add_config_command

    add_config_command(
        subparsers, "simulate", SimulationConfig, _simulate,
        outputs=lambda c: [(c.out, "--out")],
        help="run simulated recommendation dialogues (agent vs AILO user simulator)",
        description="Run or resume a simulator run: tasks with hidden targets, the agent, the "
                    "AILO user simulator and its raters; transcripts go to --out. Recipes: "
                    "simulators/*.yaml.")
    add_config_command(
        _eval_group(subparsers), "crs", CrsEvalConfig, _eval_crs,
        outputs=lambda c: [(c.simulation.out, "--simulation.out"),
                           (c.record, "--record", False)],
        help="evaluate a conversational agent with the user simulator (SR, Recall@5, WR)",
        description="Run or resume a simulator run, report SR, Recall@5, rounds and rater "
                    "averages, and with compare_with the judged pairwise win rate. Recipes: "
                    "eval/crs/*.yaml.")
