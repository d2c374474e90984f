"""``llmrec knowledge generate``: item knowledge and user preference reasoning, cached.

For each entity (item, or user with their LM-history only) the template renders one prompt; the
LLM answers with one text per knowledge field. A reply that does not parse into every field goes
through a bounded repair loop, batched across the entities of a flush: first a *repair* prompt
that asks the model to restructure its own answer, then a fresh sample with another seed. The
best attempt (most fields) is kept; a reply that never parses is kept whole as one field and
flagged ``raw``, never dropped.

Work is flushed to the cache every ``flush_every`` entities, each flush one atomic shard, so a
killed run resumes where it stopped. ``shard: i/N`` splits one job over processes or machines by
a hash of the entity id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

from llmrec.config import option
from llmrec.data.loaders import DataConfig
from llmrec.data.splits import SplitConfig
from llmrec.errors import ConfigError
from llmrec.headline.filters import RatingDenoiseConfig, denoise_ratings
from llmrec.llm.config import LLMConfig

log = logging.getLogger(__name__)

KEY_VERSION = 1


@dataclass
class GenerateConfig:
    data: DataConfig = option(default_factory=DataConfig, help="the dataset whose entities to describe")
    split: SplitConfig = option(default_factory=SplitConfig,
                                help="split protocol giving each user's LM-history cutoff")
    split_path: str | None = option(None, help="a saved split (llmrec data split --out) to use "
                                               "instead of making one from `split`")
    llm: LLMConfig = option(default_factory=LLMConfig, help="the LLM backend and sampling")
    entities: Literal["items", "users", "both"] = option("items", help="which entities to describe")
    item_template: str = option("item_movie", help="template name in prompts/knowledge or a path")
    user_template: str = option("user_movie", help="template name in prompts/knowledge or a path")
    cache_dir: str | None = option(None, help="knowledge cache folder (default LLMREC_HOME/knowledge)")
    limit: int | None = option(None, help="only the first N entities of each kind (table order)")
    ids: list[str] = option([], help="only these entity ids (comma-separated)")
    shard: str = option("0/1", help="i/N: this process takes the entities whose id hash is i mod N")
    flush_every: int = option(64, help="entities per cache shard write (a kill loses at most this many)")
    max_attempts: int = option(3, help="attempts per entity: the answer, a repair prompt, a resample")
    retry_temperature: float = option(0.7, help="temperature of the resample attempt (if greedy)")
    max_history: int = option(30, help="at most this many LM-history interactions in a user prompt")
    denoise: RatingDenoiseConfig = option(
        default_factory=RatingDenoiseConfig,
        help="filter each user's LM history (low ratings, rating bursts) before the user prompt; "
             "off by default (llmrec.headline.filters)")

    def __post_init__(self) -> None:
        shard_index(self.shard)
        if self.flush_every < 1:
            raise ValueError("flush_every must be >= 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 (got {self.limit}); leave it unset for every "
                             f"entity")


def shard_index(spec: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/N (e.g. 0/4), got {spec!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"shard {spec!r}: need 0 <= i < N")
    return i, n


def in_shard(entity_id: str, spec: str) -> bool:
    i, n = shard_index(spec)
    h = int.from_bytes(hashlib.sha256(entity_id.encode()).digest()[:8], "little")
    return h % n == i


@dataclass
class Entity:
    """One thing to describe: its id, template context and (users) cutoff."""

    kind: str  # item | user
    id: str
    ctx: dict[str, Any]
    cutoff: dict[str, Any] | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
    key: str = ""
    prompt_hash: str = ""
    seed: int = 0


# -- entity contexts -------------------------------------------------------------------------------

def _clean(v: Any) -> Any:
    """Arrow/pandas values -> plain JSON-able Python (lists, None for NaN, ints for whole floats)."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if v.is_integer():
            return int(v)
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def item_contexts(data) -> Iterator[tuple[str, dict[str, Any]]]:
    df = data.df("items")
    cols = list(df.columns)
    for row in df.itertuples(index=False):
        rec = {c: _clean(getattr(row, c)) for c in cols}
        item = {"title": rec.get("title") or "", "year": rec.get("year"),
                "genres": rec.get("genres") or [], "tags": rec.get("tags") or [],
                "text": rec.get("text") or rec.get("plot") or ""}
        for c, v in rec.items():  # dataset-specific columns stay reachable from templates
            item.setdefault(c, v)
        yield str(rec["item_id"]), {"item": item}


