"""Tiny random-weight models with the real tokenizers, for fast unit tests of other modules.

The weights are random and small (made and saved in a second or two), but the tokenizers are the
production ones: :func:`tiny_llama` carries SmolLM2's tokenizer and chat template, :func:`tiny_bert`
MiniLM's WordPiece vocabulary. Prompt building, chat templates, special tokens, truncation and
padding therefore behave exactly as with the real models; only the generated text and the vectors
are meaningless. Both write ordinary folders that load with ``from_pretrained`` (and, for
:func:`tiny_bert`, with ``SentenceTransformer(path)``), so code under test takes them like any
local model path.
"""

from __future__ import annotations

import json
from pathlib import Path

from llmrec.artifacts import write_meta
from llmrec.models.resolve import default_embedder_path, smollm2_tokenizer


def tiny_llama(dest: str | Path, *, layers: int = 2, hidden: int = 64, heads: int = 4,
               kv_heads: int = 2, intermediate: int = 128, seed: int = 0) -> Path:
    """Save a random ``LlamaForCausalLM`` shaped like SmolLM2 (scaled down) into ``dest``.

    Same vocabulary, special-token ids, rope base, tied embeddings and context length as
    SmolLM2-135M-Instruct, with the real tokenizer and chat template beside it. The same ``seed``
    gives the same weights; the caller's global RNG state is left untouched.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if hidden % heads or heads % kv_heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads}) and heads a "
                         f"multiple of kv_heads ({kv_heads})")
    dest = Path(dest)
    tokenizer = smollm2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        max_position_embeddings=tokenizer.model_max_length,
        rms_norm_eps=1e-5,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    write_meta(dest, model="tiny_llama", random_weights=True, seed=seed,
               shape=dict(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads,
                          intermediate=intermediate),
               tokenizer="SmolLM2-135M-Instruct")
    return dest


def tiny_bert(dest: str | Path, *, layers: int = 2, hidden: int = 32, heads: int = 2,
              seed: int = 0, normalize: bool = True) -> Path:
    """Save a random ``BertModel`` as a sentence-transformers folder into ``dest``.

    Laid out like all-MiniLM-L6-v2 (Transformer -> mean Pooling -> Normalize, max_seq_length 256)
    with MiniLM's real tokenizer, so ``SentenceTransformer(dest)`` loads it and
    ``encode`` gives unit-length vectors of size ``hidden`` (``normalize=False`` drops the last
    step). The same ``seed`` gives the same weights.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    dest = Path(dest)
    tokenizer = AutoTokenizer.from_pretrained(default_embedder_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config).to(torch.float32).eval()
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    # The sentence-transformers module files are written by hand, in the layout the packaged
    # MiniLM folder uses: that layout loads across sentence-transformers 3.x to 6.x, whereas the
    # classes that would save it moved between those versions.
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (dest / "2_Normalize").mkdir(exist_ok=True)
    _write_json(dest / "modules.json", modules)
    _write_json(dest / "sentence_bert_config.json", {"max_seq_length": 256, "do_lower_case": False})
    (dest / "1_Pooling").mkdir(exist_ok=True)
    _write_json(dest / "1_Pooling" / "config.json", {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    write_meta(dest, model="tiny_bert", random_weights=True, seed=seed,
               shape=dict(layers=layers, hidden=hidden, heads=heads), normalize=normalize,
               tokenizer="all-MiniLM-L6-v2")
    return dest


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")
