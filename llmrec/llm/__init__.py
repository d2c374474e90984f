"""LLM backends behind one small interface.

``llmrec.llm`` owns text generation and option scoring for every stage that asks an LLM something
(knowledge generation, synthetic data, simulators, agents). A stage builds an :class:`LLMConfig`,
calls :func:`load_backend` once and talks to the returned :class:`LLMBackend`:

- ``generate(conversations, sampling, seeds=...)``: chat messages in, one :class:`Generation` out
  per conversation, all in one batched engine call;
- ``score_options(conversations, options)``: the log-likelihood of each allowed answer, so that a
  structured decision stays valid even when the model is too small to follow a format.

Backends: ``hf`` (transformers, default), ``vllm`` (the offline engine, optional extra) and
``openai`` (any OpenAI-compatible HTTP endpoint). Each is imported only when selected, so
``import llmrec.llm`` never imports torch or vllm. :mod:`llmrec.llm.tuning` is the one module
that wraps trl and peft (LoRA SFT and DPO), for every stage that fine-tunes an LLM.
"""

from llmrec.llm.base import Generation, LLMBackend, SamplingParams
from llmrec.llm.config import LLMConfig, load_backend

__all__ = ["Generation", "LLMBackend", "LLMConfig", "SamplingParams", "load_backend"]
