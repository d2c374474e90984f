"""The genetic editor (llmrec.adsee.editor) on toy fitness functions: the budget is never
exceeded by any evaluated candidate, genes stay on the grid inside the bounds, a run is
deterministic for its seed, and the search finds the optimum of known concave fitnesses."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.adsee.editor import (EditorConfig, GeneticEditor, apply_genes, distances,
                                 pca_directions, projection_directions, random_edits)
from llmrec.errors import ConfigError


def _unit_rows(rng, n, d):
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Recorder:
    """A fitness that remembers every vector it was asked to score."""

    def __init__(self, fn):
        self.fn = fn
        self.seen = []

    def __call__(self, v):
        self.seen.append(v.copy())
        return self.fn(v)


@pytest.mark.parametrize("kind,renorm,budget", [("cosine", True, 0.05), ("cosine", False, 0.02),
                                                ("l2", False, 0.3), ("l2", True, 0.1)])
def test_budget_never_exceeded(kind, renorm, budget):
    rng = np.random.default_rng(0)
    n, d, K = 6, 12, 5
    origins = _unit_rows(rng, n, d)
    dirs = _unit_rows(rng, K, d)
    w = rng.standard_normal(d) * 5
    # a linear fitness keeps rewarding larger edits: the search presses against the budget
    rec = Recorder(lambda v: v @ w)
    cfg = EditorConfig(population=12, parents=4, generations=15, mutation_size=0.3,
                       distance=kind, budget=budget, renormalise=renorm, seed=3)
    res = GeneticEditor(cfg).run(rec, origins, dirs)
    for v in rec.seen:
        assert (distances(origins, v, kind) <= budget + 1e-12).all()
    assert (res.distance <= budget + 1e-12).all()
    # pressed against it: the best edits use most of the budget
    assert res.distance.mean() > 0.5 * budget
    assert (res.gain > 0).all()
    if renorm:
        np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=1), 1.0, atol=1e-9)


def test_genes_on_grid_and_within_bounds():
    rng = np.random.default_rng(1)
    origins = np.zeros((3, 4))
    dirs = np.eye(4)
    cfg = EditorConfig(population=10, parents=3, generations=25, mutation_size=0.37,
                       gene_low=-0.5, gene_high=0.8, gene_step=0.05, distance="l2", budget=100,
                       renormalise=False, seed=0)
    seen = []

    def fit(v):
        seen.append(v.copy())
        return v.sum(-1) - 0.1 * (v ** 2).sum(-1) + rng.random(v.shape[:2]) * 0  # linear-ish

    res = GeneticEditor(cfg).run(fit, origins, dirs)
    for v in seen:  # with identity directions and a zero origin the vector is the genes
        assert v.min() >= -0.5 - 1e-12 and v.max() <= 0.8 + 1e-12
        np.testing.assert_allclose(np.round(v / 0.05) * 0.05, v, atol=1e-9)
    # the fitness grows in every gene up to the upper bound (optimum 5 > 0.8)
    np.testing.assert_allclose(res.genes, 0.8, atol=1e-9)


def test_finds_the_optimum_of_a_known_quadratic():
    target = np.array([[0.5, -0.3, 1.0], [-1.2, 0.0, 0.25]])
    origins = np.zeros((2, 3))

    def fit(v):  # concave, maximum 0 at v = target
        return -((v - target[:, None, :]) ** 2).sum(-1)

    cfg = EditorConfig(population=30, parents=10, generations=80, mutation_size=0.05,
                       mutation_rate=0.3, distance="l2", budget=10, renormalise=False, seed=7)
    res = GeneticEditor(cfg).run(fit, origins, np.eye(3))
    np.testing.assert_allclose(res.genes, target, atol=0.051)
    assert res.predicted.max() > -0.01
    # elitism: the best fitness never decreases from one generation to the next
    assert (np.diff(res.history, axis=0) >= -1e-12).all()


def test_linear_fitness_under_l2_budget_goes_to_the_boundary_along_the_gradient():
    w = np.array([3.0, -1.0, 2.0, 0.5])
    origins = np.zeros((1, 4))
    cfg = EditorConfig(population=30, parents=10, generations=60, mutation_size=0.05,
                       distance="l2", budget=0.8, renormalise=False, seed=2)
    res = GeneticEditor(cfg).run(lambda v: v @ w, origins, np.eye(4))
    g = res.genes[0]
    assert np.linalg.norm(g) <= 0.8 + 1e-12
    assert np.linalg.norm(g) > 0.7
    assert g @ w / (np.linalg.norm(g) * np.linalg.norm(w)) > 0.97


def test_deterministic_for_a_seed():
    rng = np.random.default_rng(5)
    origins = _unit_rows(rng, 4, 10)
    dirs = _unit_rows(rng, 6, 10) * 0.3
    w = rng.standard_normal(10)

    def run(seed):
        cfg = EditorConfig(population=10, parents=3, generations=8, budget=0.05, seed=seed)
        return GeneticEditor(cfg).run(lambda v: np.tanh(v @ w), origins, dirs)

    a, b, c = run(11), run(11), run(12)
    np.testing.assert_array_equal(a.genes, b.genes)
    np.testing.assert_array_equal(a.history, b.history)
    assert not np.array_equal(a.genes, c.genes)


def test_zero_edit_is_kept_so_a_gain_is_never_negative():
    rng = np.random.default_rng(0)
    origins = _unit_rows(rng, 5, 6)
    dirs = _unit_rows(rng, 3, 6)
    # the original is the optimum: every edit lowers the fitness
    fit = lambda v: -distances(origins, v, "cosine")  # noqa: E731
    res = GeneticEditor(EditorConfig(population=8, parents=2, generations=5, seed=0)).run(
        fit, origins, dirs)
    np.testing.assert_allclose(res.gain, 0.0, atol=1e-12)
    np.testing.assert_allclose(res.genes, 0.0)


def test_repair_shrinks_only_infeasible_candidates():
    cfg = EditorConfig(distance="l2", budget=0.5, renormalise=False)
    ed = GeneticEditor(cfg)
    genes = np.array([[[0.3, 0.0], [1.0, 1.0]]])  # norms 0.3 (inside) and 1.41 (outside)
    out = ed.repair(genes, np.zeros((1, 2)), np.eye(2))
    np.testing.assert_array_equal(out[0, 0], genes[0, 0])
    assert np.linalg.norm(out[0, 1]) <= 0.5
    assert np.linalg.norm(out[0, 1]) > 0.48  # as large as the grid allows, not zero
    np.testing.assert_allclose(out[0, 1, 0], out[0, 1, 1])  # direction kept


def test_apply_genes_and_distances_by_hand():
    origins = np.array([[1.0, 0.0]])
    genes = np.array([[[0.0, 1.0]]])
    v, norm = apply_genes(genes, origins, np.eye(2), renormalise=False)
    np.testing.assert_allclose(v, [[[1.0, 1.0]]])
    np.testing.assert_allclose(norm, [[1.0]])
    np.testing.assert_allclose(distances(origins, v, "cosine"), [[1 - 1 / np.sqrt(2)]])
    np.testing.assert_allclose(distances(origins, v, "l2"), [[1.0]])
    v2, _ = apply_genes(genes, origins, np.eye(2), renormalise=True)
    np.testing.assert_allclose(v2, [[[1 / np.sqrt(2), 1 / np.sqrt(2)]]])


def test_pca_directions_recover_the_long_axis():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 3)) * np.array([0.1, 3.0, 1.0])
    u, s = pca_directions(x, 2)
    np.testing.assert_allclose(np.abs(u[0]), [0, 1, 0], atol=0.02)
    np.testing.assert_allclose(np.abs(u[1]), [0, 0, 1], atol=0.02)
    np.testing.assert_allclose(s, [3.0, 1.0], rtol=0.05)
    assert (u[np.arange(2), np.abs(u).argmax(1)] > 0).all()  # sign convention


def test_projection_directions_are_the_maps_top_input_directions():
    w = np.array([[0.0, 5.0, 0.0], [0.0, 0.0, 1.0]])
    x = np.random.default_rng(0).standard_normal((500, 3))
    u, s = projection_directions(w, x, 1)
    np.testing.assert_allclose(u[0], [0, 1, 0], atol=1e-12)
    assert 0.9 < s[0] < 1.1


def test_random_edits_have_the_requested_norm():
    rng = np.random.default_rng(0)
    origins = _unit_rows(rng, 7, 9)
    dirs = _unit_rows(rng, 4, 9)
    norms = np.linspace(0.01, 0.3, 7)
    out = random_edits(origins, dirs, norms, seed=0, renormalise=False)
    np.testing.assert_allclose(np.linalg.norm(out - origins, axis=1), norms)
    np.testing.assert_array_equal(out, random_edits(origins, dirs, norms, seed=0,
                                                    renormalise=False))


@pytest.mark.parametrize("kwargs,word", [({"parents": 30}, "parents"),
                                         ({"gene_high": 1.555}, "multiple"),
                                         ({"budget": 0}, "budget"),
                                         ({"gene_low": 0.5}, "contain 0")])
def test_config_errors_name_the_problem(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        EditorConfig(**kwargs)


def test_fitness_of_the_wrong_shape_is_refused():
    with pytest.raises(ConfigError, match="shape"):
        GeneticEditor(EditorConfig(population=4, parents=2, generations=1)).run(
            lambda v: v.sum(-1).ravel(), np.ones((2, 3)), np.eye(3))


def test_projection_with_more_directions_than_its_rank_names_the_fix():
    with pytest.raises(ConfigError, match="n_directions or widen"):
        projection_directions(np.ones((4, 10)), np.ones((5, 10)), 6)
