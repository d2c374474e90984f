"""Result records for the ranking benchmarks: one JSON object per measurement or table cell.

Every record carries ``benchmark, metric, value, unit, device, commit, date`` plus the condition
keys shared across the project's tables (``model``, ``dataset``, ``augment``, ``split``,
``baseline``), ``seed`` or ``mean``/``std``/``n_seeds``, the exact config and the versions.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The git commit measured: $LLMREC_COMMIT (set where the run has no .git) or HEAD."""
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


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.machine()}, {os.cpu_count()} cores)"


def environment() -> dict[str, Any]:
    import torch

    from llmrec.artifacts import now_iso, package_versions

    versions = {k: v for k, v in package_versions().items() if v}
    versions["python"] = sys.version.split()[0]
    versions["cuda"] = torch.version.cuda
    return {"device": device_name(), "commit": commit(), "date": now_iso(), "versions": versions}


def record(benchmark: str, metric: str, value: float, unit: str, env: dict[str, Any],
           **keys: Any) -> dict[str, Any]:
    rec = {"benchmark": benchmark, "metric": metric, "value": value, "unit": unit,
           "device": env["device"], "commit": env["commit"], "date": env["date"]}
    rec.update(keys)
    rec["versions"] = env["versions"]
    return rec


def summarise(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n_seeds": len(values)}


def append(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Append records (never rewrite: recorded results are not edited)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for r in records:
            fh.write(json.dumps(r, default=str) + "\n")


def read(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
