"""Run folders: ``load_run`` rebuilds a trained model from the folder alone (plain and KSER), its
scores equal the trained model's, and ``rank predict`` encodes raw samples exactly as training did."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import torch

from llmrec.errors import ConfigError
from llmrec.ranking.features import FeatureConfig, build_features
from llmrec.ranking.knowledge.config import AugmentConfig
from llmrec.ranking.knowledge.synthetic import synthetic_embeddings
from llmrec.ranking.metrics import ctr_metrics
from llmrec.ranking.pipeline import RankConfig, run_train
from llmrec.ranking.runs import load_run
from llmrec.ranking.synthetic import make_synthetic
from llmrec.ranking.train_config import TrainConfig


@pytest.fixture(scope="module")
def fs():
    tables, split = make_synthetic(60, 30, mean_len=12, seed=5)
    return build_features(tables, split, FeatureConfig(max_hist_len=4, max_multi_len=3))


def _cfg(out, **kw):
    return RankConfig(model="din", model_args={"embed_dim": 8, "hidden": [16]},
                      train=TrainConfig(device="cpu", batch_size=64, epochs=2, patience=2,
                                        checkpoint=False), output_dir=str(out), **kw)


def _samples_frame(fs, idx):
    """The samples ``idx`` as raw ids, as a user would write them."""
    t = fs.tensors
    users, items = fs.row_ids("user"), fs.row_ids("item")
    rating_values = fs.vocabs["rating"].values
    rows = []
    for i in idx.tolist():
        hist = [r for r in t["hist_rows"][i].tolist() if r > 0]
        ratings = [float(rating_values[v - 3]) for v in t["hist_rating"][i].tolist()[: len(hist)]]
        rows.append({"user_id": users[int(t["user_row"][i]) - 1],
                     "item_id": items[int(t["item_row"][i]) - 1],
                     "history": "|".join(items[r - 1] for r in hist),
                     "history_rating": "|".join(str(x) for x in ratings)})
    return pd.DataFrame(rows)


def test_plain_run_reloads_and_predicts_raw_samples(fs, tmp_path):
    result = run_train(_cfg(tmp_path / "din"), features=fs)
    run = load_run(tmp_path / "din")
    assert run.record["model"] == "din" and run.record["family"] == "ctr"
    test = fs.split_index("test")
    with torch.no_grad():
        logits = run.model(fs.batch(test))["logit"]
    # the reloaded model gives exactly the recorded test metrics
    m = ctr_metrics(fs.labels()[test], logits, fs.groups(test))
    assert m["auc"] == result["test"]["auc"] and m["logloss"] == result["test"]["logloss"]
    scored = run.predict(_samples_frame(fs, test))
    torch.testing.assert_close(torch.as_tensor(scored["score"].to_numpy()),
                               torch.sigmoid(logits), rtol=0, atol=1e-6)


def test_unknown_ids_get_the_unknown_row(fs, tmp_path):
    run_train(_cfg(tmp_path / "din"), features=fs)
    run = load_run(tmp_path / "din")
    df = pd.DataFrame({"user_id": ["nobody"], "item_id": ["no-such-item"], "history": [""]})
    encoded = run.encode(df)
    b = encoded.batch(torch.tensor([0]))
    assert b["item"][0, 0].item() == 1  # the unknown id
    assert torch.isfinite(torch.as_tensor(run.predict(df)["score"].to_numpy())).all()


def test_kser_run_reloads_without_the_data(fs, tmp_path):
    folder = synthetic_embeddings(tmp_path / "emb", {k: fs.row_ids(k) for k in ("user", "item")},
                                  dim=12, max_chunks=3, coverage=0.8, seed=0)
    cfg = _cfg(tmp_path / "kser", augment="kser",
               knowledge=AugmentConfig(embeddings=str(folder), score_hidden=8, value_dim=8))
    result = run_train(cfg, features=copy.copy(fs))
    run = load_run(tmp_path / "kser")
    assert run.record["augment"]["method"] == "kser" and set(run.knowledge) == {"user", "item"}
    test = fs.split_index("test")
    with torch.no_grad():
        logits = run.model(fs.batch(test))["logit"]
    assert ctr_metrics(fs.labels()[test], logits, fs.groups(test))["auc"] == \
        result["test"]["auc"]


def test_rank_predict_command_and_errors(fs, tmp_path, capsys):
    from llmrec.cli import main

    run_train(_cfg(tmp_path / "din"), features=fs)
    samples = tmp_path / "samples.csv"
    _samples_frame(fs, fs.split_index("test")[:5]).to_csv(samples, index=False)
    out = tmp_path / "scored.csv"
    assert main(["--quiet", "rank", "predict", f"--run_dir={tmp_path / 'din'}",
                 f"--samples={samples}", f"--out={out}"]) == 0
    scored = pd.read_csv(out)
    assert len(scored) == 5 and scored["score"].between(0, 1).all()
    with pytest.raises(ConfigError, match="not a run folder"):
        load_run(tmp_path)
    assert json.loads((tmp_path / "din" / "run.json").read_text())["format"] == 1