def user_contexts(data, split, max_history: int, denoise: RatingDenoiseConfig | None = None
                  ) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Per user: id, template context (the LM history's last ``max_history`` interactions,
    after ``denoise`` when it is enabled) and the cutoff the cache key records."""
    items = data.df("items").set_index("item_id") if data.has("items") else None
    profiles: dict[str, dict[str, Any]] = {}
    if data.has("users"):
        udf = data.df("users")
        extra = [c for c in udf.columns if c != "user_id"]
        for row in udf.itertuples(index=False):
            prof = {c: _clean(getattr(row, c)) for c in extra}
            profiles[str(row.user_id)] = {k: v for k, v in prof.items() if v not in (None, "", [])}
    max_rating = None
    if data.has("interactions"):
        r = data.df("interactions")["rating"]
        if r.notna().any():
            max_rating = _clean(float(r.max()))
    hist = split.history
    cut = split.cutoffs.set_index("user_id")["n_lm"]
    lm = hist[hist["position"] < hist["user_id"].map(cut)]
    by_user = {uid: part for uid, part in lm.groupby("user_id", sort=False)}
    for uid in split.cutoffs["user_id"]:
        n_lm = int(cut[uid])
        part = by_user.get(uid)
        rows = []
        if part is not None:
            part = part.sort_values("position")
            if denoise is not None and denoise.enabled:
                keep, _ = denoise_ratings(part["rating"].to_numpy(dtype=float),
                                          part["timestamp"].to_numpy(dtype=float), denoise)
                part = part[keep]
            # the most recent interactions of the LM-history, oldest first
            for r in part.tail(max_history).itertuples(index=False):
                iid = str(r.item_id)
                meta = items.loc[iid] if items is not None and iid in items.index else None
                rows.append({
                    "item_id": iid,
                    "title": (meta["title"] if meta is not None else iid),
                    "year": _clean(meta["year"]) if meta is not None and "year" in meta else None,
                    "genres": _clean(meta["genres"]) if meta is not None and "genres" in meta else [],
                    "rating": _clean(r.rating),
                })
        ctx = {"profile": profiles.get(str(uid), {}), "history": rows, "max_rating": max_rating}
        yield str(uid), ctx, {"n_lm": n_lm, "split": split.fingerprint}


def entry_key(e: Entity, template, identity: dict[str, str], sampling: dict[str, Any]) -> str:
    blob = json.dumps({"v": KEY_VERSION, "entity": e.kind, "id": e.id, "template": template.hash,
                       "model": identity["model"], "revision": identity["revision"],
                       "sampling": sampling, "seed": e.seed, "cutoff": e.cutoff,
                       "prompt": e.prompt_hash}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# -- the run ---------------------------------------------------------------------------------------

@dataclass
class _Totals:
    planned: int = 0
    cached: int = 0
    generated: int = 0
    ok: int = 0
    partial: int = 0
    raw: int = 0
    failed: int = 0
    skipped_claimed: int = 0
    retried: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _attempt(backend, messages: list[list[dict[str, str]]], sp, seeds, template,
             totals: _Totals):
    schema = template.json_schema() if backend.cfg.guided else None
    gens = backend.generate(messages, sp, seeds=seeds, json_schema=schema)
    totals.calls += len(gens)
    for g in gens:
        totals.prompt_tokens += g.prompt_tokens
        totals.completion_tokens += g.completion_tokens
    return gens


def generate_entities(backend, template, entities: list[Entity], cfg: GenerateConfig,
                      totals: _Totals) -> list[dict[str, Any]]:
    """Run the answer / repair / resample loop for one flush; returns cache rows."""
    from llmrec.knowledge.parse import parse_fields

    sp = cfg.llm.sampling()
    best: dict[int, Any] = {}
    tokens: dict[int, list[int]] = {i: [0, 0] for i in range(len(entities))}
    attempts: dict[int, int] = {i: 0 for i in range(len(entities))}
    errors: dict[int, str] = {}

    def record(idx: list[int], gens) -> None:
        for i, g in zip(idx, gens):
            attempts[i] += 1
            tokens[i][0] += g.prompt_tokens
            tokens[i][1] += g.completion_tokens
            if g.finish_reason == "error":
                errors[i] = g.error or "error"
                continue
            errors.pop(i, None)
            parsed = parse_fields(g.text, template.fields)
            prev = best.get(i)
            if prev is None or _rank(parsed) > _rank(prev[0]):
                best[i] = (parsed, g.text)

    idx = list(range(len(entities)))
    gens = _attempt(backend, [e.messages for e in entities], sp, [e.seed for e in entities],
                    template, totals)
    record(idx, gens)
    for attempt in range(2, cfg.max_attempts + 1):
        todo = [i for i in idx if i not in best or best[i][0].status != "ok"]
        if not todo:
            break
        totals.retried += len(todo)
        if attempt == 2 and template.has_repair:
            # repair: hand the model its own answer and ask for the structure only (greedy)
            todo = [i for i in todo if i in best]
            if not todo:
                continue
            msgs = [template.repair_messages(entities[i].ctx, best[i][1]) for i in todo]
            gens = _attempt(backend, msgs, dataclasses.replace(sp, temperature=0.0),
                            [entities[i].seed for i in todo], template, totals)
        else:
            # resample the original prompt with another seed (sampled even if the run is greedy)
            temp = sp.temperature if sp.temperature > 0 else cfg.retry_temperature
            resample = dataclasses.replace(sp, temperature=temp)
            gens = _attempt(backend, [entities[i].messages for i in todo], resample,
                            [(entities[i].seed + attempt) & 0x7FFFFFFF for i in todo], template,
                            totals)
        record(todo, gens)

    rows = []
    job = cfg_job_id(cfg, template)
    for i, e in enumerate(entities):
        if i not in best:
            totals.failed += 1
            log.warning("no answer for %s %s: %s", e.kind, e.id, errors.get(i, "unknown error"))
            continue
        parsed, raw = best[i]
        setattr(totals, parsed.status, getattr(totals, parsed.status) + 1)
        totals.generated += 1
        rows.append({
            "key": e.key, "entity": e.kind, "entity_id": e.id, "template": template.name,
            "template_hash": template.hash, "model": backend.model_id,
            "model_revision": backend.model_revision,
            "sampling": json.dumps(sp.key(), sort_keys=True), "seed": e.seed,
            "cutoff": json.dumps(e.cutoff, sort_keys=True) if e.cutoff is not None else None,
            "prompt_hash": e.prompt_hash,
            "field_ids": list(parsed.fields), "field_texts": list(parsed.fields.values()),
            "status": parsed.status, "missing": parsed.missing, "raw": raw,
            "attempts": attempts[i], "prompt_tokens": tokens[i][0],
            "completion_tokens": tokens[i][1], "backend": backend.name,
            "job": job,
        })
    return rows


def _rank(parsed) -> tuple[int, int]:
    return (len(parsed.fields) if parsed.status != "raw" else 0,
            {"ok": 2, "partial": 1, "raw": 0}[parsed.status])


def cfg_job_id(cfg: GenerateConfig, template) -> str:
    from llmrec.config import to_dict

    d = to_dict(cfg)
    for k in ("shard", "flush_every", "cache_dir", "limit", "ids"):
        d.pop(k, None)
    return hashlib.sha256(json.dumps([d, template.hash], sort_keys=True,
                                     default=str).encode()).hexdigest()[:12]


def plan(cfg: GenerateConfig, data, template, kind: str, identity: dict[str, str],
         sampling_key: dict[str, Any], split=None) -> list[Entity]:
    """Every entity of ``kind`` this run is responsible for, with prompts and cache keys."""
    from llmrec.llm.base import conversation_seed
    from llmrec.llm.identity import fingerprint_text

    if kind == "item":
        source = ((eid, ctx, None) for eid, ctx in item_contexts(data))
    else:
        source = user_contexts(data, split, cfg.max_history, cfg.denoise)
    wanted = set(cfg.ids) if cfg.ids else None
    out: list[Entity] = []
    for eid, ctx, cutoff in source:
        if wanted is not None and eid not in wanted:
            continue
        out.append(Entity(kind, eid, ctx, cutoff))
        if cfg.limit is not None and len(out) >= cfg.limit:
            break
    out = [e for e in out if in_shard(e.id, cfg.shard)]
    for e in out:
        e.messages = template.messages(e.ctx)
        e.prompt_hash = fingerprint_text(e.messages)
        e.seed = conversation_seed(cfg.llm.seed, [{"role": e.kind, "content": e.id}])
        e.key = entry_key(e, template, identity, sampling_key)
    return out


def _chunks(seq: list, n: int):
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def run_generate(cfg: GenerateConfig, backend=None, *, out=print) -> dict[str, Any]:
    """Generate (or resume) knowledge for the configured entities; returns the run summary."""
    from llmrec.artifacts import provenance
    from llmrec.data.loaders import load_data
    from llmrec.knowledge.cache import KnowledgeCache
    from llmrec.knowledge.templates import load_template
    from llmrec.progress import progress

    t0 = time.time()
    kinds = {"items": ["item"], "users": ["user"], "both": ["item", "user"]}[cfg.entities]
    split = None
    if "user" in kinds and cfg.split_path:
        from llmrec.data.saved_split import check_saved_split

        cfg.split = check_saved_split(cfg.split_path, cfg.data, cfg.split)
    data = load_data(cfg.data)
    if "user" in kinds:
        from llmrec.data.saved_split import load_saved_split
        from llmrec.data.splits import make_split

        split = load_saved_split(cfg.split_path, data) if cfg.split_path \
            else make_split(data, cfg.split)
    cache = KnowledgeCache(cfg.cache_dir).ensure()
    own_backend = backend is None
    if backend is None:
        from llmrec.llm.config import backend_identity

        identity = backend_identity(cfg.llm)
        sampling_key = cfg.llm.sampling().key()
    else:
        identity = backend.identity()
        sampling_key = cfg.llm.sampling().key()
    prov = provenance(cfg, llm_identity=identity, backend=cfg.llm.backend)
    totals = _Totals()
    per_kind: dict[str, dict[str, int]] = {}
    try:
        for kind in kinds:
            template = load_template(cfg.item_template if kind == "item" else cfg.user_template)
            if template.entity != kind:
                raise ConfigError(f"template {template.name!r} is for {template.entity}s, "
                                  f"not {kind}s: set --{kind}_template")
            before = totals.as_dict()
            ents = plan(cfg, data, template, kind, identity, sampling_key, split)
            totals.planned += len(ents)
            done = cache.done_keys()
            pending = [e for e in ents if e.key not in done]
            totals.cached += len(ents) - len(pending)
            log.info("%s: %d planned, %d already cached, %d to generate (template %s %s)",
                     kind, len(ents), len(ents) - len(pending), len(pending), template.name,
                     template.hash)
            bar = progress(total=len(pending), desc=f"knowledge {kind}s", unit="ent")
            t_kind = time.time()
            try:
                for chunk in _chunks(pending, cfg.flush_every):
                    n_chunk = len(chunk)
                    chunk = [e for e in chunk if e.key not in cache.done_keys()]
                    totals.cached += n_chunk - len(chunk)  # finished by another writer meanwhile
                    mine = set(cache.claim(e.key for e in chunk))
                    totals.skipped_claimed += len(chunk) - len(mine)
                    # Re-read after claiming: another writer releases its claims only once its
                    # shard is in place, so a key whose claim was just released is visible as
                    # done now; without this check it would be generated a second time.
                    fresh = cache.done_keys()
                    done_now = {k for k in mine if k in fresh}
                    cache.release(done_now)
                    totals.cached += len(done_now)
                    chunk = [e for e in chunk if e.key in mine and e.key not in fresh]
                    if not chunk:
                        bar.update(0)
                        continue
                    try:
                        if backend is None:  # started only once there is work to do
                            from llmrec.llm import load_backend

                            backend = load_backend(cfg.llm)
                            if backend.identity() != identity:
                                raise RuntimeError(f"backend identity {backend.identity()} "
                                                   f"differs from the planned {identity}")
                        rows = generate_entities(backend, template, chunk, cfg, totals)
                        if rows:
                            cache.write(rows, {**prov, "template": template.name,
                                               "template_hash": template.hash})
                    finally:
                        cache.release(mine)
                    bar.update(len(chunk))
                    dt = max(time.time() - t_kind, 1e-9)
                    bar.set_postfix(tok_s=f"{totals.completion_tokens / dt:,.0f}",
                                    raw=totals.raw, refresh=False)
            finally:
                bar.close()
            after = totals.as_dict()
            per_kind[kind] = {k: after[k] - before[k] for k in after}
    finally:
        if own_backend and backend is not None:
            backend.close()
    wall = time.time() - t0
    summary = {
        "kind": "knowledge-generate", "cache": str(cache.root), "entities": cfg.entities,
        "shard": cfg.shard, "model": identity, "backend": cfg.llm.backend,
        "totals": totals.as_dict(), "per_kind": per_kind, "seconds": round(wall, 2),
        "entities_per_s": round(totals.generated / wall, 3) if wall else None,
        "completion_tokens_per_s": round(totals.completion_tokens / wall, 1) if wall else None,
        "provenance": prov,
    }
    if totals.generated or totals.failed:
        cache.write_run_summary(summary)
    out(format_summary(summary))
    return summary


def format_summary(s: dict[str, Any]) -> str:
    t = s["totals"]
    lines = [
        f"knowledge generate ({s['entities']}, shard {s['shard']}, {s['backend']} "
        f"{s['model']['model']}@{s['model']['revision']}) -> {s['cache']}",
        f"  entities: {t['planned']} planned, {t['cached']} already cached, {t['generated']} "
        f"generated, {t['failed']} failed, {t['skipped_claimed']} left to another writer",
        f"  parsed:   {t['ok']} ok, {t['partial']} partial, {t['raw']} raw (kept whole, flagged); "
        f"{t['retried']} retries",
        f"  tokens:   {t['prompt_tokens']:,} prompt, {t['completion_tokens']:,} generated in "
        f"{t['calls']} calls",
        f"  time:     {s['seconds']:.1f} s, {s['entities_per_s'] or 0:.2f} entities/s, "
        f"{s['completion_tokens_per_s'] or 0:,.0f} generated tokens/s",
    ]
    return "\n".join(lines)
