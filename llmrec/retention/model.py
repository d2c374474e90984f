"""OCARM on the return-visit proxy: teacher, student, distillation, training, metrics.

The design is ours, built from the published abstract / summary only:

- :class:`ObservableEncoder` -- profile embeddings (gender, age group, occupation), the last
  items before the anchor (item id embedding + genre embedding from the catalogue) pooled by
  attention with a query from the profile and numeric features, and the standardised numeric
  features; an MLP maps them to the user representation (width ``dim``);
- :class:`Teacher` -- a hierarchical encoder: level 1 builds each onboarding item's vector (id +
  genres + position + its rating), level 2 pools the onboarding sequence by attention with the observable
  representation as query; an MLP fuses both, with the number of onboarding items, into ``h_T``; a linear head gives the logit.
  Serving it with the content zeroed (all positions padding, the pooled content vector = 0) is
  the "content at train, zeros at serve" row (every content input is zero then);
- :class:`Student` -- an :class:`ObservableEncoder` giving ``h_S`` and a linear head. OCARM
  trains it with ``BCE(y, f(h_S)) + lambda * D(h_S, sg(h_T))`` towards the frozen teacher's
  ``h_T``, ``D`` the mean squared difference (``l2``) or ``1 - cos`` (``cosine``); ``lambda = 0``
  is the "student only" row.

:func:`fit` trains one model with Adam and early stopping on the valid AUC; :func:`evaluate`
returns AUC and GAUC (per user, sample-weighted, over users with both labels in the split, and
that user count).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from llmrec.config import option
from llmrec.errors import ConfigError
from llmrec.ranking.metrics import auc, group_aucs
from llmrec.retention.proxy import ReturnEvents

ROWS = ("student_only", "teacher", "content_zero_at_serve", "ocarm")


@dataclass
class OcarmConfig:
    """Model widths and training of the teacher and the student."""

    dim: int = option(16, help="embedding and representation width (h_T, h_S)")
    hidden: int = option(64, help="width of the encoders' MLP hidden layer")
    dropout: float = option(0.1, help="dropout in the MLPs")
    lr: float = option(2e-3, help="Adam learning rate")
    weight_decay: float = option(1e-5, help="Adam weight decay")
    batch_size: int = option(256, help="training batch size")
    epochs: int = option(30, help="maximum epochs")
    patience: int = option(3, help="early stopping: epochs without a better valid AUC")
    lam: float = option(1.0, help="OCARM alignment weight lambda (0 = student only)")
    distance: str = option("l2", help="alignment distance: l2 (mean squared) or cosine (1 - cos)")

    def __post_init__(self) -> None:
        if self.distance not in ("l2", "cosine"):
            raise ConfigError(f"distance must be l2 or cosine, got {self.distance!r}")
        if self.lam < 0:
            raise ConfigError(f"lam must be >= 0, got {self.lam}")


class AttentionPool(nn.Module):
    """Masked additive attention of a query over a sequence; an all-padding row pools to 0."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(2 * dim, dim)
        self.v = nn.Linear(dim, 1, bias=False)

    def forward(self, seq: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        q = query.unsqueeze(1).expand_as(seq)
        score = self.v(torch.tanh(self.proj(torch.cat([seq, q], -1)))).squeeze(-1)
        score = score.masked_fill(~mask, float("-inf"))
        any_ = mask.any(1, keepdim=True)
        w = torch.softmax(torch.where(any_, score, torch.zeros_like(score)), 1) * mask
        return (w.unsqueeze(-1) * seq).sum(1) * any_


class ItemVectors(nn.Module):
    """Item id embedding plus the embedding of its catalogue genres (static side information)."""

    def __init__(self, n_items: int, genre_matrix: np.ndarray, dim: int) -> None:
        super().__init__()
        self.item = nn.Embedding(n_items, dim, padding_idx=0)
        self.register_buffer("genres", torch.as_tensor(genre_matrix, dtype=torch.float32))
        self.genre = nn.Linear(self.genres.shape[1], dim, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.item(ids) + self.genre(self.genres[ids])


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, d_out))


class ObservableEncoder(nn.Module):
    """Profile + history before the anchor + numeric features -> a ``dim`` representation."""

    def __init__(self, ev: ReturnEvents, cfg: OcarmConfig, items: ItemVectors | None = None
                 ) -> None:
        super().__init__()
        d = cfg.dim
        self.items = items or ItemVectors(ev.vocab["items"], ev.genre_matrix, d)
        self.profile = nn.ModuleList(nn.Embedding(ev.vocab[c], d)
                                     for c in ("gender", "age", "occupation"))
        self.num = nn.Linear(ev.num.shape[1], d)
        self.ctx = nn.Linear(4 * d, d)
        self.pool = AttentionPool(d)
        self.mlp = _mlp(5 * d, cfg.hidden, d, cfg.dropout)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        prof = [emb(x["profile"][:, i]) for i, emb in enumerate(self.profile)]
        num = self.num(x["num"])
        ctx = torch.cat(prof + [num], -1)
        hist = x["hist_items"]
        pooled = self.pool(self.items(hist), hist > 0, self.ctx(ctx))
        return self.mlp(torch.cat([ctx, pooled], -1))


