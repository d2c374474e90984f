"""The two SSRA domains: seed labels, unlabelled pairs and documents, held-out evaluation pairs.

A :class:`SynthTask` is what every later step reads:

``docs``        doc_id, text: every document any table refers to
``seed``        query_id, query, doc_id, grade: labelled seed pairs (train g; seed data of f and
                of the embedder)
``unlabelled``  query_id, query, doc_id: the "logs" that Stage 1 re-annotates with g
``pool``        doc_id: unlabelled documents Stage 2 writes queries for
``eval``        query_id, query, doc_id, grade: held-out queries and their judged candidates

**movies** (MovieLens ml-latest-small, the embedded default). A document is the movie's title,
genres and tags, plus its knowledge text when a knowledge cache holds one. Queries and labels come
from metadata, by this rule: a query is built from one *source* movie that has at least two genres,
a year and a tag. Its *key* attributes are the source's two rarest genres; its *non-key* attributes
are the source's decade and its (up to) two most common tags. The query reads e.g.
``"crime and film-noir movie from the 1940s, tagged: noir, dark"``. Any movie m is graded against
it by the attributes it shares:

- 3: both key genres and every non-key attribute (the source movie itself is always 3);
- 2: both key genres, some non-key attribute missing;
- 1: exactly one of the two key genres;
- 0: neither key genre.

Each query's candidates are the source plus a random sample of up to ``candidates_per_level[s]``
movies at each level s. Source movies are shuffled with ``split_seed`` and cut into seed, held-out
and "log" queries, so held-out queries are never seen in training.

**trec** (TREC DL19 passages, ``data.path``). Queries are split with ``split_seed`` into
``n_seed_queries`` seed queries and ``n_eval_queries`` held-out queries (0 = all the rest).
Candidates are each query's BM25 top-100 passages that have a judgment (unjudged passages have no
label). Seed pairs are the seed queries' judged candidates; the logs are the seed queries'
*unjudged* BM25 passages, plus ``cross_log_pairs`` pairs of a seed query with a passage retrieved
for another seed query (so that some documents meet queries of several levels); the Stage-2
pool is the seed queries' BM25 passages that are not among the held-out queries' passages, so no
held-out document is used in training, even unlabelled.
"""

from __future__ import annotations

import json
import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llmrec.config import option
from llmrec.errors import ConfigError, DataError

log = logging.getLogger(__name__)

TABLES = ("docs", "seed", "unlabelled", "pool", "eval")


@dataclass
class SynthDataConfig:
    """Which domain the seed labels, documents and held-out queries come from."""

    domain: Literal["movies", "trec"] = option(
        "movies", help="movies: bundled MovieLens ml-latest-small with metadata-derived labels; "
                       "trec: a TREC DL folder (topics, qrels, BM25 run and passages) at path")
    path: str | None = option(
        None, help="trec: the folder (e.g. ../shared/data/trec-dl19); movies: a MovieLens "
                   "latest-small folder, or unset for the bundled copy")
    n_seed_queries: int = option(20, help="queries whose labels are the seed data")
    n_eval_queries: int = option(
        20, help="held-out queries for evaluation; trec: 0 = every query not used as seed")
    n_log_queries: int = option(
        20, help="movies: extra queries whose candidate pairs form the unlabelled logs of Stage 1 "
                 "(trec uses the seed queries' unjudged BM25 passages instead)")
    max_unlabelled_pairs: int = option(2000, help="cap on the unlabelled log pairs (random subset)")
    cross_log_pairs: int = option(
        0, help="trec: extra log pairs joining a seed query with a random BM25 passage of "
                "another seed query (DL19 passages are retrieved by one query each; without "
                "these, Stage 1 finds almost no document with queries at two levels)")
    candidates_per_level: list[int] = option(
        [8, 4, 4, 2], help="movies: candidates sampled per query at levels 0,1,2,3 (the source "
                           "movie is added as a level-3 candidate)")
    split_seed: int = option(0, help="seed of the query split and of every sample drawn here")
    knowledge_cache: str | None = option(
        None, help="movies: knowledge cache folder whose item entries are appended to each "
                   "document ('default' = the default cache folder); unset = metadata only")
    knowledge_template: str = option("item_movie", help="movies: template name of the knowledge "
                                     "entries to append")

    def __post_init__(self) -> None:
        if self.n_seed_queries < 2:
            raise ValueError("n_seed_queries must be >= 2 (g needs a calibration query)")
        if self.n_eval_queries < 0 or self.n_log_queries < 0:
            raise ValueError("n_eval_queries and n_log_queries must be >= 0")
        if len(self.candidates_per_level) != 4 or min(self.candidates_per_level) < 0:
            raise ValueError("candidates_per_level needs 4 non-negative counts (levels 0..3)")


