"""The binary task reproduces the CTR engine of 05906cd exactly (CPU, fixed seed).

``tests/data/ranking_expectation.json`` was written by ``tests/data/make_ranking_expectation.py``
on commit 05906cd, before the engine was generalised (tasks, families, runs): 12 backbones and
three KAR / KSER cases, three epochs each. The same cases must give the same training losses and
metrics to the last bit on a CPU with the same kernel family (the file records the CPU capability
torch picked); on another one, floating-point reductions may differ in the last digits, so the
comparison falls back to 1e-6.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(DATA))

import make_ranking_expectation as gen  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results():
    return gen.run_all()


def _flat(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        elif isinstance(v, list):
            for i, x in enumerate(v):
                yield f"{prefix}{k}[{i}]", x
        else:
            yield f"{prefix}{k}", v


def test_binary_results_match_05906cd(results):
    expected = json.loads((DATA / "ranking_expectation.json").read_text())
    assert expected["commit"].startswith("05906cd")
    exact = (expected["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
             and expected["torch"] == torch.__version__)
    assert set(results) == set(expected["results"])
    bad = []
    for case, want in expected["results"].items():
        got = dict(_flat(results[case]))
        for key, value in _flat(want):
            g = got[key]
            same = g == value if exact else math.isclose(g, value, rel_tol=1e-6, abs_tol=1e-9)
            if not same:
                bad.append(f"{case}.{key}: expected {value!r}, got {g!r}")
    assert not bad, ("exact" if exact else "1e-6") + " mismatch:\n" + "\n".join(bad[:20])
