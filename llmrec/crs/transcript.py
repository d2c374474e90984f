"""Typed dialogue transcripts: what the engine writes and ECPO (and ``llmrec eval crs``) read.

A transcript is one finished dialogue, one JSON line of ``<run>/transcripts.jsonl``:

- :class:`Transcript`: the task, the turns, why it ended, the models and prompt hashes, and the
  outcome (``success``, ``hit_round``, ``recall5``, ``rounds``, ``failed_turns``, recomputable
  from the turns with :func:`llmrec.crs.metrics.outcome`);
- :class:`UserTurn`: the simulated user's message, the policy it followed, its prompts;
- :class:`AgentTurn`: the agent's action, the :class:`Search` calls of the turn, every LLM
  :class:`Step` (its prompt and output: ECPO's training material) and the raters'
  :class:`Rating` objects.

``to_dict`` writes exactly the JSON the engine has always written; ``from_dict`` reads it back,
checking every key's type and naming the first missing or bad one (with the file and line, when
read through :class:`TranscriptStore`). Keys a class does not know are kept in its ``extra``, so a
record written by a newer engine survives a read and a write unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence, Union

from llmrec.crs.tasks import Task
from llmrec.errors import DataError

log = logging.getLogger(__name__)

TRANSCRIPTS = "transcripts.jsonl"

Message = dict[str, str]


class TranscriptError(DataError):
    """A transcript record is missing a key or holds a value of the wrong type."""


@dataclass(kw_only=True)
class Search:
    """One catalog search of an agent turn."""

    query: str
    results: list[str]
    result_ids: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class Step:
    """One LLM call of an agent turn: the prompt (with ``save_prompts``) and the raw output; in
    structured decoding also the chosen kind and the argument the model wrote."""

    output: str
    prompt: list[Message] | None = None
    kind: str | None = None
    argument_output: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    _OMIT_IF_NONE: ClassVar[tuple[str, ...]] = ("prompt", "kind", "argument_output")


@dataclass(kw_only=True)
class Rating:
    """One rater's verdict on an agent turn (``rating`` is None for failed or unrated turns);
    the expression rater adds its deductions and their summary."""

    rating: int | None
    deductions: dict[str, int] | None = None
    details: str | None = None
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    _OMIT_IF_NONE: ClassVar[tuple[str, ...]] = ("deductions", "details")


@dataclass(kw_only=True)
class UserTurn:
    """The simulated user's message (``round`` = agent turns before it)."""

    round: int
    policy: str | None = None
    text: str
    accepted: bool = False
    leak_masked: bool = False
    options: list[str] | None = None
    prompt: list[Message] | None = None
    policy_prompt: list[Message] | None = None
    raw: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    role: ClassVar[str] = "user"
    _OMIT_IF_NONE: ClassVar[tuple[str, ...]] = ("prompt", "policy_prompt", "raw")


@dataclass(kw_only=True)
class AgentTurn:
    """The agent's turn: its searches and steps, the action it ended with (``ok`` false: a
    failed turn, ``error`` says why) and the raters' verdicts."""

    round: int
    ok: bool
    action: str | None = None
    argument: str | None = None
    titles: list[str] = field(default_factory=list)
    thought: str = ""
    text: str = ""
    raw: str = ""
    action_text: str = ""
    error: str | None = None
    searches: list[Search] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    recommended_ids: list[str | None] = field(default_factory=list)
    recall_hit: bool = False
    ratings: dict[str, Rating] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    role: ClassVar[str] = "assistant"


Turn = Union[UserTurn, AgentTurn]
_TURNS: dict[str, type] = {"user": UserTurn, "assistant": AgentTurn}


@dataclass(kw_only=True)
class Transcript:
    """One finished dialogue (one line of ``transcripts.jsonl``)."""

    task_id: str
    task: Task
    turns: list[Turn]
    end_reason: str | None = None
    max_rounds: int | None = None
    seed: int | None = None
    models: dict[str, Any] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None
    success: bool | None = None
    hit_round: int | None = None
    recall5: bool | None = None
    rounds: int | None = None
    failed_turns: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def agent_turns(self) -> list[AgentTurn]:
        return [t for t in self.turns if isinstance(t, AgentTurn)]

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "transcript") -> "Transcript":
        """Read a record; a missing or mistyped key raises :class:`TranscriptError` naming it
        (``where``: the file and line, or another label for the record)."""
        return _from_plain(cls, data, where, "")


def as_transcript(record: Transcript | dict[str, Any], where: str = "transcript") -> Transcript:
    """A :class:`Transcript` from either form."""
    return record if isinstance(record, Transcript) else Transcript.from_dict(record, where)


def turn_from_dict(data: Any, where: str = "turn") -> Turn:
    return _turn(data, where, "")


# --------------------------------------------------------------------------- plain <-> typed

def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        role = getattr(type(obj), "role", None)
        if role is not None:
            out["role"] = role
        omit = getattr(obj, "_OMIT_IF_NONE", ())
        for f in dataclasses.fields(obj):
            if f.name == "extra":
                continue
            value = getattr(obj, f.name)
            if value is None and f.name in omit:
                continue
            out[f.name] = _to_plain(value)
        out.update(getattr(obj, "extra", {}) or {})
        return out
    if isinstance(obj, list):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def _fail(where: str, path: str, what: str) -> TranscriptError:
    return TranscriptError(f"{where}: {path or 'record'}: {what}")


