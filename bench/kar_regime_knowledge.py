"""User knowledge folders for ``bench/kar_regime.py``: the history text, and the history text with
the LLM's answer appended (``llmrec.knowledge.history_text``), embedded once with one encoder.

    python bench/kar_regime_knowledge.py --data-path ../shared/data/movielens-1m \
        --cache runs/knowledge/ml1m --out runs/knowledge/ml1m/history
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-path", required=True)
    ap.add_argument("--cache", required=True, help="knowledge cache with the LLM's user entries")
    ap.add_argument("--model", default=None, help="only entries of this LLM id")
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from llmrec.data.config import DataConfig
    from llmrec.data.loaders import load_data
    from llmrec.data.splits import SplitConfig, make_split
    from llmrec.knowledge.embed import Encoder
    from llmrec.knowledge.history_text import answers_from_cache, history_embeddings

    t0 = time.time()
    data = load_data(DataConfig(name="movielens-1m", path=args.data_path))
    split = make_split(data, SplitConfig(protocol="kar", seed=42, valid_frac=0.1,
                                         test_frac=0.1))
    enc, memo = Encoder(args.embedder, device=args.device), {}
    out = Path(args.out)
    a = history_embeddings(out / "history", data, split, encoder=enc, memo=memo)
    answers = answers_from_cache(args.cache, model=args.model)
    b = history_embeddings(out / "history+answer", data, split, answers=answers, encoder=enc,
                           memo=memo)
    print(f"{a}\n{b}\n{len(memo)} texts encoded in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
