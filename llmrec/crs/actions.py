"""The agent's actions and their strict parser.

Every agent step must produce exactly one action, optionally after a short thought::

    [Thought: ...]  [Action:]  Kind[argument]

with ``Kind`` one of ``Search`` (look up the catalog; the user does not see it), ``Ask`` (a
question to the user), ``Recommend`` (titles separated by ``;``) or ``Response`` (anything else the
user should read). The grammar is strict on purpose: a reply with no action, two actions, an
unclosed bracket, text after the action, an empty argument, a nested action or too many titles is
*not* repaired; :func:`parse_action` returns the reason and the engine records the step as a failed
turn. Repairing replies silently would hide exactly the failures an evaluation should count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ACTIONS = ("Search", "Ask", "Recommend", "Response")
# Case-sensitive on purpose: "search[" or "SEARCH [" is not the format the prompt asks for.
_START = re.compile(r"\b(Search|Ask|Recommend|Response)\[")
#: where an action begins in a reply (``Kind[``, exactly as the grammar spells it)
ACTION_START = _START
_LOOSE = re.compile(r"\b(search|ask|recommend|response)\s*\[", re.I)
_THOUGHT_LABEL = re.compile(r"^\s*thought\s*:\s*", re.I)
_ACTION_LABEL = re.compile(r"action\s*:\s*$", re.I)
TITLE_SEP = ";"


@dataclass(frozen=True)
class Action:
    """One parsed action. ``titles`` is set for Recommend only."""

    kind: str
    argument: str
    titles: tuple[str, ...] = ()
    thought: str = ""

    def render(self) -> str:
        """The canonical action string, as the agent sees its own past steps."""
        return f"{self.kind}[{self.argument}]"

    @property
    def visible(self) -> bool:
        """Whether the user sees this action (everything but Search)."""
        return self.kind != "Search"

    def user_text(self) -> str:
        """What the user reads."""
        if self.kind == "Recommend":
            return "I recommend: " + "; ".join(self.titles)
        return self.argument


@dataclass(frozen=True)
class Parse:
    """The outcome of parsing one reply: an action, or the reason there is none."""

    action: Action | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.action is not None


def _fail(reason: str) -> Parse:
    return Parse(None, reason)


def _matching_bracket(text: str, open_at: int) -> int:
    """Index of the ``]`` closing the ``[`` at ``open_at`` (nesting counted), or -1."""
    depth = 0
    for i in range(open_at, len(text)):
        c = text[i]
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _clip(s: str, n: int = 60) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n] + "..."


def parse_action(text: str, *, max_titles: int = 5) -> Parse:
    """Parse one agent reply strictly; see the module docstring for the grammar."""
    t = (text or "").strip()
    if not t:
        return _fail("empty reply")
    m = _START.search(t)
    if m is None:
        loose = _LOOSE.search(t)
        if loose:
            return _fail(f"malformed action {loose.group(0)!r}: write exactly "
                         f"{'/'.join(a + '[...]' for a in ACTIONS)}")
        return _fail("no action: the reply must end with one of "
                     + ", ".join(a + "[...]" for a in ACTIONS))
    kind = m.group(1)
    prefix = t[:m.start()]
    if "[" in prefix or "]" in prefix:
        return _fail(f"brackets before the action: {_clip(prefix)!r}")
    close = _matching_bracket(t, m.end() - 1)
    if close < 0:
        return _fail(f"unclosed bracket in {kind}[...]")
    argument = t[m.end():close].strip()
    rest = t[close + 1:].strip()
    if rest:
        if _START.search(rest):
            return _fail("more than one action: exactly one per step")
        return _fail(f"text after the action: {_clip(rest)!r}")
    if not argument:
        return _fail(f"empty argument in {kind}[]")
    if _START.search(argument):
        return _fail(f"an action inside {kind}[...]")
    thought = _ACTION_LABEL.sub("", prefix).strip()
    thought = _THOUGHT_LABEL.sub("", thought).strip()
    titles: tuple[str, ...] = ()
    if kind == "Recommend":
        titles = tuple(s.strip() for s in argument.split(TITLE_SEP))
        if any(not s for s in titles):
            return _fail(f"empty title in Recommend[{_clip(argument)}] (titles are separated by "
                         f"'{TITLE_SEP}')")
        if len(titles) > max_titles:
            return _fail(f"{len(titles)} titles in Recommend[...]: at most {max_titles}")
    return Parse(Action(kind=kind, argument=argument, titles=titles, thought=thought))
