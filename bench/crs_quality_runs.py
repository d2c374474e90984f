"""Quality runs of the conversational stage: each domain x each agent decoding, then WR.

Runs ``llmrec eval crs`` with the recipes in ``eval/crs/`` for every (domain, agent decoding)
pair asked for, recording SR, Recall@5, rounds and rater averages to a results file, then judges
the agents against each other on each domain (WR, both orders). The same command serves a CPU
machine and a GPU host; ``--redial`` and ``--embedder`` point at copies of the data and model
where the defaults are not available.

Usage:
  python bench/crs_quality_runs.py --out runs/crs-quality [--domains movielens redial] \\
      [--agents free structured] [--n-tasks 100] [--max-rounds 3] [--redial DIR] \\
      [--embedder DIR] [--record bench/results/crs_runs.jsonl] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _finished(out: Path, n_tasks: int) -> dict | None:
    """The ``eval.json`` of a run that already scored ``n_tasks`` tasks, else None: a resumed call
    skips it, so its metrics (and the judge's WR) are recorded once, not once per call."""
    try:
        res = json.loads((out / "eval.json").read_text())
    except (OSError, ValueError):
        return None
    return res if res.get("metrics", {}).get("n_tasks") == n_tasks else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the run folders")
    ap.add_argument("--domains", nargs="+", default=["movielens", "redial"])
    ap.add_argument("--agents", nargs="+", default=["free", "structured"])
    ap.add_argument("--n-tasks", type=int, default=100)
    ap.add_argument("--max-rounds", type=int, default=3)
    ap.add_argument("--in-flight", type=int, default=64)
    ap.add_argument("--redial", type=Path, default=None, help="ReDial folder (with ievalm/)")
    ap.add_argument("--embedder", default=None)
    ap.add_argument("--record", default=str(ROOT / "bench" / "results" / "crs_runs.jsonl"))
    ap.add_argument("--no-judge", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="extra overrides for every run, e.g. simulation.agent.llm.model=DIR")
    args = ap.parse_args(argv)

    from llmrec.config import load_config
    from llmrec.crs.cli import CrsEvalConfig, _eval_crs

    runs: dict[tuple[str, str], Path] = {}
    for domain in args.domains:
        for agent in args.agents:
            out = args.out / f"{domain}-{agent}"
            runs[(domain, agent)] = out
            if _finished(out, args.n_tasks):
                print(f"### {domain} / {agent}: finished earlier ({out / 'eval.json'}), skipped",
                      flush=True)
                continue
            over = [f"--simulation.out={out}", f"--simulation.agent.decoding={agent}",
                    f"--simulation.agent.label={'base' if agent == 'free' else 'structured'}",
                    f"--simulation.tasks.n_tasks={args.n_tasks}",
                    f"--simulation.max_rounds={args.max_rounds}",
                    f"--simulation.in_flight={args.in_flight}", f"--record={args.record}",
                    "--show=0"]
            if args.embedder:
                over.append(f"--simulation.catalog.embedder={args.embedder}")
            if domain == "redial" and args.redial:
                over += [f"--simulation.tasks.data.path={args.redial}",
                         f"--simulation.tasks.catalog_data.path={args.redial / 'ievalm'}"]
            over += [f"--{kv}" for kv in args.set]
            cfg = load_config(CrsEvalConfig, ROOT / "eval" / "crs" / f"{domain}.yaml", over)
            t = time.perf_counter()
            print(f"\n### {domain} / {agent} agent -> {out}", flush=True)
            _eval_crs(cfg, None)
            print(f"### {domain} / {agent}: {time.perf_counter() - t:.1f} s", flush=True)
        if args.no_judge or len(args.agents) < 2:
            continue
        a, b = args.agents[1], args.agents[0]
        done = _finished(runs[(domain, a)], args.n_tasks)
        if done and "wr" in done:
            print(f"### {domain}: WR judged earlier ({runs[(domain, a)] / 'eval.json'}), skipped")
            continue
        over = [f"--simulation.out={runs[(domain, a)]}", "--run=false",
                f"--compare_with={runs[(domain, b)]}", f"--record={args.record}",
                f"--simulation.agent.label={'base' if a == 'free' else 'structured'}"]
        over += [f"--{kv}" for kv in args.set if kv.startswith("judge.")]
        cfg = load_config(CrsEvalConfig, ROOT / "eval" / "crs" / "compare.yaml", over)
        print(f"\n### {domain}: WR of the {a} agent against the {b} agent", flush=True)
        _eval_crs(cfg, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
