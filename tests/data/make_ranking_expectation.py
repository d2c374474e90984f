"""Write ``ranking_expectation.json``: binary-task CTR results on CPU for a fixed seed.

Run once on a reference commit (``python tests/data/make_ranking_expectation.py``); the test
``tests/test_ranking_expectation.py`` retrains the same cases and compares. The cases use only
``run_train(RankConfig, features=...)``, the public entry point, so the script runs unchanged on
the reference commit and on later ones.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

CASES_BACKBONES = ("dnn", "deepfm", "dcn", "dcnv2", "xdeepfm", "autoint", "fibinet", "fignn",
                   "din", "dien", "finalmlp", "gdcn")
SMALL = {"hidden": [16, 8]}
SPECIAL = {"finalmlp": {"hidden1": [16], "hidden2": [16], "fusion_heads": 4, "gate_hidden": 8},
           "xdeepfm": {"hidden": [16], "cin_layers": [8, 8]}, "fignn": {},
           "autoint": {"hidden": [16]}}
AUGMENTED = (("din", "kar", "all"), ("dcnv2", "kser", "all"), ("din", "kser", "extractor"))


def model_args(name: str) -> dict:
    return {"embed_dim": 8, **SPECIAL.get(name, SMALL)}


def features_and_knowledge(tmp: Path):
    from llmrec.ranking.features import FeatureConfig, build_features
    from llmrec.ranking.knowledge.synthetic import synthetic_embeddings
    from llmrec.ranking.synthetic import make_synthetic

    tables, split = make_synthetic(80, 40, mean_len=14, seed=3)
    fs = build_features(tables, split, FeatureConfig(max_hist_len=4, max_multi_len=3))
    try:  # 05906cd attached the row ids in a separate step; later commits build them in
        from llmrec.ranking.knowledge.store import attach_row_ids
    except ImportError:
        pass
    else:
        attach_row_ids(fs, tables, split)
    folder = synthetic_embeddings(tmp / "emb", fs.info["row_ids"], dim=12, max_chunks=3,
                                  coverage=0.7, seed=0)
    return fs, folder


def config(name: str, out: Path, augment: str = "none", strategy: str = "all",
           embeddings: str | None = None):
    from llmrec.ranking.pipeline import RankConfig
    from llmrec.config import from_dict

    d = {"model": name, "model_args": model_args(name), "output_dir": str(out),
         "augment": augment, "strategy": strategy,
         "train": {"device": "cpu", "seed": 11, "batch_size": 128, "epochs": 3, "patience": 5,
                   "checkpoint": False}}
    if augment != "none":
        d["knowledge"] = {"embeddings": embeddings, "score_hidden": 8, "value_dim": 8,
                          "kar_hidden": [16, 8]}
    return from_dict(RankConfig, d)


def summary(result: dict) -> dict:
    keep = ("auc", "gauc", "logloss")
    return {"best_epoch": result["best_epoch"],
            "train_loss": [h["train_loss"] for h in result["history"]],
            "valid": {k: result["valid"][k] for k in keep},
            "test": {k: result["test"][k] for k in keep}}


def run_all() -> dict:
    from llmrec.ranking.pipeline import run_train

    out = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        fs, folder = features_and_knowledge(tmp)
        for name in CASES_BACKBONES:
            out[name] = summary(run_train(config(name, tmp / name), features=fs))
        for name, augment, strategy in AUGMENTED:
            key = f"{name}+{augment}+{strategy}"
            out[key] = summary(run_train(config(name, tmp / key, augment, strategy, str(folder)),
                                         features=fs))
    return out


def main() -> None:
    import torch

    from llmrec.artifacts import git_revision

    results = run_all()
    record = {"commit": git_revision(), "torch": torch.__version__,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(), "results": results}
    path = Path(__file__).with_name("ranking_expectation.json")
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path} ({len(results)} cases)", file=sys.stderr)


if __name__ == "__main__":
    main()
