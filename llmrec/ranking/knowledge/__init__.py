"""LLM knowledge in CTR ranking: KAR's hybrid-expert adaptor (the baseline) and KSER.

- :mod:`~llmrec.ranking.knowledge.config`: ``AugmentConfig`` (``RankConfig.knowledge``);
- :mod:`~llmrec.ranking.knowledge.store`: knowledge vectors from ``llmrec knowledge embed``
  aligned to a feature set's user and item rows;
- :mod:`~llmrec.ranking.knowledge.kar`: the hybrid-expert adaptor;
- :mod:`~llmrec.ranking.knowledge.kser`: de-homogenisation, ESFNet, field gates, alignment,
  InfoNCE;
- :mod:`~llmrec.ranking.knowledge.augment`: wrapping any backbone (extra fields or residual
  injection) and the all-parameters / extractor-only strategies.

Nothing here is imported by ``import llmrec`` or ``llmrec.ranking``; the pipeline imports it when
``augment`` is not ``none``.
"""
