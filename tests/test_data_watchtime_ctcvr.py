"""Loaders of KuaiRand / KuaiRec watch-time logs and of Ali-CCP / AliExpress click-to-conversion
files: tiny fixtures written here in the published schemas, and the torch-rechub Ali-CCP /
AliExpress samples of ../shared/data when staged (real files in those schemas); ESMM runs on them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import shared_path

from llmrec.data.aliccp import (ALICCP_FIELDS, ALIEXPRESS_COLUMNS, CtcvrConfig, load_ctcvr,
                                read_aliccp_raw, read_aliexpress)
from llmrec.data.kuairand import (KUAIRAND_LOG_COLUMNS, KUAIRAND_USER_COLUMNS,
                                  KUAIRAND_VIDEO_COLUMNS, KUAIREC_COLUMNS, KuaiRandConfig,
                                  load_kuairand, read_kuairand_log)
from llmrec.errors import DataError
from llmrec.ranking import registry
from llmrec.ranking.features import build_features
from llmrec.ranking.task_config import TaskConfig
from llmrec.ranking.trainer import TrainConfig, Trainer, seed_everything

RECHUB = "ctr-samples/torch_rechub/ranking/data"


def _kuairand_fixture(folder, n=80, seed=0):
    rng = np.random.default_rng(seed)
    users, videos = [17387, 25621, 3, 4, 5], [1123453, 3784, 7, 8, 9, 10]
    uid = rng.choice(users, n)
    vid = rng.choice(videos, n)
    dur = {v: int(rng.integers(3, 300)) * 1000 + 400 for v in videos}
    duration = np.array([dur[v] for v in vid])
    play = (rng.random(n) * 1.3 * duration).astype(np.int64)
    time_ms = 1649376000000 + np.sort(rng.integers(0, 14 * 86400 * 1000, n))
    d_s, w_s = duration / 1000, play / 1000
    lv = np.where(d_s <= 18, w_s >= d_s, w_s >= 18).astype(int)
    log = pd.DataFrame({
        "user_id": uid, "video_id": vid, "date": 20220421, "hourmin": rng.choice([400, 1300], n),
        "time_ms": time_ms, "is_click": rng.integers(0, 2, n), "is_like": 0, "is_follow": 0,
        "is_comment": 0, "is_forward": 0, "is_hate": 0, "long_view": lv, "play_time_ms": play,
        "duration_ms": duration, "profile_stay_time": 0, "comment_stay_time": 0,
        "is_profile_enter": 0, "is_rand": 0, "tab": rng.integers(0, 15, n)})
    assert tuple(log.columns) == KUAIRAND_LOG_COLUMNS
    half = n // 2
    log.iloc[:half].to_csv(folder / "log_standard_4_08_to_4_21_pure.csv", index=False)
    log.iloc[half:].to_csv(folder / "log_standard_4_22_to_5_08_pure.csv", index=False)
    u = pd.DataFrame({c: 0 for c in KUAIRAND_USER_COLUMNS}, index=range(len(users)))
    u["user_id"] = users
    u["user_active_degree"] = ["full_active", "high_active", "UNKNOWN", "full_active",
                               "middle_active"]
    u["register_days_range"] = "730+"
    u.to_csv(folder / "user_features_pure.csv", index=False)
    v = pd.DataFrame({c: 0 for c in KUAIRAND_VIDEO_COLUMNS}, index=range(len(videos)))
    v["video_id"] = videos
    v["video_type"] = "NORMAL"
    v["author_id"] = [441, 441, 2, 3, 3, 4]
    v["tag"] = "12,65"
    v.to_csv(folder / "video_features_basic_pure.csv", index=False)
    return log


def test_kuairand_fixture_samples_labels_and_features(tmp_path):
    log = _kuairand_fixture(tmp_path)
    data, split, fcfg = load_kuairand(KuaiRandConfig(path=str(tmp_path), min_duration_s=5,
                                                     max_duration_s=400))
    s = split.samples
    kept = log[(log["duration_ms"] >= 5000) & (log["duration_ms"] <= 400000)]
    assert len(s) == len(kept) == split.info["kept"]
    assert np.allclose(s["watch_s"], kept["play_time_ms"].to_numpy() / 1000)
    assert split.info["long_view_agreement"] == 1.0
    # split by time: every train interaction precedes every valid one, valid precedes test
    t = {k: s.loc[s["split"] == k, "timestamp"] for k in ("train", "valid", "test")}
    assert t["train"].max() <= t["valid"].min() and t["valid"].max() <= t["test"].min()
    assert {"raw", "pcr", "wtg", "d2q", "d2co", "long_view", "watch_s", "duration_s"} <= \
        set(fcfg.labels)
    # watch time and duration are labels, never features
    assert "watch_s" not in fcfg.context_fields and fcfg.numeric_fields == ["duration_feat"]
    assert fcfg.user_fields[0] == "user_active_degree" and "author_id" in fcfg.item_fields
    fs = build_features(data, split, fcfg)
    assert torch.allclose(fs.labels("d2co"), torch.tensor(s["d2co"].to_numpy()))
    assert fs.labels("d2co").min() >= 0 and fs.labels("d2co").max() <= 1
    # the duration-free variant
    _, _, f2 = load_kuairand(KuaiRandConfig(path=str(tmp_path), duration_feature=False))
    assert f2.numeric_fields == []


def test_kuairec_matrix(tmp_path):
    rows = pd.DataFrame({"user_id": [0, 0, 1, 1, 2, 2, 3, 3, 4, 4],
                         "video_id": [3649, 9598, 5262, 1963, 8234, 8228, 1, 2, 3, 4],
                         "play_duration": [13838, 13665, 851, 862, 858, 13484, 9000, 800, 20000,
                                           5000],
                         "video_duration": [10867, 10984, 7908, 9590, 11000, 8576, 9000, 9000,
                                            30000, 6000],
                         "time": "2020-07-05 00:08:23.438", "date": 20200705,
                         "timestamp": 1593878903.438 + np.arange(10) * 60.0,
                         "watch_ratio": 1.0})
    assert tuple(rows.columns) == KUAIREC_COLUMNS
    rows.to_csv(tmp_path / "small_matrix.csv", index=False)
    _, split, _ = load_kuairand(KuaiRandConfig(path=str(tmp_path), source="kuairec",
                                               name="kuairec"))
    s = split.samples
    assert len(s) == 10 and s["hour"].iloc[0] == "0"
    assert s["long_view"].tolist()[:2] == [1.0, 1.0]  # 13.8 s of 10.9 s; 13.7 s of 11.0 s


def test_kuairand_bad_input(tmp_path):
    log = _kuairand_fixture(tmp_path)
    log.drop(columns=["play_time_ms"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['play_time_ms'\]"):
        read_kuairand_log(tmp_path / "bad.csv")
    log.assign(duration_ms="long").to_csv(tmp_path / "bad2.csv", index=False)
    with pytest.raises(DataError, match="'duration_ms' is not numeric"):
        read_kuairand_log(tmp_path / "bad2.csv")
    with pytest.raises(DataError, match="no interaction with a duration"):
        load_kuairand(KuaiRandConfig(path=str(tmp_path), min_duration_s=1000,
                                     max_duration_s=2000))


def _feature_list(pairs):
    return "\x01".join(f"{f}\x02{fid}\x03{v}" for f, fid, v in pairs)


def test_aliccp_raw_format(tmp_path):
    common = [("c1", [("101", "u1", 1.0), ("121", "p3", 1.0), ("109_14", "h1", 2.0),
                      ("109_14", "h2", 1.0)]),
              ("c2", [("101", "u2", 1.0), ("124", "g1", 1.0)])]
    with open(tmp_path / "common_features_train.csv", "w") as fh:
        for key, feats in common:
            fh.write(f"{key},{len(feats)},{_feature_list(feats)}\n")
    samples = [(1, 1, 0, "c1", [("205", "i9", 1.0), ("301", "pos1", 1.0)]),
               (2, 1, 1, "c1", [("205", "i8", 1.0), ("206", "cat", 1.0)]),
               (3, 0, 0, "c2", [("205", "i9", 1.0)])]
    with open(tmp_path / "sample_skeleton_train.csv", "w") as fh:
        for sid, click, conv, key, feats in samples:
            fh.write(f"{sid},{click},{conv},{key},{len(feats)},{_feature_list(feats)}\n")
    frame = read_aliccp_raw(tmp_path / "sample_skeleton_train.csv",
                            tmp_path / "common_features_train.csv")
    assert frame["click"].tolist() == [1, 1, 0] and frame["conversion"].tolist() == [0, 1, 0]
    assert frame["101"].tolist() == ["u1", "u1", "u2"] and frame["205"].tolist() == ["i9", "i8",
                                                                                     "i9"]
    assert frame["121"].tolist() == ["p3", "p3", "-"] and frame["206"].tolist() == ["-", "cat",
                                                                                    "-"]
    assert list(frame.columns) == ["click", "conversion", *ALICCP_FIELDS]
    with open(tmp_path / "sample_skeleton_test.csv", "w") as fh:
        fh.write(f"9,1,0,c1,3,{_feature_list([('205', 'i9', 1.0)])}\n")
    with pytest.raises(DataError, match="feature_num says 3"):
        read_aliccp_raw(tmp_path / "sample_skeleton_test.csv",
                        tmp_path / "common_features_train.csv")
    with open(tmp_path / "sample_skeleton_test.csv", "w") as fh:
        fh.write(f"9,1,0,zz,1,{_feature_list([('205', 'i9', 1.0)])}\n")
    with pytest.raises(DataError, match="common_feature_index 'zz'"):
        read_aliccp_raw(tmp_path / "sample_skeleton_test.csv",
                        tmp_path / "common_features_train.csv")


def _esmm_run(data, split, fcfg):
    fs = build_features(data, split, fcfg)
    seed_everything(0)
    net = registry.build_model("esmm", fs.spec, embed_dim=4, tasks=["click", "conversion"],
                               tower=(8,), dropout=0.0)
    cfg = TrainConfig(device="cpu", seed=0, batch_size=32, epochs=2, lr=1e-2, patience=2,
                      checkpoint=False)
    return Trainer(net, fs, cfg, task=TaskConfig(kind="multitask",
                                                 labels=["click", "conversion"])).fit()


def test_aliexpress_sample_and_esmm_on_it():
    folder = shared_path(f"{RECHUB}/aliexpress")
    if not (folder / "aliexpress_train_sample.csv").is_file():
        pytest.skip(f"torch-rechub AliExpress sample not staged at {folder}")
    frame = read_aliexpress(folder / "aliexpress_train_sample.csv")
    assert tuple(frame.columns) == ALIEXPRESS_COLUMNS and len(frame) == 100
    data, split, fcfg = load_ctcvr(CtcvrConfig(format="aliexpress", path=str(folder),
                                               train="aliexpress_train_sample.csv",
                                               test="aliexpress_test_sample.csv"))
    assert split.info["splits"] == {"train": 90, "valid": 10, "test": 20}
    assert split.info["conversion_without_click"] == 0
    assert len(fcfg.context_fields) == 16 and len(fcfg.numeric_fields) == 63
    res = _esmm_run(data, split, fcfg)
    assert math.isfinite(res["test"]["click.logloss"])


def test_aliccp_processed_sample_and_esmm_on_it():
    folder = shared_path(f"{RECHUB}/ali-ccp")
    if not (folder / "ali_ccp_train_sample.csv").is_file():
        pytest.skip(f"torch-rechub Ali-CCP sample not staged at {folder}")
    data, split, fcfg = load_ctcvr(CtcvrConfig(format="aliccp_processed", path=str(folder)))
    assert split.info["splits"] == {"train": 100, "valid": 50, "test": 50}
    s = split.samples
    assert int(s["conversion"].sum()) == 3 and int(s["click"].sum()) == 12
    assert "f205" in fcfg.context_fields and "D508" in fcfg.numeric_fields
    res = _esmm_run(data, split, fcfg)
    assert math.isfinite(res["valid"]["click.logloss"])


def test_aliexpress_wrong_schema(tmp_path):
    pd.DataFrame({"search_id": [1], "click": [0]}).to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(DataError, match="not the AliExpress schema"):
        read_aliexpress(tmp_path / "train.csv")


@pytest.mark.parametrize("label", ["d2co", "cwm", "pcr"])
def test_watchtime_recipe_runs_on_the_kuairand_fixture(tmp_path, label, capsys):
    from llmrec.ranking import watchtime_run as wt

    _kuairand_fixture(tmp_path, n=200)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"kuairand: {{path: {tmp_path}, max_duration_s: 400}}\n"
                   f"watchtime: {{label: {label}}}\nmodel: dnn\n"
                   f"model_args: {{embed_dim: 4, hidden: [8]}}\n"
                   f"train: {{device: cpu, epochs: 2, batch_size: 32, checkpoint: false}}\n"
                   f"output: {tmp_path / 'res.json'}\n")
    assert wt.main(["--config", str(cfg), "--train.seed=1"]) == 0
    import json

    res = json.loads((tmp_path / "res.json").read_text())
    assert res["label"] == label and res["task"]["kind"] == "watchtime"
    for k in ("gauc", "xauc", "xgauc", "ndcg@1", "ndcg@5"):
        assert k in res["test"]
    assert ("mae" in res["test"]) == (label in ("cwm", "pcr"))
    if label == "cwm":  # predicted watch times never exceed the duration
        assert res["test"]["mae"] >= 0
