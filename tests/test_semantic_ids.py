"""RQ-VAE semantic ids: codes follow planted clusters, the collision breaker makes ids unique,
and the statistics match hand counts."""

from __future__ import annotations

import numpy as np

from llmrec.ranking.semantic_ids import (SemanticIdConfig, break_collisions, code_statistics,
                                         learn_semantic_ids)


def test_collision_breaker_and_statistics_by_hand():
    codes = np.array([[0, 1], [0, 1], [2, 1], [0, 1], [3, 0]])
    out = break_collisions(codes)
    assert out[:, -1].tolist() == [0, 1, 0, 2, 0]
    assert len({tuple(r) for r in out.tolist()}) == 5
    st = code_statistics(codes, codebook_size=4)
    assert st["utilisation"] == [0.75, 0.5]
    assert st["distinct_ids"] == 3 and st["largest_group"] == 3
    assert st["collision_rate"] == 0.6  # 3 of 5 items share their codes with another


def test_first_level_codes_follow_planted_clusters():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16)) * 5
    labels = np.repeat(np.arange(4), 50)
    x = centers[labels] + rng.normal(size=(200, 16)) * 0.3
    res = learn_semantic_ids(x, SemanticIdConfig(levels=2, codebook_size=4, latent_dim=8,
                                                 hidden=[32], epochs=15, batch_size=64))
    first = res["codes"][:, 0]
    # every planted cluster maps to one first-level code, and different clusters to different ones
    purity = [np.bincount(first[labels == c]).max() / 50 for c in range(4)]
    assert min(purity) >= 0.95
    assert len({np.bincount(first[labels == c]).argmax() for c in range(4)}) == 4
    assert len({tuple(r) for r in res["codes"].tolist()}) == 200  # unique after the breaker
