"""TREC-style relevance data: topics, graded qrels, an optional run and passage texts.

This module owns the ``trec`` loader. A folder holds ``topics*.txt`` (``qid<TAB>text``) and
``qrels*.txt`` (``qid iter docid grade``), optionally a run (``*trec_results*.txt``, ``*.run``:
``qid Q0 docid rank score tag``) and a BM25 JSON (``bm25_retrieve_results*.json``: a list of
``{"query", "hits": [{"qid", "docid", "rank", "score", "content"}]}``) whose passage texts become
the items. Without a run file, the JSON's hits are used as the run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from llmrec.data.config import DataConfig
from llmrec.data.generic import (
    WHITESPACE, find_file, make_table, read_delimited, read_json, read_text, require_folder,
)
from llmrec.data.tables import RecData
from llmrec.errors import DataError

log = logging.getLogger(__name__)

RUN_PATTERNS = ("*trec_results*.txt", "*.run", "run*.txt")


def _topics(path: Path) -> pd.DataFrame:
    # parsed by hand: query text may itself contain tabs or quotes, only the first tab splits
    ids, texts, seen = [], [], {}
    for line_no, line in enumerate(read_text(path).split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        qid, sep, text = line.partition("\t")
        if not sep or not qid.strip() or not text.strip():
            raise DataError(f"{path}, line {line_no}: expected 'query id<TAB>query text', found "
                            f"{line[:200]!r}; fix or remove that line")
        qid = qid.strip()
        if qid in seen:
            raise DataError(f"{path}, line {line_no}: query id {qid!r} appears again (first on "
                            f"line {seen[qid]}); remove the duplicate")
        seen[qid] = line_no
        ids.append(qid)
        texts.append(text.strip())
    return pd.DataFrame({"query_id": ids, "text": texts})


def _judgments(path: Path) -> pd.DataFrame:
    rows = read_delimited(path, sep=WHITESPACE, quoted=False,
                          names=["query_id", "iteration", "doc_id", "grade"])
    return pd.DataFrame({
        "query_id": rows.ids("query_id", "query id").to_numpy(dtype=object),
        "doc_id": rows.ids("doc_id", "document id").to_numpy(dtype=object),
        "grade": rows.numbers("grade", "grade", integer=True, lo=-128, hi=127)
        .to_numpy(dtype="int64").astype("int8"),
    })


def _run(path: Path) -> pd.DataFrame:
    rows = read_delimited(path, sep=WHITESPACE, quoted=False,
                          names=["query_id", "q0", "doc_id", "rank", "score", "tag"])
    return pd.DataFrame({
        "query_id": rows.ids("query_id", "query id").to_numpy(dtype=object),
        "doc_id": rows.ids("doc_id", "document id").to_numpy(dtype=object),
        "rank": rows.numbers("rank", "rank", integer=True).to_numpy(dtype="int64"),
        "score": rows.numbers("score", "score").to_numpy(dtype="float64"),
        "tag": rows.text("tag").to_numpy(dtype=object),
    })


def _bm25_json(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(items, run) from a BM25 retrieval dump; the first text seen for a docid wins."""
    data = read_json(path, "expected a list of {query, hits: [...]} objects")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of {{query, hits}} objects, found "
                        f"{type(data).__name__}; check that this is a BM25 retrieval dump")
    texts: dict[str, str] = {}
    run = {"query_id": [], "doc_id": [], "rank": [], "score": []}
    for i, entry in enumerate(data, 1):
        hits = entry.get("hits") if isinstance(entry, dict) else None
        if not isinstance(hits, list):
            raise DataError(f"{path}: entry {i} has no 'hits' list; each entry should be "
                            f"{{query, hits: [...]}}")
        for j, hit in enumerate(hits, 1):
            if not isinstance(hit, dict) or "docid" not in hit or "content" not in hit:
                raise DataError(f"{path}: entry {i}, hit {j} lacks docid or content; each hit "
                                f"should be {{qid, docid, rank, score, content}}")
            doc = str(hit["docid"])
            texts.setdefault(doc, str(hit["content"]))
            if "qid" in hit:
                try:
                    rank, score = int(hit.get("rank", j)), float(hit.get("score", float("nan")))
                except (TypeError, ValueError):
                    raise DataError(f"{path}: entry {i}, hit {j} has a non-numeric rank or score "
                                    f"({hit.get('rank')!r}, {hit.get('score')!r}); fix that hit")
                run["query_id"].append(str(hit["qid"]))
                run["doc_id"].append(doc)
                run["rank"].append(rank)
                run["score"].append(score)
    items = pd.DataFrame({"item_id": list(texts), "title": "", "text": list(texts.values())})
    run_df = pd.DataFrame(run).astype({"rank": "int64", "score": "float64"})
    run_df["tag"] = path.stem
    return items, run_df


def load_trec(cfg: DataConfig) -> RecData:
    """A TREC relevance folder: queries, judgments, and optional run and passage texts."""
    folder = require_folder(cfg, "a folder with topics*.txt and qrels*.txt (optionally a "
                            "*trec_results*.txt run and a bm25_retrieve_results*.json)")
    topics_path = find_file(folder, ["topics*.txt", "topics*.tsv"], "topics file",
                            dataset=cfg.name)
    qrels_path = find_file(folder, ["qrels*.txt", "qrels*"], "qrels file", dataset=cfg.name)
    run_path = find_file(folder, RUN_PATTERNS, "run file", required=False)
    json_path = find_file(folder, ["bm25_retrieve_results*.json"], "BM25 results JSON",
                          required=False)

    queries = _topics(topics_path)
    judgments = _judgments(qrels_path)
    unknown = ~judgments["query_id"].isin(queries["query_id"])
    if unknown.any():
        log.warning("%s: %d judgments are for %d queries missing from %s", qrels_path.name,
                    int(unknown.sum()), judgments.loc[unknown, "query_id"].nunique(),
                    topics_path.name)
    tables = {"queries": make_table(queries), "judgments": make_table(judgments)}
    files = {"queries": topics_path.name, "judgments": qrels_path.name}
    run = None
    if json_path is not None:
        items, json_run = _bm25_json(json_path)
        tables["items"] = make_table(items)
        files["items"] = json_path.name
        if run_path is None and len(json_run):
            run = json_run
            files["run"] = json_path.name
    if run_path is not None:
        run = _run(run_path)
        files["run"] = run_path.name
    if run is not None:
        tables["run"] = make_table(run)
    return RecData(name=cfg.name, tables=tables, source=str(folder), info={"files": files})
