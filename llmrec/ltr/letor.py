"""LETOR / SVMlight ranking files and k-fold cross-validation over the MSLR / LETOR folder layout.

A line is ``<label> qid:<query> <index>:<value> ... [# comment]`` (LETOR 3/4, MSLR-WEB, Yahoo!
LTR, Istella): feature indices start at 1 and increase along the line; features not listed are
0 (sparse lines), or every feature is listed (dense lines); everything after ``#`` is a comment
(LETOR's ``#docid = ... inc = ... prob = ...``). Blank and comment-only lines are skipped. A bad
line is a :class:`~llmrec.errors.DataError` naming the file, the line and what is wrong.

The folder layout is that of MSLR-WEB10K/30K and LETOR 4.0: ``Fold1`` .. ``Fold5``, each with
``train.txt``, ``vali.txt``, ``test.txt`` (the folds rotate the same query partitions).
:func:`cross_validate` runs the click pipeline of :mod:`llmrec.ltr.train` on every fold: a
logging ranker (linear, full labels) fit on a small share of the fold's training queries, its top
10 shown, clicks simulated (PBM or cascade), a learner trained on the clicks, and nDCG / ERR on
the fold's vali and test queries' true labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmrec.errors import DataError
from llmrec.ltr.features import LtrData

SPLITS = ("train", "vali", "test")


@dataclass
class LetorFile:
    """The rows of one SVMlight file: label, query id, features (dense, ``[N, F]``), comment."""

    path: str
    labels: np.ndarray  # [N] float64
    qids: list
    x: np.ndarray  # [N, F] float32
    comments: list = field(default_factory=list)

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])


def _parse_line(path, lineno: int, line: str):
    body, _, comment = line.partition("#")
    tokens = body.split()
    if not tokens:
        return None
    where = f"{path}, line {lineno}"
    try:
        label = float(tokens[0])
    except ValueError:
        raise DataError(f"{where}: label {tokens[0]!r} is not a number (a line is '<label> "
                        "qid:<q> 1:<v> 2:<v> ... # comment')") from None
    if not math.isfinite(label):
        raise DataError(f"{where}: label {tokens[0]!r} is not finite")
    if len(tokens) < 2 or not tokens[1].startswith("qid:") or len(tokens[1]) == 4:
        got = tokens[1] if len(tokens) > 1 else "nothing"
        raise DataError(f"{where}: expected 'qid:<query id>' after the label, got {got!r}")
    qid = tokens[1][4:]
    idx, vals, last = [], [], 0
    for tok in tokens[2:]:
        k, sep, v = tok.partition(":")
        if not sep:
            raise DataError(f"{where}: {tok!r} is not '<index>:<value>'")
        try:
            i = int(k)
        except ValueError:
            raise DataError(f"{where}: feature index {k!r} in {tok!r} is not an integer") from None
        if i < 1:
            raise DataError(f"{where}: feature index {i} in {tok!r}; indices start at 1")
        if i <= last:
            raise DataError(f"{where}: feature index {i} after {last}; indices must increase "
                            "along a line")
        try:
            fv = float(v)
        except ValueError:
            raise DataError(f"{where}: value {v!r} of feature {i} is not a number") from None
        if not math.isfinite(fv):
            raise DataError(f"{where}: value {v!r} of feature {i} is not finite")
        idx.append(i)
        vals.append(fv)
        last = i
    return label, qid, idx, vals, comment.strip()


def read_svmlight(path: str | Path, n_features: int | None = None) -> LetorFile:
    """Read one file. ``n_features`` fixes the width (an index above it is an error naming the
    line); default: the largest index in the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    labels, qids, rows, comments = [], [], [], []
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            for lineno, line in enumerate(f, 1):
                parsed = _parse_line(path, lineno, line)
                if parsed is None:
                    continue
                label, qid, idx, vals, comment = parsed
                if n_features is not None and idx and idx[-1] > n_features:
                    raise DataError(f"{path}, line {lineno}: feature index {idx[-1]} exceeds "
                                    f"the {n_features} features of this set")
                labels.append(label)
                qids.append(qid)
                rows.append((idx, vals))
                comments.append(comment)
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e})") from None
    if not rows:
        raise DataError(f"{path}: no data lines")
    F = n_features if n_features is not None else max((r[0][-1] for r in rows if r[0]),
                                                      default=0)
    x = np.zeros((len(rows), F), dtype=np.float32)
    for n, (idx, vals) in enumerate(rows):
        if idx:
            x[n, np.asarray(idx) - 1] = vals
    return LetorFile(str(path), np.asarray(labels, dtype=np.float64), qids, x, comments)


