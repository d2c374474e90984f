"""Building blocks shared by the backbones: the feature embedding, an MLP, a first-order term.

:class:`FeatureEmbedding` turns a batch from :meth:`FeatureSet.batch` into field embeddings. All
categorical fields share one embedding table with per-field offsets, so a batch needs one gather
for the scalar fields instead of one per field (fewer kernel launches per step on the GPU). The
target item and the behaviour items share the item tables, which is what lets attention compare
them.

Per-field widths (``spec.field_dims``, written by field-dimension optimisation and by low-rank
compression, :mod:`llmrec.ranking.transforms`): a field named there leaves the shared table for
its own table of width d_f followed by a bias-free linear map d_f -> ``embed_dim``, so every model
still sees [.., F, embed_dim] fields and needs no change, while the field costs
``vocab * d_f + d_f * embed_dim`` parameters instead of ``vocab * embed_dim``. Without
``field_dims`` the module is built exactly as before (same parameters, same initialisation order,
same outputs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from llmrec.errors import ConfigError
from llmrec.ranking.features import FeatureSpec

# small initial embeddings keep padding/unknown rows (never updated for cold entities) near zero
EMBED_INIT_STD = 1e-4


@dataclass
class Embedded:
    """Embeddings of one batch.

    ``user [B, U, D]``, ``target [B, K, D]`` (the target item's K slots: id, scalar attributes,
    pooled multi-valued attributes), ``history [B, L, K, D]`` (the behaviour items, same slots, the
    rating embedding added to the id slot), ``mask [B, L]`` (bool), ``dense [B, n_dense, D]``,
    ``context [B, C, D]`` (per-sample categorical fields; None when the features have none).
    """

    user: torch.Tensor
    target: torch.Tensor
    history: torch.Tensor
    mask: torch.Tensor
    dense: torch.Tensor | None
    context: torch.Tensor | None = None

    def pooled_history(self) -> torch.Tensor:
        """Masked mean over the behaviour sequence: [B, K, D] (zeros for an empty history)."""
        m = self.mask.to(self.history.dtype)[:, :, None, None]
        total = (self.history * m).sum(1)
        return total / m.sum(1).clamp_min(1.0)

    def fields(self, history: torch.Tensor | None = None) -> torch.Tensor:
        """All fields for flat models: [B, F, D] = user, target item, history, context, dense.

        ``history`` ([B, K, D]) replaces the mean-pooled history (a sequence model's summary).
        Without a behaviour sequence (``max_hist_len`` 0) there is no history field.
        """
        parts = [self.user, self.target]
        if history is not None:
            parts.append(history)
        elif self.history.shape[1] > 0:
            parts.append(self.pooled_history())
        if self.context is not None:
            parts.append(self.context)
        if self.dense is not None:
            parts.append(self.dense)
        return torch.cat(parts, dim=1)

    def non_sequence(self) -> torch.Tensor:
        """Every field except the history: [B, F - K, D] (for sequence models)."""
        parts = [self.user, self.target]
        if self.context is not None:
            parts.append(self.context)
        if self.dense is not None:
            parts.append(self.dense)
        return torch.cat(parts, dim=1)


class FeatureEmbedding(nn.Module):
    """Embeds every field of a :class:`FeatureSpec` to ``embed_dim``.

    Dense fields are projected by a per-field linear map to ``embed_dim`` and become fields too,
    so knowledge vectors of any width enter every backbone the same way.
    """

    def __init__(self, spec: FeatureSpec, embed_dim: int) -> None:
        super().__init__()
        self.spec = spec
        self.embed_dim = embed_dim
        dims = check_field_dims(spec, getattr(spec, "field_dims", None) or {})
        wider = {f: d for f, d in dims.items() if d > embed_dim}
        if wider:
            raise ConfigError(f"field_dims {wider} exceed the model's embed_dim {embed_dim}: a "
                              f"field's width is at most embed_dim")
        self.field_dims = dims
        self.n_user = len(spec.user_fields)
        self.n_item = len(spec.item_fields)
        self.n_context = len(spec.context_fields)
        groups = {"user": spec.user_fields, "item": spec.item_fields,
                  "context": spec.context_fields}
        # user, item and context fields share one table (field offsets): one gather per group;
        # fields with their own width (field_dims) are left out of it
        shared = [(g, j, v) for g, fields in groups.items()
                  for j, (name, v) in enumerate(fields) if name not in dims]
        sizes = [v for _, _, v in shared]
        offsets = torch.tensor([0] + sizes[:-1], dtype=torch.long).cumsum(0)
        self._layout: dict[str, tuple[list[int], list[tuple[int, str]]] | None] = {}
        for g, fields in groups.items():
            pos = [k for k, (gg, _, _) in enumerate(shared) if gg == g]
            self.register_buffer(f"{g}_offsets", offsets[pos].clone() if pos
                                 else torch.zeros(0, dtype=torch.long), persistent=False)
            narrow = [(j, name) for j, (name, _) in enumerate(fields) if name in dims]
            # None: the whole group is in the shared table (the path without field_dims)
            self._layout[g] = ([shared[k][1] for k in pos], narrow) if narrow else None
        self.table = nn.Embedding(max(sum(sizes), 1), embed_dim)
        self.multi = nn.ModuleDict({name: nn.Embedding(v, dims.get(name, embed_dim),
                                                       padding_idx=0)
                                    for name, v, _ in spec.item_multi_fields})
        vocab = {name: v for fields in groups.values() for name, v in fields}
        self.narrow = nn.ModuleDict({name: nn.Embedding(vocab[name], d)
                                     for name, d in dims.items() if name in vocab})
        self.proj = nn.ModuleDict({name: nn.Linear(d, embed_dim, bias=False)
                                   for name, d in dims.items()})
        # without a behaviour sequence there are no ratings to embed (and an unused parameter
        # would stall DDP's gradient reduction)
        self.rating = (nn.Embedding(spec.rating_vocab, embed_dim, padding_idx=0)
                       if spec.max_hist_len > 0 else None)
        self.dense_names = list(spec.dense)
        self.dense = nn.ModuleDict({name: nn.Linear(d, embed_dim) for name, d in spec.dense.items()})
        self.reset_parameters()

    @property
    def n_slots(self) -> int:
        return self.spec.n_item_slots

    def reset_parameters(self) -> None:
        for emb in [self.table, self.rating, *self.multi.values(), *self.narrow.values()]:
            if emb is not None:
                nn.init.normal_(emb.weight, std=EMBED_INIT_STD)
        with torch.no_grad():
            if self.rating is not None:
                self.rating.weight[0].zero_()
            for emb in self.multi.values():
                emb.weight[0].zero_()

    def _group(self, ids: torch.Tensor, group: str, offsets: torch.Tensor) -> torch.Tensor:
        """Scalar fields of one group: [..., n] ids -> [..., n, D]."""
        layout = self._layout[group]
        if layout is None:
            return self.table(ids + offsets)
        wide_pos, narrow = layout
        out: list[torch.Tensor | None] = [None] * ids.shape[-1]
        if wide_pos:
            wide = self.table(ids[..., wide_pos] + offsets)
            for k, j in enumerate(wide_pos):
                out[j] = wide[..., k, :]
        for j, name in narrow:
            out[j] = self.proj[name](self.narrow[name](ids[..., j]))
        return torch.stack(out, dim=-2)

    def embed_items(self, ids: torch.Tensor, multi: dict[str, torch.Tensor]) -> torch.Tensor:
        """Item slots: [..., n_item] scalar ids + {name: [..., G]} -> [..., K, D]."""
        parts = [self._group(ids, "item", self.item_offsets)]
        for name, emb in self.multi.items():
            vals = multi[name]
            m = (vals > 0).to(parts[0].dtype).unsqueeze(-1)
            pooled = (emb(vals) * m).sum(-2) / m.sum(-2).clamp_min(1.0)
            if name in self.proj:  # linear, so projecting the mean = the mean of projections
                pooled = self.proj[name](pooled)
            parts.append(pooled.unsqueeze(-2))
        return torch.cat(parts, dim=-2)

    def embed_users(self, ids: torch.Tensor) -> torch.Tensor:
        """User slots: [..., n_user] ids -> [..., U, D]."""
        return self._group(ids, "user", self.user_offsets)

    # ------------------------------------------------------------------------------------------
    def categorical_fields(self) -> list[tuple[str, str, int]]:
        """``(name, group, vocab)`` of every embedded categorical field, in field order (user,
        item, multi-valued, context)."""
        spec = self.spec
        return ([(n, "user", v) for n, v in spec.user_fields]
                + [(n, "item", v) for n, v in spec.item_fields]
                + [(n, "multi", v) for n, v, _ in spec.item_multi_fields]
                + [(n, "context", v) for n, v in spec.context_fields])

    def field_rows(self, name: str) -> torch.Tensor:
        """The ``[vocab, embed_dim]`` vectors field ``name`` gives its values (the projection
        applied for a field with its own width)."""
        found = [(g, v) for n, g, v in self.categorical_fields() if n == name]
        if not found:
            raise ConfigError(f"no categorical field {name!r}; fields: "
                              f"{', '.join(n for n, _, _ in self.categorical_fields())}")
        group, _ = found[0]
        if group == "multi":
            w = self.multi[name].weight
        elif name in self.narrow:
            w = self.narrow[name].weight
        else:
            w = self.table.weight[self._shared_slice(name, group)]
        return self.proj[name](w) if name in self.proj else w

    def _shared_slice(self, name: str, group: str) -> slice:
        fields = {"user": self.spec.user_fields, "item": self.spec.item_fields,
                  "context": self.spec.context_fields}[group]
        j = [n for n, _ in fields].index(name)
        layout = self._layout[group]
        k = j if layout is None else layout[0].index(j)
        start = int(getattr(self, f"{group}_offsets")[k])
        return slice(start, start + dict(fields)[name])

    def item_table_embeddings(self, item_table: torch.Tensor,
                              item_multi: dict[str, torch.Tensor]) -> torch.Tensor:
        """Every item-table row's slots [R, K, D] (full-catalogue scoring)."""
        return self.embed_items(item_table, item_multi)

    def forward(self, batch: dict) -> Embedded:
        user = self.embed_users(batch["user"])
        target = self.embed_items(batch["item"], batch["item_multi"])
        history = self.embed_items(batch["hist_item"], batch["hist_multi"])
        mask = batch["hist_mask"]
        # the rating tells a liked viewing from a disliked one of the same item: add it to the id
        if self.rating is not None:
            rate = self.rating(batch["hist_rating"]).unsqueeze(-2)
            pad = torch.zeros_like(history[..., 1:, :])
            history = history + torch.cat([rate, pad], dim=-2)
        history = history * mask[..., None, None].to(history.dtype)
        dense = None
        if self.dense_names:
            dense = torch.stack([self.dense[n](batch["dense"][n].to(user.dtype))
                                 for n in self.dense_names], dim=1)
        context = (self._group(batch["context"], "context", self.context_offsets)
                   if self.n_context else None)
        return Embedded(user=user, target=target, history=history, mask=mask, dense=dense,
                        context=context)


def check_field_dims(spec: FeatureSpec, field_dims: dict) -> dict[str, int]:
    """``field_dims`` as ``{field: int width}``, or a ConfigError naming an unknown field or a
    bad width. Fields: the spec's user, item, multi-valued and context fields."""
    names = ([n for n, _ in spec.user_fields] + [n for n, _ in spec.item_fields]
             + [n for n, _, _ in spec.item_multi_fields] + [n for n, _ in spec.context_fields])
    twice = sorted({n for n in names if names.count(n) > 1} & set(field_dims))
    if twice:
        raise ConfigError(f"field_dims: field name(s) {twice} occur in more than one group of "
                          f"the spec; widths cannot be given for them")
    unknown = [k for k in field_dims if k not in names]
    if unknown:
        raise ConfigError(f"field_dims: unknown field(s) {', '.join(map(repr, unknown))}; the "
                          f"categorical fields are: {', '.join(names)}")
    out: dict[str, int] = {}
    for k, v in field_dims.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < 1:
            raise ConfigError(f"field_dims.{k}: a width is a whole number >= 1 (got {v!r})")
        out[k] = int(v)
    return out


class LinearTerm(nn.Module):
    """First-order (logistic-regression) term: one scalar weight per categorical value.

    Covers user fields, target-item fields and multi-valued attributes (mean of their weights),
    plus a linear map of each dense field. The behaviour sequence is left to the second-order and
    deep parts.
    """

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__()
        sizes = ([v for _, v in spec.user_fields] + [v for _, v in spec.item_fields]
                 + [v for _, v in spec.context_fields])
        offsets = torch.tensor([0] + sizes[:-1], dtype=torch.long).cumsum(0)
        u, i = len(spec.user_fields), len(spec.user_fields) + len(spec.item_fields)
        self.n_context = len(spec.context_fields)
        self.register_buffer("user_offsets", offsets[:u].clone(), persistent=False)
        self.register_buffer("item_offsets", offsets[u:i].clone(), persistent=False)
        self.register_buffer("context_offsets", offsets[i:].clone(), persistent=False)
        self.table = nn.Embedding(max(sum(sizes), 1), 1)
        self.multi = nn.ModuleDict({n: nn.Embedding(v, 1, padding_idx=0)
                                    for n, v, _ in spec.item_multi_fields})
        self.dense = nn.ModuleDict({n: nn.Linear(d, 1, bias=False) for n, d in spec.dense.items()})
        self.bias = nn.Parameter(torch.zeros(1))
        for emb in [self.table, *self.multi.values()]:
            nn.init.zeros_(emb.weight)

    def forward(self, batch: dict) -> torch.Tensor:
        out = self.table(batch["user"] + self.user_offsets).sum((1, 2))
        out = out + self.table(batch["item"] + self.item_offsets).sum((1, 2))
        if self.n_context:
            out = out + self.table(batch["context"] + self.context_offsets).sum((1, 2))
        for name, emb in self.multi.items():
            vals = batch["item_multi"][name]
            m = (vals > 0).to(out.dtype)
            out = out + (emb(vals).squeeze(-1) * m).sum(-1) / m.sum(-1).clamp_min(1.0)
        for name, lin in self.dense.items():
            out = out + lin(batch["dense"][name].to(out.dtype)).squeeze(-1)
        return out + self.bias


class MLP(nn.Module):
    """Linear -> [BatchNorm] -> activation -> [Dropout] blocks; ``out_dim`` adds a final linear."""

    def __init__(self, in_dim: int, hidden: list[int] | tuple[int, ...], out_dim: int | None = None,
                 dropout: float = 0.0, batch_norm: bool = False, activation: str = "relu") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers.append(nn.Linear(d, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(make_activation(activation, h))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d = h
        if out_dim is not None:
            layers.append(nn.Linear(d, out_dim))
            d = out_dim
        self.net = nn.Sequential(*layers)
        self.out_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2 and any(isinstance(m, nn.BatchNorm1d) for m in self.net):
            # BatchNorm1d wants [N, C]: fold the leading dims
            shape = x.shape
            return self.net(x.reshape(-1, shape[-1])).reshape(*shape[:-1], self.out_dim)
        return self.net(x)


def make_activation(name: str, dim: int | None = None) -> nn.Module:
    name = name.lower()
    if name == "relu":
        return nn.ReLU()
    if name == "prelu":
        return nn.PReLU(dim or 1)
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    if name == "silu":
        return nn.SiLU()
    if name == "elu":
        return nn.ELU()
    if name == "dice":
        return Dice(dim or 1)
    raise ValueError(f"unknown activation {name!r} (relu, prelu, sigmoid, tanh, silu, elu, dice)")


class Dice(nn.Module):
    """Data-adaptive activation from the DIN paper: a PReLU whose switch point follows the batch's
    normalised input (p = sigmoid(BN(x)); f(x) = p*x + (1-p)*alpha*x)."""

    def __init__(self, dim: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, eps=eps, affine=False)
        self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        p = torch.sigmoid(self.bn(flat)).reshape(shape)
        return p * x + (1 - p) * self.alpha * x
