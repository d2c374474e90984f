"""bench/crs_quality_runs.py resumes without recording a finished run twice."""

from __future__ import annotations

import json

from conftest import load_bench


def test_finished_needs_an_eval_of_the_same_task_count(tmp_path):
    finished = load_bench("crs_quality_runs")._finished
    run = tmp_path / "movielens-free"
    assert finished(run, 100) is None  # no folder yet
    run.mkdir()
    (run / "eval.json").write_text("{not json")
    assert finished(run, 100) is None  # a torn file is not a finished run
    (run / "eval.json").write_text(json.dumps({"metrics": {"n_tasks": 50, "SR": 0.1}}))
    assert finished(run, 100) is None  # 50 of 100 tasks: run (and record) again
    got = finished(run, 50)
    assert got["metrics"]["SR"] == 0.1 and "wr" not in got
    (run / "eval.json").write_text(json.dumps({"metrics": {"n_tasks": 50}, "wr": {"WR": {}}}))
    assert "wr" in finished(run, 50)  # the judge's comparison is done too
