"""Slates with the Bayesian GRU slate model: recovery on generated slates, and the online loop on
a MovieLens-1M slate simulator (semi-synthetic: real preferences, simulated clicks), on the CPU.

    python bench/slates_ml1m.py --seeds 0,1,2 --out bench/results/slates_ml1m.jsonl

Part 1, generated slates (known parameters; simulated): 100 users, 60 items in 4 groups, 4-dim
preferences, slates of 5, ``beta = 3``, random slates clicked 50% of the time, 30 logged steps per
user, the last 4 held out. Per seed: the slate-likelihood model fitted on a uniform-logger log
(Spearman between each user's true and estimated group ranking and item ranking, mean over
users; held-out log-likelihood per step), and the slate and all-items models fitted on a
personalised-logger log (slates drawn with probability ~ exp(utility): non-uniform), both scored
by the log-likelihood of the held-out clicks on their shown slates.

Part 2, the online loop (:mod:`llmrec.slates.loop`) on :func:`movielens_simulator`: the 300
most-rated films of ML-1M users 1-2999, a rank-16 SVD of "rated >= 4", ``beta = 2``, random
slates of 10 clicked 10% of the time, 500 simulated users (drawn once, seed 0). Per seed and
policy: 3 warm-up rounds of random slates (shared by the policies of a seed), then
``--rounds`` rounds of one slate per user, each followed by ``--steps`` Adam steps on the whole
log. Policies greedy / Thompson / in-slate Thompson on the slate-likelihood model and on the
all-items model, beside random slates and the simulator's best slates (oracle).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

BENCH = "slates_ml1m"


def generated_part(seeds, steps, env, records, logged=30):
    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from llmrec.ranking.models.slate.bayesian_gru import BayesianGRUSlate, SlateSpec
    from llmrec.slates.loop import fit
    from llmrec.slates.simulator import generated_simulator, simulate_log

    dataset = "generated slates (simulated)"
    conf = {"n_users": 100, "n_items": 60, "n_groups": 4, "dim": 4, "slate_size": 5,
            "random_ctr": 0.5, "beta": 3.0, "steps_logged": logged, "held_out": 4,
            "fit_steps": steps, "lr": 0.05, "hidden_dim": 4}
    table = {}
    for seed in seeds:
        sim = generated_simulator(n_users=100, n_items=60, n_groups=4, dim=4, slate_size=5,
                                  random_ctr=0.5, beta=3.0, seed=seed)
        g = np.asarray(sim.item_group[2:])
        for logger, liks in (("uniform", ("slate",)), ("personalised", ("slate", "all_items"))):
            log = simulate_log(sim, steps=logged, slate_size=5, logger=logger, seed=seed)
            t0 = logged - 4
            train = {k: (v[:, :t0] if v.dim() > 1 else v) for k, v in log.items()}
            for lik in liks:
                torch.manual_seed(seed)
                m = BayesianGRUSlate(SlateSpec(sim.n_items, 100, 5, list(sim.item_group)),
                                     hidden_dim=4, likelihood=lik)
                t = time.perf_counter()
                fit(m, train, steps, lr=0.05)
                wall = time.perf_counter() - t
                with torch.no_grad():
                    out = m(log)
                    ll = torch.log_softmax(out["logits"], -1).gather(
                        -1, out["target"][..., None])[:, t0:]
                    est = m.item_scores(m.next_state(log["user"], train["click"]))[:, 2:].numpy()
                true = sim.utility[:, 2:].numpy()
                vals = {"heldout_loglik": float(ll.mean())}
                if logger == "uniform":
                    vals["spearman_groups"] = float(np.mean([spearmanr(
                        [true[u, g == c].mean() for c in range(4)],
                        [est[u, g == c].mean() for c in range(4)])[0] for u in range(100)]))
                    vals["spearman_items"] = float(np.mean(
                        [spearmanr(true[u], est[u])[0] for u in range(100)]))
                for metric, v in vals.items():
                    records.append(br.record(BENCH, metric, v, "mean per user" if "spear" in
                                             metric else "nats per step", env,
                                             model="bayesian_gru_slate", dataset=dataset,
                                             likelihood=lik, logger=logger, seed=seed,
                                             wall_seconds=round(wall, 2), config=conf))
                    table.setdefault((logger, lik, metric), []).append(v)
                print(f"generated seed {seed} {logger:12s} {lik:9s} " + ", ".join(
                    f"{k} {v:.3f}" for k, v in vals.items()) + f" ({wall:.0f} s)", flush=True)
    for (logger, lik, metric), vals in table.items():
        s = br.summarise(vals)
        records.append(br.record(BENCH, metric, s["mean"], "mean over seeds", env,
                                 model="bayesian_gru_slate", dataset=dataset, likelihood=lik,
                                 logger=logger, mean=s["mean"], std=s["std"],
                                 n_seeds=s["n_seeds"], config=conf))
        print(f"generated {logger:12s} {lik:9s} {metric}: {s['mean']:.3f} +- {s['std']:.3f}")


def loop_part(args, seeds, env, records):
    from llmrec.slates.loop import LoopConfig, run_online
    from llmrec.slates.simulator import movielens_simulator

    sim = movielens_simulator(args.data, n_users=args.users, n_items=args.items, rank=16,
                              beta=2.0, slate_size=10, random_ctr=0.1, seed=0)
    info = {k: v for k, v in sim.info.items() if k not in ("movie_ids", "user_ids")}
    dataset = "ML-1M users 1-2999, slate simulator (semi-synthetic)"
    metrics = ("click_rate", "expected_click_rate", "best_click_rate", "cumulative_clicks",
               "cumulative_regret", "regret_per_slate", "groups_per_slate",
               "distinct_items_per_round", "items_shown_per_user")
    runs = [(p, "slate") for p in args.policies.split(",")]
    runs += [(p, "all_items") for p in args.all_items_policies.split(",") if p]
    runs += [(p, None) for p in ("random", "oracle")]
    table = {}
    for seed in seeds:
        for policy, lik in runs:
            cfg = LoopConfig(rounds=args.rounds, warmup_rounds=3, slate_size=10,
                             steps_per_round=args.steps, warmup_steps=args.warmup_steps,
                             lr=0.02, hidden_dim=args.hidden_dim, likelihood=lik or "slate")
            out = run_online(sim, policy, cfg, seed)["summary"]
            conf = {**asdict(cfg), "simulator": info}
            for m in metrics:
                records.append(br.record(BENCH, m, out[m], "per slate" if "rate" in m or
                                         "per_slate" in m else "count", env,
                                         model="bayesian_gru_slate" if lik else "none",
                                         dataset=dataset, policy=policy, likelihood=lik,
                                         seed=seed, label="simulated",
                                         wall_seconds=out["wall_seconds"], config=conf))
                table.setdefault((policy, lik, m), []).append(out[m])
            print(f"loop seed {seed} {policy:18s} {str(lik):9s} click rate "
                  f"{out['click_rate']:.3f} (expected {out['expected_click_rate']:.3f}, best "
                  f"{out['best_click_rate']:.3f}), regret {out['cumulative_regret']:.0f}, "
                  f"groups/slate {out['groups_per_slate']:.2f}, items/user "
                  f"{out['items_shown_per_user']:.1f} ({out['wall_seconds']:.0f} s)", flush=True)
    print("\n| policy | likelihood | click rate | expected click rate | cumulative regret | "
          "genres per slate | distinct items per round | items shown per user |")
    print("|---|---|---|---|---|---|---|---|")
    for policy, lik in runs:
        row = []
        for m in ("click_rate", "expected_click_rate", "cumulative_regret", "groups_per_slate",
                  "distinct_items_per_round", "items_shown_per_user"):
            s = br.summarise(table[(policy, lik, m)])
            records.append(br.record(BENCH, m, s["mean"], "mean over seeds", env,
                                     model="bayesian_gru_slate" if lik else "none",
                                     dataset=dataset, policy=policy, likelihood=lik,
                                     label="simulated", mean=s["mean"], std=s["std"],
                                     n_seeds=s["n_seeds"]))
            fmt = ".0f" if m in ("cumulative_regret",) else (".1f" if "items" in m else ".3f")
            row.append(f"{s['mean']:{fmt}} ± {s['std']:{fmt}}")
        print(f"| {policy} | {lik or '-'} | " + " | ".join(row) + " |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/movielens-1m")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--parts", default="generated,loop")
    ap.add_argument("--fit-steps", type=int, default=300, help="generated part: Adam steps")
    ap.add_argument("--logged-steps", type=int, default=30,
                    help="generated part: logged slates per user (the last 4 held out)")
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=20, help="Adam steps after each round")
    ap.add_argument("--warmup-steps", type=int, default=150)
    ap.add_argument("--hidden-dim", type=int, default=8)
    ap.add_argument("--policies", default="greedy,thompson,in_slate_thompson")
    ap.add_argument("--all-items-policies", default="greedy,thompson,in_slate_thompson")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSONL file to append the records to")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    env = br.environment("cpu", note="shared with other jobs")
    seeds = [int(s) for s in args.seeds.split(",")]
    t = time.perf_counter()
    command = "python bench/slates_ml1m.py " + " ".join(sys.argv[1:] if argv is None else argv)
    ok = True
    for part in args.parts.split(","):
        records: list = []
        if part == "generated":
            generated_part(seeds, args.fit_steps, env, records, args.logged_steps)
        elif part == "loop":
            loop_part(args, seeds, env, records)
        else:
            raise SystemExit(f"unknown part {part!r}: choose generated and/or loop")
        for r in records:
            r["command"] = command
        ok &= all(not isinstance(r["value"], float) or math.isfinite(r["value"])
                  for r in records)
        print(f"\n{part}: {len(records)} records, {time.perf_counter() - t:.0f} s on "
              f"{env['device']}")
        if args.out:  # each part as soon as it is done
            br.append(args.out, records)
            print(f"appended to {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
