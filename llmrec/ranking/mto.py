"""Multi-task optimisation (``task.mto``): how the per-task losses of a multitask run become one
parameter update.

Each method is one object made by :func:`build_mto` from the run's settings. The trainer hands it
the per-task losses of a step (:meth:`MultiTask.task_losses`, a dict ``{task: w_t * L_t}``) and it
runs the backward pass(es) and leaves the combined gradient in ``p.grad`` of every trainable
parameter; then the optimiser it made (:meth:`MTO.optimizer`) takes the step.

- ``base``: backward on the sum (what the trainer does without ``mto``); plain Adam.
- ``uw``: uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018): learned log-variances
  ``s_t`` (one per task, start 0, trained by the same Adam), loss
  ``sum_t exp(-s_t) L_t + s_t / 2`` -- the paper's form for classification tasks.
- ``pcgrad``: gradient surgery (Yu et al., NeurIPS 2020): per-task gradients on the *shared*
  parameters; each task's gradient is projected off every other task's gradient it conflicts
  with (negative dot product), the others taken in a random order (a generator seeded with
  ``seed``); the projected gradients are summed. Task-specific parameters get their task's
  gradient unchanged.
- ``nash``: Nash-MTL (Navon et al., ICML 2022): ``G`` = Gram matrix of the per-task gradients on
  the shared parameters, divided by its Frobenius norm; weights ``alpha > 0`` solve the
  bargaining condition ``G alpha = 1 / alpha`` (:func:`nash_weights`); every parameter gets the
  gradient of ``sum_t alpha_t L_t``. Recomputed every ``every`` steps (default 1), reused between.
- ``pub``: parameter update balancing (arXiv 2410.05806): the balancing is done on the *Adam
  updates* the tasks would make, not on their gradients, so it replaces Adam's step
  (:class:`PUBAdam`). Task-specific parameters take plain Adam on the summed loss.

Shared vs task-specific parameters are found from the graph at every step: a parameter is shared
when the losses of at least two tasks reach it (``torch.autograd.grad(..., allow_unused=True)``),
which for MMoE / PLE / ESMM / EKTM means the embedding, the experts and (PLE) the shared gates.
A model's ``aux_loss`` is added to the first task's loss. ``pcgrad``, ``nash`` and ``pub`` cost one
backward pass per task. Not supported: DDP (per-task gradients bypass DDP's reducer), and gradient
clipping acts on the combined gradient (for ``pub``: on the task-specific parameters only).

Solver of ``G alpha = 1 / alpha`` (``nash`` and ``pub``): it is the stationarity condition of the
strictly convex ``f(alpha) = alpha' G alpha / 2 - sum_t log alpha_t`` on ``alpha > 0``, which we
minimise by damped Newton steps (Hessian ``G + diag(1 / alpha^2)``, backtracking so that
``alpha`` stays positive and ``f`` decreases), in float64, at most ``max_iter`` (20) steps or until
``|G alpha - 1 / alpha|_inf < 1e-10``. The official PUB / Nash-MTL code solves the same condition
with a sequence of convex problems in cvxpy; this needs no solver dependency for small ``K``.
"""

from __future__ import annotations

from typing import Iterable

import torch

from llmrec.errors import ConfigError

MTO_METHODS = ("base", "uw", "pcgrad", "nash", "pub")
DEFAULT_EVERY = {"nash": 1, "pub": 10}


# ------------------------------------------------------------------------------------------------
# the bargaining solver


def nash_weights(G: torch.Tensor, max_iter: int = 20, tol: float = 1e-10,
                 init: torch.Tensor | None = None) -> torch.Tensor:
    """``alpha > 0`` with ``G alpha = 1 / alpha`` for a symmetric PSD ``G [K, K]`` (float64).

    Damped Newton on ``f(alpha) = alpha' G alpha / 2 - sum log alpha``. Starts from ``init`` or
    ``1 / sqrt(diag G)`` (the exact answer for a diagonal ``G``). A task whose row of ``G`` is zero
    (no gradient) has no finite solution: its weight is left at the start value; the solve over
    the others is unaffected.
    """
    G = G.detach().to(torch.float64)
    k = G.shape[0]
    diag = torch.diagonal(G)
    live = diag > 1e-30
    alpha = torch.ones(k, dtype=torch.float64, device=G.device)
    if init is not None:
        alpha = init.detach().to(torch.float64).clone().clamp_min(1e-12)
    else:
        alpha[live] = diag[live].rsqrt()
    if int(live.sum()) == 0:
        return alpha
    idx = live.nonzero().squeeze(1)
    a = alpha[idx]
    M = G[idx][:, idx]

    def f(x):
        return 0.5 * x @ (M @ x) - torch.log(x).sum()

    for _ in range(max_iter):
        grad = M @ a - 1.0 / a
        if float(grad.abs().max()) < tol:
            break
        H = M + torch.diag(1.0 / a ** 2)
        step = torch.linalg.solve(H, grad)
        t, fa, slope = 1.0, f(a), float(grad @ step)
        while True:
            cand = a - t * step
            if bool((cand > 0).all()) and float(f(cand)) <= float(fa) - 1e-4 * t * slope:
                break
            t *= 0.5
            if t < 1e-12:
                cand = a
                break
        if cand is a:
            break
        a = cand
    alpha[idx] = a
    return alpha


