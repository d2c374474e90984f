"""``knowledge explain``: the ranking of fields and chunks, on a hand-built KSER model whose chunk
scores and field gates are set by hand."""

from __future__ import annotations

import math

import pytest
import torch

from llmrec.errors import LlmrecError
from llmrec.knowledge.explain import explain_entity, format_explanation, rank_knowledge
from llmrec.ranking.features import FeatureConfig, build_features
from llmrec.ranking.knowledge.augment import build_augmented
from llmrec.ranking.knowledge.config import AugmentConfig
from llmrec.ranking.knowledge.store import build_table
from llmrec.ranking.synthetic import make_synthetic


def test_rank_knowledge_orders_fields_and_chunks():
    alpha = torch.tensor([[0.7, 0.3, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    beta = torch.tensor([0.4, 0.6, 0.0])
    index = torch.tensor([[1, 2, 0], [3, 0, 0], [0, 0, 0]])
    texts = ["", "a-high", "a-low", "b-only"]
    out = rank_knowledge(alpha, beta, index, ["a", "b", "c"], texts, n=2)
    assert [f["field"] for f in out["fields"]] == ["b", "a"]  # c has no chunks
    assert [c["text"] for c in out["fields"][1]["chunks"]] == ["a-high", "a-low"]
    assert [c["text"] for c in out["top"]] == ["b-only", "a-high"]
    assert [c["text"] for c in out["bottom"]] == ["a-low", "a-high"]
    assert out["top"][1]["share"] == pytest.approx(0.4 * 0.7)


@pytest.fixture(scope="module")
def hand_built():
    tables, split = make_synthetic(30, 20, mean_len=8, seed=0)
    fs = build_features(tables, split, FeatureConfig(max_hist_len=3, max_multi_len=2))
    item = fs.info["row_ids"]["item"][4]
    # one item, fields genre (1 chunk) and plot (3 chunks); the score is tanh of coordinate 0
    D, C = 4, 3
    chunks = torch.zeros(1, 2, C, D)
    mask = torch.zeros(1, 2, C, dtype=torch.bool)
    chunks[0, 0, 0, 0] = 0.3
    for j, x in enumerate((0.1, 0.9, 0.5)):
        chunks[0, 1, j, 0] = x
    mask[0, 0, 0] = True
    mask[0, 1, :] = True
    texts = {(item, 0, 0): "genre-0.3", (item, 1, 0): "plot-0.1", (item, 1, 1): "plot-0.9",
             (item, 1, 2): "plot-0.5"}
    table = build_table("item", ["genre", "plot"], chunks, mask, torch.ones(1, D), [item],
                        fs.info["row_ids"]["item"], texts, {"model": "hand"})
    cfg = AugmentConfig(kinds=["item"], dehomogenise=False, score_hidden=D, value_dim=2)
    torch.manual_seed(0)
    model = build_augmented("dnn", {"embed_dim": 8, "hidden": (8,)}, fs.spec, {"item": table}, "kser",
                            cfg, "fields")
    esf = model.extractor.esf["item"]
    with torch.no_grad():
        esf.key_w.copy_(torch.eye(D).expand(2, D, D))
        esf.key_b.zero_()
        esf.query.weight.zero_()
        esf.v.copy_(torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]]))
        last = esf.gate.net[-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 2.0]))  # beta = softmax([0, 2])
    model.eval()
    return fs, model, {"item": table}, item


def test_explain_returns_the_hand_built_ranking(hand_built):
    fs, model, tables, item = hand_built
    ex = explain_entity(model, fs, tables, "item", item, n=2)
    b_plot = math.exp(2) / (1 + math.exp(2))
    e = [math.exp(math.tanh(x)) for x in (0.1, 0.9, 0.5)]
    alpha = [v / sum(e) for v in e]
    assert [f["field"] for f in ex["fields"]] == ["plot", "genre"]
    assert ex["fields"][0]["beta"] == pytest.approx(b_plot, rel=1e-5)
    assert [c["text"] for c in ex["fields"][0]["chunks"]] == ["plot-0.9", "plot-0.5", "plot-0.1"]
    assert [c["text"] for c in ex["top"]] == ["plot-0.9", "plot-0.5"]
    assert ex["top"][0]["share"] == pytest.approx(b_plot * alpha[1], rel=1e-5)
    # genre's single chunk has the smallest share (1 - b_plot = 0.12), then plot-0.1
    assert [c["text"] for c in ex["bottom"]] == ["genre-0.3", "plot-0.1"]
    assert ex["bottom"][0]["share"] == pytest.approx(1 - b_plot, rel=1e-5)
    text = format_explanation(ex)
    assert "plot-0.9" in text and "exact" in text


def test_explain_errors_name_the_problem(hand_built):
    fs, model, tables, item = hand_built
    other = fs.info["row_ids"]["item"][5]
    with pytest.raises(LlmrecError, match="has no knowledge"):
        explain_entity(model, fs, tables, "item", other)
    with pytest.raises(LlmrecError, match="not in the features"):
        explain_entity(model, fs, tables, "item", "no-such-item")
    with pytest.raises(LlmrecError, match="no user knowledge"):
        explain_entity(model, fs, tables, "user", "1")


def test_import_and_explain_register_as_knowledge_subcommands():
    import argparse

    from llmrec.knowledge.explain import ExplainConfig, register_explain
    from llmrec.knowledge.importer import ImportConfig, register_import

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd")
    register_import(sub)
    register_explain(sub)
    args, rest = parser.parse_known_args(["explain", "2571", "--run_dir=runs/x"])
    assert args._config_cls is ExplainConfig and args.target == "2571"
    assert rest == ["--run_dir=runs/x"]
    args, _ = parser.parse_known_args(["import", "--source=f.json"])
    assert args._config_cls is ImportConfig
