"""CTR backbones, one per file. Each takes a :class:`~llmrec.ranking.features.FeatureSpec` first
and its hyper-parameters as keyword arguments, and maps a batch to one logit per sample.
The explicit list lives in :mod:`llmrec.ranking.registry`."""
