"""The model zoo, one folder per family, each listing its models explicitly.

``ctr/``         click-through-rate models over user / item / context / behaviour fields
                 (task: binary, or multitask / regression heads on the same fields)
``sequential/``  next-item models over the behaviour sequence, scored against the whole catalogue
``multitask/``   several named labels from shared layers (towers per task)
``ltr/``         rankers of grouped lists (queries, sessions)
``slate/``       slate models: the clicks on shown slates (see :mod:`llmrec.slates`)

A model is one file plus one line in its family's ``MODELS``. Its constructor takes the
:class:`~llmrec.ranking.features.FeatureSpec` first and its hyper-parameters as keyword arguments;
``forward(batch)`` returns a dict (see :mod:`llmrec.ranking.tasks` for the keys each task reads).
:mod:`llmrec.ranking.registry` collects the families.
"""
