"""Wrapping any backbone with KAR or KSER knowledge, and the two training strategies.

:class:`KnowledgeAugmented` holds a backbone, an extractor (KAR's :class:`HybridExpertAdaptor` or
:class:`KSERExtractor`) and the knowledge tables as buffers. Per batch it computes one vector per
knowledge kind and injects it:

- ``fields``: as extra dense fields ``knowledge_user`` / ``knowledge_item``, declared in the
  backbone's spec, so every backbone projects and uses them like any other field (DIN / DIEN as
  part of the non-sequence context);
- ``residual``: added, through a learned scalar gate that starts at 0, to the backbone's existing
  embedding slots (item knowledge to the target item's id slot; user knowledge to the first user
  slot, or, when the features have no user fields, to every behaviour's id slot, which is then
  what represents the user). A forward hook on the backbone's ``FeatureEmbedding`` does it, so the
  backbone's code, parameters and state-dict keys stay exactly as they were.

Strategies (``strategy``): ``all`` trains backbone and extractor together; ``extractor`` trains a
backbone without knowledge (or loads one), freezes it (parameters and eval mode: no dropout, no
BatchNorm statistics updates) and trains only the extractor through it, with residual injection,
so the deployed model is untouched and, at gate 0, reproduced exactly.

Batches carry the table rows of their users and items (``user_row`` / ``item_row``), which is
how the knowledge tables are indexed. Training runs are orchestrated by
:mod:`llmrec.ranking.pipeline`; this module only builds models.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.errors import ConfigError
from llmrec.ranking.knowledge.kar import HybridExpertAdaptor
from llmrec.ranking.knowledge.kser import KSERExtractor, info_nce
from llmrec.ranking.knowledge.store import ROW_OF, KnowledgeTable, training_rows
from llmrec.ranking.layers import Embedded

log = logging.getLogger(__name__)


def dense_name(kind: str) -> str:
    return f"knowledge_{kind}"


def resolve_injection(injection: str, strategy: str) -> str:
    if injection == "auto":
        return "residual" if strategy == "extractor" else "fields"
    if strategy == "extractor" and injection == "fields":
        raise ConfigError("strategy extractor keeps the backbone unchanged, so knowledge can only "
                          "enter as a residual: set knowledge.injection to residual or auto")
    return injection


def augmented_spec(spec, kinds: list[str], width: int):
    """A copy of ``spec`` with one dense field per knowledge kind."""
    spec = copy.deepcopy(spec)
    for k in kinds:
        spec.dense[dense_name(k)] = width
    return spec


def _residual_hook(module, inputs, output: Embedded):
    """Forward hook on a FeatureEmbedding: add ``batch["knowledge_residual"]`` to its slots."""
    batch = inputs[0] if inputs else None
    res = batch.get("knowledge_residual") if isinstance(batch, dict) else None
    if not res:
        return None
    user, target, history = output.user, output.target, output.history
    if "item" in res:
        v = res["item"].to(target.dtype)
        target = torch.cat([target[:, :1] + v[:, None], target[:, 1:]], dim=1)
    if "user" in res:
        v = res["user"].to(user.dtype)
        if user.shape[1] > 0:
            user = torch.cat([user[:, :1] + v[:, None], user[:, 1:]], dim=1)
        else:
            m = output.mask.to(history.dtype)[:, :, None, None]
            history = torch.cat([history[:, :, :1] + v[:, None, None] * m, history[:, :, 1:]], dim=2)
    return Embedded(user=user, target=target, history=history, mask=output.mask,
                    dense=output.dense, context=output.context)


class KnowledgeAugmented(nn.Module):
    """``backbone`` plus KAR or KSER knowledge; ``forward(batch)`` like any backbone."""

    def __init__(self, backbone: nn.Module, method: str, tables: dict[str, KnowledgeTable],
                 cfg, injection: str = "fields", freeze_backbone: bool = False,
                 means: dict[str, torch.Tensor] | None = None,
                 scales: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        if method not in ("kar", "kser"):
            raise ValueError(f"method must be kar or kser, not {method!r}")
        if injection not in ("fields", "residual"):
            raise ValueError(f"injection must be fields or residual, not {injection!r}")
        self.backbone = backbone
        self.method = method
        self.injection = injection
        self.kinds = list(tables)
        self.field_ids = {k: list(t.field_ids) for k, t in tables.items()}
        self.field_slices = {k: list(t.field_slices) for k, t in tables.items()}
        self.infonce_weight = float(getattr(cfg, "infonce_weight", 0.0))
        self.infonce_temperature = float(getattr(cfg, "infonce_temperature", 0.1))
        self.aux_weight = float(getattr(cfg, "aux_weight", 0.0))
        if self.aux_weight < 0:
            raise ConfigError("knowledge.aux_weight must be >= 0 (0 = no auxiliary loss)")
        self.user_query_target = bool(getattr(cfg, "user_query_target", True))
        self.frozen = freeze_backbone
        self.rescale = bool(getattr(cfg, "rescale", False))
        self.lr_scale = float(getattr(cfg, "lr_scale", 1.0))
        self.select_lr_scale = float(getattr(cfg, "select_lr_scale", 1.0))
        D = backbone.embed_dim
        # the tables are data, not weights: non-persistent, so checkpoints stay small; the field
        # means are part of the model (KSER subtracts the training corpus's means at test time)
        for k, t in tables.items():
            if method == "kar":
                self.register_buffer(f"whole_{k}", t.whole.clone(), persistent=False)
            else:
                self.register_buffer(f"vectors_{k}", t.vectors.clone(), persistent=False)
                self.register_buffer(f"chunk_field_{k}", t.chunk_field.clone(), persistent=False)
                self.register_buffer(f"index_{k}", t.index.clone(), persistent=False)
                mu = (means or {}).get(k, torch.zeros(t.n_fields, t.dim))
                self.register_buffer(f"mu_{k}", mu.clone().float())
            self.register_buffer(f"has_{k}", t.has.clone(), persistent=False)
            if self.rescale:  # part of the model, like the means
                self.register_buffer(f"scale_{k}", torch.as_tensor(
                    (scales or {}).get(k, 1.0), dtype=torch.float32).reshape(()).clone())
        if method == "kar":
            self.extractor = HybridExpertAdaptor({k: t.dim for k, t in tables.items()},
                                                 cfg.kar_shared_experts, cfg.kar_specific_experts,
                                                 tuple(cfg.kar_hidden))
            out_dim = self.extractor.out_dim
        else:
            spec = backbone.spec
            k_slots = spec.n_item_slots
            u_slots = spec.n_user_fields + k_slots + (k_slots if self.user_query_target else 0)
            self.extractor = KSERExtractor(
                {k: t.n_fields for k, t in tables.items()}, {k: t.dim for k, t in tables.items()},
                {k: (k_slots if k == "item" else u_slots) for k in tables}, D,
                score_hidden=cfg.score_hidden, value_dim=cfg.value_dim,
                temperature=cfg.temperature, top_k=cfg.top_k, hard_filter=cfg.hard_filter,
                field_gate=cfg.field_gate, esfnet=cfg.esfnet, alignment=cfg.alignment,
                heads=cfg.heads, dehomogenise=cfg.dehomogenise,
                field_prior=cfg.field_prior, scorer=getattr(cfg, "scorer", "additive"))
            out_dim = D
        self.out_dim = out_dim
        # the knowledge-only heads of knowledge.aux_weight and knowledge.pretrain_epochs (built
        # only when used, so a model without them has exactly the parameters it had before)
        self.pretrain_epochs = int(getattr(cfg, "pretrain_epochs", 0))
        self.aux_head = (nn.ModuleDict({k: nn.Linear(out_dim, 1) for k in self.kinds})
                         if self.aux_weight > 0 or self.pretrain_epochs > 0 else None)
        # True while the knowledge path is warm-started alone (knowledge.pretrain_epochs): the
        # output is then the heads' prediction from the knowledge vectors, not the backbone's
        self.knowledge_only = False
        if injection == "residual":
            self.to_slot = nn.ModuleDict({k: (nn.Linear(out_dim, D) if out_dim != D
                                              else nn.Identity()) for k in self.kinds})
            # starts at 0: the augmented model begins as the plain backbone
            self.residual_gate = nn.Parameter(torch.zeros(len(self.kinds)))
            self._hook = backbone.embedding.register_forward_hook(_residual_hook)
        else:
            missing = [dense_name(k) for k in self.kinds if dense_name(k) not in backbone.spec.dense]
            if missing:
                raise ConfigError(f"fields injection: the backbone's spec lacks dense field(s) "
                                  f"{missing}; build it with augmented_spec()")
        if freeze_backbone:
            backbone.requires_grad_(False)
            backbone.eval()

    # -------------------------------------------------------------------------------------------
    def optimizer_groups(self) -> list[dict] | None:
        """With ``knowledge.lr_scale`` or ``knowledge.select_lr_scale`` != 1: the backbone's
        trainable parameters at the base learning rate, the extractor (and residual gates) at
        ``lr_scale`` times it, and KSER's selection parameters at ``lr_scale *
        select_lr_scale`` times it."""
        select = (self.extractor.selection_parameters()
                  if self.method == "kser" and self.select_lr_scale != 1.0 else [])
        if self.lr_scale == 1.0 and not select:
            return None
        own = {id(p) for p in self.backbone.parameters()}
        sel = {id(p) for p in select}
        trainable = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": [p for p in trainable if id(p) in own], "lr_scale": 1.0},
                  {"params": [p for p in trainable if id(p) not in own and id(p) not in sel],
                   "lr_scale": self.lr_scale}]
        if select:
            groups.append({"params": [p for p in trainable if id(p) in sel],
                           "lr_scale": self.lr_scale * self.select_lr_scale})
        return groups

    def train(self, mode: bool = True) -> KnowledgeAugmented:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()  # a frozen model is the deployed one: no dropout, no BN updates
        return self

    def buffers_of(self, kind: str) -> dict[str, torch.Tensor]:
        return {name: getattr(self, f"{name}_{kind}") for name in
                ("vectors", "chunk_field", "index", "mu", "has", "whole", "scale")
                if hasattr(self, f"{name}_{kind}")}

    def queries(self, batch: dict) -> dict[str, torch.Tensor]:
        """The recommender-side queries per kind: [B, Q, D] field embeddings.

        Item: the target item's slots (id, attributes). User: the user fields, the mean of the
        behaviour items' slots (the user's only representation when users are cold) and,
        optionally, the target item's slots.
        """
        emb = self.backbone.embedding
        # the embedding's own per-item lookup, so queries live in the backbone's space
        target = emb.embed_items(batch["item"], batch["item_multi"])
        out = {"item": target}
        if "user" in self.kinds:
            parts = []
            if emb.n_user:
                parts.append(emb.embed_users(batch["user"]))
            hist = emb.embed_items(batch["hist_item"], batch["hist_multi"])
            m = batch["hist_mask"].to(hist.dtype)[:, :, None, None]
            parts.append((hist * m).sum(1) / m.sum(1).clamp_min(1.0))
            if self.user_query_target:
                parts.append(target)
            out["user"] = torch.cat(parts, dim=1)
        return out

    def knowledge(self, batch: dict, details: bool = False):
        """One vector per kind ``{kind: [B, out_dim]}`` (zeros where the entity has no
        knowledge), the auxiliary loss (InfoNCE, or None) and, if asked, ESFNet's weights."""
        rows = {k: batch[ROW_OF[k]] for k in self.kinds}
        vecs: dict[str, torch.Tensor] = {}
        info: dict[str, Any] = {}
        if self.method == "kar":
            x = {k: getattr(self, f"whole_{k}")[rows[k]] for k in self.kinds}
            if self.rescale:
                x = {k: v * getattr(self, f"scale_{k}") for k, v in x.items()}
            out = self.extractor(x)
            for k in self.kinds:
                has = getattr(self, f"has_{k}")[rows[k]]
                vecs[k] = out[k] * has[:, None].to(out[k].dtype)
            return vecs, None, info
        queries = self.queries(batch)
        aux = None
        for k in self.kinds:
            b = self.buffers_of(k)
            vec, det = self.extractor(k, b["vectors"], self.field_slices[k], b["chunk_field"],
                                      b["mu"], b["index"][rows[k]], queries[k], b.get("scale"))
            vecs[k] = vec
            if details:
                info[k] = det
            if self.infonce_weight > 0 and self.training:
                has = b["has"][rows[k]]
                if int(has.sum()) > 1:
                    own = queries[k][:, 0] if k == "item" else queries[k].mean(1)
                    loss = info_nce(vec[has], own[has].detach() if self.frozen else own[has],
                                    rows[k][has], self.infonce_temperature)
                    aux = loss if aux is None else aux + loss
        if aux is not None:
            aux = self.infonce_weight * aux
        return vecs, aux, info

    def knowledge_logit(self, vecs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The knowledge-only prediction: the sum over kinds of each head's logit."""
        return sum(self.aux_head[k](v.float()).squeeze(-1) for k, v in vecs.items())

    def forward(self, batch: dict):
        vecs, aux, _ = self.knowledge(batch)
        if self.knowledge_only:
            if self.aux_head is None:
                raise RuntimeError("knowledge_only needs the heads of knowledge.pretrain_epochs")
            out = {"logit": self.knowledge_logit(vecs)}
            if aux is not None and self.training:
                out["aux_loss"] = aux
            return out
        if self.aux_head is not None and self.training and "label" in batch:
            y = batch["label"].float()
            extra = sum(F.binary_cross_entropy_with_logits(
                self.aux_head[k](v.float()).squeeze(-1), y) for k, v in vecs.items())
            extra = self.aux_weight * extra
            aux = extra if aux is None else aux + extra
        batch = dict(batch)
        if self.injection == "fields":
            batch["dense"] = {**batch["dense"], **{dense_name(k): v for k, v in vecs.items()}}
        else:
            batch["knowledge_residual"] = {
                k: self.residual_gate[i] * self.to_slot[k](v) for i, (k, v) in enumerate(vecs.items())}
        out = self.backbone(batch)
        if aux is None or not self.training:
            return out
        out = dict(out)
        out["aux_loss"] = out["aux_loss"] + aux if "aux_loss" in out else aux
        return out


# ------------------------------------------------------------------------------------------------
def field_means(tables: dict[str, KnowledgeTable], fs) -> dict[str, torch.Tensor]:
    """Each field's mean chunk vector over the entities the training samples use."""
    return {k: t.field_means(training_rows(fs, k)) for k, t in tables.items()}


def input_scales(tables: dict[str, KnowledgeTable], fs, method: str,
                 means: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Per kind, 1 / the per-dimension RMS of the vectors the extractor reads, over the entities
    the training samples use: KAR's whole vectors, KSER's chunks minus their field means."""
    out = {}
    for k, t in tables.items():
        rows = training_rows(fs, k)
        rows = rows[t.has[rows]]
        if method == "kar":
            v = t.whole[rows]
        else:
            ids = torch.unique(t.index[rows].reshape(-1))
            ids = ids[ids > 0]
            v = t.vectors[ids]
            if means is not None and k in means:
                v = v - means[k][t.chunk_field[ids]]
        rms = float(v.float().pow(2).mean().sqrt()) if v.numel() else 0.0
        out[k] = torch.tensor(1.0 / rms if rms > 0 else 1.0)
    return out


def build_augmented(model_name: str, model_args: dict, spec, tables: dict[str, KnowledgeTable],
                    method: str, cfg, injection: str = "fields",
                    backbone: nn.Module | None = None,
                    means: dict[str, torch.Tensor] | None = None,
                    scales: dict[str, torch.Tensor] | None = None) -> KnowledgeAugmented:
    """A fresh model ``model_name`` for the feature spec ``spec`` (or the given, already trained
    ``backbone``, frozen) wrapped with ``method`` knowledge from ``tables``.

    ``means`` are KSER's per-field training means (:func:`field_means`); a model about to receive
    a saved state dict may leave them out (they are part of its weights).
    """
    from llmrec.ranking.registry import build_model, hyper_parameters

    if backbone is None:
        # KSER's vectors have the backbone's embedding size, KAR's the experts' output size
        width = cfg.kar_hidden[-1] if method == "kar" else \
            model_args.get("embed_dim", hyper_parameters(model_name).get("embed_dim"))
        spec = copy.deepcopy(spec)
        if injection == "fields":
            spec = augmented_spec(spec, list(tables), int(width))
        backbone = build_model(model_name, spec, **model_args)
        return KnowledgeAugmented(backbone, method, tables, cfg, injection, means=means,
                                  scales=scales)
    return KnowledgeAugmented(backbone, method, tables, cfg, injection, freeze_backbone=True,
                              means=means, scales=scales)
