"""Printing a domain run's summary and its results table."""

from __future__ import annotations

from typing import Any

from llmrec.finetune.domain.tasks import MAIN_METRIC, TASKS

SHOWN = {"genre": ["micro_f1"], "plot_title": ["accuracy"], "next_item": ["HR@1", "NDCG@10"],
         "rating": ["AUC"], "redial_rec": ["Recall@1", "Recall@10"], "knowledge": ["ok_share"],
         "reply": ["WR_vs_base"], "general": ["rougeL_to_base", "ppl_heldout_replay"]}


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def results_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """A markdown table: one row per variant, one column per shown metric of each task."""
    cols = [(t, m) for t in TASKS for m in SHOWN[t]
            if any(t in r for r in results.values())]
    head = "| variant | " + " | ".join(f"{t} {m}" for t, m in cols) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1)]
    for v, r in results.items():
        lines.append(f"| {v} | " + " | ".join(_f((r.get(t) or {}).get(m)) for t, m in cols)
                     + " |")
    return "\n".join(lines)


def print_summary(summary: dict[str, Any]) -> None:
    c = summary.get("cpt")
    if c:
        print(f"CPT: {c.get('domain_docs')} domain + {c.get('replay_docs')} replay documents "
              f"(general share {c.get('general_char_share')} of characters), {c['steps']} steps"
              f"{' (reused)' if c.get('skipped') else ''}, loss {_f(c.get('first_loss'))} -> "
              f"{_f(c.get('last_loss'))}, {c.get('tokens_per_second')} tokens/s")
    for name, s in (summary.get("sft") or {}).items():
        print(f"SFT {name}: {s['rows']} rows, {s['steps']} steps"
              f"{' (reused)' if s.get('skipped') else ''}, loss {_f(s.get('first_loss'))} -> "
              f"{_f(s.get('last_loss'))}")
    d = summary.get("dpo")
    if d:
        if d.get("trained"):
            print(f"DPO: {d['pairs']} pairs, {d['steps']} steps, loss {_f(d.get('first_loss'))}"
                  f" -> {_f(d.get('last_loss'))}")
        else:
            print("DPO: not trained (no pairs)")
    ev = summary.get("eval")
    if ev:
        print(results_table(ev))
    if "seconds" in summary:
        print("seconds per stage: " + ", ".join(f"{k} {v}" for k, v in
                                                summary["seconds"].items()))


__all__ = ["results_table", "print_summary", "MAIN_METRIC"]
