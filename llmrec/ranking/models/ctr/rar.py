"""RAR: retrieval-augmented ranking. Look-alike users (u2u) and recall items (i2i) from a retrieval
step built on the training split only, pooled by set-to-set attention into two extra fields of
any CTR backbone (``base``).

Retrieval index (:class:`RetrievalIndex`, built by :meth:`RAR.prepare` from a FeatureSet's
``train`` split and nothing else; saved with the weights, so a loaded run keeps it):

* user pool: every training user (at most ``pool_size``, a seeded subset beyond) with its profile
  fields and its last ``pool_hist_len`` items (at most ``max_hist_len``) at its latest training
  sample (that sample's history plus its item);
* item neighbours: for each item, the ``neighbours`` items that co-occur most with it in training
  (pairs of a training sample's item and each item of its history, whatever the label, scored
  count / sqrt(n_i n_j)).

Per sample: the recall list is the neighbours of its last ``recall_from`` behaviours (duplicates,
padding and the target itself removed); selection is by SimHash Hamming similarity (``hash_bits`` fixed random
hyperplanes over the backbone's own embeddings): the ``k_items`` recall items nearest the target
item, the ``k_users`` pool users nearest the sample's user (profile fields + mean-pooled
history), the user itself excluded. Co-interaction: each look-alike user attends to the recall
items and each recall item to the look-alike users (one residual cross-attention each way), then
the target attends over each set; the two pooled vectors enter the backbone as the dense fields
``rar_u2u`` and ``rar_i2i``. ``use`` = u2u or i2i keeps one set (and its field) only, without
the set-to-set step, for the ablation.

Auxiliary loss (training, positive samples): a softmax over {target} plus the selected recall
items, scored against the user vector, with the target as the answer (recall items equal to the
target are masked), weighted by ``aux_weight``.

Without :meth:`prepare` the index is empty: both fields are zero and the model is its backbone
(a warning says so once). ``llmrec rank train`` calls ``prepare`` (pipeline.run_train).

Huang et al., "RAR: Retrieval-augmented ranking" (WWW 2024 companion, short paper). No official
code was found; the design follows ``specs/ctr-wave2.md``; the index construction, the
co-interaction wiring and the auxiliary loss are this implementation's reading.
"""

from __future__ import annotations

import copy
import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.models.base import Backbone
from llmrec.ranking.models.ctr.sdim import last_valid

log = logging.getLogger(__name__)

U2U, I2I = "rar_u2u", "rar_i2i"
USES = ("both", "u2u", "i2i")
INDEX_BUFFERS = ("pool_rows", "pool_user", "pool_hist", "neighbour_rows")


class RetrievalIndex:
    """The tensors of the retrieval step, from the training split only (see the module doc).

    ``pool_rows [P]`` user-table rows, ``pool_user [P, U]`` their profile ids, ``pool_hist [P, L]``
    item-table rows of their latest training history (0 = padding), ``neighbour_rows [R, N]`` the
    item-table rows that co-occur most with each item row (0 = none).
    """

    def __init__(self, pool_rows, pool_user, pool_hist, neighbour_rows) -> None:
        self.pool_rows, self.pool_user = pool_rows, pool_user
        self.pool_hist, self.neighbour_rows = pool_hist, neighbour_rows

    @classmethod
    def from_features(cls, features, pool_size: int = 4096, neighbours: int = 20,
                      pool_hist_len: int = 50, seed: int = 0,
                      split: str = "train") -> RetrievalIndex:
        t = features.tensors
        idx = features.split_index(split).cpu()
        user_row = t["user_row"].cpu()[idx]
        item_row = t["item_row"].cpu()[idx]
        hist = t["hist_rows"].cpu()[idx]
        position = t["position"].cpu()[idx]
        n_rows = int(t["item_table"].shape[0])
        # ---- pool: each training user's latest training sample (its history + its item)
        order = torch.argsort(position, stable=True)
        last = torch.full((int(t["user_table"].shape[0]),), -1, dtype=torch.long)
        last[user_row[order]] = order  # later positions overwrite earlier ones
        users = torch.nonzero(last >= 0).squeeze(1)
        if users.numel() > pool_size:
            g = torch.Generator().manual_seed(seed)
            users = users[torch.randperm(users.numel(), generator=g)[:pool_size]].sort().values
        s = last[users]
        L = min(hist.shape[1], pool_hist_len)
        count = (hist[s] > 0).sum(1)
        seq = torch.cat([hist[s], torch.zeros(s.numel(), 1, dtype=torch.long)], 1)
        seq[torch.arange(s.numel()), count] = item_row[s]  # the item right after the history
        n = count + 1  # valid entries of seq, first; keep the last L of them
        j = torch.arange(L)[None]
        pos = (n - L).clamp_min(0)[:, None] + j
        pool_hist = torch.where(j < n.clamp_max(L)[:, None],
                                seq.gather(1, pos.clamp_max(seq.shape[1] - 1)),
                                torch.zeros_like(pos))
        pool_user = t["user_table"].cpu()[users]
        # ---- item co-occurrence: (sample item, each history item), any label
        valid = hist > 0
        a = item_row[:, None].expand_as(hist)[valid]
        b = hist[valid]
        keep = a != b
        a, b = torch.cat([a[keep], b[keep]]), torch.cat([b[keep], a[keep]])
        pairs, counts = torch.unique(a * n_rows + b, return_counts=True)
        a, b = pairs // n_rows, pairs % n_rows
        freq = torch.bincount(a, weights=counts.double(), minlength=n_rows)
        score = counts.double() / (freq[a] * freq[b]).sqrt()
        # per item, its pairs by falling score (ties: lower row first; unique sorted by (a, b)),
        # the first k kept
        o = torch.argsort(-score, stable=True)
        o = o[torch.argsort(a[o], stable=True)]
        a, b = a[o], b[o]
        start = torch.zeros(n_rows + 1, dtype=torch.long)
        start[1:] = torch.bincount(a, minlength=n_rows).cumsum(0)
        rank = torch.arange(a.numel()) - start[a]
        top = rank < neighbours
        rows = torch.zeros(n_rows, neighbours, dtype=torch.long)
        rows[a[top], rank[top]] = b[top]
        rows[0] = 0
        return cls(users, pool_user, pool_hist, rows)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"pool_rows": self.pool_rows, "pool_user": self.pool_user,
                "pool_hist": self.pool_hist, "neighbour_rows": self.neighbour_rows}


