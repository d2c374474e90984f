"""The backend interface every LLM engine implements, and the small types it speaks.

A conversation is a list of ``{"role": ..., "content": ...}`` messages (OpenAI / chat-template
style). Sampling is described by :class:`SamplingParams`; ``temperature == 0`` means greedy.

Seeds are per conversation, not per call: a sampled answer depends only on (model, prompt,
sampling parameters, seed), never on which other prompts shared its batch. That is what lets the
knowledge cache key an entry by its seed and lets a resumed or sharded run reproduce the entries
a single run would have written (exactly for greedy decoding; for sampling as far as the engine
honours per-request seeds, see each backend).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

Message = dict[str, str]
Conversation = list[Message]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens. Part of every cache key (see :meth:`key`)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    max_new_tokens: int = 256
    # Generate exactly max_new_tokens (benchmarks); end-of-turn tokens do not stop the sequence.
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def key(self) -> dict[str, Any]:
        """The parameters that change the output, normalised (greedy ignores top_p/top_k)."""
        d = dataclasses.asdict(self)
        d.pop("ignore_eos")
        if self.greedy:
            d["top_p"], d["top_k"] = 1.0, 0
        return d


@dataclass
class Generation:
    """One generated reply."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" (end of turn), "length" (max_new_tokens) or "error"
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def conversation_seed(base_seed: int, conversation: Conversation) -> int:
    """A 31-bit seed derived from ``base_seed`` and the conversation's content.

    Used when the caller gives no seeds: the same prompt gets the same seed whatever batch it is in.
    """
    h = hashlib.sha256(json.dumps([base_seed, conversation], sort_keys=True).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


class LLMBackend(abc.ABC):
    """A loaded model that answers chat conversations. Build one with ``llmrec.llm.load_backend``."""

    #: short backend name ("hf", "vllm", "openai")
    name: str = "?"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    # -- identity: what the cache keys name ------------------------------------------------------
    @property
    @abc.abstractmethod
    def model_id(self) -> str:
        """A readable model name (the config's ``model``, or the server's model id)."""

    @property
    @abc.abstractmethod
    def model_revision(self) -> str:
        """A content fingerprint (or the configured revision) of the weights and tokenizer."""

    def identity(self) -> dict[str, str]:
        return {"model": self.model_id, "revision": self.model_revision}

    def default_sampling(self) -> SamplingParams:
        return self.cfg.sampling()

    def seeds_for(self, conversations: Sequence[Conversation], seeds: Sequence[int] | None) -> list[int]:
        if seeds is None:
            return [conversation_seed(self.cfg.seed, c) for c in conversations]
        if len(seeds) != len(conversations):
            raise ValueError(f"got {len(seeds)} seeds for {len(conversations)} conversations")
        return [int(s) & 0x7FFFFFFF for s in seeds]

    # -- work --------------------------------------------------------------------------------------
    @abc.abstractmethod
    def generate(self, conversations: Sequence[Conversation], sampling: SamplingParams | None = None,
                 *, seeds: Sequence[int] | None = None,
                 json_schema: dict[str, Any] | None = None) -> list[Generation]:
        """One reply per conversation, in input order.

        ``json_schema``: where the engine can constrain decoding to a JSON schema (vLLM guided
        decoding, an OpenAI-compatible server's ``response_format``), it does; otherwise it is
        ignored and the caller validates the text.
        """

    @abc.abstractmethod
    def score_options(self, conversations: Sequence[Conversation],
                      options: Sequence[Sequence[str]]) -> list[list[float]]:
        """Log-likelihood (natural log, summed over tokens) of each option as the assistant's reply.

        ``options[i]`` are the allowed answers for ``conversations[i]``. The reply is scored as a
        whole turn (the end-of-turn token included where the backend can), so "Yes" is not
        credited for being the prefix of "Yesterday ...".
        """

    def choose(self, conversations: Sequence[Conversation],
               options: Sequence[Sequence[str]]) -> list[int]:
        """Index of the most likely option for each conversation."""
        out = []
        for scores in self.score_options(conversations, options):
            best = max(range(len(scores)), key=lambda j: (scores[j], -j))
            out.append(best)
        return out

    def close(self) -> None:
        """Free the engine (GPU memory, worker processes, HTTP pools)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def broadcast_options(n: int, options: Sequence[Sequence[str]] | Sequence[str]) -> list[list[str]]:
    """Accept one shared option list or one list per conversation."""
    if options and isinstance(options[0], str):
        return [list(options) for _ in range(n)]  # type: ignore[arg-type]
    if len(options) != n:
        raise ValueError(f"got {len(options)} option lists for {n} conversations")
    out = [list(o) for o in options]
    for o in out:
        if not o:
            raise ValueError("every conversation needs at least one option")
    return out

