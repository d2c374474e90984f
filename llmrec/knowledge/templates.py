"""Prompt templates for knowledge generation: loading, rendering, content hashes.

A template is one Jinja2 file under ``prompts/knowledge/`` (or any path). It starts with a Jinja
comment holding YAML front matter, ``{#--- ... ---#}``, which declares the entity kind, the domain
and the knowledge *fields* (KAR's factors: one answer per factor), and defines the blocks
``system`` (optional), ``user`` and ``repair`` (the prompt that asks the model to restructure an
unparseable answer). The file stays valid Jinja, so editors and linters treat it as one.

The template's content hash (sha256 of the file's bytes) is part of every cache key: editing a
prompt, even by one character, yields new cache entries instead of mixing old and new answers.
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
    """The repository's ``prompts/`` folder (beside the ``llmrec`` package)."""
    return Path(__file__).resolve().parents[2] / "prompts"


@dataclass(frozen=True)
class Field:
    id: str
    label: str
    ask: str


@dataclass
class PromptTemplate:
    name: str
    path: Path
    entity: str
    domain: str
    description: str
    fields: list[Field]
    hash: str
    _template: Any = None

    @property
    def field_ids(self) -> list[str]:
        return [f.id for f in self.fields]

    def _block(self, name: str, ctx: dict[str, Any]) -> str:
        tmpl = self._template
        if name not in tmpl.blocks:
            return ""
        full = {"fields": self.fields, **ctx}
        text = "".join(tmpl.blocks[name](tmpl.new_context(full)))
        return text.strip()

    def messages(self, ctx: dict[str, Any], block: str = "user") -> list[dict[str, str]]:
        """The chat messages for one entity: the system block (if any) then ``block``."""
        out = []
        system = self._block("system", ctx)
        if system:
            out.append({"role": "system", "content": system})
        out.append({"role": "user", "content": self._block(block, ctx)})
        return out

    @property
    def has_repair(self) -> bool:
        return "repair" in self._template.blocks

    def repair_messages(self, ctx: dict[str, Any], raw: str) -> list[dict[str, str]] | None:
        if "repair" not in self._template.blocks:
            return None
        return self.messages({**ctx, "raw": raw}, block="repair")

    def json_schema(self) -> dict[str, Any]:
        """A JSON schema with one string property per field (for guided decoding)."""
        return {
            "type": "object",
            "properties": {f.id: {"type": "string"} for f in self.fields},
            "required": self.field_ids,
            "additionalProperties": False,
        }


def load_template(name_or_path: str) -> PromptTemplate:
    """Load ``prompts/knowledge/<name>.jinja`` or a template file path."""
    import jinja2
    import yaml

    p = Path(name_or_path).expanduser()
    if not p.is_file():
        p = prompts_dir() / "knowledge" / f"{name_or_path}.jinja"
    if not p.is_file():
        have = sorted(q.stem for q in (prompts_dir() / "knowledge").glob("*.jinja"))
        raise ConfigError(f"no prompt template {name_or_path!r}: not a file and not one of "
                          f"{', '.join(have) or '(none found)'} in {prompts_dir() / 'knowledge'}")
    source = p.read_bytes()
    text = source.decode("utf-8")
    m = _FRONT.match(text)
    if not m:
        raise ConfigError(f"template {p} must start with a '{{#--- ... ---#}}' front-matter comment "
                          f"declaring entity, domain and fields")
    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"template {p}: front matter is not valid YAML: {exc}") from None
    fields = [Field(str(f["id"]), str(f.get("label", f["id"])), str(f.get("ask", "")))
              for f in meta.get("fields", [])]
    if not fields:
        raise ConfigError(f"template {p} declares no fields")
    if len({f.id for f in fields}) != len(fields):
        raise ConfigError(f"template {p} declares a field id twice")
    entity = meta.get("entity")
    if entity not in ("item", "user"):
        raise ConfigError(f"template {p}: entity must be 'item' or 'user', got {entity!r}")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             autoescape=False, keep_trailing_newline=False)
    try:
        tmpl = env.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"template {p}, line {exc.lineno}: {exc.message}") from None
    if "user" not in tmpl.blocks:
        raise ConfigError(f"template {p} has no {{% block user %}}")
    return PromptTemplate(name=p.stem, path=p, entity=entity, domain=str(meta.get("domain", "")),
                          description=str(meta.get("description", "")).strip(), fields=fields,
                          hash=hashlib.sha256(source).hexdigest()[:16], _template=tmpl)
