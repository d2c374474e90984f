"""The item catalog of a conversational recommender: titles, item text and dense search.

The catalog owns three things every other part of the stage relies on:

- **title identity**: :func:`norm_title` maps the many spellings of a title ("Matrix, The (1999)",
  "the matrix", "The Matrix") to one key, so "was the target recommended?" is a lookup, not a
  judgement left to an LLM; :meth:`Catalog.resolve` maps a title the agent wrote to catalog items;
- **item text and vectors**: one text per item (title, genres, tags, plot, people) embedded with a
  sentence-transformers model (all-MiniLM-L6-v2 by default), unit-normalised, cached on disk by a
  content hash of the model and the texts;
- **search**: the top-k items for free-text queries, exact (one matrix product; fine up to about
  100k items) or through an inverted-file index (IVF: spherical k-means lists, ``ivf_probe`` lists
  scanned per query) for larger catalogs. Both are plain numpy, so no extra dependency is needed.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from llmrec.config import option

log = logging.getLogger(__name__)


@dataclass
class CatalogConfig:
    """How item text is embedded and searched."""

    embedder: str = option("minilm", help="sentence-transformers model: 'minilm' (the packaged "
                                          "all-MiniLM-L6-v2) or a local folder")
    index: Literal["auto", "exact", "ivf"] = option(
        "auto", help="search index: exact (brute force), ivf (approximate inverted-file index) or "
                     "auto (exact below ann_threshold items, ivf above)")
    ann_threshold: int = option(100_000, help="auto: catalogs with at least this many items use ivf")
    ivf_lists: int = option(0, help="ivf: number of k-means lists (0 = about 4 * sqrt(items))")
    ivf_probe: int = option(16, help="ivf: lists scanned per query (more = better recall, slower)")
    top_k: int = option(5, help="results returned by the agent's Search[query]")
    batch_size: int = option(128, help="texts per embedding batch")
    device: str = option("auto", help="embedding device: auto (cuda if available), cpu, cuda")
    cache: bool = option(True, help="cache item vectors under LLMREC_HOME/crs/embeddings, keyed "
                                    "by a hash of the embedder and the item texts")
    max_text_chars: int = option(600, help="item text is cut to this many characters before "
                                           "embedding")

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError("top_k must be >= 1")
        if self.ivf_probe < 1:
            raise ValueError("ivf_probe must be >= 1")


# --------------------------------------------------------------------------- titles

_PARENS = re.compile(r"\([^()]*\)")
_YEAR = re.compile(r"\((\d{4})\)")
# MovieLens and ReDial write leading articles at the end ("Matrix, The"), English and foreign ones
_TRAILING_ARTICLE = re.compile(r",\s*(the|a|an|les|la|le|l'|il|el|los|las|die|der|das)\s*$")
_LEADING_ARTICLE = re.compile(r"^(the|a|an) ")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def norm_title(title: str) -> str:
    """A title's identity key: lower case, no accents, no parenthesised parts (years, a.k.a. and
    original-language titles), trailing articles moved back and then dropped, punctuation removed.

    >>> norm_title("City of Lost Children, The (Cité des enfants perdus, La) (1995)")
    'city of lost children'
    >>> norm_title("the Matrix!")
    'matrix'
    """
    t = unicodedata.normalize("NFKD", str(title))
    t = "".join(c for c in t if not unicodedata.combining(c)).lower()
    t = _PARENS.sub(" ", t).strip()
    m = _TRAILING_ARTICLE.search(t)
    if m:
        t = f"{m.group(1)} {t[:m.start()]}"
    t = t.replace("&", " and ")
    t = _NON_ALNUM.sub(" ", t).strip()
    return _LEADING_ARTICLE.sub("", t)


def title_year(title: str) -> int | None:
    """The year written as "(1995)" in a title, if any."""
    years = _YEAR.findall(str(title))
    return int(years[-1]) if years else None


def norm_text(text: str) -> str:
    """Free text normalised like titles (without moving articles), for substring matching."""
    t = unicodedata.normalize("NFKD", str(text))
    t = "".join(c for c in t if not unicodedata.combining(c)).lower().replace("&", " and ")
    return _NON_ALNUM.sub(" ", t).strip()


def distinctive(key: str) -> bool:
    """Whether a normalised title is specific enough to be found in free text.

    One short word ("up", "heat", "it") occurs in ordinary sentences, so free-text mentions count
    only for titles of two or more words or one word of at least six letters; recommendations
    in ``Recommend[...]`` are matched exactly whatever their length.
    """
    return len(key.split()) >= 2 or len(key) >= 6


def mentions(key: str, text: str) -> bool:
    """Whether normalised title ``key`` occurs in ``text`` as whole words."""
    if not key:
        return False
    return f" {key} " in f" {norm_text(text)} "


# --------------------------------------------------------------------------- items

@dataclass
class Item:
    """One catalog entry."""

    item_id: str
    title: str
    genres: list[str] = field(default_factory=list)
    year: int | None = None
    tags: list[str] = field(default_factory=list)
    plot: str = ""
    people: list[str] = field(default_factory=list)

    def text(self, max_chars: int = 600) -> str:
        """The text that is embedded and shown: title, genres, tags, plot, people."""
        parts = [self.title]
        if self.genres:
            parts.append("Genres: " + ", ".join(self.genres))
        if self.tags:
            parts.append("Tags: " + ", ".join(self.tags[:12]))
        if self.plot:
            parts.append(self.plot)
        if self.people:
            parts.append("With: " + ", ".join(self.people[:6]))
        return ". ".join(parts)[:max_chars]

    def short(self) -> str:
        """One line for search results: the title and its genres."""
        return f"{self.title} ({', '.join(self.genres[:4])})" if self.genres else self.title


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    try:
        return [str(v) for v in list(value) if v is not None and str(v) != ""]
    except TypeError:
        return []


def items_from_frame(df) -> list[Item]:
    """Catalog items from a canonical ``items`` table (pandas), whatever text columns it has."""
    out = []
    cols = set(df.columns)
    for row in df.to_dict("records"):
        year = row.get("year")
        try:
            year = int(year) if year is not None and not np.isnan(float(year)) else None
        except (TypeError, ValueError):
            year = None
        genres = _as_list(row.get("genres")) if "genres" in cols else []
        if genres == ["(no genres listed)"]:
            genres = []
        people = []
        for c in ("director", "star"):
            if c in cols:
                people += _as_list(row.get(c))
        out.append(Item(item_id=str(row["item_id"]), title=str(row["title"]).strip(),
                        genres=genres, year=year,
                        tags=_as_list(row.get("tags")) if "tags" in cols else [],
                        plot=str(row.get("plot") or "") if "plot" in cols else "",
                        people=people))
    return out


# --------------------------------------------------------------------------- indexes

def _topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of a score matrix, best first (ties broken by lower index)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    # lexsort: primary key the score (descending), secondary the index, for a stable order
    order = np.lexsort((part, -part_scores), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(scores, idx, axis=1)


class ExactIndex:
    """Brute-force inner product over unit vectors (cosine similarity)."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_i, out_s = [], []
        # blocks of queries bound the temporary score matrix for large catalogs
        for start in range(0, len(queries), 256):
            i, s = _topk(queries[start:start + 256] @ self.vectors.T, k)
            out_i.append(i)
            out_s.append(s)
        return np.concatenate(out_i), np.concatenate(out_s)


