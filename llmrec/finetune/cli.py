"""``llmrec finetune``: fine-tuning recipes (ECPO for conversational agents; domain
post-training)."""

from __future__ import annotations

import json
from typing import Any

from llmrec.finetune.domain import DomainConfig
from llmrec.finetune.ecpo import EcpoConfig


def _print_results(summary: dict[str, Any]) -> None:
    ex = summary.get("expert")
    if ex:
        print(f"expert: SR {ex.get('SR')} on {ex.get('n_tasks')} training tasks")
    sg = summary.get("sgpt")
    if sg:
        print(f"SGPT: {sg['rows']} SFT rows from {sg['expert_successes']} successful expert "
              f"dialogues; loss {sg.get('first_loss')} -> {sg.get('last_loss')}, "
              f"{sg.get('tokens_per_second')} tokens/s")
    fw = summary.get("forward")
    if fw:
        print(f"forward EC: {fw['turns']} agent turns, {fw['failed_turns']} failed, ratings "
              f"{json.dumps(fw['rating_histogram'])}")
    for variant, st in (summary.get("rewrite") or {}).items():
        print(f"rewrite ({variant}): {st['pairs']} pairs from {st['candidates']} candidate turns "
              f"(lambda {st['lambda']}); rejected attempts {json.dumps(st['rejected_attempts'])}")
    for name, d in (summary.get("dpo") or {}).items():
        if d.get("trained"):
            print(f"DPO {name}: {d['pairs']} pairs, {d['steps']} steps, loss "
                  f"{d.get('first_loss')} -> {d.get('last_loss')}, {d.get('tokens_per_second')} "
                  "tokens/s")
        else:
            print(f"DPO {name}: not trained (no pairs)")
    ev = summary.get("eval")
    if ev:
        print(f"{'agent':<10} {'n':>4} {'SR':>6} {'R@5':>6} {'expr':>6} {'failed':>7} "
              f"{'WR(overall) vs base':>20}")
        for agent, r in ev.items():
            wr = (r.get("WR_vs_base") or {}).get("overall")

            def f(x):
                return "-" if x is None else f"{x:.3f}"

            print(f"{agent:<10} {r['n_tasks']:>4} {f(r['SR']):>6} {f(r['Recall@5']):>6} "
                  f"{f(r['avg_expression']):>6} {f(r['failed_turn_rate']):>7} {f(wr):>20}")
    if "seconds" in summary:
        print("seconds per stage: " + ", ".join(f"{k} {v}" for k, v in summary["seconds"].items()))


def _ecpo(cfg: EcpoConfig, args) -> int:
    from llmrec.finetune.ecpo import Ecpo

    runner = Ecpo(cfg)
    summary = runner.run()
    _print_results(summary)
    if "eval" in cfg.stages and cfg.eval.show:
        from llmrec.crs.engine import TranscriptStore, format_transcript

        for agent in (summary.get("eval") or {}):
            for rec in TranscriptStore(runner.out / "eval" / agent).load()[:cfg.eval.show]:
                print(f"\n--- {agent}")
                print(format_transcript(rec))
    print(f"\nartifacts in {runner.out}")
    return 0


def _domain(cfg: DomainConfig, args) -> int:
    from llmrec.finetune.domain.report import print_summary
    from llmrec.finetune.domain import Domain

    runner = Domain(cfg)
    print_summary(runner.run())
    print(f"\nartifacts in {runner.out}")
    return 0


def register(subparsers) -> None:
    from llmrec.cli import add_config_command

    p = subparsers.add_parser(
        "finetune", help="fine-tune conversational agents (SGPT + ECPO with LoRA)",
        description="Fine-tuning recipes for conversational recommendation agents; see "
                    "finetune/*.yaml.")
    p.set_defaults(_handler=None, _group_parser=p)
    sub = p.add_subparsers(dest="finetune_command", metavar="RECIPE")
    add_config_command(
        sub, "ecpo", EcpoConfig, _ecpo, outputs=lambda c: [(c.out, "--out")],
        help="SGPT warm-up, forward expectation confirmation, rewriting, turn-level DPO, "
             "held-out evaluation",
        description="Run or resume the ECPO loop: expert dialogues -> SGPT (LoRA SFT) -> forward "
                    "expectation confirmation -> rewrites -> DPO (new LoRA on top of SGPT) -> "
                    "base | SGPT | ECPO | ECPO without EC on held-out tasks. Every stage's "
                    "artifact goes under --out; a rerun skips finished stages.")
    add_config_command(
        sub, "domain", DomainConfig, _domain, outputs=lambda c: [(c.out, "--out")],
        help="domain post-training (RedOne): CPT -> multi-task SFT -> DPO, and the eight-task "
             "suite over base / CPT / CPT+SFT / CPT+SFT+DPO / one model per task",
        description="Run or resume domain post-training: continued pre-training on domain text "
                    "(all tokens) mixed with general self-replay, SFT on the suite's training "
                    "rows (answers only), DPO on the SFT model's checkable samples, then every "
                    "variant on the held-out sets. Every artifact goes under --out; a rerun "
                    "skips finished stages and resumes a killed one from its last checkpoint.")
