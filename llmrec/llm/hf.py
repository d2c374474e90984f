"""The transformers backend (default): batched chat generation and option scoring.

Prompts are rendered with the model's own chat template, sorted by length and cut into batches of
``batch_size`` (length bucketing: little padding, and the longest batch first so an out-of-memory
shows up at once). Each batch is left-padded and decoded by :mod:`llmrec.llm.fast_decode` (static
KV cache, CUDA graphs on GPU) when the model is Llama/Qwen2-shaped, else by ``generate()``.
Weights are bfloat16 on GPU and float32 on CPU unless ``dtype`` says otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from llmrec.llm.base import Conversation, Generation, LLMBackend, SamplingParams, broadcast_options

log = logging.getLogger(__name__)

# Prompt lengths are padded up to a multiple of this, so that consecutive batches share one
# captured CUDA graph shape instead of capturing a graph per exact length.
_LEN_BUCKET = 32


def resolve_model_path(name_or_path: str) -> Path:
    """'smollm2' -> the converted packaged model; a folder -> itself."""
    try:
        from llmrec.models import resolve_llm
    except ImportError:  # llmrec.models absent: only local folders work
        resolve_llm = None
    if resolve_llm is not None:
        return Path(resolve_llm(name_or_path))
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    from llmrec.errors import ConfigError

    raise ConfigError(f"model {name_or_path!r} is not a local folder and llmrec.models is not "
                      f"available to resolve it")


def pick_device(spec: str) -> str:
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return spec


def pick_dtype(spec: str, device: str):
    import torch

    if spec == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, spec)


class HFBackend(LLMBackend):
    """transformers model + tokenizer on one device."""

    name = "hf"

    def __init__(self, cfg: Any, *, model: Any = None, tokenizer: Any = None) -> None:
        super().__init__(cfg)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = pick_device(cfg.device)
        self.dtype = pick_dtype(cfg.dtype, self.device)
        self.batch_size = cfg.batch_size or (256 if self.device.startswith("cuda") else 16)
        self.path = resolve_model_path(cfg.model) if model is None else None
        self.tok = tokenizer or AutoTokenizer.from_pretrained(str(self.path))
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        if model is None:
            model = AutoModelForCausalLM.from_pretrained(str(self.path), dtype=self.dtype)
        self.model = model.to(self.device).eval()
        self._revision: str | None = cfg.revision
        eos: set[int] = set()
        gen_eos = getattr(self.model.generation_config, "eos_token_id", None)
        for e in (gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]):
            if e is not None:
                eos.add(int(e))
        if self.tok.eos_token_id is not None:
            eos.add(int(self.tok.eos_token_id))
        self.eos_ids = sorted(eos)
        self.decoder = None
        if cfg.fast_decode != "off":
            from llmrec.llm.fast_decode import StaticDecoder, supports

            ok, why = supports(self.model)
            if ok:
                self.decoder = StaticDecoder(self.model)
            elif cfg.fast_decode == "on":
                from llmrec.errors import ConfigError

                raise ConfigError(f"llm.fast_decode=on but the model is not supported: {why}")
            else:
                log.info("fast decode off for this model (%s); using transformers generate()", why)

    # -- identity ----------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.cfg.model

    @property
    def model_revision(self) -> str:
        if self._revision is None:
            from llmrec.llm.identity import model_fingerprint

            self._revision = model_fingerprint(self.path) if self.path else "in-memory"
        return self._revision

    # -- helpers -------------------------------------------------------------------------------
    def encode(self, conversation: Conversation) -> list[int]:
        """Token ids of the chat-templated prompt, ending with the assistant turn's header."""
        text = self.tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _pad_left(self, rows: list[list[int]], length: int):
        import torch

        pad = self.tok.pad_token_id
        ids = torch.full((len(rows), length), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for r, seq in enumerate(rows):
            if seq:
                ids[r, length - len(seq):] = torch.tensor(seq, dtype=torch.long)
                mask[r, length - len(seq):] = 1
        return ids, mask

    # -- generation ------------------------------------------------------------------------------
    def generate(self, conversations: Sequence[Conversation], sampling: SamplingParams | None = None,
                 *, seeds: Sequence[int] | None = None,
                 json_schema: dict[str, Any] | None = None) -> list[Generation]:
        sp = sampling or self.default_sampling()
        seed_list = self.seeds_for(conversations, seeds)
        return self.generate_ids([self.encode(c) for c in conversations], sp, seed_list)

    def generate_ids(self, encoded: list[list[int]], sp: SamplingParams,
                     seed_list: list[int]) -> list[Generation]:
        """Generate from prompt token ids (the chat template already applied, or none wanted)."""
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        results: list[Generation | None] = [None] * len(encoded)
        bs = self.batch_size
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            rows = [encoded[i] for i in idx]
            row_seeds = [seed_list[i] for i in idx]
            if self.decoder is not None:
                tokens, lengths = self._fast_batch(rows, row_seeds, sp, bs)
            else:
                tokens, lengths = self._hf_batch(rows, row_seeds, sp)
            for r, i in enumerate(idx):
                n = int(lengths[r])
                seq = tokens[r, :n].tolist()
                ended = bool(seq) and seq[-1] in self.eos_ids and not sp.ignore_eos
                results[i] = Generation(
                    text=self.tok.decode(seq, skip_special_tokens=True).strip(),
                    prompt_tokens=len(rows[r]), completion_tokens=n,
                    finish_reason="stop" if ended else "length")
        return results  # type: ignore[return-value]

    def _fast_batch(self, rows, seeds, sp: SamplingParams, bs: int):
        longest = max(len(r) for r in rows)
        length = -(-longest // _LEN_BUCKET) * _LEN_BUCKET
        n = len(rows)
        if self.decoder.use_cuda_graphs and n < bs:
            # a short last batch reuses the full batch's captured graph: pad it with copies
            rows = rows + [rows[-1]] * (bs - n)
            seeds = seeds + [seeds[-1]] * (bs - n)
        ids, mask = self._pad_left(rows, length)
        tokens, lengths = self.decoder.generate(ids, mask, sp, seeds, self.eos_ids,
                                                self.tok.pad_token_id)
        return tokens[:n], lengths[:n]

    def _hf_batch(self, rows, seeds, sp: SamplingParams):
        import torch
        from transformers import GenerationConfig

        ids, mask = self._pad_left(rows, max(len(r) for r in rows))
        kw: dict[str, Any] = dict(max_new_tokens=sp.max_new_tokens, do_sample=not sp.greedy,
                                  pad_token_id=self.tok.pad_token_id, eos_token_id=self.eos_ids,
                                  repetition_penalty=sp.repetition_penalty)
        if not sp.greedy:
            kw.update(temperature=sp.temperature, top_p=sp.top_p, top_k=sp.top_k or None)
        if sp.ignore_eos:
            kw["min_new_tokens"] = sp.max_new_tokens
        # generate() samples from the global RNG, so rows of one batch share a stream: seeded
        # per batch (by its first row), which is reproducible for the same batching only.
        torch.manual_seed(seeds[0])
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids.to(self.device),
                                      attention_mask=mask.to(self.device),
                                      generation_config=GenerationConfig(**kw))
        new = out[:, ids.shape[1]:].cpu()
        lengths = torch.full((new.shape[0],), new.shape[1], dtype=torch.long)
        if not sp.ignore_eos:
            is_eos = torch.isin(new, torch.tensor(self.eos_ids))
            lengths = torch.where(is_eos.any(-1), is_eos.float().argmax(-1) + 1, lengths)
        return new, lengths

    # -- option scoring --------------------------------------------------------------------------
    def score_options(self, conversations: Sequence[Conversation],
                      options: Sequence[Sequence[str]]) -> list[list[float]]:
        import torch

        opts = broadcast_options(len(conversations), options)
        end = [self.tok.eos_token_id] if self.tok.eos_token_id is not None else []
        pairs: list[tuple[int, int, list[int], list[int]]] = []
        for i, conv in enumerate(conversations):
            prompt = self.encode(conv)
            for j, o in enumerate(opts[i]):
                pairs.append((i, j, prompt, self.tok(o, add_special_tokens=False)["input_ids"] + end))
        scores = [[0.0] * len(o) for o in opts]
        order = sorted(range(len(pairs)), key=lambda k: -(len(pairs[k][2]) + len(pairs[k][3])))
        bs = self.batch_size
        for start in range(0, len(order), bs):
            chunk = [pairs[k] for k in order[start:start + bs]]
            rows = [p + o for _, _, p, o in chunk]
            ids, mask = self._pad_left(rows, max(len(r) for r in rows))
            # left padding puts every option at the end of its row, so only the last
            # (longest option + 1) positions need logits
            keep = max(len(o) for *_, o in chunk) + 1
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                 position_ids=pos.to(self.device), logits_to_keep=keep)
            logp = torch.log_softmax(out.logits.float(), dim=-1).cpu()  # [B, keep, V]
            for r, (i, j, _, o) in enumerate(chunk):
                n = len(o)
                # logits at position t predict token t+1: the option's tokens are the last n
                # of the row, predicted by the n positions before the row's end
                pred = logp[r, keep - 1 - n:keep - 1]
                target = torch.tensor(o, dtype=torch.long)
                scores[i][j] = float(pred.gather(-1, target[:, None]).sum())
        return scores

    def close(self) -> None:
        import gc

        self.decoder = None
        self.model = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover
            pass
