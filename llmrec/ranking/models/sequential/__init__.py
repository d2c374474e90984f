"""Sequential (next-item) models: ``forward(batch)`` returns ``{"hidden": [B, H], "items": [R, H]}``,
the sequence representation and one vector per item-table row; a score is their dot product, so
the next-item task ranks the whole catalogue in one matmul (see
:class:`~llmrec.ranking.models.sequential.base.SequentialModel`)."""

TASKS = ("next_item",)
MODELS = (
    ("gru4rec", "llmrec.ranking.models.sequential.gru4rec", "GRU4Rec"),
    ("sasrec", "llmrec.ranking.models.sequential.sasrec", "SASRec"),
    ("fair", "llmrec.ranking.models.sequential.fair", "FAIR"),
    ("tiger", "llmrec.ranking.models.sequential.tiger", "TIGER"),
)
