"""Markdown tables of the recorded conversational-recommendation results (for docs/crs.md).

Reads ``bench/results/crs_runs.jsonl`` (quality: SR, Recall@5, rounds, raters, WR) and
``bench/results/crs_throughput.jsonl`` (dialogues per minute) and prints one table each; the
latest record of each (dataset, agent, model, device, metric) cell wins.

Usage: python bench/crs_table.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
QUALITY = ("SR", "Recall@5", "avg_rounds", "avg_recommendation", "avg_strategy",
           "avg_expression", "failed_turn_rate")
WR = ("WR_flexibility", "WR_coherence", "WR_guidance", "WR_overall")


def _load(name: str) -> list[dict]:
    return br.read(RESULTS / name)


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def quality_table(rows: list[dict]) -> str:
    cells: dict[tuple, dict] = {}
    for r in rows:
        key = (r["dataset"], r["agent"], r["model"], r["device"], r["n_tasks"], r["max_rounds"])
        cells.setdefault(key, {})[r["metric"]] = r["value"]
    head = ["dataset", "agent", "model", "device", "tasks", "max rounds", *QUALITY, *WR]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, m in sorted(cells.items(), key=lambda kv: [str(x) for x in kv[0]]):
        out.append("| " + " | ".join([*map(str, key), *(_fmt(m.get(k)) for k in QUALITY),
                                      *(_fmt(m.get(k)) for k in WR)]) + " |")
    return "\n".join(out)


def throughput_table(rows: list[dict]) -> str:
    head = ["device", "model", "decoding", "max rounds", "in flight", "dialogues",
            "dialogues/min", "speed-up"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    speedups = {(r["device"], r["date"], r["n_in_flight"]): r["value"] for r in rows
                if r["metric"] == "batching_speedup"}
    for r in rows:
        if r["metric"] != "dialogues_per_minute":
            continue
        sp = speedups.get((r["device"], r["date"], r["n_in_flight"]), 1.0)
        out.append("| " + " | ".join(map(str, [r["device"], r["model"], r["decoding"],
                                               r["max_rounds"], r["n_in_flight"], r["n_tasks"],
                                               _fmt(r["value"]), f"{sp:.1f}x"])) + " |")
    return "\n".join(out)


def main() -> int:
    print("### Quality (bench/results/crs_runs.jsonl)\n")
    print(quality_table(_load("crs_runs.jsonl")))
    print("\n### Throughput (bench/results/crs_throughput.jsonl)\n")
    print(throughput_table(_load("crs_throughput.jsonl")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