@dataclass
class SynthTask:
    """The tables of one domain (pandas DataFrames), plus a description of how they were made."""

    name: str
    docs: Any
    seed: Any
    unlabelled: Any
    pool: Any
    eval: Any
    info: dict[str, Any] = field(default_factory=dict)

    def doc_text(self) -> dict[str, str]:
        return dict(zip(self.docs["doc_id"], self.docs["text"]))

    def save(self, path: str | Path, config: Any = None, **provenance: Any) -> Path:
        from llmrec.synth.io import save_dataset

        return save_dataset({t: getattr(self, t) for t in TABLES}, path, config,
                            stage="task", task=self.name, info=self.info, **provenance)

    @classmethod
    def load(cls, path: str | Path) -> "SynthTask":
        from llmrec.synth.io import load_dataset_dir, meta_of

        dd = load_dataset_dir(path)
        missing = [t for t in TABLES if t not in dd]
        if missing:
            raise DataError(f"{path} is not a saved SSRA task (no {', '.join(missing)} table)")
        meta = meta_of(path) or {}
        return cls(name=meta.get("task", Path(path).name),
                   **{t: dd[t].to_pandas() for t in TABLES}, info=meta.get("info", {}))

    def summary(self) -> dict[str, Any]:
        from llmrec.synth.metrics import level_balance

        return {
            "docs": len(self.docs),
            "seed_queries": int(self.seed["query_id"].nunique()),
            "seed_pairs": len(self.seed),
            "seed_levels": level_balance(self.seed["grade"]),
            "unlabelled_pairs": len(self.unlabelled),
            "pool_docs": len(self.pool),
            "eval_queries": int(self.eval["query_id"].nunique()),
            "eval_pairs": len(self.eval),
            "eval_levels": level_balance(self.eval["grade"]),
        }


def build_task(cfg: SynthDataConfig) -> SynthTask:
    """The seed / unlabelled / pool / eval tables of ``cfg.domain``."""
    if cfg.domain == "movies":
        return _movies_task(cfg)
    if cfg.domain == "trec":
        return _trec_task(cfg)
    raise ConfigError(f"unknown synth domain {cfg.domain!r}; choose movies or trec")


# ------------------------------------------------------------------------------------------------
# movies
# ------------------------------------------------------------------------------------------------

_NO_GENRE = "(no genres listed)"


def _decade(year: Any) -> int | None:
    if year is None or (isinstance(year, float) and math.isnan(year)):
        return None
    return int(year) // 10 * 10


@dataclass(frozen=True)
class MovieQuery:
    """A query built from one source movie's attributes (see the module docstring)."""

    source: str
    key: tuple[str, str]
    decade: int
    tags: tuple[str, ...]

    @property
    def text(self) -> str:
        out = f"{self.key[0].lower()} and {self.key[1].lower()} movie from the {self.decade}s"
        if self.tags:
            out += ", tagged: " + ", ".join(self.tags)
        return out

    def grade(self, genres: set[str], decade: int | None, tags: set[str]) -> int:
        shared_key = sum(g in genres for g in self.key)
        if shared_key == 0:
            return 0
        if shared_key == 1:
            return 1
        non_key_ok = decade == self.decade and all(t in tags for t in self.tags)
        return 3 if non_key_ok else 2


