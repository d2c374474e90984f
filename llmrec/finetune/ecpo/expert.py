"""The expert agent of SGPT: a stronger model or endpoint, or a scripted expert.

SGPT (the warm-up of ECPO) needs trajectories of an agent that already acts well. When a stronger
model is at hand, the expert is simply an LLM agent with another backend (``expert.kind: llm``).
When none is, the scripted expert plays the agent from the dialogue alone:

- it sees exactly what an LLM agent sees, as data: the user's messages, its own earlier actions,
  this turn's searches and their result titles, the search budget. It never sees the task, the
  persona or the hidden target;
- on a vague opening (fewer than ``ask_below_words`` content words) it asks what the user is in
  the mood for;
- otherwise it searches the catalog with the user's words (newest message first) and recommends
  the best ``n_recommend`` result titles it has not recommended before; when a search brings
  nothing new it searches again with the user's last message alone, then asks for more detail.

Every action it writes is a valid action of the strict grammar, so each of its steps is a clean
SFT example for the student agent (the engine stores the student's prompt with each step).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from llmrec.artifacts import fingerprint
from llmrec.config import option
from llmrec.crs.actions import parse_action
from llmrec.llm.config import LLMConfig

_WORD = re.compile(r"[A-Za-z0-9'][A-Za-z0-9'\-]*")
# words that carry no preference; a message made of these (and short words) is "vague"
STOPWORDS = frozenset("""
a about after again all also am an and any anything are as at be been but by can could do does
doing for from get give good great have hello hey hi how i i'd i'll i'm im if in into is it it's
just know like looking lot maybe me mind mood more movie movies my need new nice of on one or
please recommend recommendation recommendations see should show similar so some something
suggest suggestion suggestions tell thank thanks that the them then there these thing think this
to tonight up want was watch watching we well what when which with would yes you your
""".split())

QUESTIONS = (
    "What kind of movie are you in the mood for: a genre, a period, or a movie you loved?",
    "Could you tell me one thing the movie must have: a theme, a setting, a mood or an actor?",
    "What should be different from what I suggested: the genre, the era or the tone?",
)


@dataclass
class ExpertConfig:
    """The expert agent whose successful dialogues become SGPT's training examples."""

    kind: Literal["scripted", "llm"] = option(
        "scripted", help="scripted: the rule-based expert (search with the user's words, "
                         "recommend unseen results); llm: an agent backed by `llm`")
    llm: LLMConfig | None = option(None, help="kind=llm: the stronger model or endpoint")
    n_recommend: int = option(3, help="scripted: titles per recommendation")
    ask_below_words: int = option(4, help="scripted: ask first when the opening has fewer "
                                          "content words than this")
    query_words: int = option(24, help="scripted: content words kept in a search query")

    def __post_init__(self) -> None:
        if self.kind == "llm" and self.llm is None:
            raise ValueError("expert.kind=llm needs expert.llm (the expert's backend and model)")
        if self.n_recommend < 1 or self.query_words < 1:
            raise ValueError("n_recommend and query_words must be >= 1")


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text) if w.lower() not in STOPWORDS and len(w) > 1]


class ScriptedExpert:
    """A policy agent for the engine (it has ``act``): one action per dialogue view."""

    name = "scripted"

    def __init__(self, cfg: ExpertConfig, max_titles: int = 5) -> None:
        self.cfg = cfg
        self.n = min(cfg.n_recommend, max_titles)

    def identity(self) -> dict[str, str]:
        return {"model": "scripted-expert", "revision": fingerprint(self.cfg)[:12]}

    def close(self) -> None:
        pass

    def act(self, views: Sequence[dict[str, Any]]) -> list[str]:
        return [self.step(v) for v in views]

    def step(self, view: dict[str, Any]) -> str:
        history = view["history"]
        users = [h["text"] for h in history if h["role"] == "user"]
        mine = [h["text"] for h in history if h["role"] != "user"]
        searches = view["searches"]
        asked = sum(1 for a in mine if a.startswith("Ask["))
        if not searches:
            if not mine and len(content_words(users[-1] if users else "")) < \
                    self.cfg.ask_below_words:
                return self._ask(asked)
            query = self._query(users)
            if query:
                return f"Search[{query}]"
            return self._ask(asked)
        seen = set()
        for a in mine:
            p = parse_action(a)
            if p.ok and p.action.kind == "Recommend":
                seen.update(t.lower() for t in p.action.titles)
        fresh: list[str] = []
        for s in searches:
            for title in s["results"]:
                if title.lower() not in seen and title not in fresh and ";" not in title \
                        and "[" not in title and "]" not in title:
                    fresh.append(title)
        if fresh:
            return "Recommend[" + "; ".join(fresh[:self.n]) + "]"
        if view["searches_left"] > 0 and users:
            last = " ".join(content_words(users[-1])[:self.cfg.query_words])
            if last and all(last != s["query"] for s in searches):
                return f"Search[{last}]"
        return self._ask(asked)

    def _query(self, users: list[str]) -> str:
        words: list[str] = []
        for text in reversed(users):  # newest first: the latest feedback matters most
            for w in content_words(text):
                if w.lower() not in {x.lower() for x in words}:
                    words.append(w)
        return " ".join(words[:self.cfg.query_words])

    @staticmethod
    def _ask(asked: int) -> str:
        return f"Ask[{QUESTIONS[min(asked, len(QUESTIONS) - 1)]}]"
