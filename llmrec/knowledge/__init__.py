"""Knowledge about items and users written by an LLM, cached, and embedded.

- :mod:`~llmrec.knowledge.templates`: the prompt templates under ``prompts/knowledge`` (KAR's
  factorisation, one output field per factor) and their content hashes;
- :mod:`~llmrec.knowledge.generate`: ``llmrec knowledge generate`` (answer, parse, repair);
- :mod:`~llmrec.knowledge.parse`: lenient parsing of a reply into fields;
- :mod:`~llmrec.knowledge.cache`: the content-addressed, resumable, multi-writer Parquet cache;
- :mod:`~llmrec.knowledge.embed`: ``llmrec knowledge embed`` (sentence chunks -> float16 vectors);
- :mod:`~llmrec.knowledge.cli`: the ``llmrec knowledge`` command group.
"""
