"""The score model g: calibration, cross-encoder training, save/load, the LLM classifier."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec.synth.score_model import (
    CrossEncoderScorer, ScoreModel, ScoreModelConfig, apply_calibration, fit_calibration,
    split_calibration, train_score_model,
)


def test_fit_calibration_recovers_a_shift():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 2000)
    true = np.eye(4)[y] * 2.0 + rng.normal(0, 1, (2000, 4))
    shifted = true - np.array([0.0, 1.5, 1.5, 0.0])  # levels 1 and 2 systematically too low
    cal = fit_calibration(shifted, y, "nll")
    assert cal["bias"][1] - cal["bias"][0] > 1.0 and cal["bias"][2] - cal["bias"][3] > 1.0
    acc_before = np.mean(shifted.argmax(-1) == y)
    acc_after = np.mean(apply_calibration(shifted, cal).argmax(-1) == y)
    assert acc_after > acc_before + 0.05
    assert fit_calibration(shifted, y, "none") == {"temperature": 1.0, "bias": [0.0] * 4,
                                                   "mode": "none"}
    p = apply_calibration(shifted[:5], cal)
    assert np.allclose(p.sum(-1), 1.0)


def test_split_calibration_by_query():
    ids = [f"q{i}" for i in range(10)]
    cal = split_calibration(ids * 3, 0.2, seed=0)
    assert len(cal) == 2 and cal == split_calibration(ids, 0.2, seed=0)
    assert len(split_calibration(["a", "b"], 0.9, seed=0)) == 1  # never all of them


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    from llmrec.models import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("bert") / "m")


def _seed_pairs():
    rows = []
    for q in range(6):
        for d, g in enumerate([0, 0, 1, 2, 3]):
            rows.append({"query_id": f"q{q}", "query": f"query {q}", "doc_id": f"d{d}", "grade": g})
    return pd.DataFrame(rows), {f"d{d}": f"document number {d} " * (d + 1) for d in range(5)}


def test_cross_encoder_trains_calibrates_and_round_trips(tiny_bert_dir, tmp_path):
    import torch

    pairs, docs = _seed_pairs()
    cfg = ScoreModelConfig(model=str(tiny_bert_dir), epochs=2, batch_size=8, max_length=32,
                           learning_rate=1e-3)
    before = CrossEncoderScorer.from_base(str(tiny_bert_dir), 32, 8, seed=cfg.seed)
    w0 = {k: v.clone() for k, v in before.model.state_dict().items()}
    g = train_score_model(cfg, pairs, docs)
    changed = [k for k, v in g.scorer.model.state_dict().items() if not torch.equal(v, w0[k])]
    assert any(k.startswith("classifier") for k in changed) and len(changed) > 2
    assert g.info["train_pairs"] + g.info["calib_pairs"] == len(pairs)
    assert g.calibration["mode"] == "balanced" and g.calibration["temperature"] > 0
    levels, proba = g.predict(["query 1", "query 2"], ["document number 0", "document number 3"])
    assert levels.shape == (2,) and np.allclose(proba.sum(-1), 1)
    g.save(tmp_path / "g", cfg)
    g2 = ScoreModel.load(tmp_path / "g")
    assert np.allclose(g2.proba(["query 1"], ["document number 0"]),
                       g.proba(["query 1"], ["document number 0"]), atol=1e-5)
    assert g2.calibration == g.calibration
    assert ScoreModel(g.scorer).logits([], []).shape == (0, 4)


def test_llm_classifier_scores_the_four_levels(tmp_path):
    from llmrec.llm import LLMConfig
    from llmrec.models import tiny_llama

    llm = LLMConfig(model=str(tiny_llama(tmp_path / "llm")), device="cpu")
    pairs, docs = _seed_pairs()
    g = train_score_model(ScoreModelConfig(kind="llm", llm=llm), pairs.iloc[:10], docs)
    z = g.logits(["query 1"], ["document number 2"])
    assert z.shape == (1, 4) and np.all(z < 0)  # log-likelihoods
    assert g.info["calib_pairs"] == 10  # an untrained classifier calibrates on every seed pair
    g.save(tmp_path / "g")
    g2 = ScoreModel.load(tmp_path / "g")
    assert np.allclose(g2.logits(["query 1"], ["document number 2"]), z, atol=1e-4)
    g.close()
    g2.close()
