"""Multi-task models: one tower per task on shared layers; ``forward(batch)`` returns
``{"logits": {label: [B]}, "logit": <first task's logits>}``."""

TASKS = ("multitask",)
MODELS = (
    ("shared_bottom", "llmrec.ranking.models.multitask.shared_bottom", "SharedBottom"),
    ("mmoe", "llmrec.ranking.models.multitask.mmoe", "MMoE"),
    ("ple", "llmrec.ranking.models.multitask.ple", "PLE"),
    ("esmm", "llmrec.ranking.models.multitask.esmm", "ESMM"),
    ("ektm", "llmrec.ranking.models.multitask.ektm", "EKTM"),
)
