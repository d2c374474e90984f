"""Throughput of the simulation engine: dialogues per minute with N dialogues in flight.

Runs the same tasks, model and settings with ``in_flight = N`` for each N given (the LLM batch
per step is N), after a short warm-up at that N (CUDA graph capture, caches), and reports
dialogues/minute plus the speed-up of each N over the first. Dialogues have a fixed length:
the user never ends early (``min_rounds_before_end > max_rounds``), so every N does the same work
unless the agent finds a target.

Models: ``--model`` (default the packaged SmolLM2-135M-Instruct) or ``--random-weights DIR``: a
model built from DIR's ``config.json`` and tokenizer with random weights (throughput does not
depend on weight values; the text is gibberish, so the free agent's replies would all fail to
parse: use ``--decoding structured`` so that searches, recommendations, ratings and reasons all
happen as in a real run). ``--embedder`` is a sentence-transformers folder or 'minilm'.

Tasks come from the bundled MovieLens ml-latest-small (all users, so that 128+ tasks exist).

Usage:
  python bench/crs_throughput.py --in-flight 1 64 --dialogues 8 128 --max-rounds 3 \\
      [--random-weights DIR] [--decoding structured] [--out bench/results/crs_throughput.jsonl]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "crs_throughput.jsonl"

from llmrec import benchrecord as br  # noqa: E402


def random_weight_model(src: Path, dest: Path) -> Path:
    """A model with ``src``'s config and tokenizer and random weights, saved to ``dest``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(src)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(src).save_pretrained(dest)
    gen = src / "generation_config.json"
    if gen.is_file():
        (dest / "generation_config.json").write_text(gen.read_text())
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--in-flight", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--dialogues", type=int, nargs="+", default=None,
                    help="dialogues timed per N (default: max(4, 2N) each)")
    ap.add_argument("--max-rounds", type=int, default=3)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--random-weights", type=Path, default=None,
                    help="folder with config.json + tokenizer: use random weights of that shape")
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--decoding", choices=["free", "structured"], default="free")
    ap.add_argument("--agent-tokens", type=int, default=48)
    ap.add_argument("--user-tokens", type=int, default=40)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--label", default="", help="free text stored with the results")
    ap.add_argument("--commit", default=None,
                    help="commit to record (default: $LLMREC_COMMIT or the checkout's short HEAD; "
                         "pass it where the copied tree has no git history)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    counts = args.dialogues or [max(4, 2 * n) for n in args.in_flight]
    if len(counts) != len(args.in_flight):
        ap.error("--dialogues needs one count per --in-flight value")

    from llmrec.crs.engine import Engine, SimulationConfig
    from llmrec.crs.tasks import TaskConfig, load_catalog_and_tasks
    from llmrec.llm import LLMConfig, load_backend

    tmp = Path(tempfile.mkdtemp(prefix="crs_bench_"))
    model = args.model
    weights = "real"
    if args.random_weights is not None:
        model = str(random_weight_model(args.random_weights, tmp / "model"))
        weights = "random"
    tcfg = TaskConfig(user_splits=["train", "valid", "test"], n_tasks=0)
    base = SimulationConfig(tasks=tcfg, max_rounds=args.max_rounds, save_prompts=False,
                            resume=False)
    base.catalog.embedder = args.embedder
    base.catalog.device = args.device
    base.agent.decoding = args.decoding
    base.agent.max_new_tokens = args.agent_tokens
    base.simulator.max_new_tokens = args.user_tokens
    base.simulator.min_rounds_before_end = args.max_rounds + 1
    t0 = time.perf_counter()
    catalog, tasks = load_catalog_and_tasks(base.tasks, base.catalog)
    catalog.vectors  # embed the catalog before timing
    print(f"tasks {len(tasks)}, catalog {len(catalog)} items ready in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    llm = load_backend(LLMConfig(model=model, device=args.device,
                                 batch_size=max(args.in_flight)))

    # other processes on a shared machine slow a CPU measurement down: record how busy it was
    load_start = os.getloadavg()[0]
    rows = []
    for n, count in zip(args.in_flight, counts):
        llm.cfg.batch_size = n  # one engine batch per step, whatever N
        if not args.no_warmup:
            warm = SimulationConfig(**{**base.__dict__, "in_flight": n, "max_rounds": 1,
                                       "out": str(tmp / f"warm{n}")})
            Engine(warm, catalog, tasks[-n:], backends={"agent": llm, "simulator": llm}).run()
        cfg = SimulationConfig(**{**base.__dict__, "in_flight": n, "out": str(tmp / f"n{n}")})
        engine = Engine(cfg, catalog, tasks[:count], backends={"agent": llm, "simulator": llm})
        load_before = os.getloadavg()[0]
        t = time.perf_counter()
        res = engine.run()
        seconds = time.perf_counter() - t
        rounds = sum(r["rounds"] for r in res.records)
        row = {"in_flight": n, "dialogues": count, "seconds": round(seconds, 2),
               "dialogues_per_minute": round(60 * count / seconds, 3),
               "agent_turns_per_minute": round(60 * rounds / seconds, 2),
               "calls": engine.calls.summary(),
               "failed_turn_rate": res.metrics["failed_turn_rate"],
               "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
        rows.append(row)
        print(f"N={n:<4} {count:>4} dialogues  {seconds:8.1f} s  "
              f"{row['dialogues_per_minute']:9.2f} dialogues/min  "
              f"{row['agent_turns_per_minute']:9.1f} agent turns/min", flush=True)

    base_rate = rows[0]["dialogues_per_minute"]
    print(f"\n{'N':>5} {'dialogues/min':>14} {'speed-up':>9}")
    env = br.environment(args.device, extra_versions=("numpy",))
    if args.commit:
        env["commit"] = args.commit
    common = {"model": args.model if weights == "real" else f"random weights, shape of "
                                                            f"{args.random_weights.name}",
              "weights": weights, "embedder": args.embedder, "dataset": "ml-latest-small",
              "decoding": args.decoding, "max_rounds": args.max_rounds,
              "agent_max_new_tokens": args.agent_tokens,
              "user_max_new_tokens": args.user_tokens, "label": args.label,
              "load_average_1min": [round(load_start, 2), round(os.getloadavg()[0], 2)],
              "config": {"min_rounds_before_end": args.max_rounds + 1, "save_prompts": False,
                         "warmup": not args.no_warmup}}
    records = []
    for row in rows:
        speedup = row["dialogues_per_minute"] / base_rate
        print(f"{row['in_flight']:>5} {row['dialogues_per_minute']:>14.2f} {speedup:>8.1f}x")
        records.append(br.record("crs_throughput", "dialogues_per_minute",
                                 row["dialogues_per_minute"], "dialogues/min", env, **common,
                                 n_in_flight=row["in_flight"], n_tasks=row["dialogues"],
                                 detail=row))
        if row is not rows[0]:
            records.append(br.record("crs_throughput", "batching_speedup", round(speedup, 2), "x",
                                     env, **common, n_in_flight=row["in_flight"],
                                     baseline=f"in_flight={rows[0]['in_flight']}"))
    br.append(args.out, records)
    print(f"appended to {args.out}")
    llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