class Student(nn.Module):
    """Observable-only model: ``h_S`` and a logit. Reads only :data:`STUDENT_KEYS`."""

    def __init__(self, ev: ReturnEvents, cfg: OcarmConfig) -> None:
        super().__init__()
        self.enc = ObservableEncoder(ev, cfg)
        self.head = nn.Linear(cfg.dim, 1)

    def forward(self, x):
        h = self.enc(x)
        return h, self.head(torch.relu(h)).squeeze(-1)


class Teacher(nn.Module):
    """Observable encoder + hierarchical attention over the onboarding content -> ``h_T``."""

    def __init__(self, ev: ReturnEvents, cfg: OcarmConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.obs = ObservableEncoder(ev, cfg)
        self.pos = nn.Embedding(ev.content_items.shape[1], d)
        self.rating = nn.Linear(1, d)
        self.item_proj = nn.Linear(d, d)           # level 1: one onboarding item's vector
        self.count = nn.Linear(1, d)               # how many onboarding items (up to 10)
        self.pool = AttentionPool(d)               # level 2: the onboarding sequence
        self.fuse = _mlp(3 * d, cfg.hidden, d, cfg.dropout)
        self.head = nn.Linear(d, 1)

    def forward(self, x, zero_content: bool = False):
        h_obs = self.obs(x)
        ids, r = x["content_items"], x["content_ratings"]
        if zero_content:
            ids, r = torch.zeros_like(ids), torch.zeros_like(r)
        mask = ids > 0
        pos = torch.arange(ids.shape[1], device=ids.device)
        tok = self.obs.items(ids) + self.pos(pos) + self.rating((r.unsqueeze(-1) - 3) / 2)
        tok = torch.relu(self.item_proj(tok)) * mask.unsqueeze(-1)
        content = self.pool(tok, mask, h_obs)
        n = mask.sum(1, keepdim=True).float()
        count = self.count(torch.log1p(n)) * (n > 0)
        h = self.fuse(torch.cat([h_obs, content, count], -1))
        return h, self.head(torch.relu(h)).squeeze(-1)


# -- data -----------------------------------------------------------------------------------------

def tensors(ev: ReturnEvents, idx: np.ndarray, stats: tuple[np.ndarray, np.ndarray],
            content: bool) -> dict[str, torch.Tensor]:
    """Model inputs of rows ``idx`` as tensors, numeric features standardised with ``stats``
    (train mean, std). Without ``content`` only the student's arrays are built."""
    raw = ev.inputs(idx, content=content)
    out = {k: torch.as_tensor(v) for k, v in raw.items() if k != "num"}
    out["num"] = torch.as_tensor((raw["num"] - stats[0]) / stats[1], dtype=torch.float32)
    return out


def num_stats(ev: ReturnEvents, train_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = ev.num[train_idx]
    return x.mean(0), np.maximum(x.std(0), 1e-6)


def _batches(n: int, size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, size):
        yield perm[i:i + size]


def _take(x: dict[str, torch.Tensor], b) -> dict[str, torch.Tensor]:
    return {k: v[b] for k, v in x.items()}


@torch.no_grad()
def predict(model: nn.Module, x: dict[str, torch.Tensor], **kw) -> torch.Tensor:
    model.eval()
    return model(x, **kw)[1]


@torch.no_grad()
def representation(model: nn.Module, x: dict[str, torch.Tensor], **kw) -> torch.Tensor:
    model.eval()
    return model(x, **kw)[0]


def align(h_s: torch.Tensor, h_t: torch.Tensor, distance: str) -> torch.Tensor:
    """Alignment of the student's representation to the (already detached) teacher's."""
    if distance == "l2":
        return ((h_s - h_t) ** 2).mean()
    return (1 - nn.functional.cosine_similarity(h_s, h_t, dim=-1)).mean()


def fit(model: nn.Module, train: dict, y_train: torch.Tensor, valid: dict, y_valid: torch.Tensor,
        cfg: OcarmConfig, seed: int, target: torch.Tensor | None = None, lam: float = 0.0,
        distance: str = "l2") -> dict:
    """Adam on BCE (+ ``lam`` x alignment to ``target``, the frozen teacher's ``h_T`` of the
    training rows), early stopping on valid AUC; the best epoch's weights are restored."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    bce = nn.BCEWithLogitsLoss()
    best, best_state, best_epoch, bad = -1.0, None, 0, 0
    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        for b in _batches(len(y_train), cfg.batch_size, gen):
            h, logit = model(_take(train, b))
            loss = bce(logit, y_train[b])
            if target is not None and lam > 0:
                loss = loss + lam * align(h, target[b], distance)
            opt.zero_grad()
            loss.backward()
            opt.step()
        score = auc(y_valid, predict(model, valid))
        if score > best:
            best, best_state, best_epoch, bad = score, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    model.load_state_dict(best_state)
    return {"valid_auc": best, "best_epoch": best_epoch, "epochs_run": epoch,
            "wall_seconds": round(time.perf_counter() - t0, 2)}


def evaluate(labels: torch.Tensor, scores: torch.Tensor, users: np.ndarray) -> dict:
    """AUC; GAUC = per-user AUC weighted by the user's anchors, over users with both labels."""
    _, aucs, size = group_aucs(labels, scores, torch.as_tensor(users))
    ok = ~torch.isnan(aucs)
    gauc = float((aucs[ok] * size[ok]).sum() / size[ok].sum()) if bool(ok.any()) else float("nan")
    return {"auc": auc(labels, scores), "gauc": gauc, "gauc_users": int(ok.sum()),
            "gauc_anchors": int(size[ok].sum()), "n": int(len(labels)),
            "positives": int(labels.sum())}


def run_seed(ev: ReturnEvents, cfg: OcarmConfig, seed: int, grid: list[tuple[float, str]]
             | None = None, horizon: int | None = None) -> list[dict]:
    """The four rows for one seed: the teacher is trained once (its test scores with content
    are the ``teacher`` row, with the content zeroed the ``content_zero_at_serve`` row), the
    student with ``lam = 0`` and, for each ``(lam, distance)`` of ``grid`` (default
    ``[(cfg.lam, cfg.distance)]``), an OCARM student towards the frozen teacher."""
    h = ev.cfg.horizon_days if horizon is None else horizon
    idx = {s: ev.split_index(s, h) for s in ("train", "valid", "test")}
    if min(len(i) for i in idx.values()) == 0:
        raise ConfigError(f"a split has no anchors at horizon {h}: {[len(i) for i in idx.values()]}")
    stats = num_stats(ev, idx["train"])
    y = {s: torch.as_tensor(ev.labels[h][i], dtype=torch.float32) for s, i in idx.items()}
    xt = {s: tensors(ev, i, stats, content=True) for s, i in idx.items()}
    xs = {s: tensors(ev, i, stats, content=False) for s, i in idx.items()}
    users = {s: ev.user[i] for s, i in idx.items()}
    out = []

    def row(name, info, test_scores, valid_scores, **extra):
        out.append({"row": name, "seed": seed, "horizon_days": h, **extra, **info,
                    "valid": evaluate(y["valid"], valid_scores, users["valid"]),
                    "test": evaluate(y["test"], test_scores, users["test"])})

    torch.manual_seed(seed)
    teacher = Teacher(ev, cfg)
    info_t = fit(teacher, xt["train"], y["train"], xt["valid"], y["valid"], cfg, seed)
    row("teacher", info_t, predict(teacher, xt["test"]), predict(teacher, xt["valid"]),
        deployable=False)
    row("content_zero_at_serve", info_t, predict(teacher, xt["test"], zero_content=True),
        predict(teacher, xt["valid"], zero_content=True), deployable=True)
    target = representation(teacher, xt["train"])
    for p in teacher.parameters():
        p.requires_grad_(False)

    torch.manual_seed(seed)
    student = Student(ev, cfg)
    info_s = fit(student, xs["train"], y["train"], xs["valid"], y["valid"], cfg, seed)
    row("student_only", info_s, predict(student, xs["test"]), predict(student, xs["valid"]),
        deployable=True, lam=0.0)
    for lam, dist in grid or [(cfg.lam, cfg.distance)]:
        torch.manual_seed(seed)
        student = Student(ev, cfg)
        info = fit(student, xs["train"], y["train"], xs["valid"], y["valid"], cfg, seed,
                   target=target, lam=lam, distance=dist)
        row("ocarm", info, predict(student, xs["test"]), predict(student, xs["valid"]),
            deployable=True, lam=lam, distance=dist)
    return out


__all__ = ["ROWS", "OcarmConfig", "AttentionPool", "ObservableEncoder", "Student", "Teacher",
           "tensors", "num_stats", "fit", "evaluate", "predict", "representation", "align",
           "run_seed"]
