"""Embedder training rows, a training step with the label-weighted loss, and evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec.synth.embedder import EmbedConfig, evaluate_embedder, train_embedder, training_rows


def _pairs():
    return pd.DataFrame({
        "query": ["q one", "q one", "Q  one", "q one", "q two", "q two"],
        "doc_id": ["a", "b", "c", "d", "e", "a"],
        "level": [3, 1, 0, 0, 2, 0],
    })


DOCS = {d: f"text of {d}" for d in "abcdefgh"}


def test_training_rows_hard_negatives_and_labels():
    rows = training_rows(_pairs(), DOCS, EmbedConfig(hard_negatives=2, seed=0))
    assert list(rows.columns) == ["anchor", "positive", "negative_1", "negative_2", "label"]
    assert rows["label"].tolist() == [3.0, 1.0, 2.0]  # level-0 pairs are not rows
    q1 = rows[rows["anchor"] == "q one"]
    for _, r in q1.iterrows():  # "q one" has level-0 docs c and d: both are its negatives
        assert {r["negative_1"], r["negative_2"]} == {"text of c", "text of d"}
    r2 = rows[rows["anchor"] == "q two"].iloc[0]
    # "q two" has one level-0 doc (a); the second is random, never its own positive e
    assert "text of a" in (r2["negative_1"], r2["negative_2"])
    assert "text of e" not in (r2["negative_1"], r2["negative_2"])
    assert training_rows(_pairs(), DOCS, EmbedConfig(hard_negatives=0)).columns.tolist() == \
        ["anchor", "positive", "label"]


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    from llmrec.models import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("bert") / "m")


@pytest.mark.parametrize("dims", [[], [32, 16]])
def test_train_changes_weights_and_evaluates(tiny_bert_dir, tmp_path, dims):
    import torch
    from sentence_transformers import SentenceTransformer

    from llmrec.artifacts import read_meta

    pairs = pd.concat([_pairs()] * 3, ignore_index=True)
    pairs["query"] = [f"{q} {i // 6}" for i, q in enumerate(pairs["query"])]  # distinct queries
    cfg = EmbedConfig(model=str(tiny_bert_dir), batch_size=4, learning_rate=1e-3,
                      matryoshka_dims=dims, max_seq_length=32)
    summary = train_embedder(pairs, DOCS, tmp_path / "e", cfg, cfg, condition="test")
    assert summary["rows"] == 9 and summary["steps"] >= 2
    base = SentenceTransformer(str(tiny_bert_dir), device="cpu")
    tuned = SentenceTransformer(str(tmp_path / "e"), device="cpu")
    b, t = base.state_dict(), tuned.state_dict()
    assert any(not torch.equal(b[k], t[k]) for k in b)
    assert read_meta(tmp_path / "e")["condition"] == "test"
    ev = pd.DataFrame({"query_id": ["1", "1", "1", "2", "2"],
                       "query": ["q one", "q one", "q one", "q two", "q two"],
                       "doc_id": ["a", "b", "c", "e", "a"], "grade": [3, 1, 0, 2, 0]})
    res = evaluate_embedder(str(tmp_path / "e"), ev, DOCS, k=10)
    assert 0 < res["ndcg@10"] <= 1 and 0 < res["avg_ap"] <= 1
    assert res["n_queries"] == 2 and res["n_pairs"] == 5
    # a model scoring the graded docs in grade order gets nDCG 1
    class Oracle:
        def encode(self, texts, **kw):
            vec = {"q one": [1, 0], "q two": [0, 1], "text of a": [1, 0], "text of b": [0.5, 0.5],
                   "text of c": [0, 1], "text of e": [0, 1]}
            out = np.array([vec[t] for t in texts], dtype=float)
            return out / np.linalg.norm(out, axis=1, keepdims=True)

    res = evaluate_embedder(Oracle(), ev, DOCS)
    assert res["ndcg@10"] == pytest.approx(1.0)
