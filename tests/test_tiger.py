"""TIGER-style generative retrieval: the catalogue's code trie, the constrained beam search (only
catalogue items, never the history, and with a wide enough beam exactly the model's ranking of
every item), the ranked-list evaluation of the next-item task, and learning a planted pattern
end to end through the trainer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec.errors import ConfigError
from llmrec.ranking.features import FeatureConfig, FeatureSpec, build_features
from llmrec.ranking.models.sequential.tiger import TIGER, CodeTrie
from llmrec.ranking.synthetic import Tables
from llmrec.ranking.task_config import TaskConfig
from llmrec.ranking.tasks import build_task, ranked_list_rank

from conftest import shared_path

SMALL = dict(embed_dim=16, encoder_layers=1, decoder_layers=1, heads=2, head_dim=8, ffn=32,
             dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def _tables(n_users=150, n_items=40, seq_len=8, jump=0.0, seed=0, n_codes=(5, 8)):
    """Sequences where the next item is (previous + 1) mod N (a random item with probability
    ``jump``); item i has the two codes (i // 8, i % 8)."""
    from llmrec.data.splits import SplitConfig, make_split

    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        i = int(rng.integers(n_items))
        for t in range(seq_len):
            rows.append((f"u{u}", f"i{i}", t))
            i = int(rng.integers(n_items)) if rng.random() < jump else (i + 1) % n_items
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).assign(rating=np.nan)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                          "c1": [f"a{i // n_codes[1]}" for i in range(n_items)],
                          "c2": [f"b{i % n_codes[1]}" for i in range(n_items)]})
    split = make_split(df, SplitConfig(protocol="leave-last-out"))
    cfg = FeatureConfig(max_hist_len=5, use_user_id=False, user_fields=[], use_item_id=False,
                        item_fields=["c1", "c2"], item_multi_fields=[], use_hist_rating=False)
    return build_features(Tables({"items": items}), split, cfg)


@pytest.fixture(scope="module")
def planted():
    return _tables()


# ------------------------------------------------------------------------------------------------
# the trie


def test_trie_children_leaves_and_collisions_by_hand():
    # rows 1..5 (row 0 = padding); rows 3 and 5 share all their codes
    table = torch.tensor([[0, 0], [3, 4], [3, 5], [4, 4], [5, 3], [4, 4]])
    trie = CodeTrie.build(table, [6, 6])
    assert trie.levels == 2 and trie.n_items == 5
    root = trie.children[0][0]
    assert (root >= 0).nonzero().flatten().tolist() == [3, 4, 5]  # first codes in the catalogue
    n3 = int(root[3])
    assert (trie.children[1][n3] >= 0).nonzero().flatten().tolist() == [4, 5]
    assert trie.items_of(torch.tensor([3])) == [1, 2]
    assert trie.items_of(torch.tensor([4, 4])) == [3, 5]  # the colliding pair, in row order
    assert trie.items_of(torch.tensor([4, 3])) == []
    assert trie.items_of(torch.tensor([], dtype=torch.long)) == [1, 2, 3, 4, 5]
    leaf = int(trie.children[1][int(root[4]), 4])
    assert trie.leaf_items[leaf].tolist() == [3, 5]
    assert trie.collisions == 2
    with pytest.raises(ValueError, match="outside"):
        CodeTrie.build(torch.tensor([[0, 0], [6, 1]]), [6, 6])


def test_trie_of_random_codes_holds_exactly_the_catalogue():
    g = torch.Generator().manual_seed(0)
    table = torch.randint(3, 9, (200, 3), generator=g)
    table[0] = 0
    trie = CodeTrie.build(table, [9, 9, 9])
    tuples = {tuple(r) for r in table[1:].tolist()}
    # every code tuple reachable in the trie is an item's, and every item is reachable
    found = set()
    for a in range(9):
        for b in range(9):
            for c in range(9):
                rows = trie.items_of(torch.tensor([a, b, c]))
                if rows:
                    found.add((a, b, c))
                    assert all(tuple(table[r].tolist()) == (a, b, c) for r in rows)
    assert found == tuples
    assert sum(len(trie.items_of(torch.tensor(t))) for t in tuples) == 199


