"""The one module that talks to trl and peft: LoRA supervised fine-tuning of a chat LLM.

trl's trainer API moves fast (argument names, dataset formats and defaults changed across the
0.x and 1.x series); keeping every call in this file means a version bump touches one place.
Written against trl 1.16 / peft 0.21 / transformers 5.

The training rows are conversational prompt-completion pairs,
``{"prompt": [messages...], "completion": [{"role": "assistant", "content": ...}]}``, for which
``SFTTrainer`` computes the loss on the completion tokens only. The LoRA adapter is merged into
the base weights and the merged model saved as an ordinary transformers folder, so any LLM backend
(``llmrec.llm``) loads the tuned model by path; the adapter is saved beside it under ``adapter/``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from llmrec.config import option
from llmrec.errors import MissingDependencyError

log = logging.getLogger(__name__)


@dataclass
class LoraSFTConfig:
    """LoRA + SFT hyper-parameters."""

    r: int = option(8, help="LoRA rank")
    alpha: int = option(16, help="LoRA alpha (the update is scaled by alpha / r)")
    dropout: float = option(0.05, help="dropout on the LoRA branch")
    target_modules: list[str] = option(
        ["q_proj", "k_proj", "v_proj", "o_proj"],
        help="module names that get LoRA adapters (Llama attention projections by default)")
    epochs: float = option(1.0, help="passes over the SFT rows")
    max_steps: int = option(-1, help="stop after this many optimiser steps (-1: epochs decide)")
    learning_rate: float = option(2e-4, help="peak learning rate (linear decay, 10% warm-up)")
    batch_size: int = option(8, help="rows per device batch")
    grad_accum: int = option(1, help="batches accumulated per optimiser step")
    max_length: int = option(512, help="token limit of prompt + completion (longer rows are cut)")
    seed: int = option(0, help="seed of LoRA initialisation and data order")

    def __post_init__(self) -> None:
        if self.r < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("r, batch_size and grad_accum must be >= 1")


def is_trl_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("trl", "peft"))


def require_trl() -> None:
    if not is_trl_available():
        raise MissingDependencyError(
            "LoRA fine-tuning needs trl and peft; install them with "
            "`pip install trl peft` (both are llmrec dependencies)")


def sft_lora(base_model: str | Path, rows: Sequence[dict[str, Any]], out: str | Path,
             cfg: LoraSFTConfig, *, quiet: bool | None = None) -> dict[str, Any]:
    """LoRA-SFT ``base_model`` on ``rows``; save the merged model + tokenizer into ``out``.

    Returns a summary (steps, first/last logged training loss, trainable parameter count, the
    library versions used). ``out`` must be a fresh folder; the caller makes its write atomic.
    """
    require_trl()
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    from llmrec.progress import progress_enabled

    if not rows:
        raise ValueError("no SFT rows to train on")
    out = Path(out)
    set_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base_model))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=torch.float32)
    dataset = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]}
                                 for r in rows])
    use_cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix="llmrec-sft-") as work:
        # transformers 5 renamed gradient checkpointing to activation checkpointing and warns on
        # the old name, which trl still sets by default; switch it off under whichever name exists
        names = {f.name for f in dataclasses.fields(SFTConfig)}
        no_ckpt = ({"activation_checkpointing": False} if "activation_checkpointing" in names
                   else {"gradient_checkpointing": False})
        args = SFTConfig(
            **no_ckpt,
            output_dir=work,
            num_train_epochs=cfg.epochs,
            max_steps=cfg.max_steps,
            per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum,
            learning_rate=cfg.learning_rate,
            lr_scheduler_type="linear",
            warmup_steps=0.1,  # a float below 1 is a ratio of the total steps
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            # trl defaults bf16 on (and checkpointing, above); neither helps a 135M model and
            # bf16 is slow (or unsupported) on most CPUs
            bf16=bool(use_cuda and torch.cuda.is_bf16_supported()),
            fp16=False,
            use_cpu=not use_cuda,
            max_length=cfg.max_length,
            completion_only_loss=True,
            seed=cfg.seed,
            data_seed=cfg.seed,
            dataloader_num_workers=0,
            disable_tqdm=not progress_enabled() if quiet is None else quiet,
        )
        peft_config = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                 target_modules=list(cfg.target_modules), bias="none",
                                 task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset,
                             processing_class=tokenizer, peft_config=peft_config)
        # without a progress bar transformers prints each log dict to stdout; the caller logs
        # the summary this function returns instead
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        # llmrec.llm's HF backend switches autograd off process-wide when it loads; a process
        # that generated queries before training must switch it back on here
        with torch.enable_grad():
            result = trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        trainer.model.save_pretrained(str(out / "adapter"))
        merged = trainer.model.merge_and_unload()
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    from llmrec.artifacts import package_versions

    return {"rows": len(rows), "steps": int(result.global_step),
            "train_loss": float(result.training_loss),
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "trainable_parameters": int(trainable),
            "versions": package_versions(("trl", "peft", "transformers", "torch"))}