def _drop_shared_embedding(module, state_dict, prefix, local_metadata):
    for key in [k for k in state_dict if k.startswith(prefix + "base.embedding.")]:
        del state_dict[key]


class CrossAttention(nn.Module):
    """Single-head scaled dot-product attention of queries [B, Q, d] over keys [B, K, d]
    (masked keys get no weight; a query with no valid key gets zeros)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = (self.q(q) @ self.k(kv).transpose(-1, -2)).float() / math.sqrt(q.shape[-1])
        w = torch.softmax(s.masked_fill(~mask[:, None, :], float("-inf")), dim=-1)
        return torch.nan_to_num(w).to(kv.dtype) @ self.v(kv)


class RAR(nn.Module):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 32, base: str = "dnn",
                 base_args: dict | None = None, use: str = "both", k_users: int = 10,
                 k_items: int = 10, neighbours: int = 20, recall_from: int = 10,
                 pool_size: int = 4096, pool_hist_len: int = 50, hash_bits: int = 64,
                 attn_dim: int = 32, aux_weight: float = 0.1, hash_seed: int = 0) -> None:
        super().__init__()
        from llmrec.ranking.registry import build_model, family_of

        if use not in USES:
            raise ValueError(f"use must be one of {', '.join(USES)}, not {use!r}")
        if base.lower() == "rar" or family_of(base) != "ctr":
            raise ValueError(f"base must be a CTR backbone other than rar, not {base!r}")
        if spec.max_hist_len < 1:
            raise ValueError("RAR reads the behaviour sequence (recall list, user pool): "
                             "features.max_hist_len >= 1")
        self.spec = spec
        self.embed_dim = embed_dim
        self.use, self.k_users, self.k_items = use, k_users, k_items
        self.n_neighbours, self.pool_size, self.aux_weight = neighbours, pool_size, aux_weight
        if recall_from < 1 or pool_hist_len < 1:
            raise ValueError("recall_from and pool_hist_len must be >= 1")
        self.recall_from = recall_from
        self.pool_hist_len = min(pool_hist_len, spec.max_hist_len)
        self.fields = [f for f, on in ((U2U, use in ("both", "u2u")), (I2I, use in ("both", "i2i")))
                       if on]
        base_spec = copy.deepcopy(spec)
        for f in self.fields:
            if f in base_spec.dense:
                raise ValueError(f"the features already have a dense field {f!r}")
            base_spec.dense[f] = attn_dim
        args = dict(base_args or {})
        args.setdefault("embed_dim", embed_dim)
        backbone = build_model(base, base_spec, **args)
        if not isinstance(backbone, Backbone):
            raise ValueError(f"base {base!r} does not embed features with a Backbone")
        # the backbone's feature embedding is this model's too (what KAR / KSER wrap and what the
        # retrieval embeds with); registered first, so its parameters are named embedding.*
        self.embedding = backbone.embedding
        self.base = backbone
        # ... and saved once, under embedding.* (a load fills base.embedding.* from it)
        self._register_state_dict_hook(_drop_shared_embedding)
        k = spec.n_item_slots
        d = self.base.embed_dim
        self.item_dim = k * d
        self.user_dim = (spec.n_user_fields + k) * d
        g = torch.Generator().manual_seed(hash_seed)
        self.register_buffer("item_planes", torch.randn(self.item_dim, hash_bits, generator=g))
        self.register_buffer("user_planes", torch.randn(self.user_dim, hash_bits, generator=g))
        self.uses_users, self.uses_items = U2U in self.fields, I2I in self.fields
        self.attn_dim = attn_dim
        # only the modules the ablation uses (DDP wants no parameter without a gradient)
        self.target_proj = nn.Linear(self.item_dim, attn_dim)
        if self.uses_users:
            self.user_proj = nn.Linear(self.user_dim, attn_dim)
            self.pool_u2u = CrossAttention(attn_dim)
        if self.uses_items:
            self.item_proj = nn.Linear(self.item_dim, attn_dim)
            self.pool_i2i = CrossAttention(attn_dim)
        if self.uses_users and self.uses_items:
            self.users_to_items = CrossAttention(attn_dim)
            self.items_to_users = CrossAttention(attn_dim)
        self.aux_user = (nn.Linear(self.user_dim, self.item_dim)
                         if aux_weight > 0 and self.uses_items else None)
        u = spec.n_user_fields
        # the index (empty until prepare): data, saved with the weights
        self.register_buffer("pool_rows", torch.zeros(0, dtype=torch.long))
        self.register_buffer("pool_user", torch.zeros(0, u, dtype=torch.long))
        self.register_buffer("pool_hist", torch.zeros(0, self.pool_hist_len, dtype=torch.long))
        self.register_buffer("neighbour_rows", torch.zeros(0, neighbours, dtype=torch.long))
        self._warned = False

    # -------------------------------------------------------------------------------------------
    def prepare(self, features) -> None:
        """Build the retrieval index from ``features``' training split (nothing else is read)."""
        index = RetrievalIndex.from_features(features, self.pool_size, self.n_neighbours,
                                             self.pool_hist_len)
        self.set_index(index)
        log.info("RAR index: %d pool users, neighbours for %d item rows (training split only)",
                 index.pool_rows.numel(), index.neighbour_rows.shape[0])

    def set_index(self, index: RetrievalIndex) -> None:
        for name, value in index.tensors().items():
            setattr(self, name, value.to(getattr(self, name).device))

    @property
    def has_index(self) -> bool:
        return self.pool_rows.numel() > 0 and self.neighbour_rows.shape[0] > 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for key in [k for k in state_dict if k.startswith(prefix + "embedding.")]:
            state_dict.setdefault(prefix + "base." + key[len(prefix):], state_dict[key])
        # the index's sizes come from the data: take the saved ones
        for name in INDEX_BUFFERS:
            key = prefix + name
            if key in state_dict and state_dict[key].shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(state_dict[key],
                                                     device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -------------------------------------------------------------------------------------------
    @staticmethod
    def _bits(x: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
        """SimHash bits: [..., dim] -> [..., bits] (fp32 whatever the autocast)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            return (x.float() @ planes.float()) > 0

    @staticmethod
    def _hamming_top(q: torch.Tensor, keys: torch.Tensor, valid: torch.Tensor, k: int):
        """Per row of ``q`` [B, bits], the ``k`` keys ([B, K, bits] or [K, bits]) with the most
        equal bits: indices [B, k] and whether each is a valid key."""
        qs, ks = q.float() * 2 - 1, keys.float() * 2 - 1
        agree = ks @ qs.unsqueeze(-1) if ks.dim() == 3 else (qs @ ks.T).unsqueeze(-1)
        sim = (agree.squeeze(-1) + q.shape[-1]) / 2  # equal bits
        sim = sim.masked_fill(~valid, -1.0)
        top, idx = sim.topk(min(k, sim.shape[-1]), dim=-1)
        return idx, top >= 0

    def _user_vectors(self, user_ids: torch.Tensor, hist_rows: torch.Tensor,
                      items: torch.Tensor) -> torch.Tensor:
        """Profile slots + mean-pooled history slots, flattened: [N, user_dim]; ``items`` are
        the catalogue's item vectors [R, K, D]."""
        h = items[hist_rows]  # [N, L, K, D]
        m = (hist_rows > 0).to(h.dtype)[..., None, None]
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        emb = self.base.embedding
        parts = [emb.embed_users(user_ids), pooled] if emb.n_user else [pooled]
        return torch.cat(parts, dim=1).flatten(1)

    def retrieve(self, batch: dict) -> dict[str, torch.Tensor]:
        """The retrieval step for a batch (needs the index): catalogue item vectors ``flat``
        [R, KD], ``target`` [B, KD], ``user`` [B, user_dim]; with i2i, the selected recall items
        ``item_rows`` [B, k_items] and ``items_ok``; with u2u, the selected pool entries
        ``pool_index`` [B, k_users], ``users_ok`` and the pool's user vectors ``pool``
        [P, user_dim]."""
        catalog = batch["catalog"]
        # every catalogue item once, in the backbone's own embedding space
        all_items = self.base.embedding.embed_items(catalog["item"], catalog["item_multi"])
        flat = all_items.flatten(1)  # [R, KD]
        out = {"flat": flat, "target": flat[batch["item_row"]],
               "user": self._user_vectors(batch["user"], batch["hist_rows"], all_items)}
        if self.uses_items:
            # recall list: neighbours of the history items, deduplicated, target removed
            item_bits = self._bits(flat, self.item_planes)
            recent, keep = last_valid(batch["hist_rows"], batch["hist_mask"], self.recall_from)
            cand = self.neighbour_rows[recent * keep].flatten(1)  # [B, recall_from * N]
            cand, _ = cand.sort(dim=1)
            dup = torch.cat([torch.zeros_like(cand[:, :1], dtype=torch.bool),
                             cand[:, 1:] == cand[:, :-1]], 1)
            cand_ok = (cand > 0) & ~dup & (cand != batch["item_row"][:, None])
            pick, out["items_ok"] = self._hamming_top(item_bits[batch["item_row"]],
                                                      item_bits[cand], cand_ok, self.k_items)
            out["item_rows"] = cand.gather(1, pick)
        if self.uses_users:
            # look-alike users from the pool (the user itself excluded)
            pool = self._user_vectors(self.pool_user, self.pool_hist, all_items)  # [P, user_dim]
            pool_ok = self.pool_rows[None, :] != batch["user_row"][:, None]  # [B, P]
            out["pool_index"], out["users_ok"] = self._hamming_top(
                self._bits(out["user"], self.user_planes), self._bits(pool, self.user_planes),
                pool_ok, self.k_users)
            out["pool"] = pool
        return out

    def forward(self, batch: dict) -> dict:
        extra: dict[str, torch.Tensor] = {}
        aux = None
        if not self.has_index:
            if not self._warned:
                log.warning("RAR has no retrieval index (prepare(features) was not called): its "
                            "u2u / i2i fields are zero")
                self._warned = True
            zeros = batch["label"].new_zeros(batch["item_row"].shape[0], self.attn_dim)
            extra = {f: zeros for f in self.fields}
        else:
            r = self.retrieve(batch)
            q = self.target_proj(r["target"]).unsqueeze(1)
            if self.uses_items:
                items, items_ok = r["flat"][r["item_rows"]], r["items_ok"]  # [B, ki, KD]
                i_set = self.item_proj(items)
            if self.uses_users:
                users_ok = r["users_ok"]
                u_set = self.user_proj(r["pool"][r["pool_index"]])  # [B, ku, attn_dim]
            # co-interaction: set-to-set attention (both sets), then the target pools each set
            if self.uses_users and self.uses_items:
                u_set, i_set = (u_set + self.users_to_items(u_set, i_set, items_ok),
                                i_set + self.items_to_users(i_set, u_set, users_ok))
            if self.uses_users:
                extra[U2U] = self.pool_u2u(q, u_set, users_ok).squeeze(1)
            if self.uses_items:
                extra[I2I] = self.pool_i2i(q, i_set, items_ok).squeeze(1)
                if self.training and self.aux_user is not None:
                    aux = self._aux_loss(r["user"], r["target"], items, items_ok, batch["label"])
        dense = {**batch["dense"], **{k: v.float() for k, v in extra.items()}}
        out = self.base({**batch, "dense": dense})
        if aux is not None:
            out = {**out, "aux_loss": self.aux_weight * aux}
        return out

    def _aux_loss(self, user, target, items, items_ok, label) -> torch.Tensor:
        """Softmax over {target} + recall items against the user vector; positives only."""
        u = self.aux_user(user)  # [B, KD]
        logits = torch.cat([(u * target).sum(-1, keepdim=True),
                            (u.unsqueeze(1) * items).sum(-1)], 1).float()
        ok = torch.cat([torch.ones_like(items_ok[:, :1]), items_ok], 1)
        logits = logits.masked_fill(~ok, float("-inf"))
        loss = -torch.log_softmax(logits, dim=1)[:, 0]
        pos = (label > 0.5).to(loss.dtype)
        return (loss * pos).sum() / pos.sum().clamp_min(1.0)
