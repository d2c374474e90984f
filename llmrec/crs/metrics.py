"""Metrics of simulated dialogues: SR, Recall@5, rounds, rater averages, and pairwise WR.

All per-dialogue outcomes are recomputed from the transcript itself (the turns and the target's
title), so a transcript written by any version of the engine, or built by hand in a test, is
scored the same way:

- **SR** (success rate): the target's title appears in a valid agent turn: a ``Recommend`` title
  whose normalised title equals the target's, or a mention of a distinctive title in the text of
  an ``Ask`` / ``Response`` (see :func:`llmrec.crs.catalog.distinctive`). Failed turns do not count.
- **Recall@5**: the target is among the results of any ``Search`` the agent ran.
- **rounds**: agent turns per dialogue.
- **rater averages**: the mean of each rater over rated agent turns; recommendation ratings of 0
  (nothing recommended) and ratings of failed turns (``None``) are skipped.
- **WR**: for two agents run on the same tasks, an LLM judge compares the two dialogues of each
  task on each criterion, once in each order (A/B then B/A), answering A, B or C (tie);
  ``WR = (wins + 0.5 * ties) / total`` over both orders.
- **judge position bias**: the share of verdicts that pick the first-shown dialogue ("A"), over
  all verdicts and per order (agent A's dialogue shown first / agent B's shown first), and the
  share of ties ("C"). A judge that reads the dialogues picks "A" about as often as "B" once the
  ties are set aside; one that answers "A" whatever it is shown has a share of 1 in both orders
  and gives WR 0.5 for any two agents, so read WR only beside these shares.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from statistics import mean
from typing import Any, Iterable, Sequence

from llmrec.crs.catalog import distinctive, mentions, norm_title

log = logging.getLogger(__name__)

RATERS = ("recommendation", "strategy", "expression")
JUDGE_CRITERIA = {
    "flexibility": "adapting flexibly to what the user said",
    "coherence": "replying clearly, naturally and consistently",
    "guidance": "guiding the user toward a decision",
    "overall": "helping the user find a movie they want, overall",
}


def agent_turns(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in record["turns"] if t["role"] == "assistant"]


def turn_hits_target(turn: dict[str, Any], target_title: str) -> bool:
    """Whether a valid agent turn names the target (see SR in the module docstring)."""
    if not turn.get("ok"):
        return False
    key = norm_title(target_title)
    if turn.get("action") == "Recommend":
        return any(norm_title(t) == key for t in turn.get("titles") or [])
    return distinctive(key) and mentions(key, turn.get("argument") or turn.get("text") or "")


def search_hits_target(turn: dict[str, Any], target_id: str, target_title: str) -> bool:
    key = norm_title(target_title)
    for s in turn.get("searches") or []:
        if target_id in (s.get("result_ids") or []):
            return True
        if any(norm_title(t) == key for t in s.get("results") or []):
            return True
    return False


def outcome(record: dict[str, Any]) -> dict[str, Any]:
    """Per-dialogue outcome: success, hit_round, recall5, rounds, failed turns."""
    task = record["task"]
    turns = agent_turns(record)
    hit_round = next((t["round"] for t in turns if turn_hits_target(t, task["target_title"])),
                     None)
    recall = any(search_hits_target(t, task["target_id"], task["target_title"]) for t in turns)
    return {"success": hit_round is not None, "hit_round": hit_round, "recall5": recall,
            "rounds": len(turns), "failed_turns": sum(1 for t in turns if not t.get("ok"))}


def _rating(turn: dict[str, Any], rater: str) -> int | None:
    r = (turn.get("ratings") or {}).get(rater) or {}
    value = r.get("rating")
    if value is None or (rater == "recommendation" and value == 0):
        return None
    return int(value)


def _avg(values: Iterable[float]) -> float | None:
    vals = list(values)
    return round(mean(vals), 4) if vals else None


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The metrics of one run (see the module docstring)."""
    if not records:
        return {"n_tasks": 0}
    outs = [outcome(r) for r in records]
    turns = [t for r in records for t in agent_turns(r)]
    out: dict[str, Any] = {
        "n_tasks": len(records),
        "SR": round(sum(o["success"] for o in outs) / len(outs), 4),
        "Recall@5": round(sum(o["recall5"] for o in outs) / len(outs), 4),
        "avg_rounds": round(mean(o["rounds"] for o in outs), 4),
        "n_agent_turns": len(turns),
        "failed_turn_rate": round(sum(1 for t in turns if not t.get("ok")) / max(len(turns), 1),
                                  4),
    }
    for rater in RATERS:
        vals = [v for t in turns if (v := _rating(t, rater)) is not None]
        out[f"avg_{rater}"] = _avg(vals)
        out[f"n_rated_{rater}"] = len(vals)
    for name in ("flexibility", "coherence", "guidance"):
        vals = [d[name] for t in turns
                if (d := ((t.get("ratings") or {}).get("expression") or {}).get("deductions"))]
        out[f"avg_deduction_{name}"] = _avg(vals)
    out["actions"] = dict(Counter(t.get("action") or "failed" for t in turns))
    out["end_reasons"] = dict(Counter(r.get("end_reason") for r in records))
    users = [t for r in records for t in r["turns"] if t["role"] == "user"]
    out["policies"] = dict(Counter(t.get("policy") for t in users))
    out["leaks_masked"] = sum(1 for t in users if t.get("leak_masked"))
    by_activity: dict[str, list[bool]] = {}
    for r, o in zip(records, outs):
        by_activity.setdefault(r["task"]["persona"]["activity"], []).append(o["success"])
    out["SR_by_activity"] = {k: round(sum(v) / len(v), 4) for k, v in sorted(by_activity.items())}
    return out


