"""The four relevance levels shared by every part of SSRA (labels, prompts, metrics).

The wording follows the spec (``docs/synth.md``): real relevance data is dominated by levels 0
and 3, and the method exists to synthesise convincing 1s and 2s.
"""

from __future__ import annotations

LEVELS: tuple[int, ...] = (0, 1, 2, 3)

LEVEL_NAMES: dict[int, str] = {
    0: "irrelevant",
    1: "partially relevant",
    2: "mostly relevant",
    3: "fully relevant",
}

# Shown to the query model and the LLM classifier; kept in one place so that prompts and docs
# cannot drift apart.
LEVEL_DEFINITIONS: dict[int, str] = {
    3: "the document fully satisfies the query: every element the query asks for is there",
    2: "the document mostly satisfies the query: the key elements match but some non-key "
       "elements are missing",
    1: "the document is partially relevant: it is about related key entities, but important "
       "aspects of the query do not match",
    0: "the document does not satisfy the query: it is about something else",
}


def check_level(level: int) -> int:
    """``level`` as an int, or a ValueError naming the valid levels."""
    level = int(level)
    if level not in LEVELS:
        raise ValueError(f"relevance level must be one of {LEVELS}, got {level}")
    return level

# The same levels in a few words each, for the query model's prompt: every prompt token is paid
# for in each generation and each SFT step, and a 135M model does not follow long instructions
# any better.
LEVEL_SHORT: dict[int, str] = {
    3: "fully satisfies the query",
    2: "mostly satisfies it, some non-key parts missing",
    1: "partially relevant: related key entities, but important aspects differ",
    0: "does not satisfy it",
}
