"""ROUGE (llmrec.headline.rouge), factual consistency and profiles against hand-computed values."""

from __future__ import annotations

import math

import pytest

from llmrec.headline import rouge
from llmrec.headline.factual import entities, llm_check, overlap_score
from llmrec.headline.profiles import (ProfileConfig, build_profile, long_term, nearest,
                                      prompt_messages, short_term)


def approx(d):
    return {k: pytest.approx(v, abs=1e-12) for k, v in d.items()}


def test_rouge_single_reference_by_hand():
    # 6 tokens each; unigrams: the x2, cat, on, mat match = 5; bigrams the-cat, on-the, the-mat = 3
    # of 5; LCS "the cat on the mat" = 5
    assert rouge.score("the cat sat on the mat", "the cat is on the mat") == approx(
        {"rouge1": 5 / 6, "rouge2": 3 / 5, "rougeL": 5 / 6})
    # P = 2/3, R = 2/6: F = 2PR/(P+R) = 4/9; no bigram in common
    assert rouge.score("police kill man", "police shoot man in the street") == approx(
        {"rouge1": 4 / 9, "rouge2": 0.0, "rougeL": 4 / 9})


def test_rouge_clipping_tokens_and_empty():
    # candidate repeats "the" 3 times, the reference has it once: 1 match of 3 (P), of 2 (R)
    assert rouge.score("the the the", "the cat")["rouge1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert rouge.tokenize("Atlanta's 3-1 WIN!") == ["atlanta", "s", "3", "1", "win"]
    assert rouge.score("", "a b") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert rouge.lcs_length("a b c d e".split(), "b x d e a".split()) == 3


def test_rouge_multi_reference_takes_each_metrics_best():
    # ref 1: R1 0.5, R2 1/3 ("a b" of 3 bigrams each), RL 0.5; ref 2: R1 1.0, R2 0, RL 0.25
    s = rouge.score_multi("a b c d", ["a b x x", "d c b a", ""])
    assert s == approx({"rouge1": 1.0, "rouge2": 1 / 3, "rougeL": 0.5})
    with pytest.raises(ValueError, match="non-empty reference"):
        rouge.score_multi("a", ["", "  "])
    c = rouge.corpus(["a b c d", "police kill man"], [["a b x x", "d c b a"], ["Police kill man"]])
    assert c == approx({"rouge1": 1.0, "rouge2": (1 / 3 + 1) / 2, "rougeL": 0.75})


def test_factual_overlap_by_hand():
    body = ("Josef Martinez scored a hat trick as Atlanta United beat Inter Miami 4-2 on "
            "Saturday night.")
    assert entities("Martinez hat trick lifts Atlanta past Miami") == ["martinez", "atlanta", "miami"]
    assert overlap_score("Martinez hat trick lifts Atlanta past Miami", body) == 1.0
    # martinez, 5, atlanta, orlando: two of four in the body
    assert overlap_score("Martinez scores 5 as Atlanta beat Orlando", body) == 0.5
    assert overlap_score("Atlanta win 4-2", body) == 1.0  # atlanta, 4, 2
    assert overlap_score("nothing capitalised here", body) is None
    assert overlap_score("The Fed waits", body) == 0.0  # "the" is a stop word; fed, waits absent


class _YesNo:
    def __init__(self, scores):
        self.scores, self.seen = scores, []

    def score_options(self, conversations, options):
        self.seen.append((conversations, options))
        return self.scores


def test_llm_check_is_the_yes_probability():
    b = _YesNo([[-1.0, -2.0], [-3.0, -0.5]])
    p = llm_check(b, ["h1", "h2"], ["body one", "body two"])
    assert p[0] == pytest.approx(1 / (1 + math.exp(-1)))
    assert p[1] == pytest.approx(math.exp(-3) / (math.exp(-3) + math.exp(-0.5)))
    convs, opts = b.seen[0]
    assert opts == [["Yes", "No"], ["Yes", "No"]]
    assert "Headline: h1" in convs[0][-1]["content"] and "body one" in convs[0][-1]["content"]


def test_profiles_by_hand():
    assert short_term(["a", "", "b", "c"], 2) == ["b", "c"]
    day = 86400.0
    lt = long_term([["sports", "soccer"], ["finance", "markets"], ["sports", "basketball"]],
                   [0.0, 7 * day, 14 * day], half_life_days=7, top=3)
    # weights 0.25, 0.5, 1: sports 1.25, basketball 1, finance = markets 0.5, soccer 0.25; sum 3.5
    assert [x["name"] for x in lt] == ["sports", "basketball", "finance"]
    assert [x["weight"] for x in lt] == pytest.approx([1.25 / 3.5, 1 / 3.5, 0.5 / 3.5])
    no_time = long_term([["a"], ["b"], ["a"]], None, top=5)
    assert no_time == [{"name": "a", "weight": 2 / 3}, {"name": "b", "weight": 1 / 3}]
    assert nearest([[1, 0], [0, 1], [0.7, 0.7]], ["x", "y", "z"], [1, 0.1], k=2) == ["x", "z"]
    ctx = build_profile("short+long", ["t1", "t2"], [["c"], ["c"]], None, ProfileConfig())
    msgs = prompt_messages("generate", {**ctx, "body": "An article.", "category": "news",
                                        "topic": "weather"})
    assert msgs[0]["role"] == "system"
    assert "- t2" in msgs[1]["content"] and "c 1.00" in msgs[1]["content"]
    assert "(news, weather)" in msgs[1]["content"] and "Clicked headlines closest" not in msgs[1]["content"]
