"""KSER: select the useful parts of LLM knowledge, then align them with the recommender.

The design follows ``specs/kser.md`` (the paper's text beyond its abstract was not available; the
choices below are ours and are measured in ``docs/kser.md``). For one kind of knowledge (user or
item) and a batch of entities:

1. **De-homogenise.** LLM text is repetitive across entities ("a timeless classic that resonates
   with audiences"); after sentence encoding, that shared part dominates every chunk of a field.
   Each chunk has its field's mean over the training corpus subtracted (``mu_f``, stored with the
   model), so scoring and pooling see what sets an entity apart.
2. **ESFNet chunk scores.** ``s[f, j] = v_f . tanh(W_f c[f, j] + U q)``: a per-field additive
   attention whose query ``q`` comes from the recommender (the item's own embeddings; for user
   knowledge the user's profile and behaviour embeddings, optionally the target item). A masked
   softmax with temperature over each field's chunks gives ``alpha``; optionally only the top-k
   chunks are kept, or chunks below a learned per-field threshold are dropped (straight-through,
   so the threshold still learns; a field's best chunk always survives).
3. **Field vectors and gates.** ``k_f = sum_j alpha[f, j] V_f c[f, j]``; an MLP over all field
   vectors gives ``beta`` (softmax over the fields present, or a sigmoid per field, SENet-style);
   the filtered knowledge is ``{beta_f k_f}``.
4. **Alignment.** Multi-head cross-attention with the recommender's field embeddings as queries and
   the filtered knowledge as keys and values, mean-pooled over the queries and projected: one
   vector of the backbone's embedding width, in the backbone's own space. ``alignment: mlp`` is
   the ablation (a plain projection of the concatenated field vectors).
5. Optional InfoNCE between the aligned vectors and the recommender's own embeddings of the same
   entities (in-batch negatives; other rows of the same entity are not counted as negatives).

All per-field projections are applied once per step to the whole chunk table (chunks are stored
sorted by field), and a batch only gathers projected rows: the cost of a step does not grow with
the chunk width, and a 65k-row evaluation batch gathers 32-wide rows instead of 384-wide ones.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.ranking.layers import MLP

# temperature of the sigmoid whose gradient stands in for the hard filter's step function
_STE_TEMPERATURE = 0.1


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over the ``mask``-ed entries of ``dim``; all-masked slices give all zeros."""
    w = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=dim)
    return torch.nan_to_num(w, nan=0.0)


