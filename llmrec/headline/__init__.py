"""Personalised headline generation from denoised click histories (PHG-DIF, as we implement it).

- :mod:`.filters`: the dual-stage click filter (dwell, bursts) and the optional news-side
  centroid filter, pure functions over a history table; the MovieLens variant (low ratings,
  rating bursts) the knowledge layer can apply before a user prompt;
- :mod:`.profiles`: short-term and decayed long-term interest profiles, rendered into one prompt;
- :mod:`.rouge`: multi-reference ROUGE-1/2/L F1; :mod:`.factual`: entity/number consistency and
  the yes/no LLM check;
- :mod:`.generate`: prompt-only generation through any LLM backend and the eval grid;
- :mod:`.cli`: ``llmrec headline stats|eval``.

Data: :mod:`llmrec.data.pens`. See docs/headline.md for what runs without PENS ``news.tsv``.
"""