def _movie_attrs(items) -> dict[str, tuple[set[str], int | None, set[str]]]:
    out = {}
    for item_id, genres, year, tags in zip(items["item_id"], items["genres"], items["year"],
                                           items["tags"]):
        gs = {str(g) for g in (genres if genres is not None else []) if g != _NO_GENRE}
        ts = {str(t).strip().lower() for t in (tags if tags is not None else []) if str(t).strip()}
        out[str(item_id)] = (gs, _decade(year), ts)
    return out


def movie_query(item_id: str, attrs, genre_freq: dict[str, int],
                tag_freq: dict[str, int]) -> MovieQuery | None:
    """The query of one source movie, or None when it lacks two genres, a year or a tag."""
    genres, decade, tags = attrs
    if len(genres) < 2 or decade is None or not tags:
        return None
    key = tuple(sorted(genres, key=lambda g: (genre_freq.get(g, 0), g))[:2])
    top_tags = tuple(sorted(tags, key=lambda t: (-tag_freq.get(t, 0), t))[:2])
    return MovieQuery(source=item_id, key=key, decade=decade,  # type: ignore[arg-type]
                      tags=top_tags)


def movie_document(title: str, genres, tags, knowledge: str | None = None) -> str:
    text = str(title)
    gs = [g for g in (genres if genres is not None else []) if g != _NO_GENRE]
    if len(gs):
        text += ". Genres: " + ", ".join(gs)
    ts = [str(t) for t in (tags if tags is not None else [])]
    if ts:
        text += ". Tags: " + ", ".join(ts[:10])
    text += "."
    if knowledge:
        text += " " + knowledge.strip()
    return text


def _knowledge_texts(cfg: SynthDataConfig) -> dict[str, str]:
    if not cfg.knowledge_cache:
        return {}
    from llmrec.knowledge.cache import KnowledgeCache, default_cache_dir

    root = default_cache_dir() if cfg.knowledge_cache == "default" else Path(cfg.knowledge_cache)
    if not root.is_dir():
        raise ConfigError(f"data.knowledge_cache: {root} does not exist; generate knowledge first "
                          f"or leave knowledge_cache unset")
    df = KnowledgeCache(root).read(entity="item", template=cfg.knowledge_template)
    out = {}
    for entity_id, texts, status in zip(df["entity_id"], df["field_texts"], df["status"]):
        if status in ("ok", "partial") and entity_id not in out:
            out[str(entity_id)] = " ".join(str(t) for t in texts if t)
    log.info("appending cached knowledge to %d movie documents", len(out))
    return out


