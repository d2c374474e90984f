"""Artifacts on disk: atomic writes and the provenance file saved beside every output.

Every command that writes something writes it through :func:`atomic_dir` or :func:`atomic_file`,
so a killed process leaves either the previous state or the complete new one, never a half-written
file. Files written this way get the permissions a plain ``open()`` would give them (``0666``
less the umask), so caches shared by several users behave like any other folder. Beside each
artifact it writes ``llmrec_meta.json``: the resolved config (secrets and URL credentials
removed), package versions, git revision and a timestamp (see :func:`provenance`). Commands call
:func:`check_writable` on their outputs before any work starts, so a typo in ``--out`` costs
seconds, not an epoch.

Resumable stages decide whether a finished output can be reused with one scheme:
:func:`fingerprint` (sha256 of the canonical JSON of the inputs, 16 hex digits) and
:class:`StepCache` (is this step's output present and made from these inputs? record that it was;
redo or refuse when it was not).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from importlib import metadata as _md
from pathlib import Path
from typing import Any, Collection, Iterator, Literal

from llmrec.errors import ConfigError, LlmrecError

log = logging.getLogger(__name__)

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

    from llmrec.config import redact_url

    if config is not None and dataclasses.is_dataclass(config):
        config = to_dict(config)
    return {
        "config": config,
        "versions": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_revision": git_revision(),
        "command": redact_url(" ".join(sys.argv)),
        "timestamp": now_iso(),
        **extra,
    }


# --------------------------------------------------------------------------- permissions

def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it (``/proc``); elsewhere
    by setting and restoring it."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode(executable: bool = False) -> int:
    """The mode ``open()`` would give a new file here: ``0666`` (``0777`` if executable) less
    the umask."""
    return (0o777 if executable else 0o666) & ~current_umask()


def _honour_umask(root: Path) -> None:
    """Give every file under ``root`` the mode a plain ``open()`` would have (tempfile.mkstemp
    and some writers, safetensors among them, create files ``0600``)."""
    mode = file_mode()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                st = os.lstat(p)
                if not os.path.islink(p):
                    want = file_mode(True) if st.st_mode & 0o100 else mode
                    if st.st_mode & 0o777 != want:
                        os.chmod(p, want)


# --------------------------------------------------------------------------- writability

class NotWritableError(LlmrecError):
    """An output location that cannot be written (checked before work starts)."""


def check_writable(path: str | Path, option: str = "", *, what: str = "output",
                   folder: bool = True) -> Path:
    """Make sure ``path`` (a file or folder that an atomic write will create or replace, or a
    folder written into) can be written, before any work starts; raise
    :class:`NotWritableError` naming the path, the cause and the option to change.

    Nothing is created: the nearest existing folder on the way is probed with a temporary file
    (which also catches read-only mounts and, unlike ``os.access``, tells root the truth about
    them). A ``path`` that exists as a folder is probed too, since some outputs are written into
    it. ``folder``: the output is a folder (else a file).
    """
    p = Path(path).expanduser()
    fix = f"; choose another location{' with ' + option if option else ''}"
    where = f"{what} {p}" + (f" ({option})" if option else "")
    probe = p.parent if p != p.parent else p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise NotWritableError(f"{where} cannot be created: {probe} is a file, not a folder{fix}")
    if folder and p.exists() and not p.is_dir():
        raise NotWritableError(f"{where} is a file, but a folder is written there{fix}")
    if not folder and p.is_dir():
        raise NotWritableError(f"{where} is a folder, but a file is written there{fix}")
    targets = [probe]
    if p.is_dir():
        targets.append(p)
    for d in targets:
        try:
            fd, tmp = tempfile.mkstemp(prefix=".llmrec-write-test-", dir=d)
        except OSError as exc:
            raise NotWritableError(f"{where} cannot be written: {d} is not writable "
                                   f"({exc.strerror}){fix}") from None
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return p


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
        os.chmod(tmp, file_mode())  # mkstemp makes it 0600; open() would honour the umask
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
        _honour_umask(tmp)
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


# --------------------------------------------------------------------------- fingerprints

def canonical(obj: Any, exclude: Collection[str] = ()) -> Any:
    """``obj`` as plain JSON data: dataclasses become dicts (secret options left out), tuples and
    sets lists, dict keys strings; other leaves are kept (:func:`fingerprint` writes unknown types
    with ``str``).

    ``exclude`` drops dict keys: a plain name (``batch_size``) wherever it occurs, a dotted one
    (``agent.label``) only at that path from the root.
    """
    names = {e for e in exclude if "." not in e}
    paths = {tuple(e.split(".")) for e in exclude if "." in e}
    return _canonical(obj, names, paths, ())


def _canonical(obj: Any, names: set[str], paths: set[tuple[str, ...]],
               at: tuple[str, ...]) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        from llmrec.config import to_dict

        obj = to_dict(obj)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            key = str(k)
            if key in names or at + (key,) in paths:
                continue
            out[key] = _canonical(v, names, paths, at + (key,))
        return out
    if isinstance(obj, (list, tuple)):
        return [_canonical(v, names, paths, at) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_canonical(v, names, paths, at) for v in obj), key=repr)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def fingerprint(obj: Any, exclude: Collection[str] = ()) -> str:
    """16 hex digits of the sha256 of ``obj``'s canonical JSON (sorted keys, see
    :func:`canonical`): equal for equal content, whatever the dict order."""
    blob = json.dumps(canonical(obj, exclude), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts (a key on one side only counts)."""
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return [] if a == b else [prefix.rstrip(".") or "(value)"]
    keys = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += diff_keys(va, vb, f"{prefix}{k}.")
        elif k not in a or k not in b or va != vb:
            keys.append(f"{prefix}{k}")
    return keys


