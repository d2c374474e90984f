"""The text variant of the editor (llmrec.adsee.rewrite) with a scripted backend, a word-count
embedder and a toy predictor: the budget is respected, a run is deterministic for its seed, the
search finds the rewrite the predictor prefers, and failures are discarded."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.adsee.rewrite import RewriteConfig, RewriteEditor, crossover
from llmrec.errors import ConfigError
from llmrec.llm.base import Generation, SamplingParams

VOCAB = ["thrilling", "dull", "movie", "story", "cast", "a", "the", "is", "with", "great"]


def embed(texts):
    out = np.zeros((len(texts), len(VOCAB) + 1))
    for r, t in enumerate(texts):
        for w in t.lower().replace(".", " ").split():
            out[r, VOCAB.index(w) if w in VOCAB else len(VOCAB)] += 1
    return out


def score(items, vectors):  # the toy predictor likes "thrilling" and dislikes "dull"
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return v[:, 0] - v[:, 1]


class Scripted:
    """A backend whose rewrite depends on the instruction (and, for one, on the seed)."""

    def __init__(self, fail_every=0):
        self.calls = []
        self.fail_every = fail_every

    def default_sampling(self):
        return SamplingParams()

    def generate(self, conversations, sampling=None, *, seeds=None, json_schema=None):
        self.calls.append((len(conversations), list(seeds)))
        out = []
        for k, (conv, seed) in enumerate(zip(conversations, seeds)):
            op, text = conv[1]["content"].split("\n\nDescription:\n")
            if self.fail_every and k % self.fail_every == 0:
                out.append(Generation(text="", error="boom", finish_reason="error"))
            elif op.startswith("EXCITE"):
                out.append(Generation(text=text.replace("dull", "thrilling", 1)))
            elif op.startswith("WILD"):  # far from the original: must be rejected by the budget
                out.append(Generation(text="thrilling " * 30))
            else:
                out.append(Generation(text=text + (" the" if seed % 2 else " a")))
        return out


TEXTS = ["A dull movie. The story is dull. The cast is dull.",
         "The movie is great. A story with a dull cast."]


def cfg(**kw):
    base = dict(operators=["EXCITE", "WILD", "PAD"], population=6, parents=2, generations=4,
                budget=0.5, seed=0)
    base.update(kw)
    return RewriteConfig(**base)


def test_search_improves_within_budget():
    be = Scripted()
    res = RewriteEditor(cfg()).run(TEXTS, be, embed, score)
    assert (res.gain > 0).all()
    assert (res.distance <= 0.5).all()
    for i, (t, d) in enumerate(zip(res.texts, res.distance)):  # the best text's own distance
        o = embed([TEXTS[i]])[0]
        v = embed([t])[0]
        assert 1 - o @ v / (np.linalg.norm(o) * np.linalg.norm(v)) == pytest.approx(d)
    assert all("thrilling " * 30 not in t for t in res.texts)  # WILD never accepted
    assert res.rejected > 0
    # one engine call per generation with every rewrite of it
    assert len(be.calls) == 4
    assert res.generated == sum(n for n, _ in be.calls)


def test_deterministic_for_a_seed():
    a = RewriteEditor(cfg(seed=3)).run(TEXTS, Scripted(), embed, score)
    b = RewriteEditor(cfg(seed=3)).run(TEXTS, Scripted(), embed, score)
    assert a.texts == b.texts and np.array_equal(a.predicted, b.predicted)
    be1, be2 = Scripted(), Scripted()
    RewriteEditor(cfg(seed=3)).run(TEXTS, be1, embed, score)
    RewriteEditor(cfg(seed=4)).run(TEXTS, be2, embed, score)
    assert be1.calls != be2.calls


def test_original_kept_when_nothing_scores_higher_and_failures_are_discarded():
    res = RewriteEditor(cfg(operators=["WILD"], generations=2)).run(TEXTS, Scripted(), embed,
                                                                    score)
    assert res.texts == TEXTS and res.operator == ["original", "original"]
    np.testing.assert_allclose(res.gain, 0)
    res = RewriteEditor(cfg(crossover_rate=0.0)).run(TEXTS, Scripted(fail_every=1), embed,
                                                     score)
    assert res.texts == TEXTS and res.rejected == res.generated


def test_crossover_takes_each_sentence_from_a_parent():
    rng = np.random.default_rng(0)
    a, b = "A1. A2. A3.", "B1. B2."
    for _ in range(20):
        parts = crossover(a, b, rng).split(" ")
        assert len(parts) == 3 and parts[2] == "A3."
        assert all(p in (f"A{i + 1}.", f"B{i + 1}.") for i, p in enumerate(parts))


def test_config_errors():
    with pytest.raises(ConfigError, match="operators"):
        RewriteConfig(operators=[])
    with pytest.raises(ConfigError, match="budget"):
        RewriteConfig(budget=0)


def test_study_rewrite_path_with_a_scripted_llm(tmp_path):
    import json

    from llmrec.adsee.editor import EditorConfig
    from llmrec.adsee.rewrite import RewriteConfig
    from llmrec.adsee.study import AdseeConfig, run_seed, summarise
    from test_adsee_regressor import small_cfg, synthetic

    data, rates, vectors, w = synthetic(n=200)

    class Enc:  # 8-d vectors: "up" words move along the planted weights
        def __init__(self, name):
            pass

        def encode(self, texts):
            return np.stack([np.ones(8) * 0.1 + t.count("up") * 0.2 * w for t in texts])

    class Backend:
        def default_sampling(self):
            return SamplingParams()

        def identity(self):
            return {"model": "scripted", "revision": "0"}

        def generate(self, convs, sampling=None, *, seeds=None, json_schema=None):
            return [Generation(text=c[1]["content"].split("Description:\n")[1] + " up")
                    for c in convs]

    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps({i: f"item {i}" for i in rates["item_id"]}))
    cfg = AdseeConfig(regressor=small_cfg(epochs=5), n_directions=2, budgets=[0.05],
                      max_items=5, editor=EditorConfig(population=4, parents=2, generations=1),
                      seeds=[0], texts=str(texts), rewrite_items=3,
                      rewrite=RewriteConfig(population=3, parents=1, generations=2, budget=2.0))
    out = run_seed(cfg, data, rates, vectors, seed=0, encoder=Enc("x"), backend=Backend())
    rw = out["rewrite"]
    assert rw["n_items"] == 3 and rw["generated"] > 0
    assert len(rw["examples"]) == 3
    for e in rw["examples"]:
        assert e["distance"] <= 2.0 and e["predicted"] >= e["base"]
    assert summarise([out])["rewrite"]["n_items"] == 3
