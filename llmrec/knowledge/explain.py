"""``llmrec knowledge explain ID``: which knowledge fields and chunks a trained KSER model weighs
most and least for one item or user.

ESFNet gives every chunk j of field f a weight ``alpha[f, j]`` (softmax within the field) and every
field a weight ``beta[f]``; a chunk's share of the entity's filtered knowledge is
``beta[f] * alpha[f, j]``. For an item the weights depend only on the item (its query is the
item's own embeddings), so they are exact. For a user the query includes the user's behaviour
sequence and the target item, so the weights differ per sample: they are averaged over the user's
samples (at most ``max_samples``), and the output says so.

The model is rebuilt from the run folder of ``llmrec rank train --augment=kser`` by
:func:`~llmrec.ranking.runs.load_run` (no dataset, no split: an item's explanation needs the run
alone). A user's explanation needs the user's samples, which are encoded from the dataset and
split the run recorded; :func:`rank_knowledge` is the ranking itself, on plain tensors.
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
    """The loaded KSER run (:class:`~llmrec.ranking.runs.Run`), checked for ESFNet."""
    from llmrec.ranking.runs import load_run

    run = load_run(run_dir)
    augment = run.record.get("augment") or {}
    if augment.get("method") != "kser":
        raise ConfigError(f"{run_dir} was trained with augment={augment.get('method', 'none')!r}; "
                          f"explain needs a KSER model (augment: kser)")
    if not augment["knowledge"].get("esfnet", True):
        raise ConfigError(f"{run_dir} was trained without ESFNet (knowledge.esfnet: false): its "
                          f"chunks all weigh the same")
    return run


def _user_features(run):
    """The features of the run's recorded data and split (for a user's samples)."""
    from llmrec.artifacts import read_meta
    from llmrec.config import from_dict
    from llmrec.ranking.pipeline import RankConfig, prepare_features

    meta = read_meta(run.path)
    if not meta:
        raise ConfigError(f"{run.path} has no llmrec_meta.json: the user's samples cannot be "
                          f"found (item explanations need only the run)")
    fs = prepare_features(from_dict(RankConfig, meta["config"]))
    if fs.row_ids("user") != run.row_ids["user"]:
        raise ConfigError(f"the data recorded for {run.path} no longer gives the users it was "
                          f"trained on: was the dataset or split changed?")
    return fs


def explain_entity(model, fs, tables, kind: str, entity_id: str, n: int = 3,
                   max_samples: int = 256) -> dict[str, Any]:
    """ESFNet's weights for one entity of a loaded model (see the module docstring).

    ``fs`` provides the batch: for an item any feature set with the model's tables (the run's
    own, :meth:`Run.encode`), for a user one holding the user's samples.
    """
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
    import pandas as pd

    run = _load_run(cfg.run_dir)
    if cfg.entity == "item":
        # one placeholder sample carries the run's tables; the item is put in by explain_entity
        first_user = run.row_ids["user"][0] if run.row_ids["user"] else ""
        fs = run.encode(pd.DataFrame({"user_id": [first_user], "item_id": [cfg.id],
                                      **_placeholder_context(run)}))
    else:
        fs = _user_features(run)
    return explain_entity(run.model, fs, run.knowledge, cfg.entity, cfg.id, cfg.n,
                          cfg.max_samples)


def _placeholder_context(run) -> dict[str, list]:
    ctx = {f: [""] for f, _ in run.spec.context_fields}
    ctx.update({n: [0.0] for n in run.spec.dense if not n.startswith("knowledge_")
                and not run._entity_dense(n)})
    return ctx


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
