"""Relevance-controlled synthetic training data (SSRA) and embedding-model training.

``llmrec.synth`` owns the whole SSRA workflow of ``docs/synth.md``:

- :mod:`~llmrec.synth.domains`: seed labels, unlabelled pairs, unlabelled documents and held-out
  evaluation pairs for the two domains (MovieLens movies, TREC DL19 passages);
- :mod:`~llmrec.synth.score_model`: the score model g(q, d) -> {0,1,2,3} (a MiniLM cross-encoder
  or a prompted LLM classifier), calibrated per level;
- :mod:`~llmrec.synth.query_model`: the query model f(d, s) -> q (an LLM prompted with the level
  definitions, fine-tuned with LoRA through :mod:`~llmrec.llm.tuning`);
- :mod:`~llmrec.synth.stages`: Stage 1 (re-annotation) and Stage 2 (level alignment), the
  prompt-only baseline, and the per-round statistics;
- :mod:`~llmrec.synth.losses` and :mod:`~llmrec.synth.embedder`: label-weighted InfoNCE and
  bi-encoder training with sentence-transformers;
- :mod:`~llmrec.synth.metrics`: nDCG@10 with graded gains, AvgAP, level balance, agreement;
- :mod:`~llmrec.synth.pipeline`: the end-to-end experiment behind ``llmrec synth``.

Importing this package imports nothing heavy; torch, transformers, trl and peft are imported
inside the functions that use them.
"""

from llmrec.synth.levels import LEVELS, LEVEL_NAMES

__all__ = ["LEVELS", "LEVEL_NAMES"]
