"""Training for the domain recipe: CPT, SFT and DPO through trl, full or LoRA, resumable.

Like :mod:`llmrec.llm.tuning` (whose LoRA-only, run-to-the-end functions ECPO uses), this is
the only place the recipe calls trl; unlike them, every run here checkpoints into a persistent
work folder and resumes from its last checkpoint when the process was killed.

- ``cpt``: rows ``{"text": ...}``; ``SFTTrainer`` on a language-modelling dataset, packed with
  the ``wrapped`` strategy (documents concatenated, end-of-text between them, cut into
  ``max_length`` blocks), so the causal-LM loss covers every token;
- ``sft``: conversational prompt-completion rows; ``SFTTrainer`` with
  ``completion_only_loss=True``: the loss covers the completion tokens only;
- ``dpo``: conversational preference rows; ``DPOTrainer``. The reference is the starting model
  (with LoRA: the model with the adapter switched off; full: a frozen copy trl makes).

The work folder holds trl's ``checkpoint-<step>`` folders and ``inputs.json`` (the fingerprint
of base model, rows and settings); a work folder made from other inputs is cleared before
training, so a checkpoint of another run is never resumed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

from llmrec.config import option

log = logging.getLogger(__name__)

KINDS = ("cpt", "sft", "dpo")


@dataclass
class TrainConfig:
    """One training stage's settings."""

    method: Literal["full", "lora"] = option("lora", help="full: every weight is trained; "
                                                          "lora: a LoRA adapter, merged at the end")
    learning_rate: float = option(2e-4, help="peak learning rate (linear decay after warm-up)")
    warmup_ratio: float = option(0.1, help="share of the steps spent warming up")
    epochs: float = option(1.0, help="passes over the rows")
    max_steps: int = option(-1, help="stop after this many optimiser steps (-1: epochs decide)")
    batch_size: int = option(8, help="rows per device batch")
    grad_accum: int = option(1, help="batches per optimiser step")
    max_length: int = option(512, help="tokens per row: CPT packs blocks of this length; SFT "
                                       "cuts longer rows; DPO drops longer pairs before training")
    save_steps: int = option(50, help="a resumable checkpoint every this many steps")
    lora_r: int = option(8, help="LoRA rank")
    lora_alpha: int = option(16, help="LoRA alpha (update scaled by alpha / r)")
    lora_dropout: float = option(0.05, help="dropout on the LoRA branch")
    target_modules: list[str] = option(
        ["q_proj", "k_proj", "v_proj", "o_proj"], help="modules that get LoRA adapters")
    beta: float = option(0.1, help="DPO only: beta (pull towards the reference)")

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1 or self.lora_r < 1:
            raise ValueError("batch_size, grad_accum and lora_r must be >= 1")
        if self.save_steps < 1:
            raise ValueError("save_steps must be >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError("warmup_ratio must be in [0, 1)")
        if self.beta <= 0:
            raise ValueError("beta must be > 0")


def cpt_defaults() -> TrainConfig:
    """CPT of a small model (the spec's): full fine-tuning, lr 5e-5, one epoch, 1024-token
    blocks."""
    return TrainConfig(method="full", learning_rate=5e-5, max_length=1024, batch_size=8)


def sft_defaults() -> TrainConfig:
    return TrainConfig(method="lora", learning_rate=2e-4, max_length=512, batch_size=8)


def dpo_defaults() -> TrainConfig:
    """The project's DPO defaults (beta 0.1, lr 5e-7, 8 x 4 pairs a step)."""
    return TrainConfig(method="lora", learning_rate=5e-7, max_length=1024, batch_size=8,
                       grad_accum=4)


def _work_state(work: Path, fingerprint: str) -> str | None:
    """The last checkpoint to resume from, after clearing a work folder of other inputs."""
    from transformers.trainer_utils import get_last_checkpoint

    stamp = work / "inputs.json"
    if work.exists():
        try:
            old = json.loads(stamp.read_text()).get("fingerprint")
        except (OSError, json.JSONDecodeError):
            old = None
        if old != fingerprint:
            log.warning("%s holds checkpoints of other inputs; starting over", work)
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"fingerprint": fingerprint}))
    return get_last_checkpoint(str(work))


