"""A pool of worker processes that train ranking cells (one ``run_train`` each) on one device.

CTR steps are launch-bound, so several processes keep one GPU busy. Each job names the feature
folder it trains on (``features``); a worker loads each folder once and keeps it. Used by
``kser_oracle.py`` and ``kar_regime.py``; a failed cell is returned with its error, never lost.

    results = run_cells(jobs, workers=8, on_result=callback, time_limit=None)
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from typing import Callable

_FS: dict = {}  # the worker's feature sets, by folder
RESULT_KEYS = ("valid", "test", "best_epoch", "epochs", "n_parameters", "n_trainable",
               "coverage", "train_seconds", "step", "pretrain")


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.WARNING)


def _run(job: dict) -> dict:
    from llmrec.ranking.features import FeatureSet
    from llmrec.ranking.pipeline import run_train

    t = time.perf_counter()
    try:
        fs = _FS.get(job["features"])
        if fs is None:
            fs = _FS[job["features"]] = FeatureSet.load(job["features"])
        res = run_train(job["cfg"], features=fs)
    except Exception as exc:  # one failed cell must not lose the others
        import traceback

        return {**job, "error": repr(exc)[:500], "trace": traceback.format_exc()[-2000:]}
    return {**job, "result": {k: res[k] for k in RESULT_KEYS if k in res},
            "wall": time.perf_counter() - t}


def cell_records(benchmark: str, r: dict, env: dict, keys: dict,
                 metrics: tuple[str, ...] = ("auc", "logloss", "gauc")) -> list[dict]:
    """The records of one finished job ``r``: one per test metric (with its best epoch, epochs,
    validation AUC, wall time and exact config), or one ``value: None`` record with the error."""
    from llmrec import benchrecord as br
    from llmrec.config import to_dict

    if "error" in r:
        return [br.record(benchmark, "auc", None, "", env, error=r["error"], **keys)]
    res = r["result"]
    extra = {}
    pre = res.get("pretrain")
    if pre and "valid" in pre:  # knowledge.pretrain_epochs: the knowledge-only warm start
        extra = {"pretrain_best_epoch": pre["best_epoch"], "pretrain_epochs": pre["epochs"],
                 "pretrain_valid_auc": pre["valid"].get("auc"),
                 "pretrain_test_auc": (pre.get("test") or {}).get("auc")}
    keys = {**extra, **keys}
    return [br.record(benchmark, m, res["test"][m], "", env, best_epoch=res["best_epoch"],
                      epochs=res["epochs"], valid_auc=res["valid"]["auc"],
                      wall_seconds=round(r["wall"], 2), config=to_dict(r["cfg"]), **keys)
            for m in metrics]


def run_cells(jobs: list[dict], workers: int, on_result: Callable[[dict], None],
              threads: int = 1, time_limit: float | None = None) -> int:
    """Run ``jobs`` (each ``{"cfg": RankConfig, "features": folder, ...}``) in ``workers``
    processes, calling ``on_result`` in the parent as each finishes; returns the jobs not
    started because ``time_limit`` (seconds from now) passed."""
    queue = list(jobs)
    deadline = time.perf_counter() + time_limit if time_limit else None
    ctx = mp.get_context("spawn")
    skipped = 0
    with ctx.Pool(workers, initializer=_init_worker, initargs=(threads,)) as pool:
        pending = []
        while queue or pending:
            if deadline is not None and time.perf_counter() > deadline and queue:
                skipped += len(queue)
                logging.getLogger("cellpool").warning("time limit: %d cells not started",
                                                      len(queue))
                queue = []
            while queue and len(pending) < 2 * workers:
                job = queue.pop(0)
                pending.append(pool.apply_async(_run, (job,)))
            done = [p for p in pending if p.ready()]
            if not done:
                time.sleep(0.05)
                continue
            for p in done:
                pending.remove(p)
                on_result(p.get())
    return skipped