# --------------------------------------------------------------------------- step cache

class StaleStepError(ConfigError):
    """A step's output exists but was not made from the inputs asked for (and may not be redone)."""

    def __init__(self, message: str, output: Path, changed: list[str]) -> None:
        super().__init__(message)
        self.output = output
        self.changed = changed


@dataclasses.dataclass(frozen=True)
class StepState:
    """``missing`` (no output), ``unrecorded`` (an output but no record of its inputs),
    ``stale`` (made from other inputs; ``changed`` names them) or ``fresh``."""

    status: Literal["missing", "unrecorded", "stale", "fresh"]
    changed: tuple[str, ...] = ()

    @property
    def fresh(self) -> bool:
        return self.status == "fresh"

    def describe(self) -> str:
        if self.status == "unrecorded":
            return "no record of the inputs it was made from (written by an older llmrec?)"
        if self.status == "stale":
            return f"changed: {', '.join(self.changed[:6]) or 'unknown'}" + \
                (f" and {len(self.changed) - 6} more" if len(self.changed) > 6 else "")
        return self.status


class StepCache:
    """One resumable step: its output (a file or folder) and the record of the inputs it was
    made from.

    ``inputs`` names the parts the output depends on (configs, data rows, hashes of upstream
    files); the record keeps their :func:`fingerprint` (``fingerprint``: all of them,
    ``input_fingerprints``: each one, so a mismatch names the parts that changed) and, with
    ``keep_values``, their canonical values (``inputs``, so it names the leaf keys).

    The record lives in a JSON file, by default inside the output: the output itself when it is a
    ``.json`` file, else ``<output>/llmrec_meta.json``. A step that builds its output in
    :func:`atomic_dir` or writes it in one :func:`atomic_file` puts :meth:`fields` into it, so the
    output and its record appear together. A record in a separate file (``record=``) is written by
    :meth:`record` after the output and removed by :meth:`reuse` before a redo, so a killed redo
    never leaves an old record beside a new output.

    The protocol: ``if cache.reuse(on_stale=...): load; else: make the output with
    cache.fields() in it (or call cache.record() after)``.
    """

    def __init__(self, output: str | Path, inputs: dict[str, Any], *,
                 record: str | Path | None = None, exclude: Collection[str] = (),
                 keep_values: bool = False, enabled: bool = True) -> None:
        self.output = Path(output)
        if record is None:
            record = self.output if self.output.suffix == ".json" else self.output / META_FILE
        self.record_path = Path(record)
        self.inside = self.record_path == self.output or self.record_path.parent == self.output
        self.values: dict[str, Any] = canonical(dict(inputs), exclude)
        self.keep_values = keep_values
        self.enabled = enabled

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.values)

    @property
    def input_fingerprints(self) -> dict[str, str]:
        return {k: fingerprint(v) for k, v in self.values.items()}

    def fields(self) -> dict[str, Any]:
        """The record's keys, to store in the output's own JSON / provenance file."""
        out: dict[str, Any] = {"fingerprint": self.fingerprint,
                               "input_fingerprints": self.input_fingerprints}
        if self.keep_values:
            out["inputs"] = self.values
        return out

    def _stored(self) -> dict[str, Any] | None:
        if not self.record_path.is_file():
            return None
        try:
            rec = json.loads(self.record_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return rec if isinstance(rec, dict) else None

    def state(self) -> StepState:
        """Whether the output is there and was made from these inputs."""
        if not self.output.exists():
            return StepState("missing")
        rec = self._stored()
        if rec is None or "fingerprint" not in rec:
            return StepState("unrecorded")
        if rec["fingerprint"] == self.fingerprint:
            return StepState("fresh")
        if isinstance(rec.get("inputs"), dict) and self.keep_values:
            changed = diff_keys(rec["inputs"], self.values)
        elif isinstance(rec.get("input_fingerprints"), dict):
            changed = diff_keys(rec["input_fingerprints"], self.input_fingerprints)
        else:
            changed = []
        return StepState("stale", tuple(changed))

    def reuse(self, *, on_stale: Literal["redo", "refuse"] = "redo",
              made: str = "was made from other inputs", hint: str = "") -> bool:
        """True if the output can be reused as it is. Otherwise the caller (re)makes it; with
        ``on_stale="refuse"`` an output made from other inputs (or without a record) raises
        :class:`StaleStepError` instead, its message ``"<output> <made> (<what changed>);
        <hint>"``. With ``enabled=False`` nothing is reused."""
        st = self.state() if self.enabled else StepState("missing")
        if st.fresh:
            return True
        if st.status in ("stale", "unrecorded"):
            if on_stale == "refuse":
                raise StaleStepError(f"{self.output} {made} ({st.describe()})"
                                     + (f"; {hint}" if hint else ""), self.output,
                                     list(st.changed))
            log.warning("%s %s (%s); redoing it", self.output, made, st.describe())
        self.invalidate()
        return False

    def invalidate(self) -> None:
        """Remove a separate record file (a record inside the output goes with the output)."""
        if not self.inside:
            with contextlib.suppress(FileNotFoundError):
                self.record_path.unlink()

    def record(self, **extra: Any) -> dict[str, Any]:
        """Atomically write the record (with ``extra`` keys); a record inside the output keeps
        the file's other keys."""
        rec: dict[str, Any] = {}
        if self.inside:
            rec = self._stored() or {}
        rec.update(extra)
        rec.update(self.fields())
        write_json_atomic(self.record_path, rec)
        return rec
