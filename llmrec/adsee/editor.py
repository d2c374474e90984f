"""A seeded genetic editor of embedding vectors under a distance budget (AdSEE's GADE, in a text
embedding space instead of StyleGAN latents).

An individual is a vector of genes, one coefficient per edit direction; its edit is
``sum_k gene_k * directions[k]`` added to the item's original vector (and, with ``renormalise``,
rescaled to the original's norm, so unit-norm sentence vectors stay unit-norm). Its fitness is
what the caller's function returns for the edited vector (a click-rate predictor) minus
``penalty * distance``. The distance from the original (cosine ``1 - cos`` or L2, computed on the
final vector) must stay within ``budget``: a candidate over it is *repaired* by shrinking every
gene toward zero on the gene grid (bisection on a common factor, keeping the last feasible point),
so no evaluated individual ever exceeds the budget.

One generation: the ``parents`` fittest individuals survive (rank selection with elitism, so the
best fitness never decreases), children are made by uniform crossover of two random parents and
mutation (each gene with probability ``mutation_rate`` moves by ``+-mutation_size``), snapped to
the grid ``gene_step`` inside ``[gene_low, gene_high]`` and repaired. The population starts with
the zero edit (the original itself) and random genes in ``[-init_range, init_range]``; keeping the
zero edit means a reported gain is never negative by construction: a gain of 0 says the search
found nothing the predictor prefers.

Many items are edited at once: every array carries the item axis first and the items are
independent problems. Everything random comes from one ``numpy.random.Generator`` seeded by
``seed``, in a fixed order, so a run is deterministic given the seed and a deterministic fitness.

Directions: :func:`pca_directions` (top principal components of the item vectors, each scaled by
its standard deviation, so a gene of 1 is one standard deviation of the catalogue along it) or
:func:`projection_directions` (top right singular vectors of a learned projection of the vectors,
e.g. the predictor's first linear map: a SeFa-like choice, the directions the model reads most).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from llmrec.config import option
from llmrec.errors import ConfigError

Fitness = Callable[[np.ndarray], np.ndarray]  # edited vectors [n, P, d] -> predicted rate [n, P]


@dataclass
class EditorConfig:
    """The genetic editor's search settings (AdSEE's values where it has them, see docs/adsee.md)."""

    population: int = option(30, help="individuals per item (AdSEE: 30)")
    generations: int = option(30, help="generations after the initial population (AdSEE: 5; "
                                       "with its mutation steps no budget here binds)")
    parents: int = option(10, help="fittest individuals kept as parents each generation "
                                   "(AdSEE: 10)")
    mutation_rate: float = option(0.2, help="probability that a child's gene mutates (AdSEE: 0.2)")
    mutation_size: float = option(0.2, help="a mutation moves a gene by +- this (AdSEE: 0.01: "
                                            "with it and 5 generations ML-1M edits moved a "
                                            "cosine distance of 0.0005); rounded to the gene "
                                            "grid")
    gene_low: float = option(-1.5, help="smallest gene value (AdSEE: -1.5)")
    gene_high: float = option(1.5, help="largest gene value (AdSEE: 1.5)")
    gene_step: float = option(0.01, help="gene grid: every gene is a multiple of this "
                                         "(AdSEE: 0.01)")
    init_range: float = option(0.1, help="initial genes are uniform in [-init_range, init_range] "
                                         "(AdSEE: 0.1)")
    distance: Literal["cosine", "l2"] = option(
        "cosine", help="distance from the original vector the budget bounds: cosine (1 - cos) "
                       "or l2 (Euclidean), computed on the final edited vector")
    budget: float = option(0.05, help="largest allowed distance from the original vector")
    penalty: float = option(0.0, help="fitness = predicted rate - penalty * distance")
    renormalise: bool = option(True, help="rescale each edited vector to its original's norm "
                                          "(sentence vectors are unit-norm)")
    repair_iters: int = option(20, help="bisection steps when shrinking an over-budget "
                                        "candidate back inside the budget")
    seed: int = option(0, help="seed of every random draw of the search")

    def __post_init__(self) -> None:
        if self.population < 2 or not 1 <= self.parents < self.population:
            raise ConfigError(f"editor: need population >= 2 and 1 <= parents < population "
                              f"(got population {self.population}, parents {self.parents})")
        if self.generations < 0:
            raise ConfigError("editor.generations must be >= 0")
        if not 0 <= self.mutation_rate <= 1:
            raise ConfigError(f"editor.mutation_rate must be in [0, 1], got {self.mutation_rate}")
        if self.gene_step <= 0:
            raise ConfigError("editor.gene_step must be > 0")
        if not self.gene_low <= 0 <= self.gene_high:
            raise ConfigError(f"editor: gene bounds [{self.gene_low}, {self.gene_high}] must "
                              f"contain 0 (the unedited vector)")
        for name in ("gene_low", "gene_high"):
            v = getattr(self, name) / self.gene_step
            if abs(v - round(v)) > 1e-6:
                raise ConfigError(f"editor.{name} {getattr(self, name)} is not a multiple of "
                                  f"gene_step {self.gene_step}")
        if self.budget <= 0:
            raise ConfigError(f"editor.budget must be > 0, got {self.budget}")
        if self.distance == "cosine" and self.budget > 2:
            raise ConfigError("editor: a cosine distance is at most 2; a budget above it bounds "
                              "nothing")
        if self.init_range < 0 or self.mutation_size < 0 or self.penalty < 0:
            raise ConfigError("editor: init_range, mutation_size and penalty must be >= 0")
        if self.repair_iters < 1:
            raise ConfigError("editor.repair_iters must be >= 1")


@dataclass
class EditResult:
    """The best edit found per item (arrays have the item axis first)."""

    genes: np.ndarray        # [n, K]
    vectors: np.ndarray      # [n, d] edited vectors
    predicted: np.ndarray    # [n] predicted rate of the edited vector
    base: np.ndarray         # [n] predicted rate of the original vector
    distance: np.ndarray     # [n] distance of the edited vector from the original
    edit_norm: np.ndarray    # [n] L2 norm of the raw edit (before renormalising)
    history: np.ndarray      # [generations + 1, n] best fitness after each generation
    evaluations: int         # fitness evaluations per item

    @property
    def gain(self) -> np.ndarray:
        return self.predicted - self.base


# -- geometry -------------------------------------------------------------------------------------
def distances(origins: np.ndarray, vectors: np.ndarray, kind: str) -> np.ndarray:
    """Distance of ``vectors [n, P, d]`` (or [n, d]) from ``origins [n, d]``: cosine or L2."""
    o = origins[:, None, :] if vectors.ndim == 3 else origins
    if kind == "l2":
        return np.linalg.norm(vectors - o, axis=-1)
    if kind == "cosine":
        num = (vectors * o).sum(-1)
        den = np.linalg.norm(vectors, axis=-1) * np.linalg.norm(o, axis=-1)
        return 1.0 - num / np.maximum(den, 1e-12)
    raise ConfigError(f"distance must be cosine or l2, not {kind!r}")


def apply_genes(genes: np.ndarray, origins: np.ndarray, directions: np.ndarray,
                renormalise: bool) -> tuple[np.ndarray, np.ndarray]:
    """(edited vectors [n, P, d], raw edit norms [n, P]) of ``genes [n, P, K]``."""
    edit = genes @ directions                       # [n, P, d]
    out = origins[:, None, :] + edit
    if renormalise:
        scale = np.linalg.norm(origins, axis=-1)[:, None, None] / np.maximum(
            np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
        out = out * scale
    return out, np.linalg.norm(edit, axis=-1)


def pca_directions(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` principal directions of ``vectors [N, d]`` as rows of unit length, and the
    standard deviation of the data along each; a direction's sign makes its largest entry
    positive (so the result does not depend on the SVD routine's sign choice)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or k < 1 or k > min(x.shape):
        raise ConfigError(f"pca_directions: need 1 <= k <= min(N, d) for vectors of shape "
                          f"{x.shape}, got k={k}")
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    u = _fix_signs(vt[:k])
    return u, s[:k] / np.sqrt(max(len(x) - 1, 1))


def projection_directions(weight: np.ndarray, vectors: np.ndarray, k: int,
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` right singular vectors of a projection ``weight [out, d]`` applied to the
    vectors (SeFa's closed form for a generator's first layer, here the predictor's input map),
    with the standard deviation of ``vectors`` along each as its scale."""
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 2 or k < 1 or k > min(w.shape):
        raise ConfigError(f"projection directions: a map of shape {w.shape} has at most "
                          f"{min(w.shape)} singular directions, {k} were asked for; lower "
                          f"n_directions or widen the predictor's embed_dim")
    _, _, vt = np.linalg.svd(w, full_matrices=False)
    u = _fix_signs(vt[:k])
    x = np.asarray(vectors, dtype=np.float64)
    return u, ((x - x.mean(0)) @ u.T).std(0, ddof=1)


