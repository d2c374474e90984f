"""``AugmentConfig``: where the knowledge comes from and how KAR / KSER use it.

Kept free of torch imports (like ``train_config.py``) because ``llmrec rank train --help`` is built
from it. :class:`~llmrec.ranking.pipeline.RankConfig` holds one as ``knowledge`` beside
``augment: none|kar|kser`` and ``strategy: all|extractor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmrec.config import option

KINDS = ("user", "item")


@dataclass
class AugmentConfig:
    """Knowledge source and the KAR / KSER hyper-parameters."""

    # -- where the vectors come from ---------------------------------------------------------------
    embeddings: str | None = option(
        None, help="folder written by `llmrec knowledge embed` (user and/or item vectors)")
    item_embeddings: str | None = option(None, help="item vectors from another folder (overrides "
                                                    "`embeddings` for items)")
    user_embeddings: str | None = option(None, help="user vectors from another folder (overrides "
                                                    "`embeddings` for users)")
    cache_dir: str | None = option(
        None, help="knowledge cache to embed on demand when no embeddings folder is given "
                   "(content-addressed: an unchanged cache is embedded once)")
    embedder: str = option("minilm", help="sentence encoder for on-demand embedding")
    max_chunks: int = option(8, help="on-demand embedding: at most this many chunks per field")
    embed_device: str = option("auto", help="on-demand embedding device")
    kinds: list[str] = option(["user", "item"], help="which knowledge to use: user, item or both")
    rescale: bool = option(False, help="KAR / KSER: scale each kind's knowledge vectors (KSER: "
                                       "after de-homogenisation) so that their per-dimension RMS "
                                       "over the training entities is 1 (sentence vectors are "
                                       "unit-norm: ~1/sqrt(dim) per dimension)")

    lr_scale: float = option(1.0, help="KAR / KSER: the extractor's learning rate as a multiple "
                                       "of train.lr (the backbone keeps train.lr)")
    select_lr_scale: float = option(
        1.0, help="KSER: the learning rate of ESFNet's selection parameters (chunk scorer, "
                  "field gate, field prior, threshold) as a further multiple of the extractor's "
                  "(on the oracle of docs/kser.md, 10-100 did not select a weak signal better)")

    # -- KAR: hybrid-expert adaptor ----------------------------------------------------------------
    kar_shared_experts: int = option(2, help="KAR: experts shared by user and item knowledge (S)")
    kar_specific_experts: int = option(2, help="KAR: experts per knowledge type (P)")
    kar_hidden: list[int] = option([128, 32], help="KAR: each expert's MLP widths (last = output)")

    # -- KSER: filtering (ESFNet) ------------------------------------------------------------------
    dehomogenise: bool = option(True, help="KSER: subtract each field's mean chunk vector over "
                                           "the training corpus before scoring")
    esfnet: bool = option(True, help="KSER: score chunks and gate fields; false = mean of each "
                                     "field's chunks, every present field weighted 1 (ablation)")
    score_hidden: int = option(32, help="KSER: width of the chunk-scoring space (W_f, U, v_f)")
    scorer: Literal["additive", "abs"] = option(
        "additive", help="KSER: chunk score v_f . tanh(W_f c + U q) (additive attention) or "
                         "v_f . |W_f c + U q| (abs: even in the chunk's projections, so a chunk "
                         "that carries a signed signal scores high on either sign)")
    value_dim: int = option(32, help="KSER: width of the field vectors k_f (V_f)")
    temperature: float = option(1.0, help="KSER: softmax temperature over a field's chunks")
    top_k: int | None = option(None, help="KSER: keep only the k best-scored chunks per field")
    hard_filter: bool = option(False, help="KSER: drop chunks scored below a learned per-field "
                                           "threshold (the best chunk of a field is always kept)")
    field_gate: Literal["softmax", "sigmoid"] = option(
        "softmax", help="KSER: field weights beta from an MLP over all field vectors")
    field_prior: bool = option(False, help="KSER: add a learned logit per field (the same for "
                                           "every entity) to the field gate")
    user_query_target: bool = option(True, help="KSER: the user-knowledge query also sees the "
                                                "target item (target-aware chunk selection)")

    # -- KSER: alignment ---------------------------------------------------------------------------
    alignment: Literal["attention", "mlp"] = option(
        "attention", help="KSER: cross-attention from the recommender's field embeddings to the "
                          "filtered knowledge; mlp = a plain projection (ablation)")
    heads: int = option(2, help="KSER: attention heads of the alignment")
    infonce_weight: float = option(0.0, help="KSER: weight of the InfoNCE loss between aligned "
                                             "vectors and the recommender's own embeddings (0 = off)")
    infonce_temperature: float = option(0.1, help="KSER: InfoNCE temperature")
    aux_weight: float = option(0.0, help="KAR / KSER: weight of an auxiliary loss that predicts "
                                         "the label from each kind's knowledge vector alone (a "
                                         "linear head, binary cross-entropy, training only), so "
                                         "the extractor gets a gradient of its own from the "
                                         "first step (0 = off)")
    pretrain_epochs: int = option(0, help="KAR / KSER: before joint training, train the knowledge "
                                          "path alone for up to this many epochs: the extractor "
                                          "and a linear head per kind predict the label from the "
                                          "knowledge vectors only (the backbone frozen), early-"
                                          "stopped on validation AUC like the main run; joint "
                                          "training then starts from "
                                          "there (0 = off; binary tasks only)")

    # -- injection and strategies ------------------------------------------------------------------
    injection: Literal["auto", "fields", "residual"] = option(
        "auto", help="fields: knowledge vectors become extra dense fields; residual: added to "
                     "the existing user/item embedding slots (backbone unchanged); auto = fields "
                     "for strategy all, residual for extractor")
    backbone_path: str | None = option(
        None, help="strategy extractor: a trained backbone's run folder (best.safetensors); "
                   "default: train one without knowledge first, into output_dir/backbone")

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of {list(KINDS)}, got {self.kinds}")
        if self.kar_shared_experts < 0 or self.kar_specific_experts < 0 or \
                self.kar_shared_experts + self.kar_specific_experts < 1:
            raise ValueError("KAR needs at least one expert")
        if not self.kar_hidden:
            raise ValueError("kar_hidden needs at least one width")
        if self.temperature <= 0 or self.infonce_temperature <= 0:
            raise ValueError("temperatures must be > 0")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("top_k must be >= 1")
        if self.lr_scale <= 0:
            raise ValueError("lr_scale must be > 0")
        if self.select_lr_scale <= 0:
            raise ValueError("select_lr_scale must be > 0")
        if self.pretrain_epochs < 0:
            raise ValueError("pretrain_epochs must be >= 0 (0 = no knowledge-only warm start)")
        if self.max_chunks < 1:
            raise ValueError("max_chunks must be >= 1")
