"""Converting a GGUF file into an ordinary transformers checkpoint, under a file lock.

Shared by the packaged default (:mod:`llmrec.models.resolve`, SmolLM2) and the opt-in stronger
models (:mod:`llmrec.models.stronger`): transformers can load a GGUF file, but such a model can be
neither saved nor trained, so each is converted once into float32 weights plus its tokenizer.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from pathlib import Path
from typing import Iterator

from llmrec.errors import LlmrecError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path``; logs once if another process holds it.

    The lock file itself stays behind: deleting it would let a third process lock a new inode
    while a second still waits on the old one.
    """
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that is %s (lock %s)", what, lock_path)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def convert_gguf(gguf: Path, out: Path) -> None:
    """Write ``gguf`` (a Llama-architecture GGUF) into ``out`` as float32 weights + tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    folder, name = str(gguf.parent), gguf.name
    # transformers de-quantizes every tensor to float32 while loading, so this is the exact model
    # that `from_pretrained(gguf_file=...)` gives; saving in float32 keeps greedy output identical.
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The loaded model carries a GGUF quantization_config and refuses save_pretrained ("is quantized
    # with gguf and is not serializable"); a model rebuilt from the config without it does not.
    config = copy.deepcopy(gguf_model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    del gguf_model
    model.save_pretrained(out)

    tokenizer = tokenizer_from_gguf(gguf)
    # Loaded from GGUF the limit is "unbounded"; the model's context length is the real one.
    tokenizer.model_max_length = config.max_position_embeddings
    tokenizer.save_pretrained(out)


def tokenizer_from_gguf(gguf: Path):
    """The tokenizer stored in ``gguf``, checked for a chat template and given a pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if not tokenizer.chat_template:
        raise LlmrecError(f"{gguf} carries no chat template; it is not an instruct model")
    if tokenizer.eos_token is None:
        raise LlmrecError(f"{gguf} names no eos token; generation would never stop")
    if tokenizer.pad_token is None:
        # Batched generation needs a pad token; the eos token is the usual stand-in.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
