"""Generate the SmolLM2 knowledge the KSER tables need, on a GPU host, and export it.

    python bench/kser_gpu_generate.py generate --ml1m .carry/ml1m --cache /tmp/kcache
    python bench/kser_gpu_generate.py export --cache /tmp/kcache --out $OUT

``generate`` runs ``llmrec.knowledge.generate.run_generate`` (hf backend, SmolLM2-135M-Instruct,
greedy, the repo's templates) for, in this order:

1. ML-1M users 1-2999: user preference reasoning from each user's LM-history (KAR split, seed 42,
   the cutoff of eval/ranking/ml1m.yaml);
2. ml-latest-small users (610), same protocol;
3. ml-latest-small items: first the 3,000 items with the most CTR samples, then the rest.

Each run flushes whole cache shards, so a time limit (``timeout``) around it loses at most one
flush; ``export`` then writes every cached entry of each cache as one Parquet file (plus the run
summaries), small enough to come back from the device and be merged into a local cache with
:func:`merge_export`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _llm(batch_size: int, max_new_tokens: int):
    from llmrec.llm.config import LLMConfig

    return LLMConfig(backend="hf", model="smollm2", batch_size=batch_size,
                     max_new_tokens=max_new_tokens, device="auto")


def generate(args) -> None:
    from llmrec.data.loaders import DataConfig
    from llmrec.data.splits import SplitConfig
    from llmrec.knowledge.generate import GenerateConfig, run_generate

    t0 = time.time()
    llm = _llm(args.batch_size, args.max_new_tokens)
    split = SplitConfig(protocol="kar", seed=42, valid_frac=0.1, test_frac=0.1)
    common = dict(llm=llm, split=split, flush_every=args.flush_every,
                  max_attempts=args.max_attempts)
    ml1m = DataConfig(name="movielens-1m", path=args.ml1m)
    jobs = [("ml1m", GenerateConfig(data=ml1m, entities="users",
                                    cache_dir=f"{args.cache}/ml1m", **common))]
    if not args.only_ml1m:
        jobs += _small_jobs(split, common, args.cache)
    for name, cfg in jobs:
        t = time.time()
        s = run_generate(cfg)
        print(json.dumps({"dataset": name, "entities": cfg.entities,
                          "seconds": round(time.time() - t, 1), "totals": s["totals"]}), flush=True)
    print(f"all generation done in {time.time() - t0:.0f}s", flush=True)


def _small_jobs(split, common, cache: str) -> list:
    """ml-latest-small users, then its items by number of CTR samples (a cut-off run has the
    items that matter most)."""
    from llmrec.data.loaders import DataConfig, load_data
    from llmrec.data.splits import make_split
    from llmrec.knowledge.generate import GenerateConfig

    small = DataConfig(name="ml-latest-small")
    jobs = []
    jobs.append(("ml-latest-small", GenerateConfig(data=small, entities="users",
                                                   cache_dir=f"{cache}/ml-latest-small",
                                                   **common)))
    # items by number of CTR samples, so a cut-off run has the items that matter most
    data = load_data(small)
    samples = make_split(data, split).samples
    order = samples["item_id"].astype(str).value_counts().index.tolist()
    rest = [i for i in data.df("items")["item_id"].astype(str) if i not in set(order)]
    ranked = order + rest
    for lo, hi in ((0, 3000), (3000, len(ranked))):
        jobs.append(("ml-latest-small", GenerateConfig(
            data=small, entities="items", ids=ranked[lo:hi],
            cache_dir=f"{cache}/ml-latest-small", **common)))
    return jobs


def export(args) -> None:
    from llmrec.knowledge.cache import KnowledgeCache

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for sub in sorted(Path(args.cache).iterdir()):
        cache = KnowledgeCache(sub)
        df = cache.read()
        df.to_parquet(out / f"knowledge_{sub.name}.parquet", index=False)
        runs = [json.loads(p.read_text()) for p in sorted((sub / "runs").glob("*.json"))] \
            if (sub / "runs").is_dir() else []
        (out / f"runs_{sub.name}.json").write_text(json.dumps(runs, indent=1, default=str))
        print(f"{sub.name}: {len(df)} entries "
              f"({df.groupby(['entity', 'status']).size().to_dict() if len(df) else {}})")


def merge_export(parquet: str | Path, cache_dir: str | Path) -> int:
    """Write the entries of an exported Parquet file into a local cache (keys kept; entries
    already present are skipped). Returns how many were written."""
    import pandas as pd

    from llmrec.knowledge.cache import KnowledgeCache, schema

    df = pd.read_parquet(parquet)
    cache = KnowledgeCache(cache_dir).ensure()
    done = cache.done_keys()
    df = df[~df["key"].isin(done)]
    if df.empty:
        return 0
    import pyarrow as pa

    # through Arrow, so pandas' NaN placeholders become the nulls the cache schema expects
    rows = pa.Table.from_pandas(df[schema().names], schema=schema(),
                                preserve_index=False).to_pylist()
    cache.write(rows, {"merged_from": str(parquet)})
    return len(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--ml1m", required=True, help="MovieLens-1M folder")
    g.add_argument("--cache", required=True, help="root of the per-dataset caches")
    g.add_argument("--batch-size", type=int, default=512)
    g.add_argument("--flush-every", type=int, default=1024)
    g.add_argument("--max-new-tokens", type=int, default=320)
    g.add_argument("--max-attempts", type=int, default=3)
    g.add_argument("--only-ml1m", action="store_true", help="only the ML-1M users")
    e = sub.add_parser("export")
    e.add_argument("--cache", required=True)
    e.add_argument("--out", required=True)
    m = sub.add_parser("merge")
    m.add_argument("parquet")
    m.add_argument("--cache", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.cmd == "generate":
        generate(args)
    elif args.cmd == "export":
        export(args)
    else:
        print(f"merged {merge_export(args.parquet, args.cache)} entries into {args.cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
