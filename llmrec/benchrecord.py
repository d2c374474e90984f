"""Benchmark and result records: one JSON object per measurement, one helper for all of them.

Every benchmark in ``bench/`` (and any test that checks the recorded files) goes through this
module, so a record always carries the same provenance:

- :func:`environment` -- the device (CUDA GPU name, or the CPU model and the cores this process
  may use), the commit (short git revision, ``+dirty`` when tracked files differ from it), the
  date (ISO 8601, UTC) and the versions of the packages that shape the numbers;
- :func:`record` -- ``benchmark, metric, value, unit`` plus that environment plus the run's
  conditions (by convention ``model, dataset, augment, strategy, agent, n_tasks, baseline,
  split``, then ``seed`` or ``mean``/``std``/``n_seeds``, the exact config and command);
- :func:`append` -- adds records to a ``.jsonl`` file atomically: the whole new file is written
  under a temporary name, fsynced and renamed into place, so a killed run leaves the old file or
  the complete new one, never half a line; recorded lines are never rewritten;
- :func:`read`, :func:`summarise` (mean, sample std, number of seeds) and :func:`validate`
  (every record has :data:`REQUIRED_KEYS`).

Nothing heavy is imported here: torch only inside :func:`device_name` / :func:`versions`, so
``import llmrec.benchrecord`` stays as light as ``import llmrec``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from importlib import metadata as _md
from pathlib import Path
from typing import Any

__all__ = ["REQUIRED_KEYS", "ENV_KEYS", "VERSION_PACKAGES", "RecordError", "environment",
           "device_name", "commit", "now_iso", "versions", "record", "validate", "append", "read",
           "summarise"]

#: keys every recorded line has (``value`` may be null: a failed cell is recorded as such)
REQUIRED_KEYS = ("benchmark", "metric", "value", "unit", "device", "commit", "date")
#: what :func:`environment` returns and :func:`record` fills in
ENV_KEYS = ("device", "commit", "date", "versions")
#: packages whose versions every record carries (``None`` when not installed)
VERSION_PACKAGES = ("torch", "transformers", "trl", "peft", "sentence-transformers", "vllm",
                    "llmrec")

_SOURCE = Path(__file__).resolve().parents[1]  # the checkout llmrec runs from, if any


class RecordError(ValueError):
    """A record misses required keys, or a results file holds a line that is not a record."""


# -- environment ---------------------------------------------------------------------------------

def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None


def commit(where: str | Path | None = None) -> str:
    """The code measured: ``$LLMREC_COMMIT`` if set (a copied tree on a benchmark host has no
    ``.git``: the caller passes the revision in), else the short ``HEAD`` of the checkout llmrec
    runs from (or of ``where``, or of the working directory), ``+dirty`` when tracked files differ
    from it; ``"unknown"`` outside any git checkout."""
    env = os.environ.get("LLMREC_COMMIT")
    if env:
        return env
    places = [Path(where)] if where else [_SOURCE, Path.cwd()]
    for cwd in places:
        rev = _git(["rev-parse", "--short", "HEAD"], cwd)
        if rev is None or rev.returncode != 0 or not rev.stdout.strip():
            continue
        dirty = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
        return rev.stdout.strip() + ("+dirty" if dirty is not None and dirty.stdout.strip() else "")
    return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may use
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def device_name(device: str = "auto", note: str = "") -> str:
    """The device the numbers are measured on: the first CUDA GPU's name (when torch sees one and
    ``device`` is not ``"cpu"``), else ``"cpu (<model>, <n> cores)"``; ``note`` is appended, e.g.
    ``"shared with other jobs"``."""
    suffix = f", {note}" if note else ""
    if device != "cpu":
        try:
            import torch

            if torch.cuda.is_available():
                return torch.cuda.get_device_name(0) + (f" ({note})" if note else "")
        except ImportError:
            pass
    return f"cpu ({_cpu_model()}, {_cores()} cores{suffix})"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def versions(*extra: str) -> dict[str, str | None]:
    """Python's version, each of :data:`VERSION_PACKAGES` and ``extra`` (``None`` when not
    installed), and the CUDA torch was built with."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in (*VERSION_PACKAGES, *extra):
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            out[name] = None
    if out.get("torch"):
        try:
            import torch

            out["cuda"] = torch.version.cuda
        except ImportError:  # metadata of a broken install
            out["cuda"] = None
    return out


