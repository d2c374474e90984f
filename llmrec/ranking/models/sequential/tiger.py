"""TIGER-style generative retriever: an encoder-decoder Transformer that reads the history as
semantic-id code tokens and generates the next item's codes, decoded by beam search constrained to
the catalogue.

Rajput et al., "Recommender Systems with Generative Retrieval", NeurIPS 2023. Our reading, written
from the paper (no code of it is used):

- **Codes.** Items are C-code semantic ids, the item table's code columns
  (``features.item_fields``, e.g. Beauty's ``sid_1..sid_4``: 3 RQ-VAE levels + TIGER's collision
  breaker; ``use_item_id: false``). Where a dataset ships none, :mod:`llmrec.ranking.semantic_ids`
  learns them (RQ-VAE + the same breaker) and they enter as item columns the same way. Code j of
  an item is a token of level j's own vocabulary (the shared feature table's field offsets).
- **Encoder input.** One user token (the user's row hashed into ``user_buckets`` buckets, as the
  paper's 2000 user tokens; ``user_buckets: 0`` gives one shared start token) followed by the
  history's L x C code tokens, each plus an item-position embedding (distance to the most recent
  item) and a level embedding. Bidirectional self-attention, padding masked.
- **Decoder.** Input ``[BOS, c_1 .. c_{C-1}]``, causal self-attention, cross-attention to the
  encoder; position j predicts code c_{j+1} of the next item with a head over level j's
  vocabulary. Training: teacher-forced cross-entropy, the mean over the C codes (returned as
  ``model_loss``, the next-item task's seam for a model's own objective).
- **Retrieval.** Beam search over the codes, constrained by a prefix trie of the catalogue's code
  tuples (only prefixes of existing items are ever extended, so every returned row is a catalogue
  item); a candidate's score is the sum of its codes' log-probabilities (the model's distribution,
  log-softmax over each level's whole vocabulary, then restricted to the trie). Items of the input
  history are never returned (the protocol's history masking); ``beam_size`` prefixes are kept at
  every level and the final beam is the ranked list: ``ranked [B, beam_size]`` item rows, best
  first (0 = empty slot when fewer items are reachable), with ``ranked_scores``. A prefix all of
  whose items are in the history is never extended, so the list is full whenever the catalogue
  has ``beam_size`` items outside the history.
- **Collisions.** Items whose codes are all equal (none on Beauty, whose 4th code is the breaker;
  possible when codes come without a breaker or map to the unknown id) share one trie leaf: they
  get the leaf's score and enter the list together in catalogue-row order. Give such data a
  breaker code (``semantic_ids.break_collisions``) to tell them apart.

Defaults are the paper's (Section 4): 4 encoder and 4 decoder layers, 6 heads of width 64, model
width 128, feed-forward 1024, dropout 0.1, 2000 user buckets. Positions are learned absolute
embeddings here (the paper's T5 stack has relative position biases).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.models.sequential.base import SequentialModel


# ---------------------------------------------------------------------------------------------
# the catalogue's prefix trie


@dataclass
class CodeTrie:
    """Prefix trie of the catalogue's code tuples, as dense tables on the catalogue's device.

    ``children[j] [nodes_j, V_j]``: the node reached from a level-j node (a prefix of j codes;
    level 0 is the root, node 0) by code value v, or -1 where no catalogue item has that prefix.
    The nodes of level C are the leaves; ``leaf_items [leaves, G]`` lists each leaf's item rows in
    catalogue order (0-padded; G > 1 only where items share all their codes).
    ``item_nodes[j] [R]``: each item row's node at level j + 1 (row 0: node 0, never counted);
    ``sizes[j] [nodes_{j+1}]``: the number of items under each node of level j + 1.
    """

    children: list[torch.Tensor]
    leaf_items: torch.Tensor
    n_items: int
    item_nodes: list[torch.Tensor]
    sizes: list[torch.Tensor]

    @property
    def levels(self) -> int:
        return len(self.children)

    @property
    def collisions(self) -> int:
        """Items that share all their codes with another item."""
        counts = (self.leaf_items > 0).sum(1)
        return int(counts[counts > 1].sum())

    @classmethod
    def build(cls, table: torch.Tensor, vocab: list[int]) -> CodeTrie:
        """From the item table ``[R, C]`` of code ids (row 0, the padding row, is no item)."""
        codes = table[1:].detach().cpu().numpy().astype(np.int64)
        n, c = codes.shape
        if c != len(vocab):
            raise ValueError(f"the item table has {c} code columns, the model {len(vocab)}")
        if n and (codes.min() < 0 or (codes >= np.asarray(vocab)[None]).any()):
            raise ValueError("item codes outside their vocabularies")
        children, item_nodes, sizes = [], [], []
        parent = np.zeros(n, dtype=np.int64)
        n_parents = 1
        dev = table.device
        for j in range(c):
            _, node = np.unique(codes[:, :j + 1], axis=0, return_inverse=True)
            node = node.reshape(-1)
            table_j = np.full((n_parents, vocab[j]), -1, dtype=np.int64)
            table_j[parent, codes[:, j]] = node
            children.append(torch.from_numpy(table_j).to(dev))
            parent, n_parents = node, int(node.max()) + 1 if n else 0
            item_nodes.append(torch.from_numpy(np.concatenate([[0], node])).to(dev))
            sizes.append(torch.from_numpy(np.bincount(node, minlength=n_parents)).to(dev))
        leaf = parent
        counts = np.bincount(leaf, minlength=n_parents) if n else np.zeros(0, dtype=np.int64)
        g = max(int(counts.max()) if n else 1, 1)
        items = np.zeros((n_parents, g), dtype=np.int64)
        order = np.argsort(leaf, kind="stable")  # rows of each leaf in catalogue order
        slot = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
        items[leaf[order], slot] = order + 1
        return cls(children, torch.from_numpy(items).to(dev), n, item_nodes, sizes)

    def items_of(self, prefix: torch.Tensor) -> list[int]:
        """Item rows whose codes start with ``prefix`` (a 1-d code tensor); for tests and checks."""
        nodes = torch.zeros(1, dtype=torch.long, device=self.leaf_items.device)
        for j, v in enumerate(prefix.tolist()):
            nodes = self.children[j][nodes, v]
            nodes = nodes[nodes >= 0]
        for j in range(len(prefix), self.levels):
            nodes = self.children[j][nodes].flatten()
            nodes = nodes[nodes >= 0]
        rows = self.leaf_items[nodes].flatten()
        return sorted(int(r) for r in rows[rows > 0])


# ---------------------------------------------------------------------------------------------
# layers


class _Attention(nn.Module):
    """Multi-head attention with ``heads`` x ``head_dim`` inner width (T5's d_kv, independent of
    the model width); ``visible`` (bool, broadcast to [B, h, Tq, Tk]) marks the keys a query sees."""

    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_dim, self.p = heads, head_dim, dropout
        self.q = nn.Linear(dim, heads * head_dim, bias=False)
        self.kv = nn.Linear(dim, 2 * heads * head_dim, bias=False)
        self.out = nn.Linear(heads * head_dim, dim, bias=False)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        b, tq, _ = x.shape
        tk = memory.shape[1]
        h, d = self.heads, self.head_dim
        q = self.q(x).view(b, tq, h, d).transpose(1, 2)
        k, v = self.kv(memory).view(b, tk, 2, h, d).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible,
                                           dropout_p=self.p if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, tq, h * d))


class _FFN(nn.Sequential):
    def __init__(self, dim: int, ffn: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn, dim))


class _EncoderBlock(nn.Module):
    def __init__(self, dim, heads, head_dim, ffn, dropout):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads, head_dim, dropout)
        self.ffn = _FFN(dim, ffn, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, visible):
        y = self.ln1(x)
        x = x + self.drop(self.attn(y, y, visible))
        return x + self.drop(self.ffn(self.ln2(x)))


class _DecoderBlock(nn.Module):
    def __init__(self, dim, heads, head_dim, ffn, dropout):
        super().__init__()
        self.ln1, self.ln2, self.ln3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = _Attention(dim, heads, head_dim, dropout)
        self.cross = _Attention(dim, heads, head_dim, dropout)
        self.ffn = _FFN(dim, ffn, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, memory, mem_visible):
        """``x [B, N, T, D]``: N decoder sequences (beams) per user, all reading the user's
        ``memory [B, S, D]``; self-attention per sequence (causal), cross-attention with the N x T
        queries of a user stacked (queries are independent, so no copy of the memory per beam)."""
        b, n, t, dim = x.shape
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        y = self.ln1(x).reshape(b * n, t, dim)
        x = x + self.drop(self.self_attn(y, y, causal)).view(b, n, t, dim)
        y = self.ln2(x).reshape(b, n * t, dim)
        x = x + self.drop(self.cross(y, memory, mem_visible)).view(b, n, t, dim)
        return x + self.drop(self.ffn(self.ln3(x)))


# ---------------------------------------------------------------------------------------------


class TIGER(SequentialModel):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 128, encoder_layers: int = 4,
                 decoder_layers: int = 4, heads: int = 6, head_dim: int = 64, ffn: int = 1024,
                 dropout: float = 0.1, user_buckets: int = 2000, beam_size: int = 20) -> None:
        super().__init__(spec, embed_dim)
        codes = [(n, v) for n, v in spec.item_fields if n != "item_id"]
        if not codes or len(codes) != len(spec.item_fields) or spec.item_multi_fields:
            raise ValueError("TIGER reads items as semantic-id codes only: set features.item_fields "
                             "to the code columns (e.g. [sid_1, sid_2, sid_3, sid_4]), "
                             "use_item_id: false and item_multi_fields: []")
        if beam_size < 1 or user_buckets < 0:
            raise ValueError("beam_size must be >= 1 and user_buckets >= 0")
        D = embed_dim
        self.levels = len(codes)
        self.vocab = [v for _, v in codes]
        self.user_buckets, self.beam_size = user_buckets, beam_size
        self.user = nn.Embedding(max(user_buckets, 1), D)
        self.item_pos = nn.Embedding(spec.max_hist_len, D)
        self.enc_level = nn.Embedding(self.levels, D)
        self.bos = nn.Parameter(torch.zeros(D))
        self.dec_pos = nn.Embedding(self.levels, D)
        self.input_drop = nn.Dropout(dropout)
        self.encoder = nn.ModuleList(_EncoderBlock(D, heads, head_dim, ffn, dropout)
                                     for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(_DecoderBlock(D, heads, head_dim, ffn, dropout)
                                     for _ in range(decoder_layers))
        self.enc_ln, self.dec_ln = nn.LayerNorm(D), nn.LayerNorm(D)
        self.heads = nn.ModuleList(nn.Linear(D, v) for v in self.vocab)
        # items are their codes: no rating embedding (it would be a parameter without gradient)
        self.embedding.rating = None
        for emb in (self.embedding.table, self.user, self.item_pos, self.enc_level, self.dec_pos):
            nn.init.normal_(emb.weight, std=0.02)
        nn.init.normal_(self.bos, std=0.02)
        self._trie: tuple | None = None  # (key, CodeTrie), rebuilt when the catalogue changes

    # -- encoder -----------------------------------------------------------------------------
    def _code_embed(self, codes: torch.Tensor, first_level: int = 0) -> torch.Tensor:
        """``codes [..., c]`` of levels first_level .. first_level + c - 1 -> [..., c, D]."""
        c = codes.shape[-1]
        offsets = self.embedding.item_offsets[first_level:first_level + c]
        return self.embedding.table(codes + offsets)

    def encode_history(self, batch: dict, trim: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's states ``[B, 1 + L*C, D]`` (user token first) and their mask. ``trim``
        cuts the (right-padded) histories to the batch's longest one: the same states for the
        valid tokens, fewer padded ones (retrieval; training keeps fixed shapes)."""
        codes, mask = batch["hist_item"], batch["hist_mask"]
        if trim:
            longest = max(int(mask.sum(1).max()), 1)
            codes, mask = codes[:, :longest], mask[:, :longest]
        b, l, c = codes.shape
        n = mask.sum(1, keepdim=True)
        dist = (n - 1 - torch.arange(l, device=codes.device)[None]).clamp_min(0)
        x = (self._code_embed(codes) + self.item_pos(dist)[:, :, None, :]
             + self.enc_level.weight[None, None])
        bucket = (batch["user_row"] % self.user_buckets if self.user_buckets
                  else torch.zeros_like(batch["user_row"]))
        x = torch.cat([self.user(bucket)[:, None], x.reshape(b, l * c, -1)], 1)
        tok_mask = torch.cat([torch.ones_like(mask[:, :1]),
                              mask[:, :, None].expand(b, l, c).reshape(b, l * c)], 1)
        x = self.input_drop(x) * tok_mask[..., None].to(x.dtype)
        visible = tok_mask[:, None, None, :]  # the user token is always visible: no empty row
        for block in self.encoder:
            x = block(x, visible)
        return self.enc_ln(x), tok_mask

    # -- decoder -----------------------------------------------------------------------------
    def _decode(self, memory, mem_mask, prefix: torch.Tensor) -> torch.Tensor:
        """``prefix [B, N, j]`` codes of levels 0..j-1 -> the decoder's last state [B, N, D]."""
        b, n, j = prefix.shape
        x = self.bos.expand(b, n, 1, -1)
        if j:
            x = torch.cat([x, self._code_embed(prefix)], 2)
        x = self.input_drop(x + self.dec_pos.weight[: j + 1])
        visible = mem_mask[:, None, None, :]
        for block in self.decoder:
            x = block(x, memory, visible)
        return self.dec_ln(x)

    def code_logits(self, batch: dict) -> list[torch.Tensor]:
        """Teacher-forced logits of the sample's item codes: one [B, V_j] per level."""
        memory, mem_mask = self.encode_history(batch)
        target = batch["item"]  # [B, C] the next item's codes
        h = self._decode(memory, mem_mask, target[:, None, :-1])[:, 0]  # [B, C, D]
        return [head(h[:, j]) for j, head in enumerate(self.heads)]

    @torch.no_grad()
    def item_log_probs(self, batch: dict, rows: torch.Tensor) -> torch.Tensor:
        """log p(codes of item ``rows [N]`` | each sample's history) [B, N], teacher-forced: the
        exact score the beam search approximates (used to check it; O(B x N) decoder passes)."""
        memory, mem_mask = self.encode_history(batch)
        codes = batch["catalog"]["item"][rows]  # [N, C]
        b, n = memory.shape[0], rows.numel()
        h = self._decode(memory, mem_mask, codes[None, :, :-1].expand(b, n, -1))
        total = torch.zeros(b, n, device=memory.device)
        for j, head in enumerate(self.heads):
            logp = torch.log_softmax(head(h[:, :, j]).float(), -1)
            total += logp.gather(2, codes[None, :, j, None].expand(b, n, 1)).squeeze(2)
        return total

    # -- retrieval ---------------------------------------------------------------------------
    def trie(self, table: torch.Tensor) -> CodeTrie:
        key = (table.data_ptr(), tuple(table.shape), str(table.device))
        if self._trie is None or self._trie[0] != key:
            self._trie = (key, CodeTrie.build(table, self.vocab))
        return self._trie[1]

    @torch.no_grad()
    def generate(self, batch: dict, beam_size: int | None = None):
        """Constrained beam search: ``(rows [B, n], scores [B, n])``, best first, n = beam size;
        rows are catalogue items not in the sample's history (0 with score -inf: no item)."""
        n = beam_size or self.beam_size
        trie = self.trie(batch["catalog"]["item"])
        memory, mem_mask = self.encode_history(batch, trim=True)
        b, dev = memory.shape[0], memory.device
        hist = batch["hist_rows"]
        # [B, R] True for rows that must not be returned: padding and the input history
        banned = torch.zeros(b, trie.n_items + 1, dtype=torch.bool, device=dev)
        banned.scatter_(1, hist, True)
        banned[:, 0] = True
        # each distinct history item counted once (repeats and padding weigh 0)
        hs = hist.sort(1).values
        weight = (hs > 0) & torch.cat([torch.ones_like(hs[:, :1], dtype=torch.bool),
                                       hs[:, 1:] != hs[:, :-1]], 1)
        prefix = torch.zeros(b, 1, 0, dtype=torch.long, device=dev)
        node = torch.zeros(b, 1, dtype=torch.long, device=dev)
        score = torch.zeros(b, 1, device=dev)
        neg = torch.tensor(float("-inf"), device=dev)
        for j in range(self.levels):
            h = self._decode(memory, mem_mask, prefix)[:, :, j]  # [B, N, D]
            logp = torch.log_softmax(self.heads[j](h).float(), -1)  # [B, N, V_j]
            child = trie.children[j][node]  # [B, N, V_j]
            # a prefix is extended only while it leads to an item outside the history, so the
            # beam never spends a slot on a prefix whose items are all masked
            banned_under = torch.zeros(b, trie.sizes[j].numel(), dtype=torch.int32, device=dev)
            banned_under.scatter_add_(1, trie.item_nodes[j][hs], weight.to(torch.int32))
            open_ = trie.sizes[j][None] > banned_under  # [B, nodes_{j+1}]
            reach = (child >= 0) & open_.gather(1, child.clamp_min(0).flatten(1)).view_as(child)
            cand = torch.where(reach, score[..., None] + logp, neg)
            if j == self.levels - 1:
                items = trie.leaf_items[child.clamp_min(0)]  # [B, N, V, G]
                ok = ~banned.gather(1, items.flatten(1)).view_as(items) & reach[..., None]
            flat = cand.flatten(1)
            k = min(n, flat.shape[1])
            score, pick = flat.topk(k, dim=1)
            beam, code = pick // cand.shape[2], pick % cand.shape[2]
            if j < self.levels - 1:
                prefix = torch.cat([prefix.gather(1, beam[..., None].expand(-1, -1, j)),
                                    code[..., None]], 2)
                node = child.flatten(1).gather(1, pick).clamp_min(0)
        # expand the final leaves into their items (catalogue order within a leaf), drop the
        # banned ones and keep the first n
        g = items.shape[-1]
        leaf_items = items.flatten(1, 2).view(b, -1, g)  # [B, N*V, G]
        leaf_ok = ok.flatten(1, 2).view(b, -1, g)
        rows = leaf_items.gather(1, pick[..., None].expand(-1, -1, g)).flatten(1)
        keep = leaf_ok.gather(1, pick[..., None].expand(-1, -1, g)).flatten(1)
        keep &= torch.isfinite(score).repeat_interleave(g, 1)
        scores = score.repeat_interleave(g, 1)
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
        rows = torch.where(keep, rows, torch.zeros_like(rows)).gather(1, order)[:, :n]
        scores = torch.where(keep, scores, neg).gather(1, order)[:, :n]
        if rows.shape[1] < n:  # fewer candidates than the beam: pad with empty slots
            pad = n - rows.shape[1]
            rows = F.pad(rows, (0, pad))
            scores = F.pad(scores, (0, pad), value=float("-inf"))
        return rows, scores

    # -----------------------------------------------------------------------------------------
    def forward(self, batch: dict) -> dict:
        if self.training:
            logits = self.code_logits(batch)
            target = batch["item"]
            loss = sum(F.cross_entropy(z.float(), target[:, j]) for j, z in enumerate(logits))
            return {"model_loss": loss / self.levels}
        rows, scores = self.generate(batch)
        return {"ranked": rows, "ranked_scores": scores}
