"""Record an ECPO run made on another host (bench/ecpo_gpu.sh) in bench/results.

The run folder's ``summary.json`` and ``models/*/llmrec_meta.json`` hold the training numbers;
the quality lines come from the ``ecpo.jsonl`` the run appended on the host. This script
appends, never rewrites:

- ``bench/results/ecpo.jsonl``: the quality lines, tagged with ``run`` (and with ``commit`` set to
  the revision given, when the host's copy of the repository could not tell it) and given the
  ``unit`` of their metric (:func:`unit_of`; the host's lines do not carry one);
- ``bench/results/ecpo_training.jsonl``: SFT and DPO tokens/s, steps, first/last loss per model;
- ``bench/results/ecpo_curves/<run>_<model>.jsonl``: the logged training curves.

    python bench/ecpo_record.py --run-dir /tmp/ecpo_gpu --lines ecpo.jsonl --run h100-1 \
        --commit 9f569b0
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

# the units of the metrics ECPO's eval stage records (as llmrec.crs.cli.record_results gives the
# same metrics of `llmrec eval crs`): success and recall rates, failed-turn rate and win rates are
# fractions of the held-out tasks / turns / judgements, rounds a mean count, expression the mean
# of the rater's 0-5 ratings
UNITS = {"SR": "fraction", "Recall@5": "fraction", "failed_turn_rate": "fraction",
         "avg_rounds": "rounds", "avg_expression": "rating 0-5", "avg_strategy": "rating 0-5",
         "avg_recommendation": "rating 0-5"}


def unit_of(metric: str) -> str:
    """The unit of an ECPO quality metric; an unknown metric is an error (add it to UNITS) rather
    than a guessed unit."""
    if metric in UNITS:
        return UNITS[metric]
    if metric.startswith("WR_"):  # WR_<criterion>_vs_base: share of judgements won
        return "fraction"
    if metric.startswith("judge_share_"):  # the judge's position bias: share of its verdicts
        return "fraction"
    raise SystemExit(f"no unit known for the ECPO metric {metric!r}: add it to UNITS in "
                     f"{Path(__file__).name}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True, help="the ECPO out folder (unpacked)")
    ap.add_argument("--lines", type=Path, required=True, help="ecpo.jsonl the run appended")
    ap.add_argument("--run", required=True, help="a name for this run (e.g. h100-1)")
    ap.add_argument("--commit", default=None, help="the revision the run used, when the host's "
                                                   "lines do not name it correctly")
    ap.add_argument("--note", default=None, help="a note stored with every line")
    args = ap.parse_args(argv)

    extra = {"run": args.run}
    if args.note:
        extra["note"] = args.note
    lines = br.read(args.lines)
    if not lines:
        raise SystemExit(f"{args.lines} holds no result line")
    device, versions = lines[0]["device"], lines[0]["versions"]
    quality = []
    for rec in lines:
        if args.commit:
            rec["commit_reported_by_host"] = rec.get("commit")
            rec["commit"] = args.commit
        rec.setdefault("unit", unit_of(rec["metric"]))
        # the catalog's search embedder (lines from before it was recorded carry it in config)
        rec.setdefault("embedder", rec.get("config", {}).get("catalog", {}).get("embedder"))
        quality.append({**rec, **extra})
    br.append(RESULTS / "ecpo.jsonl", quality)  # validated: a line without the keys stops here
    curves = RESULTS / "ecpo_curves"
    curves.mkdir(exist_ok=True)
    training = []
    for meta_path in sorted((args.run_dir / "models").glob("*/llmrec_meta.json")):
        name = meta_path.parent.name
        meta = json.loads(meta_path.read_text())
        t = meta["training"]
        kind = "sft" if name == "sgpt" else "dpo"
        env = {"device": device, "commit": args.commit or lines[0].get("commit"),
               "date": meta.get("timestamp") or lines[0].get("date"),
               "versions": t.get("versions", versions)}
        training.append(br.record(
            f"ecpo_{kind}_lora", "tokens_per_second", t["tokens_per_second"], "tokens/s", env,
            model=lines[0].get("model"), adapter=name, **extra,
            rows=t.get("rows", t.get("pairs")), steps=t["steps"], first_loss=t["first_loss"],
            last_loss=t["last_loss"], train_seconds=t["train_seconds"],
            tokens_seen=t["tokens_seen"], trainable_parameters=t["trainable_parameters"],
            settings=meta.get("config", {}).get("sgpt" if kind == "sft" else "dpo")))
        src = meta_path.parent / "curve.jsonl"
        if src.is_file():
            shutil.copyfile(src, curves / f"{args.run}_{name}.jsonl")
    br.append(RESULTS / "ecpo_training.jsonl", training)
    print(f"recorded {len(lines)} quality lines and {len(training)} training lines for run "
          f"{args.run}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
