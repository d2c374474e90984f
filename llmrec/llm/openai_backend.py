"""The OpenAI-compatible HTTP backend: a ``vllm serve`` server, a hosted API, any look-alike.

Standard library only (``urllib`` + a thread pool): no client package to pin, and every request's
timeout, retry and backoff are ours to test.

- Concurrency: at most ``concurrency`` requests in flight; results come back in input order.
- Retries: HTTP 429 and 5xx, timeouts and connection errors are retried up to ``retries`` times
  with exponential backoff and jitter (a ``Retry-After`` header, when sent, is honoured). Other
  4xx errors are the request's fault and are not retried. A request that still fails yields a
  :class:`Generation` with ``finish_reason == "error"`` instead of raising, so one bad request does
  not sink a batch of thousands; the caller decides (knowledge generation leaves it pending).
- Failing fast: a request that cannot reach the server at all (connection refused, unknown host,
  reset) before any request has reached it, or ``BREAKER_AFTER`` requests in a row that fail to
  reach it (timeouts included) after their retries, raise :class:`EndpointError`: the run stops
  with one line naming the endpoint, instead of retrying every remaining prompt for hours. So do
  HTTP 401 / 403 (the key is refused: every request would be). Failed generations that another
  try could fix (transport errors, 429 / 5xx after the retries) carry ``extra["retryable"]``, so
  callers do not record them as finished work.
- The API key is read from the environment variable named by ``api_key_env`` when the backend is
  built; it is sent only in the ``Authorization`` header and never logged or stored. Credentials
  in ``base_url`` (``http://user:key@host/v1``) are sent as HTTP basic auth (when no API key is
  set) and left out of the URL that messages and saved configs show.
- Parameters beyond the OpenAI API (``top_k``, ``repetition_penalty``, ``ignore_eos``) are sent
  only when they differ from their neutral value; vLLM's server accepts them, a hosted API may
  refuse them (set them neutral there).
- ``score_options`` needs vLLM's server extensions (``/tokenize`` and ``prompt_logprobs``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from llmrec.config import redact_url
from llmrec.errors import ConfigError, LlmrecError
from llmrec.llm.base import Conversation, Generation, LLMBackend, SamplingParams, broadcast_options

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


_FATAL_STATUS = {401, 403}
#: requests in a row that fail to reach the server (after their retries) before the run stops
BREAKER_AFTER = 3


class RequestFailed(LlmrecError):
    """One request failed for good. ``status``: the HTTP status (None: the server was not
    reached); ``retryable``: another try later could succeed."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class EndpointError(LlmrecError):
    """The endpoint cannot serve this run at all (unreachable, or it refuses the key): stop."""


