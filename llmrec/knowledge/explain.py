"""``llmrec knowledge explain ID``: which knowledge fields and chunks a trained KSER model weighs
most and least for one item or user.

ESFNet gives every chunk j of field f a weight ``alpha[f, j]`` (softmax within the field) and every
field a weight ``beta[f]``; a chunk's share of the entity's filtered knowledge is
``beta[f] * alpha[f, j]``. For an item the weights depend only on the item (its query is the
item's own embeddings), so they are exact. For a user the query includes the user's behaviour
sequence and the target item, so the weights differ per sample: they are averaged over the user's
samples (at most ``max_samples``), and the output says so.

The model is rebuilt from the run folder of ``llmrec rank train --augment=kser`` (its config in
``llmrec_meta.json``, its weights in ``best.safetensors``), with the same features and knowledge
vectors; :func:`rank_knowledge` is the ranking itself, on plain tensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from llmrec.config import option
from llmrec.errors import ConfigError, LlmrecError


@dataclass
class ExplainConfig:
    id: str = option("", help="the item or user id to explain")
    run_dir: str = option("runs/kser/ml1m", help="output_dir of a `rank train --augment=kser` run")
    entity: Literal["item", "user"] = option("item", help="whether the id is an item or a user")
    n: int = option(3, help="how many chunks to show at each end (most and least weighted)")
    max_samples: int = option(256, help="users: average the weights over at most this many of "
                                        "the user's samples")
    json: bool = option(False, help="print the explanation as JSON")

    def __post_init__(self) -> None:
        if self.n < 1 or self.max_samples < 1:
            raise ValueError("n and max_samples must be >= 1")


def rank_knowledge(alpha, beta, index, field_ids: Sequence[str], texts: Sequence[str],
                   scores=None, n: int = 3) -> dict[str, Any]:
    """Order one entity's fields by ``beta [F]`` and chunks by ``beta[f] * alpha[f, j]``.

    ``index [F, C]`` holds each slot's chunk row (0 = empty slot, ignored); ``texts[row]`` is
    its text. Returns ``fields`` (every field with knowledge, most weighted first, each with its
    chunks most weighted first), ``top`` and ``bottom`` (the ``n`` chunks with the largest and
    smallest share; fewer if the entity has fewer chunks).
    """
    fields, chunks = [], []
    for f, fid in enumerate(field_ids):
        rows = [(j, int(index[f, j])) for j in range(index.shape[1]) if int(index[f, j]) > 0]
        if not rows:
            continue
        items = []
        for j, r in rows:
            rec = {"field": fid, "slot": j, "text": texts[r] if r < len(texts) else "",
                   "alpha": float(alpha[f, j]), "share": float(beta[f]) * float(alpha[f, j])}
            if scores is not None:
                rec["score"] = float(scores[f, j])
            items.append(rec)
            chunks.append(rec)
        items.sort(key=lambda c: -c["alpha"])
        fields.append({"field": fid, "beta": float(beta[f]), "n_chunks": len(items),
                       "chunks": items})
    fields.sort(key=lambda x: -x["beta"])
    ordered = sorted(chunks, key=lambda c: -c["share"])
    k = min(n, len(ordered))
    return {"fields": fields, "top": ordered[:k], "bottom": ordered[::-1][:k]}


def _load_run(run_dir: str | Path):
    """(RankConfig, RowFeatureSet, KnowledgeAugmented in eval mode, tables) of a KSER run."""
    from safetensors.torch import load_file

    from llmrec.artifacts import read_meta
    from llmrec.config import from_dict
    from llmrec.ranking.knowledge.augment import RowFeatureSet, build_augmented, resolve_injection
    from llmrec.ranking.knowledge.store import load_knowledge
    from llmrec.ranking.pipeline import RankConfig, prepare_features
    from llmrec.ranking.registry import build_backbone

    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    if not meta or not (run_dir / "best.safetensors").is_file():
        raise ConfigError(f"{run_dir} is not a finished `llmrec rank train` run (needs "
                          f"llmrec_meta.json and best.safetensors)")
    cfg = from_dict(RankConfig, meta["config"])
    if cfg.augment != "kser":
        raise ConfigError(f"{run_dir} was trained with augment={cfg.augment!r}; explain needs a "
                          f"KSER model (augment: kser)")
    if not cfg.knowledge.esfnet:
        raise ConfigError(f"{run_dir} was trained without ESFNet (knowledge.esfnet: false): its "
                          f"chunks all weigh the same")
    fs = prepare_features(cfg)
    tables = load_knowledge(cfg.knowledge, fs)
    injection = resolve_injection(cfg.knowledge.injection, cfg.strategy)
    backbone = None
    if cfg.strategy == "extractor":
        backbone = build_backbone(cfg.model, fs.spec, **cfg.model_args)
    model = build_augmented(cfg.model, dict(cfg.model_args), fs, tables, "kser", cfg.knowledge,
                            injection, backbone=backbone)
    model.load_state_dict(load_file(str(run_dir / "best.safetensors")))
    model.eval()
    return cfg, RowFeatureSet.wrap(fs), model, tables


def explain_entity(model, fs, tables, kind: str, entity_id: str, n: int = 3,
                   max_samples: int = 256) -> dict[str, Any]:
    """ESFNet's weights for one entity of a loaded model (see the module docstring)."""
    import torch

    from llmrec.ranking.knowledge.store import ROW_OF

    table = tables.get(kind)
    if table is None:
        raise LlmrecError(f"the model uses no {kind} knowledge (kinds: {', '.join(tables)})")
    try:
        row = table.entity_ids.index(str(entity_id))
    except ValueError:
        raise LlmrecError(f"{kind} {entity_id!r} is not in the features") from None
    if not bool(table.has[row]):
        raise LlmrecError(f"{kind} {entity_id!r} has no knowledge in {table.source.get('folder')}")
    rows_of = fs.tensors[ROW_OF[kind]]
    samples = torch.nonzero(rows_of == row).squeeze(1)
    if kind == "item":
        # the item's query is its own embeddings: any sample, with the item put in, will do
        batch = fs.batch(torch.zeros(1, dtype=torch.long))
        t = fs.tensors
        batch["item"] = t["item_table"][row][None]
        batch["item_multi"] = {m: t[f"item_multi.{m}"][row][None] for m in batch["item_multi"]}
        batch["item_row"] = torch.tensor([row])
        note = "exact (an item's weights depend on the item only)"
    else:
        if samples.numel() == 0:
            raise LlmrecError(f"user {entity_id!r} has no samples to take a query from")
        batch = fs.batch(samples[:max_samples])
        note = (f"averaged over {min(samples.numel(), max_samples)} of the user's samples (the "
                f"query includes the behaviour sequence and the target item)")
    with torch.no_grad():
        _, _, info = model.knowledge(batch, details=True)
    det = info[kind]
    alpha = det["alpha"].float().mean(0)
    beta = det["beta"].float().mean(0)
    scores = det["scores"].float().mean(0) if det["scores"] is not None else None
    out = rank_knowledge(alpha, beta, table.index[row], table.field_ids, table.texts, scores, n)
    return {"entity": kind, "id": str(entity_id), "note": note,
            "knowledge": table.source.get("model"), **out}


