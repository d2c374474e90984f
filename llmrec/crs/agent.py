"""The conversational recommendation agent: its config, its prompts and one step of its turn.

An agent turn is a short loop the engine drives for many dialogues at once: the agent writes one
action; ``Search[query]`` is answered with the catalog's top-k titles inside the same turn and the
agent is asked again, up to ``max_searches`` times; the first user-visible action (``Ask``,
``Recommend``, ``Response``) ends the turn. A reply that does not parse, or a search beyond the
limit, ends the turn as a failed turn (recorded with its reason, never repaired).

The agent is its backend (``llm``: hf / vllm / openai, any model) plus its prompt template
(``prompts/crs/agent.jinja`` or a path), so a stronger model or a fine-tuned adapter is a config
change. The prompt is a chat: instructions, few-shot example turns, then the dialogue with the
agent's own earlier actions as assistant messages, which small models imitate far more reliably
than a format described only in words.

Two decodings:

- ``free`` (default, the ActCRS agent): the model writes ``[thought] Kind[argument]`` and the
  reply is parsed strictly;
- ``structured``: the action kind is chosen by option scoring among the kinds allowed at this
  point (no Search once the search budget is spent), then the model writes the argument, and the
  action is parsed by the same strict parser (an empty argument or a stray bracket still fails).
  It takes two calls per step instead of one, and lets a model too small to follow the format
  still act. The argument step may be answered in either of two forms (:meth:`Agent.compose`):
  the bare argument, which becomes ``Kind[argument]``, or the chosen action written out in full,
  ``Kind[argument]``, which is what an instruct model that follows the few-shot examples writes.
  A reply that writes an action is never wrapped a second time (that made ``Ask[Ask[...]]`` a
  failed turn for every such model), and an action of another kind than the chosen one fails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from llmrec.config import option
from llmrec.crs.actions import ACTION_START, ACTIONS, Parse, parse_action
from llmrec.crs.decide import DecisionMode
from llmrec.crs.prompts import Prompt, load_prompt
from llmrec.llm.config import LLMConfig

log = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    """The agent under evaluation."""

    llm: LLMConfig = option(default_factory=LLMConfig, help="the agent's backend and model")
    prompt: str = option("agent", help="prompt template: a name under prompts/crs/ or a file")
    label: str = option("base", help="name of this agent in results (base, sgpt, ecpo, ...)")
    max_new_tokens: int = option(64, help="tokens per agent step (overrides llm.max_new_tokens)")
    max_searches: int = option(2, help="Search steps allowed per turn before a visible action")
    max_titles: int = option(5, help="most titles one Recommend[...] may carry")
    history_turns: int = option(12, help="visible turns of the dialogue shown in the prompt")
    decoding: Literal["free", "structured"] = option(
        "free", help="free: the model writes the whole action; structured: the action kind is "
                     "chosen by option scoring, the model writes only its argument")
    decisions: DecisionMode = option("auto", help="structured decoding: how the action kind is "
                                                  "chosen (see simulator.decisions)")

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.max_searches < 0:
            raise ValueError("max_searches must be >= 0")
        if self.max_titles < 1:
            raise ValueError("max_titles must be >= 1")


KIND_TEXT = {
    "Search": "Search the movie catalog",
    "Ask": "Ask the user a question",
    "Recommend": "Recommend movies from the search results",
    "Response": "Reply to the user",
}
LETTERS = "ABCD"


class Agent:
    """Builds the agent's prompts and parses its replies; the engine batches the calls."""

    def __init__(self, cfg: AgentConfig, top_k: int = 5) -> None:
        self.cfg = cfg
        self.top_k = top_k
        required = ("system", "results") + (("choose", "argument")
                                             if cfg.decoding == "structured" else ())
        self.prompt: Prompt = load_prompt(cfg.prompt, required=required)
        ctx = self._ctx(searches_left=cfg.max_searches)
        self.system = self.prompt.render("system", ctx)
        self.examples = _dialogue_lines(self.prompt.render("examples", ctx)) \
            if self.prompt.has("examples") else []

    def _ctx(self, **extra) -> dict[str, Any]:
        return {"top_k": self.top_k, "max_titles": self.cfg.max_titles, **extra}

    def sampling(self):
        return self.cfg.llm.sampling(max_new_tokens=self.cfg.max_new_tokens)

    def messages(self, history: list[dict[str, str]], steps: list[dict[str, Any]],
                 searches_left: int) -> list[dict[str, str]]:
        """The prompt for the next step of a turn.

        ``history``: the dialogue's turns as ``{role, text}``, the agent's turns as the action it
        wrote (or its raw reply when it failed); ``steps``: this turn's searches as
        ``{query, results}``.
        """
        shown = history[-self.cfg.history_turns:] if self.cfg.history_turns else history
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        msgs += [dict(m) for m in self.examples]
        for t in shown:
            msgs.append({"role": "user" if t["role"] == "user" else "assistant",
                         "content": t["text"]})
        for s in steps:
            msgs.append({"role": "assistant", "content": f"Search[{s['query']}]"})
            msgs.append({"role": "user", "content": self.prompt.render(
                "results", self._ctx(query=s["query"], results=s["results"]))})
        if self.prompt.has("reminder"):
            note = self.prompt.render("reminder", self._ctx(searches_left=searches_left))
            if note:
                msgs = _append_to_last_user(msgs, note)
        return msgs

    # -- structured decoding -----------------------------------------------------------------------
    def allowed_kinds(self, searches_left: int) -> list[str]:
        return [k for k in ACTIONS if k != "Search" or searches_left > 0]

    def choice_messages(self, base: list[dict[str, str]], kinds: list[str]
                        ) -> list[dict[str, str]]:
        options = [{"letter": LETTERS[i], "text": KIND_TEXT[k]} for i, k in enumerate(kinds)]
        return _append_to_last_user(base, self.prompt.render("choose", self._ctx(options=options)))

    def argument_messages(self, base: list[dict[str, str]], kind: str) -> list[dict[str, str]]:
        return _append_to_last_user(base, self.prompt.render("argument", self._ctx(kind=kind)))

    def compose(self, kind: str, text: str) -> str:
        """The action string for what the model wrote at the argument step of ``kind``.

        A reply holding no action start (``Search[``, ``Ask[``, ...) is the bare argument and
        becomes ``kind[reply]``; a reply that writes an action itself is kept as written, for
        :meth:`parse` (with ``kind``) to accept when it is one well-formed ``kind[...]`` and to
        fail otherwise.
        """
        t = (text or "").strip()
        return t if ACTION_START.search(t) else f"{kind}[{t}]"

    def parse(self, text: str, kind: str | None = None) -> Parse:
        """Parse one reply strictly; with ``kind`` (structured decoding) an action of another
        kind is a failure too."""
        parsed = parse_action(text, max_titles=self.cfg.max_titles)
        if kind is not None and parsed.ok and parsed.action.kind != kind:
            return Parse(None, f"wrote {parsed.action.kind}[...] at the argument step of "
                               f"{kind}[...]: write only the argument (or {kind}[argument])")
        return parsed


def _append_to_last_user(msgs: list[dict[str, str]], note: str) -> list[dict[str, str]]:
    msgs = [dict(m) for m in msgs]
    for m in reversed(msgs):
        if m["role"] == "user":
            m["content"] = f"{m['content']}\n{note}"
            break
    return msgs


def _dialogue_lines(text: str) -> list[dict[str, str]]:
    """``User: ...`` / ``Assistant: ...`` lines into chat messages (continuation lines join the
    message above)."""
    out: list[dict[str, str]] = []
    for line in text.splitlines():
        for prefix, role in (("User:", "user"), ("Assistant:", "assistant")):
            if line.startswith(prefix):
                out.append({"role": role, "content": line[len(prefix):].strip()})
                break
        else:
            if out and line.strip():
                out[-1]["content"] += "\n" + line.strip()
    return out
