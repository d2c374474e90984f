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
    ap.add_argument("--reuse", action="append", default=[], help="an embeddings folder (e.g. "
                    "`knowledge embed` of the same answers, or the history folder): its chunk "
                    "vectors are reused, not re-encoded (repeatable)")
    ap.add_argument("--only", choices=("history", "history+answer"), default=None)
    args = ap.parse_args(argv)

    from llmrec.data.config import DataConfig
    from llmrec.data.loaders import load_data
    from llmrec.data.splits import SplitConfig, make_split
    from llmrec.knowledge.embed import Encoder
    from llmrec.knowledge.history_text import (answers_from_cache, history_embeddings,
                                               memo_from_folder)

    t0 = time.time()
    data = load_data(DataConfig(name="movielens-1m", path=args.data_path))
    split = make_split(data, SplitConfig(protocol="kar", seed=42, valid_frac=0.1,
                                         test_frac=0.1))
    enc = Encoder(args.embedder, device=args.device)
    memo = {}
    for folder in args.reuse:
        memo.update(memo_from_folder(folder))
    reused = len(memo)
    out = Path(args.out)
    if args.only != "history+answer":
        print(history_embeddings(out / "history", data, split, encoder=enc, memo=memo))
    if args.only != "history":
        answers = answers_from_cache(args.cache, model=args.model)
        print(history_embeddings(out / "history+answer", data, split, answers=answers,
                                 encoder=enc, memo=memo))
    print(f"{len(memo) - reused} texts encoded ({reused} reused) in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
