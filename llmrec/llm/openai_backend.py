"""The OpenAI-compatible HTTP backend: a ``vllm serve`` server, a hosted API, any look-alike.

Standard library only (``urllib`` + a thread pool): no client package to pin, and every request's
timeout, retry and backoff are ours to test.

- Concurrency: at most ``concurrency`` requests in flight; results come back in input order.
- Retries: HTTP 429 and 5xx, timeouts and connection errors are retried up to ``retries`` times
  with exponential backoff and jitter (a ``Retry-After`` header, when sent, is honoured). Other
  4xx errors are the request's fault and are not retried. A request that still fails yields a
  :class:`Generation` with ``finish_reason == "error"`` instead of raising, so one bad request does
  not sink a batch of thousands; the caller decides (knowledge generation leaves it pending).
- The API key is read from the environment variable named by ``api_key_env`` when the backend is
  built; it is sent only in the ``Authorization`` header and never logged or stored.
- Parameters beyond the OpenAI API (``top_k``, ``repetition_penalty``, ``ignore_eos``) are sent
  only when they differ from their neutral value; vLLM's server accepts them, a hosted API may
  refuse them (set them neutral there).
- ``score_options`` needs vLLM's server extensions (``/tokenize`` and ``prompt_logprobs``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from llmrec.errors import ConfigError, LlmrecError
from llmrec.llm.base import Conversation, Generation, LLMBackend, SamplingParams, broadcast_options

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class RequestFailed(LlmrecError):
    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class OpenAIBackend(LLMBackend):
    name = "openai"

    def __init__(self, cfg: Any, *, backoff_base: float = 0.5, backoff_cap: float = 30.0) -> None:
        super().__init__(cfg)
        if not cfg.base_url:
            raise ConfigError("backend=openai needs llm.base_url, e.g. http://127.0.0.1:8000/v1")
        self.base_url = cfg.base_url.rstrip("/")
        self._api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._revision: str | None = cfg.revision
        self.stats = {"requests": 0, "retries": 0, "failures": 0}
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.cfg.model!r})"

    # -- identity ----------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.cfg.model

    @property
    def model_revision(self) -> str:
        """``llm.revision`` if set, else what the server says about the model (id and root).

        A server cannot prove which weights it runs; for hosted APIs whose model names move, set
        ``llm.revision`` explicitly.
        """
        if self._revision is None:
            try:
                listing = self._request("GET", "/models", None)
                info = next((m for m in listing.get("data", []) if m.get("id") == self.cfg.model), None)
            except RequestFailed as exc:
                log.warning("could not list the server's models (%s); revision = model id", exc)
                info = None
            if info is None:
                self._revision = f"served:{self.cfg.model}"
            else:
                self._revision = f"served:{info.get('id')}:{info.get('root') or ''}"
        return self._revision

    # -- HTTP --------------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            h["Authorization"] = f"Bearer {self._api_key}"
        return h

    def _count(self, what: str) -> None:
        with self._stats_lock:
            self.stats[what] += 1

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        """One call with retries; raises :class:`RequestFailed` when it finally fails."""
        url = self.base_url + path
        data = json.dumps(body).encode() if body is not None else None
        last = ""
        for attempt in range(self.cfg.retries + 1):
            self._count("requests")
            wait = None
            try:
                req = urllib.request.Request(url, data=data, method=method, headers=self._headers())
                with urllib.request.urlopen(req, timeout=self.cfg.timeout) as resp:
                    return json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:500]
                last = f"HTTP {exc.code} from {method} {path}: {detail}"
                if exc.code not in _RETRY_STATUS:
                    raise RequestFailed(last, exc.code) from None
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                if retry_after:
                    try:
                        wait = min(float(retry_after), self.backoff_cap)
                    except ValueError:
                        wait = None
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
                last = f"{type(exc).__name__} on {method} {path}: {getattr(exc, 'reason', exc)}"
            except json.JSONDecodeError as exc:
                last = f"invalid JSON from {method} {path}: {exc}"
            if attempt == self.cfg.retries:
                break
            self._count("retries")
            if wait is None:
                wait = min(self.backoff_cap, self.backoff_base * 2 ** attempt)
                wait *= 0.5 + random.random() / 2  # jitter: concurrent retries spread out
            log.debug("retrying in %.2f s after: %s", wait, last)
            time.sleep(wait)
        self._count("failures")
        raise RequestFailed(f"gave up after {self.cfg.retries + 1} attempts: {last}")

    def _map(self, fn, items: list[Any]) -> list[Any]:
        if len(items) <= 1 or self.cfg.concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    # -- generation ------------------------------------------------------------------------------
    def _body(self, conv: Conversation, sp: SamplingParams, seed: int,
              json_schema: dict[str, Any] | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.cfg.model, "messages": conv,
                                "max_tokens": sp.max_new_tokens, "temperature": sp.temperature,
                                "seed": seed}
        if sp.top_p < 1.0:
            body["top_p"] = sp.top_p
        if sp.top_k:
            body["top_k"] = sp.top_k
        if sp.repetition_penalty != 1.0:
            body["repetition_penalty"] = sp.repetition_penalty
        if sp.ignore_eos:
            body["ignore_eos"] = True
            body["min_tokens"] = sp.max_new_tokens
        if json_schema is not None and self.cfg.guided:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": json_schema}}
        return body

    def generate(self, conversations: Sequence[Conversation], sampling: SamplingParams | None = None,
                 *, seeds: Sequence[int] | None = None,
                 json_schema: dict[str, Any] | None = None) -> list[Generation]:
        sp = sampling or self.default_sampling()
        seed_list = self.seeds_for(conversations, seeds)

        def one(i: int) -> Generation:
            try:
                r = self._request("POST", "/chat/completions",
                                  self._body(list(conversations[i]), sp, seed_list[i], json_schema))
                choice = r["choices"][0]
                usage = r.get("usage") or {}
                return Generation(text=(choice["message"].get("content") or "").strip(),
                                  prompt_tokens=int(usage.get("prompt_tokens", 0)),
                                  completion_tokens=int(usage.get("completion_tokens", 0)),
                                  finish_reason=choice.get("finish_reason") or "stop")
            except (RequestFailed, KeyError, IndexError, TypeError) as exc:
                return Generation(text="", finish_reason="error", error=str(exc))

        return self._map(one, list(range(len(conversations))))

    # -- option scoring --------------------------------------------------------------------------
    def score_options(self, conversations: Sequence[Conversation],
                      options: Sequence[Sequence[str]]) -> list[list[float]]:
        """Needs vLLM's server: ``/tokenize`` with messages and ``prompt_logprobs``."""
        opts = broadcast_options(len(conversations), options)
        root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url

        def tokenize_count(conv: Conversation) -> int:
            req = urllib.request.Request(
                root + "/tokenize", method="POST", headers=self._headers(),
                data=json.dumps({"model": self.cfg.model, "messages": conv,
                                 "add_generation_prompt": True}).encode())
            try:
                with urllib.request.urlopen(req, timeout=self.cfg.timeout) as resp:
                    return int(json.loads(resp.read())["count"])
            except (urllib.error.URLError, KeyError, ValueError) as exc:
                raise LlmrecError(f"score_options over HTTP needs a vLLM server (/tokenize): {exc}")

        def one(job: tuple[int, int]) -> float:
            i, j = job
            conv = list(conversations[i])
            n_prompt = tokenize_count(conv)
            body = {"model": self.cfg.model, "max_tokens": 1, "temperature": 0.0,
                    "messages": conv + [{"role": "assistant", "content": opts[i][j]}],
                    "add_generation_prompt": False, "continue_final_message": False,
                    "prompt_logprobs": 0}
            r = self._request("POST", "/chat/completions", body)
            plp = r.get("prompt_logprobs")
            if not plp:
                raise LlmrecError("the server returned no prompt_logprobs: score_options over "
                                  "HTTP needs a vLLM server")
            total = 0.0
            # positions from the reply's first token to the end of its turn (the end-of-turn
            # token included, as in the hf backend; the template's trailing newline is not)
            reply = plp[n_prompt:]
            for pos in reply[:-1] if len(reply) > 1 else reply:
                if pos:
                    # prompt_logprobs=0 returns exactly the actual token's entry per position
                    best = next(iter(pos.values()))
                    total += float(best["logprob"] if isinstance(best, dict) else best)
            return total

        jobs = [(i, j) for i in range(len(conversations)) for j in range(len(opts[i]))]
        flat = self._map(one, jobs)
        out = [[0.0] * len(o) for o in opts]
        for (i, j), s in zip(jobs, flat):
            out[i][j] = s
        return out
