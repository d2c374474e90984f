"""A static-KV-cache decode loop for Llama-family models, CUDA-graphed on GPU.

Why not ``model.generate``: for small models (SmolLM2-135M) generation is bound by per-step
overhead, not arithmetic: Python logits processors, a growing dynamic cache and a few hundred
kernel launches per token. This module re-runs the model's own weights (shared, plus fused
QKV / gate-up copies) through a minimal forward with a preallocated KV cache, and on CUDA captures
one whole decode step (forward + sampling + bookkeeping) in a CUDA graph, so decoding a token
for the whole batch is a single ``graph.replay()`` with no host work between steps.

Supported: ``model_type`` llama or qwen2 with default RoPE, SiLU MLP, no MLP bias (qwen2's QKV
bias included). :func:`supports` says why not for anything else, and the hf backend then falls
back to ``generate()``.

Sampling is seeded per row with a counter-based hash (seed, step, token id) turned into Gumbel
noise, so a row's sample does not depend on which rows share its batch, and the whole step stays
on the device with no generator state to capture.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from llmrec.llm.base import SamplingParams

log = logging.getLogger(__name__)

_M32 = 0xFFFFFFFF


def supports(model: Any) -> tuple[bool, str]:
    """Whether :class:`StaticDecoder` can run ``model``, and if not, why."""
    cfg = model.config
    mtype = getattr(cfg, "model_type", None)
    if mtype not in ("llama", "qwen2"):
        return False, f"model_type {mtype!r} (fast decode covers llama and qwen2)"
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    rtype = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rtype not in ("default", None):
        return False, f"rope type {rtype!r}"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return False, f"hidden_act {cfg.hidden_act!r}"
    if getattr(cfg, "mlp_bias", False):
        return False, "MLP bias"
    if mtype == "llama" and getattr(cfg, "attention_bias", False):
        return False, "attention bias"
    if getattr(cfg, "pretraining_tp", 1) != 1:
        return False, "pretraining_tp != 1"
    if mtype == "qwen2" and getattr(cfg, "use_sliding_window", False):
        return False, "sliding-window attention"
    return True, ""


def _rope_theta(cfg: Any) -> float:
    rope = getattr(cfg, "rope_parameters", None)
    if isinstance(rope, dict) and "rope_theta" in rope:
        return float(rope["rope_theta"])
    return float(getattr(cfg, "rope_theta", 10000.0))


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash on int64 tensors holding values < 2**32.

    Multipliers stay below 2**31 so every product fits in int64 without overflow.
    """
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x5BD1E995) & _M32
    return x ^ (x >> 16)


def gumbel_noise(seeds: torch.Tensor, step: torch.Tensor, ids: torch.Tensor | int) -> torch.Tensor:
    """Gumbel(0, 1) noise from (row seed, step, token id): batch-composition invariant.

    ``ids``: a vocabulary size V (noise for every token, [B, V]) or token ids [B, K] (noise for
    those tokens only; the same values the full [B, V] noise holds for them).
    """
    row = _mix32(_mix32(seeds.to(torch.int64) & _M32) ^ (step.to(torch.int64) & _M32))
    if isinstance(ids, int):
        ids = torch.arange(ids, device=seeds.device, dtype=torch.int64)[None, :]
    h = _mix32(row[:, None] ^ _mix32(ids.to(torch.int64)))
    u = ((h >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))  # in (0, 1), never 0 or 1
    return -torch.log(-torch.log(u))


