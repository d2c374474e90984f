"""Tasks and personas: the hidden target never leaks into the persona; history precedes it."""

from __future__ import annotations

import pytest

from llmrec.crs.catalog import Item, norm_title
from llmrec.crs.tasks import ACTIVITIES, TaskConfig, load_catalog_and_tasks, target_hints
from llmrec.data.loaders import DataConfig

from conftest import shared_path


def test_target_hints_never_spell_the_title():
    item = Item("1", "Matrix, The (1999)", ["Action", "Sci-Fi"], year=1999,
                tags=["matrix", "cyberpunk", "the matrix trilogy", "philosophy"],
                plot="A hacker learns the truth.", people=["Keanu Reeves"])
    hints = target_hints(item, 5)
    assert hints[0] == "genres: action, sci-fi"
    assert hints[1] == "it came out in the 1990s"
    assert hints[2] == "people describe it as cyberpunk, philosophy"
    assert all("matrix" not in h.lower() for h in hints)
    assert len(target_hints(item, 2)) == 2


def test_movielens_tasks_are_leakage_safe():
    from llmrec.data.loaders import load_data
    from llmrec.data.splits import SplitConfig, make_split

    cfg = TaskConfig(n_tasks=0, user_splits=["test"])
    catalog, tasks = load_catalog_and_tasks(cfg)
    assert 40 <= len(tasks) <= 61  # test users with a liked movie after their LM history
    split = make_split(load_data(DataConfig()), SplitConfig())
    hist = split.history
    titles = {it.item_id: it.title for it in catalog.items}
    for task in tasks:
        assert task.source["split"] == "test"
        h = hist[hist["user_id"] == task.user_id]
        n_lm = task.source["n_lm"]
        target = h[h["item_id"] == task.target_id]
        # the target comes after the LM history and is liked
        assert int(target["position"].min()) >= n_lm
        assert float(target["rating"].max()) >= cfg.target_min_rating
        # every persona title is from the LM history, and none is the target
        lm_titles = {titles[i] for i in h[h["position"] < n_lm]["item_id"]}
        listed = task.persona.liked + task.persona.disliked
        assert set(listed) <= lm_titles
        assert norm_title(task.target_title) not in {norm_title(t) for t in listed}
        assert task.persona.activity in ACTIVITIES
        assert all(norm_title(task.target_title) not in h.lower() for h in task.target_hints)
    # n_tasks and the seed pick a reproducible subset
    _, five = load_catalog_and_tasks(TaskConfig(n_tasks=5, seed=3))
    _, again = load_catalog_and_tasks(TaskConfig(n_tasks=5, seed=3))
    assert [t.task_id for t in five] == [t.task_id for t in again]


def test_redial_tasks_from_test_dialogues():
    root = shared_path("redial")
    cfg = TaskConfig(domain="redial", n_tasks=0,
                     data=DataConfig(name="redial", path=str(root)),
                     catalog_data=DataConfig(name="redial-eval", path=str(root / "ievalm")))
    catalog, tasks = load_catalog_and_tasks(cfg)
    assert len(tasks) >= 100
    assert len(catalog) > 6000
    from llmrec.data.loaders import load_data

    dialogues = load_data(cfg.data).df("dialogues").set_index("dialogue_id")
    for task in tasks[:200]:
        row = dialogues.loc[task.source["dialogue_id"]]
        assert task.target_id in set(row["liked"]) and task.target_id in set(row["suggested"])
        assert norm_title(task.target_title) not in {norm_title(t) for t in
                                                     task.persona.liked + task.persona.disliked}
        assert len(task.persona.liked) >= cfg.min_liked


def test_bad_task_config():
    from llmrec.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="user_splits"):
        load_config(TaskConfig, overrides=["--user_splits=test,holdout"])
