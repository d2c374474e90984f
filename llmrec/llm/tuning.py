"""The one module that talks to trl and peft: LoRA SFT and LoRA DPO of a chat LLM.

trl's trainer API moves fast (argument names, dataset formats and defaults changed across the
0.x and 1.x series); keeping every call in this file means a version bump touches one place.
Written against trl 1.16 / peft 0.21 / transformers 5.

SFT rows are conversational prompt-completion pairs,
``{"prompt": [messages...], "completion": [{"role": "assistant", "content": ...}]}``, for which
``SFTTrainer`` computes the loss on the completion tokens only; DPO rows are conversational
preference pairs (``prompt``, ``chosen``, ``rejected``) for ``DPOTrainer``. The LoRA adapter is merged into
the base weights and the merged model saved as an ordinary transformers folder, so any LLM backend
(``llmrec.llm``) loads the tuned model by path; the adapter is saved beside it under ``adapter/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from llmrec.config import option
from llmrec.errors import LlmrecError, MissingDependencyError

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


def _train_lora(kind: str, model_path: str | Path, rows: list[dict[str, Any]], out: Path,
                cfg: Any, quiet: bool | None, extra_args: dict[str, Any],
                lengths: Callable[[Any], list[int]], **trainer_kwargs: Any
                ) -> tuple[Any, list[dict[str, Any]], int, list[int]]:
    """The shared body of :func:`sft_lora` and :func:`dpo_lora`: load ``model_path``, train a new
    LoRA adapter with trl's ``<kind>Trainer`` on ``rows``, save the adapter under
    ``out/adapter`` and the merged model + tokenizer into ``out``.

    Returns (train result, log history, trainable parameter count, token count per row).
    """
    import torch
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, set_seed

    from llmrec.progress import progress_enabled

    config_cls, trainer_cls = getattr(trl, f"{kind}Config"), getattr(trl, f"{kind}Trainer")
    set_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
    dataset = Dataset.from_list(rows)
    use_cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(prefix=f"llmrec-{kind.lower()}-") as work:
        # transformers 5 renamed gradient checkpointing to activation checkpointing and warns on
        # the old name, which trl still sets by default; switch it off under whichever name exists
        names = {f.name for f in dataclasses.fields(config_cls)}
        no_ckpt = ({"activation_checkpointing": False} if "activation_checkpointing" in names
                   else {"gradient_checkpointing": False})
        args = config_cls(
            **no_ckpt,
            **extra_args,
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
            seed=cfg.seed,
            data_seed=cfg.seed,
            dataloader_num_workers=0,
            disable_tqdm=not progress_enabled() if quiet is None else quiet,
            # a non-finite loss is logged as it is (transformers would log the window's mean of
            # the finite ones, 0.0 at logging_steps=1), so the check below and the curve see it
            logging_nan_inf_filter=False,
        )
        peft_config = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                 target_modules=list(cfg.target_modules), bias="none",
                                 task_type="CAUSAL_LM")
        trainer = trainer_cls(model=model, args=args, train_dataset=dataset,
                              processing_class=tokenizer, peft_config=peft_config,
                              **trainer_kwargs)
        # without a progress bar transformers prints each log dict to stdout; the caller logs
        # the summary this function returns instead
        trainer.remove_callback(PrinterCallback)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        # llmrec.llm's HF backend switches autograd off process-wide when it loads; a process
        # that generated text before training must switch it back on here
        with torch.enable_grad(), _no_cudnn_attention():
            result = trainer.train()
        row_lengths = lengths(trainer.train_dataset)
        history = trainer.state.log_history
        _check_finite(kind, trainer.model, history, cfg)
        trainer.model.save_pretrained(str(out / "adapter"))
        merged = trainer.model.merge_and_unload()
    merged.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return result, history, int(trainable), row_lengths


@contextlib.contextmanager
def _no_cudnn_attention():
    """Training without cuDNN's attention kernel (CUDA only; the other SDPA kernels stay).

    On H100/H200 with torch >= 2.11 cuDNN is the default SDPA backend, and its backward pass
    returns NaN query gradients for some masked sequence lengths (pytorch/pytorch#196678,
    huggingface/trl#7181). Qwen2.5's attention heads with very negative logits reach it: a LoRA-SFT
    of Qwen2.5-Coder-0.5B on an H200 went from loss 1.4 to NaN at step 9 and the saved model
    answered "!!!!" (token 0). The flash and memory-efficient kernels do not have the bug.
    """
    import torch

    if not torch.cuda.is_available():
        yield
        return
    was = torch.backends.cuda.cudnn_sdp_enabled()
    torch.backends.cuda.enable_cudnn_sdp(False)
    try:
        yield
    finally:
        torch.backends.cuda.enable_cudnn_sdp(was)


def _check_finite(kind: str, model: Any, history: list[dict[str, Any]], cfg: Any) -> None:
    """Refuse to save a model whose training diverged: a NaN/inf loss or a trained (LoRA)
    weight that is not finite. A model like that generates token 0 forever."""
    import math

    import torch

    bad_step = next((h.get("step") for h in history if "loss" in h
                     and not math.isfinite(float(h["loss"]))), None)
    bad_weights = [n for n, p in model.named_parameters()
                   if p.requires_grad and not bool(torch.isfinite(p.detach()).all())]
    if bad_step is None and not bad_weights:
        return
    where = f"the loss was not finite from step {bad_step} on" if bad_step is not None else \
        f"{len(bad_weights)} trained weight tensor(s) are not finite (e.g. {bad_weights[0]})"
    raise LlmrecError(
        f"{kind} training diverged: {where}; nothing was saved. Lower the learning rate "
        f"(now {cfg.learning_rate:g}) or train on fewer/shorter rows; on CUDA this can also be a "
        f"kernel bug of the installed torch (try another torch version)")


def sft_lora(base_model: str | Path, rows: Sequence[dict[str, Any]], out: str | Path,
             cfg: LoraSFTConfig, *, quiet: bool | None = None) -> dict[str, Any]:
    """LoRA-SFT ``base_model`` on ``rows``; save the merged model + tokenizer into ``out``.

    Returns a summary (steps, first/last logged training loss, trainable parameter count, the
    library versions used). ``out`` must be a fresh folder; the caller makes its write atomic.
    """
    require_trl()
    from llmrec.artifacts import package_versions

    if not rows:
        raise ValueError("no SFT rows to train on")
    result, history, trainable, lengths = _train_lora(
        "SFT", base_model, [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows],
        Path(out), cfg, quiet, {"max_length": cfg.max_length, "completion_only_loss": True},
        lambda ds: [len(x) for x in ds["input_ids"]])
    losses = [h["loss"] for h in history if "loss" in h]
    return {"rows": len(rows), "steps": int(result.global_step),
            "train_loss": float(result.training_loss),
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "curve": _curve(history),
            **_throughput(lengths, result, cfg),
            "trainable_parameters": trainable,
            "versions": package_versions(("trl", "peft", "transformers", "torch"))}


def _curve(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The logged training steps (loss and, for DPO, the reward statistics), one dict a step."""
    keep = ("step", "epoch", "loss", "grad_norm", "learning_rate", "rewards/accuracies",
            "rewards/margins", "rewards/chosen", "rewards/rejected")
    return [{k: h[k] for k in keep if k in h} for h in history if "loss" in h]


def _throughput(lengths: list[int], result: Any, cfg: Any) -> dict[str, Any]:
    """Training tokens per second: tokens of the rows the optimiser saw (no padding counted),
    over the trainer's own runtime (which excludes model loading and tokenisation)."""
    runtime = float(result.metrics.get("train_runtime") or 0.0)
    if not lengths or runtime <= 0:
        return {"train_seconds": runtime, "tokens_seen": 0, "tokens_per_second": None}
    rows_seen = int(result.global_step) * cfg.batch_size * cfg.grad_accum
    mean_len = sum(lengths) / len(lengths)
    tokens = int(round(mean_len * rows_seen))
    return {"train_seconds": round(runtime, 3), "tokens_seen": tokens,
            "tokens_per_second": round(tokens / runtime, 1)}


@dataclass
class LoraDPOConfig:
    """DPO with a new LoRA adapter (defaults: the ECPO paper's settings)."""

    r: int = option(8, help="LoRA rank of the new adapter")
    alpha: int = option(16, help="LoRA alpha (the update is scaled by alpha / r)")
    dropout: float = option(0.05, help="dropout on the LoRA branch")
    target_modules: list[str] = option(
        ["q_proj", "k_proj", "v_proj", "o_proj"],
        help="module names that get LoRA adapters (Llama attention projections by default)")
    beta: float = option(0.1, help="DPO beta (strength of the pull towards the reference)")
    loss_type: str = option("sigmoid", help="trl DPO loss type (sigmoid = the DPO paper's loss)")
    learning_rate: float = option(5e-7, help="peak learning rate (paper: 1e-6 .. 5e-7)")
    epochs: float = option(3.0, help="passes over the preference pairs")
    max_steps: int = option(-1, help="stop after this many optimiser steps (-1: epochs decide)")
    batch_size: int = option(8, help="pairs per device batch")
    grad_accum: int = option(4, help="batches per optimiser step (8 x 4 = the paper's 32)")
    max_length: int = option(1024, help="token limit of prompt + response; longer pairs are "
                                        "dropped before training, never cut")
    seed: int = option(0, help="seed of LoRA initialisation and data order")

    def __post_init__(self) -> None:
        if self.r < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("r, batch_size and grad_accum must be >= 1")
        if self.beta <= 0:
            raise ValueError("beta must be > 0")


def dpo_lora(model_path: str | Path, pairs: Sequence[dict[str, Any]], out: str | Path,
             cfg: LoraDPOConfig, *, quiet: bool | None = None) -> dict[str, Any]:
    """DPO of a new LoRA adapter on top of ``model_path``; save the merged model into ``out``.

    ``pairs`` are conversational preference rows ``{"prompt": [messages...], "chosen":
    [{"role": "assistant", ...}], "rejected": [...]}``. The reference model is ``model_path``
    itself (trl evaluates it with the new adapter switched off), so when ``model_path`` is the
    SFT model, the reference is base + SFT adapter, as ECPO prescribes. The new adapter is saved
    under ``out/adapter`` (``PeftModel.from_pretrained(<model_path model>, out/adapter)``) and the
    merged model in ``out`` (any backend loads it by path).
    """
    require_trl()
    from llmrec.artifacts import package_versions

    if not pairs:
        raise ValueError("no preference pairs to train on")
    result, history, trainable, lengths = _train_lora(
        "DPO", model_path, [{"prompt": p["prompt"], "chosen": p["chosen"],
                             "rejected": p["rejected"]} for p in pairs],
        Path(out), cfg, quiet,
        # over-long pairs were dropped by the caller: nothing is cut (max_length None)
        {"beta": cfg.beta, "loss_type": [cfg.loss_type], "max_length": None},
        # each pair is two forward sequences (prompt + chosen, prompt + rejected)
        lambda ds: [2 * len(p) + len(c) + len(r) for p, c, r in
                    zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"])],
        ref_model=None)
    curve = _curve(history)
    return {"pairs": len(pairs), "steps": int(result.global_step),
            "train_loss": float(result.training_loss),
            "first_loss": curve[0]["loss"] if curve else None,
            "last_loss": curve[-1]["loss"] if curve else None,
            "last_reward_accuracy": curve[-1].get("rewards/accuracies") if curve else None,
            "curve": curve, **_throughput(lengths, result, cfg),
            "trainable_parameters": trainable,
            "versions": package_versions(("trl", "peft", "transformers", "torch"))}


def count_tokens(model_path: str | Path, rows: Sequence[dict[str, Any]], keys: Sequence[str]
                 ) -> list[int]:
    """Chat-template token counts of each row's ``prompt`` followed by each message list in
    ``keys`` (the longest of them): what a trainer would see, to drop rows before training."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_path))
    out = []
    for r in rows:
        longest = 0
        for k in keys:
            ids = tok.apply_chat_template(list(r["prompt"]) + list(r[k]), tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            longest = max(longest, len(ids))
        out.append(longest)
    return out
