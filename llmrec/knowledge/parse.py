"""Turning a model's reply into one text per knowledge field.

Small models rarely produce clean JSON, so parsing is lenient and layered:

1. a JSON object anywhere in the reply (code fences and chatter around it are ignored);
2. ``"key": "value"`` pairs of a truncated or slightly broken JSON object;
3. ``Label: text`` lines (a field's id or its label, any case, bullets and bold marks allowed),
   continuation lines appended to the field above.

Keys are matched to field ids after normalisation (case, spaces, punctuation, "and"/"/").
The result is ``ok`` (every field), ``partial`` (some) or ``raw`` (none: the caller keeps the
whole reply as one field and flags it, as the KSER spec asks).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from llmrec.knowledge.templates import Field

RAW_FIELD = "text"  # the single field holding an unparseable reply


def _norm(s: str) -> str:
    s = s.lower().replace("&", " and ").replace("/", " and ")
    return re.sub(r"[^a-z0-9]+", "", s)


@dataclass
class Parsed:
    fields: dict[str, str]
    status: str  # ok | partial | raw
    missing: list[str] = field(default_factory=list)


def _key_map(fields: Sequence[Field]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in fields:
        for name in (f.id, f.label, f.id.replace("_", " ")):
            out[_norm(name)] = f.id
        # "Director/actors" style labels: drop the connective "and"
        out[_norm(f.label).replace("and", "")] = f.id
    return out


def _match(key: str, keys: dict[str, str]) -> str | None:
    k = _norm(key)
    if not k:
        return None
    if k in keys:
        return keys[k]
    if k.replace("and", "") in keys:
        return keys[k.replace("and", "")]
    for name, fid in keys.items():  # "genres" -> "genre", "plot" -> "plot_theme"
        if len(k) >= 4 and (name.startswith(k) or k.startswith(name)):
            return fid
    return None


def _as_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, (list, tuple)):
        return "; ".join(_as_text(x) for x in v if _as_text(x))
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_as_text(x)}" for k, x in v.items() if _as_text(x))
    return str(v)


def _json_objects(text: str):
    """Every balanced {...} substring that parses as a JSON object, longest first."""
    starts = [i for i, c in enumerate(text) if c == "{"]
    found = []
    for s in starts:
        depth, in_str, esc = 0, False, False
        for i in range(s, len(text)):
            c = text[i]
            if in_str:
                if esc:
                    esc = False
                elif c == "\\":
                    esc = True
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    try:
                        obj = json.loads(text[s:i + 1])
                    except json.JSONDecodeError:
                        break
                    if isinstance(obj, dict):
                        found.append(obj)
                    break
    return sorted(found, key=len, reverse=True)


_PAIR = re.compile(r'"([^"\n]{1,60})"\s*:\s*"((?:[^"\\]|\\.)*)"?', re.S)
_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])?\s*\**\s*\"?([A-Za-z][A-Za-z /&_-]{1,50}?)\"?\s*\**\s*[:=]\s*\**\s*(.*)$")


def parse_fields(text: str, fields: Sequence[Field]) -> Parsed:
    keys = _key_map(fields)
    ids = [f.id for f in fields]
    best: dict[str, str] = {}

    def take(pairs) -> dict[str, str]:
        got: dict[str, str] = {}
        for k, v in pairs:
            fid = _match(str(k), keys)
            t = _as_text(v)
            if fid and t and fid not in got:
                got[fid] = t
        return got

    for obj in _json_objects(text):
        got = take(obj.items())
        if len(got) > len(best):
            best = got
    if len(best) < len(ids):
        pairs = []
        for m in _PAIR.finditer(text):
            val = m.group(2)
            try:
                val = json.loads(f'"{val}"')
            except json.JSONDecodeError:
                pass
            pairs.append((m.group(1), val))
        got = take(pairs)
        if len(got) > len(best):
            best = got
    if len(best) < len(ids):
        got = _parse_lines(text, keys)
        if len(got) > len(best):
            best = got
    best = {fid: best[fid] for fid in ids if fid in best}  # template order
    missing = [fid for fid in ids if fid not in best]
    if not best:
        stripped = text.strip()
        return Parsed({RAW_FIELD: stripped} if stripped else {}, "raw", missing)
    return Parsed(best, "ok" if not missing else "partial", missing)


def _parse_lines(text: str, keys: dict[str, str]) -> dict[str, str]:
    got: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        m = _LINE.match(line)
        fid = _match(m.group(1), keys) if m else None
        if fid is not None:
            current = fid if fid not in got else None  # a repeated label: ignore the repeat
            if current is not None:
                got[current] = [m.group(2).strip().strip('"').rstrip('",').strip()]
            continue
        if current is not None and line.strip() and not line.strip().startswith(("{", "}")):
            got[current].append(line.strip())
    return {k: " ".join(x for x in v if x).strip() for k, v in got.items()
            if " ".join(v).strip()}
