"""``llmrec rank scaling``: the size ladder, FLOP counts, the log fit, the curve folder (written,
resumed) and its errors, on small generated features."""

from __future__ import annotations

import copy
import csv
import json
import math

import pytest
import torch

from llmrec.config import load_config
from llmrec.errors import ConfigError
from llmrec.ranking.features import FeatureConfig, build_features
from llmrec.ranking.registry import build_model
from llmrec.ranking.scaling import (FAMILIES, LADDER, SIZES, ScalingConfig, cell_model,
                                    count_flops, describe_size, fit_log, parameter_counts,
                                    run_scaling)
from llmrec.ranking.synthetic import make_synthetic


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fs():
    tables, split = make_synthetic(n_users=60, n_items=40, mean_len=14, seed=3)
    return build_features(tables, split, FeatureConfig(max_hist_len=4, max_multi_len=3))


def _meta_counts(family, size, spec, embed_dim=32):
    name, args = cell_model(family, size, embed_dim)
    with torch.device("meta"):  # parameter counts without allocating the large rungs
        return parameter_counts(build_model(name, copy.deepcopy(spec), **args))


def test_ladder_grows_in_non_embedding_parameters_only(fs):
    for family in FAMILIES:
        counts = [_meta_counts(family, s, fs.spec) for s in SIZES]
        non_emb = [c["non_embedding_parameters"] for c in counts]
        assert all(a < b for a, b in zip(non_emb, non_emb[1:])), (family, non_emb)
        # the embedding width is fixed: the tables are the same at every rung
        assert len({c["embedding_parameters"] for c in counts}) == 1, family
        # the span the curve needs: ~0.1M at the bottom, > 10M at the top (10 fields of 32)
        if fs.spec.n_fields >= 8:
            assert non_emb[0] < 3e5 and non_emb[-1] > 1e7, (family, non_emb)


def test_rungs_are_comparable_across_families(fs):
    for size in SIZES:
        non_emb = [_meta_counts(f, size, fs.spec)["non_embedding_parameters"] for f in FAMILIES]
        assert max(non_emb) / min(non_emb) < 2.5, (size, non_emb)


def test_rankmixer_rungs_are_the_token_mixer_mode():
    model, args = cell_model("rankmixer", "m", 16)
    assert model == "unimixer" and args["mode"] == "tokenmixer" and args["embed_dim"] == 16
    assert args["token_dim"] == args["n_tokens"] * args["chunk_size"]


def test_flops_are_positive_grow_with_size_and_backward_costs_more(fs):
    idx = fs.split_index("train")[:16]
    batch = fs.batch(idx)
    for family in FAMILIES:
        flops = [describe_size(family, s, fs.spec, 8, batch) for s in ("xs", "s", "m")]
        fwd = [d["forward_flops_per_sample"] for d in flops]
        train = [d["train_flops_per_sample"] for d in flops]
        assert fwd[0] > 0 and all(a < b for a, b in zip(fwd, fwd[1:])), (family, fwd)
        assert all(t > 1.9 * f for t, f in zip(train, fwd)), (family, train, fwd)


def test_flops_of_a_plain_linear_model_are_exact():
    lin = torch.nn.Linear(7, 1)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, batch):
            return {"logit": self.lin(batch["x"]).squeeze(-1)}

    batch = {"x": torch.randn(5, 7), "label": torch.ones(5)}
    got = count_flops(Tiny(), batch)
    assert got["forward_flops_per_sample"] == 2 * 7
    # backward: the weight gradient (2 * 7 per sample); the input needs no gradient
    assert got["train_flops_per_sample"] == 2 * 7 + 2 * 7


def test_fit_recovers_planted_line():
    xs = [1e5, 4e5, 1.6e6, 6.4e6, 2.5e7]
    a, b = 0.71, 0.0123
    fit = fit_log(xs, [a + b * math.log(x) for x in xs])
    assert fit["a"] == pytest.approx(a, abs=1e-9) and fit["b"] == pytest.approx(b, abs=1e-9)
    assert fit["r2"] == pytest.approx(1.0) and fit["n_points"] == 5
    assert fit["b_per_decade"] == pytest.approx(b * math.log(10))
    noisy = fit_log(xs, [a + b * math.log(x) + e for x, e in
                         zip(xs, [0.004, -0.003, 0.002, -0.004, 0.001])])
    assert 0 < noisy["r2"] < 1 and noisy["b"] == pytest.approx(b, abs=3e-3)
    with pytest.raises(ValueError):
        fit_log([1e5, 1e5], [0.7, 0.71])


