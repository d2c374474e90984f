"""Render the oracle and decomposition tables of docs/kser.md from bench/results.

    python bench/kar_regime_table.py            # edits docs/kser.md (blocks kser-oracle,
                                                # kser-decomposition)
    python bench/kar_regime_table.py --print

Cells are the per-seed records (``seed`` set); gains are paired by seed against ``none`` of the
same backbone and regime; brackets give the number of seeds and, for gains, how many were > 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from kser_table import DOC, write_blocks  # noqa: E402

from llmrec import benchrecord as br  # noqa: E402

ORACLE = ROOT / "bench" / "results" / "kser_oracle.jsonl"
DECOMP = ROOT / "bench" / "results" / "kar_regime.jsonl"
MODELS = ("din", "dcnv2", "deepfm", "autoint")


def _ms(xs: list[float]) -> str:
    if not xs:
        return "–"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.4f} ± {sd:.4f} ({len(xs)})"


def _gain(xs: list[float]) -> str:
    if not xs:
        return "–"
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):+.4f} ± {sd:.4f} ({sum(x > 0 for x in xs)}/{len(xs)})"


def _footer(recs: list[dict]) -> str:
    devices = sorted({r["device"] for r in recs})
    commits = sorted({r["commit"] for r in recs})
    dates = sorted(r["date"][:10] for r in recs)
    return (f"Device: {', '.join(devices)}; commit {', '.join(commits)}; "
            f"{dates[0]}{'' if dates[0] == dates[-1] else ' to ' + dates[-1]}.")


def oracle_block(path: Path = ORACLE) -> str:
    recs = [r for r in br.read(path) if r.get("metric") == "auc" and r.get("seed") is not None
            and r.get("value") is not None and r.get("variant") in ("default", "none")]
    if not recs:
        return "_no oracle records yet_"
    none = {(r["model"], r["seed"]): r["value"] for r in recs if r["augment"] == "none"}
    cells = defaultdict(dict)
    for r in recs:
        if r["augment"] == "none":
            continue
        cells[(r["model"], r["kind"], r["source"], r["layout"], r["augment"])][r["seed"]] = \
            r["value"]
    lines = ["**test AUC gain over the backbone** (DIN; paired by seed, mean ± std, seeds "
             "with a gain / seeds) and the share of the whole-vector gain the hidden layout "
             "recovers (shown where the whole-vector gain exceeds 0.001)", "",
             "| kind | signal | KAR whole | KAR hidden | KAR recovered | KSER whole | "
             "KSER hidden | KSER recovered |", "|---|---|---|---|---|---|---|---|"]
    for model in sorted({k[0] for k in cells}):
        for kind in ("user", "item"):
            for source in ("leaky", "fair", "noise"):
                row = [kind, source]
                for method in ("kar", "kser"):
                    g = {}
                    for layout in ("whole", "hidden"):
                        per = cells.get((model, kind, source, layout, method), {})
                        g[layout] = [v - none[(model, s)] for s, v in per.items()
                                     if (model, s) in none]
                    rec = "–"
                    if g["whole"] and g["hidden"] and source != "noise":
                        w = statistics.mean(g["whole"])
                        if w > 0.001:  # a share of no gain means nothing
                            rec = f"{statistics.mean(g['hidden']) / w:.2f}"
                    row += [_gain(g["whole"]), _gain(g["hidden"]), rec]
                if any(c != "–" for c in row[2:]):
                    lines.append("| " + " | ".join(row) + " |")
    base = [v for v in none.values()]
    lines += ["", f"Backbone alone: test AUC {_ms(base)}. " + _footer(recs)]
    return "\n".join(lines)


def decomposition_block(path: Path = DECOMP) -> str:
    recs = [r for r in br.read(path) if r.get("metric") == "auc" and r.get("seed") is not None
            and r.get("value") is not None]
    if not recs:
        return "_no decomposition records yet_"
    cells = defaultdict(dict)
    for r in recs:
        cells[(r["regime"], r["model"], r["condition"])][r["seed"]] = r["value"]
    conds = []
    for r in recs:
        if r["condition"] not in conds:
            conds.append(r["condition"])
    order = ["none", "stats"] + sorted(c for c in conds if c not in ("none", "stats"))
    label = {"none": "none (AUC)", "stats": "LM-history stats"}
    lines = ["**test AUC of the backbone alone, and the paired gain of each column over it** "
             "(mean ± std over seeds; brackets: seeds with a gain / seeds)", "",
             "| regime | model | " + " | ".join(label.get(c, c) for c in order) + " |",
             "|---|---|" + "---|" * len(order)]
    for regime in sorted({k[0] for k in cells}, key=lambda x: (x != "ours", x)):
        for model in [m for m in MODELS if any(k[:2] == (regime, m) for k in cells)]:
            none = cells.get((regime.split("-")[0], model, "none"), {})
            row = [regime, model]
            for c in order:
                per = cells.get((regime, model, c), {})
                if c == "none":
                    row.append(_ms(list(per.values())))
                else:
                    row.append(_gain([v - none[s] for s, v in per.items() if s in none]))
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", _footer(recs)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--print", action="store_true")
    args = ap.parse_args(argv)
    blocks = {"kser-oracle": oracle_block(), "kser-decomposition": decomposition_block()}
    if args.print:
        for name, body in blocks.items():
            print(f"<!-- {name} -->\n{body}\n")
        return 0
    write_blocks(DOC, blocks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
