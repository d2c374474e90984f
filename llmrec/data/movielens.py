"""MovieLens loaders: ml-latest(-small) CSV, ML-1M ``::`` files and ML-100K ``u.*`` files.

This module owns the mapping of each GroupLens release onto the canonical tables: items with
title, genres (list), year (from the title) and, where the release has them, tags; interactions
with float32 ratings and int64 Unix-second timestamps; users with whatever profile the release
gives (ML-1M and ML-100K), or just the ids seen in the data (ml-latest).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from llmrec.data.config import DataConfig, bundled_path
from llmrec.data.generic import (
    Rows, expect_files, find_file, interactions_frame, make_table, read_delimited,
    require_folder, split_genres, users_from, warn_unknown_items, year_from_title,
)
from llmrec.data.tables import RecData

log = logging.getLogger(__name__)

# ML-1M users.dat codes, from the README of the release. Ages stay codes in the users table (one
# column per profile fact, as CTR features expect); the labels are here for prompts.
ML1M_AGE_GROUPS = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49",
                   50: "50-55", 56: "56+"}
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)
# ML-100K genre flag order, used when the folder has no u.genre.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)


def _ratings(rows: Rows, user: str, item: str, rating: str, timestamp: str,
             scale: tuple[float, float]) -> pd.DataFrame:
    """Interactions from a ratings file; a rating off the release's star ``scale`` or a time
    outside 1970..2100 is an error naming its line."""
    return interactions_frame(
        rows.ids(user, "user id"),
        rows.ids(item, "movie id"),
        rows.numbers(rating, "rating", lo=scale[0], hi=scale[1]),
        rows.unix_seconds(timestamp),
    )


# the star scales of the releases (ml-latest has half stars)
_HALF_STARS = (0.5, 5.0)
_WHOLE_STARS = (1.0, 5.0)


def _none_if_empty(s: pd.Series) -> pd.Series:
    s = s.astype(object)
    return s.where(s.str.len() > 0, None)


# --------------------------------------------------------------------------- ml-latest

def load_ml_latest_small(cfg: DataConfig) -> RecData:
    """ml-latest-small (bundled when ``path`` is unset) or any ml-latest style CSV folder."""
    if cfg.path is None:
        folder = bundled_path("ml-latest-small")
    else:
        folder = require_folder(cfg, "a MovieLens ml-latest folder with ratings.csv and "
                                "movies.csv (tags.csv and links.csv are optional)")
    files = expect_files(folder, ["ratings.csv", "movies.csv"], cfg.name)

    ratings = read_delimited(files["ratings.csv"])
    ratings.require_columns(["userId", "movieId", "rating", "timestamp"],
                            "expected the MovieLens header userId,movieId,rating,timestamp")
    interactions = _ratings(ratings, "userId", "movieId", "rating", "timestamp", _HALF_STARS)

    movies = read_delimited(files["movies.csv"])
    movies.require_columns(["movieId", "title", "genres"],
                           "expected the MovieLens header movieId,title,genres")
    item_ids = movies.ids("movieId", "movie id")
    movies.check_unique("movieId", item_ids, "movie id")
    titles = movies.text("title")
    items = pd.DataFrame({
        "item_id": item_ids.to_numpy(dtype=object),
        "title": titles.to_numpy(dtype=object),
        "genres": split_genres(movies.text("genres")),
        "year": year_from_title(titles).array,
    })

    tables: dict[str, object] = {}
    tags_path = folder / "tags.csv"
    tag_df = None
    if tags_path.is_file():
        tags = read_delimited(tags_path, allow_empty=True)
        tags.require_columns(["userId", "movieId", "tag", "timestamp"],
                             "expected the MovieLens header userId,movieId,tag,timestamp")
        tag_df = pd.DataFrame({
            "user_id": tags.ids("userId", "user id").to_numpy(dtype=object),
            "item_id": tags.ids("movieId", "movie id").to_numpy(dtype=object),
            "tag": tags.text("tag").to_numpy(dtype=object),
            "timestamp": tags.unix_seconds("timestamp").array,
        })
        tag_df = tag_df[tag_df["tag"] != ""].reset_index(drop=True)
        # distinct tags per movie in first-seen order: the persona and item prompts read them
        per_item = (tag_df[["item_id", "tag"]].drop_duplicates()
                    .groupby("item_id", sort=False)["tag"].agg(list))
        items["tags"] = [per_item.get(i, []) for i in items["item_id"]]
    else:
        items["tags"] = [[] for _ in range(len(items))]

    links_path = folder / "links.csv"
    if links_path.is_file():
        links = read_delimited(links_path, allow_empty=True)
        links.require_columns(["movieId", "imdbId", "tmdbId"],
                              "expected the MovieLens header movieId,imdbId,tmdbId")
        link_df = pd.DataFrame({"item_id": links.ids("movieId", "movie id").to_numpy(dtype=object),
                                "imdb_id": _none_if_empty(links.text("imdbId")).to_numpy(),
                                "tmdb_id": _none_if_empty(links.text("tmdbId")).to_numpy()})
        items = items.merge(link_df.drop_duplicates("item_id"), on="item_id", how="left")

    warn_unknown_items(interactions, items, str(files["ratings.csv"]))
    user_sources = [interactions["user_id"]] + ([tag_df["user_id"]] if tag_df is not None else [])
    tables["users"] = make_table(users_from(*user_sources))
    tables["items"] = make_table(items)
    tables["interactions"] = make_table(interactions)
    if tag_df is not None:
        tables["tags"] = make_table(tag_df)
    return RecData(name=cfg.name, tables=tables, source=str(folder),
                   info={"files": sorted(p.name for p in folder.glob("*.csv"))})


# --------------------------------------------------------------------------- ML-1M

def load_ml_1m(cfg: DataConfig) -> RecData:
    """MovieLens-1M style folder: ``::``-separated movies.dat (latin-1), users.dat, ratings."""
    folder = require_folder(cfg, "a MovieLens-1M folder with movies.dat and ratings.dat "
                            "(or ratings*.dat.gz); users.dat is optional")
    movies_path = expect_files(folder, ["movies.dat"], cfg.name)["movies.dat"]
    ratings_path = find_file(
        folder, ["ratings.dat", "ratings.dat.gz", "ratings*.dat", "ratings*.dat.gz"],
        "ratings file", dataset=cfg.name)

    ratings = read_delimited(ratings_path, sep="::", encoding="latin-1", quoted=False,
                             names=["UserID", "MovieID", "Rating", "Timestamp"])
    interactions = _ratings(ratings, "UserID", "MovieID", "Rating", "Timestamp", _WHOLE_STARS)

    movies = read_delimited(movies_path, sep="::", encoding="latin-1", quoted=False,
                            names=["MovieID", "Title", "Genres"])
    item_ids = movies.ids("MovieID", "movie id")
    movies.check_unique("MovieID", item_ids, "movie id")
    titles = movies.text("Title")
    items = pd.DataFrame({
        "item_id": item_ids.to_numpy(dtype=object),
        "title": titles.to_numpy(dtype=object),
        "genres": split_genres(movies.text("Genres")),
        "year": year_from_title(titles).array,
    })

    users_path = folder / "users.dat"
    if users_path.is_file():
        u = read_delimited(users_path, sep="::", encoding="latin-1", quoted=False,
                           names=["UserID", "Gender", "Age", "Occupation", "Zip-code"])
        user_ids = u.ids("UserID", "user id")
        u.check_unique("UserID", user_ids, "user id")
        age = u.numbers("Age", "age", integer=True)
        occ = u.numbers("Occupation", "occupation code", integer=True, lo=0)
        users = pd.DataFrame({
            "user_id": user_ids.to_numpy(dtype=object),
            "gender": u.text("Gender").to_numpy(dtype=object),
            "age": age.array,
            "occupation": [ML1M_OCCUPATIONS[c] if c < len(ML1M_OCCUPATIONS) else str(c)
                           for c in occ.tolist()],
            "zip": u.text("Zip-code").to_numpy(dtype=object),
        })
    else:
        log.info("%s has no users.dat; the users table holds only the ids in the ratings", folder)
        users = users_from(interactions["user_id"])

    warn_unknown_items(interactions, items, str(ratings_path))
    return RecData(
        name=cfg.name, source=str(folder),
        tables={"users": make_table(users), "items": make_table(items),
                "interactions": make_table(interactions)},
        info={"files": {"ratings": ratings_path.name, "movies": movies_path.name,
                        "users": users_path.name if users_path.is_file() else None},
              "age": "age is the ML-1M age-group code: the group's lower bound, 1 = under 18"},
    )


# --------------------------------------------------------------------------- ML-100K

def load_ml_100k(cfg: DataConfig) -> RecData:
    """MovieLens-100K style folder: u.data (tab), u.item ('|', latin-1, genre flags), u.user."""
    folder = require_folder(cfg, "a MovieLens-100K folder with u.data and u.item "
                            "(u.user and u.genre are optional)")
    files = expect_files(folder, ["u.data", "u.item"], cfg.name)

    data = read_delimited(files["u.data"], sep="\t", quoted=False,
                          names=["user_id", "item_id", "rating", "timestamp"])
    interactions = _ratings(data, "user_id", "item_id", "rating", "timestamp", _WHOLE_STARS)

    genre_path = folder / "u.genre"
    genres = list(ML100K_GENRES)
    if genre_path.is_file():
        g = read_delimited(genre_path, sep="|", encoding="latin-1", quoted=False,
                           names=["genre", "index"])
        idx = g.numbers("index", "genre index", integer=True, lo=0)
        genres = [name for _, name in sorted(zip(idx.tolist(), g.text("genre").tolist()))]
    base = ["movie_id", "title", "release_date", "video_release_date", "imdb_url"]
    flag_cols = [f"genre:{name}" for name in genres]
    movies = read_delimited(files["u.item"], sep="|", encoding="latin-1", quoted=False,
                            names=base + flag_cols)
    item_ids = movies.ids("movie_id", "movie id")
    movies.check_unique("movie_id", item_ids, "movie id")
    flags = np.column_stack([movies.numbers(c, "genre flag", integer=True, lo=0, hi=1)
                             .to_numpy(dtype=np.int64) for c in flag_cols]).astype(bool) \
        if flag_cols else np.zeros((len(movies), 0), dtype=bool)
    genre_arr = np.array(genres, dtype=object)
    # 'unknown' is the 100K marker for no genre, like '(no genres listed)' in ml-latest
    keep = genre_arr != "unknown"
    titles = movies.text("title")
    release = movies.text("release_date")
    year = year_from_title(titles)
    release_year = pd.to_numeric(release.str[-4:], errors="coerce").astype("Int64")
    items = pd.DataFrame({
        "item_id": item_ids.to_numpy(dtype=object),
        "title": titles.to_numpy(dtype=object),
        "genres": [list(genre_arr[row & keep]) for row in flags],
        "year": year.fillna(release_year).array,
        "release_date": _none_if_empty(release).to_numpy(),
        "imdb_url": _none_if_empty(movies.text("imdb_url")).to_numpy(),
    })

    user_path = folder / "u.user"
    if user_path.is_file():
        u = read_delimited(user_path, sep="|", encoding="latin-1", quoted=False,
                           names=["user_id", "age", "gender", "occupation", "zip"])
        user_ids = u.ids("user_id", "user id")
        u.check_unique("user_id", user_ids, "user id")
        users = pd.DataFrame({
            "user_id": user_ids.to_numpy(dtype=object),
            "gender": u.text("gender").to_numpy(dtype=object),
            "age": u.numbers("age", "age", integer=True).array,
            "occupation": u.text("occupation").to_numpy(dtype=object),
            "zip": u.text("zip").to_numpy(dtype=object),
        })
    else:
        log.info("%s has no u.user; the users table holds only the ids in u.data", folder)
        users = users_from(interactions["user_id"])

    warn_unknown_items(interactions, items, str(files["u.data"]))
    return RecData(
        name=cfg.name, source=str(folder),
        tables={"users": make_table(users), "items": make_table(items),
                "interactions": make_table(interactions)},
        info={"files": {"ratings": "u.data", "movies": "u.item",
                        "users": "u.user" if user_path.is_file() else None}},
    )
