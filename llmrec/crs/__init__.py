"""Conversational recommendation: catalog search, the agent, the AILO user simulator, evaluation.

This stage owns everything a simulated recommendation dialogue needs:

- :mod:`~llmrec.crs.catalog`: the item catalog, title normalisation and dense search over item text
  (exact, or an IVF index for large catalogs); the agent's ``Search[query]`` returns its top 5;
- :mod:`~llmrec.crs.actions`: the strict parser of the agent's actions (``Search[...]``,
  ``Ask[...]``, ``Recommend[...]``, ``Response[...]``); an unparseable reply is a failed turn;
- :mod:`~llmrec.crs.agent`: the conversational recommendation agent (prompt + backend);
- :mod:`~llmrec.crs.tasks` and :mod:`~llmrec.crs.persona`: evaluation tasks with a hidden target
  and the simulated user's persona, built leakage-aware from MovieLens ratings or ReDial dialogues;
- :mod:`~llmrec.crs.simulator`: the AILO user simulator (policy, response, three raters);
- :mod:`~llmrec.crs.transcript`: the typed transcript records (turns, steps, searches, ratings)
  the engine writes and ECPO reads, and their JSONL store;
- :mod:`~llmrec.crs.engine`: runs many dialogues at once, batching each step's LLM calls across
  them, and appends every finished transcript to disk so a rerun resumes;
- :mod:`~llmrec.crs.metrics`: SR, Recall@5, rounds, rater averages and the pairwise win rate (WR)
  judged by an LLM in both orders;
- :mod:`~llmrec.crs.cli`: ``llmrec simulate`` and ``llmrec eval crs``.

Importing this package imports neither torch nor an LLM engine.
"""
