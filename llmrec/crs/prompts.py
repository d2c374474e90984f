"""Prompt templates of the conversational stage: loading, rendering, content hashes.

Each template is one Jinja2 file under ``prompts/crs/`` (``agent``, ``simulator``, ``rater``,
``judge``) or any path given in a config. A file defines named blocks (``{% block system %}``,
``{% block user %}``, ...), one per prompt it provides; the code renders a block with a context
and wraps it into chat messages. The sha256 of the file's bytes is recorded with every run, so a
transcript always names the exact prompts that produced it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.errors import ConfigError


def prompts_root() -> Path:
    """The repository's ``prompts/`` folder (beside the ``llmrec`` package)."""
    return Path(__file__).resolve().parents[2] / "prompts"


@dataclass
class Prompt:
    """A loaded template file."""

    name: str
    path: Path
    hash: str
    template: Any

    def has(self, block: str) -> bool:
        return block in self.template.blocks

    def render(self, block: str, ctx: dict[str, Any]) -> str:
        if block not in self.template.blocks:
            raise ConfigError(f"prompt {self.path} has no {{% block {block} %}}")
        text = "".join(self.template.blocks[block](self.template.new_context(dict(ctx))))
        return text.strip()

    def messages(self, block: str, ctx: dict[str, Any], system: str | None = "system"
                 ) -> list[dict[str, str]]:
        """Chat messages: the ``system`` block (if the file has one) then ``block`` as the user."""
        out = []
        if system and self.has(system):
            text = self.render(system, ctx)
            if text:
                out.append({"role": "system", "content": text})
        out.append({"role": "user", "content": self.render(block, ctx)})
        return out


def load_prompt(name_or_path: str, required: tuple[str, ...] = (), folder: str = "crs") -> Prompt:
    """Load ``prompts/<folder>/<name>.jinja`` or a template file, checking ``required`` blocks
    exist."""
    import jinja2

    p = Path(name_or_path).expanduser()
    if not p.is_file():
        p = prompts_root() / folder / f"{name_or_path}.jinja"
    if not p.is_file():
        have = sorted(q.stem for q in (prompts_root() / folder).glob("*.jinja"))
        raise ConfigError(f"no prompt template {name_or_path!r}: not a file and not one of "
                          f"{', '.join(have) or '(none found)'} in {prompts_root() / folder}")
    source = p.read_bytes()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, autoescape=False, keep_trailing_newline=False)
    try:
        template = env.from_string(source.decode("utf-8"))
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"prompt {p}, line {exc.lineno}: {exc.message}") from None
    missing = [b for b in required if b not in template.blocks]
    if missing:
        raise ConfigError(f"prompt {p} lacks the block(s) {', '.join(missing)} "
                          f"(has: {', '.join(template.blocks) or 'none'})")
    return Prompt(name=p.stem, path=p, hash=hashlib.sha256(source).hexdigest()[:16],
                  template=template)
