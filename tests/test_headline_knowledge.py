"""The denoising option of the knowledge layer: a user prompt shows the LM history after the
rating filter (low ratings, rating bursts) when ``denoise.enabled``, and as it is otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.config import load_config
from llmrec.data.loaders import DataConfig, load_data
from llmrec.data.splits import make_split
from llmrec.errors import ConfigError
from llmrec.headline.filters import RatingDenoiseConfig, denoise_ratings
from llmrec.knowledge.generate import GenerateConfig, plan
from llmrec.knowledge.templates import load_template

IDENT = {"model": "m", "revision": "r1"}


@pytest.fixture(scope="module")
def data_split():
    data = load_data(DataConfig())
    return data, make_split(data)


def _plans(data, split, **denoise):
    cfg = GenerateConfig(entities="users", limit=40, denoise=RatingDenoiseConfig(**denoise))
    return cfg, plan(cfg, data, load_template("user_movie"), "user", IDENT, {}, split)


def test_denoised_prompt_shows_the_filtered_lm_history(data_split):
    data, split = data_split
    cfg, ents = _plans(data, split, enabled=True)
    hist = split.history
    changed = 0
    for e in ents:
        n_lm = int(split.cutoffs.set_index("user_id").loc[e.id, "n_lm"])
        rows = hist[(hist["user_id"] == e.id) & (hist["position"] < n_lm)].sort_values("position")
        keep, _ = denoise_ratings(rows["rating"].to_numpy(float), rows["timestamp"].to_numpy(float),
                                  cfg.denoise)
        expect = rows["item_id"].astype(str).to_numpy()[keep][-cfg.max_history:].tolist()
        shown = [h["item_id"] for h in e.ctx["history"]]
        assert shown == expect
        assert all(h["rating"] >= 3 for h in e.ctx["history"])
        changed += len(shown) < min(len(rows), cfg.max_history)
    assert changed > 0  # the filter does remove rows for some of these users


def test_off_by_default_and_keys_differ(data_split):
    data, split = data_split
    assert GenerateConfig().denoise.enabled is False
    _, raw = _plans(data, split)
    _, den = _plans(data, split, enabled=True)
    hist = split.history
    for e in raw:  # off: the plain LM history
        n_lm = int(split.cutoffs.set_index("user_id").loc[e.id, "n_lm"])
        rows = hist[(hist["user_id"] == e.id) & (hist["position"] < n_lm)].sort_values("position")
        assert [h["item_id"] for h in e.ctx["history"]] == rows["item_id"].astype(str).tolist()[-30:]
    diff = [(a, b) for a, b in zip(raw, den) if a.ctx["history"] != b.ctx["history"]]
    assert diff and all(a.key != b.key for a, b in diff)
    same = [(a, b) for a, b in zip(raw, den) if a.ctx["history"] == b.ctx["history"]]
    assert all(a.key == b.key for a, b in same)  # same prompt, same cache entry


def test_denoise_options_from_flags():
    cfg = load_config(GenerateConfig, None, ["--denoise.enabled=true", "--denoise.min_rating=4",
                                             "--denoise.burst_k=null"])
    assert cfg.denoise == RatingDenoiseConfig(enabled=True, min_rating=4.0, burst_k=None)
    with pytest.raises(ConfigError, match="burst_gapp"):
        load_config(GenerateConfig, None, ["--denoise.burst_gapp=3"])
    assert np.all(denoise_ratings([1, 2], [0, 1], cfg.denoise)[0] == [False, False])