def make_trainer(kind: str, model_path: str | Path, rows: Sequence[dict[str, Any]], work: Path,
                 cfg: TrainConfig, seed: int, *, quiet: bool | None = None,
                 callbacks: Sequence[Any] = ()):
    """The configured trl trainer (not yet trained) and its tokenizer."""
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, set_seed

    from llmrec.llm.tuning import require_trl
    from llmrec.progress import progress_enabled

    require_trl()
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not rows:
        raise ValueError(f"no rows to train {kind} on")
    set_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(model_path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
    use_cuda = torch.cuda.is_available()
    config_cls = trl.DPOConfig if kind == "dpo" else trl.SFTConfig
    names = {f.name for f in dataclasses.fields(config_cls)}
    # transformers 5 renamed gradient checkpointing; switch it off under whichever name exists
    no_ckpt = ({"activation_checkpointing": False} if "activation_checkpointing" in names
               else {"gradient_checkpointing": False})
    if kind == "cpt":
        extra = {"dataset_text_field": "text", "packing": True, "packing_strategy": "wrapped",
                 "max_length": cfg.max_length, "completion_only_loss": False}
        data = [{"text": r["text"]} for r in rows]
    elif kind == "sft":
        extra = {"max_length": cfg.max_length, "completion_only_loss": True}
        data = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
    else:
        extra = {"beta": cfg.beta, "loss_type": ["sigmoid"], "max_length": None}
        data = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
                for r in rows]
    args = config_cls(
        **no_ckpt, **extra, output_dir=str(work), num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        lr_scheduler_type="linear", warmup_steps=cfg.warmup_ratio, logging_steps=1,
        save_strategy="steps", save_steps=cfg.save_steps, save_total_limit=1,
        report_to="none", bf16=bool(use_cuda and torch.cuda.is_bf16_supported()), fp16=False,
        use_cpu=not use_cuda, seed=seed, data_seed=seed, dataloader_num_workers=0,
        disable_tqdm=not progress_enabled() if quiet is None else quiet)
    peft_config = None
    if cfg.method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                 lora_dropout=cfg.lora_dropout,
                                 target_modules=list(cfg.target_modules), bias="none",
                                 task_type="CAUSAL_LM")
    trainer_cls = trl.DPOTrainer if kind == "dpo" else trl.SFTTrainer
    kwargs = {"ref_model": None} if kind == "dpo" else {}
    trainer = trainer_cls(model=model, args=args, train_dataset=Dataset.from_list(data),
                          processing_class=tok, peft_config=peft_config,
                          callbacks=list(callbacks), **kwargs)
    trainer.remove_callback(PrinterCallback)
    return trainer, tok


def _row_tokens(kind: str, ds) -> list[int]:
    if kind == "dpo":
        return [2 * len(p) + len(c) + len(r) for p, c, r in
                zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"])]
    return [len(x) for x in ds["input_ids"]]


def train(kind: str, model_path: str | Path, rows: Sequence[dict[str, Any]], dest: str | Path,
          work: str | Path, cfg: TrainConfig, seed: int, *, quiet: bool | None = None,
          callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Train ``kind`` from ``model_path`` on ``rows`` and save the model + tokenizer in ``dest``
    (a fresh folder: the caller makes it atomic). Checkpoints go to ``work`` and a rerun after a
    kill resumes from the last one; the caller deletes ``work`` once ``dest`` is in place.

    Returns a summary: steps, the step resumed from, first/last loss, the loss curve, tokens
    seen by this process and tokens/s, trainable parameters, versions.
    """
    import torch

    from llmrec.artifacts import fingerprint, package_versions

    work, dest = Path(work), Path(dest)
    fp = fingerprint({"kind": kind, "model": str(model_path), "rows": list(rows),
                      "cfg": dataclasses.asdict(cfg), "seed": seed})
    last = _work_state(work, fp)
    resumed = int(Path(last).name.split("-")[-1]) if last else 0
    if last:
        log.info("%s: resuming from %s", kind, last)
    trainer, tok = make_trainer(kind, model_path, rows, work, cfg, seed, quiet=quiet,
                                callbacks=callbacks)
    if len(trainer.train_dataset) == 0:
        from llmrec.errors import ConfigError

        raise ConfigError(f"{kind}: none of the {len(rows)} rows is left after tokenisation "
                          f"(rows whose answer falls beyond max_length={cfg.max_length} tokens "
                          "are dropped); raise the stage's train.max_length")
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    with torch.enable_grad():  # llmrec's HF backend switches autograd off process-wide
        result = trainer.train(resume_from_checkpoint=last)
    lengths = _row_tokens(kind, trainer.train_dataset)
    steps_here = int(result.global_step) - resumed
    runtime = float(result.metrics.get("train_runtime") or 0.0)
    mean_len = sum(lengths) / len(lengths) if lengths else 0.0
    tokens = int(round(mean_len * steps_here * cfg.batch_size * cfg.grad_accum))
    model = trainer.model
    if cfg.method == "lora":
        model.save_pretrained(str(dest / "adapter"))
        model = model.merge_and_unload()
    model.save_pretrained(str(dest))
    tok.save_pretrained(str(dest))
    history = trainer.state.log_history
    keep = ("step", "epoch", "loss", "learning_rate", "rewards/accuracies", "rewards/margins")
    curve = [{k: h[k] for k in keep if k in h} for h in history if "loss" in h]
    (dest / "curve.jsonl").write_text("".join(json.dumps(c) + "\n" for c in curve))
    return {"kind": kind, "method": cfg.method, "rows": len(rows),
            "steps": int(result.global_step), "resumed_from_step": resumed,
            "first_loss": curve[0]["loss"] if curve else None,
            "last_loss": curve[-1]["loss"] if curve else None,
            "train_seconds": round(runtime, 3), "tokens_seen": tokens,
            "tokens_per_second": round(tokens / runtime, 1) if runtime > 0 and tokens else None,
            "trainable_parameters": int(trainable),
            "versions": package_versions(("trl", "peft", "transformers", "torch"))}


def clear_work(work: str | Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
