"""Click simulation with the position-based model (PBM), the standard ULTR protocol.

P(examined | rank k) = theta_k = rho_k ** eta, with rho the eye-tracking examination
probabilities of Joachims et al. 2005 as used by ULTRA's PBM json (``propensity="rho"``, the
default) or theta_k = (1 / k) ** eta (``propensity="inverse_rank"``). eta = 0 removes the bias.
P(click | examined, grade y) = eps + (1 - eps) * (2^y - 1) / (2^ymax - 1), eps = 0.1 (the spec's
value; ymax = 3 for DL19). Clicks are examined AND attracted, drawn independently per slot.
"""

from __future__ import annotations

import numpy as np

RHO = np.array([0.68, 0.61, 0.48, 0.34, 0.28, 0.20, 0.11, 0.10, 0.08, 0.06])
EPSILON = 0.1


def propensities(n: int = 10, eta: float = 1.0, kind: str = "rho") -> np.ndarray:
    """theta_1..theta_n of the PBM."""
    if kind == "rho":
        if n > len(RHO):
            raise ValueError(f"the rho propensities cover {len(RHO)} ranks, asked for {n}")
        base = RHO[:n]
    elif kind == "inverse_rank":
        base = 1.0 / np.arange(1, n + 1)
    else:
        raise ValueError(f"propensity kind must be 'rho' or 'inverse_rank', got {kind!r}")
    return base ** float(eta)


def click_probability(grades, max_grade: int = 3, epsilon: float = EPSILON) -> np.ndarray:
    """P(click | examined) for graded relevance."""
    y = np.asarray(grades, dtype=np.float64)
    return epsilon + (1 - epsilon) * (2 ** y - 1) / (2 ** max_grade - 1)


def simulate_clicks(shown_grades: np.ndarray, theta: np.ndarray, rng: np.random.Generator,
                    max_grade: int = 3, epsilon: float = EPSILON,
                    shown_mask: np.ndarray | None = None) -> np.ndarray:
    """Clicks ``[S, K]`` (0/1 float32) for sessions showing lists of grades ``[S, K]``."""
    shown_grades = np.asarray(shown_grades)
    S, K = shown_grades.shape
    examined = rng.random((S, K)) < theta[None, :K]
    attracted = rng.random((S, K)) < click_probability(shown_grades, max_grade, epsilon)
    c = examined & attracted
    if shown_mask is not None:
        c &= shown_mask
    return c.astype(np.float32)


def simulate_sessions(shown: np.ndarray, shown_mask: np.ndarray, grades: np.ndarray,
                      n_sessions: int, eta: float = 1.0, seed: int = 0, kind: str = "rho",
                      max_grade: int = 3, epsilon: float = EPSILON) -> dict[str, np.ndarray]:
    """Sessions on logged lists: each picks a query uniformly and clicks on its shown list.

    ``shown [Q, K]`` are the item positions (into the query's candidates) shown at ranks 1..K,
    ``grades [Q, M]`` the true grades. Returns ``query [S]``, ``clicks [S, K]``, ``theta [K]``.
    """
    rng = np.random.default_rng(seed)
    K = shown.shape[1]
    theta = propensities(K, eta, kind)
    q = rng.integers(0, shown.shape[0], n_sessions)
    g = np.take_along_axis(grades, shown, 1)[q]
    clicks = simulate_clicks(g, theta, rng, max_grade, epsilon, shown_mask[q])
    return {"query": q, "clicks": clicks, "theta": theta}
