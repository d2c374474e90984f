"""Training loop for every ranking model, with the data resident on the device.

Every tensor of the :class:`~llmrec.ranking.features.FeatureSet` is moved to the device once; an
epoch is a random permutation drawn on the device and each batch is a slice of it, gathered by
:meth:`FeatureSet.batch` (no per-row Dataset or collate, which is what caps a row-wise
DataLoader at a fraction of the GPU's rate). On CUDA the forward runs under bf16 autocast and the
optimiser is the fused Adam.

How a step runs (``step``): ``eager``; ``compile`` wraps gather + forward + loss in
``torch.compile``; ``graph`` (one CUDA device) captures the *whole* step - gather from a static
index buffer, forward, backward, gradient clipping and a capturable fused Adam - as one CUDA graph
after a few warm-up steps, and then replays it: the host does one index copy and one graph launch
per step, so the step's cost no longer depends on how fast the host's cores are. With
``graph_compile`` the forward + loss are compiled by ``torch.compile`` before capture (fused
kernels: fewer and faster, for 10-20 s of compilation; ``auto`` compiles when the run plans at
least ``graph_compile_min_steps`` steps). The train loss is summed on the device; nothing in an
epoch waits for the GPU. A batch of another size (an epoch's last, short batch) takes the eager
step. ``auto`` (the default) picks ``graph`` on a single CUDA device when the run plans at least
``graph_min_steps`` steps and the task's batches have fixed shapes (not listwise lists, not
sequence training), and ``eager`` otherwise; if capture fails (a model with a host sync) it
falls back to eager and says why. The choice, whether it compiled, and the seconds spent
compiling (the first step) and capturing are in the result's ``step``.

What is learned and judged comes from a :class:`~llmrec.ranking.tasks.Task` (binary by default):
its loss, its metrics, its batching and the validation metric early stopping watches (with its
direction); the best weights are restored at the end. After every
epoch a checkpoint (safetensors: model, optimiser state, RNG states; JSON: epoch, early-stopping
state, history) is written atomically, and ``resume=true`` continues from it; on CPU the resumed
run reproduces the uninterrupted run's metrics exactly.

Data parallelism: started under ``torchrun --nproc_per_node=N`` (or another launcher that sets
``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE``, such as ``accelerate launch``), each
process trains a DDP replica on its shard of every epoch's permutation (``batch_size`` is the
global batch, split across processes); all processes evaluate the full validation set, so they
take identical early-stopping decisions without extra communication; rank 0 writes the files.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.ranking.task_config import TaskConfig
from llmrec.ranking.tasks import Task, build_task
from llmrec.ranking.train_config import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
BEST_FILE = "best.safetensors"
METRICS_FILE = "metrics.json"
# real steps run before the graph is captured (compilation, allocator and cuBLAS warm-up)
GRAPH_WARMUP_STEPS = 3


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from llmrec.errors import ConfigError

        raise ConfigError("train.device is cuda but no CUDA device is visible; use --train.device=cpu")
    return dev


def _dist_info() -> tuple[int, int, int]:
    """(rank, local rank, world size) from torchrun's environment (1 process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 0, 1
    return int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world


def _optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {}
    for pid, state in sd["state"].items():
        for k, v in state.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"{pid}.{k}"] = t.detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def _optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = t
    return {"state": state, "param_groups": meta["param_groups"]}