def _fmt(v: float) -> str:
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


def write_svmlight(path: str | Path, labels, qids, x, comments=None, sparse: bool = True) -> None:
    """Write rows in the same format (``sparse``: zero features left out). Values are written
    with ``repr`` (exact round trip of float64; float32 inputs round-trip to float32)."""
    from llmrec.artifacts import atomic_file

    x = np.asarray(x)
    with atomic_file(path, "w") as fh:
        for n, (y, q) in enumerate(zip(labels, qids)):
            feats = " ".join(f"{i + 1}:{_fmt(v)}" for i, v in enumerate(x[n].tolist())
                             if not sparse or v != 0)
            line = f"{_fmt(y)} qid:{q}" + (f" {feats}" if feats else "")
            if comments is not None and comments[n]:
                line += f" # {comments[n]}"
            fh.write(line + "\n")


def to_lists(f: LetorFile, max_grade: int | None = None, normalise: str = "query") -> LtrData:
    """Pad the rows per query (queries in order of first appearance, documents in file order)
    into :class:`~llmrec.ltr.features.LtrData`. ``normalise="query"``: min-max per query and
    feature (LETOR's QueryLevelNorm); ``"none"``: as read."""
    if normalise not in ("query", "none"):
        raise ValueError(f"normalise must be 'query' or 'none', got {normalise!r}")
    order: dict[str, list[int]] = {}
    for n, q in enumerate(f.qids):
        order.setdefault(q, []).append(n)
    qids = list(order)
    Q, M, F = len(qids), max(len(v) for v in order.values()), f.n_features
    x = np.zeros((Q, M, F), dtype=np.float32)
    y = np.zeros((Q, M), dtype=np.float32)
    mask = np.zeros((Q, M), dtype=bool)
    docs = []
    for i, q in enumerate(qids):
        rows = order[q]
        r = f.x[rows].astype(np.float64)
        if normalise == "query":
            lo, hi = r.min(0), r.max(0)
            r = (r - lo) / np.where(hi > lo, hi - lo, 1.0)
        x[i, :len(rows)] = r
        y[i, :len(rows)] = f.labels[rows]
        mask[i, :len(rows)] = True
        docs.append([f.comments[n] or f"{f.path}:{n}" for n in rows])
    mg = int(max_grade if max_grade is not None else max(1.0, float(f.labels.max())))
    return LtrData(qids, docs, x, y, mask, [f"f{i + 1}" for i in range(F)], mg,
                   {"source": f.path, "n_pairs": int(mask.sum()), "n_queries": Q})


def letor_folds(root: str | Path) -> list[tuple[str, dict[str, Path]]]:
    """``[(fold name, {"train": path, "vali": path, "test": path})]`` of a folder laid out as
    MSLR / LETOR (``Fold1`` .. ``FoldK``); a missing file is an error naming it."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; expected Fold1..Fold5 with train/vali/test.txt")
    folds = sorted((p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("fold")
                    and p.name[4:].isdigit()), key=lambda p: int(p.name[4:]))
    if not folds:
        raise DataError(f"{root}: no Fold1..Fold5 folders (the MSLR / LETOR layout: "
                        "FoldN/train.txt, FoldN/vali.txt, FoldN/test.txt)")
    out = []
    for p in folds:
        files = {s: p / f"{s}.txt" for s in SPLITS}
        missing = [str(v) for v in files.values() if not v.is_file()]
        if missing:
            raise DataError(f"{p}: missing {', '.join(missing)}")
        out.append((p.name, files))
    return out


def load_fold(files: dict[str, Path], normalise: str = "query") -> dict[str, LtrData]:
    """The three splits of one fold with a common feature width and grade scale."""
    raw = {s: read_svmlight(files[s]) for s in SPLITS}
    F = max(r.n_features for r in raw.values())
    raw = {s: (r if r.n_features == F else read_svmlight(files[s], F)) for s, r in raw.items()}
    mg = int(max(1.0, max(float(r.labels.max()) for r in raw.values())))
    return {s: to_lists(r, mg, normalise) for s, r in raw.items()}


def fit_logger(data: LtrData, frac: float, seed: int, steps: int = 100, lr: float = 0.05):
    """The logging ranker of the ULTR protocol: a linear ranker fit with the full labels (softmax
    list loss, gains 2^y - 1) on a seeded ``frac`` share (at least one query) of the training
    queries, as ULTRA's SVMrank on 1%. Returns the ranker (a torch module)."""
    import torch

    from llmrec.ltr.train import make_ranker

    rng = np.random.default_rng(seed)
    n = max(1, int(round(len(data.query_ids) * frac)))
    idx = np.sort(rng.permutation(len(data.query_ids))[:n])
    x = torch.as_tensor(data.x[idx])
    gains = 2 ** torch.as_tensor(data.y[idx], dtype=torch.float32) - 1
    m = torch.as_tensor(data.mask[idx])
    torch.manual_seed(seed)
    ranker = make_ranker("linear", x.shape[-1])
    opt = torch.optim.Adagrad(ranker.parameters(), lr=lr)
    keep = (gains * m).sum(1) > 0
    for _ in range(steps if bool(keep.any()) else 0):
        logits = ranker(x).squeeze(-1).masked_fill(~m, float("-inf"))
        logp = torch.log_softmax(logits, 1).masked_fill(~m, 0.0)
        loss = -(gains * logp).sum(1)[keep].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ranker


