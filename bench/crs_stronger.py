"""Small CRS runs with a stronger LLM: failed agent turns and recommendations, per decoding.

Runs ``llmrec simulate`` (``simulators/demo.yaml`` by default) with the same LLM as agent and
simulator, once per agent decoding, then reads the run's ``metrics.json`` and transcripts and
appends to ``bench/results/crs_stronger.jsonl``: the share of failed agent turns, the number of
recommendations made, SR, Recall@5, rounds, seconds, and the counts of the failure reasons.
``model`` names the LLM and the catalog's embedder.

``--source DIR`` runs the simulation from another copy of the code (e.g. ``git archive`` of an
earlier commit unpacked into DIR) to measure before and after a change with the same command;
``--code`` then names that code in the records (the commit of the copy).

Usage (CPU, small):
  OMP_NUM_THREADS=2 python bench/crs_stronger.py --out runs/crs-stronger \\
      [--llm qwen2.5-coder-0.5b] [--decodings free structured] [--n-tasks 8] [--max-rounds 4] \\
      [--source DIR --code COMMIT] [--label after] [--smoke]

``--smoke`` uses a tiny random model (seconds; checks the script, measures nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _reason(error: str) -> str:
    """A failure reason without the quoted text, so that equal causes count together."""
    for key in ("an action inside", "wrote ", "unclosed bracket", "text after the action",
                "more than one action", "empty argument", "no action", "malformed action",
                "search limit", "brackets before", "empty title", "titles in Recommend",
                "empty reply", "backend error"):
        if key in error:
            return key.strip()
    return error[:40]


def old_wrapping_outcome(turn: dict) -> bool:
    """Whether an agent turn of a structured run would have been valid under the wrapping used
    before a26407e (every argument wrapped as ``Kind[argument]``, an action included).

    Exact for turns whose prompt did not depend on earlier turns' outcomes (the first round): a
    step written bare is wrapped the same way by both rules, so the old code took the same path
    up to the first step written as an action, where it failed.
    """
    from llmrec.crs.actions import parse_action

    steps = [s for s in turn.get("steps", []) if "argument_output" in s]
    if not steps:
        return bool(turn.get("ok"))
    for s in steps:
        old = parse_action(f"{s['kind']}[{s['argument_output'].strip()}]")
        if not old.ok:
            return False
    return bool(turn.get("ok"))


def _read(out: Path) -> tuple[dict, list[dict]]:
    metrics = json.loads((out / "metrics.json").read_text())
    records = [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()
               if line.strip()]
    return metrics, records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", default="simulators/demo.yaml")
    ap.add_argument("--llm", default="qwen2.5-coder-0.5b")
    ap.add_argument("--embedder", default=None, help="catalog embedder (default: the config's)")
    ap.add_argument("--decodings", nargs="+", default=["free", "structured"])
    ap.add_argument("--n-tasks", type=int, default=8)
    ap.add_argument("--max-rounds", type=int, default=4)
    ap.add_argument("--source", type=Path, default=ROOT, help="the code to run (a checkout)")
    ap.add_argument("--code", default=None, help="commit of --source, for the records")
    ap.add_argument("--label", default=None, help="a name for this code in the records")
    ap.add_argument("--record", default=str(ROOT / "bench" / "results" / "crs_stronger.jsonl"))
    ap.add_argument("--smoke", action="store_true", help="tiny random model; records nothing")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--reparse", action="store_true",
                    help="do not simulate: read the finished structured runs under --out and "
                         "record the first round's failed-turn share under the old wrapping "
                         "(old_wrapping_outcome) beside the measured one")
    args = ap.parse_args(argv)

    from llmrec import benchrecord

    llm = args.llm
    if args.smoke:
        from llmrec.models import tiny_llama

        llm = str(tiny_llama(args.out / "tiny-llm", seed=0))
    env = benchrecord.environment()
    if args.code:
        env = {**env, "commit": args.code}
    rows = []
    if args.reparse:
        return _reparse(args, llm, env, benchrecord)
    for decoding in args.decodings:
        out = args.out / f"{Path(llm).name}-{decoding}"
        cmd = [sys.executable, "-m", "llmrec.cli", "--quiet", "simulate", "--config",
               str(ROOT / args.config), f"--out={out}", f"--agent.llm.model={llm}",
               f"--simulator.llm.model={llm}", f"--agent.decoding={decoding}",
               f"--tasks.n_tasks={args.n_tasks}", f"--max_rounds={args.max_rounds}",
               f"--in_flight={args.n_tasks}", "--show=0", *[f"--{kv}" for kv in args.set]]
        if args.embedder:
            cmd.append(f"--catalog.embedder={args.embedder}")
        run_env = {**os.environ, "PYTHONPATH": str(args.source)}
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=args.source, env=run_env, capture_output=True, text=True)
        seconds = round(time.perf_counter() - t, 1)
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n", file=sys.stderr)
            return proc.returncode
        metrics, records = _read(out)
        m = metrics["metrics"]
        turns = [t for r in records for t in r["turns"] if t["role"] == "assistant"]
        reasons = Counter(_reason(t.get("error") or "") for t in turns if not t.get("ok"))
        recs = sum(1 for t in turns if t.get("ok") and t.get("action") == "Recommend")
        # structured: argument steps the model answered with a whole action (Ask[...]), the form
        # that failed every time before the fix of a26407e
        arg_steps = [s for t in turns for s in t.get("steps", []) if "argument_output" in s]
        as_action = sum(1 for s in arg_steps
                        if re.search(r"\b(Search|Ask|Recommend|Response)\[", s["argument_output"]))
        embedder = records[0].get("models", {}).get("embedder") or args.embedder or "?"
        cond = dict(model=f"{args.llm if not args.smoke else 'tiny-llama'} + {embedder}",
                    llm=args.llm, embedder=embedder, strategy=decoding, agent="base",
                    dataset=records[0]["task"]["dataset"], n_tasks=len(records),
                    max_rounds=args.max_rounds, code=args.label, config=args.config,
                    command=" ".join(cmd[1:]), run_dir=str(out))
        row = {"decoding": decoding, "agent_turns": len(turns),
               "failed_turn_rate": m["failed_turn_rate"], "recommendations": recs,
               "SR": m["SR"], "Recall@5": m["Recall@5"], "avg_rounds": m["avg_rounds"],
               "seconds": seconds, "failures": dict(reasons), "argument_steps": len(arg_steps),
               "argument_written_as_action": as_action}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.smoke:
            continue
        recs_out = [benchrecord.record("crs_stronger", k, row[k], unit, env=env, **cond)
                    for k, unit in (("failed_turn_rate", "fraction"),
                                    ("recommendations", "count"), ("agent_turns", "count"),
                                    ("SR", "fraction"), ("Recall@5", "fraction"),
                                    ("avg_rounds", "rounds"), ("seconds", "s"),
                                    ("argument_steps", "count"),
                                    ("argument_written_as_action", "count"))]
        recs_out.append(benchrecord.record("crs_stronger", "failure_reasons", row["failures"],
                                           "count", env=env, **cond))
        benchrecord.append(args.record, recs_out)
    print(f"\n{'decoding':<11} {'turns':>5} {'failed':>7} {'recs':>5} {'SR':>5} {'R@5':>5} "
          f"{'s':>7}  failures")
    for r in rows:
        print(f"{r['decoding']:<11} {r['agent_turns']:>5} {r['failed_turn_rate']:>7.3f} "
              f"{r['recommendations']:>5} {r['SR']:>5.2f} {r['Recall@5']:>5.2f} "
              f"{r['seconds']:>7.1f}  {r['failures']}")
    return 0


def _reparse(args, llm: str, env: dict, benchrecord) -> int:
    out = args.out / f"{Path(llm).name}-structured"
    metrics, records = _read(out)
    first = [t for r in records for t in r["turns"] if t["role"] == "assistant" and t["round"] == 1]
    now_ok = sum(1 for t in first if t.get("ok"))
    old_ok = sum(1 for t in first if old_wrapping_outcome(t))
    embedder = records[0].get("models", {}).get("embedder") or "?"
    cond = dict(model=f"{args.llm} + {embedder}", llm=args.llm, embedder=embedder,
                strategy="structured", agent="base", dataset=records[0]["task"]["dataset"],
                n_tasks=len(records), max_rounds=args.max_rounds, round=1, run_dir=str(out),
                note="same generations parsed with the wrapping before a26407e (exact for round 1)")
    rows = {"failed_turn_rate_round1": round(1 - now_ok / len(first), 4),
            "failed_turn_rate_round1_old_wrapping": round(1 - old_ok / len(first), 4),
            "agent_turns_round1": len(first)}
    print(json.dumps(rows))
    if not args.smoke:
        benchrecord.append(args.record, [
            benchrecord.record("crs_stronger", k, v, "count" if k.startswith("agent") else
                               "fraction", env=env, code=args.label, **cond)
            for k, v in rows.items()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
