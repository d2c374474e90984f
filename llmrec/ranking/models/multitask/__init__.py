"""Multi-task models: one tower per task on shared layers; ``forward(batch)`` returns
``{"logits": {label: [B]}, "logit": <first task's logits>}``."""

TASKS = ("multitask",)
MODELS = (
    ("shared_bottom", "llmrec.ranking.models.multitask.shared_bottom", "SharedBottom"),
)
