"""Fitting a slate model to a log, and the online loop: policy -> simulated clicks -> update.

:func:`fit` runs Adam steps on the negative ELBO of a whole slate log (full batch: the logs here
are small). :func:`run_online` is one (policy, seed) run of the online loop:

1. ``warmup_rounds`` rounds of uniformly random slates (the same for every policy of a seed);
2. then each round every simulated user is shown one slate of ``k`` items chosen by the policy
   from the current model (items the user already clicked are not shown), the simulator draws
   the clicks, the log grows by one step per user, and the model takes ``steps_per_round`` Adam
   steps on the whole log (warm start: the parameters and the optimiser state carry over).

Per round it records the clicks, the expected clicks of the shown slates, those of the best
slates (so the regret is exact), the distinct groups per slate and the items shown. ``policy``
may also be ``random`` (uniform slates, no model) or ``oracle`` (the simulator's best slates).

``python -m llmrec.slates.loop --data ../shared/data/movielens-1m --policy in_slate_thompson``
prints one run's summary as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass

import torch

from llmrec.config import option
from llmrec.errors import ConfigError
from llmrec.ranking.models.slate.bayesian_gru import NO_CLICK, BayesianGRUSlate, SlateSpec
from llmrec.slates.policies import POLICIES, choose_slates
from llmrec.slates.simulator import SlateSimulator, movielens_simulator

log = logging.getLogger(__name__)
BASELINES = ("random", "oracle")


@dataclass
class LoopConfig:
    """The online loop's settings."""

    rounds: int = option(20, help="rounds after the warm-up (one slate per user per round)")
    warmup_rounds: int = option(3, help="rounds of uniform random slates first")
    slate_size: int = option(10, help="items per slate")
    steps_per_round: int = option(30, help="Adam steps on the whole log after each round")
    warmup_steps: int = option(150, help="Adam steps after the warm-up rounds")
    lr: float = option(0.02, help="Adam learning rate of the slate model")
    hidden_dim: int = option(16, help="the GRU's (and the item vectors') width")
    score: str = option("dot", help="how the user state scores an item: dot or euclid")
    likelihood: str = option("slate", help="slate (softmax over the shown slate + no click) or "
                                          "all_items")
    n_candidates: int = option(25, help="all_items likelihood: uniform candidates per step")
    kl_weight: float = option(1.0, help="weight of the item vectors' KL term to their prior")
    init_scale: float = option(0.1, help="initial scale of the item vectors")


def make_model(sim: SlateSimulator, cfg: LoopConfig) -> BayesianGRUSlate:
    spec = SlateSpec(n_items=sim.n_items, n_users=sim.n_users, max_slate_len=cfg.slate_size,
                     item_group=list(sim.item_group))
    return BayesianGRUSlate(spec, hidden_dim=cfg.hidden_dim, score=cfg.score,
                            likelihood=cfg.likelihood, n_candidates=cfg.n_candidates,
                            init_scale=cfg.init_scale, kl_weight=cfg.kl_weight)


def fit(model: BayesianGRUSlate, log_batch: dict, steps: int, lr: float = 0.02,
        optimizer: torch.optim.Optimizer | None = None, clip: float = 100.0
        ) -> torch.optim.Optimizer:
    """``steps`` full-batch Adam steps on ``model.loss`` over ``log_batch``; returns the
    optimiser (pass it back in to keep its state across calls)."""
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    n_data = int((log_batch["click"] > 0).sum())
    model.train()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = model.loss(log_batch, n_data)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    model.eval()
    return opt


