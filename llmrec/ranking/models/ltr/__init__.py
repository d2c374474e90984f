"""Learning-to-rank models: one score per (list, item) sample, ``{"logit": [B]}``; the listwise
task groups the samples into lists."""

TASKS = ("listwise",)
MODELS = (
    ("linear_ranker", "llmrec.ranking.models.ltr.linear", "LinearRanker"),
    ("mlp_ranker", "llmrec.ranking.models.ltr.mlp", "MLPRanker"),
)