def _turn(data: Any, where: str, path: str) -> Turn:
    if not isinstance(data, dict):
        raise _fail(where, path, f"expected an object, got {type(data).__name__}")
    role = data.get("role")
    cls = _TURNS.get(role)  # type: ignore[arg-type]
    if cls is None:
        raise _fail(where, _join(path, "role"), f"expected one of {sorted(_TURNS)}, got "
                    f"{role!r}" if "role" in data else "missing key")
    return _from_plain(cls, {k: v for k, v in data.items() if k != "role"}, where, path)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _from_plain(cls: type, data: Any, where: str, path: str) -> Any:
    if not isinstance(data, dict):
        raise _fail(where, path, f"expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    has_extra = "extra" in fields
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields or key == "extra":
            if not has_extra:
                raise _fail(where, _join(path, key), f"unknown key (valid: {', '.join(fields)})")
            extra[key] = value
            continue
        kwargs[key] = _value(hints[key], value, where, _join(path, key))
    for name, f in fields.items():
        if name not in kwargs and name != "extra" and f.default is dataclasses.MISSING \
                and f.default_factory is dataclasses.MISSING:
            raise _fail(where, _join(path, name), "missing key")
    if has_extra:
        kwargs["extra"] = extra
    return cls(**kwargs)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _value(hint: Any, value: Any, where: str, path: str) -> Any:
    """Check ``value`` against the type ``hint`` and build the dataclasses it names."""
    if hint is Any:
        return value
    if hint == Turn:
        return _turn(value, where, path)
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _value(arg, value, where, path)
            except TranscriptError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise _fail(where, path, f"expected {_name(hint)}, got {_got(value)}")
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise _fail(where, path, f"expected one of {list(typing.get_args(hint))}, got "
                                     f"{value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise _fail(where, path, f"expected a list, got {_got(value)}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_value(item, v, where, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(where, path, f"expected an object, got {_got(value)}")
        _, item = typing.get_args(hint) or (str, Any)
        return {k: _value(item, v, where, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        # Task and Persona have no ``extra``: an unknown key there is an error
        return _from_plain(hint, value, where, path)
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise _fail(where, path, f"expected {_name(hint)}, got {_got(value)}")


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _got(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} ({text[:40] + '...' if len(text) > 40 else text})"


# --------------------------------------------------------------------------- the file

class TranscriptStore:
    """``transcripts.jsonl`` in the run folder: append-only, one finished dialogue per line."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.path = self.out / TRANSCRIPTS

    def transcripts(self) -> list[Transcript]:
        """Finished dialogues, typed and checked (a bad record names its file and line); a
        torn trailing line (a killed writer) is cut off the file, while a damaged line with
        records after it is an error (cutting there would lose them). A task id seen twice keeps
        its first record."""
        if not self.path.is_file():
            return []
        data = self.path.read_bytes()
        records: list[Transcript] = []
        good_end, seen, pos, lineno = 0, set(), 0, 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break  # no newline: the last write did not finish
            lineno += 1
            line = data[pos:nl]
            try:
                rec = json.loads(line) if line.strip() else None
            except json.JSONDecodeError as exc:
                rest = data[nl + 1:]
                if rest.strip():
                    # damage in the middle: cutting here would drop the valid records after it
                    n_after = len([x for x in rest.split(b"\n") if x.strip()])
                    raise DataError(
                        f"{self.path}:{lineno}: not a JSON record ({exc.msg}); the {n_after} "
                        f"line(s) after it are kept: delete or repair that line to resume") from None
                break  # the last line is torn: a killed writer
            if rec is not None:
                t = Transcript.from_dict(rec, f"{self.path}:{lineno}")
                if t.task_id not in seen:
                    seen.add(t.task_id)
                    records.append(t)
            pos = good_end = nl + 1
        if good_end < len(data):
            log.warning("%s: dropping %d bytes of an unfinished record (interrupted run)",
                        self.path, len(data) - good_end)
            with open(self.path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())
        return records

    def load(self) -> list[dict[str, Any]]:
        """:meth:`transcripts` as plain records (the JSON of each line)."""
        return [t.to_dict() for t in self.transcripts()]

    def append(self, record: Transcript | dict[str, Any]) -> None:
        """Append one finished dialogue (checked first), flushed and fsynced."""
        t = as_transcript(record, f"record for {self.path}")
        self.out.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(t.to_dict(), ensure_ascii=False, default=str) + "\n").encode()
        with open(self.path, "ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def reset(self) -> None:
        if self.path.exists():
            self.path.unlink()

    def export_arrow(self, records: Sequence[Transcript | dict[str, Any]]) -> Path:
        """One row per dialogue: outcome columns plus the whole transcript as JSON."""
        import pyarrow as pa

        from llmrec.artifacts import atomic_file
        from llmrec.crs.metrics import outcome

        rows = []
        for rec in records:
            r = rec.to_dict() if isinstance(rec, Transcript) else rec
            o = outcome(r)
            rows.append({"task_id": r["task_id"], "dataset": r["task"]["dataset"],
                         "user_id": r["task"]["user_id"], "target_id": r["task"]["target_id"],
                         "target_title": r["task"]["target_title"], "success": o["success"],
                         "recall5": o["recall5"], "rounds": o["rounds"],
                         "end_reason": r.get("end_reason"),
                         "transcript": json.dumps(r, ensure_ascii=False, default=str)})
        table = pa.Table.from_pylist(rows)
        path = self.out / "transcripts.arrow"
        with atomic_file(path, "wb") as fh:
            with pa.ipc.new_file(fh, table.schema) as writer:
                writer.write_table(table)
        return path


__all__ = ["AgentTurn", "Rating", "Search", "Step", "Transcript", "TranscriptError",
           "TranscriptStore", "Turn", "UserTurn", "as_transcript", "turn_from_dict"]