def run_online(sim: SlateSimulator, policy: str, cfg: LoopConfig, seed: int) -> dict:
    """One run; returns per-round series and a summary (see the module docstring)."""
    if policy not in (*POLICIES, *BASELINES):
        raise ConfigError(f"unknown policy {policy!r}; choose one of "
                          f"{', '.join((*POLICIES, *BASELINES))}")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    g_warm = torch.Generator().manual_seed(10_000 + seed)  # shared by every policy of a seed
    g = torch.Generator().manual_seed(20_000 + seed)
    users = torch.arange(sim.n_users)
    k = cfg.slate_size
    consumed = torch.zeros(sim.n_users, sim.n_items, dtype=torch.bool)
    groups = torch.as_tensor(sim.item_group)
    slates, clicks, rounds = [], [], []
    model = make_model(sim, cfg) if policy in POLICIES else None
    opt = None
    shown_per_user = torch.zeros(sim.n_users, sim.n_items, dtype=torch.bool)

    def step(s: torch.Tensor, generator: torch.Generator, warm: bool) -> None:
        exp_shown = sim.expected_clicks(users, s, consumed)
        exp_best = sim.expected_clicks(users, sim.best_slates(users, k, consumed), consumed)
        c = sim.click(users, s, consumed, generator)
        consumed[users, c] |= c > NO_CLICK
        shown_per_user[users[:, None], s] = True
        slates.append(s)
        clicks.append(c)
        rounds.append({"warmup": warm, "clicks": int((c > NO_CLICK).sum()),
                       "expected": float(exp_shown.sum()), "best": float(exp_best.sum()),
                       "groups_per_slate": float(torch.tensor(
                           [len(set(row)) for row in groups[s].tolist()]).float().mean()),
                       "distinct_items": int(torch.unique(s).numel())})

    for _ in range(cfg.warmup_rounds):
        step(sim.random_slates(users, k, g_warm, consumed), g_warm, True)
    logb = None
    if model is not None and cfg.warmup_rounds:
        logb = {"user": users, "slate": torch.stack(slates, 1), "click": torch.stack(clicks, 1)}
        opt = fit(model, logb, cfg.warmup_steps, cfg.lr)
    for _ in range(cfg.rounds):
        if policy == "random":
            s = sim.random_slates(users, k, g, consumed)
        elif policy == "oracle":
            s = sim.best_slates(users, k, consumed)
        else:
            with torch.no_grad():
                z = model.next_state(users, logb["click"] if logb is not None else None)
            s = choose_slates(model, z, k, policy, exclude=consumed, generator=g)
        step(s, g, False)
        if model is not None:
            logb = {"user": users, "slate": torch.stack(slates, 1),
                    "click": torch.stack(clicks, 1)}
            opt = fit(model, logb, cfg.steps_per_round, cfg.lr, optimizer=opt)
    live = [r for r in rounds if not r["warmup"]]
    n_slates = len(live) * sim.n_users
    regret = [r["best"] - r["expected"] for r in live]
    summary = {
        "policy": policy, "seed": seed, "slates": n_slates,
        "click_rate": sum(r["clicks"] for r in live) / max(n_slates, 1),
        "expected_click_rate": sum(r["expected"] for r in live) / max(n_slates, 1),
        "best_click_rate": sum(r["best"] for r in live) / max(n_slates, 1),
        "cumulative_clicks": sum(r["clicks"] for r in live),
        "cumulative_regret": sum(regret),
        "regret_per_slate": sum(regret) / max(n_slates, 1),
        "groups_per_slate": sum(r["groups_per_slate"] for r in live) / max(len(live), 1),
        "distinct_items_per_round": sum(r["distinct_items"] for r in live) / max(len(live), 1),
        "items_shown_per_user": float(shown_per_user.sum(1).float().mean()),
        "wall_seconds": round(time.perf_counter() - t0, 2),
    }
    return {"summary": summary, "rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="One run of the online slate loop on the "
                                             "MovieLens-1M simulator (semi-synthetic).")
    ap.add_argument("--data", default="../shared/data/movielens-1m")
    ap.add_argument("--policy", default="in_slate_thompson",
                    choices=(*POLICIES, *BASELINES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--random-ctr", type=float, default=0.1)
    ap.add_argument("--beta", type=float, default=2.0)
    for f, v in asdict(LoopConfig()).items():
        ap.add_argument("--" + f.replace("_", "-"), type=type(v), default=v)
    args = ap.parse_args(argv)
    cfg = LoopConfig(**{f: getattr(args, f) for f in asdict(LoopConfig())})
    sim = movielens_simulator(args.data, n_users=args.users, n_items=args.items, beta=args.beta,
                              slate_size=cfg.slate_size, random_ctr=args.random_ctr,
                              seed=args.seed)
    out = run_online(sim, args.policy, cfg, args.seed)
    print(json.dumps(out["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
