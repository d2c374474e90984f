"""Slate models (a whole slate of items per decision). None is registered yet: the slate issue
adds the Bayesian GRU slate model here, as one file plus one line below."""

TASKS = ("slate",)
MODELS: tuple[tuple[str, str, str], ...] = ()