def _movies_task(cfg: SynthDataConfig) -> SynthTask:
    import pandas as pd

    from llmrec.data.loaders import DataConfig, load_data

    data = load_data(DataConfig(name="ml-latest-small", path=cfg.path))
    items = data.df("items")
    attrs = _movie_attrs(items)
    genre_freq: dict[str, int] = {}
    tag_freq: dict[str, int] = {}
    for gs, _, ts in attrs.values():
        for g in gs:
            genre_freq[g] = genre_freq.get(g, 0) + 1
        for t in ts:
            tag_freq[t] = tag_freq.get(t, 0) + 1
    rng = random.Random(cfg.split_seed)
    sources = [q for q in (movie_query(i, attrs[i], genre_freq, tag_freq) for i in sorted(attrs))
               if q is not None]
    rng.shuffle(sources)
    need = cfg.n_seed_queries + cfg.n_eval_queries + cfg.n_log_queries
    if len(sources) < need:
        raise DataError(f"only {len(sources)} movies qualify as query sources; ask for fewer "
                        f"than {need} queries")
    seed_q = sources[:cfg.n_seed_queries]
    eval_q = sources[cfg.n_seed_queries:cfg.n_seed_queries + cfg.n_eval_queries]
    log_q = sources[cfg.n_seed_queries + cfg.n_eval_queries:need]
    ids = sorted(attrs)

    def candidates(q: MovieQuery) -> list[tuple[str, int]]:
        by_level: dict[int, list[str]] = {0: [], 1: [], 2: [], 3: []}
        for i in ids:
            if i != q.source:
                by_level[q.grade(*attrs[i])].append(i)
        out = [(q.source, 3)]
        for level, want in enumerate(cfg.candidates_per_level):
            pool = by_level[level]
            out.extend((i, level) for i in rng.sample(pool, min(want, len(pool))))
        return out

    def pairs(queries: list[MovieQuery]) -> pd.DataFrame:
        rows = [{"query_id": f"m{q.source}", "query": q.text, "doc_id": d, "grade": g}
                for q in queries for d, g in candidates(q)]
        return pd.DataFrame(rows, columns=["query_id", "query", "doc_id", "grade"])

    seed, evl, logs = pairs(seed_q), pairs(eval_q), pairs(log_q)
    logs = logs.drop(columns=["grade"])  # the logs are unlabelled: g has to label them
    if len(logs) > cfg.max_unlabelled_pairs:
        logs = logs.sample(cfg.max_unlabelled_pairs, random_state=cfg.split_seed)
    used = set(seed["doc_id"]) | set(evl["doc_id"]) | set(logs["doc_id"])
    held_out = set(evl["doc_id"])
    # Stage 2 writes queries for movies that no held-out query has as a candidate
    pool_ids = [i for i in ids if i not in held_out and attrs[i][0]]
    pool = pd.DataFrame({"doc_id": pool_ids})
    knowledge = _knowledge_texts(cfg)
    keep = used | set(pool_ids)
    sub = items[items["item_id"].astype(str).isin(keep)]
    docs = pd.DataFrame({
        "doc_id": sub["item_id"].astype(str).tolist(),
        "text": [movie_document(t, g, tg, knowledge.get(str(i)))
                 for i, t, g, tg in zip(sub["item_id"], sub["title"], sub["genres"], sub["tags"])],
    })
    info = {"domain": "movies", "source": data.source, "split_seed": cfg.split_seed,
            "label_rule": "key = the source's two rarest genres; non-key = its decade and two "
                          "most common tags; 3 all key + all non-key, 2 all key, 1 one key, "
                          "0 no key",
            "knowledge_docs": len(knowledge)}
    return SynthTask("movies", docs=docs, seed=seed, unlabelled=logs.reset_index(drop=True),
                     pool=pool, eval=evl, info=info)


# ------------------------------------------------------------------------------------------------
# trec
# ------------------------------------------------------------------------------------------------

