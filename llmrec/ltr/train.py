"""Unbiased learning to rank from simulated clicks: naive, IPW (true propensities), DLA, full.

Self-contained in torch (not through the ranking engine's Trainer: the click learners need
per-session lists of shown documents with their ranks and, for DLA, a second model trained
jointly, which the engine's listwise task does not have). Rankers: ``linear`` (one linear layer)
and ``mlp`` (ELU hidden layers); both score one feature vector per document.

Losses, on a session's shown list (softmax over its K documents, p_i), clicked documents c_i:
- ``naive``: L = -sum_i c_i log p_i (clicks as labels);
- ``ipw``:   L = -sum_i c_i (theta_1 / theta_{k_i}) log p_i with the true PBM propensities;
- ``dla`` (Ai et al. 2018): a propensity model (one logit per rank = a linear layer on a one-hot
  rank) gives softmax q_k; L_R = -sum_i c_i (q_1 / q_{k_i}) log p_i and
  L_E = -sum_i c_i (p_1 / p_i) log q_{k_i}, the weights treated as constants; minimise L_R + L_E;
- ``full``: the true labels on the same lists, L = -sum_i (2^y_i - 1) log p_i (upper bound).
Lists without a click (without a relevant document for ``full``) are skipped. Defaults follow
ULTRA_pytorch: Adagrad lr 0.05 for both models, grad-norm clip 5, batch 256 sessions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from llmrec.ranking.metrics import err_at_k, mrr_at_k, ndcg_at_k

log = logging.getLogger(__name__)

LEARNERS = ("naive", "ipw", "dla", "full")
MODELS = ("linear", "mlp")


@dataclass
class TrainConfig:
    """Training of one ranker from a click log."""

    learner: str = field(default="dla", metadata={"help": "naive, ipw, dla or full"})
    model: str = field(default="linear", metadata={"help": "linear or mlp"})
    hidden: tuple[int, ...] = field(default=(64, 32), metadata={
        "help": "MLP hidden sizes (ULTRA uses 512-256-128; smaller here: 30 training queries)"})
    steps: int = field(default=2000, metadata={"help": "optimiser steps"})
    batch_size: int = field(default=256, metadata={"help": "sessions per step"})
    lr: float = field(default=0.05, metadata={"help": "Adagrad learning rate (both models)"})
    clip: float = field(default=5.0, metadata={"help": "gradient-norm clip"})
    max_weight: float | None = field(default=None, metadata={
        "help": "cap on propensity weights (ipw, dla); None = no cap"})
    seed: int = field(default=0, metadata={"help": "seed of the initialisation and batches"})

    def __post_init__(self):
        if self.learner not in LEARNERS:
            raise ValueError(f"learner must be one of {', '.join(LEARNERS)}, got {self.learner!r}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")


def make_ranker(model: str, n_features: int, hidden=(64, 32)) -> nn.Module:
    if model == "linear":
        return nn.Sequential(nn.Linear(n_features, 1))
    layers, d = [], n_features
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ELU()]
        d = h
    return nn.Sequential(*layers, nn.Linear(d, 1))


class Propensity(nn.Module):
    """DLA's examination model: one logit per rank; ``q = softmax(logits)``."""

    def __init__(self, n_ranks: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_ranks))

    def forward(self) -> torch.Tensor:
        return torch.softmax(self.logits, 0)

    def relative(self) -> np.ndarray:
        """Estimated theta_k / theta_1."""
        q = self().detach().double()
        return (q / q[0]).numpy()


