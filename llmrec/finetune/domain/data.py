"""The real data the domain recipe reads, and its leakage-safe splits.

Sources (paths in :class:`DomainDataConfig`):

- ML-1M (``movies.dat``: titles and genres; ``side-info/movies_extrainfos.dat``: plot, director,
  actors, release date; ``knowledge/item_llm_text.json``: one knowledge paragraph per movie;
  ``ratings-users-1-2999.dat.gz``: the ratings of users 1-2999);
- ReDial's evaluation turns (``ievalm/valid_data_processed.jsonl`` for training,
  ``ievalm/test_data_processed.jsonl`` for evaluation; different dialogues) and
  ``ievalm/id2info.json`` (6,583 movies with plots);
- ml-latest-small (``movies.csv`` + ``tags.csv``: user tags per movie).

Splits: ML-1M movies with a plot are shuffled with the seed and the first ``eval_items`` are
held out (item tasks train only on the others); users 1-2999 likewise (``eval_users``); ReDial
trains on the validation dialogues and evaluates on the test dialogues.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.config import option
from llmrec.errors import DataError


@dataclass
class DomainDataConfig:
    """Where the domain recipe's sources are."""

    ml1m: str = option("../shared/data/movielens-1m",
                       help="ML-1M folder: movies.dat, ratings-users-1-2999.dat.gz (or "
                            "ratings.dat), side-info/movies_extrainfos.dat, "
                            "knowledge/item_llm_text.json")
    redial: str = option("../shared/data/redial",
                         help="ReDial folder with ievalm/{valid,test}_data_processed.jsonl and "
                              "ievalm/id2info.json")
    ml_latest: str | None = option("../shared/data/movielens-latest-small",
                                   help="ml-latest-small folder (movies.csv, tags.csv) for tag "
                                        "documents in the CPT corpus; null: no tag documents")
    eval_items: int = option(300, help="ML-1M movies held out for the item tasks")
    eval_users: int = option(300, help="ML-1M users held out for the user tasks")

    def __post_init__(self) -> None:
        if self.eval_items < 1 or self.eval_users < 1:
            raise ValueError("eval_items and eval_users must be >= 1")


@dataclass
class Movie:
    id: int
    title: str
    genres: list[str]
    plot: str = ""
    director: str = ""
    actors: str = ""
    released: str = ""
    year: str = ""
    knowledge: str = ""


@dataclass
class Sources:
    """Everything read from disk, plus the splits."""

    movies: dict[int, Movie]
    ratings: dict[int, list[tuple[int, int, int]]]  # user -> [(movie, rating, time)] by time
    redial_train: list[dict[str, Any]]
    redial_eval: list[dict[str, Any]]
    redial_info: dict[str, dict[str, Any]]
    tags: dict[str, list[str]] = field(default_factory=dict)  # ml-latest-small title -> tags
    train_items: list[int] = field(default_factory=list)
    eval_items: list[int] = field(default_factory=list)
    train_users: list[int] = field(default_factory=list)
    eval_users: list[int] = field(default_factory=list)

    @property
    def redial_names(self) -> list[str]:
        return sorted({v["name"] for v in self.redial_info.values()})


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{path} is missing ({what}); point the recipe's data.* options at the "
                        "folders that hold it (see ../shared/data/README.md)")
    return path


def _ratings_file(root: Path) -> Path:
    for name in ("ratings-users-1-2999.dat.gz", "ratings.dat"):
        if (root / name).is_file():
            return root / name
    raise DataError(f"{root} holds neither ratings-users-1-2999.dat.gz nor ratings.dat; set "
                    "data.ml1m to the ML-1M folder")


def load_sources(cfg: DomainDataConfig, seed: int) -> Sources:
    """Read every source and make the seeded splits (see the module docstring)."""
    ml = Path(cfg.ml1m)
    movies: dict[int, Movie] = {}
    with open(_need(ml / "movies.dat", "ML-1M titles and genres"), encoding="latin-1") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("::")
            if len(parts) != 3:
                raise DataError(f"{ml / 'movies.dat'}: expected MovieID::Title::Genres, got "
                                f"{line[:80]!r}")
            movies[int(parts[0])] = Movie(int(parts[0]), parts[1], parts[2].split("|"))
    side = _need(ml / "side-info" / "movies_extrainfos.dat", "ML-1M plots")
    with open(side, encoding="utf-8") as fh:
        for line in fh:
            parts = line.rstrip("\r\n").split("::")
            if len(parts) < 10:
                continue
            m = movies.get(int(parts[0]))
            if m is None:
                continue
            m.year, m.released, m.director, m.actors = parts[2], parts[4], parts[6], parts[8]
            m.plot = parts[9].strip() if parts[9].strip() not in ("", "N/A") else ""
    know = ml / "knowledge" / "item_llm_text.json"
    if know.is_file():
        for k, v in json.loads(know.read_text()).items():
            if int(k) in movies and isinstance(v, str):
                movies[int(k)].knowledge = v.strip()
    ratings: dict[int, list[tuple[int, int, int]]] = {}
    rf = _ratings_file(ml)
    opener = gzip.open if rf.suffix == ".gz" else open
    with opener(rf, "rt") as fh:
        for line in fh:
            u, i, r, t = line.split("::")
            ratings.setdefault(int(u), []).append((int(i), int(r), int(t)))
    for rows in ratings.values():
        rows.sort(key=lambda x: (x[2], x[0]))

    rd = Path(cfg.redial) / "ievalm"

    def turns(name: str) -> list[dict[str, Any]]:
        path = _need(rd / name, "ReDial evaluation turns")
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]

    info = json.loads(_need(rd / "id2info.json", "ReDial movie plots").read_text())
    tags: dict[str, list[str]] = {}
    if cfg.ml_latest:
        lt = Path(cfg.ml_latest)
        titles = {}
        with open(_need(lt / "movies.csv", "ml-latest-small titles"), newline="") as fh:
            for row in csv.DictReader(fh):
                titles[row["movieId"]] = row["title"]
        with open(_need(lt / "tags.csv", "ml-latest-small tags"), newline="") as fh:
            for row in csv.DictReader(fh):
                t = titles.get(row["movieId"])
                if t and row["tag"].strip():
                    lst = tags.setdefault(t, [])
                    if row["tag"].strip().lower() not in (x.lower() for x in lst):
                        lst.append(row["tag"].strip())
    src = Sources(movies, ratings, turns("valid_data_processed.jsonl"),
                  turns("test_data_processed.jsonl"), info, tags)
    rng = random.Random(f"domain-split-{seed}")
    with_plot = sorted(i for i, m in movies.items() if m.plot)
    rng.shuffle(with_plot)
    if cfg.eval_items >= len(with_plot):
        raise DataError(f"data.eval_items={cfg.eval_items} holds out every one of the "
                        f"{len(with_plot)} movies with a plot; lower it")
    src.eval_items, src.train_items = with_plot[:cfg.eval_items], with_plot[cfg.eval_items:]
    users = sorted(ratings)
    rng.shuffle(users)
    if cfg.eval_users >= len(users):
        raise DataError(f"data.eval_users={cfg.eval_users} holds out all {len(users)} users; "
                        "lower it")
    src.eval_users, src.train_users = users[:cfg.eval_users], users[cfg.eval_users:]
    return src