@pytest.mark.slow
def test_beauty_semantic_ids_give_a_collision_free_trie_of_every_item():
    folder = shared_path("amazon-beauty-2014-5core")
    items = pd.read_csv(folder / "items.csv")
    codes = torch.tensor(items[["sid_1", "sid_2", "sid_3", "sid_4"]].to_numpy())
    table = torch.cat([torch.zeros(1, 4, dtype=torch.long), codes])
    trie = CodeTrie.build(table, [256] * 4)
    assert trie.n_items == 12101 and trie.collisions == 0
    assert trie.leaf_items.shape == (12101, 1)
    assert sorted(trie.leaf_items[:, 0].tolist()) == list(range(1, 12102))


# ------------------------------------------------------------------------------------------------
# constrained beam search


def _sparse_catalogue(seed=0):
    """30 random distinct 3-code items over vocabularies of 10 (ids 3..9, after the specials), so
    most code prefixes are not items; items 29 and 30 share all their codes."""
    rng = np.random.default_rng(seed)
    tuples = set()
    while len(tuples) < 29:
        tuples.add(tuple(int(v) for v in rng.integers(3, 10, 3)))
    rows = [[0, 0, 0], *sorted(tuples)]
    rows.append(rows[-1])
    return torch.tensor(rows)


def _spec(levels=3, vocab=10, hist=4):
    return FeatureSpec(user_fields=[], item_fields=[(f"c{j}", vocab) for j in range(levels)],
                       item_multi_fields=[], rating_vocab=4, max_hist_len=hist)


