"""GPU throughput of the hf generation path and of chunk embedding (run on an H100).

Generation: a SmolLM2-135M-shaped Llama with RANDOM weights (throughput does not depend on weight
values), prompts of exactly 128 random token ids, exactly 128 new tokens (end-of-turn ignored),
bf16. Measured in the same process: transformers' ``model.generate`` (the naive baseline) and
llmrec's hf backend (``HFBackend.generate_ids``: static KV cache + CUDA-graphed decode step),
at several batch sizes; tokens/s counts generated tokens only, prefill time included.

Embedding: all-MiniLM-L6-v2 (real weights, fp16), synthetic English chunks of 20-40 tokens,
end to end (tokenisation, length sorting, encoding, copy back to host) through
``llmrec.knowledge.embed.Encoder``, against ``SentenceTransformer.encode`` as the baseline.

Usage: python bench/llm_gpu_throughput.py --tokenizer DIR --minilm DIR [--out FILE] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmrec import benchrecord as br  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

# SmolLM2-135M-Instruct's architecture (read from the packaged GGUF's metadata).
SMOLLM2_SHAPE = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                     num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                     head_dim=64, max_position_embeddings=8192, rms_norm_eps=1e-5,
                     rope_theta=100000.0, tie_word_embeddings=True, bos_token_id=1,
                     eos_token_id=2, pad_token_id=2)

WORDS = ("movie film story hero villain city night love war family friend journey dark comedy "
         "drama action space future past music dance crime detective mystery secret island "
         "ocean mountain forest king queen robot alien ship train road school teacher student "
         "doctor police soldier child mother father brother sister wedding funeral party dream "
         "memory time magic dragon sword battle escape revenge betrayal trust hope fear courage "
         "small town big success failure money power truth lies young old classic modern witty "
         "slow fast beautiful ugly gentle brutal warm cold funny sad scary quiet loud bright "
         "directed acted written scored filmed edited released praised criticised remembered "
         "with about from into across under over between after before during without because "
         "although while and but or the a an of in on at to for by its their his her").split()


def record(path: Path, env: dict, benchmark: str, metric: str, value: float, unit: str,
           **conditions) -> dict:
    """Append one measurement at once (a run that fails later keeps it) and return it."""
    rec = br.record(benchmark, metric, value, unit, env, **conditions)
    br.append(path, [rec])
    return rec


def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_generate(args, out_path: Path) -> list[dict]:
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    from llmrec.llm import LLMConfig, SamplingParams
    from llmrec.llm.hf import HFBackend

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    shape = dict(SMOLLM2_SHAPE)
    if args.smoke:
        shape.update(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**shape)).to(dev, dtype).eval()
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    prompt_len, new = (128, 128) if not args.smoke else (32, 16)
    batches = [1, 64, 256, 512, 1024, 2048] if not args.smoke else [1, 4]
    naive_batches = [1, 256] if not args.smoke else [1, 4]
    g = torch.Generator().manual_seed(1)
    all_ids = torch.randint(100, shape["vocab_size"] - 100, (max(batches), prompt_len), generator=g)
    env = br.environment()
    common = dict(benchmark="llm_generate_throughput", unit="tok/s",
                  model="SmolLM2-135M shape, random weights")
    cfg_base = dict(prompt_tokens=prompt_len, new_tokens=new, dtype=str(dtype).split(".")[-1])
    rows = []

    naive = {}
    for b in naive_batches:
        ids = all_ids[:b].to(dev)
        gc = GenerationConfig(max_new_tokens=new, min_new_tokens=new, do_sample=False,
                              pad_token_id=2, eos_token_id=2)
        model.generate(input_ids=ids[:, :8], attention_mask=torch.ones_like(ids[:, :8]),
                       generation_config=GenerationConfig(max_new_tokens=4, do_sample=False,
                                                          pad_token_id=2))  # warm-up
        sync()
        t = time.perf_counter()
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gc)
        sync()
        dt = time.perf_counter() - t
        assert out.shape[1] - prompt_len == new
        naive[b] = b * new / dt
        rows.append(record(out_path, env, **common, metric="generated_tokens_per_s", value=round(naive[b], 1),
                           baseline=None, config={**cfg_base, "batch": b, "path": "transformers generate (naive)",
                                                  "sampling": "greedy"}))
        print(f"naive generate   batch {b:>5}: {naive[b]:>10,.0f} tok/s ({dt:.2f} s)", flush=True)

    def ours(b: int, sp, label: str, repeats: int = 3):
        backend = HFBackend(LLMConfig(model="bench", batch_size=b, device=dev), model=model,
                            tokenizer=tok)
        prompts = [row.tolist() for row in all_ids[:b]]
        seeds = list(range(b))
        sync()
        t = time.perf_counter()
        first = backend.generate_ids(prompts, sp, seeds)  # includes CUDA-graph capture
        sync()
        first_s = time.perf_counter() - t
        assert all(x.completion_tokens == new for x in first)
        times = []
        for _ in range(repeats):
            sync()
            t = time.perf_counter()
            backend.generate_ids(prompts, sp, seeds)
            sync()
            times.append(time.perf_counter() - t)
        best = min(times)
        tps = b * new / best
        ratio = {k: round(tps / v, 2) for k, v in naive.items()}
        rows.append(record(out_path, env, **common, metric="generated_tokens_per_s", value=round(tps, 1),
                           baseline="transformers generate (naive), same run",
                           ratio_to_naive=ratio,
                           config={**cfg_base, "batch": b, "path": "llmrec hf (static KV cache + CUDA graphs)",
                                   "sampling": label, "first_call_s": round(first_s, 3),
                                   "times_s": [round(x, 4) for x in times]}))
        print(f"llmrec hf        batch {b:>5}: {tps:>10,.0f} tok/s ({best:.3f} s; first call "
              f"{first_s:.2f} s; {label}; x{ratio} vs naive)", flush=True)
        del backend
        torch.cuda.empty_cache() if dev == "cuda" else None
        return tps

    greedy = SamplingParams(max_new_tokens=new, ignore_eos=True, repetition_penalty=1.0)
    best_b, best_tps = None, 0.0
    for b in batches:
        try:
            tps = ours(b, greedy, "greedy")
        except torch.cuda.OutOfMemoryError as exc:  # pragma: no cover - device dependent
            print(f"batch {b}: out of memory ({exc})")
            break
        if tps > best_tps:
            best_b, best_tps = b, tps
    sampled = SamplingParams(max_new_tokens=new, ignore_eos=True, temperature=0.7, top_p=0.9,
                             top_k=50, repetition_penalty=1.0)
    ours(256 if not args.smoke else 4, sampled, "temperature 0.7, top_p 0.9, top_k 50")
    ours(best_b, sampled, "temperature 0.7, top_p 0.9, top_k 50")
    ours(best_b, SamplingParams(max_new_tokens=new, ignore_eos=True, repetition_penalty=1.1),
         "greedy, repetition_penalty 1.1 (llmrec default)")
    return rows


def make_chunks(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(14, 30)
        words = [rng.choice(WORDS) for _ in range(k)]
        out.append(" ".join(words).capitalize() + ".")
    return out


def bench_embed(args, out_path: Path) -> list[dict]:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from llmrec.knowledge.embed import Encoder

    n = args.chunks or (200_000 if not args.smoke else 2_000)
    texts = make_chunks(n)
    enc = Encoder(args.minilm, "auto")
    lens = [len(x) for x in enc.model.tokenizer(texts[:5000])["input_ids"]]
    env = br.environment(extra_versions=("tokenizers",))
    common = dict(benchmark="llm_embed_throughput", unit="chunks/s",
                  model="all-MiniLM-L6-v2 (real weights)")
    chunk_cfg = {"chunks": n, "tokens_mean": round(float(np.mean(lens)), 1),
                 "tokens_min": int(min(lens)), "tokens_max": int(max(lens)),
                 "dtype": "float16" if enc.device.startswith("cuda") else "float32",
                 "end_to_end": "tokenisation + length sort + encode + copy to host"}
    rows = []
    enc.encode(texts[:20_000], 65536, 2048)  # warm-up
    settings = [(131072, 4096, 4096), (131072, 4096, 8192), (131072, 4096, 16384),
                (65536, 2048, 8192)] if not args.smoke else [(4096, 256, 1000)]
    for budget, max_batch, group in settings:
        sync()
        t = time.perf_counter()
        vec = enc.encode(texts, budget, max_batch, super_batch=group)
        sync()
        dt = time.perf_counter() - t
        assert vec.shape == (n, enc.dim) and vec.dtype == np.float16
        rows.append(record(out_path, env, **common, metric="chunks_per_s", value=round(n / dt, 1),
                           baseline=None, config={**chunk_cfg, "path": "llmrec Encoder",
                                                  "batch_tokens": budget, "max_batch": max_batch,
                                                  "super_batch": group, "seconds": round(dt, 3)}))
        print(f"llmrec Encoder  budget {budget:>6} max {max_batch:>5} group {group:>6}: "
              f"{n / dt:>10,.0f} chunks/s "
              f"({dt:.2f} s)", flush=True)
    # where the time goes: the tokenizer alone (all texts, one parallel call), the encoder alone
    # (pre-tokenised, same batching), and the waits inside the pipelined end-to-end path
    t = time.perf_counter()
    ids = enc._tokenize(texts)
    tok_s = time.perf_counter() - t
    order = sorted(range(n), key=lambda i: len(ids[i]))
    sync()
    t = time.perf_counter()
    with torch.inference_mode():
        start = 0
        while start < n:
            longest = len(ids[order[min(n - 1, start + 4095)]])
            take = max(1, min(4096, 131072 // longest))
            enc.model(enc._features([ids[i] for i in order[start:start + take]]))
            start += take
    sync()
    gpu_s = time.perf_counter() - t
    tm: dict = {}
    sync()
    t = time.perf_counter()
    enc.encode(texts, 131072, 4096, timings=tm)
    sync()
    e2e = time.perf_counter() - t
    prof = {"tokenize_only_chunks_per_s": round(n / tok_s), "encode_pretokenised_chunks_per_s":
            round(n / gpu_s), "end_to_end_s": round(e2e, 3),
            "end_to_end_tokenize_wait_s": round(tm["tokenize_wait"], 3),
            "end_to_end_features_s": round(tm["features"], 3), "cpu_cores": os.cpu_count()}
    rows.append(record(out_path, env, **common, metric="chunks_per_s_breakdown", value=round(n / e2e, 1),
                       baseline=None, config={**chunk_cfg, "path": "llmrec Encoder", **prof}))
    print(f"breakdown: {json.dumps(prof)}", flush=True)
    st = SentenceTransformer(args.minilm, device=enc.device)
    if enc.device.startswith("cuda"):
        st.half()
    st.encode(texts[:20_000], batch_size=512)
    sync()
    t = time.perf_counter()
    st.encode(texts, batch_size=512, convert_to_numpy=True)
    sync()
    dt = time.perf_counter() - t
    rows.append(record(out_path, env, **common, metric="chunks_per_s", value=round(n / dt, 1),
                       baseline=None, config={**chunk_cfg, "path": "SentenceTransformer.encode",
                                              "batch_size": 512, "seconds": round(dt, 3)}))
    print(f"SentenceTransformer.encode batch 512: {n / dt:>10,.0f} chunks/s ({dt:.2f} s)", flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True, help="SmolLM2 tokenizer folder")
    ap.add_argument("--minilm", required=True, help="all-MiniLM-L6-v2 sentence-transformers folder")
    ap.add_argument("--out", default=str(RESULTS / "llm_gpu_throughput.jsonl"))
    ap.add_argument("--only", choices=["generate", "embed"], default=None)
    ap.add_argument("--chunks", type=int, default=0, help="embedding: number of chunks")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script on CPU")
    args = ap.parse_args()
    out = Path(args.out)
    failed = False
    for name, fn in (("generate", bench_generate), ("embed", bench_embed)):
        if args.only and args.only != name:
            continue
        try:
            fn(args, out)
        except Exception as exc:  # noqa: BLE001 - report and go on to the other benchmark
            import traceback

            traceback.print_exc()
            print(f"{name} benchmark failed: {exc}", flush=True)
            failed = True
    print(json.dumps({"results": str(out)}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
