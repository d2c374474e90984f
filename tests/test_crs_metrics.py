"""CRS metrics on hand-built transcripts: SR, Recall@5, rounds, rater averages, WR."""

from __future__ import annotations

import pytest

from llmrec.crs.metrics import Verdict, judge, outcome, position_bias, summarize, win_rates


def _task(tid, target_id, title, activity="Efficiency-Seeking"):
    return {"task_id": tid, "dataset": "toy", "user_id": tid, "target_id": target_id,
            "target_title": title, "persona": {"activity": activity}, "target_hints": [],
            "source": {}}


def _agent(rnd, action, argument, titles=(), ok=True, searches=(), rec=None, strat=None,
           expr=None):
    text = "I recommend: " + "; ".join(titles) if action == "Recommend" else (argument or "")
    return {"role": "assistant", "round": rnd, "ok": ok, "action": action if ok else None,
            "argument": argument, "titles": list(titles), "text": text, "raw": text,
            "error": None if ok else "no action", "searches": list(searches),
            "ratings": {"recommendation": {"rating": rec, "reason": ""},
                        "strategy": {"rating": strat, "reason": ""},
                        "expression": {"rating": expr, "reason": "",
                                       "deductions": None if expr is None else
                                       {"flexibility": 5 - expr, "coherence": 0, "guidance": 0}}}}


def _user(rnd, text, policy="respond_to_clarification"):
    return {"role": "user", "round": rnd, "text": text, "policy": policy}


def _search(query, titles, ids):
    return {"query": query, "results": titles, "result_ids": ids}


# dialogue 1: finds the target by a Recommend in round 2 (title spelled differently), after a
# search that returned it
D1 = {"task_id": "t1", "task": _task("t1", "10", "Matrix, The (1999)", "Detail-Oriented"),
      "end_reason": "accepted",
      "turns": [_user(0, "hi"),
                _agent(1, "Ask", "What genre?", rec=0, strat=4, expr=5),
                _user(1, "sci-fi"),
                _agent(2, "Recommend", "The Matrix; Alien", ("The Matrix", "Alien"),
                       searches=[_search("sci-fi", ["Alien (1979)", "Matrix, The (1999)"],
                                         ["11", "10"])],
                       rec=5, strat=5, expr=3),
                _user(2, "thanks!", "end_conversation")]}
# dialogue 2: never names the target; its search returns the target under another id with the
# same title (duplicate catalog entries count); one failed turn
D2 = {"task_id": "t2", "task": _task("t2", "20", "Toy Story (1995)"),
      "end_reason": "max_rounds",
      "turns": [_user(0, "hi"),
                _agent(1, None, None, ok=False, rec=0),
                _user(1, "what?"),
                _agent(2, "Recommend", "Cars", ("Cars",), rec=2, strat=1, expr=2,
                       searches=[_search("kids", ["Toy Story (1995)"], ["999"])]),
                _user(2, "no"),
                _agent(3, "Response", "Maybe try something else.", rec=0, strat=2, expr=4)]}
# dialogue 3: names the target in the text of an Ask (free-text mention of a distinctive title)
D3 = {"task_id": "t3", "task": _task("t3", "30", "Blade Runner (1982)"),
      "end_reason": "accepted",
      "turns": [_user(0, "hi"),
                _agent(1, "Ask", "Have you seen blade runner?", rec=0, strat=3, expr=4)]}
# dialogue 4: the target's one-word title occurs in ordinary words only: no success
D4 = {"task_id": "t4", "task": _task("t4", "40", "Up (2009)"),
      "end_reason": "user_ended",
      "turns": [_user(0, "hi"),
                _agent(1, "Ask", "Are you up for an animated movie?", rec=0, strat=4, expr=5)]}


def test_outcomes():
    assert outcome(D1) == {"success": True, "hit_round": 2, "recall5": True, "rounds": 2,
                           "failed_turns": 0}
    assert outcome(D2) == {"success": False, "hit_round": None, "recall5": True, "rounds": 3,
                           "failed_turns": 1}
    assert outcome(D3)["success"] and outcome(D3)["hit_round"] == 1
    assert not outcome(D3)["recall5"]
    assert not outcome(D4)["success"]


