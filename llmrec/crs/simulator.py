"""The AILO user simulator: opening, policy choice, response, and the three raters.

The simulator plays the task's user (see :mod:`llmrec.crs.tasks` for the persona and the hidden
target). After each agent turn it does, in order:

1. **Raters** (expectation confirmation) of that agent turn, each a ``{rating, reason}``:

   - *recommendation* 0..5, **grounded**: 5 when a recommended title is the target (normalised
     title identity); otherwise the best recommended item's similarity to the target (cosine of
     the catalog vectors blended with genre overlap) mapped to 1..4 by ``similarity_thresholds``;
     0 when nothing was recommended (skipped in averages). The reason is written from the same
     numbers, so it can never contradict the rating.
   - *strategy* 0..5: was asking / recommending / replying sensible at this point; one digit
     chosen by option scoring (:mod:`llmrec.crs.decide`), then a one-sentence reason generated.
   - *expression* = 5 - deductions for flexibility (0..2), coherence (0..2) and user guidance
     (0..1), each deduction chosen by option scoring; then a one-sentence reason.

   A failed agent turn (unparseable reply) gets no strategy or expression rating (``None``, with
   the parse error as the reason) and recommendation 0.
2. **Policy**: ``respond_to_clarification`` or ``provide_feedback_on_recommendation`` (whichever
   fits the agent's action) or ``end_conversation``, chosen by option scoring with the options in
   a seeded random order, so a small model's preference for the first letter cannot decide the
   outcome. Ending is not offered before ``min_rounds_before_end``; a turn that recommends or
   names the target is accepted (the user thanks and ends) without asking the model.
3. **Response** in the persona's language, disclosing one more feature of the target per round.
   If the response names the target anyway, the title is masked ("that movie") and the turn is
   flagged ``leak_masked``.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from typing import Any

from llmrec.config import option
from llmrec.crs.catalog import Catalog, distinctive, mentions, norm_title
from llmrec.crs.decide import DecisionMode
from llmrec.crs.prompts import Prompt, load_prompt
from llmrec.crs.tasks import Task
from llmrec.llm.config import LLMConfig

log = logging.getLogger(__name__)

OPENING = "ask_for_recommendation"
CLARIFY = "respond_to_clarification"
FEEDBACK = "provide_feedback_on_recommendation"
END = "end_conversation"
POLICIES = (CLARIFY, FEEDBACK, END)
POLICY_TEXT = {
    CLARIFY: "Answer the assistant and say more about what you want",
    FEEDBACK: "Tell the assistant what you think of the recommended movies",
    END: "End the conversation",
}
LETTERS = ("A", "B", "C")
DIGITS = ("0", "1", "2", "3", "4", "5")
DEDUCTIONS = {"flexibility": 2, "coherence": 2, "guidance": 1}


@dataclass
class SimulatorConfig:
    """The simulated user and its raters."""

    llm: LLMConfig = option(default_factory=LLMConfig, help="the simulator's backend and model")
    prompt: str = option("simulator", help="persona / policy / response template (prompts/crs/)")
    rater_prompt: str = option("rater", help="raters' template (prompts/crs/)")
    max_new_tokens: int = option(48, help="tokens per user message or rater reason (overrides "
                                          "llm.max_new_tokens)")
    decisions: DecisionMode = option(
        "auto", help="how policy and ratings are chosen: auto (single-token scoring on hf, "
                     "likelihood scoring elsewhere), score (backend.choose) or guided (JSON "
                     "schema guided decoding, falling back to score)")
    min_rounds_before_end: int = option(
        2, help="the user may end the conversation only after this many agent turns (unless the "
                "target was recommended)")
    history_turns: int = option(6, help="visible turns shown to the simulator and raters")
    rate: bool = option(True, help="run the strategy and expression raters (off: faster runs "
                                   "that still record the grounded recommendation rating)")
    similarity_thresholds: list[float] = option(
        [0.8, 0.65, 0.5], help="recommendation rating 4 / 3 / 2 when the best recommended item's "
                               "similarity to the target is at least these values, else 1")
    genre_weight: float = option(
        0.4, help="similarity = (1 - w) * cosine of item vectors + w * genre overlap (Jaccard)")
    mask_leaks: bool = option(True, help="mask the target's title if a user message names it")

    def __post_init__(self) -> None:
        t = self.similarity_thresholds
        if len(t) != 3 or not t[0] >= t[1] >= t[2]:
            raise ValueError("similarity_thresholds must be three decreasing numbers (for 4, 3, 2)")
        if not 0 <= self.genre_weight <= 1:
            raise ValueError("genre_weight must be in [0, 1]")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")


def _visible(turns: list[dict[str, Any]], n: int) -> list[dict[str, str]]:
    out = [{"role": t["role"], "text": t["text"]} for t in turns]
    return out[-n:] if n else out


class Simulator:
    """Builds the simulator's and raters' prompts; computes the grounded recommendation rating."""

    def __init__(self, cfg: SimulatorConfig, catalog: Catalog) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.prompt: Prompt = load_prompt(cfg.prompt, required=("system", "opening", "policy",
                                                                "respond"))
        self.rater: Prompt = load_prompt(cfg.rater_prompt, required=(
            "strategy", "flexibility", "coherence", "guidance", "reason"))

    def sampling(self):
        return self.cfg.llm.sampling(max_new_tokens=self.cfg.max_new_tokens)

    # -- persona context -------------------------------------------------------------------------
    @staticmethod
    def hints(task: Task, round_: int) -> list[str]:
        """Target features known to the user so far: one at the opening, one more per round."""
        return task.target_hints[:round_ + 1]

    def _ctx(self, task: Task, turns, round_: int, max_rounds: int, **extra) -> dict[str, Any]:
        return {"persona": task.persona, "hints": self.hints(task, round_),
                "history": _visible(turns, self.cfg.history_turns), "round": round_,
                "max_rounds": max_rounds, **extra}

    # -- policy ----------------------------------------------------------------------------------
    def allowed(self, agent_turn: dict[str, Any], round_: int) -> list[str]:
        cont = FEEDBACK if agent_turn.get("ok") and agent_turn.get("action") == "Recommend" \
            else CLARIFY
        return [cont] if round_ < self.cfg.min_rounds_before_end else [cont, END]

    def policy_prompt(self, task: Task, turns, round_: int, max_rounds: int, allowed: list[str],
                      seed: int) -> tuple[list[dict[str, str]], list[str]]:
        """The policy question with ``allowed`` in a seeded random order; returns the prompt and
        the policies in letter order."""
        order = list(allowed)
        random.Random(seed).shuffle(order)
        options = [{"letter": LETTERS[i], "text": POLICY_TEXT[p]} for i, p in enumerate(order)]
        msgs = self.prompt.messages("policy", self._ctx(task, turns, round_, max_rounds,
                                                        options=options))
        return msgs, order

    # -- responses -------------------------------------------------------------------------------
    def _system(self, task: Task, turns, round_: int, max_rounds: int) -> list[dict[str, str]]:
        text = self.prompt.render("system", self._ctx(task, turns, round_, max_rounds))
        return [{"role": "system", "content": text}] if text else []

    def _greeting(self, task: Task, max_rounds: int) -> str:
        if not self.prompt.has("greeting"):
            return ""
        return self.prompt.render("greeting", self._ctx(task, [], 0, max_rounds))

    def opening_prompt(self, task: Task, max_rounds: int) -> list[dict[str, str]]:
        note = self.prompt.render("opening", self._ctx(task, [], 0, max_rounds))
        greeting = self._greeting(task, max_rounds)
        return self._system(task, [], 0, max_rounds) + [
            {"role": "user", "content": f"{greeting}\n\n{note}" if greeting else note}]

    def respond_prompt(self, task: Task, turns, round_: int, max_rounds: int, policy: str,
                       accepted: bool) -> list[dict[str, str]]:
        """The user's next message: a role-reversed chat (the simulated user is the assistant,
        the agent's messages are user messages) ending with this turn's instruction."""
        last = turns[-1] if turns else {}
        recommended = list(last.get("titles") or []) if last.get("ok") else []
        note = self.prompt.render("respond", self._ctx(
            task, turns, round_, max_rounds, policy=policy, accepted=accepted,
            recommended=recommended, agent_text=last.get("text", "")))
        msgs = self._system(task, turns, round_, max_rounds)
        shown = turns[-self.cfg.history_turns:] if self.cfg.history_turns else turns
        greeting = self._greeting(task, max_rounds)
        if greeting and shown and shown[0]["role"] == "user":
            msgs.append({"role": "user", "content": greeting})
        for t in shown:
            msgs.append({"role": "assistant" if t["role"] == "user" else "user",
                         "content": t["text"] or "..."})
        msgs[-1] = {**msgs[-1], "content": f"{msgs[-1]['content']}\n\n{note}"}
        return msgs

    def mask_leak(self, task: Task, text: str) -> tuple[str, bool]:
        """Replace the target's title in a user message (distinctive titles only)."""
        key = norm_title(task.target_title)
        if not self.cfg.mask_leaks or not distinctive(key) or not mentions(key, text):
            return text, False
        words = [re.escape(w) for w in key.split()]
        pattern = re.compile(r"(?:\bthe\W+)?\b" + r"\W+".join(words) + r"\b(?:\s*\(\d{4}\))?",
                             re.I)
        masked, n = pattern.subn("that movie", text)
        # accents or symbols the regex cannot see: fall back to hiding the whole message
        return (masked, True) if n else ("I have something particular in mind.", True)

    # -- raters ----------------------------------------------------------------------------------
    def rating_prompts(self, task: Task, turns, round_: int) -> dict[str, list[dict[str, str]]]:
        """One prompt per scored criterion for the last (valid) agent turn."""
        agent_turn = turns[-1]
        ctx = {"persona": task.persona, "history": _visible(turns[:-1], self.cfg.history_turns),
               "agent_text": agent_turn["text"], "action": agent_turn["action"], "round": round_}
        return {c: self.rater.messages(c, ctx)
                for c in ("strategy", "flexibility", "coherence", "guidance")}

    def reason_prompt(self, task: Task, turns, round_: int, criterion: str, rating: int,
                      details: str = "") -> list[dict[str, str]]:
        agent_turn = turns[-1]
        ctx = {"persona": task.persona, "history": _visible(turns[:-1], self.cfg.history_turns),
               "agent_text": agent_turn["text"], "action": agent_turn["action"], "round": round_,
               "criterion": criterion, "rating": rating, "details": details}
        return self.rater.messages("reason", ctx)

    @staticmethod
    def criterion_options(criterion: str) -> list[str]:
        if criterion == "strategy":
            return list(DIGITS)
        return list(DIGITS[:DEDUCTIONS[criterion] + 1])

    def similarity(self, target: int, rec: int | None, title_vec=None) -> tuple[float, float, float]:
        """(blended similarity, cosine, genre overlap) of a recommended item to the target."""
        cat = self.catalog
        if rec is None:
            cos = float(title_vec @ cat.vectors[target]) if title_vec is not None else 0.0
            return cos, cos, 0.0  # an unknown title has no genres: cosine alone
        cos = cat.cosine(target, rec)
        genre = cat.genre_overlap(target, rec)
        w = self.cfg.genre_weight if cat.items[target].genres and cat.items[rec].genres else 0.0
        return (1 - w) * cos + w * genre, cos, genre

    def rate_recommendation(self, target: int, titles: list[str], resolved: list[int | None],
                            title_vecs: dict[str, Any] | None = None) -> dict[str, Any]:
        """The grounded recommendation rating of one agent turn."""
        cat = self.catalog
        if not titles:
            return {"rating": 0, "reason": "nothing was recommended in this turn"}
        tkey = norm_title(cat.items[target].title)
        for title, idx in zip(titles, resolved):
            if norm_title(title) == tkey or (idx is not None and cat.same_title(idx, target)):
                return {"rating": 5, "reason": f"'{title}' is the movie the user was looking for",
                        "best": title, "similarity": 1.0}
        best = None
        for title, idx in zip(titles, resolved):
            sim, cos, genre = self.similarity(target, idx, (title_vecs or {}).get(title))
            if best is None or sim > best[0]:
                best = (sim, cos, genre, title, idx)
        sim, cos, genre, title, idx = best  # type: ignore[misc]
        t4, t3, t2 = self.cfg.similarity_thresholds
        rating = 4 if sim >= t4 else 3 if sim >= t3 else 2 if sim >= t2 else 1
        if idx is None:
            why = (f"'{title}' is not in the catalog; its title is {cos:.2f} similar to what "
                   f"the user wants")
        else:
            shared = sorted({g.lower() for g in cat.items[idx].genres}
                            & {g.lower() for g in cat.items[target].genres})
            why = (f"closest suggestion '{cat.items[idx].title}' is not the wanted movie; "
                   f"similarity {sim:.2f} (text {cos:.2f}, "
                   + (f"shared genres: {', '.join(shared)})" if shared else "no shared genre)"))
        return {"rating": rating, "reason": why, "best": title, "similarity": round(sim, 4)}
