"""Fine-tuning conversational agents, one folder per method: ``ecpo/`` (SGPT warm-up and ECPO,
expectation confirmation preference optimisation, with LoRA adapters).

Importing this package imports nothing heavy; trl, peft, transformers and torch are imported by
the functions that train (all of them through :mod:`llmrec.llm.tuning`).
"""
