"""The SSRA prompt templates: ``prompts/synth/<name>.jinja``, rendered into chat messages.

A template defines a ``user`` block and optionally a ``system`` block; it may start with a Jinja
comment holding YAML front matter (``{#--- description: ... ---#}``). The sha256 of the file's
bytes is recorded in the provenance of every dataset generated with it, so data made with an
edited prompt can always be told apart.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.errors import ConfigError

_FRONT = re.compile(r"\A\s*\{#---\s*\n(.*?)\n---#\}", re.S)


def prompts_dir() -> Path:
    """``prompts/synth`` beside the ``llmrec`` package."""
    return Path(__file__).resolve().parents[2] / "prompts" / "synth"


@dataclass
class SynthPrompt:
    name: str
    path: Path
    hash: str
    description: str
    _template: Any

    def _block(self, block: str, ctx: dict[str, Any]) -> str:
        fn = self._template.blocks.get(block)
        if fn is None:
            return ""
        return "".join(fn(self._template.new_context(ctx))).strip()

    def messages(self, **ctx: Any) -> list[dict[str, str]]:
        """System (if any) and user messages for one prompt."""
        out = []
        system = self._block("system", ctx)
        if system:
            out.append({"role": "system", "content": system})
        out.append({"role": "user", "content": self._block("user", ctx)})
        return out

    def identity(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.hash, "path": str(self.path)}


def load_prompt(name_or_path: str) -> SynthPrompt:
    """``prompts/synth/<name>.jinja`` or a template file path."""
    import jinja2
    import yaml

    p = Path(name_or_path).expanduser()
    if not p.is_file():
        p = prompts_dir() / f"{name_or_path}.jinja"
    if not p.is_file():
        have = sorted(q.stem for q in prompts_dir().glob("*.jinja"))
        raise ConfigError(f"no synth prompt {name_or_path!r}: not a file and not one of "
                          f"{', '.join(have) or '(none)'} in {prompts_dir()}")
    source = p.read_bytes()
    text = source.decode("utf-8")
    description = ""
    m = _FRONT.match(text)
    if m:
        try:
            meta = yaml.safe_load(m.group(1)) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"prompt {p}: front matter is not valid YAML: {exc}") from None
        description = str(meta.get("description", "")).strip()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, autoescape=False)
    try:
        tmpl = env.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"prompt {p}, line {exc.lineno}: {exc.message}") from None
    if "user" not in tmpl.blocks:
        raise ConfigError(f"prompt {p} has no {{% block user %}}")
    return SynthPrompt(name=p.stem, path=p, hash=hashlib.sha256(source).hexdigest(),
                       description=description, _template=tmpl)


def shorten(text: str, max_words: int) -> str:
    """The first ``max_words`` words of ``text`` (prompts stay short for a small model)."""
    words = str(text).split()
    return " ".join(words[:max_words]) + (" ..." if len(words) > max_words else "")
