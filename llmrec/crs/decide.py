"""Structured decisions (policy, ratings, judge verdicts) that a small model cannot derail.

Every decision of the simulator and the judge is a choice among a few allowed answers. It is
taken by scoring those answers, never by parsing free text:

- ``score``: :meth:`LLMBackend.choose` (the log-likelihood of each whole answer);
- ``guided``: ask for ``{"answer": ...}`` under a JSON schema whose ``enum`` is the allowed
  answers (guided decoding on vllm / OpenAI-compatible servers); a reply that still does not
  parse falls back to ``score`` and is counted;
- ``auto`` (default): on the transformers backend, when every answer is a single token (the
  prompts use digits and letters for this reason), one forward pass per prompt reads the
  next-token log-probabilities of all answers at once. ``LLMBackend.score_options`` runs one full
  forward pass per (prompt, answer) pair, which for a 6-way rating is six times the work; this
  shortcut is local to this stage until the backend offers it. Other backends use ``score``.

The single-token shortcut ranks answers by their first (and only) token; it does not add the
end-of-turn token that ``score_options`` includes, which cannot change the order among
single-token answers that all end right there in the prompt's format.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Literal, Sequence

log = logging.getLogger(__name__)

DecisionMode = Literal["auto", "score", "guided"]


@dataclass
class DecisionStats:
    """Counts of how decisions were taken (saved with the run)."""

    fast: int = 0
    scored: int = 0
    guided: int = 0
    guided_fallback: int = 0
    calls: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"fast": self.fast, "scored": self.scored, "guided": self.guided,
                "guided_fallback": self.guided_fallback, "calls": self.calls}


def _single_token_ids(tok, options: Sequence[Sequence[str]]) -> list[list[int]] | None:
    out = []
    cache: dict[str, list[int]] = {}
    for opts in options:
        row = []
        for o in opts:
            ids = cache.get(o)
            if ids is None:
                ids = cache[o] = tok(o, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                return None
            row.append(ids[0])
        out.append(row)
    return out


def first_token_scores(backend, conversations, options) -> list[list[float]] | None:
    """Next-token log-probabilities of single-token answers (hf backend), or None if the
    backend or the answers do not allow the shortcut."""
    if getattr(backend, "name", "") != "hf" or not hasattr(backend, "model"):
        return None
    token_ids = _single_token_ids(backend.tok, options)
    if token_ids is None:
        return None
    import torch

    encoded = [backend.encode(c) for c in conversations]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    scores: list[list[float]] = [[] for _ in encoded]
    pad = backend.tok.pad_token_id
    bs = max(1, int(backend.cfg.batch_size))
    for start in range(0, len(order), bs):
        idx = order[start:start + bs]
        length = max(len(encoded[i]) for i in idx)
        ids = torch.full((len(idx), length), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), length), dtype=torch.long)
        for r, i in enumerate(idx):
            seq = encoded[i]
            ids[r, length - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[r, length - len(seq):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            out = backend.model(input_ids=ids.to(backend.device),
                                attention_mask=mask.to(backend.device),
                                position_ids=pos.to(backend.device), logits_to_keep=1)
        logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1).cpu()
        for r, i in enumerate(idx):
            scores[i] = [float(logp[r, t]) for t in token_ids[i]]
    return scores


def _argmax(scores: Sequence[float]) -> int:
    return max(range(len(scores)), key=lambda j: (scores[j], -j))


def _guided_messages(conv, opts):
    conv = [dict(m) for m in conv]
    note = ('\nReply with JSON only: {"answer": X} where X is one of '
            + ", ".join(json.dumps(o) for o in opts) + ".")
    conv[-1]["content"] = conv[-1]["content"] + note
    return conv


def choose(backend, conversations: Sequence[list[dict[str, str]]],
           options: Sequence[Sequence[str]], mode: DecisionMode = "auto",
           stats: DecisionStats | None = None) -> list[int]:
    """Index of the chosen answer for each conversation (one batched call)."""
    if not conversations:
        return []
    if len(options) != len(conversations):
        raise ValueError(f"got {len(options)} option lists for {len(conversations)} prompts")
    stats = stats if stats is not None else DecisionStats()
    stats.calls += 1
    if mode == "auto":
        fast = first_token_scores(backend, conversations, options)
        if fast is not None:
            stats.fast += len(conversations)
            return [_argmax(s) for s in fast]
        mode = "score"
    if mode == "guided":
        schemas_ok: list[int | None] = [None] * len(conversations)
        # one schema per distinct option list, so each group is one engine call
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, opts in enumerate(options):
            groups.setdefault(tuple(opts), []).append(i)
        for opts, idx in groups.items():
            schema = {"type": "object", "properties": {"answer": {"type": "string",
                                                                  "enum": list(opts)}},
                      "required": ["answer"], "additionalProperties": False}
            from llmrec.llm.base import SamplingParams

            gens = backend.generate([_guided_messages(conversations[i], opts) for i in idx],
                                    SamplingParams(temperature=0.0, max_new_tokens=24,
                                                   repetition_penalty=1.0),
                                    json_schema=schema)
            for i, g in zip(idx, gens):
                try:
                    ans = json.loads(g.text)["answer"]
                    schemas_ok[i] = list(opts).index(ans)
                except (ValueError, KeyError, TypeError):
                    schemas_ok[i] = None
        missing = [i for i, v in enumerate(schemas_ok) if v is None]
        stats.guided += len(conversations) - len(missing)
        if missing:
            stats.guided_fallback += len(missing)
            picked = backend.choose([conversations[i] for i in missing],
                                    [list(options[i]) for i in missing])
            for i, p in zip(missing, picked):
                schemas_ok[i] = p
        return [int(v) for v in schemas_ok]  # type: ignore[arg-type]
    stats.scored += len(conversations)
    return list(backend.choose(list(conversations), [list(o) for o in options]))
