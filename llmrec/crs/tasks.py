"""Evaluation tasks (a user with a hidden target item) and the AILO persona built from user data.

A task is one simulated user looking for one *target* item they are known to like. The persona is
built only from data the simulated user may "know" without revealing the target:

- MovieLens: the user's interactions are split like every other stage (the KAR split of
  :mod:`llmrec.data.splits`): the first ``n_lm`` time-ordered ratings are the user's LM history,
  the only ratings any prompt about the user may show. The target is the first movie rated
  ``>= target_min_rating`` after that history; the persona (liked and disliked titles, their
  genres, the user's own tags on history movies, rating habits) comes from the history alone.
  Users are taken from the split parts named in ``user_splits`` (test users by default), so tasks
  never overlap the users a model is trained on.
- ReDial: one task per test dialogue; the target is a movie the seeker liked that the recommender
  suggested (a real successful recommendation), the persona the seeker's *other* liked and
  disliked movies with their info, and the seeker's writing habits (message length, tone).

The target's features (genres, era, tags or plot, people) become ``target_hints``, disclosed one
more per round by the simulator; hints that would spell the title are dropped.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from llmrec.config import option
from llmrec.crs.catalog import Catalog, Item, norm_text, norm_title
from llmrec.data.loaders import DataConfig
from llmrec.data.splits import SplitConfig
from llmrec.errors import DataError

log = logging.getLogger(__name__)

ACTIVITIES = ("Efficiency-Seeking", "Detail-Oriented", "Exploration-Oriented")
ORIENTATIONS = {
    "Efficiency-Seeking": "wants a fitting suggestion quickly, without a long back-and-forth",
    "Detail-Oriented": "wants to hear why a movie fits before accepting it",
    "Exploration-Oriented": "likes to hear several different options and discover new things",
}


@dataclass
class TaskConfig:
    """Where tasks come from and how the persona and target are chosen."""

    domain: Literal["movielens", "redial"] = option(
        "movielens", help="movielens: users' ratings (tasks from test users); redial: test "
                          "dialogues' liked movies")
    data: DataConfig = option(default_factory=DataConfig,
                              help="the dataset holding users (MovieLens) or dialogues (ReDial)")
    catalog_data: DataConfig | None = option(
        None, help="dataset whose items table is the catalog (ReDial: redial-eval, the movie "
                   "info); unset: the items of `data`")
    split: SplitConfig = option(default_factory=SplitConfig,
                                help="MovieLens: the user split; the LM history is the persona")
    user_splits: list[str] = option(["test"], help="MovieLens: split parts whose users get tasks")
    n_tasks: int = option(100, help="number of tasks (0 = all that qualify)")
    seed: int = option(0, help="seed of the task order before taking n_tasks")
    target_min_rating: float = option(4.0, help="MovieLens: the target is the first movie rated "
                                                "at least this after the LM history")
    liked_min_rating: float = option(4.0, help="MovieLens: ratings >= this are liked")
    disliked_max_rating: float = option(2.0, help="MovieLens: ratings <= this are disliked")
    min_liked: int = option(2, help="skip users/dialogues with fewer liked items (target excluded)")
    max_listed: int = option(6, help="liked / disliked titles shown in the persona")
    max_hints: int = option(5, help="target features the simulator may disclose")

    def __post_init__(self) -> None:
        if self.n_tasks < 0:
            raise ValueError("n_tasks must be >= 0")
        bad = [s for s in self.user_splits if s not in ("train", "valid", "test")]
        if bad:
            raise ValueError(f"user_splits: unknown part(s) {bad}; use train, valid, test")


@dataclass
class Persona:
    """The AILO persona: activities, interests, language, orientation, plus the user's items."""

    activity: str
    interests: list[str]
    liked: list[str]
    disliked: list[str]
    disliked_genres: list[str] = field(default_factory=list)
    themes: list[str] = field(default_factory=list)
    era: str = ""
    language: dict[str, str] = field(default_factory=dict)
    orientation: str = ""


