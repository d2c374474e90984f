"""``LLMConfig``: which backend, which model, how to sample; and :func:`load_backend`.

The API key of an HTTP endpoint is never a config value: the config names the environment
variable that holds it (``api_key_env``), so a saved config or a log line cannot leak it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmrec.config import option
from llmrec.llm.base import LLMBackend, SamplingParams

BACKENDS = ("hf", "vllm", "openai")


@dataclass
class LLMConfig:
    backend: Literal["hf", "vllm", "openai"] = option(
        "hf", help="engine: hf (transformers), vllm (offline vllm.LLM, needs the vllm extra) or "
                   "openai (any OpenAI-compatible HTTP endpoint given by base_url)")
    model: str = option(
        "smollm2", help="model: 'smollm2' (the packaged SmolLM2-135M-Instruct), a local "
                        "transformers folder, or for backend=openai the server's model name")
    revision: str | None = option(
        None, help="model revision recorded in cache keys; default: a content hash of the model "
                   "folder (hf/vllm) or the server's model id (openai)")
    temperature: float = option(0.0, help="sampling temperature; 0 = greedy decoding")
    top_p: float = option(1.0, help="nucleus sampling mass (1 = off)")
    top_k: int = option(0, help="sample among the k most likely tokens (0 = off)")
    repetition_penalty: float = option(
        1.1, help="divide the logits of tokens already in the prompt or reply by this (1 = off); "
                  "small models loop without it")
    max_new_tokens: int = option(256, help="maximum tokens generated per reply")
    seed: int = option(0, help="base seed; each prompt's seed is derived from it and the prompt")
    batch_size: int = option(
        0, help="hf: prompts per batch; 0 = auto (256 on GPU, where larger batches are faster "
                "still, see bench/results; 16 on CPU); vllm and openai schedule on their own")
    device: str = option("auto", help="hf: 'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1' ...")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = option(
        "auto", help="hf/vllm weights dtype; auto = bfloat16 on GPU, float32 on CPU")
    fast_decode: Literal["auto", "on", "off"] = option(
        "auto", help="hf: decode with llmrec's static-KV-cache loop (CUDA graphs on GPU) for "
                     "Llama/Qwen2-family models; off = transformers generate(); on = error if "
                     "the model is not supported")
    max_model_len: int = option(4096, help="vllm: context length the engine reserves KV cache for")
    gpu_memory_utilization: float = option(0.85, help="vllm: fraction of GPU memory it may take")
    enforce_eager: bool = option(
        False, help="vllm: skip torch.compile and CUDA graphs (starts in seconds instead of "
                    "minutes, decodes slower)")
    guided: bool = option(
        True, help="vllm/openai: constrain replies to the requested JSON schema where the engine "
                   "supports it")
    base_url: str | None = option(
        None, help="openai: endpoint base URL, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = option(
        "OPENAI_API_KEY", help="openai: NAME of the environment variable holding the API key "
                               "(the key itself is never read from or written to a config)")
    concurrency: int = option(8, help="openai: requests in flight at once")
    timeout: float = option(120.0, help="openai: seconds before one request is abandoned")
    retries: int = option(
        4, help="openai: retries per request on 429 / 5xx / connection errors, with exponential "
                "backoff")

    def __post_init__(self) -> None:
        if self.batch_size < 0:
            raise ValueError("batch_size must be >= 0 (0 = auto)")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        self.sampling()  # validate the sampling parameters early, with their own messages

    def sampling(self, **overrides) -> SamplingParams:
        params = dict(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                      repetition_penalty=self.repetition_penalty,
                      max_new_tokens=self.max_new_tokens)
        params.update(overrides)
        return SamplingParams(**params)


def load_backend(cfg: LLMConfig) -> LLMBackend:
    """Build the configured backend; its module (and vllm) is imported only here."""
    if cfg.backend == "hf":
        from llmrec.llm.hf import HFBackend

        return HFBackend(cfg)
    if cfg.backend == "vllm":
        from llmrec.llm.vllm_backend import VLLMBackend

        return VLLMBackend(cfg)
    if cfg.backend == "openai":
        from llmrec.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(cfg)
    raise ValueError(f"unknown backend {cfg.backend!r}; choose one of {', '.join(BACKENDS)}")


def backend_identity(cfg: LLMConfig) -> dict[str, str]:
    """The ``identity()`` the configured backend will report, without loading a model.

    Lets a fully cached run finish without ever starting an engine.
    """
    if cfg.backend == "openai":
        return load_backend(cfg).identity()  # no model to load: asks the server at most
    from llmrec.llm.hf import resolve_model_path
    from llmrec.llm.identity import model_fingerprint

    return {"model": cfg.model, "revision": cfg.revision or model_fingerprint(resolve_model_path(cfg.model))}
