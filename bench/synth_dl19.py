"""SSRA on TREC DL19: record the held-out results in bench/results/synth_dl19.jsonl.

Runs (or, by default, resumes / reuses) ``llmrec synth experiment`` with the DL19 recipe, prints
the markdown tables, and appends one JSON object per number: the four embedders' nDCG@10 and
AvgAP (with the AP at each threshold), g's per-level agreement with held-out human labels, the
level balance of the synthetic data before and after the Stage-2 filter, and the kept fraction
per level and round. Recorded lines are never edited; a new run appends new ones.

    python bench/synth_dl19.py                        # eval/synth/dl19.yaml, runs/synth-dl19
    python bench/synth_dl19.py --config eval/synth/dl19.yaml --out runs/synth-dl19 --rerun
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "synth_dl19.jsonl"


def _device() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu ({name}, {os.cpu_count()} cores, shared)"


def _commit() -> str:
    """HEAD, marked ``+uncommitted`` when the tree has changes (the measured code may differ)."""
    env = os.environ.get("LLMREC_COMMIT")
    if env:
        return env
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                               text=True, timeout=5).stdout.strip()
        return head + ("+uncommitted" if dirty else "") if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def records(results: dict, cfg_dict: dict, versions: dict) -> list[dict]:
    """One record per number of ``results`` (an experiment's results.json)."""
    from llmrec.artifacts import now_iso

    split = (f"heldout-{results['task']['eval_queries']}q-seed{cfg_dict['data']['split_seed']}"
             f"-of-{results['task']['seed_queries']}seedq")
    base = {"benchmark": "synth_dl19", "device": _device(), "commit": _commit(),
            "date": now_iso(), "dataset": "trec-dl19", "split": split, "seed": 0, "n_seeds": 1,
            "generator": "SmolLM2-135M-Instruct", "config": cfg_dict, "versions": versions,
            "run_seconds": results.get("seconds"),
            "command": " ".join(["python", "bench/synth_dl19.py", *sys.argv[1:]])}
    out = []

    def add(metric, value, unit="fraction", **keys):
        if value is None or value != value:  # NaN: nothing measured
            return
        out.append({**base, "metric": metric, "value": float(value), "unit": unit, **keys})

    for cond, r in results["embedders"].items():
        keys = dict(model="all-MiniLM-L6-v2", strategy=cond, baseline="base" if cond != "base"
                    else None, train_rows=r.get("train_rows"), n_queries=r.get("n_queries"),
                    n_pairs=r.get("n_pairs"))
        for metric in ("ndcg@10", "avg_ap", "ap_ge1", "ap_ge2", "ap_ge3"):
            add(metric, r.get(metric), **keys)
    g = results["score_model"]
    gkeys = dict(model="g: cross-encoder all-MiniLM-L6-v2", strategy="score_model")
    for lv in range(4):
        add(f"g_agreement_level{lv}", g["heldout"].get(f"agreement_{lv}"),
            n_pairs=g["heldout"].get(f"n_gold_{lv}"), **gkeys)
        add(f"g_precision_level{lv}", g["heldout"].get(f"precision_{lv}"), **gkeys)
    add("g_accuracy", g["heldout"]["accuracy"], n_pairs=g["heldout"]["n"], **gkeys)
    add("g_macro_agreement", g["heldout"]["macro_agreement"], **gkeys)
    for metric, v in (g.get("as_reranker") or {}).items():
        add(metric, v, **{**gkeys, "strategy": "score_model_reranker"})

    def balance(name, b, **keys):
        for lv in range(4):
            add(f"level_share_{lv}", (b or {}).get(str(lv)), data=name, n=(b or {}).get("n"),
                **keys)

    balance("seed_labels", results["task"]["seed_levels"])
    po = results.get("prompt_only")
    if po:
        balance("prompt_only_generated_as_judged_by_g", po["levels_before"])
        balance("prompt_only_data_target_levels", po["levels_after"])
        add("duplicate_rate", po["duplicate_rate_before"], data="prompt_only_generated")
    s = results.get("ssra")
    if s:
        balance("ssra_stage1_data", s["stage1"]["levels"])
        for r in s["rounds"]:
            balance("ssra_generated_before_stage2_filter", r["levels_before"], round=r["round"])
            balance("ssra_kept_after_stage2_filter", r["levels_after"], round=r["round"])
            for lv in range(4):
                add(f"kept_fraction_level{lv}", r.get(f"kept_fraction_{lv}"), round=r["round"],
                    data="ssra_stage2")
            add("duplicate_rate", r["duplicate_rate_before"], round=r["round"],
                data="ssra_generated")
            add("duplicate_rate", r["duplicate_rate_after"], round=r["round"], data="ssra_kept")
        balance("ssra_data_all_rounds", s["data"]["levels"])
    return out


_NAMES = {"base": "base MiniLM (no training)", "seed": "trained on seed labels only",
          "prompt_only": "+ prompt-only synthetic data", "ssra": "+ SSRA synthetic data",
          "score_model_reranker": "score model g as re-ranker (E[level])"}


def table_from_records(path: Path = RESULTS) -> str:
    """The docs' markdown tables, built from the most recent run recorded in ``path``."""
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not recs:
        return "(no records)"
    last = max(r["date"] for r in recs)
    recs = [r for r in recs if r["date"] == last]
    head = recs[0]
    cell = {(r.get("strategy"), r["metric"]): r["value"] for r in recs if r.get("strategy")}
    lines = [f"Run of {last}, commit `{head['commit']}`, {head['device']}; split "
             f"`{head['split']}`; one seed. nDCG@10 and AP in %.", "",
             "| embedder | nDCG@10 | AvgAP | AP>=1 | AP>=2 | AP>=3 | train rows |",
             "|---|---|---|---|---|---|---|"]
    rows = {r["strategy"]: r.get("train_rows") for r in recs if r.get("metric") == "avg_ap"}
    for strat in ("base", "seed", "prompt_only", "ssra", "score_model_reranker"):
        vals = [cell.get((strat, m)) for m in ("ndcg@10", "avg_ap", "ap_ge1", "ap_ge2", "ap_ge3")]
        if all(v is None for v in vals):
            continue
        lines.append(f"| {_NAMES[strat]} | " + " | ".join(
            "n/a" if v is None else f"{100 * v:.2f}" for v in vals)
            + f" | {rows.get(strat) if rows.get(strat) is not None else ''} |")
    lines += ["", "g's per-level agreement with held-out human labels (%):", "",
              "| | level 0 | level 1 | level 2 | level 3 |", "|---|---|---|---|---|"]
    for what in ("agreement", "precision"):
        lines.append(f"| {what} | " + " | ".join(
            f"{100 * cell[('score_model', f'g_{what}_level{lv}')]:.1f}"
            if ("score_model", f"g_{what}_level{lv}") in cell else "n/a" for lv in range(4))
            + " |")
    lines += ["", "Level balance (% at levels 0 / 1 / 2 / 3):", "",
              "| data | round | balance | n |", "|---|---|---|---|"]
    seen = []
    for r in recs:
        key = (r.get("data"), r.get("round"))
        if r["metric"].startswith("level_share_") and key not in seen:
            seen.append(key)
    for data, rnd in seen:
        shares = {r["metric"][-1]: r["value"] for r in recs
                  if r.get("data") == data and r.get("round") == rnd
                  and r["metric"].startswith("level_share_")}
        n = next(r.get("n") for r in recs if r.get("data") == data and r.get("round") == rnd)
        lines.append(f"| {data} | {rnd if rnd is not None else ''} | "
                     + " / ".join(f"{100 * shares.get(str(lv), 0):.0f}" for lv in range(4))
                     + f" | {n} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "eval" / "synth" / "dl19.yaml"))
    p.add_argument("--out", default=None, help="output folder (default: the recipe's)")
    p.add_argument("--rerun", action="store_true", help="recompute every step")
    p.add_argument("--no-record", action="store_true", help="print only, append nothing")
    p.add_argument("--table", action="store_true",
                   help="only print the markdown tables of the last recorded run")
    args = p.parse_args(argv)
    if args.table:
        print(table_from_records())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from llmrec.artifacts import package_versions
    from llmrec.config import load_config, to_dict
    from llmrec.synth.pipeline import Run, SynthConfig, results_markdown

    overrides = [f"--out={args.out}"] if args.out else []
    if args.rerun:
        overrides.append("--reuse=false")
    cfg = load_config(SynthConfig, args.config, overrides)
    saved = Path(cfg.out) / "results.json"
    results = None
    if not args.rerun and saved.is_file():
        results = json.loads(saved.read_text())
        if not results.get("complete"):
            results = None
    if results is None:
        results = Run(cfg).experiment()
    print(results_markdown(results))
    if not args.no_record:
        recs = records(results, to_dict(cfg), package_versions())
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a") as fh:
            for rec in recs:
                fh.write(json.dumps(rec, default=str) + "\n")
        print(f"appended {len(recs)} records to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
