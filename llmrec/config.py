"""Dataclass configs: YAML files, CLI overrides, strict keys, help text.

A config is a plain dataclass that lives next to the thing it configures (``SplitConfig`` beside
the split code). Every field is declared with :func:`option`, which requires help text. Values are
resolved in this order: dataclass defaults, then a YAML file, then ``--a.b=c`` flags. Unknown keys
are errors that name the bad key and the valid ones, because a silently ignored misspelled flag is
the most common way to run the wrong experiment.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from llmrec.errors import ConfigError

_MISSING = dataclasses.MISSING


def option(default: Any = _MISSING, *, help: str, default_factory: Any = _MISSING, secret: bool = False):
    """Declare a config field with its help text.

    ``secret=True`` keeps the value out of saved configs and logs (e.g. anything credential-like).
    """
    if not help or not help.strip():
        raise ValueError("every config option needs help text")
    meta = {"help": help, "secret": secret}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        inner = " | ".join(_type_name(a) for a in args)
        return f"{inner} (optional)" if len(args) < len(typing.get_args(tp)) else inner
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list[{_type_name(args[0])}]" if args else "list"
    if origin is dict:
        args = typing.get_args(tp)
        return f"dict[{_type_name(args[0])}, {_type_name(args[1])}]" if args else "dict"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or a flag) to type ``tp`` or raise a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: cannot use {value!r} as {_type_name(tp)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        for a in allowed:
            if value == a or (isinstance(value, (int, float, bool)) and str(value) == str(a)):
                return a
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")
    if origin in (list, tuple):
        (inner,) = typing.get_args(tp)[:1] or (Any,)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()] if value.strip() else []
        if not isinstance(value, (list, tuple)):
            value = [value]
        out = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        kt, vt = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {_coerce(k, kt, key): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} options, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).replace("_", ""))
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def _unknown_key_error(cls: type, key: str, prefix: str) -> ConfigError:
    valid = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
    return ConfigError(
        f"unknown config key '{prefix}{key}'.{hint} Valid keys"
        f"{' under ' + prefix.rstrip('.') if prefix else ''}: {', '.join(valid)}"
    )


def from_dict(cls: type, data: dict[str, Any] | None, prefix: str = ""):
    """Build ``cls`` from a (possibly nested) mapping, rejecting unknown keys."""
    data = dict(data or {})
    hints = _hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown_key_error(cls, key, prefix)
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required option was not given
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from None
    except ValueError as exc:  # __post_init__ validation
        raise ConfigError(f"{prefix}{exc}") from None
    return obj


# scheme://user:password@host (or scheme://token@host): the credentials part of a URL
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def redact_url(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``***``
    (``http://user:key@host/v1`` -> ``http://***@host/v1``)."""
    return _URL_USERINFO.sub(lambda m: m.group("scheme") + "***@", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_url(value) if "@" in value else value
    if isinstance(value, list):
        return [_redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    return value


def to_dict(cfg: Any, *, redact: bool = True) -> dict[str, Any]:
    """The config as plain data (for saving beside artifacts). With ``redact`` (the default),
    ``secret`` options are left out and credentials inside URLs (``http://user:key@host``) are
    replaced by ``***``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if redact and f.metadata.get("secret"):
            continue
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value, redact=redact)
        elif isinstance(value, tuple):
            value = list(value)
        if redact:
            value = _redact_value(value)
        out[f.name] = value
    return out


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = data
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def _check_path(cls: type, dotted: str) -> Any:
    """Return the field type at ``dotted`` in ``cls`` or raise a ConfigError naming the bad part."""
    cur = cls
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        prefix = ".".join(parts[:i]) + ("." if i else "")
        if not _is_dataclass_type(cur):
            raise ConfigError(f"unknown config key '{dotted}': '{prefix.rstrip('.')}' has no sub-keys")
        names = {f.name for f in dataclasses.fields(cur)}
        if part not in names:
            raise _unknown_key_error(cur, part, prefix)
        cur = _hints(cur)[part]
        # unwrap Optional[Dataclass]
        if typing.get_origin(cur) in (Union, types.UnionType):
            dcs = [a for a in typing.get_args(cur) if _is_dataclass_type(a)]
            if dcs:
                cur = dcs[0]
    return cur


def parse_overrides(args: list[str]) -> list[tuple[str, str | None]]:
    """Parse ``--a.b=c`` / ``--a.b c`` flags into (key, raw value) pairs; a bare ``--flag``
    (no value follows) gives ``None``, which only a boolean option accepts (as true)."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(
                f"unexpected argument {arg!r}: config overrides look like --key=value (e.g. --seed=1)"
            )
        body = arg[2:]
        if "=" in body:
            key, raw = body.split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            key, raw = body, args[i + 1]
            i += 1
        else:
            key, raw = body, None  # a bare flag: switches a boolean on
        out.append((key.replace("-", "_"), raw))
        i += 1
    return out


def _parse_scalar(raw: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        return raw


def load_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist: check the path given to --config")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of options at the top level")
    return data


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None):
    """Resolve a config: defaults < ``base`` < YAML at ``path`` < ``--key=value`` overrides."""
    data: dict[str, Any] = {}
    for source in (base or {}), (load_yaml(path) if path else {}):
        _deep_update(data, source)
    for key, raw in parse_overrides(overrides or []):
        tp = _check_path(cls, key)
        if raw is None:
            if not _is_bool(tp):
                raise ConfigError(f"--{key} needs a value ({_type_name(tp)}); write "
                                  f"--{key}=VALUE")
            raw = "true"
        value = _parse_scalar(raw)
        if tp is str:
            value = raw  # keep strings verbatim ("1e3" stays "1e3")
        _set_path(data, key, value)
    return from_dict(cls, data)


