"""SASRec: causal self-attention over the behaviour sequence; the state of the most recent
behaviour scores every item by a dot product with the (tied) item embeddings.

Kang and McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018. The position encoding is
an option of the attention layer (``position``: learned, none, rote, cape; see
:mod:`llmrec.ranking.models.sequential.attention`): RoTE (temporal rotary encoding) and CAPE
(contextual position encoding) are SASRec with another ``position``, not separate models.

LLM item knowledge (``knowledge``; vectors such as MiniLM embeddings of LLM-written item text,
given by :func:`llmrec.ranking.item_knowledge.attach_item_knowledge` from the run's ``knowledge``
section):

- ``init``: the item-id embedding of every item with knowledge starts as its vector, centred and
  mapped to the embedding width by PCA (``knowledge_init: pca``) or a fixed random projection
  (``random``), scaled to a per-entry std of ``knowledge_init_std``; then trained as usual.
- ``add``: e_i = E[i] + W k_i for the behaviours and the candidates alike (tied), W a trained
  bias-free linear map, k_i the centred vector (zero for items without knowledge), stored in the
  model as a buffer so a saved run needs no vectors to load.
- ``none`` (default): the model is exactly the plain SASRec (same parameters, same outputs).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from llmrec.errors import ConfigError, DataError
from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.models.sequential.attention import Block
from llmrec.ranking.models.sequential.base import SequentialModel, last_state


class SASRec(SequentialModel):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 64, blocks: int = 2, heads: int = 1,
                 dropout: float = 0.5, position: str = "learned", ffn_mult: int = 1,
                 cape_dim: int = 32, rote_relative: bool = True, knowledge: str = "none",
                 knowledge_dim: int = 384, knowledge_init: str = "pca",
                 knowledge_init_std: float = 0.02) -> None:
        super().__init__(spec, embed_dim)
        if position == "rote" and not spec.timestamps:
            raise ValueError("position rote needs timestamps: set features.timestamps: true")
        if knowledge not in ("none", "init", "add"):
            raise ValueError(f"knowledge must be none, init or add, not {knowledge!r}")
        if knowledge_init not in ("pca", "random"):
            raise ValueError(f"knowledge_init must be pca or random, not {knowledge_init!r}")
        if knowledge != "none" and (not spec.item_fields or spec.item_fields[0][0] != "item_id"):
            raise ValueError("knowledge looks items up by id: set features.use_item_id: true")
        L, H = spec.max_hist_len, self.item_dim
        self.position = position
        self.rote_relative = rote_relative
        self.positions = nn.Embedding(L, H) if position == "learned" else None
        self.input_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(H, heads, dropout, position, L, ffn_mult, cape_dim)
                                    for _ in range(blocks))
        self.final_ln = nn.LayerNorm(H)
        self.item_knowledge = knowledge
        self.knowledge_dim = knowledge_dim
        self.knowledge_init = knowledge_init
        self.knowledge_init_std = knowledge_init_std
        self._knowledge_loaded = False
        if knowledge == "add":
            self.knowledge_proj = nn.Linear(knowledge_dim, H, bias=False)
            self.register_buffer("knowledge_vectors",
                                 torch.zeros(spec.item_fields[0][1], knowledge_dim))
        if knowledge != "none":
            # a saved run restores the vectors (add) or the initialised table (init) with its
            # weights: loading a state dict counts as having the knowledge
            self.register_load_state_dict_post_hook(_mark_knowledge_loaded)
        # SASRec's initialisation: xavier-normal weights
        for name, p in self.named_parameters():
            if p.dim() > 1 and not name.startswith("embedding."):
                nn.init.xavier_normal_(p)

    # -- LLM item knowledge ----------------------------------------------------------------------
    def load_item_knowledge(self, vectors: torch.Tensor, has: torch.Tensor) -> None:
        """Take item knowledge ``vectors [V, D]`` by item-id vocabulary id (``has [V]``: which
        rows are real; see :func:`llmrec.ranking.item_knowledge.vectors_by_item_id`)."""
        from llmrec.ranking.item_knowledge import project

        if self.item_knowledge == "none":
            raise ConfigError("this SASRec was built with knowledge: none; set "
                              "model_args.knowledge to init or add to use item knowledge")
        V = self.spec.item_fields[0][1]
        if vectors.ndim != 2 or vectors.shape[0] != V or has.shape != (V,):
            raise DataError(f"item knowledge: expected vectors [{V}, d] and has [{V}] (one row per "
                            f"item-id vocabulary entry of these features), got "
                            f"{tuple(vectors.shape)} and {tuple(has.shape)}; align them with "
                            f"llmrec.ranking.item_knowledge.vectors_by_item_id")
        if vectors.shape[1] != self.knowledge_dim:
            raise DataError(f"item knowledge vectors are {vectors.shape[1]}-d but the model was "
                            f"built for {self.knowledge_dim}-d: set model_args.knowledge_dim: "
                            f"{vectors.shape[1]}")
        has = has.to(torch.bool).cpu()
        if not bool(has.any()):
            raise DataError("item knowledge: no item of these features has a vector")
        vectors = vectors.detach().float().cpu()
        with torch.no_grad():
            if self.item_knowledge == "init":
                if "item_id" in (getattr(self.embedding, "field_dims", None) or {}):
                    raise ConfigError("knowledge init writes the item-id rows of the shared "
                                      "embedding table: remove item_id from field_dims")
                proj = project(vectors, has, self.embedding.embed_dim, self.knowledge_init,
                               self.knowledge_init_std)
                w = self.embedding.table.weight
                rows = torch.nonzero(has).squeeze(1) + self.embedding.item_offsets[0].cpu()
                w[rows.to(w.device)] = proj[has].to(w.device, w.dtype)
            else:
                centred = vectors - vectors[has].mean(0, keepdim=True)
                centred[~has] = 0
                self.knowledge_vectors.copy_(centred.to(self.knowledge_vectors.device))
        self._knowledge_loaded = True

    def _knowledge_term(self, item_ids: torch.Tensor) -> torch.Tensor:
        """W k_i for item-id vocabulary ids [...] -> [..., H] (zero for padding: k_0 = 0)."""
        return self.knowledge_proj(self.knowledge_vectors[item_ids].to(
            self.knowledge_proj.weight.dtype))

    def _check_knowledge(self) -> None:
        if self.item_knowledge != "none" and not self._knowledge_loaded:
            raise ConfigError(f"SASRec knowledge: {self.item_knowledge} has no item vectors: "
                              f"train it with `llmrec rank train` and a knowledge section "
                              f"(knowledge.item_embeddings or knowledge.cache_dir), or call "
                              f"load_item_knowledge() first")

    def item_vectors(self, batch: dict) -> torch.Tensor:
        items = super().item_vectors(batch)
        if self.item_knowledge == "add":
            items = items + self._knowledge_term(batch["catalog"]["item"][:, 0]).to(items.dtype)
        return items

    def _times(self, batch: dict, mask: torch.Tensor):
        if self.position != "rote":
            return None
        t = batch["hist_time"].to(torch.float64)
        if self.rote_relative:
            t = t - t[:, :1]  # the window's first (oldest) behaviour is time 0
        return torch.where(mask, t, torch.zeros_like(t))

    def states(self, e, batch: dict | None = None) -> torch.Tensor:
        """The output state of every position [B, L, H] (position t sees positions <= t only)."""
        b, l, k, d = e.history.shape
        mask = e.mask
        x = e.history.reshape(b, l, k * d)
        if self.item_knowledge == "add":
            if batch is None:
                raise ValueError("SASRec knowledge add needs the batch (its behaviours' item ids)")
            x = x + self._knowledge_term(batch["hist_item"][..., 0]).to(x.dtype)
        x = x * math.sqrt(k * d)
        if self.positions is not None:
            # distance to the most recent behaviour (0 = last valid), as SASRec's left padding
            n = mask.sum(1, keepdim=True)
            dist = (n - 1 - torch.arange(l, device=x.device)[None]).clamp_min(0)
            x = x + self.positions(dist) * mask[..., None].to(x.dtype)
        x = self.input_dropout(x) * mask[..., None].to(x.dtype)
        times = self._times(batch, mask) if batch is not None else None
        for block in self.blocks:
            x = block(x, mask, times)
        return self.final_ln(x)

    def encode(self, e, batch: dict | None = None) -> torch.Tensor:
        return last_state(self.states(e, batch), e.mask)

    def forward(self, batch: dict) -> dict:
        self._check_knowledge()
        e = self.embed(batch)
        states = self.states(e, batch)
        # every position's state: the next-item task's sequence training reads it
        return {"hidden": last_state(states, e.mask), "hidden_seq": states,
                "items": self.item_vectors(batch)}


def _mark_knowledge_loaded(module, incompatible) -> None:
    module._knowledge_loaded = True
