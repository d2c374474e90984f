"""Loader for the FINN.no slates ``data.npz`` layout (Eide et al.,
``finn-no/recsys_slates_dataset``).

Arrays (first axis = users, ``T`` steps per user, ``S`` slots per slate; 20 x 25 in the release):

| key | shape | meaning |
|---|---|---|
| ``userId`` | ``[U]`` | user id |
| ``click`` | ``[U, T]`` | the item clicked at each step; 1 = no click, 0 = padding (no step) |
| ``click_idx`` | ``[U, T]`` | the clicked item's slot in ``slate`` |
| ``slate_lengths`` | ``[U, T]`` | number of items shown at the step |
| ``slate`` | ``[U, T, S]`` | the shown items, 0-padded after ``slate_lengths`` |
| ``interaction_type`` | ``[U, T]`` | where it was shown (search / recommendation; 0: padding) |

Item ids 0 (padding) and 1 (no click) are special; the release's sampler draws candidates from 3
on, so 2 is special too (:data:`FIRST_ITEM`). :func:`load_finn_npz` checks the keys, shapes and
dtypes, that ``slate[u, t, click_idx[u, t]] == click[u, t]`` at every step with an item click,
and that slates are 0 after their length (item 0 inside a length is only warned about); every
problem is a :class:`~llmrec.errors.DataError` naming the array, the first offending (user, step)
and the count. :func:`split_users` is the paper's
split: 5% validation and 5% test users chosen by a seeded permutation, whose first 5 steps stay
in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import logging

import numpy as np

from llmrec.errors import DataError

log = logging.getLogger(__name__)

KEYS = ("userId", "click", "click_idx", "slate_lengths", "slate", "interaction_type")
PAD, NO_CLICK, FIRST_ITEM = 0, 1, 3


@dataclass
class FinnSlates:
    """The arrays of a ``data.npz`` (see the module doc) after validation."""

    user_id: np.ndarray
    click: np.ndarray
    click_idx: np.ndarray
    slate_lengths: np.ndarray
    slate: np.ndarray
    interaction_type: np.ndarray
    source: str = ""

    @property
    def n_users(self) -> int:
        return int(self.click.shape[0])

    @property
    def n_items(self) -> int:
        """One more than the largest item id (ids include the special 0, 1, 2)."""
        return int(max(self.slate.max(initial=0), self.click.max(initial=0))) + 1

    @property
    def step_mask(self) -> np.ndarray:
        """``[U, T]``: the step exists (not padding)."""
        return self.click != PAD

    @property
    def clicked(self) -> np.ndarray:
        """``[U, T]``: the step ended with a click on a shown item."""
        return self.click > NO_CLICK

    def subset(self, users) -> "FinnSlates":
        u = np.asarray(users, dtype=np.int64)
        return FinnSlates(self.user_id[u], self.click[u], self.click_idx[u],
                          self.slate_lengths[u], self.slate[u], self.interaction_type[u],
                          self.source)

    def stats(self) -> dict:
        m = self.step_mask
        return {"users": self.n_users, "steps": int(m.sum()),
                "item_clicks": int(self.clicked.sum()),
                "no_click_steps": int((self.click == NO_CLICK).sum()), "n_items": self.n_items,
                "mean_slate_length": float(self.slate_lengths[m].mean()) if m.any() else 0.0,
                "interaction_types": sorted(int(v) for v in np.unique(self.interaction_type[m]))}


def _first(bad: np.ndarray) -> str:
    idx = np.argwhere(bad)[0]
    return f"user row {idx[0]}, step {idx[1]}" + (f", slot {idx[2]}" if len(idx) > 2 else "")


def load_finn_npz(path: str | Path) -> FinnSlates:
    """Read and validate a ``data.npz`` of the FINN.no slates layout (see the module doc)."""
    path = Path(path)
    if path.is_dir():
        path = path / "data.npz"
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected the FINN.no slates data.npz "
                        f"(arrays {', '.join(KEYS)})")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npz ({e})") from None
    with z:
        missing = [k for k in KEYS if k not in z.files]
        if missing:
            raise DataError(f"{path}: missing array(s) {', '.join(missing)}; the layout has "
                            f"{', '.join(KEYS)}")
        a = {k: z[k] for k in KEYS}
    for k, v in a.items():
        if not np.issubdtype(v.dtype, np.integer):
            raise DataError(f"{path}: {k} has dtype {v.dtype}, expected integers")
    U = a["click"].shape[0] if a["click"].ndim == 2 else -1
    if a["click"].ndim != 2:
        raise DataError(f"{path}: click has shape {a['click'].shape}, expected [users, steps]")
    T = a["click"].shape[1]
    if a["slate"].ndim != 3 or a["slate"].shape[:2] != (U, T):
        raise DataError(f"{path}: slate has shape {a['slate'].shape}, expected [{U}, {T}, slots]")
    S = a["slate"].shape[2]
    if a["userId"].shape != (U,):
        raise DataError(f"{path}: userId has shape {a['userId'].shape}, expected [{U}]")
    for k in ("click_idx", "slate_lengths", "interaction_type"):
        if a[k].shape != (U, T):
            raise DataError(f"{path}: {k} has shape {a[k].shape}, expected [{U}, {T}] "
                            "like click")
    click, idx, length, slate = a["click"], a["click_idx"], a["slate_lengths"], a["slate"]
    step = click != PAD

    def check(bad, what):
        if bad.any():
            raise DataError(f"{path}: {what} at {_first(bad)} ({int(bad.sum())} such)")

    check((click < 0) | (slate < 0).any(-1), "negative item id")
    check(step & ((length < 1) | (length > S)), f"slate_lengths outside 1..{S} at a step")
    slot = np.arange(S)[None, None, :]
    check((slot >= length[..., None]) & (slate != PAD) & step[..., None],
          "a non-zero item after the slate's length")
    holes = step[..., None] & (slot < length[..., None]) & (slate == PAD)
    if holes.any():  # odd but harmless: an empty slot is never clicked
        log.warning("%s: %d slots hold item 0 (padding) inside their slate's length (first at "
                    "%s)", path, int(holes.sum()), _first(holes))
    item = step & (click > NO_CLICK)
    check(item & ((idx < 0) | (idx >= length)), "click_idx outside the shown slate")
    shown = np.take_along_axis(slate, np.clip(idx, 0, S - 1)[..., None], -1)[..., 0]
    check(item & (shown != click), "slate[click_idx] differs from click")
    return FinnSlates(a["userId"], click, idx, length, slate, a["interaction_type"], str(path))


def split_users(data: FinnSlates, valid_frac: float = 0.05, test_frac: float = 0.05,
                seed: int = 0, t_split: int = 5) -> dict:
    """The paper's split (``load_dataloaders`` of the release): a seeded permutation of users,
    the first ``valid_frac`` of it validation users, the next ``test_frac`` test users. Returns
    user index arrays and ``train_mask [U, T]``: every step of training users plus the first
    ``t_split`` steps of validation and test users (their later steps are evaluated)."""
    U = data.n_users
    perm = np.random.default_rng(seed).permutation(U)
    nv, nt = int(U * valid_frac), int(U * test_frac)
    valid, test, train = np.sort(perm[:nv]), np.sort(perm[nv:nv + nt]), np.sort(perm[nv + nt:])
    mask = data.step_mask.copy()
    held = np.concatenate([valid, test])
    mask[held, t_split:] = False
    return {"train": train, "valid": valid, "test": test, "train_mask": mask,
            "t_split": int(t_split)}