def _fix_signs(u: np.ndarray) -> np.ndarray:
    idx = np.abs(u).argmax(1)
    return u * np.sign(u[np.arange(len(u)), idx])[:, None]


# -- the search -----------------------------------------------------------------------------------
class GeneticEditor:
    """Search gene vectors that maximise ``fitness`` within the distance budget (see module)."""

    def __init__(self, cfg: EditorConfig) -> None:
        self.cfg = cfg

    # grid helpers
    def snap(self, genes: np.ndarray) -> np.ndarray:
        c = self.cfg
        g = np.round(genes / c.gene_step) * c.gene_step
        return np.clip(g, c.gene_low, c.gene_high)

    def _shrink(self, genes: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Each gene's magnitude times ``t`` (per candidate), floored onto the grid: never
        larger than before, so a shrunk gene stays inside the bounds."""
        step = self.cfg.gene_step
        mag = np.floor(np.abs(genes) * t[..., None] / step + 1e-9) * step
        return np.sign(genes) * mag

    def _dist(self, genes, origins, directions):
        v, norm = apply_genes(genes, origins, directions, self.cfg.renormalise)
        return v, norm, distances(origins, v, self.cfg.distance)

    def repair(self, genes: np.ndarray, origins: np.ndarray, directions: np.ndarray
               ) -> np.ndarray:
        """``genes [n, P, K]`` with every over-budget candidate shrunk toward zero until it is
        within the budget (the largest feasible common factor found by bisection)."""
        c = self.cfg
        _, _, d = self._dist(genes, origins, directions)
        bad = d > c.budget
        if not bad.any():
            return genes
        lo = np.zeros(d.shape)
        hi = np.ones(d.shape)
        for _ in range(c.repair_iters):
            mid = (lo + hi) / 2
            _, _, dm = self._dist(self._shrink(genes, mid), origins, directions)
            ok = dm <= c.budget
            lo = np.where(ok, mid, lo)
            hi = np.where(ok, hi, mid)
        fixed = self._shrink(genes, lo)
        return np.where(bad[..., None], fixed, genes)

    def _score(self, fitness: Fitness, genes, origins, directions):
        v, norm, d = self._dist(genes, origins, directions)
        pred = np.asarray(fitness(v), dtype=np.float64)
        if pred.shape != d.shape:
            raise ConfigError(f"the fitness function returned shape {pred.shape} for edited "
                              f"vectors of shape {v.shape}; expected {d.shape}")
        return pred - self.cfg.penalty * d, pred, v, norm, d

    def run(self, fitness: Fitness, origins: np.ndarray, directions: np.ndarray) -> EditResult:
        """Edit every row of ``origins [n, d]`` along ``directions [K, d]`` (already scaled)."""
        c = self.cfg
        origins = np.asarray(origins, dtype=np.float64)
        directions = np.asarray(directions, dtype=np.float64)
        if origins.ndim != 2 or directions.ndim != 2 or directions.shape[1] != origins.shape[1]:
            raise ConfigError(f"editor: origins [n, d] and directions [K, d] must share d; got "
                              f"{origins.shape} and {directions.shape}")
        n, K = len(origins), len(directions)
        rng = np.random.default_rng(c.seed)
        P, M = c.population, c.parents
        pop = self.snap(rng.uniform(-c.init_range, c.init_range, size=(n, P, K)))
        pop[:, 0] = 0.0  # the unedited vector
        pop = self.repair(pop, origins, directions)
        score, pred, _, _, _ = self._score(fitness, pop, origins, directions)
        base = pred[:, 0].copy()
        rows = np.arange(n)[:, None]
        history = [score.max(1)]
        for _ in range(c.generations):
            order = np.argsort(-score, axis=1, kind="stable")[:, :M]
            parents, p_score, p_pred = pop[rows, order], score[rows, order], pred[rows, order]
            C = P - M
            pick = rng.integers(0, M, size=(n, C, 2))
            a = parents[rows, pick[..., 0]]
            b = parents[rows, pick[..., 1]]
            child = np.where(rng.random((n, C, K)) < 0.5, a, b)
            mutate = rng.random((n, C, K)) < c.mutation_rate
            sign = np.where(rng.random((n, C, K)) < 0.5, -1.0, 1.0)
            child = self.snap(child + mutate * sign * c.mutation_size)
            child = self.repair(child, origins, directions)
            c_score, c_pred, _, _, _ = self._score(fitness, child, origins, directions)
            pop = np.concatenate([parents, child], 1)
            score = np.concatenate([p_score, c_score], 1)
            pred = np.concatenate([p_pred, c_pred], 1)
            history.append(score.max(1))
        best = np.argmax(score, axis=1)  # first maximum: deterministic among ties
        genes = pop[np.arange(n), best]
        v, norm, d = self._dist(genes[:, None], origins, directions)
        return EditResult(genes=genes, vectors=v[:, 0], predicted=pred[np.arange(n), best],
                          base=base, distance=d[:, 0], edit_norm=norm[:, 0],
                          history=np.stack(history), evaluations=P + c.generations * (P - M))


def random_edits(origins: np.ndarray, directions: np.ndarray, norms: np.ndarray, seed: int,
                 renormalise: bool = True) -> np.ndarray:
    """Edited vectors [n, d] along a random combination of ``directions`` whose raw edit has
    L2 norm ``norms [n]`` (the baseline of equal norm for a search's edits)."""
    rng = np.random.default_rng(seed)
    origins = np.asarray(origins, dtype=np.float64)
    g = rng.standard_normal((len(origins), len(directions)))
    edit = g @ np.asarray(directions, dtype=np.float64)
    edit *= (np.asarray(norms, dtype=np.float64) / np.maximum(
        np.linalg.norm(edit, axis=1), 1e-12))[:, None]
    out = origins + edit
    if renormalise:
        out *= (np.linalg.norm(origins, axis=1) / np.maximum(np.linalg.norm(out, axis=1),
                                                              1e-12))[:, None]
    return out
