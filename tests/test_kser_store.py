"""Knowledge vectors aligned to feature rows, row ids matching ``build_features``, loading the
``knowledge embed`` format, and importing external knowledge into the cache."""

from __future__ import annotations

import json

import pytest
import torch

from llmrec.errors import DataError
from llmrec.ranking.features import FeatureConfig, build_features
from llmrec.ranking.knowledge.store import build_table, coverage, load_table, training_rows
from llmrec.ranking.knowledge.synthetic import synthetic_embeddings
from llmrec.ranking.synthetic import make_synthetic


@pytest.fixture(scope="module")
def data():
    tables, split = make_synthetic(30, 25, mean_len=10, seed=1)
    fs = build_features(tables, split, FeatureConfig(max_hist_len=4, max_multi_len=3))
    return tables, split, fs


def test_build_table_aligns_entities_to_rows_sorted_by_field():
    # 2 entities, 2 fields, 2 slots, 3-d vectors; entity "b" has no row, row "z" no entity
    chunks = torch.arange(2 * 2 * 2 * 3, dtype=torch.float16).reshape(2, 2, 2, 3)
    mask = torch.tensor([[[True, True], [True, False]], [[False, False], [True, False]]])
    whole = torch.tensor([[1.0, 1, 1], [2.0, 2, 2]], dtype=torch.float16)
    texts = {("a", 0, 0): "a0", ("a", 0, 1): "a1", ("a", 1, 0): "a-f1", ("c", 1, 0): "c-f1"}
    t = build_table("item", ["f0", "f1"], chunks, mask, whole, ["a", "c"], ["z", "c", "a"], texts)
    # rows: 0 pad, 1 "z" (no knowledge), 2 "c", 3 "a"
    assert t.has.tolist() == [False, False, True, True]
    assert t.entity_ids == ["", "z", "c", "a"]
    assert t.index.shape == (4, 2, 2)
    assert (t.index[:2] == 0).all()
    # field 0's chunks come first in the table, then field 1's
    assert t.chunk_field.tolist() == [0, 0, 0, 1, 1]
    assert t.field_slices == [(1, 3), (3, 5)]
    for row, ent in ((2, 1), (3, 0)):
        for f in range(2):
            for j in range(2):
                r = int(t.index[row, f, j])
                if mask[ent, f, j]:
                    assert r > 0 and torch.equal(t.vectors[r], chunks[ent, f, j].float())
                    assert t.chunk_field[r] == f
                else:
                    assert r == 0
    assert t.texts[int(t.index[3, 0, 1])] == "a1" and t.texts[int(t.index[2, 1, 0])] == "c-f1"
    torch.testing.assert_close(t.whole[3], torch.ones(3))
    torch.testing.assert_close(t.whole[1], torch.zeros(3))
    torch.testing.assert_close(t.vectors[0], torch.zeros(3))
    # field means over chosen rows: field 0 only from "a" (c has none there)
    means = t.field_means(torch.tensor([2, 3]))
    torch.testing.assert_close(means[0], (chunks[0, 0, 0] + chunks[0, 0, 1]).float() / 2)
    torch.testing.assert_close(means[1], (chunks[0, 1, 0] + chunks[1, 1, 0]).float() / 2)


def test_row_ids_name_every_table_row(data):
    tables, split, fs = data
    ids = {k: fs.row_ids(k) for k in ("user", "item")}
    assert len(ids["user"]) == fs.tensors["user_table"].shape[0] - 1
    assert len(ids["item"]) == fs.tensors["item_table"].shape[0] - 1
    # the item-id column of the item table is exactly the vocabulary ids of the rows' item ids
    expect = torch.as_tensor(fs.vocabs["item_id"].encode(ids["item"]))
    assert torch.equal(fs.tensors["item_table"][1:, 0], expect)
    # the user row of every sample is that sample's user, the item row its item
    users = [ids["user"][r - 1] for r in fs.tensors["user_row"].tolist()]
    assert users == split.samples["user_id"].astype(str).tolist()
    items = [ids["item"][r - 1] for r in fs.tensors["item_row"].tolist()]
    assert items == split.samples["item_id"].astype(str).tolist()