class Trainer:
    """Train ``model`` on ``features`` (splits ``train`` / ``valid`` / ``test``) with ``cfg`` for
    ``task`` (a :class:`Task`, or a :class:`TaskConfig`; default: binary)."""

    def __init__(self, model: torch.nn.Module, features, cfg: TrainConfig,
                 output_dir: str | Path | None = None, run_config: Any = None,
                 task: Task | TaskConfig | None = None) -> None:
        self.cfg = cfg
        if not isinstance(task, Task):
            task = build_task(task or TaskConfig(), features.spec)
        self.task = task
        self.rank, self.local_rank, self.world = _dist_info()
        self.distributed = self.world > 1
        self._owns_group = False
        if self.distributed:
            import torch.distributed as dist

            if not dist.is_initialized():
                self._owns_group = True
                backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
                dist.init_process_group(backend)
            if cfg.device in ("auto", "cuda") and torch.cuda.is_available():
                self.device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(self.device)
            else:
                self.device = torch.device("cpu")
        else:
            self.device = resolve_device(cfg.device)
        self.features = features.to(self.device)
        self.module = model.to(self.device)
        self.model = self.module
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DDP(self.module, device_ids=ids)
        self.output_dir = Path(output_dir) if output_dir else None
        self.run_config = run_config
        use_bf16 = (cfg.precision == "bf16" or
                    (cfg.precision == "auto" and self.device.type == "cuda"))
        self.amp_dtype = torch.bfloat16 if use_bf16 else None
        fused = cfg.fused_optimizer and self.device.type == "cuda"
        self.step_kind, self.step_reason = self._choose_step()
        self._graph_mode = self.step_kind == "graph"
        # frozen parameters (extractor-only knowledge training) get no optimiser state at all
        self.trainable = [p for p in self.module.parameters() if p.requires_grad]
        # a model may ask for parameter groups with their own learning-rate factor
        # (knowledge.lr_scale: the knowledge extractor); one group otherwise
        groups = getattr(self.module, "optimizer_groups", None)
        groups = groups() if callable(groups) else None
        params = ([{"params": g["params"], "lr": cfg.lr * g.get("lr_scale", 1.0)}
                   for g in groups if g["params"]] if groups else self.trainable)
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas),
                                          weight_decay=cfg.weight_decay, fused=fused or None,
                                          capturable=self._graph_mode)
        # task.mto other than base: the method's backward and optimiser (llmrec.ranking.mto)
        self.mto = None
        if getattr(task.cfg, "mto", "base") != "base":
            from llmrec.ranking import mto

            mto.attach(self, task.cfg.mto, task.cfg.mto_every)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)
        self._step_fn = self._loss
        self.graph_compiled = self._graph_mode and (
            cfg.graph_compile == "always" or
            (cfg.graph_compile == "auto" and self.planned_steps() >= cfg.graph_compile_min_steps))
        if self.step_kind == "compile" or self.graph_compiled:
            mode = cfg.compile_mode if self.step_kind == "compile" else "default"
            self._step_fn = torch.compile(self._loss, mode=mode, dynamic=False)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_batch = max(1, cfg.batch_size // self.world)
        self._warm_steps = 0
        self._static_idx: torch.Tensor | None = None
        self._static_loss: torch.Tensor | None = None
        self._graph_grads: list[torch.Tensor | None] = []
        self.step_info: dict[str, Any] = {"kind": self.step_kind, "reason": self.step_reason}
        if self._graph_mode:
            self.step_info["compiled"] = self.graph_compiled
        self.epoch = 0  # epochs completed
        self.best_value = task.worst  # of the task's monitored validation metric
        self.best_epoch = 0
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        self.best_state: dict[str, torch.Tensor] | None = None

    # ---------------------------------------------------------------------------------------
    def planned_steps(self) -> int:
        """Optimiser steps the run plans: epochs x (training samples / batch size)."""
        n = (int(self.features.split_index("train").numel())
             if "train" in self.features.split_names else 0)
        return self.cfg.epochs * math.ceil(n / max(1, self.cfg.batch_size))

    def _graph_blocker(self) -> str | None:
        """Why this run cannot use the graph step (None: it can)."""
        if self.device.type != "cuda":
            return "not on a CUDA device"
        if self.distributed:
            return "data-parallel runs use the eager step"
        if self.task.kind == "listwise":
            return "listwise batches hold whole lists (their size varies)"
        if getattr(self.task.cfg, "mto", "base") != "base":
            return "task.mto runs one backward pass per task (eager step)"
        if self.task.kind == "next_item" and getattr(self.task.cfg, "sequence_training", False):
            return "sequence training selects valid positions (a data-dependent shape)"
        return None

    def _choose_step(self) -> tuple[str, str]:
        cfg = self.cfg
        blocker = self._graph_blocker()
        if cfg.step == "graph":
            if blocker:
                from llmrec.errors import ConfigError

                raise ConfigError(f"train.step graph is not possible here: {blocker}; use "
                                  f"train.step=auto (or eager / compile)")
            return "graph", "asked for (train.step=graph)"
        if cfg.step in ("eager", "compile"):
            return cfg.step, f"asked for (train.step={cfg.step})"
        if cfg.compile:
            return "compile", "asked for (train.compile=true)"
        if blocker:
            return "eager", blocker
        planned = self.planned_steps()
        if planned < cfg.graph_min_steps:
            return "eager", (f"{planned} planned steps < graph_min_steps {cfg.graph_min_steps} "
                             f"(too few to repay the warm-up and capture)")
        return "graph", f"{planned} planned steps >= graph_min_steps {cfg.graph_min_steps}"

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(device_type=self.device.type, enabled=False)
        # a captured graph must not rely on autocast's weight-cast cache (it would be replayed
        # stale): the casts are part of the step
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype,
                              cache_enabled=not self._graph_mode)

    def _loss(self, idx: torch.Tensor) -> torch.Tensor:
        batch = self.features.batch(idx)
        with self._autocast():
            out = self.model(batch)
        return self.task.loss(out, batch)

    def train_step(self, idx: torch.Tensor) -> torch.Tensor:
        """One optimiser step on samples ``idx``; returns the (detached) loss on the device.

        In graph mode the returned tensor is the graph's static output: read it (or add it to an
        accumulator, as ``fit`` does) before the next step overwrites it.
        """
        if not self.module.training:
            self.model.train()
        if self._graph_mode and idx.numel() == self._graph_batch:
            return self._graph_step(idx)
        # a short batch in graph mode runs uncompiled (no recompilation for its shape)
        fn = self._loss if self._graph_mode else self._step_fn
        return self._plain_step(idx, fn)

    def _plain_step(self, idx: torch.Tensor, fn) -> torch.Tensor:
        loss = fn(idx)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg.max_grad_norm)
        self.optimizer.step()
        return loss.detach()

    def _graph_step(self, idx: torch.Tensor) -> torch.Tensor:
        if self._graph is None:
            if self._warm_steps < GRAPH_WARMUP_STEPS:
                return self._warmup_step(idx)
            if not self._capture(idx):
                return self._plain_step(idx, self._step_fn)
        self._static_idx.copy_(idx)
        self._graph.replay()
        return self._static_loss

    def _warmup_step(self, idx: torch.Tensor) -> torch.Tensor:
        """A real step on a side stream (as graph capture requires); the first one compiles."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        t0 = time.perf_counter()
        with torch.cuda.stream(stream):
            loss = self._plain_step(idx, self._step_fn)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        self._sync()
        dt = time.perf_counter() - t0
        key = "first_step_seconds" if self._warm_steps == 0 else "warmup_step_seconds"
        self.step_info[key] = round(self.step_info.get(key, 0.0) + dt, 4)
        self._warm_steps += 1
        return loss

    def _capture(self, idx: torch.Tensor) -> bool:
        """Capture one whole step for batches shaped like ``idx``; False if it cannot be."""
        t0 = time.perf_counter()
        self._static_idx = idx.clone()
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                loss = self._step_fn(self._static_idx)
                loss.backward()
                if self.cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg.max_grad_norm)
                self.optimizer.step()
        except Exception as exc:  # a host sync or a dynamic shape inside the model
            if self.cfg.step == "graph":
                from llmrec.errors import ConfigError

                raise ConfigError(f"train.step graph: the training step of "
                                  f"{type(self.module).__name__} cannot be captured as a CUDA "
                                  f"graph ({type(exc).__name__}: {exc}); use train.step=auto, "
                                  f"compile or eager") from exc
            log.warning("CUDA graph capture failed (%s: %s); training continues eagerly",
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            self._sync()
            self._graph_mode = False
            self.step_kind = "eager"
            self.step_info.update(kind="eager", reason=f"graph capture failed: "
                                                       f"{type(exc).__name__}")
            self.optimizer.zero_grad(set_to_none=True)
            return False
        self._graph = graph
        self._static_loss = loss.detach()
        # the graph writes these buffers on every replay: keep them alive whatever .grad becomes
        self._graph_grads = [p.grad for p in self.trainable]
        self.step_info["capture_seconds"] = round(time.perf_counter() - t0, 4)
        return True

    def epoch_batches(self) -> list[torch.Tensor]:
        """This process's batches (index tensors) for one epoch, from the device permutation."""
        return self.task.epoch_batches(self.features, self.features.split_index("train"),
                                       self.cfg.batch_size, self.generator, self.rank, self.world)

    @torch.no_grad()
    def forward_eval(self, idx: torch.Tensor) -> dict:
        """The model's output dict for samples ``idx`` in eval mode (no grad, autocast)."""
        self.module.eval()
        with self._autocast():
            return self.module(self.features.batch(idx))

    @torch.no_grad()
    def predict(self, idx: torch.Tensor) -> torch.Tensor:
        """The primary score (``logit``) for samples ``idx`` (float32, on the device)."""
        outs = [self.forward_eval(chunk)["logit"].float()
                for chunk in idx.split(self.cfg.eval_batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, device=self.device)

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        """The task's metrics on split ``split``."""
        return self.task.evaluate(self.forward_eval, self.features,
                                  self.features.split_index(split), self.cfg.eval_batch_size)

    # ---------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train with early stopping; returns best validation and test metrics and the history."""
        cfg = self.cfg
        if cfg.resume and self.output_dir and (self.output_dir / CHECKPOINT_DIR).is_dir():
            self.load_checkpoint(self.output_dir / CHECKPOINT_DIR)
            log.info("resumed from epoch %d (best valid %s %.5f at epoch %d)", self.epoch,
                     self.task.monitor, self.best_value, self.best_epoch)
        from llmrec.progress import progress

        if self.rank == 0:
            log.info("training step: %s%s (%s)", self.step_kind,
                     " (compiled)" if self._graph_mode and self.graph_compiled else "",
                     self.step_reason)
        train_time = 0.0
        n_trained = 0
        t_fit = time.perf_counter()
        budget_hit = False
        while self.epoch < cfg.epochs and self.bad_epochs < cfg.patience and not budget_hit:
            batches = self.epoch_batches()
            total = torch.zeros((), device=self.device)
            self._sync()
            t0 = time.perf_counter()
            bar = {} if self.rank == 0 else {"disable": True}  # one bar, from rank 0
            for idx in progress(batches, desc=f"epoch {self.epoch + 1}", unit="batch",
                                leave=False, **bar):
                total += self.train_step(idx) * idx.numel()
            self._sync()
            dt = time.perf_counter() - t0
            n = sum(int(b.numel()) for b in batches)
            train_time += dt
            n_trained += n
            self.epoch += 1
            valid = self.evaluate("valid")
            record = {"epoch": self.epoch, "train_loss": float(total) / max(n, 1),
                      "train_seconds": dt, "samples_per_s": n * self.world / dt if dt else None,
                      **{f"valid_{k}": v for k, v in valid.items()}}
            self.history.append(record)
            value = self._monitored(valid)
            improved = self.task.better(value, self.best_value, cfg.min_delta)
            if improved:
                self.best_value, self.best_epoch, self.bad_epochs = value, self.epoch, 0
                self.best_state = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
            else:
                self.bad_epochs += 1
            if self.rank == 0:
                shown = "  ".join(f"{k} {v:.5f}" for k, v in valid.items()
                                  if k != "n" and isinstance(v, float) and "." not in k)
                log.info("epoch %d: loss %.5f, valid %s%s (%.0f samples/s)", self.epoch,
                         record["train_loss"], shown, " *" if improved else "",
                         record["samples_per_s"] or 0)
            if cfg.checkpoint and self.output_dir and self.rank == 0:
                self.save_checkpoint(self.output_dir / CHECKPOINT_DIR)
            if cfg.max_minutes is not None and self._budget_spent(t_fit, cfg.max_minutes):
                budget_hit = (self.epoch < cfg.epochs and self.bad_epochs < cfg.patience)
                if budget_hit and self.rank == 0:
                    log.info("stopping after epoch %d: train.max_minutes (%g) reached",
                             self.epoch, cfg.max_minutes)
        if self.best_state is not None:
            self.module.load_state_dict(self.best_state)
        result: dict[str, Any] = {
            "task": self.task.describe(), "best_epoch": self.best_epoch, "epochs": self.epoch,
            "valid": self.evaluate("valid"),
            "train_seconds": train_time,
            "stop_reason": ("time budget" if budget_hit else "patience"
                            if self.bad_epochs >= cfg.patience else "epochs"),
            "samples_per_s": n_trained * self.world / train_time if train_time else None,
            "step": dict(self.step_info),
            "history": self.history,
        }
        if cfg.eval_test and "test" in self.features.split_names:
            result["test"] = self.evaluate("test")
        if self.output_dir and self.rank == 0:
            self.save_final(result)
        return result

    def _budget_spent(self, t0: float, minutes: float) -> bool:
        """Whether ``minutes`` have passed since ``t0``; under DDP rank 0's clock decides for all
        ranks (each rank deciding alone could stop one of them and hang the others)."""
        spent = time.perf_counter() - t0 >= 60 * minutes
        if self.world > 1:
            import torch.distributed as dist

            flag = torch.tensor([float(spent)], device=self.device)
            dist.broadcast(flag, src=0)
            spent = bool(flag.item())
        return spent

    def _monitored(self, metrics: dict[str, float]) -> float:
        if self.task.monitor not in metrics:
            from llmrec.errors import ConfigError

            raise ConfigError(f"task.monitor {self.task.monitor!r} is not a metric of task "
                              f"{self.task.kind!r}; its metrics: "
                              f"{', '.join(k for k in metrics if k != 'n')}")
        return float(metrics[self.task.monitor])

    def close(self) -> None:
        """Tear down the process group if this trainer created it (DDP runs)."""
        if self._owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()
                dist.destroy_process_group()
            self._owns_group = False

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ---------------------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        from llmrec.artifacts import atomic_dir

        opt_tensors, opt_meta = _optimizer_to_tensors(self.optimizer)
        rng = {"torch_cpu": torch.get_rng_state(), "batch_order": self.generator.get_state().cpu()}
        if self.device.type == "cuda":
            rng["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        state = {"epoch": self.epoch, "best_value": self.best_value,
                 "monitor": self.task.monitor, "best_epoch": self.best_epoch,
                 "bad_epochs": self.bad_epochs, "history": self.history, "optimizer": opt_meta,
                 "numpy_rng": _np_state_to_json(), "python_rng": _py_state_to_json()}
        with atomic_dir(path) as tmp:
            save_file(_contiguous(self.module.state_dict()), str(tmp / "model.safetensors"))
            save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
            save_file(rng, str(tmp / "rng.safetensors"))
            if self.best_state is not None:
                save_file(_contiguous(self.best_state), str(tmp / BEST_FILE))
            (tmp / "state.json").write_text(json.dumps(state, indent=1, default=float))

    def load_checkpoint(self, path: str | Path) -> None:
        from safetensors.torch import load_file

        path = Path(path)
        state = json.loads((path / "state.json").read_text())
        self.module.load_state_dict(load_file(str(path / "model.safetensors"), device=str(self.device)))
        opt = _optimizer_from_tensors(load_file(str(path / "optimizer.safetensors"),
                                                device=str(self.device)), state["optimizer"])
        # Adam keeps its 'step' counters on the CPU unless fused/capturable
        for s in opt["state"].values():
            if "step" in s and not (self.device.type == "cuda" and
                                    (self.cfg.fused_optimizer or self._graph_mode)):
                s["step"] = s["step"].cpu()
        self.optimizer.load_state_dict(opt)
        rng = load_file(str(path / "rng.safetensors"))
        torch.set_rng_state(rng["torch_cpu"])
        self.generator.set_state(rng["batch_order"])
        if "torch_cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["torch_cuda"], self.device)
        _np_state_from_json(state["numpy_rng"])
        _py_state_from_json(state["python_rng"])
        if (path / BEST_FILE).is_file():
            self.best_state = load_file(str(path / BEST_FILE), device=str(self.device))
        self.epoch = state["epoch"]
        saved = state.get("monitor", "auc")
        if saved != self.task.monitor:
            from llmrec.errors import ConfigError

            raise ConfigError(f"{path} was written while watching valid {saved!r}, this run "
                              f"watches {self.task.monitor!r}: resume with the same task, or "
                              f"start afresh in another output_dir")
        self.best_value = state.get("best_value", state.get("best_auc"))
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = state["bad_epochs"]
        self.history = state["history"]

    def save_final(self, result: dict[str, Any]) -> None:
        from llmrec.artifacts import atomic_file, write_json_atomic, write_meta

        self.output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.output_dir / BEST_FILE) as fh:
            fh.write(_safetensors_bytes(_contiguous(self.module.state_dict())))
        write_json_atomic(self.output_dir / METRICS_FILE, result)
        write_meta(self.output_dir, self.run_config, device=_device_name(self.device),
                   world_size=self.world)


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}


def _safetensors_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save(tensors)


def _np_state_to_json() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _np_state_from_json(s: list) -> None:
    np.random.set_state((s[0], np.array(s[1], dtype=np.uint32), s[2], s[3], s[4]))


def _py_state_to_json() -> list:
    v, state, gauss = random.getstate()
    return [v, list(state), gauss]


def _py_state_from_json(s: list) -> None:
    random.setstate((s[0], tuple(s[1]), s[2]))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()})"
