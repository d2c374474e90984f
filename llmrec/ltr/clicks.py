"""Click simulation with the position-based model (PBM), the standard ULTR protocol.

P(examined | rank k) = theta_k = rho_k ** eta, with rho the eye-tracking examination
probabilities of Joachims et al. 2005 as used by ULTRA's PBM json (``propensity="rho"``, the
default) or theta_k = (1 / k) ** eta (``propensity="inverse_rank"``). eta = 0 removes the bias.
P(click | examined, grade y) = eps + (1 - eps) * (2^y - 1) / (2^ymax - 1), eps = 0.1 (the spec's
value; ymax = 3 for DL19). Clicks are examined AND attracted, drawn independently per slot.

The cascade model (Craswell et al., WSDM 2008) is the alternative (``click_model="cascade"``):
the user reads top-down, clicks a document with the same attractiveness r = P(click | examined,
y), and stops after the first click, so P(click at k) = r_k prod_{j<k} (1 - r_j) and
P(examined at k) = prod_{j<k} (1 - r_j) (at most one click per session).
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


CLICK_MODELS = ("pbm", "cascade")


def cascade_probabilities(shown_grades, max_grade: int = 3, epsilon: float = EPSILON,
                          shown_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Closed form of the cascade model per list ``[S, K]``: (P(examined at k), P(click at k)).
    A masked (padded) slot is never clicked and does not stop the user."""
    r = click_probability(shown_grades, max_grade, epsilon)
    if shown_mask is not None:
        r = np.where(shown_mask, r, 0.0)
    ones = np.ones_like(r[..., :1])
    exam = np.cumprod(np.concatenate([ones, 1 - r[..., :-1]], -1), -1)
    return exam, exam * r


def simulate_cascade_clicks(shown_grades: np.ndarray, rng: np.random.Generator,
                            max_grade: int = 3, epsilon: float = EPSILON,
                            shown_mask: np.ndarray | None = None) -> np.ndarray:
    """Cascade clicks ``[S, K]`` (0/1 float32): at most one per session, at the first examined
    document that attracts the user."""
    shown_grades = np.asarray(shown_grades)
    attracted = rng.random(shown_grades.shape) < click_probability(shown_grades, max_grade,
                                                                     epsilon)
    if shown_mask is not None:
        attracted &= shown_mask
    first = np.argmax(attracted, 1)
    any_click = attracted.any(1)
    clicks = np.zeros(shown_grades.shape, dtype=np.float32)
    rows = np.nonzero(any_click)[0]
    clicks[rows, first[rows]] = 1.0
    return clicks


def simulate_sessions(shown: np.ndarray, shown_mask: np.ndarray, grades: np.ndarray,
                      n_sessions: int, eta: float = 1.0, seed: int = 0, kind: str = "rho",
                      max_grade: int = 3, epsilon: float = EPSILON,
                      click_model: str = "pbm") -> dict[str, np.ndarray]:
    """Sessions on logged lists: each picks a query uniformly and clicks on its shown list.

    ``shown [Q, K]`` are the item positions (into the query's candidates) shown at ranks 1..K,
    ``grades [Q, M]`` the true grades. Returns ``query [S]``, ``clicks [S, K]``, ``theta [K]``.
    With ``click_model="cascade"`` (``eta`` and ``kind`` unused) ``theta`` is the cascade's
    examination probability per rank averaged over the simulated sessions: a position-only
    summary, so IPW with it is only an approximation (cascade examination depends on the list).
    """
    if click_model not in CLICK_MODELS:
        raise ValueError(f"click_model must be one of {', '.join(CLICK_MODELS)}, "
                         f"got {click_model!r}")
    rng = np.random.default_rng(seed)
    K = shown.shape[1]
    q = rng.integers(0, shown.shape[0], n_sessions)
    g = np.take_along_axis(grades, shown, 1)[q]
    if click_model == "cascade":
        clicks = simulate_cascade_clicks(g, rng, max_grade, epsilon, shown_mask[q])
        theta = cascade_probabilities(g, max_grade, epsilon, shown_mask[q])[0].mean(0)
    else:
        theta = propensities(K, eta, kind)
        clicks = simulate_clicks(g, theta, rng, max_grade, epsilon, shown_mask[q])
    return {"query": q, "clicks": clicks, "theta": theta}
