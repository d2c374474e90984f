"""``knowledge embed``: sentence chunks, float16 chunk tensors with masks, content addressing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmrec.knowledge.cache import KnowledgeCache
from llmrec.knowledge.embed import EmbedConfig, Encoder, load_embeddings, run_embed, split_chunks


def test_split_chunks_on_sentences():
    text = "A heist film. It stars Al Pacino and Robert De Niro! Set in L.A.; tense. Ok."
    assert split_chunks(text, min_chars=12) == [
        "A heist film.", "It stars Al Pacino and Robert De Niro!", "Set in L.A.; tense. Ok."]
    assert split_chunks("", 12) == []
    assert split_chunks("One.\nTwo lines here.", 3, max_chunks=1) == ["One."]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    from llmrec.models.tiny import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def test_encoder_matches_sentence_transformers(bert):
    texts = ["a short one.", "", "Ünïcode café, naïve résumé — fine.", "word " * 300] + \
        [f"sentence number {i} about movies." for i in range(50)]
    enc = Encoder(str(bert), "cpu")
    ours = enc.encode(texts, batch_tokens=256, max_batch=16, super_batch=20)
    ref = enc.model.encode(texts, convert_to_numpy=True)
    assert ours.dtype == np.float16 and ours.shape == (len(texts), enc.dim)
    np.testing.assert_allclose(ours.astype(np.float32), ref, atol=2e-3)


def _rows(kind, eid, fields, status="ok", key=None):
    return {"key": key or f"{kind}-{eid}", "entity": kind, "entity_id": eid,
            "template": f"{kind}_movie", "template_hash": "h", "model": "m", "model_revision": "r",
            "sampling": "{}", "seed": 0, "cutoff": None, "prompt_hash": "p",
            "field_ids": list(fields), "field_texts": list(fields.values()), "status": status,
            "missing": [], "raw": "", "attempts": 1, "prompt_tokens": 1, "completion_tokens": 1,
            "backend": "hf", "job": "j"}


def test_embed_writes_chunks_masks_and_whole_vectors(bert, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    cache = KnowledgeCache(tmp_path / "c")
    cache.write([
        _rows("item", "10", {"genre": "Crime drama. Very tense.", "plot_theme": "A heist goes wrong."}),
        _rows("item", "2", {"mood_tone": "Warm."}),
        _rows("item", "3", {"text": "Unparsed reply. Kept whole."}, status="raw"),
        _rows("user", "1", {"genre": "Likes crime films. Dislikes musicals."}),
    ])
    cfg = EmbedConfig(cache_dir=str(tmp_path / "c"), embedder=str(bert), max_chunks=4, min_chunk_chars=3)
    lines = []
    dest = run_embed(cfg, out=lines.append)
    item = load_embeddings(dest, "item")
    assert item["entity_ids"] == ["2", "3", "10"]  # numeric ids sort numerically
    fields = item["field_ids"]
    assert fields[:2] == ["genre", "director_actors"] and fields[-1] == "text"
    E, F, C, D = item["chunks"].shape
    assert (E, F) == (3, len(fields)) and C == 2 and str(item["chunks"].dtype) == "torch.float16"
    assert item["whole"].shape == (3, D)
    g, p, t = fields.index("genre"), fields.index("plot_theme"), fields.index("text")
    assert item["mask"][2, g].tolist() == [True, True] and item["mask"][2, p].tolist() == [True, False]
    assert item["n_chunks"][1, t] == 2 and int(item["mask"].sum()) == 2 + 1 + 1 + 2
    assert float(item["chunks"][0, g].abs().sum()) == 0.0  # masked slots are zero
    # a chunk's vector is the encoder's vector of that sentence
    enc = Encoder(str(bert), "cpu")
    ref = enc.model.encode(["A heist goes wrong."], convert_to_numpy=True)[0]
    np.testing.assert_allclose(item["chunks"][2, p, 0].float().numpy(), ref, atol=2e-3)
    import pandas as pd

    chunks = pd.read_parquet(dest / "item_chunks.parquet")
    assert chunks[chunks["entity_id"] == "10"]["text"].tolist()[:2] == ["Crime drama.", "Very tense."]
    manifest = json.loads((dest / "embeddings.json").read_text())
    assert manifest["kinds"]["user"]["entity_ids"] == ["1"] and manifest["kinds"]["item"]["raw_entries"] == 1
    # same inputs: the content-addressed folder is reused; a new entry gives a new folder
    assert run_embed(cfg, out=lines.append) == dest and "up to date" in lines[-1]
    cache.write([_rows("item", "4", {"genre": "Comedy."})])
    assert run_embed(cfg, out=lines.append) != dest


def test_embed_refuses_ambiguous_entries(bert, tmp_path, monkeypatch):
    from llmrec.errors import LlmrecError

    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    cache = KnowledgeCache(tmp_path / "c")
    cache.write([_rows("item", "1", {"genre": "A."}, key="k1"),
                 {**_rows("item", "1", {"genre": "B."}, key="k2"), "model": "other"}])
    cfg = EmbedConfig(cache_dir=str(tmp_path / "c"), embedder=str(bert), entities="items")
    with pytest.raises(LlmrecError, match="--model"):
        run_embed(cfg)
    assert run_embed(EmbedConfig(cache_dir=str(tmp_path / "c"), embedder=str(bert),
                                 entities="items", model="other")).is_dir()
