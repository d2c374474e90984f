"""CTR metrics computed with tensor ops on the device: AUC, gAUC (user-grouped AUC) and LogLoss.

AUC uses the rank-sum (Mann-Whitney) form with tied scores given their average rank, which is what
``sklearn.metrics.roc_auc_score`` computes. gAUC sorts once by (group, score) and computes every
group's rank sum with segment operations, so there is no Python loop over users.

gAUC convention: groups (users) whose samples are all positive or all negative have no AUC and are
skipped; the remaining groups' AUCs are averaged weighted by their number of samples (the
impression-weighted gAUC of the DIN paper). ``weight="uniform"`` averages them unweighted.
"""

from __future__ import annotations

import math

import torch


def _ranks_1based(sorted_scores: torch.Tensor, new_run: torch.Tensor) -> torch.Tensor:
    """Average 1-based ranks of an ascending score array whose tie runs start where ``new_run``.

    A run occupying sorted positions [s, s + c) gets rank s + (c + 1) / 2 for every member.
    """
    n = sorted_scores.numel()
    run_id = torch.cumsum(new_run.long(), 0) - 1
    n_runs = int(run_id[-1].item()) + 1 if n else 0
    counts = torch.bincount(run_id, minlength=n_runs).to(torch.float64)
    starts = torch.cumsum(counts, 0) - counts  # 0-based start of each run
    return (starts + (counts + 1) / 2)[run_id]


def auc(labels: torch.Tensor, scores: torch.Tensor) -> float:
    """ROC AUC with ties averaged; NaN when only one class is present."""
    labels = labels.reshape(-1).to(torch.float64)
    scores = scores.reshape(-1).to(torch.float64)
    n_pos = labels.sum()
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(scores)
    s = scores[order]
    new_run = torch.ones_like(s, dtype=torch.bool)
    new_run[1:] = s[1:] != s[:-1]
    ranks = _ranks_1based(s, new_run)
    rank_sum = (ranks * labels[order]).sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def group_aucs(labels: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor):
    """Per-group AUC: returns (group ids, auc per group (NaN if one class), samples per group)."""
    labels = labels.reshape(-1).to(torch.float64)
    scores = scores.reshape(-1).to(torch.float64)
    groups = groups.reshape(-1)
    uniq, g = torch.unique(groups, return_inverse=True)
    n_groups = uniq.numel()
    # sort by score, then stably by group: within each group the scores are ascending
    order = torch.argsort(scores, stable=True)
    order = order[torch.argsort(g[order], stable=True)]
    gs, ss, ys = g[order], scores[order], labels[order]
    new_group = torch.ones_like(gs, dtype=torch.bool)
    new_group[1:] = gs[1:] != gs[:-1]
    new_run = new_group.clone()
    new_run[1:] |= ss[1:] != ss[:-1]
    global_ranks = _ranks_1based(ss, new_run)
    size = torch.bincount(gs, minlength=n_groups).to(torch.float64)
    group_start = torch.cumsum(size, 0) - size
    ranks = global_ranks - group_start[gs]  # rank within the group
    n_pos = torch.zeros(n_groups, dtype=torch.float64, device=labels.device).index_add_(0, gs, ys)
    rank_sum = torch.zeros_like(n_pos).index_add_(0, gs, ranks * ys)
    n_neg = size - n_pos
    valid = (n_pos > 0) & (n_neg > 0)
    denom = torch.where(valid, n_pos * n_neg, torch.ones_like(n_pos))
    aucs = torch.where(valid, (rank_sum - n_pos * (n_pos + 1) / 2) / denom,
                       torch.full_like(n_pos, float("nan")))
    return uniq, aucs, size


def gauc(labels: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
         weight: str = "samples") -> float:
    """Group AUC (see the module docstring for the convention); NaN if no group has both classes."""
    _, aucs, size = group_aucs(labels, scores, groups)
    valid = ~torch.isnan(aucs)
    if not bool(valid.any()):
        return float("nan")
    if weight == "samples":
        w = size[valid]
    elif weight == "uniform":
        w = torch.ones_like(size[valid])
    else:
        raise ValueError("weight must be 'samples' or 'uniform'")
    return float((aucs[valid] * w).sum() / w.sum())


