"""Slate click simulators: a multinomial logit over the shown slate plus a no-click option.

A simulated user ``u`` shown slate ``S`` clicks item ``i in S`` with probability
``exp(U_ui) / (exp(u0) + sum_{j in S} exp(U_uj))`` and nothing with the rest, where ``U`` is a
utility matrix over item rows (rows 0 = padding and 1 = no click are never clicked) and ``u0`` is
the no-click utility, calibrated so that uniformly random slates are clicked at a chosen rate. An
item a user has clicked is consumed: it is never clicked by that user again (a film is watched
once), so a policy that keeps showing it wastes a slot. Under this model the slate with the most
expected clicks is the top-k of the user's remaining utilities, so the regret of a shown slate is
exact: ``P(click | best slate) - P(click | shown slate)``.

Two sources of ``U``:

- :func:`generated_simulator`: group vectors, items around their group, user preference vectors,
  ``U = beta * user . item`` (known parameters, for recovery checks);
- :func:`movielens_simulator`: a rank-``r`` truncated SVD of the binary "rated >= 4" matrix of
  MovieLens-1M users 1-2999 over the most-rated films, standardised, times ``beta``; the item
  groups are each film's first listed genre. Semi-synthetic: the preferences are real, the clicks
  on slates are simulated.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from llmrec.errors import DataError

log = logging.getLogger(__name__)
PAD, NO_CLICK = 0, 1


@dataclass
class SlateSimulator:
    """Utilities ``[n_users, R]`` over item rows and the no-click utility."""

    utility: torch.Tensor
    noclick: float
    item_group: list[int]
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.utility = self.utility.float().clone()
        self.utility[:, :2] = float("-inf")

    @property
    def n_users(self) -> int:
        return self.utility.shape[0]

    @property
    def n_items(self) -> int:
        """Item rows, 0 and 1 included."""
        return self.utility.shape[1]

    def _util(self, users: torch.Tensor, consumed: torch.Tensor | None) -> torch.Tensor:
        u = self.utility[users]
        if consumed is not None:
            u = u.masked_fill(consumed[users], float("-inf"))
        return u

    def click_probs(self, users: torch.Tensor, slates: torch.Tensor,
                    consumed: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, 1 + S]``: P(no click), P(click slot j)."""
        u = self._util(users, consumed).gather(1, slates).masked_fill(slates <= NO_CLICK,
                                                                      float("-inf"))
        logits = torch.cat([torch.full_like(u[:, :1], self.noclick), u], 1)
        return torch.softmax(logits, 1)

    def expected_clicks(self, users, slates, consumed=None) -> torch.Tensor:
        return 1.0 - self.click_probs(users, slates, consumed)[:, 0]

    def click(self, users, slates, consumed=None, generator: torch.Generator | None = None
              ) -> torch.Tensor:
        """One draw per user: the clicked item row, or 1 (no click)."""
        p = self.click_probs(users, slates, consumed)
        choice = torch.multinomial(p, 1, generator=generator)[:, 0]
        full = torch.cat([torch.full_like(slates[:, :1], NO_CLICK), slates], 1)
        return full.gather(1, choice[:, None])[:, 0]

    def best_slates(self, users, k: int, consumed=None) -> torch.Tensor:
        """The slate with the most expected clicks: the top-k remaining utilities."""
        return self._util(users, consumed).topk(k, 1).indices

    def random_slates(self, users, k: int, generator: torch.Generator | None = None,
                      consumed=None) -> torch.Tensor:
        """Uniform slates of ``k`` distinct items (consumed ones avoided when given)."""
        keys = torch.rand(users.numel(), self.n_items, generator=generator)
        keys[:, :2] = -1.0
        if consumed is not None:
            keys = keys.masked_fill(consumed[users], -0.5)
        return keys.topk(k, 1).indices