class IVFIndex:
    """Inverted-file index: items are grouped by their nearest of ``n_lists`` centroids
    (spherical k-means); a query scans only the items of its ``n_probe`` nearest lists."""

    kind = "ivf"

    def __init__(self, vectors: np.ndarray, n_lists: int = 0, n_probe: int = 16, seed: int = 0,
                 iterations: int = 10) -> None:
        n = len(vectors)
        self.vectors = vectors
        self.n_lists = max(1, min(n, n_lists or int(4 * np.sqrt(n))))
        self.n_probe = min(n_probe, self.n_lists)
        rng = np.random.default_rng(seed)
        # k-means on a sample is enough for list assignment and keeps the build fast
        sample = vectors[rng.choice(n, size=min(n, 256 * self.n_lists), replace=False)]
        cent = sample[rng.choice(len(sample), size=self.n_lists, replace=False)].copy()
        for _ in range(iterations):
            assign = np.argmax(sample @ cent.T, axis=1)
            for c in range(self.n_lists):
                members = sample[assign == c]
                if len(members):
                    v = members.sum(0)
                    cent[c] = v / max(np.linalg.norm(v), 1e-12)
        self.centroids = cent
        assign = np.concatenate([np.argmax(vectors[s:s + 4096] @ cent.T, axis=1)
                                 for s in range(0, n, 4096)])
        order = np.argsort(assign, kind="stable")
        self.members = order
        self.offsets = np.searchsorted(assign[order], np.arange(self.n_lists + 1))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        probe, _ = _topk(queries @ self.centroids.T, self.n_probe)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for q in range(len(queries)):
            cand = np.concatenate([self.members[self.offsets[c]:self.offsets[c + 1]]
                                   for c in probe[q]])
            if not len(cand):
                continue
            s = self.vectors[cand] @ queries[q]
            i, ss = _topk(s[None, :], k)
            ids[q, :i.shape[1]] = cand[i[0]]
            scores[q, :i.shape[1]] = ss[0]
        return ids, scores


# --------------------------------------------------------------------------- the catalog

@dataclass
class Hit:
    index: int
    score: float