def log_loss(labels: torch.Tensor, probs: torch.Tensor, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities clipped to [eps, 1 - eps]."""
    y = labels.reshape(-1).to(torch.float64)
    p = probs.reshape(-1).to(torch.float64).clamp(eps, 1 - eps)
    return float(-(y * torch.log(p) + (1 - y) * torch.log1p(-p)).mean())


def ctr_metrics(labels: torch.Tensor, logits: torch.Tensor,
                groups: torch.Tensor | None = None) -> dict[str, float]:
    """AUC, LogLoss (from logits, exact without clipping) and gAUC when groups are given."""
    y = labels.reshape(-1).to(torch.float64)
    z = logits.reshape(-1).to(torch.float64)
    out = {
        "auc": auc(y, z),
        "logloss": float(torch.nn.functional.binary_cross_entropy_with_logits(z, y)),
    }
    if groups is not None:
        out["gauc"] = gauc(y, z, groups)
    out["n"] = int(y.numel())
    return out


# ------------------------------------------------------------------------------------------------
# regression and list metrics


def regression_metrics(labels: torch.Tensor, preds: torch.Tensor) -> dict[str, float]:
    """MSE, RMSE and MAE (float64)."""
    y = labels.reshape(-1).to(torch.float64)
    p = preds.reshape(-1).to(torch.float64)
    err = p - y
    mse = float((err ** 2).mean()) if y.numel() else float("nan")
    return {"mse": mse, "rmse": math.sqrt(mse) if mse == mse else mse,
            "mae": float(err.abs().mean()) if y.numel() else float("nan"), "n": int(y.numel())}


def pad_groups(scores: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor):
    """Lay samples of contiguous groups out as padded lists: ``(scores [G, M], labels [G, M],
    mask [G, M])``. Samples of one group must be adjacent (sort by group first)."""
    _, inv, counts = torch.unique_consecutive(groups, return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(groups.numel(), device=groups.device) - starts[inv]
    G, M = counts.numel(), int(counts.max()) if counts.numel() else 0
    s = scores.new_zeros(G, M)
    y = labels.to(scores.dtype).new_zeros(G, M)
    m = torch.zeros(G, M, dtype=torch.bool, device=scores.device)
    s[inv, pos] = scores
    y[inv, pos] = labels.to(scores.dtype)
    m[inv, pos] = True
    return s, y, m


def _sorted_by_score(scores, labels, mask):
    s = scores.to(torch.float64).masked_fill(~mask, float("-inf"))
    # ties broken by position (stable), so equal scores give a fixed, reproducible order
    order = torch.argsort(s, dim=1, descending=True, stable=True)
    return labels.to(torch.float64).gather(1, order), mask.gather(1, order)


def ndcg_per_list(scores, labels, mask, k: int, gain: str = "exp") -> torch.Tensor:
    """nDCG@k of every list ``[G]`` (float64), NaN for a list without any gain. The ideal DCG
    ranks the same (masked) items by label; ties in ``scores`` keep their input order."""
    if gain not in ("exp", "linear"):
        raise ValueError(f"gain must be 'exp' or 'linear', got {gain!r}")
    y_sorted, m_sorted = _sorted_by_score(scores, labels, mask)

    def g(y):
        return (2 ** y - 1) if gain == "exp" else y

    k = min(k, labels.shape[1]) if labels.dim() == 2 else k
    disc = 1.0 / torch.log2(torch.arange(k, device=labels.device, dtype=torch.float64) + 2)
    dcg = (g(y_sorted[:, :k]) * m_sorted[:, :k] * disc).sum(1)
    ideal = torch.sort(g(labels.to(torch.float64)) * mask, dim=1, descending=True).values[:, :k]
    idcg = (ideal * disc).sum(1)
    keep = idcg > 0
    return torch.where(keep, dcg / torch.where(keep, idcg, torch.ones_like(idcg)),
                       torch.full_like(dcg, float("nan")))


def ndcg_at_k(scores, labels, mask, k: int, gain: str = "exp") -> float:
    """Mean nDCG@k over lists with at least one relevant item (gain 2^y - 1, or y if
    ``gain="linear"``; discount 1 / log2(rank + 1), rank from 1)."""
    per = ndcg_per_list(scores, labels, mask, k, gain)
    keep = ~torch.isnan(per)
    if not bool(keep.any()):
        return float("nan")
    return float(per[keep].mean())


def err_at_k(scores, labels, mask, k: int, max_grade: float) -> float:
    """Mean Expected Reciprocal Rank @k (Chapelle et al. 2009): R = (2^y - 1) / 2^max_grade,
    ERR = sum_r R_r / r * prod_{i<r} (1 - R_i); lists without a relevant item are skipped."""
    y_sorted, m_sorted = _sorted_by_score(scores, labels, mask)
    k = min(k, labels.shape[1])
    r = (2 ** y_sorted[:, :k] - 1) / (2 ** float(max_grade)) * m_sorted[:, :k]
    stop = torch.cumprod(torch.cat([torch.ones_like(r[:, :1]), 1 - r[:, :-1]], 1), 1)
    ranks = torch.arange(1, k + 1, device=labels.device, dtype=torch.float64)
    err = (r * stop / ranks).sum(1)
    keep = ((labels > 0) & mask).any(1)
    if not bool(keep.any()):
        return float("nan")
    return float(err[keep].mean())


def mrr_at_k(scores, labels, mask, k: int, threshold: float = 1.0) -> float:
    """Mean reciprocal rank @k: 1 / (rank of the first item with ``label >= threshold``) within
    the top k, 0 if none is there; lists without any such item are skipped (NaN if all are)."""
    y_sorted, m_sorted = _sorted_by_score(scores, labels, mask)
    k = min(k, labels.shape[1])
    rel = (y_sorted[:, :k] >= threshold) & m_sorted[:, :k]
    ranks = torch.arange(1, k + 1, device=labels.device, dtype=torch.float64)
    rr = torch.where(rel, 1.0 / ranks, torch.zeros_like(ranks)).max(1).values  # first hit = max
    keep = ((labels >= threshold) & mask).any(1)
    if not bool(keep.any()):
        return float("nan")
    return float(rr[keep].mean())


def rbp(scores, labels, mask, p: float = 0.8, k: int | None = None, max_grade: float = 1.0
        ) -> float:
    """Mean rank-biased precision (Moffat & Zobel 2008): RBP = (1 - p) sum_r p^(r-1) g_r with
    g_r = min(y_r, max_grade) / max_grade (binary labels: g = y), over the top ``k`` (all if
    None). Every list counts, also one without a relevant item (RBP 0): RBP is not normalised
    by an ideal. The residual (unjudged tail) is not reported."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"rbp: persistence p must be in (0, 1), got {p}")
    y_sorted, m_sorted = _sorted_by_score(scores, labels, mask)
    k = labels.shape[1] if k is None else min(k, labels.shape[1])
    g = y_sorted[:, :k].clamp(min=0, max=max_grade) / max_grade * m_sorted[:, :k]
    w = (1 - p) * p ** torch.arange(k, device=labels.device, dtype=torch.float64)
    if labels.shape[0] == 0:
        return float("nan")
    return float((g * w).sum(1).mean())


# ------------------------------------------------------------------------------------------------
# session metrics: a session is a sequence of queries, each a shown list of document ids (or a
# SessionQuery with clicks, dwell times and snippet lengths); ``labels`` maps a document id to its
# session-level grade. Grades below 0 (e.g. the -1 "spam" grade of some judgment sets) count as 0.
# Pure Python: sessions are short, and these run once per session, not in a training loop.


class SessionQuery:
    """One query of a session: the shown documents in rank order and, where known, which were
    clicked (0/1 per rank), dwell times (seconds per rank) and snippet lengths (characters of title
    + snippet per rank). A plain list of document ids is read as a query without click data."""

    __slots__ = ("docs", "clicks", "dwell", "snippet_len")

    def __init__(self, docs, clicks=None, dwell=None, snippet_len=None):
        self.docs = [str(d) for d in docs]
        n = len(self.docs)
        for name, v in (("clicks", clicks), ("dwell", dwell), ("snippet_len", snippet_len)):
            if v is not None and len(v) != n:
                raise ValueError(f"SessionQuery: {name} has {len(v)} entries for {n} documents")
        self.clicks = None if clicks is None else [int(bool(c)) for c in clicks]
        self.dwell = None if dwell is None else [float(t) for t in dwell]
        self.snippet_len = None if snippet_len is None else [float(s) for s in snippet_len]

    def __repr__(self):
        return f"SessionQuery({self.docs!r}, clicks={self.clicks!r})"


def _as_queries(session) -> list[SessionQuery]:
    return [q if isinstance(q, SessionQuery) else SessionQuery(q) for q in session]


def _grade(labels, doc) -> float:
    return max(float(labels.get(doc, 0.0)), 0.0)


def _gain_of(grade: float, gain: str) -> float:
    if gain == "exp":
        return 2.0 ** grade - 1.0
    if gain == "linear":
        return grade
    raise ValueError(f"gain must be 'exp' or 'linear', got {gain!r}")


def dcg_list(docs, labels, k: int | None = None, b: float = 2.0, gain: str = "exp") -> float:
    """DCG of one shown list: sum_r gain(rel_r) / log_b(r + b - 1), r from 1 (b = 2 is the usual
    1 / log2(r + 1); the smooth form of Jarvelin et al.'s discount used by Kanoulas et al. 2011)."""
    docs = list(docs)[:k] if k is not None else list(docs)
    return sum(_gain_of(_grade(labels, d), gain) * math.log(b) / math.log(r + b - 1)
               for r, d in enumerate(docs, 1))


def _ideal_docs(labels) -> list:
    return sorted((d for d, g in labels.items() if float(g) > 0),
                  key=lambda d: (-float(labels[d]), str(d)))


def ndcg_list(docs, labels, k: int | None = None, gain: str = "exp") -> float:
    """nDCG@k of one shown list against the ideal ranking of *all* judged documents in ``labels``
    (not only the shown ones); NaN when no judged document is relevant."""
    ideal = dcg_list(_ideal_docs(labels), labels, k, gain=gain)
    if ideal <= 0:
        return float("nan")
    return dcg_list(docs, labels, k, gain=gain) / ideal


def sdcg(session, labels, k: int | None = None, b: float = 2.0, bq: float = 4.0,
         query_discount: bool = True, normalise: bool = False, gain: str = "exp") -> float:
    """Session DCG (Jarvelin et al., ECIR 2008; the smooth form of Kanoulas et al., SIGIR 2011):
    sum_j DCG_b(q_j) / log_bq(j + bq - 1), j = 1..m (the first query is not discounted).
    ``normalise=True`` gives nsDCG: divided by the same sum for a session of as many queries, each
    showing the ideal list of ``labels`` (cut at ``k``, or at that query's length if ``k`` is None);
    NaN when there is no relevant document."""
    queries = _as_queries(session)
    ideal_docs = _ideal_docs(labels) if normalise else None
    tot = den = 0.0
    for j, q in enumerate(queries, 1):
        w = math.log(bq) / math.log(j + bq - 1) if query_discount else 1.0
        tot += w * dcg_list(q.docs, labels, k, b, gain)
        if normalise:
            cut = k if k is not None else len(q.docs)
            den += w * dcg_list(ideal_docs, labels, cut, b, gain)
    if not normalise:
        return tot
    return tot / den if den > 0 else float("nan")


def session_rbp(session, labels, p: float = 0.8, b: float = 0.8, max_grade: float = 1.0,
                k: int | None = None) -> float:
    """Session RBP under the user model of Lipani, Carterette and Yilmaz (ICTIR 2019): after each
    examined document the user goes on with probability ``p``; one who goes on moves down the
    same list with probability ``b`` and otherwise reformulates (goes to the next query's top).
    The probability of examining rank k of query m is (p(1-b)/(1-pb))^(m-1) (pb)^(k-1), so
    sRBP = (1 - p) sum_m sum_k (p(1-b)/(1-pb))^(m-1) (pb)^(k-1) g_{m,k},
    g = min(grade, max_grade) / max_grade. With b = 1 and one query it is RBP(p). Not normalised:
    an endless session of fully relevant results scores 1."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"session_rbp: persistence p must be in (0, 1), got {p}")
    if not 0.0 <= b <= 1.0:
        raise ValueError(f"session_rbp: b must be in [0, 1], got {b}")
    a = p * (1 - b) / (1 - p * b)
    total = 0.0
    for m, q in enumerate(_as_queries(session)):
        docs = q.docs[:k] if k is not None else q.docs
        for r, d in enumerate(docs):
            g = min(_grade(labels, d), max_grade) / max_grade
            total += a ** m * (p * b) ** r * g
    return (1 - p) * total


def u_measure(gains, positions, L: float = 1000.0) -> float:
    """U-measure (Sakai & Dou, SIGIR 2013): sum_i g_i max(0, 1 - pos_i / L) for items with gain
    g_i read after pos_i characters of the trailtext; L = 1000 as in cwl_eval."""
    if L <= 0:
        raise ValueError(f"u_measure: L must be > 0, got {L}")
    return sum(float(g) * max(0.0, 1.0 - float(pos) / L) for g, pos in zip(gains, positions))


def click_session_labels(session, qrels=None, enhance: bool = True,
                         dwell_thresholds: tuple[float, ...] | None = None) -> dict:
    """Session-level labels: ``qrels`` where given (clicks then change nothing); else click-derived
    under NUM's assumption A2 (Chen, Dou, Mao 2024): a document clicked anywhere in the session is
    relevant for the whole session, also where it was shown and skipped. Grade 1 per click, or,
    with ``dwell_thresholds`` (t_1 < t_2 < ...), 1 + the number of thresholds its longest dwell
    reaches. ``enhance=False`` is only meaningful to :func:`session_trail` (labels then hold per
    query and rank, see there); here it returns the same session-level dict."""
    if qrels is not None:
        return {str(d): float(g) for d, g in qrels.items()}
    out: dict[str, float] = {}
    for q in _as_queries(session):
        if q.clicks is None:
            raise ValueError("click_session_labels: a query has no click data and no qrels "
                             "were given; pass qrels or clicks for every query")
        for r, (d, c) in enumerate(zip(q.docs, q.clicks)):
            if not c:
                continue
            g = 1.0
            if dwell_thresholds is not None:
                if q.dwell is None:
                    raise ValueError("click_session_labels: dwell_thresholds need dwell times")
                g = 1.0 + sum(q.dwell[r] >= t for t in dwell_thresholds)
            out[d] = max(out.get(d, 0.0), g)
    return out


def _examined(q: SessionQuery, depth, no_click_depth) -> int:
    n = len(q.docs)
    if depth == "full":
        return n
    if isinstance(depth, int) and not isinstance(depth, bool):
        return min(depth, n)
    if depth == "last_click":
        if q.clicks is None:
            raise ValueError("depth='last_click' needs click data for every query; use "
                             "depth='full' or an integer depth for a log without clicks")
        clicked = [r for r, c in enumerate(q.clicks) if c]
        if clicked:
            return clicked[-1] + 1
        return n if no_click_depth is None else min(int(no_click_depth), n)
    raise ValueError(f"depth must be 'last_click', 'full' or an int, got {depth!r}")


def session_trail(session, labels=None, *, c_q: float = 150.0, c_d: float = 0.0,
                  snippet_cost: float = 150.0, depth="last_click",
                  no_click_depth: int | None = None, reformulation_cost: bool = True,
                  enhance: bool = True, gain: str = "exp",
                  dwell_thresholds: tuple[float, ...] | None = None):
    """The session read as one trailtext (NUM, Chen, Dou, Mao 2024, after Sakai & Dou 2013).

    Queries in order; every query after the first adds the reformulation cost ``c_q`` (none with
    ``reformulation_cost=False``); each examined result adds its snippet cost (``snippet_len`` if
    the query has it, else ``snippet_cost``) and a clicked one also ``c_d``. Examined depth:
    ``"last_click"`` (the last clicked rank; a query without a click is read to
    ``no_click_depth``, the whole list if None), ``"full"`` or an int. A document's gain counts
    the first time it is credited; repeats only cost. Labels: ``labels`` (qrels) if given, else
    click-derived (:func:`click_session_labels`); with click labels and ``enhance=False`` a
    document is relevant only where it was clicked (the per-query reading NUM's A2 replaces).

    Returns ``(items, labels)``: items are ``(doc, gain, pos)`` with ``pos`` = characters read
    before the item; ``labels`` the session labels used.
    """
    queries = _as_queries(session)
    per_click = labels is None and not enhance
    if labels is None:
        labels = click_session_labels(queries, None, dwell_thresholds=dwell_thresholds)
    labels = {str(d): float(g) for d, g in labels.items()}
    pos, items, credited = 0.0, [], set()
    for j, q in enumerate(queries):
        if j > 0 and reformulation_cost:
            pos += c_q
        for r in range(_examined(q, depth, no_click_depth)):
            d = q.docs[r]
            clicked = bool(q.clicks[r]) if q.clicks is not None else False
            rel = _grade(labels, d) if (not per_click or clicked) else 0.0
            g = 0.0
            if rel > 0 and d not in credited:
                g = _gain_of(rel, gain)
                credited.add(d)
            items.append((d, g, pos))
            pos += q.snippet_len[r] if q.snippet_len is not None else snippet_cost
            if clicked:
                pos += c_d
    return items, labels


def _snippet_costs(queries, snippet_cost) -> dict:
    cost = {}
    for q in queries:
        for r, d in enumerate(q.docs):
            if d not in cost:
                cost[d] = q.snippet_len[r] if q.snippet_len is not None else snippet_cost
    return cost


def ideal_trail(labels, doc_cost: dict | None = None, *, c_d: float = 0.0,
                snippet_cost: float = 150.0, gain: str = "exp"):
    """NUM's ideal session (A1): one query listing every relevant document by grade (ties: the
    shorter snippet first, then the id), no reformulation, each read and clicked. Items as in
    :func:`session_trail`."""
    doc_cost = doc_cost or {}
    docs = sorted((d for d, g in labels.items() if float(g) > 0),
                  key=lambda d: (-float(labels[d]), doc_cost.get(d, snippet_cost), str(d)))
    pos, items = 0.0, []
    for d in docs:
        items.append((d, _gain_of(float(labels[d]), gain), pos))
        pos += doc_cost.get(d, snippet_cost) + c_d
    return items


def num(session, labels=None, *, L: float = 1000.0, c_q: float = 150.0, c_d: float = 0.0,
        snippet_cost: float = 150.0, depth="last_click", no_click_depth: int | None = None,
        reformulation_cost: bool = True, enhance: bool = True, normalise: bool = True,
        gain: str = "exp", dwell_thresholds: tuple[float, ...] | None = None) -> float:
    """Normalized U-measure of a session (Chen, Dou, Mao, arXiv 2401.12445):
    U(actual trailtext) / U(ideal trailtext), see :func:`session_trail` and :func:`ideal_trail`.
    NaN when the session has no relevant document (skip such sessions and count them).
    ``normalise=False`` returns the unnormalised U of the session trailtext (the U-measure of
    Sakai & Dou over the whole session)."""
    queries = _as_queries(session)
    items, lab = session_trail(queries, labels, c_q=c_q, c_d=c_d, snippet_cost=snippet_cost,
                               depth=depth, no_click_depth=no_click_depth,
                               reformulation_cost=reformulation_cost, enhance=enhance, gain=gain,
                               dwell_thresholds=dwell_thresholds)
    u = u_measure([g for _, g, _ in items], [p for _, _, p in items], L)
    if not normalise:
        return u
    ideal = ideal_trail(lab, _snippet_costs(queries, snippet_cost), c_d=c_d,
                        snippet_cost=snippet_cost, gain=gain)
    u_ideal = u_measure([g for _, g, _ in ideal], [p for _, _, p in ideal], L)
    return u / u_ideal if u_ideal > 0 else float("nan")