def _trec_task(cfg: SynthDataConfig) -> SynthTask:
    import pandas as pd

    from llmrec.data.loaders import DataConfig, load_data

    if not cfg.path:
        raise ConfigError("data.path must name the TREC folder for domain=trec "
                          "(e.g. ../shared/data/trec-dl19)")
    data = load_data(DataConfig(name="trec", path=cfg.path))
    for table in ("queries", "judgments", "items", "run"):
        if not data.has(table):
            raise DataError(f"{cfg.path}: the trec domain needs a {table!r} table (topics, qrels, "
                            f"and a BM25 run with passage texts)")
    queries = data.df("queries")
    qrels = data.df("judgments")
    run = data.df("run")
    items = data.df("items")
    have_text = set(items["item_id"].astype(str))
    run = run[run["doc_id"].isin(have_text)]
    judged = run.merge(qrels, on=["query_id", "doc_id"], how="left")
    qtext = dict(zip(queries["query_id"], queries["text"]))
    usable = sorted(q for q in judged.loc[judged["grade"].notna(), "query_id"].unique()
                    if q in qtext)
    rng = random.Random(cfg.split_seed)
    rng.shuffle(usable)
    if len(usable) < cfg.n_seed_queries + 1:
        raise DataError(f"{cfg.path}: only {len(usable)} judged queries; n_seed_queries="
                        f"{cfg.n_seed_queries} leaves none for evaluation")
    seed_ids = usable[:cfg.n_seed_queries]
    rest = usable[cfg.n_seed_queries:]
    eval_ids = rest if cfg.n_eval_queries == 0 else rest[:cfg.n_eval_queries]

    def labelled(qids: list[str]) -> pd.DataFrame:
        part = judged[judged["query_id"].isin(qids) & judged["grade"].notna()]
        part = part.sort_values(["query_id", "rank"])
        return pd.DataFrame({"query_id": part["query_id"].astype(str),
                             "query": part["query_id"].map(qtext),
                             "doc_id": part["doc_id"].astype(str),
                             "grade": part["grade"].clip(0, 3).astype(int)}).reset_index(drop=True)

    seed, evl = labelled(seed_ids), labelled(eval_ids)
    logs = judged[judged["query_id"].isin(seed_ids) & judged["grade"].isna()]
    logs = pd.DataFrame({"query_id": logs["query_id"].astype(str),
                         "query": logs["query_id"].map(qtext),
                         "doc_id": logs["doc_id"].astype(str)}).reset_index(drop=True)
    if len(logs) > cfg.max_unlabelled_pairs:
        logs = logs.sample(cfg.max_unlabelled_pairs, random_state=cfg.split_seed)
    if cfg.cross_log_pairs > 0:
        logs = pd.concat([logs, _cross_pairs(run, qrels, seed_ids, qtext, cfg, rng)],
                         ignore_index=True)
    held_out_docs = set(run.loc[run["query_id"].isin(eval_ids), "doc_id"])
    seed_docs = run.loc[run["query_id"].isin(seed_ids), "doc_id"].drop_duplicates()
    pool = pd.DataFrame({"doc_id": [d for d in seed_docs if d not in held_out_docs]})
    used = set(seed["doc_id"]) | set(evl["doc_id"]) | set(logs["doc_id"]) | set(pool["doc_id"])
    sub = items[items["item_id"].isin(used)]
    docs = pd.DataFrame({"doc_id": sub["item_id"].astype(str).tolist(),
                         "text": sub["text"].astype(str).tolist()})
    info = {"domain": "trec", "source": data.source, "split_seed": cfg.split_seed,
            "seed_query_ids": seed_ids, "eval_query_ids": eval_ids,
            "candidates": "judged passages of each query's BM25 top-100"}
    return SynthTask("trec", docs=docs, seed=seed, unlabelled=logs.reset_index(drop=True),
                     pool=pool, eval=evl, info=info)


def _cross_pairs(run, qrels, seed_ids: list[str], qtext: dict[str, str], cfg: SynthDataConfig,
                 rng: random.Random):
    """Unjudged (seed query B, passage retrieved for seed query A != B) pairs."""
    import pandas as pd

    lists = {q: run.loc[run["query_id"] == q, "doc_id"].tolist() for q in seed_ids}
    judged = set(zip(qrels["query_id"], qrels["doc_id"]))
    rows, seen = [], set()
    for _ in range(cfg.cross_log_pairs * 20):  # bounded: gives up on a tiny pool
        if len(rows) >= cfg.cross_log_pairs:
            break
        a, b = rng.sample(seed_ids, 2)
        if not lists[a]:
            continue
        d = rng.choice(lists[a])
        if (b, d) in judged or (b, d) in seen or d in lists[b]:
            continue
        seen.add((b, d))
        rows.append({"query_id": str(b), "query": qtext[b], "doc_id": str(d)})
    return pd.DataFrame(rows, columns=["query_id", "query", "doc_id"])


def describe(task: SynthTask) -> str:
    return json.dumps(task.summary(), indent=2)
