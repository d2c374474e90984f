"""Render the KSER results (bench/results/kser_*.jsonl) as the markdown blocks of docs/kser.md.

    python bench/kser_table.py            # rewrite the generated blocks of docs/kser.md
    python bench/kser_table.py --print    # print them instead

Each block sits between ``<!-- BEGIN name -->`` and ``<!-- END name -->``; the rest of the
document is left alone. Quality tables pool the per-seed cells of every run in a file whose
settings are those of the most recent run (``settings_key``: the exact config, dataset, split and
condition, less what differs per job: seed, backbone, output and temporary paths), so a table can
be completed seed by seed (``kser_quality.py --skip-existing``); a seed measured twice counts
once, the newer. Each cell is mean +- sample std over its seeds, with their number, so a run cut
short still shows exactly what it measured. The footer names every run that contributed.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "kser.md"
RESULTS = ROOT / "bench" / "results"
VARIANTS = [("none", "none"), ("kar", "KAR"), ("kser", "KSER all-params"),
            ("kser_extractor", "KSER extractor-only"), ("kser_no_esfnet", "KSER w/o ESFNet"),
            ("kser_no_align", "KSER w/o alignment")]
MODELS = [("din", "DIN"), ("dcnv2", "DCNv2"), ("deepfm", "DeepFM"), ("autoint", "AutoInt"),
          ("dnn", "DNN"), ("dcn", "DCN"), ("xdeepfm", "xDeepFM"), ("fibinet", "FiBiNET"),
          ("fignn", "FiGNN"), ("dien", "DIEN"), ("finalmlp", "FinalMLP"), ("gdcn", "GDCN")]


# config keys that differ per job of one table run, not per setting
_PER_JOB = {("train", "seed"), ("output_dir",), ("features_path",), ("model",), ("augment",),
            ("strategy",), ("knowledge", "backbone_path")}


def settings_key(rec: dict) -> str:
    """What must be equal for two cells of the same backbone and variant to pool over seeds."""
    import json

    conf = json.loads(json.dumps(rec.get("config") or {}))
    for path in _PER_JOB:
        d = conf
        for k in path[:-1]:
            d = d.get(k) or {}
        d.pop(path[-1], None)
    keys = {k: rec.get(k) for k in ("benchmark", "dataset", "split", "condition")}
    return json.dumps([keys, conf], sort_keys=True, default=str)


def _cells(path: Path):
    """Per-seed cells pooled over the runs with the newest run's settings (see the docstring)."""
    recs = [r for r in br.read(path) if r.get("seed") is not None and r.get("value") is not None
            and r.get("variant")]
    if not recs:
        return None, {}, []
    newest = max(r["date"] for r in recs)
    # the reference settings of each (backbone, variant): its record in the newest run that has it
    ref: dict[tuple[str, str], str] = {}
    for r in sorted(recs, key=lambda r: r["date"]):
        ref[(r["model"], r["variant"])] = settings_key(r)
    cells: dict[tuple[str, str, str], dict[int, float]] = {}
    ignored = 0
    for r in sorted(recs, key=lambda r: r["date"]):  # newer overwrites older for the same seed
        if settings_key(r) != ref[(r["model"], r["variant"])]:
            ignored += 1
            continue
        cells.setdefault((r["model"], r["variant"], r["metric"]), {})[r["seed"]] = r
    runs: dict[str, dict] = {}
    for cell in cells.values():
        for r in cell.values():
            if r["metric"] == "auc":
                runs.setdefault(r["date"], {"rec": r, "n": 0})["n"] += 1
    used = [runs[d] for d in sorted(runs)]
    values = {k: {s: r["value"] for s, r in sorted(v.items())} for k, v in cells.items()}
    last = [r for r in recs if r["date"] == newest][0]
    if ignored:
        used.append({"ignored": ignored // len({r["metric"] for r in recs})})
    return last, values, used


def _fmt(values: dict[int, float]) -> str:
    if not values:
        return "-"
    v = list(values.values())
    sd = statistics.stdev(v) if len(v) > 1 else 0.0
    return f"{statistics.fmean(v):.4f} ± {sd:.4f} ({len(v)})"


def quality_tables(path: Path) -> str:
    any_rec, cells, runs = _cells(path)
    if any_rec is None:
        return f"_no results in {path.name} yet_"
    models = [(m, n) for m, n in MODELS if any(k[0] == m for k in cells)]
    out = []
    for metric, title in (("auc", "test AUC"), ("logloss", "test LogLoss")):
        out.append(f"**{title}** (mean ± std over seeds, number of seeds in brackets)\n")
        out.append("| model | " + " | ".join(n for _, n in VARIANTS) + " |")
        out.append("|---" * (len(VARIANTS) + 1) + "|")
        for m, name in models:
            out.append(f"| {name} | " + " | ".join(_fmt(cells.get((m, v, metric), {}))
                                                     for v, _ in VARIANTS) + " |")
        out.append("")
    # paired differences: same backbone, same seed, so the seed's shared noise cancels
    out.append("**AUC differences, paired by seed** (mean ± std over the seeds both variants "
               "finished; in brackets: seeds with a positive difference / seeds paired)\n")
    pairs = [("kar", "none"), ("kser", "none"), ("kser", "kar"), ("kser_extractor", "none"),
             ("kser", "kser_no_esfnet"), ("kser", "kser_no_align")]
    names = dict(VARIANTS)
    out.append("| model | " + " | ".join(f"{names[a]} − {names[b]}" for a, b in pairs) + " |")
    out.append("|---" * (len(pairs) + 1) + "|")
    for m, name in models:
        row = []
        for a, b in pairs:
            va, vb = cells.get((m, a, "auc"), {}), cells.get((m, b, "auc"), {})
            common = sorted(set(va) & set(vb))
            if not common:
                row.append("-")
                continue
            d = [va[s] - vb[s] for s in common]
            sd = statistics.stdev(d) if len(d) > 1 else 0.0
            row.append(f"{statistics.fmean(d):+.4f} ± {sd:.4f} ({sum(x > 0 for x in d)}/{len(d)})")
        out.append(f"| {name} | " + " | ".join(row) + " |")
    pop = [r for r in br.read(path) if r.get("model") == "popularity" and r["metric"] == "auc"]
    out.append("")
    cfg = any_rec.get("config", {})
    tr = cfg.get("train", {})
    parts = []
    for run in runs:
        if "ignored" in run:
            parts.append(f"{run['ignored']} cells of other settings not pooled")
            continue
        r = run["rec"]
        v = r.get("versions", {})
        parts.append(f"{r['date']}: {run['n']} cells, {r['device']}, commit `{r['commit']}`, "
                     f"torch {v.get('torch')}, CUDA {v.get('cuda')}")
    out.append(f"Dataset: {any_rec['dataset']}, split {any_rec['split']}; batch "
               f"{tr.get('batch_size')}, lr {tr.get('lr')}, up to {tr.get('epochs')} epochs, "
               f"patience {tr.get('patience')}"
               + (f"; popularity AUC {pop[-1]['value']:.4f}" if pop else "") + ". Runs pooled "
               "(same settings; a (backbone, variant, seed) cell from the newest run that has it): "
               + "; ".join(parts) + ".")
    return "\n".join(out)


def _clip(t: str, n: int = 90) -> str:
    t = " ".join(str(t).split()).replace("|", "/")
    return t if len(t) <= n else t[: n - 3] + "..."


def explain_block(path: Path) -> str:
    recs = br.read(path)
    if not recs:
        return f"_no results in {path.name} yet_"
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in recs):
        out.append(f"**{dataset}** (KSER all-parameters, DIN, seed 0)\n")
        out.append("| entity | fields by weight β | most weighted chunks (share) | least weighted "
                   "chunks (share) |")
        out.append("|---|---|---|---|")
        for r in recs:
            if r["dataset"] != dataset:
                continue
            e = r["explanation"]
            if "error" in e:
                out.append(f"| {e['entity']} {e['id']} | {_clip(e['error'])} | | |")
                continue
            fields = ", ".join(f"{f['field']} {f['beta']:.2f}" for f in e["fields"])
            top = "<br>".join(f"[{c['field']}] {_clip(c['text'], 70)} ({c['share']:.2f})"
                              for c in e["top"][:2])
            bottom = "<br>".join(f"[{c['field']}] {_clip(c['text'], 70)} ({c['share']:.2f})"
                                 for c in e["bottom"][:2])
            out.append(f"| {e['entity']} {e['id']} | {fields} | {top} | {bottom} |")
        out.append("")
    return "\n".join(out).rstrip()


def generation_block(path: Path) -> str:
    recs = br.read(path)
    if not recs:
        return f"_no results in {path.name} yet_"
    runs: dict[tuple, dict] = {}
    for r in recs:
        runs.setdefault((r["dataset"], r["entities"], r["date"]), {})[r["metric"]] = r["value"]
    out = ["| dataset | entities | generated | all fields parsed | some fields | unparsed (raw) "
           "| seconds | generated tokens/s |", "|---|---|---|---|---|---|---|---|"]
    for (dataset, ent, _), m in runs.items():
        out.append(f"| {dataset} | {ent} | {m['entities_generated']:,} | {m['ok']:,} | "
                   f"{m['partial']:,} | {m['raw']:,} | {m['seconds']:.0f} | "
                   f"{m['completion_tokens_per_s']:,.0f} |")
    r = recs[0]
    out.append("")
    out.append(f"Device: {r['device']}; model {r['model']}; hf backend, greedy, repetition "
               f"penalty 1.1, at most 320 new tokens, up to 3 attempts (answer, repair, "
               f"resample), batch 512; {r['date']}.")
    return "\n".join(out)


def render() -> dict[str, str]:
    return {"kser-ml1m": quality_tables(RESULTS / "kser_ml1m.jsonl"),
            "kser-ml-latest-small": quality_tables(RESULTS / "kser_ml-latest-small.jsonl"),
            "kser-explain": explain_block(RESULTS / "kser_explain.jsonl"),
            "kser-generation": generation_block(RESULTS / "kser_knowledge_generation.jsonl")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--print", action="store_true", help="print the blocks, do not edit the doc")
    args = ap.parse_args(argv)
    blocks = render()
    if args.print:
        for name, body in blocks.items():
            print(f"<!-- {name} -->\n{body}\n")
        return 0
    write_blocks(DOC, blocks)
    return 0


def write_blocks(doc: Path, blocks: dict[str, str]) -> None:
    """Replace each ``<!-- BEGIN name -->`` .. ``<!-- END name -->`` block of ``doc``."""
    text = doc.read_text()
    for name, body in blocks.items():
        n = re.escape(name)
        pat = re.compile(rf"(<!-- BEGIN {n} -->\n)(?:.*?\n)?(<!-- END {n} -->)", re.S)
        if not pat.search(text):
            print(f"warning: no block {name!r} in {doc}", file=sys.stderr)
            continue
        text = pat.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
    doc.write_text(text)
    print(f"updated {doc}")


if __name__ == "__main__":
    sys.exit(main())
