"""Artifacts on disk: atomic writes and the provenance file saved beside every output.

Every command that writes something writes it through :func:`atomic_dir` or :func:`atomic_file`,
so a killed process leaves either the previous state or the complete new one, never a half-written
file. Beside each artifact it writes ``llmrec_meta.json``: the resolved config, package versions,
git revision and a timestamp (see :func:`provenance`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from importlib import metadata as _md
from pathlib import Path
from typing import Any, Iterator

META_FILE = "llmrec_meta.json"

_TRACKED_PACKAGES = (
    "llmrec", "torch", "transformers", "sentence-transformers", "datasets", "peft", "trl",
    "vllm", "pyarrow", "numpy", "pandas",
)


def package_versions(names: tuple[str, ...] = _TRACKED_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = _md.version(name)
        except _md.PackageNotFoundError:
            out[name] = None
    return out


def git_revision(start: str | Path | None = None) -> str | None:
    """The git commit of the source tree llmrec runs from (``+dirty`` if modified), if any."""
    where = Path(start) if start else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def provenance(config: Any = None, **extra: Any) -> dict[str, Any]:
    """The provenance record: resolved config (secrets removed), versions, git revision, time."""
    from llmrec.config import to_dict
    import dataclasses

    if config is not None and dataclasses.is_dataclass(config):
        config = to_dict(config)
    return {
        "config": config,
        "versions": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_revision": git_revision(),
        "command": " ".join(sys.argv),
        "timestamp": now_iso(),
        **extra,
    }


def write_json_atomic(path: str | Path, obj: Any) -> None:
    with atomic_file(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False, default=str)
        fh.write("\n")


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[Any]:
    """Write a file under a temporary name in the same folder, fsync, then rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Build a directory in a temporary sibling and move it into place when the block succeeds.

    A failure (or a kill) leaves ``path`` as it was; stray ``.tmp-*`` siblings of a killed run are
    harmless and removed by the next successful write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"{path} already exists")
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_meta(directory: str | Path, config: Any = None, **extra: Any) -> dict[str, Any]:
    """Write ``llmrec_meta.json`` into ``directory`` and return the record."""
    record = provenance(config, **extra)
    write_json_atomic(Path(directory) / META_FILE, record)
    return record


def read_meta(directory: str | Path) -> dict[str, Any] | None:
    p = Path(directory) / META_FILE
    if not p.is_file():
        return None
    return json.loads(p.read_text())


def llmrec_home() -> Path:
    """Where llmrec keeps converted models and caches: ``$LLMREC_HOME`` or the XDG cache dir."""
    env = os.environ.get("LLMREC_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "llmrec"
