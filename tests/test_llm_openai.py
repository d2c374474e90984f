"""The openai backend's HTTP behaviour: retries, backoff, timeouts, concurrency, the API key.

The server here is a small scripted HTTP server on 127.0.0.1 (it fails on purpose). The end-to-end
tests against a real ``vllm serve`` (the ``openai_server`` fixture of conftest.py) are in
test_llm_vllm.py and test_crs_models.py (marker ``vllm``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmrec.config import to_dict
from llmrec.llm import LLMConfig, SamplingParams, load_backend

KEY = "sk-test-not-a-real-key-123"


class Script:
    """What the server answers, request by request (per prompt text)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen: list[dict] = []
        self.plan: dict[str, list] = {}  # prompt -> list of actions, consumed in order
        self.in_flight = 0
        self.max_in_flight = 0


def _server(script: Script):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def _reply(self, code, obj, headers=None):
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/v1/models":
                self._reply(200, {"data": [{"id": "served-model", "root": "/models/x"}]})
            else:
                self._reply(404, {"error": "no"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][-1]["content"]
            with script.lock:
                script.seen.append({"auth": self.headers.get("Authorization"), "body": body})
                actions = script.plan.get(prompt, [])
                action = actions.pop(0) if actions else "ok"
                script.in_flight += 1
                script.max_in_flight = max(script.max_in_flight, script.in_flight)
            # the request counts as in flight until its answer is ready, and stops counting
            # before the answer is sent: a client that got it may send its next request at once
            headers = None
            try:
                if action == "429":
                    code, obj, headers = 429, {"error": "slow down"}, {"Retry-After": "0"}
                elif action == "500":
                    code, obj = 500, {"error": "boom"}
                elif action == "400":
                    code, obj = 400, {"error": "bad request"}
                elif action == "slow":
                    time.sleep(0.3)
                    code, obj = 200, {"choices": [{"message": {"content": f"echo: {prompt}"}}]}
                elif action == "hang":
                    time.sleep(1.5)  # longer than the client's timeout
                    code, obj = 200, {"choices": [{"message": {"content": "late"}}]}
                else:
                    time.sleep(0.05)
                    code, obj = 200, {
                        "choices": [{"message": {"content": f"echo: {prompt}"},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 7, "completion_tokens": 3}}
            finally:
                with script.lock:
                    script.in_flight -= 1
            self._reply(code, obj, headers)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def server():
    script = Script()
    srv = _server(script)
    yield script, f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def _backend(url, monkeypatch, **kw):
    monkeypatch.setenv("LLMREC_TEST_KEY", KEY)
    cfg = LLMConfig(backend="openai", model="served-model", base_url=url,
                    api_key_env="LLMREC_TEST_KEY", **{"timeout": 0.5, "retries": 3, **kw})
    b = load_backend(cfg)
    b.backoff_base = 0.01  # keep the test fast; the schedule itself is tested below
    return b


def _conv(text):
    return [{"role": "user", "content": text}]


def test_retries_429_and_5xx_then_succeeds(server, monkeypatch, caplog):
    script, url = server
    script.plan = {"a": ["429", "500", "500"], "b": ["500"]}
    b = _backend(url, monkeypatch)
    with caplog.at_level(logging.DEBUG):
        out = b.generate([_conv("a"), _conv("b"), _conv("c")])
    assert [g.text for g in out] == ["echo: a", "echo: b", "echo: c"]
    assert out[0].prompt_tokens == 7 and out[0].completion_tokens == 3
    assert b.stats["retries"] == 4 and b.stats["failures"] == 0
    assert {s["auth"] for s in script.seen} == {f"Bearer {KEY}"}
    assert KEY not in caplog.text and KEY not in repr(b)
    assert KEY not in json.dumps(to_dict(b.cfg))


def test_timeouts_are_retried_and_failures_reported_not_raised(server, monkeypatch):
    script, url = server
    script.plan = {"slow": ["hang"], "dead": ["500"] * 10, "bad": ["400"]}
    b = _backend(url, monkeypatch, retries=2)
    out = b.generate([_conv("slow"), _conv("dead"), _conv("bad")])
    assert out[0].text == "echo: slow"
    assert out[1].finish_reason == "error" and "HTTP 500" in out[1].error
    assert "gave up after 3 attempts" in out[1].error
    assert out[2].finish_reason == "error" and "HTTP 400" in out[2].error
    # a 400 is not retried; the dead prompt was tried exactly retries + 1 times
    prompts = [s["body"]["messages"][-1]["content"] for s in script.seen]
    assert prompts.count("bad") == 1 and prompts.count("dead") == 3


def test_concurrency_is_bounded_and_order_kept(server, monkeypatch):
    script, url = server
    b = _backend(url, monkeypatch, concurrency=3, timeout=10)
    texts = [f"slow{i}" for i in range(12)]
    script.plan = {t: ["slow"] for t in texts}  # long enough to overlap on a busy machine
    out = b.generate([_conv(t) for t in texts])
    assert [g.text for g in out] == [f"echo: {t}" for t in texts]
    assert 1 < script.max_in_flight <= 3


def test_request_body_carries_sampling_seed_and_schema(server, monkeypatch):
    script, url = server
    b = _backend(url, monkeypatch)
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    b.generate([_conv("x")], SamplingParams(temperature=0.5, top_k=5, repetition_penalty=1.2,
                                            max_new_tokens=17), seeds=[42], json_schema=schema)
    body = script.seen[-1]["body"]
    assert body["model"] == "served-model" and body["max_tokens"] == 17 and body["seed"] == 42
    assert body["temperature"] == 0.5 and body["top_k"] == 5 and body["repetition_penalty"] == 1.2
    assert body["response_format"]["json_schema"]["schema"] == schema
    assert "top_p" not in body  # neutral values are not sent
    assert b.model_revision == "served:served-model:/models/x"


def test_backoff_grows_exponentially_and_honours_the_cap():
    from llmrec.llm.openai_backend import EndpointError, OpenAIBackend

    sleeps = []
    cfg = LLMConfig(backend="openai", base_url="http://127.0.0.1:9/v1", retries=5, timeout=0.2)
    b = OpenAIBackend(cfg, backoff_base=1.0, backoff_cap=5.0)
    b._stop.wait = lambda s: sleeps.append(s) or False  # the retry sleeps, not slept
    # port 9 (discard) refuses: every attempt fails, and with no server ever reached the run
    # stops (see test_llm_dead_endpoint.py) once this request's retries are spent
    with pytest.raises(EndpointError):
        b.generate([_conv("x")])
    assert len(sleeps) == 5
    for k, s in enumerate(sleeps):
        full = min(5.0, 2.0 ** k)
        assert full / 2 <= s <= full


def test_missing_base_url_is_a_config_error():
    from llmrec.errors import ConfigError

    with pytest.raises(ConfigError, match="base_url"):
        load_backend(LLMConfig(backend="openai"))