def explain(cfg: ExplainConfig) -> dict[str, Any]:
    if not cfg.id:
        raise ConfigError("knowledge explain needs the id of an item or user (--id=...)")
    _, fs, model, tables = _load_run(cfg.run_dir)
    return explain_entity(model, fs, tables, cfg.entity, cfg.id, cfg.n, cfg.max_samples)


def format_explanation(ex: dict[str, Any], width: int = 100) -> str:
    def clip(t: str) -> str:
        t = " ".join(t.split())
        return t if len(t) <= width else t[: width - 3] + "..."

    lines = [f"{ex['entity']} {ex['id']} (knowledge: {ex.get('knowledge')}; weights {ex['note']})",
             "fields, most weighted first (beta = field weight, n = chunks):"]
    for f in ex["fields"]:
        lines.append(f"  {f['beta']:.3f}  {f['field']} (n={f['n_chunks']})")
    lines.append("most weighted chunks (share = beta * alpha):")
    for c in ex["top"]:
        lines.append(f"  {c['share']:.3f}  [{c['field']}] {clip(c['text'])}")
    lines.append("least weighted chunks:")
    for c in ex["bottom"]:
        lines.append(f"  {c['share']:.3f}  [{c['field']}] {clip(c['text'])}")
    return "\n".join(lines)


def cli_explain(cfg: ExplainConfig, args=None) -> int:
    """Handler for ``llmrec knowledge explain`` (registered by ``llmrec.knowledge.cli``)."""
    ex = explain(cfg)
    print(json.dumps(ex, indent=1, ensure_ascii=False) if cfg.json else format_explanation(ex))
    return 0


def _cli_entry(cfg: ExplainConfig, args=None) -> int:
    target = getattr(args, "target", None)
    if target:
        cfg.id = str(target)
    return cli_explain(cfg, args)


def register_explain(subparsers) -> None:
    """Add ``explain`` to the ``llmrec knowledge`` subcommands (called by its ``register``)."""
    from llmrec.cli import add_config_command

    add_config_command(
        subparsers, "explain", ExplainConfig, _cli_entry,
        help="which knowledge fields and chunks a trained KSER model weighs most and least "
             "for one item or user",
        configure=lambda p: p.add_argument("target", nargs="?", metavar="ITEM_OR_USER",
                                           help="the id to explain (or --id=...)"))
