"""Post-training transforms (llmrec.ranking.transforms) and the per-field embedding widths they
rest on: FDO picks widths by the PCA rule, compression at full rank reproduces the model, fewer
parameters at lower rank, transformed runs reload and score, outputs are atomic."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec.errors import ConfigError
from llmrec.ranking.features import FeatureConfig, build_features
from llmrec.ranking.registry import build_model
from llmrec.ranking.synthetic import make_synthetic
from llmrec.ranking.transforms import (CompressConfig, FdoConfig, compress, compress_model,
                                       count_parameters, fdo, fdo_dims, pca_dim)

# the CTR models of the engine before per-field widths existed: all must run with them
CTR = ["dnn", "deepfm", "dcn", "dcnv2", "xdeepfm", "autoint", "fibinet", "fignn", "din", "dien",
       "finalmlp", "gdcn"]


@pytest.fixture(scope="module")
def fs():
    tables, split = make_synthetic(60, 30, mean_len=12, seed=5)
    return build_features(tables, split, FeatureConfig(max_hist_len=4, max_multi_len=3))


def _with_dims(spec, dims):
    s = copy.deepcopy(spec)
    s.field_dims = dims
    return s


# ---------------------------------------------------------------------------------- widths
def test_without_field_dims_the_embedding_is_the_shared_table(fs):
    torch.manual_seed(0)
    m = build_model("dnn", copy.deepcopy(fs.spec), embed_dim=8)
    keys = [k for k in m.state_dict() if k.startswith("embedding.")]
    assert not any(".narrow." in k or ".proj." in k for k in keys)
    e = m.embedding
    b = fs.batch(fs.split_index("train")[:5])
    torch.testing.assert_close(e.embed_users(b["user"]), e.table(b["user"] + e.user_offsets),
                               rtol=0, atol=0)


@pytest.mark.parametrize("name", CTR)
def test_every_ctr_model_runs_with_per_field_widths_and_gets_smaller(fs, name):
    D = 8
    dims = {"item_id": 3, "genres": 2, "user_id": 5}
    base = build_model(name, copy.deepcopy(fs.spec), embed_dim=D)
    narrow = build_model(name, _with_dims(fs.spec, dims), embed_dim=D)
    vocab = {"item_id": dict(fs.spec.item_fields)["item_id"],
             "user_id": dict(fs.spec.user_fields)["user_id"],
             "genres": fs.spec.item_multi_fields[0][1]}
    saved = sum(vocab[f] * D - (vocab[f] * d + d * D) for f, d in dims.items())
    n_base = sum(p.numel() for p in base.parameters())
    n_narrow = sum(p.numel() for p in narrow.parameters())
    # knowledge-free CTR models embed each field once, so the saving is exact
    assert n_base - n_narrow == saved
    b = fs.batch(fs.split_index("test")[:7])
    narrow.eval()
    out = narrow(b)["logit"]
    assert out.shape == (7,) and torch.isfinite(out).all()


def test_field_dims_errors_name_the_field(fs):
    with pytest.raises(ConfigError, match="unknown field.*'nope'"):
        build_model("dnn", _with_dims(fs.spec, {"nope": 3}), embed_dim=8)
    with pytest.raises(ConfigError, match="exceed the model's embed_dim"):
        build_model("dnn", _with_dims(fs.spec, {"item_id": 9}), embed_dim=8)
    with pytest.raises(ConfigError, match="whole number"):
        build_model("dnn", _with_dims(fs.spec, {"item_id": 0}), embed_dim=8)


# ---------------------------------------------------------------------------------- FDO
def _plant(model, name, rank, seed=0, noise=1e-4):
    """Give field ``name`` value rows of exactly ``rank`` strong directions (+ tiny noise)."""
    g = torch.Generator().manual_seed(seed)
    e = model.embedding
    rows = e.field_rows(name)
    v, d = rows.shape
    planted = torch.randn(v, rank, generator=g) @ torch.randn(rank, d, generator=g)
    planted += noise * torch.randn(v, d, generator=g)
    with torch.no_grad():
        if name in e.multi:
            e.multi[name].weight.copy_(planted)
        else:
            e.table.weight[e._shared_slice(name, "item")] = planted
    return planted


def test_fdo_dims_follow_the_pca_rule_on_a_planted_low_rank_table(fs):
    m = build_model("dcnv2", copy.deepcopy(fs.spec), embed_dim=8)
    planted = _plant(m, "item_id", rank=3)
    fields = fdo_dims(m, 0.95)
    assert fields["item_id"]["dim"] == 3
    # the rule by hand: centred value rows (ids >= 3), fewest components with >= 95% variance
    x = planted[3:].double().numpy()
    x = x - x.mean(0)
    var = np.linalg.svd(x, compute_uv=False) ** 2
    cum = np.cumsum(var) / var.sum()
    assert fields["item_id"]["dim"] == int(np.argmax(cum >= 0.95)) + 1
    assert fields["item_id"]["cumulative_variance"][2] > 0.999
    # fields at their random initialisation spread their variance: wide
    assert fields["year"]["dim"] >= 6


def test_fdo_dims_are_monotone_in_the_threshold(fs):
    m = build_model("dnn", copy.deepcopy(fs.spec), embed_dim=8)
    _plant(m, "item_id", rank=4, noise=0.3)
    prev = None
    for rho in (0.3, 0.5, 0.7, 0.9, 0.99, 1.0):
        dims = {n: f["dim"] for n, f in fdo_dims(m, rho).items()}
        if prev is not None:
            assert all(dims[n] >= prev[n] for n in dims)
        prev = dims
    assert pca_dim(torch.zeros(5, 4), 0.9)[0] == 1  # no variance: one component


# ---------------------------------------------------------------------------------- compression
def _trained(fs, name="dcnv2", steps=20, D=8, **hp):
    torch.manual_seed(0)
    m = build_model(name, copy.deepcopy(fs.spec), embed_dim=D, **hp)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    idx = fs.split_index("train")
    for _ in range(steps):
        b = fs.batch(idx)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(m(b)["logit"], b["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


def test_full_rank_compression_reproduces_the_logits(fs):
    m = _trained(fs, hidden=(32, 16))
    cfg = CompressConfig(rank=10_000, linear="all", force=True)
    new, spec, ranks, layers = compress_model(m, fs.spec, "dcnv2", {"embed_dim": 8,
                                                                     "hidden": (32, 16)}, cfg)
    assert ranks and spec.field_dims and all(v["factorised"] for v in layers.values())
    b = fs.batch(fs.split_index("test"))
    new.eval()
    with torch.no_grad():
        torch.testing.assert_close(new(b)["logit"], m(b)["logit"], rtol=0, atol=1e-5)
    assert max(v["relative_error"] for v in layers.values()) < 1e-6


def test_low_rank_compression_drops_parameters_and_reports_errors(fs):
    m = _trained(fs, hidden=(64, 64))
    cfg = CompressConfig(rank=4, linear="mlp")
    new, spec, ranks, layers = compress_model(m, fs.spec, "dcnv2", {"embed_dim": 8,
                                                                     "hidden": (64, 64)}, cfg)
    before, after = count_parameters(m), count_parameters(new)
    assert after["total"] < before["total"] and after["embedding"] < before["embedding"]
    assert after["linear"] < before["linear"]
    # the report's per-layer counts add up to the drop
    drop = sum(v["parameters_before"] - v["parameters_after"] for v in layers.values())
    assert drop == before["total"] - after["total"]
    done = {k: v for k, v in layers.items() if v["factorised"]}
    assert done and all(0 < v["relative_error"] < 1 for v in done.values())
    # small vocabularies do not shrink at rank 4 (gender: 5 x 8 < 5 x 4 + 4 x 8): left as is
    assert layers["field:gender"]["factorised"] is False
    assert layers["field:user_id"]["factorised"] is True and spec.field_dims["user_id"] == 4
    with pytest.raises(ValueError, match="exactly one of rank"):
        CompressConfig(rank=2, energy=0.9)


# ---------------------------------------------------------------------------------- commands
@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    """A DCNv2 run trained by `llmrec rank train` on a small CSV (so its data can be re-read)."""
    from llmrec.cli import main

    root = tmp_path_factory.mktemp("transforms")
    tables, _ = make_synthetic(80, 40, mean_len=15, seed=3)
    inter = tables.df("interactions")[["user_id", "item_id", "rating", "timestamp"]]
    inter.to_csv(root / "ratings.csv", index=False)
    cfg = root / "run.yaml"
    cfg.write_text(f"""
