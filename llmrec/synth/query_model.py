"""The query model f(d, s) -> q: an LLM prompted with the level definitions, tuned with LoRA.

The same prompt (``prompts/synth/query.jinja``: the four level definitions in one line each, the
document, the target level) serves three purposes: zero-shot generation for the prompt-only
baseline, the prompt side of the SFT rows ``(document, level) -> query``, and generation with the
tuned model. Keeping one prompt means the tuned model is asked exactly what it was trained on.

Generation goes through ``llmrec.llm`` (one batched call per stage). Each (document, level, round)
gets its own seed, derived from its content, so a rerun reproduces the same queries.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from llmrec.config import option
from llmrec.llm.config import LLMConfig
from llmrec.synth.levels import LEVEL_NAMES, LEVEL_SHORT
from llmrec.llm.tuning import LoraSFTConfig

log = logging.getLogger(__name__)


def _generator_llm() -> LLMConfig:
    # sampled, short replies: diversity across documents and levels matters more than the single
    # most likely query, and a query never needs more than a few dozen tokens
    return LLMConfig(model="smollm2", temperature=0.7, top_p=0.9, max_new_tokens=32,
                     repetition_penalty=1.1, batch_size=32)


@dataclass
class QueryModelConfig:
    """The query model: base LLM, prompt, generation limits and LoRA fine-tuning."""

    llm: LLMConfig = option(default_factory=_generator_llm,
                            help="base LLM and sampling for query generation")
    prompt: str = option("query", help="prompt template (prompts/synth/<name>.jinja or a path)")
    max_query_words: int = option(12, help="queries are asked for and cut to this many words")
    max_doc_words: int = option(60, help="words of the document shown in the prompt")
    lora: LoraSFTConfig = option(default_factory=LoraSFTConfig,
                                 help="LoRA SFT of f on (document, level) -> query")

    def __post_init__(self) -> None:
        if self.max_query_words < 1 or self.max_doc_words < 1:
            raise ValueError("max_query_words and max_doc_words must be >= 1")


def query_messages(prompt: Any, document: str, level: int, cfg: QueryModelConfig) -> list[dict]:
    from llmrec.synth.prompts import shorten

    return prompt.messages(definitions=sorted(LEVEL_SHORT.items(), reverse=True),
                           document=shorten(document, cfg.max_doc_words),
                           max_words=cfg.max_query_words, level=int(level),
                           level_name=LEVEL_NAMES[int(level)])


_PREFIX = re.compile(r"^\s*(?:search\s+)?query\s*(?:\(\w+\))?\s*[:\-]\s*", re.I)
_QUOTES = "\"'`“”‘’"


def clean_query(text: str, max_words: int) -> str:
    """The query in a raw reply: first non-empty line, labels and quotes removed, cut to size.

    Small models often answer ``Query: "..."`` or add an explanation after the query.
    """
    for line in str(text).splitlines():
        line = _PREFIX.sub("", line.strip()).strip().strip(_QUOTES).strip()
        line = re.sub(r"^\d+[.)]\s*", "", line)  # a numbered list item
        if line:
            words = line.split()[:max_words]
            return " ".join(words).rstrip(".,;:").strip(_QUOTES).strip()
    return ""


def query_seed(base: int, doc_id: str, level: int, round_: int) -> int:
    """A 31-bit seed from the generation's identity, independent of batch composition."""
    h = hashlib.sha256(f"{base}\0{doc_id}\0{level}\0{round_}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def sft_rows(pairs, doc_text: dict[str, str], cfg: QueryModelConfig) -> list[dict[str, Any]]:
    """Prompt-completion rows for f's SFT from the doc_id, level, query columns of ``pairs``."""
    from llmrec.synth.prompts import load_prompt

    prompt = load_prompt(cfg.prompt)
    return [{"prompt": query_messages(prompt, doc_text[d], lv, cfg),
             "completion": [{"role": "assistant", "content": str(q)}]}
            for d, lv, q in zip(pairs["doc_id"], pairs["level"], pairs["query"])]


def generate_queries(model: str, doc_ids: Sequence[str], levels: Sequence[int],
                     doc_text: dict[str, str], cfg: QueryModelConfig, *, round_: int = 0):
    """One query per (doc_id, level) with the LLM at ``model`` (a name or folder).

    Returns a DataFrame: doc_id, level, query (cleaned, possibly empty), raw, seed,
    finish_reason; and the generator's identity (model, revision, prompt hash, sampling).
    """
    import pandas as pd

    from llmrec.llm import load_backend
    from llmrec.synth.prompts import load_prompt

    prompt = load_prompt(cfg.prompt)
    llm_cfg = replace(cfg.llm, model=str(model))
    convs = [query_messages(prompt, doc_text[d], lv, cfg) for d, lv in zip(doc_ids, levels)]
    seeds = [query_seed(llm_cfg.seed, d, lv, round_) for d, lv in zip(doc_ids, levels)]
    log.info("generating %d queries with %s", len(convs), model)
    with load_backend(llm_cfg) as backend:
        gens = backend.generate(convs, llm_cfg.sampling(), seeds=seeds)
        identity = {**backend.identity(), "backend": backend.name,
                    "sampling": llm_cfg.sampling().key(), "prompt": prompt.identity()}
    df = pd.DataFrame({
        "doc_id": [str(d) for d in doc_ids],
        "level": [int(lv) for lv in levels],
        "query": [clean_query(g.text, cfg.max_query_words) for g in gens],
        "raw": [g.text for g in gens],
        "seed": seeds,
        "finish_reason": [g.finish_reason for g in gens],
    })
    return df, identity


def train_query_model(base: str, pairs, doc_text: dict[str, str], out: str | Path,
                      cfg: QueryModelConfig, config: Any = None, **provenance: Any) -> Path:
    """LoRA-SFT the base LLM on ``pairs`` (doc_id, level, query) and save the merged model."""
    from llmrec.artifacts import atomic_dir, write_meta
    from llmrec.models import resolve_llm
    from llmrec.synth.prompts import load_prompt
    from llmrec.llm.tuning import sft_lora

    rows = sft_rows(pairs, doc_text, cfg)
    base_path = resolve_llm(base)
    out = Path(out)
    log.info("LoRA SFT of the query model on %d rows (base %s) -> %s", len(rows), base_path, out)
    with atomic_dir(out) as tmp:
        summary = sft_lora(base_path, rows, tmp, cfg.lora)
        write_meta(tmp, config, stage="query_model", base_model=str(base_path),
                   prompt=load_prompt(cfg.prompt).identity(), sft=summary, **provenance)
    log.info("query model trained: %d steps, loss %.3f -> %.3f", summary["steps"],
             summary["first_loss"] or float("nan"), summary["last_loss"] or float("nan"))
    return out