def test_summary_hand_computed():
    m = summarize([D1, D2, D3, D4])
    assert m["n_tasks"] == 4
    assert m["SR"] == 0.5
    assert m["Recall@5"] == 0.5
    assert m["avg_rounds"] == pytest.approx((2 + 3 + 1 + 1) / 4)
    # recommendation: 0 (nothing recommended) is skipped: only 5 and 2 remain
    assert m["avg_recommendation"] == pytest.approx(3.5)
    assert m["n_rated_recommendation"] == 2
    # strategy and expression: the failed turn (None) is skipped
    assert m["avg_strategy"] == pytest.approx((4 + 5 + 1 + 2 + 3 + 4) / 6, abs=1e-4)
    assert m["avg_expression"] == pytest.approx((5 + 3 + 2 + 4 + 4 + 5) / 6, abs=1e-4)
    assert m["failed_turn_rate"] == pytest.approx(1 / 7, abs=1e-4)
    assert m["end_reasons"] == {"accepted": 2, "max_rounds": 1, "user_ended": 1}
    assert m["SR_by_activity"] == {"Detail-Oriented": 1.0, "Efficiency-Seeking": 0.3333}


def test_win_rate_both_orders():
    v = [
        # task 1: A wins in both orders
        Verdict("t1", "overall", True, "A"), Verdict("t1", "overall", False, "B"),
        # task 2: the judge always picks the first shown: one win, one loss
        Verdict("t2", "overall", True, "A"), Verdict("t2", "overall", False, "A"),
        # task 3: a tie and a loss
        Verdict("t3", "overall", True, "C"), Verdict("t3", "overall", False, "A"),
    ]
    wr = win_rates(v)["overall"]
    assert wr == {"WR": round((3 + 0.5) / 6, 4), "wins": 3, "ties": 1, "losses": 2, "total": 6}


class _FakeJudge:
    """Prefers the dialogue with more user turns (a stand-in for 'better'), or always 'A'."""

    name = "fake"

    def __init__(self, always=None):
        self.always = always
        self.calls = 0

    def choose(self, convs, options):
        self.calls += 1
        out = []
        for c in convs:
            if self.always:
                out.append("ABC".index(self.always))
                continue
            text = c[-1]["content"]
            a, b = text.split("Dialogue B:")
            na, nb = a.count("User:"), b.count("User:")
            out.append(0 if na > nb else 1 if nb > na else 2)
        return out


def test_judge_runs_both_orders_in_one_call():
    fj = _FakeJudge()
    verdicts, info = judge(fj, [D1, D2], [D3, D4, {**D4, "task_id": "t1"}, {**D3, "task_id": "t2"}],
                           criteria=["overall", "coherence"])
    assert fj.calls == 1 and info["n_shared_tasks"] == 2
    assert len(verdicts) == 2 * 2 * 2
    # D1 and D2 have more user turns than D4 / D3: A wins every comparison, in both orders
    assert win_rates(verdicts)["overall"]["WR"] == 1.0
    # a judge with a position bias and nothing else gives exactly 0.5
    verdicts, _ = judge(_FakeJudge("A"), [D1, D2], [{**D4, "task_id": "t1"},
                                                    {**D3, "task_id": "t2"}])
    assert all(r["WR"] == 0.5 for r in win_rates(verdicts).values())
    with pytest.raises(ValueError, match="share no task"):
        judge(fj, [D1], [D3])


def test_position_bias_shares_per_order():
    v = [Verdict("t1", "overall", True, "A"), Verdict("t1", "overall", False, "A"),
         Verdict("t2", "overall", True, "A"), Verdict("t2", "overall", False, "B"),
         Verdict("t3", "overall", True, "C"), Verdict("t3", "overall", False, "A")]
    assert position_bias(v) == {"share_first": 0.6667, "share_first_a_first": 0.6667,
                                "share_first_b_first": 0.6667, "share_second": 0.1667,
                                "share_tie": 0.1667, "total": 6}
    assert position_bias([])["share_first"] is None


def test_position_bias_of_judged_dialogues():
    # a judge that answers "A" whatever it is shown: share 1 in both orders, and WR exactly 0.5
    verdicts, _ = judge(_FakeJudge("A"), [D1, D2], [{**D4, "task_id": "t1"},
                                                    {**D3, "task_id": "t2"}])
    bias = position_bias(verdicts)
    assert bias["share_first_a_first"] == bias["share_first_b_first"] == 1.0
    assert bias["share_tie"] == 0.0
    # a judge that reads the dialogues (here: prefers the one with more user turns) picks the
    # first shown only when agent A's dialogue is first
    verdicts, _ = judge(_FakeJudge(), [D1, D2], [{**D4, "task_id": "t1"},
                                                 {**D3, "task_id": "t2"}], criteria=["overall"])
    bias = position_bias(verdicts)
    assert bias == {"share_first": 0.5, "share_first_a_first": 1.0, "share_first_b_first": 0.0,
                    "share_second": 0.5, "share_tie": 0.0, "total": 4}
