"""The domain post-training table: five variants x eight tasks, plus CPT tokens/s.

One seed per invocation (each fits one GPU call); the table is built from the recorded lines of
every seed:

    # one H200, per seed (about 6 minutes each, see docs/domain.md)
    python bench/domain_table.py --model /path/to/SmolLM2-135M-Instruct --size full --seed 0 \
        --record bench/results/domain_table.jsonl
    # CPU smoke (a few rows and steps; the numbers say nothing about quality)
    OMP_NUM_THREADS=1 python bench/domain_table.py --size smoke --seed 0 \
        --record bench/results/domain_smoke.jsonl
    # the markdown table (mean +- std over the recorded seeds of one size)
    python bench/domain_table.py --table bench/results/domain_table.jsonl --size full

``--size full`` runs ``finetune/domain_movies.yaml`` as it is; ``--size smoke`` shrinks every
count and step (below). Records: benchmark ``domain_table``, one line per (variant, task,
metric) with ``variant``, ``task``, ``dataset``, ``seed``, ``size``, plus the CPT throughput
(``cpt_tokens_per_second``) and the seconds of each stage. Smoke lines carry ``size: smoke``
and ``smoke: true``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

RECIPE = Path(__file__).resolve().parents[1] / "finetune" / "domain_movies.yaml"
DATASET = {"genre": "ml-1m", "plot_title": "ml-1m", "next_item": "ml-1m (users 1-2999)",
           "rating": "ml-1m (users 1-2999)", "redial_rec": "redial", "knowledge": "ml-1m",
           "reply": "redial", "general": "general prompts (self-replay)"}
# every count and step cut down so the whole pipeline runs on a shared CPU in minutes
SMOKE = [
    "--suite.n_train=4", "--suite.n_eval=4", "--suite.knowledge_tokens=32",
    "--suite.reply_tokens=16", "--suite.genre_tokens=12", "--suite.general_tokens=24",
    "--suite.general_held_out=3", "--cpt.max_docs=16", "--cpt.replay_samples=1",
    "--cpt.train.max_steps=2", "--cpt.train.batch_size=2", "--cpt.train.max_length=256",
    "--sft.train.max_steps=3", "--sft.train.batch_size=2", "--dpo.prompts_per_task=2",
    "--dpo.samples=2", "--dpo.max_new_tokens=12", "--dpo.train.max_steps=1",
    "--dpo.train.batch_size=2", "--dpo.train.grad_accum=1", "--eval.llm.batch_size=16"]


def run(args) -> int:
    from llmrec.config import load_config, to_dict
    from llmrec.finetune.domain import Domain, DomainConfig
    from llmrec.finetune.domain.report import print_summary

    over = [f"--model={args.model}", f"--seed={args.seed}",
            f"--out={args.out or f'runs/bench/domain/{args.size}/seed{args.seed}'}",
            f"--eval.judge.model={args.model}"]
    if args.size == "smoke":
        over = SMOKE + over
    cfg = load_config(DomainConfig, RECIPE, over + list(args.override))
    env = br.environment(note="smoke" if args.size == "smoke" else "")
    summary = Domain(cfg).run()
    print_summary(summary)
    common = {"model": args.model, "seed": args.seed, "size": args.size,
              "smoke": args.size == "smoke", "split": "held-out", "out": cfg.out,
              "command": " ".join(sys.argv), "config": to_dict(cfg)}
    recs = []
    for variant, tasks in (summary.get("eval") or {}).items():
        for task, metrics in tasks.items():
            for m, v in metrics.items():
                if m in ("n", "seconds", "fingerprint", "input_fingerprints", "_outputs") or \
                        not isinstance(v, (int, float)) or isinstance(v, bool):
                    continue
                recs.append(br.record("domain_table", m, v, "ratio" if m != "ppl_heldout_replay"
                                      else "perplexity", env, variant=variant, task=task,
                                      dataset=DATASET[task], n_examples=metrics.get("n"),
                                      **common))
    cpt = summary.get("cpt") or {}
    if cpt.get("tokens_per_second") and not cpt.get("skipped"):
        recs.append(br.record("domain_table", "cpt_tokens_per_second", cpt["tokens_per_second"],
                              "tokens/s", env, variant="cpt", task="cpt", dataset="cpt corpus",
                              tokens_seen=cpt.get("tokens_seen"),
                              train_seconds=cpt.get("train_seconds"),
                              method=cfg.cpt.train.method, max_length=cfg.cpt.train.max_length,
                              batch_size=cfg.cpt.train.batch_size, **common))
    for stage, sec in (summary.get("seconds") or {}).items():
        recs.append(br.record("domain_table", f"seconds_{stage}", sec, "s", env, variant="all",
                              task=stage, dataset="all", **common))
    if args.record:
        n = br.append(args.record, recs)
        print(f"recorded {n} lines in {args.record}")
    return 0


def table(path: str, size: str) -> int:
    from llmrec.finetune.domain.report import SHOWN
    from llmrec.finetune.domain.tasks import TASKS

    rows = [r for r in br.read(path) if r.get("benchmark") == "domain_table"
            and r.get("size") == size]
    cells: dict[tuple[str, str, str], dict[int, float]] = {}
    for r in rows:
        if r.get("task") in TASKS and r["value"] is not None:
            # a seed run again later replaces its earlier value in the table (lines are kept)
            cells.setdefault((r["variant"], r["task"], r["metric"]), {})[r["seed"]] = r["value"]
    variants = [v for v in ("base", "cpt", "sft", "cpt_sft", "cpt_sft_dpo", "per_task")
                if any(k[0] == v for k in cells)]
    cols = [(t, m) for t in TASKS for m in SHOWN[t] if any(k[1:] == (t, m) for k in cells)]
    seeds = sorted({s for c in cells.values() for s in c})
    print(f"{size}: seeds {seeds}\n")
    print("| variant | " + " | ".join(f"{t} {m}" for t, m in cols) + " |")
    print("|" + "---|" * (len(cols) + 1))
    for v in variants:
        out = []
        for t, m in cols:
            vals = list(cells.get((v, t, m), {}).values())
            if not vals:
                out.append("-")
            elif len(vals) == 1:
                out.append(f"{vals[0]:.3f}")
            else:
                out.append(f"{statistics.fmean(vals):.3f} ± {statistics.stdev(vals):.3f}")
        print(f"| {v} | " + " | ".join(out) + " |")
    tps = [r["value"] for r in rows if r["metric"] == "cpt_tokens_per_second"]
    if tps:
        print(f"\nCPT tokens/s: {', '.join(f'{x:.0f}' for x in tps)} ({rows[0]['device']})")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2",
                    help="base model: a local SmolLM2-135M-Instruct folder, or smollm2 (the "
                         "packaged one)")
    ap.add_argument("--size", choices=["smoke", "full"], default="smoke")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="run folder (default runs/bench/domain/<size>/"
                                                "seed<seed>)")
    ap.add_argument("--record", default=None, help="JSONL to append the records to")
    ap.add_argument("--table", default=None, metavar="JSONL",
                    help="print the table of a records file instead of running")
    args, args.override = ap.parse_known_args(argv)  # the rest: recipe overrides --key=value
    if args.table:
        return table(args.table, args.size)
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