class Catalog:
    """Items plus their vectors, a title lookup and a search index.

    ``vectors`` may be given (tests, or a cache the caller manages); otherwise they are computed
    with the configured embedder on first use.
    """

    def __init__(self, items: Sequence[Item], cfg: CatalogConfig | None = None, *,
                 vectors: np.ndarray | None = None, name: str = "") -> None:
        if not items:
            from llmrec.errors import DataError

            raise DataError("the catalog is empty: the dataset's items table has no rows")
        self.cfg = cfg or CatalogConfig()
        self.items = list(items)
        self.name = name
        self.by_id = {it.item_id: i for i, it in enumerate(self.items)}
        self.by_title: dict[str, list[int]] = {}
        for i, it in enumerate(self.items):
            self.by_title.setdefault(norm_title(it.title), []).append(i)
        self._vectors = vectors
        self._index: ExactIndex | IVFIndex | None = None
        self._model = None

    @classmethod
    def from_recdata(cls, data, cfg: CatalogConfig | None = None) -> "Catalog":
        return cls(items_from_frame(data.df("items")), cfg, name=data.name)

    def __len__(self) -> int:
        return len(self.items)

    # -- embedding -------------------------------------------------------------------------------
    def _embedder(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            from llmrec.models import resolve_embedder

            path = resolve_embedder(self.cfg.embedder)
            device = self.cfg.device
            if device == "auto":
                import torch

                device = "cuda" if torch.cuda.is_available() else "cpu"
            self._model = SentenceTransformer(str(path), device=device)
            self._model_path = Path(path)
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors of ``texts``."""
        model = self._embedder()
        if not texts:
            return np.zeros((0, model.get_sentence_embedding_dimension()), dtype=np.float32)
        vecs = model.encode(list(texts), batch_size=self.cfg.batch_size, convert_to_numpy=True,
                            normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)

    @property
    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = self._item_vectors()
        return self._vectors

    def _item_vectors(self) -> np.ndarray:
        from llmrec.progress import progress

        texts = [it.text(self.cfg.max_text_chars) for it in self.items]
        cache_file = None
        if self.cfg.cache:
            from llmrec.artifacts import llmrec_home
            from llmrec.llm.identity import fingerprint_text, model_fingerprint

            self._embedder()
            key = fingerprint_text(model_fingerprint(self._model_path), texts)
            cache_file = llmrec_home() / "crs" / "embeddings" / f"{key}.npy"
            if cache_file.is_file():
                vecs = np.load(cache_file)
                if vecs.shape[0] == len(texts):
                    log.info("catalog vectors of %d items from cache %s", len(texts), cache_file)
                    return vecs
        log.info("embedding %d catalog items with %s", len(texts), self.cfg.embedder)
        step = max(self.cfg.batch_size * 8, 1)
        parts = []
        with progress(total=len(texts), desc="embed catalog", unit="item") as bar:
            for s in range(0, len(texts), step):
                parts.append(self.embed(texts[s:s + step]))
                bar.update(len(texts[s:s + step]))
        vecs = np.concatenate(parts)
        if cache_file is not None:
            from llmrec.artifacts import atomic_file

            with atomic_file(cache_file, "wb") as fh:
                np.save(fh, vecs)
        return vecs

    # -- search ------------------------------------------------------------------------------------
    @property
    def index(self):
        if self._index is None:
            kind = self.cfg.index
            if kind == "auto":
                kind = "ivf" if len(self.items) >= self.cfg.ann_threshold else "exact"
            if kind == "ivf":
                self._index = IVFIndex(self.vectors, self.cfg.ivf_lists, self.cfg.ivf_probe)
            else:
                self._index = ExactIndex(self.vectors)
            log.info("catalog %s: %d items, %s index", self.name, len(self.items), self._index.kind)
        return self._index

    def search(self, queries: Sequence[str], k: int | None = None) -> list[list[Hit]]:
        """The top-k items for each query (all queries embedded in one batch)."""
        if not queries:
            return []
        k = k or self.cfg.top_k
        ids, scores = self.index.search(self.embed(queries), k)
        return [[Hit(int(i), float(s)) for i, s in zip(row_i, row_s) if i >= 0]
                for row_i, row_s in zip(ids, scores)]

    # -- identity and similarity -----------------------------------------------------------------
    def resolve(self, title: str, prefer: Sequence[int] = ()) -> int | None:
        """The catalog index of a title the agent wrote, or None if no item has that title.

        Several items may share a normalised title (remakes, ReDial's duplicate entries): one whose
        year matches a year written in ``title`` wins, then one in ``prefer`` (e.g. the results the
        agent has just seen), then the first.
        """
        cands = self.by_title.get(norm_title(title), [])
        if not cands:
            return None
        year = title_year(title)
        if year is not None:
            same = [c for c in cands if self.items[c].year == year]
            cands = same or cands
        preferred = [c for c in cands if c in set(prefer)]
        return (preferred or cands)[0]

    def same_title(self, i: int, j: int) -> bool:
        return norm_title(self.items[i].title) == norm_title(self.items[j].title)

    def cosine(self, i: int, j: int) -> float:
        v = self.vectors
        return float(v[i] @ v[j])

    def genre_overlap(self, i: int, j: int) -> float:
        """Jaccard overlap of two items' genres (0 when either has none)."""
        a = {g.lower() for g in self.items[i].genres}
        b = {g.lower() for g in self.items[j].genres}
        if not a or not b:
            return 0.0
        return len(a & b) / len(a | b)