def _batch(table, b=6, hist=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    hist_rows = torch.randint(1, table.shape[0], (b, hist), generator=g)
    hist_rows[:, 3:] = 0  # shorter than the window: retrieval trims the padding
    hist_rows[0, 2:] = 0  # a shorter history still
    return {"hist_item": table[hist_rows], "hist_mask": hist_rows > 0, "hist_rows": hist_rows,
            "user_row": torch.arange(1, b + 1), "item": table[torch.ones(b, dtype=torch.long)],
            "catalog": {"item": table, "item_multi": {}}}


def test_beam_search_returns_only_catalogue_items_never_the_history():
    table = _sparse_catalogue()
    torch.manual_seed(0)
    model = TIGER(_spec(), beam_size=12, **SMALL).eval()
    batch = _batch(table)
    rows, scores = model.generate(batch)
    assert rows.shape == scores.shape == (6, 12)
    assert ((rows >= 1) & (rows < table.shape[0])).all()  # 30 items, 3 history: the beam fills
    for r in range(6):
        listed = rows[r].tolist()
        assert len(set(listed)) == len(listed)
        assert not set(listed) & set(batch["hist_rows"][r].tolist())
    assert (scores[:, 1:] <= scores[:, :-1] + 1e-6).all()
    out = model(batch)
    assert torch.equal(out["ranked"], rows)


def test_wide_beam_equals_the_exact_ranking_of_every_item():
    """With a beam at least the catalogue's size nothing is pruned: the list is every
    non-history item sorted by its teacher-forced log-probability (colliding items tie and follow
    in row order). The exact scores read the untrimmed window, the beam the trimmed one."""
    table = _sparse_catalogue()
    torch.manual_seed(1)
    model = TIGER(_spec(), beam_size=40, **SMALL).eval()
    batch = _batch(table)
    rows, scores = model.generate(batch)
    all_rows = torch.arange(1, table.shape[0])
    exact = model.item_log_probs(batch, all_rows)  # [B, 30]
    for r in range(rows.shape[0]):
        hist = set(batch["hist_rows"][r].tolist())
        keep = [i for i in range(all_rows.numel()) if int(all_rows[i]) not in hist]
        want = sorted(keep, key=lambda i: (-float(exact[r, i]), int(all_rows[i])))
        want_rows = [int(all_rows[i]) for i in want]
        got = [x for x in rows[r].tolist() if x > 0]
        assert got == want_rows
        assert torch.allclose(scores[r, :len(got)], exact[r, want], atol=1e-4)
        assert (rows[r, len(got):] == 0).all() and torch.isinf(scores[r, len(got):]).all()


def test_narrow_beam_keeps_its_best_and_needs_codes_only():
    table = _sparse_catalogue()
    torch.manual_seed(2)
    model = TIGER(_spec(), beam_size=3, **SMALL).eval()
    rows, scores = model.generate(_batch(table))
    assert rows.shape == (6, 3) and (rows > 0).all()  # history-only prefixes never kept
    with pytest.raises(ValueError, match="semantic-id codes"):
        TIGER(FeatureSpec(user_fields=[], item_fields=[("item_id", 20)], item_multi_fields=[],
                          rating_vocab=4, max_hist_len=4))


# ------------------------------------------------------------------------------------------------
# evaluation by the ranked list


def test_ranked_list_rank_by_hand():
    ranked = torch.tensor([[7, 3, 5, 9], [2, 4, 6, 8], [0, 5, 1, 0], [3, 9, 7, 2]])
    target = torch.tensor([5, 1, 1, 3])
    history = torch.tensor([[3, 0], [0, 0], [0, 0], [3, 7]])
    rank = ranked_list_rank(ranked, target, history)
    # row 0: 3 is history, dropped -> [7, 5]: rank 1; row 1: absent -> 4 (= N, a miss at k <= 4);
    # row 2: empty slots do not count -> rank 1; row 3: the target is never dropped even when it
    # is in the history -> rank 0
    assert rank.tolist() == [1, 4, 1, 0]


def test_next_item_evaluate_reads_the_ranked_list(planted):
    fs = planted
    task = build_task(TaskConfig(kind="next_item", ks=[1, 2]), fs.spec)
    idx = fs.split_index("test")[:4]
    target = fs.tensors["item_row"][idx]
    other = (target % (fs.n_items - 1)) + 1  # some other item
    ranked = torch.stack([target, other], 1)
    ranked[1] = torch.stack([other[1], target[1]])  # second sample: the target second
    ranked[2] = torch.stack([other[2], other[2]])  # third: absent
    out = {"ranked": ranked, "ranked_scores": torch.zeros(4, 2)}
    m = task.evaluate(lambda chunk: out, fs, idx, batch_size=4)
    # history masking may drop `other`; hand-compute with the task's own rule
    rank = ranked_list_rank(ranked, target, fs.tensors["hist_rows"][idx]).double()
    assert m["hr@2"] == pytest.approx(float((rank < 2).double().mean()))
    assert m["ndcg@2"] == pytest.approx(float(torch.where(rank < 2, 1 / torch.log2(rank + 2),
                                                          torch.zeros(())).mean()))
    assert rank[0] == 0 and rank[2] == 2
    short = build_task(TaskConfig(kind="next_item", ks=[5]), fs.spec)
    with pytest.raises(ConfigError, match="beam_size"):
        short.evaluate(lambda chunk: out, fs, idx, batch_size=4)
    cols = task.predict_columns(out)
    assert torch.equal(cols["top_rows"], ranked)


# ------------------------------------------------------------------------------------------------
# learning


def test_tiger_learns_a_planted_next_item_pattern(planted):
    from llmrec.ranking.popularity import next_item_popularity
    from llmrec.ranking.trainer import TrainConfig, Trainer, seed_everything

    fs = planted
    seed_everything(0)
    model = TIGER(fs.spec, beam_size=10, user_buckets=0, **{**SMALL, "embed_dim": 32, "ffn": 64})
    cfg = TrainConfig(device="cpu", seed=0, batch_size=64, epochs=15, lr=1e-2, patience=15,
                      checkpoint=False)
    res = Trainer(model, fs, cfg, task=TaskConfig(kind="next_item", ks=[1, 10])).fit()
    pop = next_item_popularity(fs, ks=(10,))
    # the next item is determined by the last one: generation must put it first almost always
    # (seen: 1.0 on valid and test after 12 epochs), far above most popular
    assert res["test"]["hr@1"] > 0.8, res["test"]
    assert res["valid"]["hr@10"] > 0.9
    for split in ("valid", "test"):
        assert res[split]["hr@10"] > pop[split]["hr@10"] + 0.4, (res[split], pop[split])
    assert res["history"][0]["train_loss"] > res["history"][-1]["train_loss"]


def test_sequence_training_is_refused_for_a_model_with_its_own_objective(planted):
    fs = planted
    model = TIGER(fs.spec, **SMALL).train()
    batch = fs.batch(fs.split_index("train")[:8])
    task = build_task(TaskConfig(kind="next_item", sequence_training=True), fs.spec)
    with pytest.raises(ConfigError, match="sequence_training: false"):
        task.loss(model(batch), batch)