def _normalised_gram(vectors: list[torch.Tensor]) -> torch.Tensor:
    U = torch.stack([v.reshape(-1).to(torch.float64) for v in vectors])
    G = U @ U.T
    norm = torch.linalg.matrix_norm(G)
    return G / norm if float(norm) > 0 else G


# ------------------------------------------------------------------------------------------------
# per-task gradients


def task_gradients(losses: list[torch.Tensor], params: list[torch.Tensor]):
    """Per task, the gradient of its loss on every parameter (None where it does not reach)."""
    out = []
    for i, loss in enumerate(losses):
        out.append(list(torch.autograd.grad(loss, params, retain_graph=i < len(losses) - 1,
                                            allow_unused=True)))
    return out


def _split(grads, n_params):
    """Indices of the shared parameters (reached by >= 2 tasks) and of the others."""
    reach = [sum(g[j] is not None for g in grads) for j in range(n_params)]
    shared = [j for j in range(n_params) if reach[j] >= 2]
    single = [j for j in range(n_params) if reach[j] == 1]
    return shared, single


def _flat(grads_of_task, shared, params):
    return torch.cat([(grads_of_task[j] if grads_of_task[j] is not None
                       else torch.zeros_like(params[j])).reshape(-1) for j in shared])


def _unflat(vec, shared, params):
    out, o = {}, 0
    for j in shared:
        n = params[j].numel()
        out[j] = vec[o:o + n].view_as(params[j]).to(params[j].dtype)
        o += n
    return out


def _set_grad(p, g):
    p.grad = g if p.grad is None else p.grad + g


# ------------------------------------------------------------------------------------------------
# the methods