@dataclass
class Task:
    task_id: str
    dataset: str
    user_id: str
    target_id: str
    target_title: str
    persona: Persona
    target_hints: list[str]
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Task":
        d = dict(d)
        d["persona"] = Persona(**d["persona"])
        return cls(**d)


# --------------------------------------------------------------------------- helpers

def _decade(years: list[int]) -> str:
    years = [y for y in years if y]
    if not years:
        return ""
    decade = Counter(10 * (y // 10) for y in years).most_common(1)[0][0]
    return f"{decade}s"


def _top_genres(items: list[Item], k: int = 4) -> list[str]:
    c = Counter(g for it in items for g in it.genres)
    return [g for g, _ in c.most_common(k)]


def _entropy(items: list[Item]) -> float:
    """Normalised entropy of the genre distribution (0 = one genre, 1 = all equally often)."""
    c = Counter(g for it in items for g in it.genres)
    n = sum(c.values())
    if len(c) < 2:
        return 0.0
    h = -sum(v / n * math.log(v / n) for v in c.values())
    return h / math.log(len(c))


def target_hints(item: Item, max_hints: int) -> list[str]:
    """Features of the target, vaguest first, none spelling its title."""
    key = norm_title(item.title)
    title_words = set(key.split())

    def leaks(text: str) -> bool:
        t = norm_text(text)
        return bool(key) and (key in t or (len(title_words) == 1 and key in t.split()))

    hints = []
    if item.genres:
        hints.append("genres: " + ", ".join(g.lower() for g in item.genres[:3]))
    if item.year:
        hints.append(f"it came out in the {10 * (item.year // 10)}s")
    tags = [t for t in item.tags if not leaks(t)][:4]
    if tags:
        hints.append("people describe it as " + ", ".join(tags))
    if item.plot and not leaks(item.plot):
        hints.append("the story: " + item.plot[:200])
    people = [p for p in item.people if not leaks(p)][:2]
    if people:
        hints.append("it features " + " and ".join(people))
    return hints[:max_hints]


# --------------------------------------------------------------------------- MovieLens

def _ml_activity(liked: list[Item], n_user_tags: int, ratings: list[float]) -> str:
    # Explicit, explainable rules rather than a random draw: a user who tags movies or rates in
    # half stars cares about details; a user whose liked movies spread over many genres explores;
    # the others want speed.
    half = sum(1 for r in ratings if r != int(r)) / max(len(ratings), 1)
    if n_user_tags >= 1 or half >= 0.3:
        return "Detail-Oriented"
    if _entropy(liked) >= 0.9:
        return "Exploration-Oriented"
    return "Efficiency-Seeking"


def _ml_language(ratings: list[float], n_user_tags: int, activity: str) -> dict[str, str]:
    mean = sum(ratings) / len(ratings) if ratings else 3.5
    tone = "enthusiastic" if mean >= 4.0 else ("reserved" if mean < 3.3 else "neutral")
    density = "rich" if n_user_tags >= 1 else ("brief" if activity == "Efficiency-Seeking"
                                               else "moderate")
    style = "precise" if activity == "Detail-Oriented" else "casual"
    return {"density": density, "tone": tone, "style": style}


def movielens_tasks(data, catalog: Catalog, cfg: TaskConfig) -> list[Task]:
    """One task per qualifying user of the chosen split parts (see the module docstring)."""
    import pandas as pd

    from llmrec.data.splits import make_split

    split = make_split(data, cfg.split)
    cut = split.cutoffs[split.cutoffs["split"].isin(cfg.user_splits)]
    n_lm = dict(zip(cut["user_id"], cut["n_lm"]))
    hist = split.history[split.history["user_id"].isin(n_lm)].copy()
    # one vectorised membership test: per-user isin against the catalog's ids costs seconds
    hist["in_catalog"] = hist["item_id"].isin(pd.Index(list(catalog.by_id)))
    tags = data.df("tags") if data.has("tags") else None
    if tags is not None:
        tags = tags[tags["user_id"].isin(n_lm)]
        tags_by_user = {u: t for u, t in tags.groupby("user_id", sort=False)}
    tasks = []
    for user, h in hist.groupby("user_id", sort=True):
        h = h.sort_values("position")
        cutoff = int(n_lm[user])
        lm, rest = h[h["position"] < cutoff], h[h["position"] >= cutoff]
        cand = rest[(rest["rating"] >= cfg.target_min_rating) & rest["in_catalog"]]
        if cand.empty:
            continue
        target_row = cand.iloc[0]
        target = catalog.items[catalog.by_id[str(target_row["item_id"])]]
        tkey = norm_title(target.title)
        known = [(catalog.items[catalog.by_id[i]], float(r)) for i, r in
                 zip(lm["item_id"], lm["rating"]) if i in catalog.by_id]
        # a history item with the target's title (a duplicate entry) would reveal it
        known = [(it, r) for it, r in known if norm_title(it.title) != tkey]
        liked = [it for it, r in sorted(known, key=lambda x: -x[1]) if r >= cfg.liked_min_rating]
        disliked = [it for it, r in sorted(known, key=lambda x: x[1])
                    if r <= cfg.disliked_max_rating]
        if len(liked) < cfg.min_liked:
            continue
        user_tags: list[str] = []
        if tags is not None and user in tags_by_user:
            lm_items = set(lm["item_id"])
            before = int(target_row["timestamp"])
            user_tags = list(dict.fromkeys(
                str(tag).lower() for item, tag, ts in tags_by_user[user][
                    ["item_id", "tag", "timestamp"]].itertuples(index=False)
                if item in lm_items and int(ts) < before))
        activity = _ml_activity(liked, len(user_tags), [r for _, r in known])
        liked_genres = Counter(g for it in liked for g in it.genres)
        disliked_genres = [g for g, _ in Counter(g for it in disliked for g in it.genres)
                           .most_common(5) if liked_genres[g] <= 1][:3]
        persona = Persona(
            activity=activity,
            interests=_top_genres(liked),
            liked=[it.title for it in liked[:cfg.max_listed]],
            disliked=[it.title for it in disliked[:cfg.max_listed]],
            disliked_genres=disliked_genres,
            themes=user_tags[:6],
            era=_decade([it.year for it in liked if it.year]),
            language=_ml_language([r for _, r in known], len(user_tags), activity),
            orientation=ORIENTATIONS[activity],
        )
        tasks.append(Task(
            task_id=f"{data.name}/u{user}", dataset=data.name, user_id=str(user),
            target_id=target.item_id, target_title=target.title, persona=persona,
            target_hints=target_hints(target, cfg.max_hints),
            source={"split": str(cut.loc[cut["user_id"] == user, "split"].iloc[0]),
                    "n_lm": cutoff, "target_position": int(target_row["position"]),
                    "target_rating": float(target_row["rating"])},
        ))
    return tasks


# --------------------------------------------------------------------------- ReDial

def _redial_language(messages: list[str]) -> dict[str, str]:
    words = [len(m.split()) for m in messages] or [8]
    mean = sum(words) / len(words)
    joined = " ".join(messages).lower()
    excited = joined.count("!") + sum(joined.count(w) for w in ("love", "awesome", "great"))
    casual = sum(1 for m in messages if m[:1].islower()) + joined.count("lol")
    return {"density": "brief" if mean < 7 else ("rich" if mean >= 14 else "moderate"),
            "tone": "enthusiastic" if excited >= 2 else "neutral",
            "style": "casual" if casual * 2 >= len(messages) else "polite"}


def _redial_activity(n_liked: int, messages: list[str]) -> str:
    words = [len(m.split()) for m in messages] or [8]
    if sum(words) / len(words) >= 11:
        return "Detail-Oriented"
    if n_liked >= 4:
        return "Exploration-Oriented"
    return "Efficiency-Seeking"


def redial_tasks(data, catalog: Catalog, cfg: TaskConfig) -> list[Task]:
    """One task per test dialogue with a liked, suggested movie in the catalog."""
    tasks = []
    for row in data.df("dialogues").to_dict("records"):
        liked = [str(m) for m in row["liked"] if str(m) in catalog.by_id]
        disliked = [str(m) for m in row["disliked"] if str(m) in catalog.by_id]
        suggested = {str(m) for m in row.get("suggested", [])}
        targets = [m for m in liked if m in suggested]
        if not targets:
            continue
        target = catalog.items[catalog.by_id[targets[0]]]
        tkey = norm_title(target.title)
        others = [catalog.items[catalog.by_id[m]] for m in liked]
        others = [it for it in others if norm_title(it.title) != tkey]
        bad = [catalog.items[catalog.by_id[m]] for m in disliked]
        bad = [it for it in bad if norm_title(it.title) != tkey]
        if len(others) < cfg.min_liked:
            continue
        # only the seeker's writing habits are used, never what they wrote about
        seeker_msgs = [str(t["text"]) for t in row["turns"] if t["speaker"] == "seeker"]
        activity = _redial_activity(len(others), seeker_msgs)
        persona = Persona(
            activity=activity,
            interests=_top_genres(others),
            liked=[it.title for it in others[:cfg.max_listed]],
            disliked=[it.title for it in bad[:cfg.max_listed]],
            disliked_genres=[],
            themes=[],
            era=_decade([it.year for it in others if it.year]),
            language=_redial_language(seeker_msgs),
            orientation=ORIENTATIONS[activity],
        )
        tasks.append(Task(
            task_id=f"{data.name}/d{row['dialogue_id']}", dataset=data.name,
            user_id=str(row["seeker_id"]), target_id=target.item_id, target_title=target.title,
            persona=persona, target_hints=target_hints(target, cfg.max_hints),
            source={"dialogue_id": str(row["dialogue_id"])},
        ))
    return tasks


# --------------------------------------------------------------------------- entry point

def load_catalog_and_tasks(cfg: TaskConfig, catalog_cfg=None) -> tuple[Catalog, list[Task]]:
    """Load the data, build the catalog and the first ``n_tasks`` tasks in a seeded order."""
    from llmrec.data.loaders import load_data

    data = load_data(cfg.data)
    cat_data = load_data(cfg.catalog_data) if cfg.catalog_data is not None else data
    catalog = Catalog.from_recdata(cat_data, catalog_cfg)
    return catalog, build_tasks(data, catalog, cfg)


def build_tasks(data, catalog: Catalog, cfg: TaskConfig) -> list[Task]:
    """The first ``n_tasks`` tasks of ``data`` over ``catalog`` in a seeded order (several task
    sets, e.g. training and held-out users, can share one catalog)."""
    if cfg.domain == "movielens":
        if not data.has("interactions"):
            raise DataError(f"domain movielens needs ratings, but dataset {data.name!r} has no "
                            "interactions table; set tasks.data to a MovieLens dataset")
        tasks = movielens_tasks(data, catalog, cfg)
    else:
        if not data.has("dialogues"):
            raise DataError(f"domain redial needs dialogues, but dataset {data.name!r} has none; "
                            "set tasks.data.name=redial and tasks.data.path to the ReDial folder")
        tasks = redial_tasks(data, catalog, cfg)
    if not tasks:
        raise DataError(f"no task qualifies in {data.name!r} (check user_splits, min_liked and "
                        "target_min_rating)")
    random.Random(cfg.seed).shuffle(tasks)
    if cfg.n_tasks:
        if len(tasks) < cfg.n_tasks:
            log.warning("only %d tasks qualify (asked for %d)", len(tasks), cfg.n_tasks)
        tasks = tasks[:cfg.n_tasks]
    log.info("%d tasks from %s (%s users); catalog of %d items", len(tasks), data.name,
             "+".join(cfg.user_splits) if cfg.domain == "movielens" else "test", len(catalog))
    return tasks