def test_features_without_row_ids_are_an_error(data):
    from llmrec.ranking.features import FeatureSet

    _, _, fs = data
    old = FeatureSet(fs.spec, fs.tensors, fs.vocabs, {k: v for k, v in fs.info.items()
                                                     if k != "row_ids"})
    with pytest.raises(DataError, match="rebuild them"):
        old.row_ids("item")


def test_load_table_from_an_embeddings_folder(data, tmp_path):
    tables, split, fs = data
    ids = {k: fs.row_ids(k) for k in ("user", "item")}
    folder = synthetic_embeddings(tmp_path / "emb", {"item": ids["item"][:10]}, dim=8,
                                  max_chunks=2, seed=3)
    t = load_table(folder, "item", ids["item"])
    assert t.has[1:11].all() and not t.has[11:].any()  # exactly the first 10 items
    row = int(torch.nonzero(t.index.flatten(1).any(1))[0])
    r = int(t.index[row][t.index[row] > 0][0])
    assert t.texts[r].startswith(f"item {ids['item'][row - 1]} ")
    cov = coverage(fs, {"item": t})
    assert set(cov["item"]) == set(fs.split_names)
    assert all(0.0 <= v <= 1.0 for v in cov["item"].values())
    rows = training_rows(fs, "item")
    train = fs.tensors["split.train"]
    assert set(fs.tensors["item_row"][train].tolist()) <= set(rows.tolist())


def test_import_heuristic_fields_and_provenance(tmp_path):
    from llmrec.knowledge.cache import KnowledgeCache
    from llmrec.knowledge.importer import ImportConfig, assign_sentences, run_import

    fields = ["genre", "director_actors", "time_period_country", "soundtrack"]
    got = assign_sentences("Heat is a crime thriller with a tense mood. It was directed by "
                           "Michael Mann and stars Al Pacino. It was released in 1995 in America. "
                           "Its score by Elliot Goldenthal is haunting. Fans may also like "
                           "Ronin (1998).", fields)
    assert got == {"genre": "Heat is a crime thriller with a tense mood.",
                   "director_actors": "It was directed by Michael Mann and stars Al Pacino.",
                   "time_period_country": "It was released in 1995 in America.",
                   "soundtrack": "Its score by Elliot Goldenthal is haunting.",
                   "text": "Fans may also like Ronin (1998)."}
    src = tmp_path / "knowledge.json"
    src.write_text(json.dumps({"1": "A comedy directed by someone. Nothing else.",
                               "2": {"Genre": "drama", "Soundtrack": "jazz"}, "3": "  "}))
    cache_dir = tmp_path / "cache"
    s = run_import(ImportConfig(source=str(src), cache_dir=str(cache_dir)), out=lambda *_: None)
    assert (s["entries"], s["empty"], s["written"]) == (2, 1, 2)
    df = KnowledgeCache(cache_dir).read().set_index("entity_id")
    assert set(df["model"]) == {"external:knowledge.json"}
    assert set(df["backend"]) == {"import"}
    assert df.loc["2", "field_ids"].tolist() == ["genre", "soundtrack"]
    assert df.loc["1", "raw"] == "A comedy directed by someone. Nothing else."
    # importing the same file again writes nothing; a whole-text import is a separate entry
    again = run_import(ImportConfig(source=str(src), cache_dir=str(cache_dir)), out=lambda *_: None)
    assert again["written"] == 0
    whole = run_import(ImportConfig(source=str(src), cache_dir=str(cache_dir), fields="text"),
                       out=lambda *_: None)
    assert whole["written"] == 2
    df = KnowledgeCache(cache_dir).read(template="external_text")
    assert df.set_index("entity_id").loc["1", "field_ids"].tolist() == ["text"]
