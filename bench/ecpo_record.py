"""Record an ECPO run made on another host (bench/ecpo_gpu.sh) in bench/results.

The run folder's ``summary.json`` and ``models/*/llmrec_meta.json`` hold the training numbers;
the quality lines come from the ``ecpo.jsonl`` the run appended on the host. This script
appends, never rewrites:

- ``bench/results/ecpo.jsonl``: the quality lines, tagged with ``run`` (and with ``commit`` set to
  the revision given, when the host's copy of the repository could not tell it);
- ``bench/results/ecpo_training.jsonl``: SFT and DPO tokens/s, steps, first/last loss per model;
- ``bench/results/ecpo_curves/<run>_<model>.jsonl``: the logged training curves.

    python bench/ecpo_record.py --run-dir /tmp/ecpo_gpu --lines ecpo.jsonl --run h100-1 \
        --commit 9f569b0
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


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
    lines = [json.loads(x) for x in args.lines.read_text().splitlines() if x.strip()]
    if not lines:
        raise SystemExit(f"{args.lines} holds no result line")
    device, versions = lines[0]["device"], lines[0]["versions"]
    with open(RESULTS / "ecpo.jsonl", "a") as fh:
        for rec in lines:
            if args.commit:
                rec["commit_reported_by_host"] = rec.get("commit")
                rec["commit"] = args.commit
            fh.write(json.dumps({**rec, **extra}) + "\n")
    curves = RESULTS / "ecpo_curves"
    curves.mkdir(exist_ok=True)
    n = 0
    with open(RESULTS / "ecpo_training.jsonl", "a") as fh:
        for meta_path in sorted((args.run_dir / "models").glob("*/llmrec_meta.json")):
            name = meta_path.parent.name
            meta = json.loads(meta_path.read_text())
            t = meta["training"]
            kind = "sft" if name == "sgpt" else "dpo"
            base = {"benchmark": f"ecpo_{kind}_lora", "device": device, "model": "SmolLM2-135M-Instruct",
                    "adapter": name, "commit": args.commit or lines[0].get("commit"),
                    "date": meta.get("timestamp") or lines[0].get("date"),
                    "versions": t.get("versions", versions), **extra,
                    "rows": t.get("rows", t.get("pairs")), "steps": t["steps"],
                    "first_loss": t["first_loss"], "last_loss": t["last_loss"],
                    "train_seconds": t["train_seconds"], "tokens_seen": t["tokens_seen"],
                    "trainable_parameters": t["trainable_parameters"],
                    "settings": meta.get("config", {}).get("sgpt" if kind == "sft" else "dpo")}
            fh.write(json.dumps({**base, "metric": "tokens_per_second",
                                 "value": t["tokens_per_second"], "unit": "tokens/s"}) + "\n")
            n += 1
            src = meta_path.parent / "curve.jsonl"
            if src.is_file():
                shutil.copyfile(src, curves / f"{args.run}_{name}.jsonl")
    print(f"recorded {len(lines)} quality lines and {n} training lines for run {args.run}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
