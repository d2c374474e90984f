"""Slate models: a whole slate of items per decision, learnt from the clicks on shown slates.

A slate model's constructor takes a :class:`~llmrec.ranking.models.slate.bayesian_gru.SlateSpec`
(item rows with 0 = padding and 1 = no click, users, the longest slate, item groups) and its
hyper-parameters; ``forward(batch)`` over ``user [B]``, ``slate [B, T, S]``, ``click [B, T]``
returns the per-step option ``logits`` (option 0 = no click), their ``mask``, the ``target``
option and the observed ``step_mask``; ``loss(batch, n_data)`` is its training objective. The
policies and the online loop are in :mod:`llmrec.slates`.
"""

TASKS = ("slate",)
MODELS: tuple[tuple[str, str, str], ...] = (
    ("bayesian_gru_slate", "llmrec.ranking.models.slate.bayesian_gru", "BayesianGRUSlate"),
)
