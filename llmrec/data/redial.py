"""ReDial loaders: raw dialogues (``redial``) and the processed evaluation turns (``redial-eval``).

This module owns how a ReDial conversation becomes a canonical ``dialogues`` row: one turn per
message in order (consecutive messages by the same worker stay separate turns, so turn counts
match the source), the speaker named by role (the initiator is the seeker), the mentioned movies,
and the seeker's own answers about them (``initiatorQuestions``: liked 1 -> liked, 0 -> disliked,
2 "did not say" -> neither). Message text is kept verbatim, ``@id`` movie references included;
the ids resolve through the items table.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from llmrec.data.config import DataConfig
from llmrec.data.generic import (
    find_file, make_table, read_delimited, read_json, read_jsonl, require_path,
    year_from_title,
)
from llmrec.data.tables import RecData
from llmrec.errors import DataError

log = logging.getLogger(__name__)

# ReDial's answer codes in initiatorQuestions / respondentQuestions.
LIKED, DISLIKED = 1, 0


def _as_dict(value, path: Path, line: int, key: str) -> dict:
    # ReDial writes an empty list instead of {} when a question form was not filled in
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and not value:
        return {}
    raise DataError(f"{path}, line {line}: {key} should be an object of movie id -> value, found "
                    f"{type(value).__name__}; fix or remove that line")


def _dialogue_rows(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    fix = "fix or remove that line (each line is one ReDial conversation)"
    records = read_jsonl(path, ("conversationId", "messages", "initiatorWorkerId",
                                "respondentWorkerId", "movieMentions"), fix)
    rows = []
    mention_titles: dict[str, str] = {}
    for rec in records:
        line = rec["_line"]
        seeker = rec["initiatorWorkerId"]
        mentions = _as_dict(rec["movieMentions"], path, line, "movieMentions")
        answers = _as_dict(rec.get("initiatorQuestions", {}), path, line, "initiatorQuestions")
        if not isinstance(rec["messages"], list):
            raise DataError(f"{path}, line {line}: messages should be a list; {fix}")
        turns = []
        for i, msg in enumerate(rec["messages"], 1):
            if not isinstance(msg, dict) or "text" not in msg or "senderWorkerId" not in msg:
                raise DataError(f"{path}, line {line}: message {i} lacks text or senderWorkerId; "
                                f"{fix}")
            role = "seeker" if msg["senderWorkerId"] == seeker else "recommender"
            turns.append({"speaker": role, "text": str(msg["text"])})
        for movie_id, title in mentions.items():
            if title:  # some ReDial mentions carry a null name
                mention_titles.setdefault(str(movie_id), str(title))
        liked, disliked, suggested = [], [], []
        for movie_id, answer in answers.items():
            if not isinstance(answer, dict):
                raise DataError(f"{path}, line {line}: initiatorQuestions[{movie_id!r}] should be "
                                f"an object with liked/seen/suggested; {fix}")
            if answer.get("liked") == LIKED:
                liked.append(str(movie_id))
            elif answer.get("liked") == DISLIKED:
                disliked.append(str(movie_id))
            if answer.get("suggested") == 1:
                suggested.append(str(movie_id))
        rows.append({
            "dialogue_id": str(rec["conversationId"]),
            "turns": turns,
            "mentioned": [str(m) for m in mentions],
            "liked": liked,
            "disliked": disliked,
            "suggested": suggested,
            "seeker_id": str(seeker),
            "recommender_id": str(rec["respondentWorkerId"]),
        })
    df = pd.DataFrame(rows, columns=["dialogue_id", "turns", "mentioned", "liked", "disliked",
                                     "suggested", "seeker_id", "recommender_id"])
    dup = df["dialogue_id"].duplicated()
    if dup.any():
        first = dup.idxmax()
        raise DataError(f"{path}, line {records[first]['_line']}: conversationId "
                        f"{df['dialogue_id'].iloc[first]!r} appears twice; remove the duplicate")
    return df, mention_titles


def load_redial(cfg: DataConfig) -> RecData:
    """ReDial conversations from ``{split}_data.jsonl`` (or a given .jsonl) + movie names."""
    expected = (f"a ReDial folder holding {cfg.split}_data.jsonl and movies_with_mentions.csv, "
                f"or a ReDial .jsonl file")
    path = require_path(cfg, expected)
    if path.is_dir():
        folder = path
        jsonl = find_file(folder, [f"{cfg.split}_data.jsonl"], f"ReDial {cfg.split} split",
                          dataset=cfg.name)
    else:
        folder, jsonl = path.parent, path
    dialogues, mention_titles = _dialogue_rows(jsonl)

    movies_path = folder / "movies_with_mentions.csv"
    if movies_path.is_file():
        m = read_delimited(movies_path)
        m.require_columns(["movieId", "movieName"],
                          "expected the ReDial header movieId,movieName,nbMentions")
        ids = m.ids("movieId", "movie id")
        m.check_unique("movieId", ids, "movie id")
        items = pd.DataFrame({"item_id": ids.to_numpy(dtype=object),
                              "title": m.text("movieName").to_numpy(dtype=object)})
        if "nbMentions" in m.df.columns:
            items["n_mentions"] = m.numbers("nbMentions", "mention count", integer=True,
                                            optional=True).array
    else:
        log.warning("%s has no movies_with_mentions.csv; item titles come from the dialogues' "
                    "movieMentions only", folder)
        items = pd.DataFrame({"item_id": pd.Series(dtype=object), "title": pd.Series(dtype=object)})
    # every mentioned id gets an item, so that joins on dialogues never lose a movie
    known = set(items["item_id"])
    extra = [i for i in mention_titles if i not in known]
    if extra:
        if movies_path.is_file():
            log.info("%d movies mentioned in %s are not in %s; titles taken from the dialogues",
                     len(extra), jsonl.name, movies_path.name)
        items = pd.concat([items, pd.DataFrame({"item_id": extra,
                                                "title": [mention_titles[i] for i in extra]})],
                          ignore_index=True)
    items["title"] = items["title"].astype(str).str.strip()
    items["year"] = year_from_title(items["title"]).array
    return RecData(name=cfg.name, source=str(jsonl),
                   tables={"dialogues": make_table(dialogues), "items": make_table(items)},
                   info={"files": {"dialogues": str(jsonl),
                                   "items": str(movies_path) if movies_path.is_file() else None},
                         "split": cfg.split})


# --------------------------------------------------------------------------- evaluation turns

_EVAL_LIST_FIELDS = ("context", "entity", "rec")


def load_redial_eval(cfg: DataConfig) -> RecData:
    """Processed ReDial evaluation turns (``{split}_data_processed.jsonl``) + ``id2info.json``."""
    expected = (f"the ReDial evaluation folder (ievalm/) holding {cfg.split}_data_processed.jsonl "
                f"and id2info.json")
    folder = require_path(cfg, expected)
    if not folder.is_dir():
        raise DataError(f"dataset {cfg.name!r}: {folder} is a file; set path to {expected}")
    name = f"{cfg.split}_data_processed.jsonl"
    if not (folder / name).is_file() and (folder / "ievalm").is_dir():
        folder = folder / "ievalm"  # accept the ReDial folder that contains ievalm/
    turns_path = folder / f"{cfg.split}_data_processed.jsonl"
    if not turns_path.is_file():
        have = sorted(p.name.removesuffix("_data_processed.jsonl")
                      for p in folder.glob("*_data_processed.jsonl"))
        raise DataError(f"dataset {cfg.name!r}: {folder} has no {turns_path.name} for "
                        f"split={cfg.split!r}; splits present: {', '.join(have) or 'none'} "
                        f"(expected {expected})")
    info_path = folder / "id2info.json"
    if not info_path.is_file():
        raise DataError(f"dataset {cfg.name!r}: {folder} lacks id2info.json (expected {expected})")

    fix = "fix or remove that line (each line is one evaluation turn)"
    records = read_jsonl(turns_path, ("dialog_id", "turn_id", "context", "rec", "resp"), fix)
    for rec in records:
        for key in _EVAL_LIST_FIELDS + ("template",):
            if key in rec and not isinstance(rec[key], list):
                raise DataError(f"{turns_path}, line {rec['_line']}: {key} should be a list of "
                                f"strings, found {type(rec[key]).__name__}; {fix}")
        if not isinstance(rec["turn_id"], int) or isinstance(rec["turn_id"], bool):
            raise DataError(f"{turns_path}, line {rec['_line']}: turn_id should be an integer, "
                            f"found {rec['turn_id']!r}; {fix}")
    turns = pd.DataFrame({
        "dialog_id": [str(r["dialog_id"]) for r in records],
        "turn_id": pd.array([r["turn_id"] for r in records], dtype="int64"),
        "context": [[str(x) for x in r["context"]] for r in records],
        "entity": [[str(x) for x in r.get("entity", [])] for r in records],
        "rec": [[str(x) for x in r["rec"]] for r in records],
        "resp": [str(r["resp"]) for r in records],
    })
    if any("template" in r for r in records):
        turns["template"] = [[str(x) for x in r.get("template", [])] for r in records]

    info = read_json(info_path, "the file should map movie id -> {name, genre, plot, ...}")
    if not isinstance(info, dict):
        raise DataError(f"{info_path}: expected a JSON object of movie id -> info, found "
                        f"{type(info).__name__}; check the file")
    rows = []
    for movie_id, meta in info.items():
        if not isinstance(meta, dict) or "name" not in meta:
            raise DataError(f"{info_path}: entry {movie_id!r} should be an object with at least "
                            f"a name; fix that entry")
        rows.append({
            "item_id": str(movie_id),
            "title": str(meta["name"]).strip(),
            "genres": [str(g) for g in meta.get("genre") or []],
            "plot": str(meta.get("plot") or ""),
            "director": [str(x) for x in meta.get("director") or []],
            "writer": [str(x) for x in meta.get("writer") or []],
            "star": [str(x) for x in meta.get("star") or []],
            "imdb_id": str(meta["imdb_id"]) if meta.get("imdb_id") else None,
        })
    items = pd.DataFrame(rows, columns=["item_id", "title", "genres", "plot", "director", "writer",
                                        "star", "imdb_id"])
    items.insert(3, "year", year_from_title(items["title"]).array)
    return RecData(name=cfg.name, source=str(folder),
                   tables={"eval_turns": make_table(turns), "items": make_table(items)},
                   info={"files": {"eval_turns": str(turns_path), "items": str(info_path)},
                         "split": cfg.split})