class MTO:
    """Base class and ``base``: backward on the sum of the task losses."""

    name = "base"

    def __init__(self, tasks: list[str], params: list[torch.nn.Parameter], lr: float = 1e-3,
                 betas: Iterable[float] = (0.9, 0.999), weight_decay: float = 0.0,
                 every: int = 0, seed: int = 0) -> None:
        self.tasks = list(tasks)
        self.params = list(params)
        self.lr, self.betas, self.weight_decay = lr, tuple(betas), weight_decay
        self.every = every or DEFAULT_EVERY.get(self.name, 1)
        self.seed = seed
        self.steps = 0
        self.last_weights: dict[str, float] | None = None  # the task weights of the last step

    def extra_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters of the method itself (UW's log-variances), optimised with the model's."""
        return []

    def optimizer(self, fused: bool | None = None) -> torch.optim.Optimizer:
        """The optimiser of this method over the model's trainable parameters (+ its own)."""
        return torch.optim.Adam([*self.params, *self.extra_parameters()], lr=self.lr,
                                betas=self.betas, weight_decay=self.weight_decay, fused=fused)

    def _ordered(self, losses: dict[str, torch.Tensor], aux) -> list[torch.Tensor]:
        missing = [t for t in self.tasks if t not in losses]
        if missing:
            raise ConfigError(f"mto {self.name}: no loss for task(s) {missing} (got "
                              f"{', '.join(losses)})")
        out = [losses[t].float() for t in self.tasks]
        if aux is not None:
            out[0] = out[0] + aux.float()
        return out

    def backward(self, losses: dict[str, torch.Tensor], aux: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """Leave the combined gradient in ``p.grad``; returns the summed loss (for logging)."""
        ls = self._ordered(losses, None)
        total = ls[0]
        for term in ls[1:]:
            total = total + term
        if aux is not None:  # last, as the task's loss() adds it
            total = total + aux.float()
        total.backward()
        self.steps += 1
        return total.detach()


class UncertaintyWeighting(MTO):
    name = "uw"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        device = self.params[0].device if self.params else None
        self.log_vars = torch.nn.Parameter(torch.zeros(len(self.tasks), device=device))

    def extra_parameters(self):
        return [self.log_vars]

    def backward(self, losses, aux=None):
        ls = self._ordered(losses, aux)
        total = None
        for s, term in zip(self.log_vars, ls):
            t = torch.exp(-s) * term + 0.5 * s
            total = t if total is None else total + t
        total.backward()
        self.steps += 1
        self.last_weights = {t: float(torch.exp(-s)) for t, s in zip(self.tasks, self.log_vars.detach())}
        return sum(x.detach() for x in ls)


class PCGrad(MTO):
    name = "pcgrad"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.generator = torch.Generator().manual_seed(self.seed)

    def backward(self, losses, aux=None):
        ls = self._ordered(losses, aux)
        grads = task_gradients(ls, self.params)
        shared, single = _split(grads, len(self.params))
        for j in single:
            _set_grad(self.params[j], next(g[j] for g in grads if g[j] is not None))
        if shared:
            flat = [_flat(g, shared, self.params) for g in grads]
            combined = project_conflicts(flat, self.generator)
            for j, g in _unflat(combined, shared, self.params).items():
                _set_grad(self.params[j], g)
        self.steps += 1
        return sum(x.detach() for x in ls)


def project_conflicts(flat: list[torch.Tensor], generator: torch.Generator | None = None
                      ) -> torch.Tensor:
    """PCGrad on flattened per-task gradients: the sum of the projected gradients."""
    k = len(flat)
    out = torch.zeros_like(flat[0])
    for i in range(k):
        g = flat[i].clone()
        order = torch.randperm(k, generator=generator).tolist()
        for j in order:
            if j == i:
                continue
            dot = torch.dot(g, flat[j])
            if dot < 0:
                g = g - dot / flat[j].pow(2).sum().clamp_min(1e-20) * flat[j]
        out += g
    return out


class NashMTL(MTO):
    name = "nash"

    def __init__(self, *args, max_iter: int = 20, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_iter = max_iter
        self.alpha: torch.Tensor | None = None

    def backward(self, losses, aux=None):
        ls = self._ordered(losses, aux)
        grads = task_gradients(ls, self.params)
        shared, _ = _split(grads, len(self.params))
        if self.alpha is None or self.steps % self.every == 0:
            if shared:
                G = _normalised_gram([_flat(g, shared, self.params) for g in grads])
                self.alpha = nash_weights(G, self.max_iter, init=self.alpha)
            else:
                self.alpha = torch.ones(len(ls), dtype=torch.float64)
        self.last_weights = dict(zip(self.tasks, self.alpha.tolist()))
        for j, p in enumerate(self.params):
            acc = None
            for a, g in zip(self.alpha.tolist(), grads):
                if g[j] is not None:
                    acc = a * g[j] if acc is None else acc + a * g[j]
            if acc is not None:
                _set_grad(p, acc)
        self.steps += 1
        return sum(x.detach() for x in ls)


class PUB(MTO):
    name = "pub"

    def __init__(self, *args, max_iter: int = 20, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_iter = max_iter
        self._opt: PUBAdam | None = None

    def optimizer(self, fused=None):
        # fused kernels cannot take per-task gradients: PUB's step is written out (fused ignored)
        self._opt = PUBAdam(self.params, lr=self.lr, betas=self.betas,
                            weight_decay=self.weight_decay, every=self.every,
                            max_iter=self.max_iter)
        return self._opt

    def backward(self, losses, aux=None):
        if self._opt is None:
            raise ConfigError("mto pub: call optimizer() first (PUB's step takes the per-task "
                              "gradients backward() computes)")
        ls = self._ordered(losses, aux)
        grads = task_gradients(ls, self.params)
        shared, single = _split(grads, len(self.params))
        for j in single:
            _set_grad(self.params[j], next(g[j] for g in grads if g[j] is not None))
        self._opt.task_grads = {
            self.params[j]: [g[j] if g[j] is not None else torch.zeros_like(self.params[j])
                             for g in grads] for j in shared}
        self.steps += 1
        return sum(x.detach() for x in ls)

    @property
    def last_weights(self):
        opt = self._opt
        if opt is None or opt.alpha is None:
            return None
        return dict(zip(self.tasks, opt.alpha.tolist()))

    @last_weights.setter
    def last_weights(self, value):  # set by MTO.__init__; PUB reads its optimiser instead
        pass


class PUBAdam(torch.optim.Optimizer):
    """Adam whose step on the shared parameters balances the tasks' Adam updates (PUB).

    Before :meth:`step`, ``task_grads`` maps each shared parameter to its per-task gradients
    ``[g_1..g_K]``. For every task the update it alone would make from the current moments is
    ``u_i = m_i / (sqrt(v_i) / sqrt(1 - b2^t) + eps)`` with ``m_i = lerp(m, g_i, 1 - b1)`` and
    ``v_i = b2 v + (1 - b2) g_i^2`` (Adam's own formulas and operation order); over all shared
    parameters ``G = U U' / |U U'|`` and ``alpha`` solves ``G alpha = 1 / alpha``
    (:func:`nash_weights`, every ``every`` steps, reused in between). The shared step is
    ``theta -= lr / (1 - b1^t) * sum_i alpha_i u_i``, then ``m``, ``v`` take Adam's update with
    the weighted gradient ``sum_i alpha_i g_i``. Parameters not in ``task_grads`` (task-specific)
    take exactly Adam's step on ``p.grad``. With one task ``alpha = 1`` and the step is Adam's, bit
    for bit (same operations in the same order as ``torch.optim.Adam``'s single-tensor path).
    Weight decay is added to each task's gradient (Adam's L2 form).

    ``alpha`` (and the step count) live in the optimiser state of the first shared parameter, so
    ``state_dict`` / ``load_state_dict`` carry them.
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, every: int = 10, max_iter: int = 20) -> None:
        if lr <= 0 or eps <= 0 or every < 1:
            raise ValueError("PUBAdam: lr and eps must be > 0 and every >= 1")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))
        self.every, self.max_iter = every, max_iter
        self.task_grads: dict[torch.Tensor, list[torch.Tensor]] = {}

    @property
    def alpha(self) -> torch.Tensor | None:
        for group in self.param_groups:
            for p in group["params"]:
                if "pub_alpha" in self.state.get(p, {}):
                    return self.state[p]["pub_alpha"]
        return None

    def _init_state(self, p):
        st = self.state[p]
        if not st:
            st["step"] = torch.tensor(0.0)
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return st

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        shared = [(group, p) for group in self.param_groups for p in group["params"]
                  if p in self.task_grads]
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p in self.task_grads or p.grad is None:
                    continue
                st = self._init_state(p)
                st["step"] += 1
                grad = p.grad
                if group["weight_decay"] != 0:
                    grad = grad.add(p, alpha=group["weight_decay"])
                st["exp_avg"].lerp_(grad, 1 - beta1)
                st["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = st["step"].item()
                bc1 = 1 - beta1 ** step
                bc2_sqrt = (1 - beta2 ** step) ** 0.5
                denom = (st["exp_avg_sq"].sqrt() / bc2_sqrt).add_(group["eps"])
                p.addcdiv_(st["exp_avg"], denom, value=-(group["lr"] / bc1))
        if shared:
            self._shared_step(shared)
        self.task_grads = {}
        return loss

    def _shared_step(self, shared):
        # per parameter and task: the grads with weight decay, the tentative moments and denoms
        tentative = []
        k = len(self.task_grads[shared[0][1]])
        for group, p in shared:
            st = self._init_state(p)
            st["step"] += 1
            beta1, beta2 = group["betas"]
            step = st["step"].item()
            bc2_sqrt = (1 - beta2 ** step) ** 0.5
            per = []
            for g in self.task_grads[p]:
                if group["weight_decay"] != 0:
                    g = g.add(p, alpha=group["weight_decay"])
                m = st["exp_avg"].lerp(g, 1 - beta1)
                v = st["exp_avg_sq"].mul(beta2).addcmul_(g, g, value=1 - beta2)
                per.append((g, m, (v.sqrt() / bc2_sqrt).add_(group["eps"])))
            tentative.append(per)
        first = self.state[shared[0][1]]
        count = int(first.get("pub_count", torch.tensor(0)).item())
        alpha = first.get("pub_alpha")
        if alpha is None or count % self.every == 0 or alpha.numel() != k:
            updates = [torch.cat([(per[i][1] / per[i][2]).reshape(-1).to(torch.float64)
                                  for per in tentative]) for i in range(k)]
            alpha = nash_weights(_normalised_gram(updates), self.max_iter,
                                 init=alpha if alpha is not None and alpha.numel() == k else None)
            first["pub_alpha"] = alpha.to(torch.float64)
        first["pub_count"] = torch.tensor(float(count + 1))
        for (group, p), per in zip(shared, tentative):
            st = self.state[p]
            beta1, beta2 = group["betas"]
            step = st["step"].item()
            step_size = group["lr"] / (1 - beta1 ** step)
            a = alpha.to(p.dtype).tolist()
            weighted = None
            for ai, (g, m, denom) in zip(a, per):
                p.addcdiv_(m * ai, denom, value=-step_size)
                weighted = g * ai if weighted is None else weighted + g * ai
            st["exp_avg"].lerp_(weighted, 1 - beta1)
            st["exp_avg_sq"].mul_(beta2).addcmul_(weighted, weighted, value=1 - beta2)


METHODS = {"base": MTO, "uw": UncertaintyWeighting, "pcgrad": PCGrad, "nash": NashMTL,
           "pub": PUB}


def build_mto(name: str, tasks: list[str], params: list[torch.nn.Parameter], *, lr: float,
              betas=(0.9, 0.999), weight_decay: float = 0.0, every: int = 0, seed: int = 0,
              world: int = 1) -> MTO:
    """The method ``name`` over ``params`` for the task names ``tasks``."""
    if name not in METHODS:
        raise ConfigError(f"task.mto must be one of {', '.join(MTO_METHODS)}, not {name!r}")
    if world > 1 and name != "base":
        raise ConfigError(f"task.mto {name!r} computes per-task gradients, which DDP's reducer "
                          f"does not see: run it in one process, or use mto base")
    if not params:
        raise ConfigError("task.mto: the model has no trainable parameters")
    return METHODS[name](tasks, params, lr=lr, betas=betas, weight_decay=weight_decay,
                         every=every, seed=seed)


def train_step(trainer, idx: torch.Tensor) -> torch.Tensor:
    """One optimiser step of ``trainer`` (a :class:`~llmrec.ranking.trainer.Trainer` holding
    ``mto`` and the optimiser ``mto.optimizer()`` made) on samples ``idx``: forward, the task's
    per-task losses, the method's backward, optional clipping, the step. Returns the summed loss
    (detached)."""
    trainer.model.train()
    batch = trainer.features.batch(idx)
    with trainer._autocast():
        out = trainer.model(batch)
    losses = trainer.task.task_losses(out, batch)
    trainer.optimizer.zero_grad(set_to_none=True)
    for p in trainer.mto.extra_parameters():
        p.grad = None
    loss = trainer.mto.backward(losses, out.get("aux_loss"))
    if trainer.cfg.max_grad_norm:
        torch.nn.utils.clip_grad_norm_([p for p in trainer.module.parameters() if p.requires_grad],
                                       trainer.cfg.max_grad_norm)
    trainer.optimizer.step()
    return loss


def attach(trainer, name: str, every: int = 0) -> MTO:
    """Give an existing ``trainer`` the method ``name``: its optimiser is replaced by the method's
    and its ``train_step`` by :func:`train_step` (what the trainer does itself when it reads
    ``task.mto``)."""
    if not hasattr(trainer.task, "task_losses"):
        raise ConfigError(f"task.mto {name!r} needs per-task losses: use task.kind multitask "
                          f"(got {trainer.task.kind!r})")
    cfg = trainer.cfg
    params = [p for p in trainer.module.parameters() if p.requires_grad]
    trainer.mto = build_mto(name, trainer.task.labels, params, lr=cfg.lr, betas=cfg.betas,
                            weight_decay=cfg.weight_decay, every=every, seed=cfg.seed,
                            world=trainer.world)
    fused = cfg.fused_optimizer and trainer.device.type == "cuda"
    trainer.optimizer = trainer.mto.optimizer(fused=fused or None)
    trainer.train_step = lambda idx: train_step(trainer, idx)
    return trainer.mto


__all__ = ["MTO_METHODS", "MTO", "UncertaintyWeighting", "PCGrad", "NashMTL", "PUB", "PUBAdam",
           "build_mto", "nash_weights", "project_conflicts", "task_gradients", "train_step",
           "attach"]
