"""``llmrec knowledge generate|embed|show|stats|export``."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Literal

from llmrec.config import option

log = logging.getLogger(__name__)


@dataclass
class ShowConfig:
    cache_dir: str | None = option(None, help="knowledge cache folder (default LLMREC_HOME/knowledge)")
    entity: Literal["item", "user"] = option("item", help="item or user")
    id: str | None = option(None, help="entity id to show (default: the first cached one)")
    template: str | None = option(None, help="only entries of this template name")
    model: str | None = option(None, help="only entries of this model id")
    n: int = option(1, help="show at most this many entries")
    raw: bool = option(False, help="also print the model's raw reply")
    json: bool = option(False, help="print entries as JSON")

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1 (got {self.n})")


@dataclass
class StatsConfig:
    cache_dir: str | None = option(None, help="knowledge cache folder (default LLMREC_HOME/knowledge)")
    json: bool = option(False, help="print as JSON")


@dataclass
class ExportConfig:
    cache_dir: str | None = option(None, help="knowledge cache folder (default LLMREC_HOME/knowledge)")
    out: str = option("runs/knowledge", help="folder to write knowledge.parquet into (atomically)")
    entity: Literal["item", "user"] | None = option(None, help="only items or only users")
    template: str | None = option(None, help="only entries of this template name")
    model: str | None = option(None, help="only entries of this model id")


def _generate(cfg, args) -> int:
    from llmrec.knowledge.generate import run_generate

    summary = run_generate(cfg)
    return 1 if summary["totals"]["failed"] else 0


def _embed(cfg, args) -> int:
    from llmrec.knowledge.embed import run_embed

    run_embed(cfg)
    return 0


def _filters(cfg) -> dict:
    return {k: getattr(cfg, k) for k in ("entity", "template", "model") if getattr(cfg, k, None)}


def _show(cfg, args) -> int:
    from llmrec.errors import LlmrecError
    from llmrec.knowledge.cache import KnowledgeCache

    cache = KnowledgeCache(cfg.cache_dir).require()
    df = cache.read(**_filters(cfg))
    if cfg.id is not None:
        df = df[df["entity_id"] == cfg.id]
    if df.empty:
        what = f"{cfg.entity} {cfg.id}" if cfg.id else f"any {cfg.entity}"
        raise LlmrecError(f"no cached knowledge for {what} in {cache.root} (matching "
                          f"{_filters(cfg)}); run `llmrec knowledge generate` first")
    for _, row in df.head(cfg.n).iterrows():
        if cfg.json:
            rec = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in row.items()}
            print(json.dumps(rec, default=str, ensure_ascii=False, indent=2))
            continue
        print("=" * 78)
        print(f"{row['entity']} {row['entity_id']}  template {row['template']} ({row['template_hash']})"
              f"  model {row['model']}@{row['model_revision']}")
        print(f"status {row['status']}  attempts {row['attempts']}  tokens "
              f"{row['prompt_tokens']}+{row['completion_tokens']}  key {row['key']}")
        if isinstance(row["cutoff"], str):
            print(f"cutoff {row['cutoff']} (the LM-history shown in the prompt)")
        for fid, text in zip(row["field_ids"], row["field_texts"]):
            print(f"- {fid}: {text}")
        if len(row["missing"]) and row["status"] == "partial":
            print(f"  (missing: {', '.join(row['missing'])})")
        if cfg.raw:
            print("--- raw reply ---")
            print(row["raw"])
    return 0


def _stats(cfg, args) -> int:
    from llmrec.knowledge.cache import KnowledgeCache

    s = KnowledgeCache(cfg.cache_dir).require().stats()
    if cfg.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"knowledge cache {s['root']}: {s['entries']:,} entries in {s['shards']} shards "
          f"({s['bytes'] / 1e6:.1f} MB), {s['claims_open']} open claims")
    for g in s["groups"]:
        print(f"  {g['entity']:<5} {g['template']:<14} {g['model']}@{g['revision']}: "
              f"{g['entries']:,} entries ({g['ok']} ok, {g['partial']} partial, {g['raw']} raw), "
              f"{g['mean_fields']} fields each, {g['completion_tokens']:,} generated tokens")
    if s["corrupt_shards"]:
        print(f"  {len(s['corrupt_shards'])} unreadable shard(s) moved aside in {s['root']}/shards "
              f"(*.corrupt-*): the next `llmrec knowledge generate` (or import) remakes their "
              f"entries; delete those files once you no longer need them")
    return 0


def _export(cfg, args) -> int:
    from llmrec.artifacts import atomic_dir, write_meta
    from llmrec.knowledge.cache import KnowledgeCache

    cache = KnowledgeCache(cfg.cache_dir).require()
    df = cache.read(**_filters(cfg))
    with atomic_dir(cfg.out) as tmp:
        df.to_parquet(tmp / "knowledge.parquet", index=False)
        write_meta(tmp, cfg, cache=str(cache.root), entries=int(len(df)))
    print(f"exported {len(df):,} entries from {cache.root} -> {cfg.out}/knowledge.parquet")
    return 0


def register(subparsers) -> None:
    from llmrec.cli import add_config_command
    from llmrec.knowledge.embed import EmbedConfig
    from llmrec.knowledge.generate import GenerateConfig

    p = subparsers.add_parser("knowledge", help="LLM knowledge about items and users: generate, "
                                                "embed, inspect", description=(
        "Generate item knowledge and user preference reasoning with an LLM into a "
        "content-addressed cache, embed it, and inspect or export it."))
    p.set_defaults(_handler=None, _group_parser=p)
    sub = p.add_subparsers(dest="knowledge_command", metavar="SUBCOMMAND")
    for name, cls, fn, help_text, outputs in (
        ("generate", GenerateConfig, _generate,
         "generate (or resume) knowledge for items and/or users into the cache",
         lambda c: [(_cache_root(c), "--cache_dir")]),
        ("embed", EmbedConfig, _embed,
         "embed cached knowledge: per-field sentence chunks + a whole-text vector per entity",
         lambda c: [(c.out, "--out") if c.out else (_cache_root(c) / "embeddings", "--out")]),
        ("show", ShowConfig, _show, "print one entity's cached knowledge fields", None),
        ("stats", StatsConfig, _stats, "entries, parse status and tokens per template and model",
         None),
        ("export", ExportConfig, _export, "write cached entries (deduplicated) to a Parquet file",
         lambda c: [(c.out, "--out")]),
    ):
        add_config_command(sub, name, cls, fn, help=help_text, outputs=outputs)

    from llmrec.knowledge.explain import register_explain
    from llmrec.knowledge.importer import register_import

    register_import(sub)
    register_explain(sub)


def _cache_root(cfg):
    from pathlib import Path

    from llmrec.knowledge.cache import default_cache_dir

    return Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
