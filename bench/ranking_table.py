"""Render the ranking results (bench/results/ranking_*.jsonl) as markdown tables in docs/ranking.md.

    python bench/ranking_table.py            # rewrite the generated blocks of docs/ranking.md
    python bench/ranking_table.py --print    # print them instead

Each generated block sits between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` markers; the
rest of the document is left alone. For quality tables the most recent run (latest ``date`` of a
``mean`` cell) of each model is shown.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ranking.md"
ORDER = ["popularity", "dnn", "deepfm", "dcn", "dcnv2", "xdeepfm", "autoint", "fibinet", "fignn",
         "din", "dien", "finalmlp", "gdcn"]
NAMES = {"popularity": "Popularity", "dnn": "DNN", "deepfm": "DeepFM", "dcn": "DCN",
         "dcnv2": "DCNv2", "xdeepfm": "xDeepFM", "autoint": "AutoInt", "fibinet": "FiBiNET",
         "fignn": "FiGNN", "din": "DIN", "dien": "DIEN", "finalmlp": "FinalMLP", "gdcn": "GDCN"}


def quality_table(path: Path) -> str:
    recs = br.read(path)
    if not recs:
        return f"_no results in {path.name} yet_"
    latest: dict[tuple[str, str], dict] = {}
    for r in recs:
        key = (r["model"], r["metric"])
        if r.get("mean") is not None or r["model"] == "popularity":
            if key not in latest or r["date"] >= latest[key]["date"]:
                latest[key] = r
    models = [m for m in ORDER if (m, "auc") in latest]
    pop_auc = latest.get(("popularity", "auc"), {}).get("value")
    lines = ["| model | test AUC | test gAUC | test LogLoss | seeds | AUC - popularity |",
             "|---|---|---|---|---|---|"]
    for m in models:
        cells = []
        for metric in ("auc", "gauc", "logloss"):
            r = latest.get((m, metric))
            if r is None:
                cells.append("")
            elif r.get("mean") is not None:
                cells.append(f"{r['mean']:.4f} ± {r['std']:.4f}")
            else:
                cells.append(f"{r['value']:.4f}")
        n = latest[(m, "auc")].get("n_seeds", "-")
        gain = latest[(m, "auc")].get("mean", latest[(m, "auc")]["value"])
        diff = f"{gain - pop_auc:+.4f}" if pop_auc is not None and m != "popularity" else ""
        lines.append(f"| {NAMES.get(m, m)} | {cells[0]} | {cells[1]} | {cells[2]} | {n} | {diff} |")
    any_rec = latest[(models[-1], "auc")]
    lines.append("")
    lines.append(f"Device: {any_rec['device']}; commit `{any_rec['commit']}`; {any_rec['date']}; "
                 f"torch {any_rec['versions'].get('torch')}. Dataset: {any_rec['dataset']}, "
                 f"split {any_rec['split']}.")
    return "\n".join(lines)


def throughput_table(path: Path) -> str:
    recs = br.read(path)
    if not recs:
        return f"_no results in {path.name} yet_"
    last_date = max(r["date"][:13] for r in recs)
    recs = [r for r in recs if r["date"][:13] == last_date]
    lines = ["| model | engine | setting | samples/s | test AUC | test LogLoss |",
             "|---|---|---|---|---|---|"]
    quality = {}
    for r in recs:
        if r["metric"].startswith("test_"):
            quality[(r["model"], r.get("engine"), r["metric"][5:])] = r["value"]
    for r in recs:
        if r["metric"] != "train_samples_per_s":
            continue
        eng = r.get("engine")
        setting = r.get("variant") or f"DataLoader num_workers={r.get('num_workers')}"
        val = "failed" if r["value"] is None else f"{r['value']:,.0f}"
        auc = quality.get((r["model"], eng, "auc"))
        ll = quality.get((r["model"], eng, "logloss"))
        lines.append(f"| {NAMES.get(r['model'], r['model'])} | {eng} | {setting} | {val} | "
                     f"{'' if auc is None else f'{auc:.4f}'} | {'' if ll is None else f'{ll:.4f}'} |")
    ratios = [r for r in recs if r["metric"] == "speedup" and r["value"]]
    if ratios:
        lines.append("")
        for r in ratios:
            lines.append(f"- {NAMES.get(r['model'], r['model'])}: ours (best setting, "
                         f"{r['ours_samples_per_s']:,.0f}/s) is **{r['value']:.1f}x** FuxiCTR "
                         f"with {r['baseline'].split(' ', 1)[1]} ({r['fuxictr_samples_per_s']:,.0f}/s)")
    r0 = recs[0]
    lines.append("")
    lines.append(f"Device: {r0['device']}; commit `{r0['commit']}`; {r0['date']}; torch "
                 f"{r0['versions'].get('torch')}; batch {r0.get('batch_size')}; "
                 f"{r0.get('n_train'):,} training samples; dataset {r0['dataset']}.")
    return "\n".join(lines)


BLOCKS = {
    "ml1m": lambda: quality_table(ROOT / "bench" / "results" / "ranking_ml1m.jsonl"),
    "ml-latest-small": lambda: quality_table(ROOT / "bench" / "results" / "ranking_ml-latest-small.jsonl"),
    "throughput": lambda: throughput_table(ROOT / "bench" / "results" / "ranking_throughput.jsonl"),
}


def render(doc: str) -> str:
    for name, make in BLOCKS.items():
        pat = re.compile(rf"(<!-- BEGIN {re.escape(name)} -->\n)(.*?)(<!-- END {re.escape(name)} -->)",
                         re.S)
        body = make()
        doc = pat.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(3), doc)
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--print", action="store_true")
    args = ap.parse_args()
    if args.print:
        for name, make in BLOCKS.items():
            print(f"## {name}\n{make()}\n")
        return 0
    DOC.write_text(render(DOC.read_text()))
    print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
