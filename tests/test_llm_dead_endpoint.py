"""A dead or refusing OpenAI-compatible endpoint fails fast, and transport failures are never
recorded as finished work.

Real sockets: a closed port on 127.0.0.1 (bound, then closed: connection refused) and a scripted
HTTP server (test_llm_openai.py) that is shut down mid-run. The commands run as real processes.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_crs_engine import Scripted, _cfg, toy_catalog, toy_task
from test_llm_openai import Script, _server

from llmrec.crs.engine import Engine, TranscriptStore
from llmrec.llm import LLMConfig, load_backend
from llmrec.llm.base import Generation
from llmrec.llm.openai_backend import BREAKER_AFTER, EndpointError

ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound by us a moment ago, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conv(text):
    return [{"role": "user", "content": text}]


def _backend(url, **kw):
    b = load_backend(LLMConfig(backend="openai", model="served-model", base_url=url,
                               api_key_env="LLMREC_NO_SUCH_KEY",
                               **{"timeout": 2.0, "retries": 4, **kw}))
    b.backoff_base = 0.02
    return b


def test_connection_refused_stops_at_the_first_request(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    b = _backend(url, concurrency=8)
    t0 = time.time()
    with pytest.raises(EndpointError) as info:
        b.generate([_conv(f"item {i}") for i in range(40)])
    msg = str(info.value)
    assert f"cannot reach the LLM endpoint {url}" in msg and "Connection refused" in msg
    assert "no request has reached it yet" in msg and "llm.base_url" in msg
    # 40 prompts x 5 attempts would be 200 requests; the first ones to give up stop the rest
    assert b.stats["requests"] <= 8 * 5 and time.time() - t0 < 10
    with pytest.raises(EndpointError):  # and the backend stays stopped
        b.generate([_conv("again")])
    with pytest.raises(EndpointError):
        _ = _backend(url).model_revision  # the start-up probe of every run fails the same way


def test_server_dying_mid_run_trips_the_breaker():
    script = Script()
    srv = _server(script)
    url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    b = _backend(url, concurrency=2, retries=1)
    assert [g.text for g in b.generate([_conv("a"), _conv("b")])] == ["echo: a", "echo: b"]
    srv.shutdown()
    srv.server_close()
    before = b.stats["requests"]
    with pytest.raises(EndpointError, match=f"{BREAKER_AFTER} requests in a row"):
        b.generate([_conv(f"p{i}") for i in range(20)])
    assert b.stats["requests"] - before < 20 * 2


def test_server_errors_are_per_request_and_marked_retryable():
    script = Script()
    srv = _server(script)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
        script.plan = {"busy": ["500"] * 10, "bad": ["400"]}
        out = _backend(url, retries=1).generate([_conv("busy"), _conv("bad"), _conv("ok")])
        assert out[0].finish_reason == "error" and out[0].extra["retryable"] is True
        assert out[1].finish_reason == "error" and out[1].extra["retryable"] is False
        assert out[2].text == "echo: ok"
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_refused_key_stops_the_run():
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    class Deny(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            self.send_response(401)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Deny)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        b = _backend(f"http://127.0.0.1:{srv.server_address[1]}/v1")
        with pytest.raises(EndpointError, match="refuses the request.*HTTP 401.*api_key_env"):
            b.generate([_conv(str(i)) for i in range(10)])
    finally:
        srv.shutdown()
        srv.server_close()


def test_credentials_in_the_url_become_basic_auth_and_stay_hidden():
    script = Script()
    srv = _server(script)
    try:
        port = srv.server_address[1]
        b = _backend(f"http://alice:sekrit@127.0.0.1:{port}/v1")
        assert b.generate([_conv("x")])[0].text == "echo: x"
        assert script.seen[-1]["auth"] == "Basic " + base64.b64encode(b"alice:sekrit").decode()
        assert "sekrit" not in repr(b) and b.display_url == f"http://***@127.0.0.1:{port}/v1"
    finally:
        srv.shutdown()
        srv.server_close()


def _llmrec(tmp_path, *args, timeout=300):
    env = {**os.environ, "LLMREC_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "llmrec", "-q", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc, time.time() - t0


def test_knowledge_generate_against_a_closed_port(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    proc, seconds = _llmrec(tmp_path, "knowledge", "generate", "--llm.backend=openai",
                            f"--llm.base_url={url}", "--llm.model=x", "--limit=40",
                            f"--cache_dir={tmp_path / 'c'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the LLM endpoint {url}")
    assert seconds < 60  # was: every entity retried (40 items: 75 s)
    assert not list((tmp_path / "c").glob("shards/*.parquet"))


def test_simulate_against_a_closed_port_records_nothing(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    out = tmp_path / "sim"
    proc, _ = _llmrec(tmp_path, "simulate", f"--config={ROOT / 'simulators/movielens-openai.yaml'}",
                      "--tasks.n_tasks=3", "--in_flight=3", "--max_rounds=2", "--show=0",
                      f"--agent.llm.base_url={url}", f"--simulator.llm.base_url={url}",
                      f"--out={out}")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot reach the LLM endpoint" in proc.stderr
    assert TranscriptStore(out).load() == []
    assert not (out / "metrics.json").exists()


class Flaky(Scripted):
    """The scripted backend, except that every request about task 'b' fails as a dead server's
    would (a retryable error) until ``healed``."""

    def __init__(self):
        super().__init__()
        self.healed = False

    def generate(self, convs, sampling=None, *, seeds=None, json_schema=None):
        out = super().generate(convs, sampling, seeds=seeds, json_schema=json_schema)
        if self.healed:
            return out
        return [Generation("", finish_reason="error", error="gave up after 5 attempts: "
                           "URLError: connection reset", extra={"retryable": True})
                if _about_b(c) else g for c, g in zip(convs, out)]


def _about_b(conv) -> bool:
    text = json.dumps(conv)  # b's user wants comedy: its simulator and agent prompts say so
    return "genres: comedy" in text or "want comedy" in text


def test_dialogues_hit_by_transport_failures_are_not_recorded_and_resume_redoes_them(tmp_path):
    from llmrec.crs.cli import _report_abandoned

    tasks = [toy_task("a", "1", "space"), toy_task("b", "3", "comedy")]
    backend = Flaky()
    cfg = _cfg(tmp_path, max_rounds=2)
    res = Engine(cfg, toy_catalog(), tasks,
                 backends={"agent": backend, "simulator": backend}).run()
    assert set(res.abandoned) == {"b"} and "connection reset" in res.abandoned["b"]
    assert [r["task_id"] for r in TranscriptStore(cfg.out).load()] == ["a"]
    assert _report_abandoned(res) == 1
    backend.healed = True
    res2 = Engine(cfg, toy_catalog(), tasks,
                  backends={"agent": backend, "simulator": backend}).run()
    assert res2.abandoned == {} and res2.new == 1
    assert sorted(r["task_id"] for r in TranscriptStore(cfg.out).load()) == ["a", "b"]
    assert _report_abandoned(res2) == 0
