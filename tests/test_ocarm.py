"""OCARM on the return-visit proxy: session / return / label rules on a hand-made log, the
student's leakage guarantee, and a tiny training smoke."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec.errors import ConfigError
from llmrec.retention.model import OcarmConfig, Student, Teacher, run_seed, tensors
from llmrec.retention.proxy import DAY, STUDENT_KEYS, ProxyConfig, build_events

torch.set_num_threads(1)

A1 = 5400 + 3 * DAY          # user 1's first return: exactly 3 days after the session ending 5400
A2 = A1 + 600 + 7 * DAY      # next session exactly 7 days after A1's session ends (also a return)
S5 = A2 + 3 * DAY - 1        # < 3 days after A2: a session, not a return
A3 = S5 + 8 * DAY            # a return with no later session
FAR = A3 + 100 * DAY         # user 2's late return: the log's last rating (label censored)
B1, B2 = 4 * DAY, 12 * DAY   # user 3: B2 starts 8 days after B1 ends


def _log():
    rows = [  # user, item, time
        (1, "1", 0), (1, "2", 1800),          # session 1: gap 30 min joins
        (1, "3", 5400),                        # gap exactly 1 h: new session, not a return
        (1, "901", A1), (1, "902", A1 + 600),  # return anchor A1 (its onboarding content)
        (1, "903", A2),                        # return anchor A2
        (1, "904", S5),
        (1, "905", A3),                        # return anchor A3
        (2, "1", 0), (2, "2", FAR),            # return anchor, censored label
        (3, "1", 0), (3, "2", B1), (3, "3", B2),
    ]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    df["rating"] = 4.0
    return df


def _items(extra=()):
    ids = [str(i) for i in range(1, 6)] + ["901", "902", "903", "904", "905", "950", "951",
                                           *extra]
    return pd.DataFrame({"item_id": ids, "genres": [["Drama"] if int(i) % 2 else ["Comedy"]
                                                    for i in ids]})


def _users():
    return pd.DataFrame({"user_id": [1, 2, 3], "gender": ["F", "M", "M"], "age": [1, 25, 35],
                         "occupation": ["a", "b", "a"]})


def _cfg(**kw):
    return ProxyConfig(max_user=None, history_len=4, content_len=3, **kw)


def _row(ev, user, anchor):
    k = np.flatnonzero((ev.user == user) & (ev.anchor_time == anchor))
    assert len(k) == 1, (user, anchor, ev.user, ev.anchor_time)
    return int(k[0])


def test_sessions_returns_and_labels_on_a_hand_made_log():
    ev = build_events(_log(), _items(), _users(), _cfg())
    # returns: A1, A2, A3 (user 1), FAR (user 2), B1, B2 (user 3); 5400 and S5 are not returns
    assert sorted(zip(ev.user.tolist(), ev.anchor_time.tolist())) == sorted(
        [(1, A1), (1, A2), (1, A3), (2, FAR), (3, B1), (3, B2)])
    assert ev.n_sessions == 6 + 2 + 3   # user 1: 6 sessions, user 2: 2, user 3: 3
    y7, y14, y30 = ev.labels[7], ev.labels[14], ev.labels[30]
    assert y7[_row(ev, 1, A1)] == 1.0            # next session exactly 7 days after the end
    assert ev.anchor_end[_row(ev, 1, A1)] == A1 + 600
    assert y7[_row(ev, 1, A2)] == 1.0            # next session after 3 days - 1 s
    assert y7[_row(ev, 1, A3)] == 0.0            # never again, log covers 100 days after
    assert y30[_row(ev, 1, A3)] == 0.0
    assert y7[_row(ev, 3, B1)] == 0.0 and y14[_row(ev, 3, B1)] == 1.0   # 8 days later
    assert math.isnan(y7[_row(ev, 2, FAR)])      # the log ends with it: censored
    assert ev.gap_s[_row(ev, 1, A1)] == 3 * DAY
    # the onboarding content is the anchor session's first items, in order
    k = _row(ev, 1, A1)
    assert ev.content_items[k, 2] == 0 and ev.content_time[k].tolist() == [A1, A1 + 600, -1]


def test_gap_just_under_three_days_is_not_a_return():
    df = pd.DataFrame({"user_id": [1, 1, 1], "item_id": ["1", "2", "3"],
                       "timestamp": [0, 3 * DAY - 1, 3 * DAY - 1 + 3599]})
    ev = build_events(df, cfg=_cfg())
    assert len(ev) == 0 and ev.n_sessions == 2   # 3599 s joins the second session


def test_student_inputs_hold_nothing_at_or_after_the_anchor():
    ev = build_events(_log(), _items(), _users(), _cfg())
    vocab = {i: k + 1 for k, i in enumerate(_items()["item_id"])}
    from_a1_on = {vocab[i] for i in ("901", "902", "903", "904", "905")}  # user 1, t >= A1
    for user, anchor in zip(ev.user, ev.anchor_time):
        k = _row(ev, user, anchor)
        x = ev.inputs(np.array([k]))
        assert set(x) == set(STUDENT_KEYS)
        t = ev.hist_time[k]
        assert (t[t >= 0] < anchor).all()
        hist = set(x["hist_items"][0].tolist())
        if user == 1 and anchor == A1:
            assert not from_a1_on & hist
        if user == 1:  # user 1's anchor-session items are ids never rated before
            assert not (set(ev.content_items[k].tolist()) - {0}) & hist
    assert ev.hist_items[_row(ev, 1, A1)].tolist() == [0, vocab["1"], vocab["2"], vocab["3"]]


def test_student_inputs_unchanged_when_everything_from_the_anchor_on_changes():
    base = build_events(_log(), _items(), _users(), _cfg())
    df = _log()
    late = (df.user_id == 1) & (df.timestamp >= A1)
    df.loc[late, "item_id"] = "950"                      # other items from the anchor on
    df.loc[late, "rating"] = 1.0
    df = pd.concat([df, pd.DataFrame({"user_id": [1], "item_id": ["951"], "rating": [5.0],
                                      "timestamp": [A1 + 60]})], ignore_index=True)
    pert = build_events(df, _items(), _users(), _cfg())
    kb, kp = _row(base, 1, A1), _row(pert, 1, A1)
    for key in STUDENT_KEYS:
        np.testing.assert_array_equal(getattr(base, key)[kb], getattr(pert, key)[kp], key)
    assert not np.array_equal(base.content_items[kb], pert.content_items[kp])  # content did move
    # and a student reads none of it: its score is the same with any content in the batch
    stats = (np.zeros(base.num.shape[1]), np.ones(base.num.shape[1]))
    torch.manual_seed(0)
    student = Student(base, OcarmConfig(dim=8, hidden=16)).eval()
    xb = tensors(base, np.array([kb]), stats, content=True)
    xp = tensors(pert, np.array([kp]), stats, content=True)
    assert torch.equal(student(xb)[1], student(xp)[1])
    assert "content_items" not in tensors(base, np.array([kb]), stats, content=False)


def _random_log(n_users=120, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        t = int(rng.integers(0, 30 * DAY))
        for _ in range(int(rng.integers(2, 8))):           # sessions
            for _ in range(int(rng.integers(1, 6))):       # ratings in a session
                rows.append((u, str(int(rng.integers(1, 60))), t, float(rng.integers(1, 6))))
                t += int(rng.integers(10, 3000))
            t += int(rng.choice([2 * 3600, 5 * DAY, 10 * DAY, 20 * DAY]))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])


def test_no_history_at_or_after_any_anchor_on_a_random_log():
    ev = build_events(_random_log(), cfg=_cfg())
    assert len(ev) > 100
    pad = ev.hist_time < 0
    assert ((ev.hist_time < ev.anchor_time[:, None]) | pad).all()
    assert (ev.hist_items[pad] == 0).all() and (ev.content_time[:, 0] == ev.anchor_time).all()


def test_split_is_by_anchor_time_and_purged():
    ev = build_events(_random_log(), cfg=_cfg())
    tr, va, te = (ev.split_index(s) for s in ("train", "valid", "test"))
    assert ev.anchor_time[tr].max() < ev.anchor_time[va].min() <= ev.anchor_time[te].min()
    assert (ev.anchor_end[tr] + 7 * DAY < ev.cuts[0]).all()
    assert not set(tr) & set(va) and not set(va) & set(te)
    with pytest.raises(ConfigError):
        ev.split_index("dev")
    with pytest.raises(ConfigError):
        ProxyConfig(split=[0.5, 0.5])


def test_teacher_reads_content_and_zeroing_it_equals_empty_content():
    ev = build_events(_random_log(), cfg=_cfg())
    idx = np.arange(len(ev))
    stats = (np.zeros(ev.num.shape[1]), np.ones(ev.num.shape[1]))
    x = tensors(ev, idx, stats, content=True)
    torch.manual_seed(0)
    teacher = Teacher(ev, OcarmConfig(dim=8, hidden=16)).eval()
    with torch.no_grad():
        full, zero = teacher(x)[1], teacher(x, zero_content=True)[1]
        empty = teacher({**x, "content_items": torch.zeros_like(x["content_items"]),
                         "content_ratings": torch.zeros_like(x["content_ratings"])})[1]
    assert torch.isfinite(zero).all() and torch.allclose(zero, empty)
    assert not torch.allclose(full, zero)


def test_training_smoke_gives_the_four_rows():
    ev = build_events(_random_log(200), cfg=_cfg())
    cfg = OcarmConfig(dim=8, hidden=16, epochs=2, patience=1, batch_size=64)
    rows = run_seed(ev, cfg, seed=0, grid=[(1.0, "l2"), (1.0, "cosine")])
    assert [r["row"] for r in rows] == ["teacher", "content_zero_at_serve", "student_only",
                                        "ocarm", "ocarm"]
    for r in rows:
        assert 0.0 <= r["test"]["auc"] <= 1.0 and r["test"]["n"] > 0
        assert r["best_epoch"] >= 1
    assert rows[0]["deployable"] is False and all(r["deployable"] for r in rows[1:])
    with pytest.raises(ConfigError):
        OcarmConfig(distance="kl")


def test_real_ml1m_has_enough_return_events():
    path = Path(__file__).resolve().parents[1] / "../shared/data/movielens-1m"
    if not (path / "movies.dat").is_file():
        pytest.skip(f"MovieLens-1M not found at {path}; the proxy counts need it")
    from llmrec.retention.proxy import load_events

    ev = load_events(ProxyConfig(path=str(path)))
    c = ev.counts()
    assert c["anchors"] >= 2000 and set(c["horizons"]) == {7, 14, 30}
    assert ((ev.hist_time < ev.anchor_time[:, None]) | (ev.hist_time < 0)).all()
