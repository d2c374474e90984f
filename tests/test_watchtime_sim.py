"""The semi-synthetic watch-time simulator (llmrec.ranking.watchtime_sim) on small generated
ratings: truncation, reproducibility, its parameters, the KuaiRand schema round trip, and the
interest never reaching the features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path

from llmrec.data.kuairand import KUAIRAND_LOG_COLUMNS, read_kuairand_log
from llmrec.errors import ConfigError, DataError
from llmrec.ranking.watchtime_sim import (EXTRA_COLUMNS, WatchTimeSimConfig, item_durations,
                                          load_simulated, simulate_log)


def _ratings(n_users=40, n_items=60, per_user=30, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(1, n_users + 1):
        for i in rng.choice(np.arange(1, n_items + 1), per_user, replace=False):
            rows.append((u, int(i), int(rng.integers(1, 6)),
                         978300000 + int(rng.integers(0, 10_000_000))))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def test_truncation_schema_and_interest():
    log = simulate_log(_ratings(), WatchTimeSimConfig(seed=3))
    assert tuple(log.columns[:len(KUAIRAND_LOG_COLUMNS)]) == KUAIRAND_LOG_COLUMNS
    assert (log["play_time_ms"] <= log["duration_ms"]).all()  # w <= d always
    assert (log["play_time_ms"] >= 0).all()
    d = log["duration_ms"] / 1000
    assert d.min() >= 5 and d.max() <= 400
    assert np.allclose(log["interest"], (log["rating"] - 1) / 4)
    # a completed play is exactly the truncated counterfactual one (or a noisy look)
    done = log["play_time_ms"] == log["duration_ms"]
    assert (log.loc[done & (log["noisy"] == 0), "w_star_s"] >= d[done & (log["noisy"] == 0)]
            - 1e-3).all()
    assert done.any() and (~done).any()
    # one duration per item
    assert (log.groupby("video_id")["duration_ms"].nunique() == 1).all()
    assert (log["time_ms"].diff().dropna() >= 0).all()  # in time order


def test_seed_reproducible_and_different():
    r = _ratings()
    a = simulate_log(r, WatchTimeSimConfig(seed=1))
    b = simulate_log(r.sample(frac=1.0, random_state=5), WatchTimeSimConfig(seed=1))
    pd.testing.assert_frame_equal(a, b)  # same seed, same log (whatever the input order)
    c = simulate_log(r, WatchTimeSimConfig(seed=2))
    assert not np.array_equal(a["play_time_ms"], c["play_time_ms"])
    # an item's duration does not depend on which items are drawn with it
    cfg = WatchTimeSimConfig(seed=1)
    assert item_durations([7], cfg)[0] == item_durations([3, 7, 9], cfg)[1]


def test_parameters_respected():
    r = _ratings(n_users=200, n_items=300, per_user=100, seed=1)  # 20,000 plays
    cfg = WatchTimeSimConfig(seed=0, noisy_share=0.3, noisy_max_s=4.0)
    log = simulate_log(r, cfg)
    assert abs(log["noisy"].mean() - 0.3) < 0.015
    noisy = log["noisy"] == 1
    assert (log.loc[noisy, "play_time_ms"] <= 4000).all()
    # noisy looks are independent of the interest, the others are not
    q, w = log["interest"], log["play_time_ms"] / log["duration_ms"]
    assert abs(np.corrcoef(q[noisy], w[noisy])[0, 1]) < 0.05
    assert np.corrcoef(q[~noisy], w[~noisy])[0, 1] > 0.2
    # the log-normal durations have the configured median (before clipping, far from the clips)
    d = item_durations(np.arange(1, 4001), WatchTimeSimConfig(duration_median_s=30.0))
    assert abs(np.median(d) / 30.0 - 1) < 0.06
    # the duration bias: at equal interest, longer videos are watched longer in seconds but
    # completed less often
    clean = log[~noisy & (log["rating"] == 4)]
    long = clean["duration_ms"] > clean["duration_ms"].median()
    assert clean.loc[long, "play_time_ms"].mean() > clean.loc[~long, "play_time_ms"].mean()
    pcr = clean["play_time_ms"] / clean["duration_ms"]
    assert pcr[long].mean() < pcr[~long].mean()
    no_noise = simulate_log(r, WatchTimeSimConfig(noisy_share=0.0))
    assert no_noise["noisy"].sum() == 0


def test_bad_config_and_input():
    with pytest.raises(ConfigError, match="noisy_share"):
        WatchTimeSimConfig(noisy_share=1.5)
    with pytest.raises(ConfigError, match="min_duration_s"):
        WatchTimeSimConfig(min_duration_s=10, max_duration_s=5)
    with pytest.raises(DataError, match="lack column"):
        simulate_log(pd.DataFrame({"user_id": [1], "item_id": [2]}))
    r = _ratings(n_users=2, per_user=3)
    with pytest.raises(DataError, match="twice"):
        simulate_log(pd.concat([r, r.iloc[:1]]))


def test_kuairand_round_trip_interest_never_a_feature(tmp_path):
    from llmrec.ranking.features import build_features

    cfg = WatchTimeSimConfig(seed=0)
    data, split, fcfg, log = load_simulated(cfg, tmp_path, ratings=_ratings())
    back = pd.concat([read_kuairand_log(tmp_path / n) for n in
                      ("log_standard_4_08_to_4_21_pure.csv",
                       "log_standard_4_22_to_5_08_pure.csv")])
    assert len(back) == len(log)
    s = split.samples
    assert len(s) == len(log) and set(s["split"]) == {"train", "valid", "test"}
    assert (s["watch_s"] <= s["duration_s"]).all()
    assert np.allclose(s["interest"], (s["rating"] - 1) / 4)
    fs = build_features(data, split, fcfg)
    sp = fs.spec
    names = {f[0] for f in [*sp.user_fields, *sp.item_fields, *sp.item_multi_fields,
                            *sp.context_fields]} | set(sp.dense)
    assert "duration_feat" in names or any("duration_feat" in k for k in fs.tensors)
    for c in EXTRA_COLUMNS:
        assert c not in fs.spec.labels and c not in fcfg.numeric_fields
        assert c not in fcfg.context_fields and c not in names
        assert not any(k.split(".")[-1] == c for k in fs.tensors)
    assert split.info["simulation"]["what"] == "simulated watch time"


def test_on_ml1m_when_staged(tmp_path):
    folder = shared_path("movielens-1m")
    if not (folder / "movies.dat").is_file():
        pytest.skip(f"ML-1M not staged at {folder}")
    from llmrec.ranking.watchtime_sim import load_ml1m_ratings

    ratings, users, items = load_ml1m_ratings(WatchTimeSimConfig(path=str(folder), n_users=20))
    assert ratings["user_id"].nunique() == 20
    log = simulate_log(ratings)
    assert (log["play_time_ms"] <= log["duration_ms"]).all()


def test_watchtime_runner_reads_a_simulated_log_unchanged(tmp_path):
    import json

    from llmrec.ranking import watchtime_run as wt
    from llmrec.ranking.watchtime_sim import write_simulated_log

    write_simulated_log(simulate_log(_ratings(n_users=20, per_user=20)), tmp_path / "log")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"kuairand: {{path: {tmp_path / 'log'}, max_duration_s: 400}}\n"
                   f"watchtime: {{label: d2co}}\nmodel: dnn\n"
                   f"model_args: {{embed_dim: 4, hidden: [8]}}\n"
                   f"train: {{device: cpu, epochs: 1, batch_size: 64, checkpoint: false}}\n"
                   f"output: {tmp_path / 'res.json'}\n")
    assert wt.main(["--config", str(cfg)]) == 0
    res = json.loads((tmp_path / "res.json").read_text())
    assert res["data"]["kept"] == 400 and "gauc" in res["test"]
