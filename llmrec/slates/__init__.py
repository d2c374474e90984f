"""Slate recommendation: simulators, policies and the online loop around the slate family.

- :mod:`llmrec.slates.simulator`: a multinomial-logit click model over shown slates (a click on
  one item or no click), with user and item vectors either generated (known parameters, for
  recovery checks) or fitted to real MovieLens-1M ratings (a semi-synthetic study);
- :mod:`llmrec.slates.policies`: greedy, Thompson sampling and in-slate Thompson sampling on a
  :class:`~llmrec.ranking.models.slate.bayesian_gru.BayesianGRUSlate`;
- :mod:`llmrec.slates.loop`: fitting the model to a slate log, and the online loop (each round
  the policy shows slates, the simulator clicks, the model is updated on the grown log) with
  click rate, regret and diversity per policy; ``python -m llmrec.slates.loop`` runs it.
"""
