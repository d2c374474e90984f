"""``llmrec knowledge import``: knowledge written elsewhere, into the knowledge cache.

Knowledge need not come from our own LLM layer: a study may ship the text its (larger) LLM wrote,
such as ``item_llm_text.json`` for MovieLens-1M (one paragraph per movie). Importing puts that
text into the same content-addressed cache as generated entries, so ``knowledge embed``, the
ranking augmentations and ``knowledge explain`` treat both alike. Provenance is explicit:

- ``model`` is ``external:<file name>`` and ``model_revision`` the first 16 hex digits of the
  file's sha256, so an edited file gives new entries rather than silently replacing old ones;
- ``backend`` is ``import``; ``raw`` keeps the source text exactly as it was;
- the shard's Parquet metadata holds the import config, versions and git revision.

Accepted sources: a JSON object ``{entity_id: text}`` or ``{entity_id: {field: text}}``, or JSON
lines ``{"id": ..., "text": ...}`` (or ``"fields": {...}``).

**Fields.** KSER weighs knowledge per field, and a paragraph has none. ``fields: heuristic``
(the default) splits the paragraph into sentences and gives each sentence to the template field
whose cue words it matches most (ties: the template's field order); a sentence matching no field
goes to the extra field ``text``, which therefore means "the rest" for imported entries (similar-
movie suggestions, generic praise: the kind of text KSER's filter should learn to down-weigh).
``fields: text`` keeps the whole paragraph as the single field ``text`` (stored under the template
name ``external_text``, so ``knowledge embed --item_template=external_text`` embeds it without the
template's empty fields). The heuristic is a keyword match, not a classifier: it is cheap, fully
deterministic and inspectable (``knowledge show``), and its misassignments only move a sentence to
another field, never drop it. Sources that already have fields are mapped onto the template's
fields by name (the same matching that parses LLM replies).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

from llmrec.config import option
from llmrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

RULES_VERSION = 1
TEXT_TEMPLATE = "external_text"

# Cue words per KAR factor (the item_movie / user_movie field ids). Matched as whole words, case
# insensitive; a trailing * matches any ending. Kept short and specific: a cue that fires on most
# sentences ("film") would only add ties.
CUES: dict[str, tuple[str, ...]] = {
    "genre": ("genre*", "comed*", "drama*", "thriller*", "horror", "action", "adventure*",
              "animat*", "documentar*", "musical*", "romance", "romantic", "sci-fi",
              "science fiction", "fantasy", "western*", "crime", "mystery", "noir", "war film",
              "family film", "children*", "satire", "parody", "biopic", "epic"),
    "director_actors": ("direct*", "star*", "cast", "actor*", "actress*", "voice*", "played by",
                        "portray*", "performer*", "filmmaker*", "ensemble"),
    "time_period_country": ("released", "release", "premiered", "decade", "centur*", "era",
                            "set in", "takes place", "language", "english-language", "country",
                            "american", "british", "french", "italian", "japanese", "german",
                            "hollywood", "1[89][0-9][0-9]s?", "20[0-9][0-9]s?"),
    "character": ("character*", "protagonist*", "hero", "heroine", "villain*", "antagonist*",
                  "role*", "named"),
    "plot_theme": ("story", "stories", "plot*", "follow*", "tale", "theme*", "narrative*",
                   "journey", "explor*", "about"),
    "mood_tone": ("heartwarming", "dark", "humor*", "humour*", "funny", "suspense*", "tense",
                  "emotional*", "charm*", "delightful", "gripping", "lighthearted",
                  "light-hearted", "tone", "mood", "atmospher*", "captivating", "thrilling",
                  "whimsical", "poignant", "witty", "touching"),
    "critical_acclaim": ("acclaim*", "award*", "oscar*", "academy", "nominat*", "critic*",
                         "praise*", "success*", "box office", "classic", "beloved", "must-watch",
                         "masterpiece", "cult", "popular*", "reception", "rating*"),
    "production_quality": ("cinematograph*", "visual*", "special effects", "effects", "editing",
                           "production", "screenplay", "script*", "written", "writer*",
                           "craft*", "revolution*", "pioneering", "budget"),
    "soundtrack": ("music*", "soundtrack*", "score", "song*", "composer*", "composed"),
}


def _cue_pattern(cue: str) -> str:
    body = re.escape(cue.rstrip("*")).replace(r"\ ", r"\s+")
    if cue.startswith(("1[", "20[")):
        # a bare year speaks of when the film is from or set; "(1994)" after a title is a
        # reference to another film, which says nothing about this one's period
        body = r"(?<!\()" + cue
    return body + (r"\w*" if cue.endswith("*") else "")


_CUE_RES = {f: re.compile(r"\b(?:" + "|".join(_cue_pattern(c) for c in cues) + r")\b", re.I)
            for f, cues in CUES.items()}


@dataclass
class ImportConfig:
    source: str = option("", help="file to import: JSON {id: text} or {id: {field: text}}, or "
                                  "JSON lines {\"id\": ..., \"text\": ...}")
    entity: Literal["item", "user"] = option("item", help="what the ids are")
    template: str = option("item_movie", help="template whose fields the text is split into "
                                              "(fields: heuristic) and whose name the entries get")
    fields: Literal["heuristic", "text"] = option(
        "heuristic", help="heuristic: sentences assigned to the template's fields by cue words, "
                          "unmatched ones to 'text'; text: the whole text as one field 'text'")
    cache_dir: str | None = option(None, help="knowledge cache folder (default LLMREC_HOME/knowledge)")
    limit: int | None = option(None, help="only the first N entries of the file")
    ids: list[str] = option([], help="only these entity ids")

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be >= 1")


def _checked(path: Path, where: str, eid: Any, value: Any) -> tuple[str, Any]:
    """``(id, text or {field: text})`` of one entry, or a DataError naming it: ids are strings
    or whole numbers, texts are strings (a number or a list is a mistake in the source, not
    text to store as its ``str()``)."""
    if isinstance(eid, bool) or not isinstance(eid, (str, int)) or str(eid).strip() == "":
        raise DataError(f"{path}, {where}: the id {eid!r} is not a string or a whole number; "
                        f"fix the source")
    if value is None or isinstance(value, str):
        return str(eid), value
    if isinstance(value, dict):
        for field, text in value.items():
            if text is not None and not isinstance(text, str):
                raise DataError(f"{path}, {where}: field {field!r} is {type(text).__name__} "
                                f"{_short(text)}, not text; write it as a JSON string")
        return str(eid), value
    raise DataError(f"{path}, {where}: expected text or {{field: text}}, found "
                    f"{type(value).__name__} {_short(value)}; write it as a JSON string")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def read_source(path: str | Path) -> Iterator[tuple[str, Any]]:
    """``(entity id, text or {field: text})`` pairs of a JSON or JSON-lines file, in file order;
    an entry that is not text is a DataError naming it, and so is a source without entries."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"knowledge source {path} does not exist")
    raw = path.read_text(encoding="utf-8")
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError:
        obj = None
    if path.suffix in (".jsonl", ".ndjson") or (
            isinstance(obj, dict) and "id" in obj and set(obj) <= {"id", "text", "fields"}):
        obj = None  # JSON lines (one record on one line is a JSON object too)
    n = 0
    if isinstance(obj, dict):
        for k, v in obj.items():
            n += 1
            yield _checked(path, f"entry {k!r}", k, v)
    else:
        if isinstance(obj, list):
            lines = [(i, "record", rec) for i, rec in enumerate(obj, start=1)]
        elif obj is not None and raw.strip():
            raise DataError(f"{path}: a JSON {type(obj).__name__}, not an object {{id: text}} "
                            f"or JSON lines of {{\"id\": ..., \"text\": ...}}")
        else:
            lines = []
            for i, line in enumerate(raw.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    lines.append((i, "line", json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}, line {i}: not JSON ({exc.msg})") from None
        for i, unit, rec in lines:
            if not isinstance(rec, dict) or "id" not in rec or not ({"text", "fields"} & set(rec)):
                raise DataError(f"{path}, {unit} {i}: expected an object with 'id' and 'text' "
                                f"or 'fields'")
            n += 1
            value = rec["fields"] if "fields" in rec else rec.get("text")
            if "fields" in rec and not isinstance(value, dict):
                raise DataError(f"{path}, {unit} {i}: 'fields' must be an object {{field: "
                                f"text}}, found {type(value).__name__}")
            yield _checked(path, f"{unit} {i} (id {rec['id']!r})", rec["id"], value)
    if n == 0:
        raise DataError(f"knowledge source {path} holds no entries; expected a JSON object "
                        f"{{id: text}} or JSON lines {{\"id\": ..., \"text\": ...}}")


def assign_sentences(text: str, field_ids: list[str]) -> dict[str, str]:
    """Split ``text`` into sentences and give each to the field whose cues it matches most.

    Returns ``{field: text}`` in template order, with the unmatched sentences under ``text``.
    """
    from llmrec.knowledge.embed import split_chunks
    from llmrec.knowledge.parse import RAW_FIELD

    buckets: dict[str, list[str]] = {}
    for sent in split_chunks(text, min_chars=12):
        best, best_hits = RAW_FIELD, 0
        for fid in field_ids:  # template order breaks ties
            rx = _CUE_RES.get(fid)
            hits = len(rx.findall(sent)) if rx is not None else 0
            if hits > best_hits:
                best, best_hits = fid, hits
        buckets.setdefault(best, []).append(sent)
    order = [f for f in field_ids if f in buckets] + ([RAW_FIELD] if RAW_FIELD in buckets else [])
    return {f: " ".join(buckets[f]) for f in order}


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def import_rows(cfg: ImportConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Cache rows for every entry of ``cfg.source`` (not yet written) and a summary."""
    from llmrec.knowledge.parse import RAW_FIELD, _key_map, _match
    from llmrec.knowledge.templates import load_template

    if not cfg.source:
        raise ConfigError("knowledge import needs --source=FILE")
    path = Path(cfg.source)
    sha = _file_sha(path) if path.is_file() else ""
    tmpl = load_template(cfg.template)
    if tmpl.entity != cfg.entity:
        raise ConfigError(f"template {tmpl.name!r} is for {tmpl.entity}s, not {cfg.entity}s")
    field_ids = tmpl.field_ids
    keys = _key_map(tmpl.fields)
    template_name = tmpl.name if cfg.fields == "heuristic" else TEXT_TEMPLATE
    template_hash = hashlib.sha256(json.dumps(
        [tmpl.hash if cfg.fields == "heuristic" else TEXT_TEMPLATE, cfg.fields, RULES_VERSION,
         CUES if cfg.fields == "heuristic" else None], sort_keys=True).encode()).hexdigest()[:16]
    model = f"external:{path.name}"
    wanted = set(cfg.ids) if cfg.ids else None
    rows: list[dict[str, Any]] = []
    counts = {"entries": 0, "ok": 0, "partial": 0, "empty": 0, "sentences_unassigned": 0}
    for eid, value in read_source(path):
        if wanted is not None and eid not in wanted:
            continue
        if isinstance(value, dict):  # the source has fields already: map them by name
            fields = {}
            for k, v in value.items():
                fid = _match(str(k), keys) or RAW_FIELD
                if v is not None and v.strip():
                    fields[fid] = (fields.get(fid, "") + " " + v.strip()).strip()
            raw = json.dumps(value, ensure_ascii=False)
        else:
            raw = "" if value is None else str(value)
            fields = assign_sentences(raw, field_ids) if cfg.fields == "heuristic" else \
                ({RAW_FIELD: raw.strip()} if raw.strip() else {})
        if not fields:
            counts["empty"] += 1
            continue
        if cfg.fields == "text":
            status, missing = "ok", []
        else:
            missing = [f for f in field_ids if f not in fields]
            status = "ok" if not missing else "partial"
        counts[status] += 1
        counts["entries"] += 1
        if RAW_FIELD in fields and cfg.fields == "heuristic":
            counts["sentences_unassigned"] += len(fields[RAW_FIELD].split(". "))
        prompt_hash = hashlib.sha256(raw.encode()).hexdigest()[:16]
        key = hashlib.sha256(json.dumps(
            {"v": RULES_VERSION, "entity": cfg.entity, "id": eid, "template": template_hash,
             "model": model, "revision": sha[:16], "text": prompt_hash},
            sort_keys=True).encode()).hexdigest()[:32]
        rows.append({
            "key": key, "entity": cfg.entity, "entity_id": eid, "template": template_name,
            "template_hash": template_hash, "model": model, "model_revision": sha[:16],
            "sampling": "{}", "seed": 0, "cutoff": None, "prompt_hash": prompt_hash,
            "field_ids": list(fields), "field_texts": list(fields.values()), "status": status,
            "missing": missing, "raw": raw, "attempts": 0, "prompt_tokens": 0,
            "completion_tokens": 0, "backend": "import", "job": template_hash,
        })
        if cfg.limit is not None and len(rows) >= cfg.limit:
            break
    if not rows:
        why = (f"none of the {len(wanted)} ids asked for (--ids) is in it" if wanted is not None
               and not counts["empty"] else f"all {counts['empty']} matching entries are empty")
        raise DataError(f"nothing to import from {path}: {why}")
    summary = {"source": str(path), "sha256": sha, "model": model, "template": template_name,
               "fields": cfg.fields, **counts}
    return rows, summary


def run_import(cfg: ImportConfig, *, out=print) -> dict[str, Any]:
    """Import ``cfg.source`` into the cache; entries already there (same key) are skipped."""
    from llmrec.artifacts import provenance
    from llmrec.knowledge.cache import KnowledgeCache

    rows, summary = import_rows(cfg)
    cache = KnowledgeCache(cfg.cache_dir).ensure()
    done = cache.done_keys()
    fresh = [r for r in rows if r["key"] not in done]
    if fresh:
        cache.write(fresh, provenance(cfg, source_sha256=summary["sha256"], kind="knowledge-import"))
    summary.update(written=len(fresh), already_cached=len(rows) - len(fresh), cache=str(cache.root))
    out(f"imported {summary['entries']:,} {cfg.entity} entries from {summary['source']} as "
        f"{summary['model']} (fields: {cfg.fields}; {summary['ok']} with every field, "
        f"{summary['partial']} partial, {summary['empty']} empty skipped): "
        f"{len(fresh):,} written, {summary['already_cached']:,} already cached -> {cache.root}")
    return summary


def cli_import(cfg: ImportConfig, args=None) -> int:
    """Handler for ``llmrec knowledge import`` (registered by ``llmrec.knowledge.cli``)."""
    run_import(cfg)
    return 0


def register_import(subparsers) -> None:
    """Add ``import`` to the ``llmrec knowledge`` subcommands (called by its ``register``)."""
    from llmrec.cli import add_config_command

    from llmrec.knowledge.cache import default_cache_dir

    add_config_command(subparsers, "import", ImportConfig, cli_import,
                       help="import knowledge written elsewhere (JSON / JSON lines) into the "
                            "cache, with provenance; split into the template's fields",
                       outputs=lambda c: [(c.cache_dir or default_cache_dir(), "--cache_dir")])
