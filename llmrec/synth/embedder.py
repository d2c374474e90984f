"""Bi-encoder training on graded pairs and its evaluation (nDCG@10, AvgAP).

Training rows are built from graded (query, document, level) pairs:

- every pair at level >= 1 becomes a row ``(anchor=query, positive=document, label=level)``;
- level-0 pairs become the *hard negatives* of their query: each row gets ``hard_negatives``
  columns ``negative_1..k`` drawn from its query's level-0 documents; a query with too few of them
  is topped up with random documents of the corpus that are not graded >= 1 for it (a synthetic
  query written for one document usually has no level-0 document of its own);
- the loss is :class:`~llmrec.synth.losses.LabelWeightedInfoNCELoss` (loss_i scaled by s_i / 3),
  optionally wrapped in sentence-transformers' ``MatryoshkaLoss``.

Batches never hold two rows of the same query or two rows sharing a document
(``batch_sampler=no_duplicates``). Evaluation encodes each held-out query and its judged
candidates and scores pairs by cosine similarity (:mod:`llmrec.synth.metrics`).
"""

from __future__ import annotations

import logging
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.config import option
from llmrec.synth.metrics import avg_ap, mean_ndcg, normalize_query

log = logging.getLogger(__name__)


@dataclass
class EmbedConfig:
    """Bi-encoder training: base model, label-weighted InfoNCE, optimisation."""

    model: str = option("minilm", help="base sentence-transformers model: 'minilm' (packaged "
                        "all-MiniLM-L6-v2) or a local folder")
    epochs: float = option(1.0, help="passes over the training rows")
    learning_rate: float = option(2e-5, help="peak AdamW learning rate (linear decay)")
    warmup_ratio: float = option(0.1, help="share of the steps spent warming the rate up")
    batch_size: int = option(32, help="rows per batch (each row: query, positive, negatives)")
    hard_negatives: int = option(1, help="negative columns per row (level-0 documents of the "
                                 "same query, topped up with random documents)")
    scale: float = option(20.0, help="InfoNCE scale = 1 / temperature on cosine similarity")
    matryoshka_dims: list[int] = option(
        [], help="train these leading dimensions too (MatryoshkaLoss), e.g. [384, 256, 128, 64]; "
                 "empty = off")
    max_seq_length: int = option(256, help="token limit of each text")
    seed: int = option(0, help="seed of negative sampling, data order and dropout")

    def __post_init__(self) -> None:
        if self.hard_negatives < 0 or self.batch_size < 2:
            raise ValueError("hard_negatives must be >= 0 and batch_size >= 2")


def training_rows(pairs, doc_text: dict[str, str], cfg: EmbedConfig):
    """The (anchor, positive, negative_1..k, label) rows of ``pairs`` (query, doc_id, level).

    Returns a DataFrame; queries are matched by :func:`normalize_query`.
    """
    import pandas as pd

    rng = random.Random(cfg.seed)
    pairs = pairs.assign(_q=[normalize_query(q) for q in pairs["query"]])
    pairs = pairs.drop_duplicates(["_q", "doc_id"], keep="first")
    negatives: dict[str, list[str]] = {}
    graded: dict[str, set[str]] = {}
    for q, d, lv in zip(pairs["_q"], pairs["doc_id"], pairs["level"]):
        if int(lv) == 0:
            negatives.setdefault(q, []).append(d)
        else:
            graded.setdefault(q, set()).add(d)
    corpus = sorted(doc_text)
    rows = []
    for query, q, d, lv in zip(pairs["query"], pairs["_q"], pairs["doc_id"], pairs["level"]):
        if int(lv) == 0:
            continue
        own = negatives.get(q, [])
        picked = rng.sample(own, min(cfg.hard_negatives, len(own)))
        while len(picked) < cfg.hard_negatives:
            cand = corpus[rng.randrange(len(corpus))]
            if cand not in graded.get(q, ()) and cand not in picked and cand != d:
                picked.append(cand)
        row = {"anchor": str(query), "positive": doc_text[d]}
        for i, n in enumerate(picked, 1):
            row[f"negative_{i}"] = doc_text[n]
        row["label"] = float(lv)
        rows.append(row)
    cols = ["anchor", "positive"] + [f"negative_{i}" for i in range(1, cfg.hard_negatives + 1)]
    return pd.DataFrame(rows, columns=cols + ["label"])