# --------------------------------------------------------------------------- pairwise WR

@dataclass(frozen=True)
class Verdict:
    """One judge answer: ``a_first`` says whether agent A's dialogue was shown first; ``choice``
    is 'A' (the first shown was better), 'B' (the second) or 'C' (tie)."""

    task_id: str
    criterion: str
    a_first: bool
    choice: str

    def score_for_a(self) -> float:
        """1 win, 0.5 tie, 0 loss, from agent A's point of view."""
        if self.choice == "C":
            return 0.5
        first_won = self.choice == "A"
        return 1.0 if first_won == self.a_first else 0.0


def win_rates(verdicts: Sequence[Verdict]) -> dict[str, dict[str, float]]:
    """Per criterion: WR of agent A = (wins + 0.5 ties) / total, with wins/ties/losses counts."""
    out: dict[str, dict[str, float]] = {}
    for crit in dict.fromkeys(v.criterion for v in verdicts):
        vs = [v for v in verdicts if v.criterion == crit]
        scores = [v.score_for_a() for v in vs]
        out[crit] = {"WR": round(sum(scores) / len(scores), 4),
                     "wins": scores.count(1.0), "ties": scores.count(0.5),
                     "losses": scores.count(0.0), "total": len(scores)}
    return out


def position_bias(verdicts: Sequence[Verdict]) -> dict[str, float | int | None]:
    """How often the judge picks the first-shown dialogue ("A") and how often it ties ("C").

    ``share_first``: the share of "A" over all verdicts; ``share_first_a_first`` /
    ``share_first_b_first``: the same among the verdicts where agent A's / agent B's dialogue was
    shown first; ``share_second`` ("B") and ``share_tie`` ("C") over all verdicts. A share over no
    verdicts is None.
    """
    def share(vs, choice):
        return round(sum(v.choice == choice for v in vs) / len(vs), 4) if vs else None

    a_first = [v for v in verdicts if v.a_first]
    b_first = [v for v in verdicts if not v.a_first]
    return {"share_first": share(verdicts, "A"), "share_first_a_first": share(a_first, "A"),
            "share_first_b_first": share(b_first, "A"), "share_second": share(verdicts, "B"),
            "share_tie": share(verdicts, "C"), "total": len(verdicts)}


def _visible(record: dict[str, Any], clip: int) -> list[dict[str, str]]:
    out = []
    for t in record["turns"]:
        text = " ".join(str(t.get("text") or "").split())
        out.append({"role": t["role"], "text": text if len(text) <= clip else text[:clip] + "..."})
    return out


def judge(backend, records_a: Sequence[dict[str, Any]], records_b: Sequence[dict[str, Any]], *,
          prompt: str = "judge", criteria: Sequence[str] = tuple(JUDGE_CRITERIA),
          mode: str = "auto", clip: int = 300) -> tuple[list[Verdict], dict[str, Any]]:
    """Judge agent A's against agent B's transcripts on their shared tasks, in both orders.

    All prompts go to the backend in one batched decision call.
    """
    from llmrec.crs.decide import DecisionStats, choose
    from llmrec.crs.prompts import load_prompt

    tmpl = load_prompt(prompt, required=("compare",))
    by_b = {r["task_id"]: r for r in records_b}
    shared = [r for r in records_a if r["task_id"] in by_b]
    if not shared:
        raise ValueError("the two runs share no task id: WR compares agents on the same tasks")
    bad = [c for c in criteria if c not in JUDGE_CRITERIA]
    if bad:
        raise ValueError(f"unknown judge criteria {bad}; choose from {', '.join(JUDGE_CRITERIA)}")
    meta, convs = [], []
    for ra in shared:
        rb = by_b[ra["task_id"]]
        va, vb = _visible(ra, clip), _visible(rb, clip)
        for crit in criteria:
            for a_first in (True, False):
                first, second = (va, vb) if a_first else (vb, va)
                convs.append(tmpl.messages("compare", {"a": first, "b": second, "criterion": crit,
                                                       "criterion_text": JUDGE_CRITERIA[crit]}))
                meta.append((ra["task_id"], crit, a_first))
    stats = DecisionStats()
    picks = choose(backend, convs, [["A", "B", "C"]] * len(convs), mode=mode, stats=stats)  # type: ignore[arg-type]
    verdicts = [Verdict(t, c, f, "ABC"[p]) for (t, c, f), p in zip(meta, picks)]
    info = {"n_shared_tasks": len(shared), "judge_prompt_hash": tmpl.hash,
            "decisions": stats.as_dict()}
    return verdicts, info