def _top_p_drop(sorted_logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask over descending-sorted logits: drop a token once the mass before it reaches top_p."""
    probs = sorted_logits.softmax(-1)
    return (probs.cumsum(-1) - probs) >= top_p


def sample_next(logits: torch.Tensor, sp: SamplingParams, seeds: torch.Tensor, step: torch.Tensor,
                seen: torch.Tensor | None) -> torch.Tensor:
    """Pick the next token per row. ``seen`` ([B, V] bool) drives the repetition penalty."""
    logits = logits.float()
    if seen is not None and sp.repetition_penalty != 1.0:
        p = sp.repetition_penalty
        logits = torch.where(seen, torch.where(logits > 0, logits / p, logits * p), logits)
    if sp.greedy:
        return logits.argmax(-1)
    logits = logits / sp.temperature
    if sp.top_k and sp.top_k < logits.shape[-1]:
        # work on the k candidates only: top-p and the noise on [B, k] instead of [B, V]
        vals, idx = torch.topk(logits, sp.top_k, dim=-1)  # sorted, descending
        if sp.top_p < 1.0:
            vals = vals.masked_fill(_top_p_drop(vals, sp.top_p), -math.inf)
        pick = (vals + gumbel_noise(seeds, step, idx)).argmax(-1, keepdim=True)
        return idx.gather(-1, pick)[:, 0]
    if sp.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        drop = torch.zeros_like(sorted_logits, dtype=torch.bool).scatter(
            -1, order, _top_p_drop(sorted_logits, sp.top_p))
        logits = logits.masked_fill(drop, -math.inf)
    return (logits + gumbel_noise(seeds, step, logits.shape[-1])).argmax(-1)


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    # same arithmetic as transformers' LlamaRMSNorm: normalise in fp32, scale in the input dtype
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * xf.to(x.dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


@dataclass
class _Layer:
    ln1: torch.Tensor
    wqkv: list[torch.Tensor]  # one fused [q; k; v] matrix, or the three separately
    bqkv: list[torch.Tensor] | None
    wo: torch.Tensor
    ln2: torch.Tensor
    wgu: list[torch.Tensor]  # one fused [gate; up] matrix, or the two separately
    wdown: torch.Tensor


# Fusing QKV and gate/up saves kernel launches but copies those weights; above this many
# parameters the copy costs more memory than the launches cost time, so they stay separate.
_FUSE_MAX_PARAMS = 2_000_000_000


class StaticDecoder:
    """Batched prefill + decode for one Llama/Qwen2 model with a preallocated KV cache."""

    def __init__(self, model: Any, *, use_cuda_graphs: bool | None = None, max_graphs: int = 4):
        ok, why = supports(model)
        if not ok:
            raise ValueError(f"fast decode does not support this model: {why}")
        cfg = model.config
        inner = model.model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps = float(cfg.rms_norm_eps)
        self.vocab = cfg.vocab_size
        self.embed = inner.embed_tokens.weight
        self.norm = inner.norm.weight
        self.lm_head = model.lm_head.weight
        self.layers: list[_Layer] = []
        fuse = sum(p.numel() for p in model.parameters()) <= _FUSE_MAX_PARAMS

        def join(ts: list[torch.Tensor]) -> list[torch.Tensor]:
            return [torch.cat(ts, 0).contiguous()] if fuse else ts

        with torch.no_grad():
            for layer in inner.layers:
                a, mlp = layer.self_attn, layer.mlp
                wqkv = join([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
                bqkv = None
                if a.q_proj.bias is not None:
                    bqkv = join([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
                wgu = join([mlp.gate_proj.weight, mlp.up_proj.weight])
                self.layers.append(_Layer(layer.input_layernorm.weight, wqkv, bqkv, a.o_proj.weight,
                                          layer.post_attention_layernorm.weight, wgu,
                                          mlp.down_proj.weight))
        theta = _rope_theta(cfg)
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, device=self.device,
                                                      dtype=torch.float32) / self.head_dim))
        if use_cuda_graphs is None:
            use_cuda_graphs = self.device.type == "cuda"
        self.use_cuda_graphs = use_cuda_graphs
        self.max_graphs = max_graphs
        self._graphs: dict[tuple, dict[str, Any]] = {}

    # -- model pieces ------------------------------------------------------------------------------
    def _cos_sin(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = pos.float()[..., None] * self.inv_freq  # [B, T, D/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(self.dtype)[:, None], emb.sin().to(self.dtype)[:, None]  # [B,1,T,D]

    def _qkv(self, layer: _Layer, h: torch.Tensor, cos, sin):
        B, T, _ = h.shape
        x = _rms(h, layer.ln1, self.eps)
        biases = layer.bqkv or [None] * len(layer.wqkv)
        qkv = torch.cat([F.linear(x, w, b) for w, b in zip(layer.wqkv, biases)], -1) \
            if len(layer.wqkv) > 1 else F.linear(x, layer.wqkv[0], biases[0])
        nq, nk = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        q = qkv[..., :nq].view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = qkv[..., nq:nq + nk].view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        v = qkv[..., nq + nk:].view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        return _rotate(q, cos, sin), _rotate(k, cos, sin), v

    def _mlp_residual(self, layer: _Layer, h: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        h = h + F.linear(attn, layer.wo)
        x = _rms(h, layer.ln2, self.eps)
        if len(layer.wgu) == 1:
            gu = F.linear(x, layer.wgu[0])
            inter = gu.shape[-1] // 2
            gate, up = gu[..., :inter], gu[..., inter:]
        else:
            gate, up = F.linear(x, layer.wgu[0]), F.linear(x, layer.wgu[1])
        return h + F.linear(F.silu(gate) * up, layer.wdown)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(_rms(h, self.norm, self.eps), self.lm_head)

    def _prefill(self, ids: torch.Tensor, mask: torch.Tensor, kc: torch.Tensor, vc: torch.Tensor):
        """Run the left-padded prompts, fill cache slots [0, L), return last-position logits."""
        B, L = ids.shape
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        cos, sin = self._cos_sin(pos)
        causal = torch.ones(L, L, dtype=torch.bool, device=ids.device).tril()
        # each query sees the valid keys up to itself; pad queries see themselves (no NaN rows)
        allowed = (causal[None] & mask.bool()[:, None, :]) | torch.eye(L, dtype=torch.bool,
                                                                        device=ids.device)[None]
        allowed = allowed[:, None]
        h = F.embedding(ids, self.embed)
        for li, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, h, cos, sin)
            kc[li, :, :, :L] = k
            vc[li, :, :, :L] = v
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                               enable_gqa=self.n_kv != self.n_heads)
            h = self._mlp_residual(layer, h, a.transpose(1, 2).reshape(B, L, -1))
        return self._logits(h[:, -1])

    def _decode_step(self, st: dict[str, Any]) -> None:
        """One token for every row, entirely in place on ``st``'s tensors (CUDA-graph safe)."""
        sp: SamplingParams = st["sp"]
        tok, step = st["tok"], st["step"]
        B = tok.shape[0]
        slot = st["prompt_len"] + step - 1  # [1]: where the previous token's K/V go
        pos = st["base_pos"] + step - 1  # [B]
        st["key_valid"].index_fill_(1, slot, True)
        cos, sin = self._cos_sin(pos[:, None])
        h = F.embedding(tok[:, None], self.embed)
        G = self.n_heads // self.n_kv
        scale = 1.0 / math.sqrt(self.head_dim)
        kmask = st["key_valid"][:, None, None, :]  # [B,1,1,S]
        kc, vc = st["kc"], st["vc"]
        for li, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, h, cos, sin)
            kc[li].index_copy_(2, slot, k)
            vc[li].index_copy_(2, slot, v)
            # GQA without materialising repeated K/V: group the query heads per KV head
            qg = q.reshape(B, self.n_kv, G, self.head_dim)
            scores = torch.matmul(qg, kc[li].transpose(-1, -2)) * scale  # [B,KV,G,S]
            scores = scores.float().masked_fill(~kmask, -math.inf)
            probs = scores.softmax(-1).to(self.dtype)
            a = torch.matmul(probs, vc[li])  # [B,KV,G,D]
            h = self._mlp_residual(layer, h, a.reshape(B, 1, -1))
        logits = self._logits(h[:, 0])
        nxt = sample_next(logits, sp, st["seeds"], step, st["seen"])
        done = st["done"]
        nxt = torch.where(done, st["pad"], nxt)
        st["out"].index_copy_(1, step, nxt[:, None])
        if st["seen"] is not None:
            st["seen"].scatter_(1, nxt[:, None], True)
        if not sp.ignore_eos:
            done |= (nxt[:, None] == st["eos"][None]).any(-1)
        tok.copy_(nxt)
        step.add_(1)

    # -- driver ------------------------------------------------------------------------------------
    def _state(self, B: int, S: int, sp: SamplingParams, n_eos: int) -> dict[str, Any]:
        dev = self.device
        n_layers = len(self.layers)
        st: dict[str, Any] = {
            "sp": sp,
            "kc": torch.zeros(n_layers, B, self.n_kv, S, self.head_dim, dtype=self.dtype, device=dev),
            "vc": torch.zeros(n_layers, B, self.n_kv, S, self.head_dim, dtype=self.dtype, device=dev),
            "key_valid": torch.zeros(B, S, dtype=torch.bool, device=dev),
            "tok": torch.zeros(B, dtype=torch.long, device=dev),
            "step": torch.ones(1, dtype=torch.long, device=dev),
            "prompt_len": torch.zeros(1, dtype=torch.long, device=dev),
            "base_pos": torch.zeros(B, dtype=torch.long, device=dev),
            "seeds": torch.zeros(B, dtype=torch.long, device=dev),
            "done": torch.zeros(B, dtype=torch.bool, device=dev),
            "pad": torch.zeros((), dtype=torch.long, device=dev),
            "eos": torch.zeros(max(n_eos, 1), dtype=torch.long, device=dev),
            "out": torch.zeros(B, S, dtype=torch.long, device=dev),
            "seen": (torch.zeros(B, self.vocab, dtype=torch.bool, device=dev)
                     if sp.repetition_penalty != 1.0 else None),
        }
        return st

    def _get_state(self, B: int, S: int, sp: SamplingParams, n_eos: int) -> dict[str, Any]:
        key = (B, S, sp, n_eos)
        st = self._graphs.get(key)
        if st is None:
            if len(self._graphs) >= self.max_graphs:
                self._graphs.pop(next(iter(self._graphs)))  # oldest first
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
            st = self._state(B, S, sp, n_eos)
            self._graphs[key] = st
        return st

    def _capture(self, st: dict[str, Any]) -> None:
        """Record one decode step as a CUDA graph (after a warm-up run on a side stream)."""
        saved = {k: v.clone() for k, v in st.items() if isinstance(v, torch.Tensor)}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                self._decode_step(st)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._decode_step(st)
        for k, v in saved.items():  # warm-up and capture ran real steps: undo their effects
            st[k].copy_(v)
        st["graph"] = graph

    @torch.inference_mode()
    def generate(self, ids: torch.Tensor, mask: torch.Tensor, sp: SamplingParams,
                 seeds: list[int], eos_ids: list[int], pad_id: int,
                 check_every: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode left-padded ``ids`` [B, L]. Returns (tokens [B, max_new], lengths [B]) on CPU.

        A row's length counts its tokens up to and including the first end-of-turn token.
        """
        B, L = ids.shape
        n_new = sp.max_new_tokens
        S = L + n_new
        ids, mask = ids.to(self.device), mask.to(self.device)
        st = self._get_state(B, S, sp, len(eos_ids))
        st["key_valid"].zero_()
        st["key_valid"][:, :L] = mask.bool()
        st["step"].fill_(1)
        st["prompt_len"].fill_(L)
        st["base_pos"].copy_(mask.long().sum(-1))
        st["seeds"].copy_(torch.tensor(seeds, dtype=torch.long))
        st["done"].zero_()
        st["pad"].fill_(pad_id)
        if eos_ids:
            st["eos"].copy_(torch.tensor(eos_ids, dtype=torch.long))
        else:
            st["eos"].fill_(-1)
        st["out"].zero_()
        if st["seen"] is not None:
            st["seen"].zero_()
            # pads stand in for the row's last (always real, as padding is on the left) token
            st["seen"].scatter_(1, torch.where(mask.bool(), ids, ids[:, -1:]), True)
        logits = self._prefill(ids, mask, st["kc"], st["vc"])
        zero = torch.zeros(1, dtype=torch.long, device=self.device)
        first = sample_next(logits, sp, st["seeds"], zero, st["seen"])
        st["out"][:, 0] = first
        st["tok"].copy_(first)
        if st["seen"] is not None:
            st["seen"].scatter_(1, first[:, None], True)
        if not sp.ignore_eos:
            st["done"] |= (first[:, None] == st["eos"][None]).any(-1)
        use_graph = self.use_cuda_graphs and n_new > 1
        if use_graph and "graph" not in st:
            try:
                self._capture(st)
            except RuntimeError as exc:  # keep generating, eagerly, rather than fail the run
                log.warning("CUDA graph capture failed (%s); decoding without graphs", exc)
                self.use_cuda_graphs = use_graph = False
                self._graphs.clear()
                return self.generate(ids, mask, sp, seeds, eos_ids, pad_id, check_every)
        for t in range(1, n_new):
            if use_graph:
                st["graph"].replay()
            else:
                self._decode_step(st)
            if not sp.ignore_eos and t % check_every == 0 and bool(st["done"].all()):
                break
        out = st["out"][:, :n_new].cpu()
        lengths = torch.full((B,), n_new, dtype=torch.long)
        if eos_ids and not sp.ignore_eos:
            is_eos = torch.isin(out, torch.tensor(eos_ids))
            has = is_eos.any(-1)
            first_eos = is_eos.float().argmax(-1)
            lengths = torch.where(has, first_eos + 1, lengths)
        return out, lengths