def _training_args(work: str, cfg: EmbedConfig):
    import torch
    from sentence_transformers import SentenceTransformerTrainingArguments

    from llmrec.progress import progress_enabled

    use_cuda = torch.cuda.is_available()
    return SentenceTransformerTrainingArguments(
        output_dir=work,
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
        lr_scheduler_type="linear",
        batch_sampler="no_duplicates",
        save_strategy="no",
        report_to="none",
        logging_steps=5,
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=not use_cuda,
        bf16=False,
        fp16=False,
        dataloader_num_workers=0,
        disable_tqdm=not progress_enabled(),
    )


def train_embedder(pairs, doc_text: dict[str, str], out: str | Path, cfg: EmbedConfig,
                   config: Any = None, **provenance: Any) -> dict[str, Any]:
    """Train a bi-encoder on graded ``pairs`` and save it (a sentence-transformers folder)."""
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    try:  # sentence-transformers >= 6 moved the losses; the old path warns, then goes
        from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss
    except ImportError:  # pragma: no cover - older releases
        from sentence_transformers.losses import MatryoshkaLoss

    from llmrec.artifacts import atomic_dir, write_meta
    from llmrec.models import resolve_embedder
    from llmrec.synth.losses import LabelWeightedInfoNCELoss

    rows = training_rows(pairs, doc_text, cfg)
    if rows.empty:
        raise ValueError("no training rows: the pairs hold no level >= 1 pair")
    base = resolve_embedder(cfg.model)
    model = SentenceTransformer(str(base), device="cpu" if not _cuda() else None)
    model.max_seq_length = cfg.max_seq_length
    loss = LabelWeightedInfoNCELoss(model, scale=cfg.scale)
    if cfg.matryoshka_dims:
        loss = MatryoshkaLoss(model, loss, list(cfg.matryoshka_dims))
    ds = Dataset.from_pandas(rows, preserve_index=False)
    log.info("training the embedder on %d rows (levels %s) from %s", len(rows),
             rows["label"].value_counts().sort_index().to_dict(), base)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="llmrec-embed-") as work:
        trainer = SentenceTransformerTrainer(model=model, args=_training_args(work, cfg),
                                             train_dataset=ds, loss=loss)
        _quiet_printer(trainer)
        # see llmrec.llm.tuning.sft_lora: a loaded LLM backend turns grad off
        with torch.enable_grad():
            result = trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    summary = {"rows": len(rows), "steps": int(result.global_step),
               "train_loss": float(result.training_loss),
               "first_loss": losses[0] if losses else None,
               "last_loss": losses[-1] if losses else None,
               "row_levels": {str(int(k)): int(v) for k, v in
                              rows["label"].value_counts().sort_index().items()},
               "base": str(base)}
    with atomic_dir(out) as tmp:
        model.save(str(tmp))
        write_meta(tmp, config, stage="embedder", training=summary, **provenance)
    return summary


def _quiet_printer(trainer) -> None:
    """Without a progress bar, transformers prints every log dict to stdout; the summary that
    matters is logged once the run ends instead."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def evaluate_embedder(model_or_path: Any, eval_pairs, doc_text: dict[str, str], k: int = 10,
                      batch_size: int = 64, matryoshka_dim: int | None = None) -> dict[str, Any]:
    """nDCG@k and AvgAP of cosine scores over ``eval_pairs`` (query_id, query, doc_id, grade)."""
    from sentence_transformers import SentenceTransformer

    from llmrec.models import resolve_embedder
    from llmrec.progress import progress_enabled

    model = model_or_path
    if isinstance(model_or_path, (str, Path)):
        model = SentenceTransformer(str(resolve_embedder(str(model_or_path))),
                                    device="cpu" if not _cuda() else None)
    queries = sorted(set(eval_pairs["query"]))
    docs = sorted(set(eval_pairs["doc_id"]))
    enc = dict(convert_to_numpy=True, normalize_embeddings=True, batch_size=batch_size,
               show_progress_bar=progress_enabled())
    if matryoshka_dim:
        enc["truncate_dim"] = matryoshka_dim
    q_vec = dict(zip(queries, model.encode(queries, **enc)))
    d_vec = dict(zip(docs, model.encode([doc_text[d] for d in docs], **enc)))
    scores = np.array([float(np.dot(q_vec[q], d_vec[d]))
                       for q, d in zip(eval_pairs["query"], eval_pairs["doc_id"])])
    grades = eval_pairs["grade"].astype(int).to_numpy()
    nd = mean_ndcg(eval_pairs["query_id"].tolist(), scores, grades, k=k)
    ap = avg_ap(grades, scores)
    return {f"ndcg@{k}": nd["ndcg"], "n_queries": nd["n_queries"], "n_skipped": nd["n_skipped"],
            **ap, "n_pairs": int(len(grades))}