def _is_bool(tp: Any) -> bool:
    """``bool`` or ``bool | None``: the types a bare ``--flag`` may switch on."""
    if tp is bool:
        return True
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args == [bool]
    return False


def _deep_update(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) for every option, nested configs flattened with dots."""
    rows = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _is_dataclass_type(tp):
            rows.extend(describe(tp, prefix + f.name + "."))
            continue
        if f.default is not _MISSING:
            default = f.default
        elif f.default_factory is not _MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = "(required)"
        rows.append((prefix + f.name, _type_name(tp), repr(default), f.metadata.get("help", "")))
    return rows


HELP_WIDTH = 100
_DEFAULT_WIDTH = 60


def format_help(cls: type) -> str:
    """Text listing every option of ``cls`` for a command's --help: the top-level options
    first, then one group per nested section; lines kept under ``HELP_WIDTH`` characters (long
    defaults shortened; the YAML of a recipe shows them whole)."""
    groups: dict[str, list[tuple[str, str, str, str]]] = {"": []}
    for row in describe(cls):
        head = row[0].split(".", 1)[0] if "." in row[0] else ""
        groups.setdefault(head, []).append(row)
    wrap = textwrap.TextWrapper(width=HELP_WIDTH, initial_indent="      ",
                                subsequent_indent="      ", break_on_hyphens=False)
    lines = ["config options (set in --config YAML, override with --key=value):"]
    for head, rows in groups.items():
        if not rows:
            continue
        if len(groups) > 1:
            lines += ["", f" {head}:" if head else " general:"]
        for key, tp, default, help_text in rows:
            if len(default) > _DEFAULT_WIDTH:
                default = default[:_DEFAULT_WIDTH - 4] + " ..."
            line = f"  --{key}={tp}  [default: {default}]"
            if len(line) > HELP_WIDTH:
                line = textwrap.shorten(line, width=HELP_WIDTH, placeholder=" ...")
            lines.append(line)
            lines.extend(wrap.wrap(help_text) or [""])
    return "\n".join(lines)
