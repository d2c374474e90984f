"""Census-income KDD loader (tiny fixture in the file's exact format, and the real test file when
staged) and the MMoE / PLE models' structure."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from conftest import shared_path

from llmrec.data.census import COLUMNS, NUMERIC, CensusConfig, census_features, load_census, \
    read_census
from llmrec.errors import ConfigError, DataError
from llmrec.ranking import registry

# a record of the real file (line 1 of census-income.test.gz), fields in COLUMNS order
ROW = ("38, Private, 6, 36, 1st 2nd 3rd or 4th grade, 0, Not in universe, Married-civilian spouse "
       "present, Manufacturing-durable goods, Machine operators assmblrs & inspctrs, White, "
       "Mexican (Mexicano), Female, Not in universe, Not in universe, Full-time schedules, 0, 0, "
       "0, Joint one under 65 & one 65+, Not in universe, Not in universe, Spouse of householder, "
       "Spouse of householder, 1032.38, ?, ?, ?, Not in universe under 1 year old, ?, 4, Not in "
       "universe, Mexico, Mexico, Mexico, Foreign born- Not a citizen of U S , 0, Not in universe, "
       "2, 12, 95, - 50000.").split(", ")


def _line(**changes) -> str:
    values = list(ROW)
    for k, v in changes.items():
        values[COLUMNS.index(k)] = str(v)
    return ", ".join(values)


def _fixture(tmp_path, n=60, gz=True, extra: list[str] = ()):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        lines.append(_line(
            age=int(rng.integers(18, 80)), capital_gains=int(rng.integers(0, 5000)),
            education="Bachelors degree(BA AB BS)" if i % 3 == 0 else "High school graduate",
            marital_stat="Never married" if i % 2 == 0 else "Divorced",
            sex="Male" if i % 4 else "Female",
            income_50k="50000+." if i % 5 == 0 else "- 50000."))
    text = "\n".join([*lines, *extra]) + "\n"
    path = tmp_path / ("census-income.test.gz" if gz else "census.txt")
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_read_fixture(tmp_path):
    frame, sha = read_census(_fixture(tmp_path))
    assert len(frame) == 60 and len(sha) == 64
    assert "instance_weight" not in frame.columns and len(frame.columns) == 41
    assert frame["income_50k"].tolist()[:6] == [1, 0, 0, 0, 0, 1]
    assert frame["citizenship"][0] == "Foreign born- Not a citizen of U S"  # stripped
    assert frame["mig_chg_msa"][0] == "?"  # a value, not missing
    assert all(frame[c].dtype == np.float64 for c in NUMERIC)
    plain, _ = read_census(_fixture(tmp_path, gz=False))
    assert plain.equals(frame)


def test_load_fixture_split_labels_and_standardisation(tmp_path):
    path = _fixture(tmp_path)
    tables, split, fcfg = load_census(CensusConfig(path=str(path), seed=3))
    s = split.samples
    assert split.info["splits"] == {"train": 48, "valid": 6, "test": 6}
    assert split.info["protocol"].startswith("test file only, re-split 0.8:0.1:0.1")
    assert fcfg.labels == ["income", "marital"] and fcfg.max_hist_len == 0
    assert fcfg.numeric_fields == list(NUMERIC)
    for banned in ("income_50k", "marital_stat", "instance_weight"):
        assert banned not in fcfg.context_fields
    assert "education" in fcfg.context_fields  # a feature in group 1
    # labels follow the source columns; primary = income by default
    frame, _ = read_census(path)
    assert (s["income"].to_numpy() == frame["income_50k"].to_numpy()).all()
    assert (s["marital"].to_numpy() == (np.arange(60) % 2 == 0)).all()
    assert (s["label"] == s["income"]).all()
    # numeric columns: train mean 0, std 1, with the train stats stored
    train = s[s["split"] == "train"]
    assert abs(train["age"].mean()) < 1e-5 and abs(train["age"].std(ddof=0) - 1) < 1e-4
    st = split.info["numeric_stats"]["age"]
    ages = frame["age"].to_numpy()[(s["split"] == "train").to_numpy()]
    assert st["mean"] == pytest.approx(ages.mean()) and st["std"] == pytest.approx(ages.std())
    # constant columns keep std 1 (no division by zero)
    assert split.info["numeric_stats"]["wage_per_hour"]["std"] == 1.0
    # same seed, same split; another seed, another one
    again = load_census(CensusConfig(path=str(path), seed=3))[1].samples
    other = load_census(CensusConfig(path=str(path), seed=4))[1].samples
    assert (again["split"] == s["split"]).all() and not (other["split"] == s["split"]).all()


def test_group_2_and_primary(tmp_path):
    path = _fixture(tmp_path)
    _, split, fcfg = load_census(CensusConfig(path=str(path), group=2, primary="marital"))
    s = split.samples
    assert fcfg.labels == ["education", "marital"] and "education" not in fcfg.context_fields
    assert (s["education"].to_numpy() == (np.arange(60) % 3 == 0)).all()
    assert (s["label"] == s["marital"]).all()
    with pytest.raises(ConfigError, match="not a task of group 1"):
        CensusConfig(path=str(path), primary="education")
    with pytest.raises(ConfigError, match="fractions"):
        CensusConfig(path=str(path), fractions=[0.8, 0.2])
    fs = census_features(CensusConfig(path=str(path)))
    assert fs.spec.labels == ["income", "marital"]
    assert fs.info["census"]["primary"] == "income"
    assert torch.equal(fs.labels(), fs.labels("income"))


@pytest.mark.parametrize("bad,match", [
    ("1, 2, 3", r"line 61: 3 fields, expected 42"),
    (_line(income_50k="maybe"), r"line 61: income class 'maybe'"),
    (_line(age="old"), r"line 61: column 'age' is not numeric \('old'"),
])
def test_malformed_rows_name_file_and_line(tmp_path, bad, match):
    path = _fixture(tmp_path, extra=[bad])
    with pytest.raises(DataError, match=match) as err:
        read_census(path)
    assert str(path) in str(err.value)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_census(tmp_path / "nope.gz")
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(np.random.default_rng(0).bytes(4000))[:100])
    with pytest.raises(DataError, match="cannot read"):
        read_census(broken)


def test_real_test_file():
    path = shared_path("census-income-kdd", "census-income.test.gz")
    _, split, fcfg = load_census(CensusConfig(path=str(path)))
    info, s = split.info, split.samples
    # the checksum and counts of the data card
    assert info["sha256"] == "5ac4cacd3ca9f1ecb10de1a0a41e4ac68fdc419e3fec190f5c0c6cc03b2ea659"
    assert info["records"] == len(s) == 99762
    assert int(s["income"].sum()) == 6186 and int(s["marital"].sum()) == 43143
    assert s["year"].value_counts().to_dict() == {"95": 49946, "94": 49816}
    assert info["splits"] == {"train": 79810, "valid": 9976, "test": 9976}
    assert info["protocol"].startswith("test file only, re-split")
    assert len(fcfg.context_fields) == 41 - len(NUMERIC) - 2  # minus the two label sources


# ------------------------------------------------------------------------------------------------
# the models


def test_mmoe_gates_and_single_expert_is_shared_bottom_shaped(tmp_path):
    fs = census_features(CensusConfig(path=str(_fixture(tmp_path))))
    batch = fs.batch(torch.arange(8))
    model = registry.build_model("mmoe", fs.spec, embed_dim=4, n_experts=3, expert=(8,),
                                 tower=(4,), tasks=["income", "marital"]).eval()
    out = model(batch)
    assert list(out["logits"]) == ["income", "marital"]
    assert torch.equal(out["logit"], out["logits"]["income"])
    x = model.embed(batch).fields().flatten(1)
    for w in model.gate_weights(x).values():
        assert w.shape == (8, 3) and torch.allclose(w.sum(-1), torch.ones(8))
    # default tasks: the primary label and every named label
    assert registry.build_model("mmoe", fs.spec).tasks == ["label", "income", "marital"]


def test_ple_levels_and_gates(tmp_path):
    fs = census_features(CensusConfig(path=str(_fixture(tmp_path))))
    batch = fs.batch(torch.arange(8))
    for levels in (1, 3):
        # seeded: with 8 samples and ReLU experts an unlucky initialisation can leave an
        # expert's units all inactive, so its gradient is exactly 0 and the check below fails
        torch.manual_seed(0)
        model = registry.build_model("ple", fs.spec, embed_dim=4, levels=levels, n_shared=2,
                                     n_specific=1, expert=(8,), tower=(4,),
                                     tasks=["income", "marital"]).eval()
        assert len(model.layers) == levels
        # a shared gate between levels only: over all experts (2 shared + 1 per task)
        assert [layer.shared_gate is not None for layer in model.layers] == \
            [True] * (levels - 1) + [False]
        if levels > 1:
            assert model.layers[0].shared_gate.out_features == 4
        assert model.layers[-1].gates["income"].out_features == 3
        out = model(batch)
        assert out["logits"]["marital"].shape == (8,)
        # every task's loss reaches the shared experts of the first level
        model.zero_grad()
        out["logits"]["marital"].sum().backward()
        def reached(module):
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            return bool(grads) and sum(float(g.abs().sum()) for g in grads) > 0

        assert reached(model.layers[0].shared)
        # ... and the other task's own experts only through a shared gate (levels > 1)
        assert reached(model.layers[0].specific["income"]) == (levels > 1)
    with pytest.raises(ValueError, match="levels"):
        registry.build_model("ple", fs.spec, levels=0)