def test_unknown_family_and_size_are_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown family 'transformerx'.*rankmixer"):
        load_config(ScalingConfig, None, ["--families=dnn,transformerx"])
    with pytest.raises(ConfigError, match="unknown size 'xxl'.*xs, s, m, l, xl"):
        load_config(ScalingConfig, None, ["--sizes=xs,xxl"])
    with pytest.raises(ConfigError, match="unknown family 'nope'"):
        cell_model("nope", "xs", 8)
    with pytest.raises(ConfigError, match="--recipe"):
        run_scaling(ScalingConfig(out=str(tmp_path / "c")))


def _recipe(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("model: dnn\nmodel_args: {embed_dim: 8}\n"
                    "train: {batch_size: 128, epochs: 3, patience: 1, device: cpu}\n")
    return str(path)


def test_end_to_end_writes_the_curve_and_a_rerun_skips_finished_cells(fs, tmp_path):
    out = tmp_path / "curve"
    cfg = ScalingConfig(recipe=_recipe(tmp_path), families=["dnn", "rankmixer"],
                        sizes=["xs", "s"], seeds=[0], out=str(out), epochs=1, device="cpu",
                        flop_batch=16)
    seen = []
    curve = run_scaling(cfg, features=fs, on_cell=lambda c, s: seen.append(
        (c["family"], c["size"], c["seed"])))
    assert sorted(seen) == sorted((f, s, 0) for f in ("dnn", "rankmixer") for s in ("xs", "s"))
    on_disk = json.loads((out / "curve.json").read_text())
    assert on_disk["cells"] == curve["cells"] and len(curve["cells"]) == 4
    assert curve["setup"]["embed_dim"] == 8 and curve["setup"]["epochs"] == 1
    for c in curve["cells"]:
        assert c["model_args"]["embed_dim"] == 8 and c["epochs"] == 1
        assert c["n_parameters"] == c["n_parameters_trained"]
        assert c["non_embedding_parameters"] == c["n_parameters"] - c["embedding_parameters"]
        assert 0 <= c["test_auc"] <= 1 and c["test_logloss"] > 0 and c["train_flops_per_sample"] > 0
    rows = list(csv.DictReader((out / "curve.csv").open()))
    assert len(rows) == 4 and {r["family"] for r in rows} == {"dnn", "rankmixer"}
    assert json.loads(rows[0]["model_args"])["embed_dim"] == 8
    fits = {(f["family"], f["metric"], f["against"]) for f in curve["fits"]}
    assert ("dnn", "test_auc", "non_embedding_parameters") in fits
    assert ("rankmixer", "test_auc", "train_flops_per_sample") in fits
    # the same command again trains nothing
    again = []
    rerun = run_scaling(cfg, features=fs, on_cell=lambda c, s: again.append(c))
    assert again == [] and rerun["cells"] == curve["cells"]
    # one more seed: only its cells are trained, the others kept
    more = copy.deepcopy(cfg)
    more.seeds = [0, 1]
    run_scaling(more, features=fs, on_cell=lambda c, s: again.append(c))
    assert sorted((c["family"], c["size"], c["seed"]) for c in again) == sorted(
        (f, s, 1) for f in ("dnn", "rankmixer") for s in ("xs", "s"))
    final = json.loads((out / "curve.json").read_text())
    assert len(final["cells"]) == 8
    sizes = {(r["family"], r["size"]): r for r in final["sizes"]}
    assert sizes[("dnn", "s")]["seeds"] == [0, 1] and "test_auc_std" in sizes[("dnn", "s")]
    # another recipe into the same folder is refused, not mixed in
    other = copy.deepcopy(cfg)
    other.embed_dim = 4
    with pytest.raises(ConfigError, match="another recipe"):
        run_scaling(other, features=fs)


def test_cli_registers_scaling():
    import argparse

    from llmrec.ranking import cli

    parser = argparse.ArgumentParser(prog="llmrec")
    cli.register(parser.add_subparsers(dest="command"))
    args, rest = parser.parse_known_args(["rank", "scaling", "--families=dnn", "--sizes=xs,s"])
    cfg = load_config(args._config_cls, None, rest)
    assert args._config_cls is ScalingConfig and cfg.families == ["dnn"]
    assert set(LADDER) == set(FAMILIES)
