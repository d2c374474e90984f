"""CPU speed of the LLMs and embedders llmrec can use offline (defaults and installed options).

LLMs, hf backend, float32, greedy: load seconds, then generation tokens/s at batch 1 and 8
(prompts of ``--prompt`` random token ids, exactly ``--new`` new tokens, end-of-turn ignored;
prefill included). Embedders: load seconds and sentences/s encoding ``--sentences`` short texts.
Models not installed are skipped with a line saying so. Appends to
``bench/results/models_speed.jsonl``.

Usage:
  OMP_NUM_THREADS=2 python bench/models_speed.py [--models smollm2 qwen2.5-coder-0.5b ...]
      [--embedders minilm mpnet] [--batches 1 8] [--new 32] [--prompt 128] [--smoke]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench" / "results" / "models_speed.jsonl"


def _llm(name: str, batches: list[int], new: int, prompt_len: int, smoke: bool) -> list[dict]:
    import torch

    from llmrec.llm import LLMConfig, SamplingParams, load_backend

    cfg = LLMConfig(backend="hf", model=name, dtype="float32", batch_size=max(batches))
    t = time.perf_counter()
    llm = load_backend(cfg)
    load_s = time.perf_counter() - t
    vocab = llm.tok.vocab_size
    rng = random.Random(0)
    rows = [("load_seconds", round(load_s, 1), "s", {})]
    sampling = SamplingParams(temperature=0.0, max_new_tokens=new, ignore_eos=True)
    for b in batches:
        # token-id prompts decoded to text: the backend takes chat messages
        convs = [[{"role": "user", "content": llm.tok.decode(
            [rng.randrange(1000, vocab - 1) for _ in range(prompt_len)])}] for _ in range(b)]
        llm.generate(convs[:1], SamplingParams(temperature=0.0, max_new_tokens=2))  # warm-up
        t = time.perf_counter()
        gens = llm.generate(convs, sampling)
        dt = time.perf_counter() - t
        toks = sum(g.completion_tokens for g in gens)
        rows.append(("tokens_per_s", round(toks / dt, 2), "tokens/s", {"batch": b}))
    llm.close()
    del llm
    return rows


def _embedder(name: str, n: int) -> list[dict]:
    from sentence_transformers import SentenceTransformer

    from llmrec.models import resolve_embedder

    t = time.perf_counter()
    model = SentenceTransformer(str(resolve_embedder(name)), device="cpu")
    load_s = time.perf_counter() - t
    texts = [f"A {adj} film about {what}, set in {where}." for adj, what, where in zip(
        ["quiet", "loud", "funny", "dark"] * n, ["a lighthouse", "a heist", "two friends",
                                                 "a robot"] * n, ["Maine", "Paris", "space",
                                                                  "1920s Berlin"] * n)][:n]
    model.encode(texts[:4])
    t = time.perf_counter()
    vecs = model.encode(texts, batch_size=32)
    dt = time.perf_counter() - t
    return [("load_seconds", round(load_s, 1), "s", {}),
            ("sentences_per_s", round(n / dt, 1), "sentences/s", {"dim": int(vecs.shape[1])})]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*",
                    default=["smollm2", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
    ap.add_argument("--embedders", nargs="*", default=["minilm", "mpnet"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--sentences", type=int, default=256)
    ap.add_argument("--record", default=str(OUT))
    ap.add_argument("--smoke", action="store_true",
                    help="a tiny random LLM and 16 sentences; records nothing")
    args = ap.parse_args(argv)

    from llmrec import benchrecord as br
    from llmrec.errors import MissingDependencyError

    env = br.environment()
    threads = __import__("torch").get_num_threads()
    jobs = [("llm", m) for m in args.models] + [("embedder", e) for e in args.embedders]
    if args.smoke:
        import tempfile

        from llmrec.models import tiny_llama

        jobs = [("llm", str(tiny_llama(Path(tempfile.mkdtemp()) / "tiny")))] + \
               [("embedder", e) for e in args.embedders[:1]]
        args.sentences, args.new = 16, 4
    records = []
    for role, name in jobs:
        try:
            rows = (_llm(name, args.batches, args.new, args.prompt, args.smoke) if role == "llm"
                    else _embedder(name, args.sentences))
        except MissingDependencyError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        for metric, value, unit, extra in rows:
            print(f"{name:<22} {metric:<16} {str(extra or ''):<14} {value} {unit}", flush=True)
            records.append(br.record(
                "models_speed", metric, value, unit, env=env, model=name, role=role,
                backend="hf" if role == "llm" else "sentence-transformers", dtype="float32",
                threads=threads, new_tokens=args.new if role == "llm" else None,
                prompt_tokens=args.prompt if role == "llm" else None, **extra))
    if not args.smoke and records:
        br.append(args.record, records)
        print(f"{len(records)} records -> {args.record}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
