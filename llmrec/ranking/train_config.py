"""``TrainConfig``: how a backbone is trained (the options of :class:`~llmrec.ranking.trainer.Trainer`).

Kept apart from ``trainer.py`` only because that module imports torch: the CLI builds its
``--help`` from this dataclass, and ``llmrec --help`` must not pay for importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmrec.config import option


@dataclass
class TrainConfig:
    """How a backbone is trained."""

    seed: int = option(0, help="seed for initialisation, batch order and dropout")
    device: str = option("auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    batch_size: int = option(4096, help="global training batch size (split across DDP processes)")
    eval_batch_size: int = option(65536, help="batch size for prediction")
    epochs: int = option(20, help="maximum number of epochs")
    lr: float = option(1e-3, help="Adam learning rate")
    weight_decay: float = option(0.0, help="Adam L2 penalty on all parameters")
    betas: list[float] = option([0.9, 0.999], help="Adam betas (SASRec's recipes: [0.9, 0.98])")
    max_grad_norm: float | None = option(None, help="clip the gradient norm to this (null: no clip)")
    patience: int = option(2, help="stop after this many epochs without a better validation AUC")
    max_minutes: float | None = option(
        None, help="wall-clock budget for training: no new epoch starts once this many minutes "
                   "of training and validation have passed (the best epoch so far is kept and "
                   "evaluated as usual; the result says it stopped on the budget); null: none")
    min_delta: float = option(1e-5, help="smallest AUC gain that counts as an improvement")
    precision: Literal["auto", "bf16", "fp32"] = option(
        "auto", help="auto = bf16 autocast on CUDA, fp32 on CPU")
    step: Literal["auto", "eager", "compile", "graph"] = option(
        "auto", help="how a training step runs: eager; compile (torch.compile of gather + forward "
                     "+ loss); graph (CUDA only: the whole step - gather, forward, backward, "
                     "optimiser - captured once as one CUDA graph and replayed); auto = graph on "
                     "one CUDA device when the run plans at least graph_min_steps steps and the "
                     "task has fixed batch shapes, else eager")
    graph_min_steps: int = option(20, help="step auto: the planned steps (epochs x batches per "
                                           "epoch) from which the graph step is used (capture "
                                           "costs a few warm-up steps and milliseconds)")
    graph_compile: Literal["auto", "always", "never"] = option(
        "auto", help="step graph: compile gather + forward + loss with torch.compile before "
                     "capture (fused kernels: about 2x the uncompiled graph's samples/s on small "
                     "CTR models, for 10-20 s of compilation); auto = when the run plans at least "
                     "graph_compile_min_steps steps")
    graph_compile_min_steps: int = option(
        10000, help="graph_compile auto: the planned steps from which compilation repays itself "
                    "(measured: ~1 ms saved per step at batch 4096 for 10-20 s of compilation)")
    compile: bool = option(False, help="older spelling of step: compile (used when step is auto)")
    compile_mode: str = option("default", help="torch.compile mode for step compile (default, "
                                               "reduce-overhead, max-autotune-no-cudagraphs)")
    fused_optimizer: bool = option(True, help="use the fused Adam kernel on CUDA")
    checkpoint: bool = option(True, help="write a checkpoint after every epoch (for resume)")
    resume: bool = option(False, help="continue from output_dir/checkpoint if it exists")
    eval_test: bool = option(True, help="evaluate the best model on the test split at the end")

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        if self.epochs < 0 or self.patience < 1:
            raise ValueError("epochs must be >= 0 and patience >= 1")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError("train.max_minutes must be > 0 (or null for no time budget)")
        if self.graph_min_steps < 0 or self.graph_compile_min_steps < 0:
            raise ValueError("graph_min_steps and graph_compile_min_steps must be >= 0")