def environment(device: str = "auto", note: str = "", extra_versions: Iterable[str] = ()
                ) -> dict[str, Any]:
    """``{"device", "commit", "date", "versions"}`` of this run: take it once at the start and
    pass it to every :func:`record`, so that all records of one run share one date (tables group
    a run's cells by it)."""
    return {"device": device_name(device, note), "commit": commit(), "date": now_iso(),
            "versions": versions(*extra_versions)}


# -- records -------------------------------------------------------------------------------------

def record(benchmark: str, metric: str, value: Any, unit: str, env: Mapping[str, Any] | None = None,
           **conditions: Any) -> dict[str, Any]:
    """One measurement: ``benchmark, metric, value, unit``, the device, commit and date of ``env``
    (default: a fresh :func:`environment`), the conditions, and the versions last.

    ``env`` may be any mapping with :data:`ENV_KEYS` (e.g. that of a run made on another host);
    a condition may not reuse one of those names: change the environment instead."""
    env = environment() if env is None else env
    clash = sorted(set(conditions) & set(ENV_KEYS))
    if clash:
        raise TypeError(f"record(): {', '.join(clash)} come(s) from env, not from the conditions")
    missing = [k for k in ENV_KEYS if k not in env]
    if missing:
        raise RecordError(f"record(): env lacks {', '.join(missing)} (use environment())")
    rec = {"benchmark": benchmark, "metric": metric, "value": value, "unit": unit,
           "device": env["device"], "commit": env["commit"], "date": env["date"]}
    rec.update(conditions)
    rec["versions"] = env["versions"]
    return rec


def validate(rec: Any, where: str = "record") -> dict[str, Any]:
    """``rec`` itself if it is a dict with every one of :data:`REQUIRED_KEYS`, else
    :class:`RecordError` naming the missing keys (``where`` says which line, e.g. ``file:12``)."""
    if not isinstance(rec, dict):
        raise RecordError(f"{where}: a record is a JSON object, got {type(rec).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise RecordError(f"{where}: missing required key(s) {', '.join(missing)} "
                          f"(required: {', '.join(REQUIRED_KEYS)})")
    return rec


def summarise(values: Iterable[float]) -> dict[str, float | int]:
    """``{"mean", "std", "n_seeds"}`` of per-seed values (sample std; 0.0 for a single seed)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("summarise(): no values")
    return {"mean": statistics.fmean(vals),
            "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n_seeds": len(vals)}


# -- files ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(folder: Path):
    """An exclusive lock on ``folder`` (flock on its descriptor) so that two processes appending
    to files there do not each replace the file with their own copy; a no-op where unsupported."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        fd = None
    try:
        if fd is not None:
            with contextlib.suppress(OSError):  # e.g. a file system without flock
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def append(path: str | Path, records: Iterable[Mapping[str, Any]]) -> int:
    """Append ``records`` to ``path`` (one JSON object per line) and return how many.

    Every record is validated first (all or nothing). The existing bytes are kept as they are and
    the new lines added after them in a temporary file in the same folder, which is fsynced and
    renamed over ``path``: a kill at any point leaves the old file or the whole new one. A file
    whose last line is incomplete is refused (it must be looked at, not appended to)."""
    path = Path(path)
    recs = [validate(dict(r), f"record {i} for {path}") for i, r in enumerate(records)]
    if not recs:
        return 0
    new = "".join(json.dumps(r, default=str) + "\n" for r in recs).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        try:
            old = path.read_bytes()
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            old, mode = b"", None
        if old and not old.endswith(b"\n"):
            raise RecordError(f"{path} ends in an incomplete line; nothing appended")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(old)
                fh.write(new)
                fh.flush()
                os.fsync(fh.fileno())
            if mode is None:  # a new file gets the usual permissions, not mkstemp's 0600
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    return len(recs)


def read(path: str | Path, check: bool = False) -> list[dict[str, Any]]:
    """The records of ``path`` in order (``[]`` when it does not exist; blank lines skipped).
    A line that is not JSON is a :class:`RecordError` naming ``file:line``; with ``check`` so is
    one without the :data:`REQUIRED_KEYS`."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}:{n}: not JSON ({exc})") from None
        out.append(validate(rec, f"{path}:{n}") if check else rec)
    return out