data: {{name: csv, path: {root / 'ratings.csv'}}}
features: {{max_hist_len: 4, user_fields: [], item_fields: [], item_multi_fields: []}}
model: dcnv2
model_args: {{embed_dim: 8, hidden: [64, 64]}}
train: {{device: cpu, batch_size: 128, epochs: 2, checkpoint: false}}
output_dir: {root / 'run'}
""")
    assert main(["rank", "train", "--config", str(cfg)]) == 0
    return root


def test_compress_command_writes_a_loadable_scoring_run(csv_run, capsys):
    from llmrec.cli import main
    from llmrec.ranking.runs import load_run

    out = csv_run / "compressed"
    assert main(["rank", "compress", "--run", str(csv_run / "run"), "--out", str(out),
                 "--rank", "2", "--evaluate"]) == 0
    report = json.loads((out / "compression.json").read_text())
    assert report["parameters"]["after"]["total"] < report["parameters"]["before"]["total"]
    assert set(report["metrics"]) == {"original", "compressed"}
    run = load_run(out)
    assert sum(p.numel() for p in run.model.parameters()) == \
        report["parameters"]["after"]["total"]
    assert run.record["low_rank_linear"] == report["low_rank_linear"]
    # `rank predict` scores raw samples with it
    samples = pd.read_csv(csv_run / "ratings.csv", dtype={"user_id": str, "item_id": str})[:20]
    samples[["user_id", "item_id"]].to_csv(csv_run / "samples.csv", index=False)
    assert main(["rank", "predict", f"--run_dir={out}", f"--samples={csv_run / 'samples.csv'}",
                 f"--out={csv_run / 'scored.csv'}"]) == 0
    scored = pd.read_csv(csv_run / "scored.csv")
    assert len(scored) == 20 and scored["score"].between(0, 1).all()


def test_compress_at_full_rank_scores_as_the_original(csv_run):
    from llmrec.ranking.runs import load_run

    out = csv_run / "full"
    compress(CompressConfig(run=str(csv_run / "run"), out=str(out), rank=1000, linear="all",
                            force=True))
    samples = pd.DataFrame({"user_id": ["1", "2", "3", "nobody"],
                            "item_id": ["1", "5", "9", "7"]})
    a = load_run(csv_run / "run").predict(samples)["score"].to_numpy()
    b = load_run(out).predict(samples)["score"].to_numpy()
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_compress_finetune_and_fdo_retrain(csv_run):
    from llmrec.ranking.runs import load_run

    rep = compress(CompressConfig(run=str(csv_run / "run"), out=str(csv_run / "ft"), energy=0.8,
                                  finetune_epochs=1))
    assert "finetuned" in rep["metrics"] and (csv_run / "ft" / "metrics.json").is_file()
    load_run(csv_run / "ft")

    rep = fdo(FdoConfig(run=str(csv_run / "run"), out=str(csv_run / "fdo"), threshold=0.5,
                        epochs=1))
    run = load_run(csv_run / "fdo")
    assert run.record["spec"].get("field_dims", {}) == rep["field_dims"]
    assert rep["embedding_parameters"]["after"] <= rep["embedding_parameters"]["before"]
    assert rep["retrained"]["n_parameters"] == sum(p.numel() for p in run.model.parameters())
    assert json.loads((csv_run / "fdo" / "fdo.json").read_text())["threshold"] == 0.5


def test_outputs_are_atomic_and_bad_runs_are_clear_errors(csv_run, monkeypatch, tmp_path):
    import llmrec.ranking.transforms as tr

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")

    def boom(*a, **k):
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(tr, "_save_transformed_run", boom)
    with pytest.raises(RuntimeError, match="killed"):
        compress(CompressConfig(run=str(csv_run / "run"), out=str(out), rank=2))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # untouched
    assert not list(tmp_path.glob(".out.tmp-*"))
    monkeypatch.undo()

    with pytest.raises(ConfigError, match="not a run folder"):
        compress(CompressConfig(run=str(tmp_path / "missing"), out=str(out), rank=2))
    with pytest.raises(ConfigError, match="input run or inside it"):
        compress(CompressConfig(run=str(csv_run / "run"), out=str(csv_run / "run" / "x"),
                                rank=2))
    small = tmp_path / "small"
    compress(CompressConfig(run=str(csv_run / "run"), out=str(small), rank=2))
    with pytest.raises(ConfigError, match="already a compressed run"):
        compress(CompressConfig(run=str(small), out=str(out), rank=2))
    with pytest.raises(ConfigError, match="--run DIR is required"):
        fdo(FdoConfig(out=str(out)))