def calibrate_noclick(utility: torch.Tensor, k: int, target: float, seed: int = 0,
                      n: int = 4000) -> float:
    """The no-click utility at which uniformly random slates of ``k`` items are clicked with
    probability ``target`` (bisection on a seeded sample of users and slates)."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target click rate must be in (0, 1), got {target}")
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(0, utility.shape[0], (n,), generator=g)
    keys = torch.rand(n, utility.shape[1], generator=g)
    keys[:, :2] = -1.0
    slates = keys.topk(k, 1).indices
    lse = torch.logsumexp(utility[users].gather(1, slates), 1)
    lo, hi = float(lse.min()) - 20, float(lse.max()) + 20
    for _ in range(100):
        mid = (lo + hi) / 2
        rate = float((1 - torch.sigmoid(mid - lse)).mean())
        lo, hi = (mid, hi) if rate > target else (lo, mid)
    return (lo + hi) / 2


def generated_simulator(n_users: int = 200, n_items: int = 100, n_groups: int = 5,
                        dim: int = 4, item_noise: float = 0.3, beta: float = 2.0,
                        slate_size: int = 5, random_ctr: float = 0.3, seed: int = 0
                        ) -> SlateSimulator:
    """Items around ``n_groups`` group vectors, users with Gaussian preferences; ``info`` holds
    the true ``user_vectors`` / ``item_vectors`` (rows 0 and 1 zero)."""
    rng = np.random.default_rng(seed)
    groups = rng.normal(size=(n_groups, dim))
    item_group = rng.integers(0, n_groups, n_items)
    items = groups[item_group] + item_noise * rng.normal(size=(n_items, dim))
    users = rng.normal(size=(n_users, dim)) / np.sqrt(dim)
    V = np.concatenate([np.zeros((2, dim)), items])
    util = torch.as_tensor(beta * users @ V.T, dtype=torch.float32)
    u0 = calibrate_noclick(torch.where(torch.arange(V.shape[0]) < 2, -torch.inf, util), slate_size,
                           random_ctr, seed)
    return SlateSimulator(util, u0, [0, 0, *item_group.tolist()],
                          info={"source": "generated", "user_vectors": users, "item_vectors": V,
                                "beta": beta, "seed": seed, "random_ctr": random_ctr})


def _read_ml1m(folder: Path):
    """(ratings [n, 4] int64, movie id -> first genre) from a MovieLens-1M folder."""
    ratings_path = None
    for name in ("ratings.dat", "ratings.dat.gz", "ratings-users-1-2999.dat.gz"):
        if (folder / name).is_file():
            ratings_path = folder / name
            break
    if ratings_path is None or not (folder / "movies.dat").is_file():
        raise DataError(f"{folder} is not a MovieLens-1M folder: it needs movies.dat and "
                        f"ratings.dat (or ratings*.dat.gz); point --data at the ml-1m folder")
    import io

    import pandas as pd

    opener = gzip.open if ratings_path.suffix == ".gz" else open
    with opener(ratings_path, "rt", encoding="latin-1") as fh:
        text = fh.read().replace("::", ",")
    try:
        ratings = pd.read_csv(io.StringIO(text), header=None, dtype=np.int64).to_numpy()
        if ratings.ndim != 2 or ratings.shape[1] != 4:
            raise ValueError(f"{ratings.shape[1]} fields per line")
    except ValueError as exc:
        raise DataError(f"{ratings_path}: lines must be UserID::MovieID::Rating::Timestamp "
                        f"integers ({exc})") from None
    genre = {}
    with open(folder / "movies.dat", encoding="latin-1") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("::")
            if len(parts) == 3:
                genre[int(parts[0])] = parts[2].split("|")[0]
    return ratings, genre, ratings_path.name


def movielens_simulator(path: str | Path, n_users: int = 500, n_items: int = 300,
                        rank: int = 16, beta: float = 2.0, slate_size: int = 10,
                        random_ctr: float = 0.1, seed: int = 0) -> SlateSimulator:
    """A simulator whose utilities come from real MovieLens-1M preferences.

    The ``n_items`` most-rated films; ``Y[u, i] = 1`` if user ``u`` rated film ``i`` >= 4 (all
    users of the file); ``A`` = the rank-``rank`` truncated SVD of ``Y``, standardised over all
    entries; ``U = beta * A`` for ``n_users`` users drawn with ``seed``; ``u0`` calibrated to
    ``random_ctr`` on random slates of ``slate_size``."""
    folder = Path(path)
    ratings, genre, fname = _read_ml1m(folder)
    films, counts = np.unique(ratings[:, 1], return_counts=True)
    top = films[np.argsort(-counts, kind="stable")[:n_items]]
    col = {m: j for j, m in enumerate(top)}
    keep = np.isin(ratings[:, 1], top) & (ratings[:, 2] >= 4)
    user_ids = np.unique(ratings[:, 0])
    row = {u: i for i, u in enumerate(user_ids)}
    Y = np.zeros((user_ids.size, top.size), dtype=np.float32)
    Y[[row[u] for u in ratings[keep, 0]], [col[m] for m in ratings[keep, 1]]] = 1.0
    Uf, S, Vt = np.linalg.svd(Y, full_matrices=False)
    A = (Uf[:, :rank] * S[:rank]) @ Vt[:rank]
    A = (A - A.mean()) / A.std()
    rng = np.random.default_rng(seed)
    chosen = rng.choice(user_ids.size, size=min(n_users, user_ids.size), replace=False)
    util = torch.full((chosen.size, top.size + 2), float("-inf"))
    util[:, 2:] = torch.as_tensor(beta * A[chosen], dtype=torch.float32)
    u0 = calibrate_noclick(util, slate_size, random_ctr, seed)
    names = sorted({genre.get(int(m), "unknown") for m in top})
    gid = {g: i for i, g in enumerate(names)}
    item_group = [0, 0, *[gid[genre.get(int(m), "unknown")] for m in top]]
    explained = float((S[:rank] ** 2).sum() / (S ** 2).sum())
    return SlateSimulator(util, u0, item_group, info={
        "source": f"MovieLens-1M ({fname}), rated >= 4, rank-{rank} SVD", "n_users": int(
            chosen.size), "n_items": int(top.size), "rank": rank, "beta": beta,
        "random_ctr": random_ctr, "seed": seed, "svd_energy": round(explained, 4),
        "movie_ids": top.tolist(), "user_ids": user_ids[chosen].tolist(), "groups": names})


def simulate_log(sim: SlateSimulator, steps: int, slate_size: int, logger: str = "uniform",
                 temperature: float = 1.0, seed: int = 0) -> dict[str, torch.Tensor]:
    """An offline log of every simulated user: ``user [U]``, ``slate [U, T, S]``, ``click [U, T]``.

    ``logger="uniform"``: random slates; ``"personalised"``: slates drawn without replacement
    with probability proportional to ``exp(temperature * utility)`` (Gumbel top-k), i.e.
    non-uniform slates that favour what the user likes. Consumed items are not shown again."""
    if logger not in ("uniform", "personalised"):
        raise ValueError(f"logger must be uniform or personalised, not {logger!r}")
    g = torch.Generator().manual_seed(seed)
    users = torch.arange(sim.n_users)
    consumed = torch.zeros(sim.n_users, sim.n_items, dtype=torch.bool)
    slates, clicks = [], []
    for _ in range(steps):
        if logger == "uniform":
            s = sim.random_slates(users, slate_size, g, consumed)
        else:
            gumbel = -torch.log(-torch.log(torch.rand(sim.n_users, sim.n_items, generator=g)))
            keys = (temperature * sim.utility + gumbel).masked_fill(consumed, -1e9)
            keys[:, :2] = -1e10
            s = keys.topk(slate_size, 1).indices
        c = sim.click(users, s, consumed, g)
        consumed[users, c] |= c > NO_CLICK
        slates.append(s)
        clicks.append(c)
    return {"user": users, "slate": torch.stack(slates, 1), "click": torch.stack(clicks, 1)}
