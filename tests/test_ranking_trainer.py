"""Trainer: resume reproduces the uninterrupted run, early stopping restores the best weights,
the popularity baseline, and data-parallel training with 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch

from llmrec.ranking.features import FeatureConfig, build_features
from llmrec.ranking.popularity import evaluate_popularity
from llmrec.ranking.registry import build_backbone
from llmrec.ranking.synthetic import make_synthetic
from llmrec.ranking.trainer import TrainConfig, Trainer, seed_everything


def _features():
    tables, split = make_synthetic(80, 40, mean_len=14, seed=3)
    return build_features(tables, split, FeatureConfig(max_hist_len=4, max_multi_len=3))


def _trainer(fs, out, **kw):
    seed_everything(7)
    # dropout on, so resume must also restore the RNG that draws the dropout masks
    model = build_backbone("dnn", fs.spec, embed_dim=8, hidden=(16,), dropout=0.2)
    cfg = TrainConfig(device="cpu", batch_size=64, seed=7, patience=10, **kw)
    return Trainer(model, fs, cfg, output_dir=out)


def test_resume_reproduces_metrics(tmp_path):
    fs = _features()
    full = _trainer(fs, tmp_path / "full", epochs=3).fit()
    _trainer(fs, tmp_path / "part", epochs=1).fit()
    resumed_trainer = _trainer(fs, tmp_path / "part", epochs=3, resume=True)
    resumed = resumed_trainer.fit()
    assert resumed_trainer.epoch == 3
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in full["history"]]
    assert resumed["valid"] == full["valid"]
    assert resumed["test"] == full["test"]
    saved = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert saved["test"]["auc"] == full["test"]["auc"]
    assert (tmp_path / "part" / "best.safetensors").is_file()
    assert (tmp_path / "part" / "llmrec_meta.json").is_file()


def test_early_stopping_restores_best(tmp_path):
    fs = _features()
    seed_everything(0)
    model = build_backbone("dcnv2", fs.spec, embed_dim=8, hidden=(16,), cross_layers=1)
    # a large learning rate overfits quickly, so patience 1 stops early
    cfg = TrainConfig(device="cpu", batch_size=32, epochs=8, patience=1, lr=0.05, checkpoint=False)
    result = Trainer(model, fs, cfg).fit()
    aucs = [h["valid_auc"] for h in result["history"]]
    assert result["epochs"] == len(aucs) and result["epochs"] < 8
    assert result["valid"]["auc"] == pytest.approx(max(aucs), abs=1e-12)
    assert result["best_epoch"] == 1 + aucs.index(max(aucs))


def test_time_budget_stops_after_the_epoch_that_spends_it(tmp_path):
    fs = _features()
    # a budget far below one epoch: exactly one epoch runs, its weights are the best, and the
    # result says why it stopped
    result = _trainer(fs, tmp_path / "b", epochs=5, max_minutes=1e-9).fit()
    assert result["epochs"] == 1 and result["best_epoch"] == 1
    assert result["stop_reason"] == "time budget" and "test" in result
    free = _trainer(fs, tmp_path / "f", epochs=2, max_minutes=60).fit()
    assert free["epochs"] == 2 and free["stop_reason"] == "epochs"
    with pytest.raises(ValueError, match="max_minutes"):
        TrainConfig(max_minutes=0)


def test_popularity_baseline():
    fs = _features()
    pop = evaluate_popularity(fs)
    assert 0.0 <= pop["test"]["auc"] <= 1.0 and pop["test"]["n"] == fs.split_index("test").numel()


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    fs = _features()
    trainer = _trainer(fs, out, epochs=1)
    n_batches = len(trainer.epoch_batches())
    trainer.generator.manual_seed(7)  # epoch_batches above consumed one permutation
    result = trainer.fit()
    flat = torch.cat([p.detach().flatten() for p in trainer.module.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        torch.save({"same": all(torch.equal(gathered[0], g) for g in gathered),
                    "auc": result["test"]["auc"], "n_batches": n_batches}, out + "/ddp.pt")
    # both ranks leave together: one tearing gloo down while the other still writes was seen
    # once to abort the second process ("terminate called without an active exception")
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "ddp")
    os.makedirs(out, exist_ok=True)
    mp.spawn(_ddp_worker, args=(2, port, out), nprocs=2, join=True)
    res = torch.load(out + "/ddp.pt")
    assert res["same"], "DDP replicas diverged"
    assert 0.0 <= res["auc"] <= 1.0
    # each process sees half of the global batch: as many steps as one process at the full batch
    fs = _features()
    n_train = fs.split_index("train").numel()
    assert res["n_batches"] == -(-(n_train - n_train % 2) // 2 // 32)