def top_k_mask(scores: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """``mask`` restricted to the ``k`` highest scores along the last dim (ties kept)."""
    if k >= scores.shape[-1]:
        return mask
    s = scores.masked_fill(~mask, float("-inf"))
    kth = s.topk(k, dim=-1).values[..., -1:]
    return mask & (s >= kth)


class ESFNet(nn.Module):
    """Per-field chunk scoring, pooling and field gates for one kind of knowledge.

    ``scoring=False`` is the "without ESFNet" ablation: each field is the plain mean of its chunk
    values and every present field has weight 1.
    """

    def __init__(self, n_fields: int, in_dim: int, query_dim: int, hidden: int = 32,
                 value_dim: int = 32, temperature: float = 1.0, top_k: int | None = None,
                 hard_filter: bool = False, field_gate: str = "softmax", scoring: bool = True,
                 gate_hidden: int = 64, field_prior: bool = False,
                 scorer: str = "additive") -> None:
        super().__init__()
        if field_gate not in ("softmax", "sigmoid"):
            raise ValueError(f"field_gate must be softmax or sigmoid, not {field_gate!r}")
        if scorer not in ("additive", "abs"):
            raise ValueError(f"scorer must be additive or abs, not {scorer!r}")
        self.scorer = scorer
        self.n_fields, self.hidden, self.value_dim = n_fields, hidden, value_dim
        self.temperature, self.top_k, self.hard_filter = temperature, top_k, hard_filter
        self.field_gate, self.scoring = field_gate, scoring
        self.value_w = nn.Parameter(torch.empty(n_fields, in_dim, value_dim))
        self.value_b = nn.Parameter(torch.zeros(n_fields, value_dim))
        if scoring:
            self.key_w = nn.Parameter(torch.empty(n_fields, in_dim, hidden))
            self.key_b = nn.Parameter(torch.zeros(n_fields, hidden))
            self.query = nn.Linear(query_dim, hidden, bias=False)
            self.v = nn.Parameter(torch.empty(n_fields, hidden))
            self.gate = MLP(n_fields * value_dim, [gate_hidden], out_dim=n_fields)
            self.threshold = nn.Parameter(torch.zeros(n_fields)) if hard_filter else None
            # a learned logit per field, the same for every entity: which fields are worth
            # reading at all (the content-dependent gate above only re-weighs them per entity)
            self.field_bias = nn.Parameter(torch.zeros(n_fields)) if field_prior else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # per-field Linear-style init (uniform in +-1/sqrt(fan_in))
        bound = 1.0 / math.sqrt(self.value_w.shape[1])
        nn.init.uniform_(self.value_w, -bound, bound)
        if self.scoring:
            nn.init.uniform_(self.key_w, -bound, bound)
            nn.init.uniform_(self.v, -1.0 / math.sqrt(self.hidden), 1.0 / math.sqrt(self.hidden))

    def selection_parameters(self) -> list[nn.Parameter]:
        """The parameters that decide alpha and beta (scorer, query, gate, prior, threshold),
        not the value path: ``knowledge.select_lr_scale`` trains them at their own rate."""
        if not self.scoring:
            return []
        mods = [self.query, self.gate]
        own = [self.key_w, self.key_b, self.v, self.threshold, self.field_bias]
        return [p for p in own if p is not None] + [p for m in mods for p in m.parameters()]

    def project(self, vectors: torch.Tensor, field_slices: list[tuple[int, int]]):
        """Per-field keys [N + 1, hidden] and values [N + 1, value_dim] of the whole chunk table
        (row 0, the padding chunk, projects to zeros)."""
        values = [torch.addmm(self.value_b[f], vectors[s:e], self.value_w[f])
                  for f, (s, e) in enumerate(field_slices)]
        # the padding row: zeros of whatever dtype the matmuls produced (bf16 under autocast)
        values_t = torch.cat([values[0].new_zeros(1, self.value_dim)] + values)
        keys_t = None
        if self.scoring:
            keys = [torch.addmm(self.key_b[f], vectors[s:e], self.key_w[f])
                    for f, (s, e) in enumerate(field_slices)]
            keys_t = torch.cat([keys[0].new_zeros(1, self.hidden)] + keys)
        return keys_t, values_t

    def chunk_scores(self, keys: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """s[b, f, j] = v_f . tanh(key[b, f, j] + U q_b) (``abs``: v_f . |key + U q|): [B, F, C].

        The additive score is odd-ish in the chunk: a chunk carrying a signed signal z (its
        projection on some direction grows with z) scores high for one sign of z and low for the
        other, so the field's pooling keeps the signal of half the entities. ``abs`` is even in
        each projection and scores such a chunk by |z|, for either sign."""
        q = self.query(query)[:, None, None, :]
        h = torch.abs(keys + q) if self.scorer == "abs" else torch.tanh(keys + q)
        return (h * self.v[None, :, None, :]).sum(-1)

    def weights(self, keys: torch.Tensor | None, mask: torch.Tensor, query: torch.Tensor | None):
        """Chunk weights alpha [B, F, C] and the raw scores (None without scoring)."""
        if not self.scoring:
            m = mask.to(torch.float32)
            return m / m.sum(-1, keepdim=True).clamp_min(1.0), None
        s = self.chunk_scores(keys, query).float()
        keep = mask
        if self.top_k is not None:
            keep = top_k_mask(s, keep, self.top_k)
        if not self.hard_filter:
            return masked_softmax(s / self.temperature, keep), s
        # hard filter: soft weights over all chunks, times a 0/1 keep decision whose gradient is
        # that of a steep sigmoid (straight-through), renormalised over what is kept
        alpha = masked_softmax(s / self.temperature, keep)
        kept = s.masked_fill(~keep, float("-inf"))
        best = kept >= kept.amax(-1, keepdim=True)
        soft = torch.sigmoid((s - self.threshold[None, :, None].float()) / _STE_TEMPERATURE)
        hard = ((s > self.threshold[None, :, None].float()) | best).to(s.dtype)
        g = hard + soft - soft.detach()
        w = alpha * g * keep
        return w / w.sum(-1, keepdim=True).clamp_min(1e-9), s

    def field_weights(self, k: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """beta [B, F] from the field vectors k [B, F, value_dim]; absent fields get 0."""
        if not self.scoring:
            return present.to(torch.float32)
        logits = self.gate(k.flatten(1)).float()
        if self.field_bias is not None:
            logits = logits + self.field_bias.float()
        if self.field_gate == "softmax":
            return masked_softmax(logits, present)
        return torch.sigmoid(logits) * present

    def forward(self, vectors: torch.Tensor, field_slices: list[tuple[int, int]],
                index: torch.Tensor, query: torch.Tensor | None):
        """``index [B, F, C]`` chunk rows of the batch's entities -> filtered knowledge
        ``[B, F, value_dim]``, the fields present ``[B, F]`` and the weights (alpha, beta)."""
        mask = index > 0
        keys_t, values_t = self.project(vectors, field_slices)
        # F.embedding, not values_t[index]: most slots are padding (index 0), and the backward of
        # advanced indexing accumulates every duplicate index in turn, which on CUDA made a step
        # hundreds of times slower; the embedding backward reduces duplicates in parallel and
        # skips padding_idx altogether
        vals = F.embedding(index, values_t, padding_idx=0)
        keys = F.embedding(index, keys_t, padding_idx=0) if keys_t is not None else None
        alpha, scores = self.weights(keys, mask, query)
        k = (alpha.to(vals.dtype).unsqueeze(-1) * vals).sum(2)
        present = mask.any(-1)
        beta = self.field_weights(k, present)
        return beta.to(k.dtype).unsqueeze(-1) * k, present, {"alpha": alpha, "beta": beta,
                                                              "scores": scores}


class AttentionAlignment(nn.Module):
    """Cross-attention from recommender field embeddings [B, Q, D] to knowledge [B, F, dv]."""

    def __init__(self, value_dim: int, embed_dim: int, heads: int = 2) -> None:
        super().__init__()
        if embed_dim % heads:
            raise ValueError(f"embedding size {embed_dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(embed_dim, embed_dim, bias=False)
        self.k = nn.Linear(value_dim, embed_dim, bias=False)
        self.v = nn.Linear(value_dim, embed_dim)
        self.out = nn.Linear(embed_dim, embed_dim)

    def forward(self, queries: torch.Tensor, knowledge: torch.Tensor,
                present: torch.Tensor) -> torch.Tensor:
        b, nq, d = queries.shape
        nk = knowledge.shape[1]
        anything = present.any(-1)
        # an entity without knowledge attends to everything (all zeros) and is zeroed below:
        # an all-masked attention row would be NaN
        keymask = present | ~anything[:, None]

        def heads(x: torch.Tensor, n: int) -> torch.Tensor:
            return x.view(b, n, self.heads, -1).transpose(1, 2)

        att = F.scaled_dot_product_attention(heads(self.q(queries), nq),
                                             heads(self.k(knowledge), nk),
                                             heads(self.v(knowledge), nk),
                                             attn_mask=keymask[:, None, None, :])
        pooled = att.transpose(1, 2).reshape(b, nq, d).mean(1)
        return self.out(pooled) * anything[:, None].to(pooled.dtype)


class MLPAlignment(nn.Module):
    """The "without alignment" ablation: an MLP over the concatenated field vectors."""

    def __init__(self, n_fields: int, value_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.mlp = MLP(n_fields * value_dim, [2 * embed_dim], out_dim=embed_dim)

    def forward(self, queries: torch.Tensor, knowledge: torch.Tensor,
                present: torch.Tensor) -> torch.Tensor:
        out = self.mlp(knowledge.flatten(1))
        return out * present.any(-1, keepdim=True).to(out.dtype)


def info_nce(a: torch.Tensor, b: torch.Tensor, groups: torch.Tensor,
             temperature: float = 0.1) -> torch.Tensor:
    """InfoNCE of row i of ``a`` against row i of ``b``, the other rows of ``b`` as negatives;
    rows of the same ``groups`` value (the same entity twice in a batch) are not negatives."""
    a = F.normalize(a.float(), dim=-1)
    b = F.normalize(b.float(), dim=-1)
    logits = a @ b.T / temperature
    same = groups[:, None] == groups[None, :]
    eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


class KSERExtractor(nn.Module):
    """De-homogenisation + ESFNet + alignment for each kind of knowledge.

    ``forward(kind, vectors, field_slices, chunk_field, index, queries)`` returns the aligned
    vector [B, embed_dim] and the ESFNet weights. The chunk table itself lives with the caller
    (:class:`~llmrec.ranking.knowledge.augment.KnowledgeAugmented`), which owns the buffers.
    """

    def __init__(self, n_fields: dict[str, int], in_dim: dict[str, int],
                 query_slots: dict[str, int], embed_dim: int, *, score_hidden: int = 32,
                 value_dim: int = 32, temperature: float = 1.0, top_k: int | None = None,
                 hard_filter: bool = False, field_gate: str = "softmax", esfnet: bool = True,
                 alignment: str = "attention", heads: int = 2, dehomogenise: bool = True,
                 field_prior: bool = False, scorer: str = "additive") -> None:
        super().__init__()
        if alignment not in ("attention", "mlp"):
            raise ValueError(f"alignment must be attention or mlp, not {alignment!r}")
        self.dehomogenise = dehomogenise
        self.esf = nn.ModuleDict({
            k: ESFNet(n_fields[k], in_dim[k], query_slots[k] * embed_dim, score_hidden, value_dim,
                      temperature, top_k, hard_filter, field_gate, scoring=esfnet,
                      field_prior=field_prior, scorer=scorer)
            for k in n_fields})
        self.align = nn.ModuleDict({
            k: (AttentionAlignment(value_dim, embed_dim, heads) if alignment == "attention"
                else MLPAlignment(n_fields[k], value_dim, embed_dim)) for k in n_fields})

    def selection_parameters(self) -> list[nn.Parameter]:
        return [p for esf in self.esf.values() for p in esf.selection_parameters()]

    def forward(self, kind: str, vectors: torch.Tensor, field_slices: list[tuple[int, int]],
                chunk_field: torch.Tensor, mu: torch.Tensor, index: torch.Tensor,
                queries: torch.Tensor, scale: torch.Tensor | None = None):
        if self.dehomogenise:
            # the padding chunk (row 0) stays exactly zero
            shift = mu[chunk_field]
            shift[0] = 0
            vectors = vectors - shift
        if scale is not None:
            vectors = vectors * scale.to(vectors.dtype)
        filtered, present, details = self.esf[kind](vectors, field_slices, index,
                                                    queries.flatten(1))
        aligned = self.align[kind](queries, filtered, present)
        return aligned, details