def shown_lists(ranker, data: LtrData, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Each query's top ``k`` under ``ranker`` (positions into its candidates) and their mask."""
    import torch

    from llmrec.ltr.train import score

    s = score(ranker, torch.as_tensor(data.x)).masked_fill(~torch.as_tensor(data.mask),
                                                           float("-inf"))
    k = min(k, data.mask.shape[1])
    shown = torch.argsort(s, dim=1, descending=True, stable=True)[:, :k].numpy()
    return shown, np.take_along_axis(data.mask, shown, 1)


def run_fold(fold: dict[str, LtrData], learner: str, model: str, eta: float, seed: int,
             click_model: str = "pbm", n_sessions: int = 20000, steps: int = 1000,
             logger_frac: float = 0.01, top_k: int = 10, **train_kw) -> dict:
    """The click pipeline on one fold (see the module doc); metrics on vali and test."""
    import torch

    from llmrec.ltr.clicks import simulate_sessions
    from llmrec.ltr.train import TrainConfig, evaluate, score, train_from_clicks

    tr = fold["train"]
    logger = fit_logger(tr, logger_frac, seed)
    shown, shown_mask = shown_lists(logger, tr, top_k)
    sess = simulate_sessions(shown, shown_mask, tr.y, n_sessions, eta=eta, seed=seed,
                             max_grade=tr.max_grade, click_model=click_model)
    cfg = TrainConfig(learner=learner, model=model, steps=steps, seed=seed, **train_kw)
    res = train_from_clicks(torch.as_tensor(tr.x), shown, sess, cfg, grades=tr.y)
    out = {"propensity": None if res.propensity is None else res.propensity.tolist(),
           "theta": sess["theta"].tolist(), "n_train_queries": len(tr.query_ids),
           "clicks_per_session": float(sess["clicks"].sum(1).mean())}
    for split in ("vali", "test"):
        d = fold[split]
        out[split] = evaluate(score(res.ranker, torch.as_tensor(d.x)), d.y, d.mask, d.max_grade)
        out[f"{split}_logger"] = evaluate(score(logger, torch.as_tensor(d.x)), d.y, d.mask,
                                          d.max_grade)
    return out


def cross_validate(root: str | Path, learner: str = "dla", model: str = "linear",
                   eta: float = 1.0, seed: int = 0, click_model: str = "pbm",
                   normalise: str = "query", **kw) -> dict:
    """:func:`run_fold` on every fold of ``root``; per-fold results and the mean and sample std
    over folds of each test metric."""
    folds = []
    for name, files in letor_folds(root):
        res = run_fold(load_fold(files, normalise), learner, model, eta, seed, click_model, **kw)
        folds.append({"fold": name, **res})
    summary = {}
    for split in ("test", "test_logger"):
        for key in folds[0][split]:
            vals = [f[split][key] for f in folds]
            if key == "n_queries":
                summary[f"{split}/{key}"] = int(sum(vals))
                continue
            arr = np.asarray(vals, dtype=np.float64)
            summary[f"{split}/{key}"] = {"mean": float(np.nanmean(arr)),
                                         "std": float(np.nanstd(arr, ddof=1))
                                         if len(arr) > 1 else 0.0}
    return {"root": str(root), "learner": learner, "model": model, "eta": eta, "seed": seed,
            "click_model": click_model, "n_folds": len(folds), "folds": folds,
            "summary": summary}
