"""Catalog: title identity, exact and IVF search, resolving titles, tiny-BERT embedding."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.crs.catalog import (
    Catalog, CatalogConfig, ExactIndex, IVFIndex, Item, distinctive, mentions, norm_title,
    title_year,
)


@pytest.mark.parametrize("title, key", [
    ("Matrix, The (1999)", "matrix"),
    ("The Matrix", "matrix"),
    ("the matrix!", "matrix"),
    ("City of Lost Children, The (Cité des enfants perdus, La) (1995)", "city of lost children"),
    ("Seven (a.k.a. Se7en) (1995)", "seven"),
    ("Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", "amelie"),
    ("Fast & Furious (2009)", "fast and furious"),
    ("American Pie  (1999)", "american pie"),
    ("Star Wars: Episode IV - A New Hope (1977)", "star wars episode iv a new hope"),
    ("Up (2009)", "up"),
])
def test_norm_title(title, key):
    assert norm_title(title) == key


def test_title_year_and_mentions():
    assert title_year("Heat (1995)") == 1995
    assert title_year("Heat") is None
    assert mentions("matrix", "Have you seen The Matrix?")
    assert not mentions("matrix", "Have you seen The Matrixes?")
    assert not distinctive("up") and not distinctive("heat")
    assert distinctive("matrix") and distinctive("toy story")


def _unit(rng, n, d):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_exact_index_matches_brute_force():
    rng = np.random.default_rng(0)
    vecs, queries = _unit(rng, 500, 16), _unit(rng, 7, 16)
    ids, scores = ExactIndex(vecs).search(queries, 5)
    ref = np.argsort(-(queries @ vecs.T), axis=1)[:, :5]
    assert (ids == ref).all()
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_ivf_index_recall_and_full_probe_is_exact():
    rng = np.random.default_rng(1)
    # clustered data, as item embeddings are
    centers = _unit(rng, 20, 32)
    vecs = centers[rng.integers(0, 20, 4000)] + 0.3 * rng.standard_normal((4000, 32))
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    queries = vecs[rng.choice(4000, 50, replace=False)] + 0.05 * rng.standard_normal((50, 32))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    exact, _ = ExactIndex(vecs).search(queries, 5)
    ivf = IVFIndex(vecs, n_lists=40, n_probe=8)
    approx, _ = ivf.search(queries, 5)
    recall = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approx, exact)])
    assert recall >= 0.9
    full, _ = IVFIndex(vecs, n_lists=40, n_probe=40).search(queries, 5)
    assert (full == exact).all()


ITEMS = [
    Item("1", "Matrix, The (1999)", ["Action", "Sci-Fi"]),
    Item("2", "Heat (1995)", ["Action", "Crime", "Thriller"], year=1995),
    Item("3", "Heat (1986)", ["Action"], year=1986),
    Item("4", "Toy Story (1995)", ["Animation", "Children", "Comedy"]),
]


def test_resolve_titles():
    cat = Catalog(ITEMS, vectors=np.eye(4, dtype=np.float32))
    assert cat.resolve("The Matrix") == 0
    assert cat.resolve("matrix, the (1999)") == 0
    assert cat.resolve("Heat (1986)") == 2          # the year decides between namesakes
    assert cat.resolve("Heat") == 1                 # no year: the first
    assert cat.resolve("Heat", prefer=[2]) == 2     # ... unless the agent just saw the other
    assert cat.resolve("Matrix Reloaded") is None   # no fuzzy matching
    assert cat.genre_overlap(1, 2) == pytest.approx(1 / 3)
    assert cat.genre_overlap(0, 3) == 0.0


def test_search_with_tiny_bert(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    from llmrec.models.tiny import tiny_bert

    path = tiny_bert(tmp_path / "bert")
    for index in ("exact", "ivf"):
        cfg = CatalogConfig(embedder=str(path), index=index, ivf_lists=2, ivf_probe=2, top_k=3,
                            device="cpu")
        cat = Catalog(ITEMS, cfg)
        hits = cat.search(["Matrix, The (1999). Genres: Action, Sci-Fi", "toy"])
        assert len(hits) == 2 and all(len(h) == 3 for h in hits)
        assert hits[0][0].index == 0  # an item's own text is its nearest neighbour
        assert cat.vectors.shape == (4, 32)
    # the second catalog read its vectors from the cache the first wrote
    cached = list((tmp_path / "home" / "crs" / "embeddings").glob("*.npy"))
    assert len(cached) == 1
