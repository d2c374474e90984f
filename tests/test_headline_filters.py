"""Click filters (llmrec.headline.filters): exact kept indices on hand-made sequences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec.headline.filters import (FilterConfig, RatingDenoiseConfig, burst_keep, centroid_keep,
                                     denoise, denoise_ratings, dwell_keep, stage_counts)


def kept(mask):
    return [int(i) for i in np.flatnonzero(mask)]


def test_dwell_stage_keeps_long_and_unknown():
    assert kept(dwell_keep([45, 3, 10, 9.99, np.nan, 120], 10)) == [0, 2, 4, 5]


def test_burst_stage_exact_indices():
    #        0   1   2   3   4    5    6    7    8    9
    times = [0, 100, 105, 110, 130, 131, 500, 510, 520, 900]
    dwell = [50, 12, 40, 11, 40, 15, 30, 30, 30, 20]
    # run 1..5 (gaps 5, 5, 20, 1: all <= 20): 5 clicks, longest dwell 40 first at 2
    # run 6..8 has 3 clicks < burst_k = 4: kept whole
    assert kept(burst_keep(times, dwell, burst_k=4, burst_gap_s=20)) == [0, 2, 6, 7, 8, 9]
    # a gap of 20.5 breaks the run into 1..3 (3 clicks) and 4..5: nothing is a burst
    times2 = [0, 100, 105, 110, 130.5, 131, 500, 510, 520, 900]
    assert kept(burst_keep(times2, dwell, 4, 20)) == list(range(10))
    # burst_k = 3: both runs are bursts; ties in the second keep its first click (6)
    assert kept(burst_keep(times, dwell, 3, 20)) == [0, 2, 6, 9]
    # no score: the run's first click
    assert kept(burst_keep(times, None, 4, 20)) == [0, 1, 6, 7, 8, 9]


def test_burst_stage_unknown_times_and_order():
    assert kept(burst_keep([0, 1, np.nan, 2, 3], None, 3, 20)) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="time order"):
        burst_keep([5, 1, 2, 3], None, 2, 20)


def test_centroid_stage():
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [1.0, 0.2], [-1.0, 0.05]])
    # centroid of the unit vectors points along +x: the last item has cosine about -0.97
    assert kept(centroid_keep(emb, 0.2)) == [0, 1, 2]
    assert kept(centroid_keep(emb[:1], 0.99)) == [0]


def table():
    # user a: dwell 3 s dropped (1); after it 2..6 is a burst (gaps 5 s) -> keep 4 (dwell 90)
    # user b: all slow, nothing dropped; its positions come unsorted in the table
    rows = [("a", 0, "n0", 30, 0), ("a", 1, "n1", 3, 1000), ("a", 2, "n2", 20, 2000),
            ("a", 3, "n3", 15, 2005), ("a", 4, "n4", 90, 2010), ("a", 5, "n5", 12, 2015),
            ("a", 6, "n6", 40, 2020), ("a", 7, "n7", 25, 9000),
            ("b", 1, "m1", 30, 500), ("b", 0, "m0", 30, 0), ("b", 2, "m2", 30, 1000)]
    return pd.DataFrame(rows, columns=["user_id", "position", "news_id", "dwell_s", "time_s"])


def test_denoise_table_per_user_and_counts():
    t = table()
    r = denoise(t, FilterConfig(stages="dwell+burst"))
    assert list(r["removed_by"]) == ["", "dwell", "burst", "burst", "", "burst", "burst", "",
                                     "", "", ""]
    c = stage_counts(r)
    assert (c["clicks"], c["removed_dwell"], c["removed_burst"], c["kept"]) == (11, 1, 4, 6)
    r1 = denoise(t, FilterConfig(stages="dwell"))
    assert kept(r1["kept"]) == [0, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert denoise(t, FilterConfig(stages="none"))["kept"].all()


def test_denoise_news_stage_and_missing_embeddings():
    t = table()
    vec = {f"n{i}": [1.0, 0.0] for i in range(8)} | {"m0": [0, 1.0], "m1": [0, 1.0]}
    vec["n7"] = [-1.0, 0.0]
    r = denoise(t, FilterConfig(stages="dwell+burst+news"), embed=vec)
    # user a keeps n0, n4, n7 after two stages; n7 points away from the centroid of them
    assert r.loc[r.news_id == "n7", "removed_by"].item() == "news"
    assert stage_counts(r)["no_embedding"] == 1  # m2
    assert r.loc[r.news_id == "m2", "kept"].item()
    with pytest.raises(ValueError, match="needs item embeddings"):
        denoise(t, FilterConfig(stages="dwell+burst+news"))


def test_filter_config_checks():
    with pytest.raises(ValueError, match="stages must be one of"):
        FilterConfig(stages="burst")
    with pytest.raises(ValueError, match="burst_k"):
        FilterConfig(burst_k=1)


def test_rating_variant():
    ratings = [5, 1, 4, 4, 5, 3, 2, 4]
    times = [0, 100, 200, 201, 202, 203, 204, 9000]
    off = denoise_ratings(ratings, times, RatingDenoiseConfig())
    assert off[0].all()
    keep, why = denoise_ratings(ratings, times, RatingDenoiseConfig(enabled=True))
    # low: 1 (idx 1) and 2 (idx 6); the rest 2,3,4,5 are a burst (gaps 1 s) -> keep idx 4 (5 stars)
    assert kept(keep) == [0, 4, 7]
    assert list(why) == ["", "rating", "burst", "burst", "", "burst", "rating", ""]
    keep, _ = denoise_ratings(ratings, times, RatingDenoiseConfig(enabled=True, burst_k=None))
    assert kept(keep) == [0, 2, 3, 4, 5, 7]