def _split_credentials(url: str) -> tuple[str, str | None]:
    """``(url without user:password@, the user:password part or None)``."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=host)), urllib.parse.unquote(userinfo)


class OpenAIBackend(LLMBackend):
    name = "openai"

    def __init__(self, cfg: Any, *, backoff_base: float = 0.5, backoff_cap: float = 30.0) -> None:
        super().__init__(cfg)
        if not cfg.base_url:
            raise ConfigError("backend=openai needs llm.base_url, e.g. http://127.0.0.1:8000/v1")
        self.base_url, self._userinfo = _split_credentials(cfg.base_url.rstrip("/"))
        self.display_url = redact_url(cfg.base_url.rstrip("/"))
        self._api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._revision: str | None = cfg.revision
        self.stats = {"requests": 0, "retries": 0, "failures": 0}
        self._stats_lock = threading.Lock()
        self._reached = False  # some request got an HTTP answer
        self._unreached_streak = 0  # requests in a row that did not reach the server
        self._dead: str | None = None  # why the run must stop (set once, read by every thread)
        self._stop = threading.Event()  # wakes retry sleeps once the run must stop

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(base_url={self.display_url!r}, model={self.cfg.model!r})"

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
            except RequestFailed as exc:  # EndpointError (nobody answers) is not caught
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
        elif self._userinfo:
            h["Authorization"] = "Basic " + base64.b64encode(self._userinfo.encode()).decode()
        return h

    def _count(self, what: str) -> None:
        with self._stats_lock:
            self.stats[what] += 1

    def _stop_run(self, message: str) -> EndpointError:
        with self._stats_lock:
            if self._dead is None:
                self._dead = message
        self._stop.set()
        return EndpointError(self._dead)

    def _request(self, method: str, path: str, body: dict[str, Any] | None, *,
                 root: str | None = None) -> dict[str, Any]:
        """One call with retries; raises :class:`RequestFailed` when it finally fails, or
        :class:`EndpointError` when the run cannot go on (see the module docstring)."""
        url = (root or self.base_url) + path
        data = json.dumps(body).encode() if body is not None else None
        last = ""
        unreached = None  # how the last attempt failed to reach the server: connect | timeout
        for attempt in range(self.cfg.retries + 1):
            if self._dead is not None:
                raise EndpointError(self._dead)
            self._count("requests")
            wait = None
            unreached = None
            try:
                req = urllib.request.Request(url, data=data, method=method, headers=self._headers())
                with urllib.request.urlopen(req, timeout=self.cfg.timeout) as resp:
                    raw = resp.read()
                with self._stats_lock:
                    self._reached, self._unreached_streak = True, 0
                return json.loads(raw.decode("utf-8"))
            except urllib.error.HTTPError as exc:
                with self._stats_lock:
                    self._reached, self._unreached_streak = True, 0
                detail = exc.read().decode("utf-8", "replace")[:500]
                last = f"HTTP {exc.code} from {method} {path}: {detail}"
                if exc.code in _FATAL_STATUS:
                    raise self._stop_run(
                        f"the LLM endpoint {self.display_url} refuses the request ({last}): "
                        f"check the key (the environment variable named by llm.api_key_env, "
                        f"now {self.cfg.api_key_env!r}) and llm.model") from None
                if exc.code not in _RETRY_STATUS:
                    raise RequestFailed(last, exc.code) from None
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                if retry_after:
                    try:
                        wait = min(float(retry_after), self.backoff_cap)
                    except ValueError:
                        wait = None
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                unreached = "timeout" if isinstance(reason, (socket.timeout, TimeoutError)) \
                    or isinstance(exc, (socket.timeout, TimeoutError)) else "connect"
                last = f"{type(exc).__name__} on {method} {path}: {reason}"
            except json.JSONDecodeError as exc:
                last = f"invalid JSON from {method} {path}: {exc}"
            if attempt == self.cfg.retries:
                break
            self._count("retries")
            if wait is None:
                wait = min(self.backoff_cap, self.backoff_base * 2 ** attempt)
                wait *= 0.5 + random.random() / 2  # jitter: concurrent retries spread out
            log.debug("retrying in %.2f s after: %s", wait, last)
            if self._stop.wait(wait):
                raise EndpointError(self._dead or "stopped")
        self._count("failures")
        tries = self.cfg.retries + 1
        if unreached is not None:
            with self._stats_lock:
                self._unreached_streak += 1
                streak, reached = self._unreached_streak, self._reached
            if (unreached == "connect" and not reached) or streak >= BREAKER_AFTER:
                why = ("no request has reached it yet" if not reached else
                       f"{streak} requests in a row could not reach it")
                raise self._stop_run(
                    f"cannot reach the LLM endpoint {self.display_url} ({last}; {tries} "
                    f"attempts; {why}): start the server or fix llm.base_url, then rerun the "
                    f"same command (finished work is kept; the rest is redone)")
        raise RequestFailed(f"gave up after {tries} attempts: {last}", retryable=True)

    def _map(self, fn, items: list[Any]) -> list[Any]:
        if len(items) <= 1 or self.cfg.concurrency == 1:
            return [fn(x) for x in items]
        pool = ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, len(items)))
        try:
            futures = [pool.submit(fn, x) for x in items]
            return [f.result() for f in futures]
        finally:
            # on an EndpointError the requests not started yet are dropped, and the running
            # ones stop at their next attempt
            pool.shutdown(wait=True, cancel_futures=True)

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
            except RequestFailed as exc:
                return Generation(text="", finish_reason="error", error=str(exc),
                                  extra={"retryable": exc.retryable})
            except (KeyError, IndexError, TypeError) as exc:
                return Generation(text="", finish_reason="error",
                                  error=f"unexpected reply shape: {exc!r}",
                                  extra={"retryable": False})

        return self._map(one, list(range(len(conversations))))

    # -- option scoring --------------------------------------------------------------------------
    def score_options(self, conversations: Sequence[Conversation],
                      options: Sequence[Sequence[str]]) -> list[list[float]]:
        """Needs vLLM's server: ``/tokenize`` with messages and ``prompt_logprobs``."""
        opts = broadcast_options(len(conversations), options)
        root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url

        def tokenize_count(conv: Conversation) -> int:
            body = {"model": self.cfg.model, "messages": conv, "add_generation_prompt": True}
            try:
                return int(self._request("POST", "/tokenize", body, root=root)["count"])
            except RequestFailed as exc:
                if exc.status is None or exc.retryable:
                    raise
                raise LlmrecError(f"score_options over HTTP needs a vLLM server (/tokenize): "
                                  f"{exc}") from None
            except (KeyError, ValueError, TypeError) as exc:
                raise LlmrecError(f"score_options over HTTP needs a vLLM server (/tokenize): "
                                  f"{exc!r}") from None

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