def _weighted_softmax_loss(logp: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mean over lists with any weight of -sum_i w_i log p_i."""
    keep = w.sum(1) > 0
    if not bool(keep.any()):
        return logp.sum() * 0.0
    return -(w[keep] * logp[keep]).sum(1).mean()


@dataclass
class TrainResult:
    ranker: nn.Module
    propensity: np.ndarray | None  # DLA's theta_k / theta_1
    losses: list[float]


def train_from_clicks(x: torch.Tensor, shown: np.ndarray, sessions: dict, cfg: TrainConfig,
                      grades: np.ndarray | None = None) -> TrainResult:
    """Fit a ranker on a click log.

    ``x [Q, M, F]`` features of the training queries' candidates, ``shown [Q, K]`` the positions
    of the documents shown at ranks 1..K, ``sessions`` from
    :func:`llmrec.ltr.clicks.simulate_sessions` (``query``, ``clicks``, ``theta``); ``grades
    [Q, M]`` only for ``learner="full"``.
    """
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    ranker = make_ranker(cfg.model, x.shape[-1], cfg.hidden)
    K = shown.shape[1]
    shown_t = torch.as_tensor(shown, dtype=torch.long)
    xs = x.gather(1, shown_t[:, :, None].expand(-1, -1, x.shape[-1]))  # [Q, K, F]
    q_idx = torch.as_tensor(sessions["query"], dtype=torch.long)
    clicks = torch.as_tensor(sessions["clicks"], dtype=torch.float32)
    theta = torch.as_tensor(sessions["theta"], dtype=torch.float32)
    if cfg.learner == "full":
        if grades is None:
            raise ValueError("learner='full' needs the true grades")
        gains = 2 ** torch.as_tensor(np.take_along_axis(grades, shown, 1), dtype=torch.float32) - 1
    prop = Propensity(K) if cfg.learner == "dla" else None
    params = list(ranker.parameters()) + (list(prop.parameters()) if prop is not None else [])
    opt = torch.optim.Adagrad(params, lr=cfg.lr)
    ipw = theta[0] / theta
    if cfg.max_weight is not None:
        ipw = ipw.clamp(max=cfg.max_weight)
    losses = []
    n = q_idx.numel()
    for step in range(cfg.steps):
        b = torch.randint(0, n, (min(cfg.batch_size, n),), generator=g)
        qb = q_idx[b]
        logits = ranker(xs[qb]).squeeze(-1)  # [B, K]
        logp = torch.log_softmax(logits, 1)
        c = clicks[b]
        if cfg.learner == "naive":
            loss = _weighted_softmax_loss(logp, c)
        elif cfg.learner == "ipw":
            loss = _weighted_softmax_loss(logp, c * ipw)
        elif cfg.learner == "full":
            loss = _weighted_softmax_loss(logp, gains[qb])
        else:
            q = prop()
            w_r = (q[0] / q).detach()
            if cfg.max_weight is not None:
                w_r = w_r.clamp(max=cfg.max_weight)
            p = logp.exp().detach()
            w_e = p[:, :1] / p
            if cfg.max_weight is not None:
                w_e = w_e.clamp(max=cfg.max_weight)
            loss = _weighted_softmax_loss(logp, c * w_r) + \
                _weighted_softmax_loss(torch.log(q)[None, :].expand_as(c), c * w_e)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        losses.append(loss.item())
    return TrainResult(ranker, prop.relative() if prop is not None else None, losses)


@torch.no_grad()
def score(ranker: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return ranker(x).squeeze(-1)


def evaluate(scores: torch.Tensor, y: np.ndarray, mask: np.ndarray, max_grade: int = 3
             ) -> dict[str, float]:
    """nDCG@{1,3,5,10} (exp gain), ERR@10, MRR@10 over all candidates; queries without a
    relevant document are skipped (ULTRA's cleaning)."""
    yt, mt = torch.as_tensor(y, dtype=torch.float64), torch.as_tensor(mask)
    s = scores.to(torch.float64)
    out = {f"ndcg@{k}": ndcg_at_k(s, yt, mt, k, gain="exp") for k in (1, 3, 5, 10)}
    out["err@10"] = err_at_k(s, yt, mt, 10, max_grade=max_grade)
    out["mrr@10"] = mrr_at_k(s, yt, mt, 10)
    out["n_queries"] = int(((yt > 0) & mt).any(1).sum())
    return out


def split_queries(n: int, seed: int, test_frac: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Seeded query-level split: (train indices, test indices)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_frac)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def logged_lists(data, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The logging ranker's top-k per query: BM25's order (the run's rank, candidate order)."""
    M = data.mask.shape[1]
    shown = np.tile(np.arange(min(k, M)), (data.mask.shape[0], 1))
    return shown, np.take_along_axis(data.mask, shown, 1)


def run_experiment(data, learner: str, model: str, eta: float, seed: int, n_sessions: int = 20000,
                   steps: int = 2000, test_frac: float = 0.3, kind: str = "rho",
                   **train_kw) -> dict:
    """Split queries (seeded), simulate PBM clicks on the training queries' BM25 top 10, train,
    and evaluate on the held-out queries' full candidate lists with the true labels."""
    from llmrec.ltr.clicks import simulate_sessions

    tr, te = split_queries(len(data.query_ids), seed, test_frac)
    dtr, dte = data.subset(tr), data.subset(te)
    shown, shown_mask = logged_lists(dtr)
    sess = simulate_sessions(shown, shown_mask, dtr.y, n_sessions, eta=eta, seed=seed, kind=kind,
                             max_grade=data.max_grade)
    cfg = TrainConfig(learner=learner, model=model, steps=steps, seed=seed, **train_kw)
    res = train_from_clicks(torch.as_tensor(dtr.x), shown, sess, cfg, grades=dtr.y)
    s = score(res.ranker, torch.as_tensor(dte.x))
    metrics = evaluate(s, dte.y, dte.mask, data.max_grade)
    # re-ranking of what the logger shows (the test queries' BM25 top K): where clicks inform
    K = shown.shape[1]
    metrics_top = evaluate(s[:, :K], dte.y[:, :K], dte.mask[:, :K], data.max_grade)
    return {"metrics": metrics, "metrics_top": metrics_top, "propensity": res.propensity,
            "theta": sess["theta"],
            "n_train_queries": len(tr), "n_test_queries": len(te),
            "clicks_per_session": float(sess["clicks"].sum(1).mean())}
