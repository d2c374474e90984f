"""KAR's adaptor and KSER's parts on hand-built inputs: shapes, gate sums, exact chunk weights
(padding ignored), top-k and hard filtering, field gates, de-homogenisation, alignment, InfoNCE."""

from __future__ import annotations

import math

import pytest
import torch

from llmrec.ranking.knowledge.kar import HybridExpertAdaptor
from llmrec.ranking.knowledge.kser import (AttentionAlignment, ESFNet, KSERExtractor, MLPAlignment,
                                           info_nce, masked_softmax, top_k_mask)


def test_hea_shapes_and_gates_sum_to_one():
    torch.manual_seed(0)
    hea = HybridExpertAdaptor({"user": 6, "item": 6}, n_shared=2, n_specific=3, hidden=(8, 4))
    x = {"user": torch.randn(5, 6), "item": torch.randn(5, 6)}
    out = hea(x)
    assert out["user"].shape == (5, 4) and out["item"].shape == (5, 4)
    for k in x:
        g = hea.gates(k, x[k])
        assert g.shape == (5, 5)  # S + P experts
        torch.testing.assert_close(g.sum(-1), torch.ones(5))
        # o_t is exactly the gate-weighted sum of the experts it mixes
        manual = (g.unsqueeze(-1) * hea.expert_outputs(k, x[k])).sum(1)
        torch.testing.assert_close(out[k], manual)
    # both kinds mix the same shared experts and their own specific ones
    same = hea.expert_outputs("user", x["item"])[:, :2]
    torch.testing.assert_close(same, hea.expert_outputs("item", x["item"])[:, :2])
    assert set(map(id, hea.specific["user"])).isdisjoint(set(map(id, hea.specific["item"])))


def test_masked_softmax_and_top_k():
    s = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    m = torch.tensor([[True, True, False], [False, False, False]])
    w = masked_softmax(s, m)
    e1, e2 = math.exp(1.0), math.exp(2.0)
    torch.testing.assert_close(w[0], torch.tensor([e1 / (e1 + e2), e2 / (e1 + e2), 0.0]))
    torch.testing.assert_close(w[1], torch.zeros(3))  # nothing valid: all zeros, no NaN
    keep = top_k_mask(torch.tensor([[0.3, 0.9, 0.5, 2.0]]), torch.tensor([[True, True, True, False]]), 2)
    assert keep.tolist() == [[False, True, True, False]]  # the masked 2.0 never counts


def _scoring_net(**kw) -> ESFNet:
    """ESFNet with 2 fields, 2-d chunks, identity keys, no query: s = tanh(c_0)."""
    net = ESFNet(n_fields=2, in_dim=2, query_dim=3, hidden=2, value_dim=2, **kw)
    with torch.no_grad():
        net.key_w.copy_(torch.eye(2).expand(2, 2, 2))
        net.key_b.zero_()
        net.query.weight.zero_()
        net.v.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
        net.value_w.copy_(torch.eye(2).expand(2, 2, 2))
        net.value_b.zero_()
    return net


# chunk table sorted by field: rows 1-2 field 0, row 3 field 1 (row 0 = padding)
VECTORS = torch.tensor([[0.0, 0.0], [0.5, 1.0], [1.0, 2.0], [-0.3, 4.0]])
SLICES = [(1, 3), (3, 4)]


def test_esfnet_weights_ignore_padding_exactly():
    net = _scoring_net()
    # entity 0: field 0 has chunks 1, 2 and a padding slot; field 1 has chunk 3
    # entity 1: field 0 empty, field 1 has chunk 3
    index = torch.tensor([[[1, 2, 0], [3, 0, 0]], [[0, 0, 0], [3, 0, 0]]])
    k, present, d = net(VECTORS, SLICES, index, torch.zeros(2, 3))
    a, b = math.exp(math.tanh(0.5)), math.exp(math.tanh(1.0))
    expected = torch.tensor([[[a / (a + b), b / (a + b), 0.0], [1.0, 0.0, 0.0]],
                             [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    torch.testing.assert_close(d["alpha"], expected)
    torch.testing.assert_close(d["scores"][0, 0, :2], torch.tensor([math.tanh(0.5), math.tanh(1.0)]))
    assert present.tolist() == [[True, True], [False, True]]
    beta = d["beta"]
    torch.testing.assert_close(beta.sum(-1), torch.ones(2))  # softmax over present fields
    assert beta[1, 0] == 0  # an empty field gets no weight
    # k_f = sum_j alpha V c (V = identity), times beta
    k0 = expected[0, 0, 0] * VECTORS[1] + expected[0, 0, 1] * VECTORS[2]
    torch.testing.assert_close(k[0, 0], beta[0, 0] * k0)
    # changing what sits behind a padding slot's index-0 row cannot change anything
    vec2 = VECTORS.clone()
    vec2[0] = 100.0
    _, _, d2 = net(vec2, SLICES, index, torch.zeros(2, 3))
    torch.testing.assert_close(d2["alpha"], d["alpha"])


def test_esfnet_top_k_and_hard_filter():
    index = torch.tensor([[[1, 2, 0], [3, 0, 0]]])
    net = _scoring_net(top_k=1)
    _, _, d = net(VECTORS, SLICES, index, torch.zeros(1, 3))
    assert d["alpha"][0, 0].tolist() == [0.0, 1.0, 0.0]  # only the best chunk of the field
    net = _scoring_net(hard_filter=True)
    with torch.no_grad():  # field 0: tanh(0.5)=0.46 is dropped, tanh(1)=0.76 kept
        net.threshold.copy_(torch.tensor([0.6, 5.0]))
    _, _, d = net(VECTORS, SLICES, index, torch.zeros(1, 3))
    torch.testing.assert_close(d["alpha"][0, 0], torch.tensor([0.0, 1.0, 0.0]))
    # field 1's only chunk is below its threshold, but a field's best chunk always survives
    torch.testing.assert_close(d["alpha"][0, 1], torch.tensor([1.0, 0.0, 0.0]))
    # the threshold still learns (straight-through gradient)
    k, _, _ = net(VECTORS, SLICES, torch.tensor([[[1, 2, 0], [3, 0, 0]]]), torch.zeros(1, 3))
    k.sum().backward()
    assert net.threshold.grad is not None and net.threshold.grad.abs().sum() > 0


def test_no_esfnet_is_the_plain_field_mean():
    net = ESFNet(2, 2, 3, hidden=2, value_dim=2, scoring=False)
    with torch.no_grad():
        net.value_w.copy_(torch.eye(2).expand(2, 2, 2))
        net.value_b.zero_()
    k, _, d = net(VECTORS, SLICES, torch.tensor([[[1, 2, 0], [0, 0, 0]]]), None)
    torch.testing.assert_close(k[0, 0], (VECTORS[1] + VECTORS[2]) / 2)
    torch.testing.assert_close(k[0, 1], torch.zeros(2))
    assert d["beta"].tolist() == [[1.0, 0.0]]


def test_dehomogenisation_subtracts_the_stored_field_means():
    seen = {}
    ext = KSERExtractor({"item": 2}, {"item": 2}, {"item": 1}, 4, score_hidden=2, value_dim=2,
                        heads=1)

    def spy(vectors, slices, index, query):
        seen["v"] = vectors.clone()
        b = index.shape[0]
        return torch.zeros(b, 2, 2), torch.ones(b, 2, dtype=torch.bool), {}

    ext.esf["item"].forward = spy
    chunk_field = torch.tensor([0, 0, 0, 1])
    mu = torch.tensor([[0.5, 0.5], [1.0, -1.0]])
    ext("item", VECTORS, SLICES, chunk_field, mu, torch.tensor([[[1, 2, 0], [3, 0, 0]]]),
        torch.zeros(1, 1, 4))
    expected = VECTORS - mu[chunk_field]
    expected[0] = 0  # the padding chunk stays zero
    torch.testing.assert_close(seen["v"], expected)
    ext.dehomogenise = False
    ext("item", VECTORS, SLICES, chunk_field, mu, torch.tensor([[[1, 2, 0], [3, 0, 0]]]),
        torch.zeros(1, 1, 4))
    torch.testing.assert_close(seen["v"], VECTORS)


@pytest.mark.parametrize("cls", [AttentionAlignment, MLPAlignment])
def test_alignment_has_backbone_width_and_zeroes_missing_knowledge(cls):
    torch.manual_seed(0)
    D, F, dv = 8, 3, 5
    m = AttentionAlignment(dv, D, heads=2) if cls is AttentionAlignment else MLPAlignment(F, dv, D)
    present = torch.tensor([[True, False, True], [False, False, False]])
    out = m(torch.randn(2, 4, D), torch.randn(2, F, dv), present)
    assert out.shape == (2, D)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], torch.zeros(D))


def test_attention_alignment_ignores_absent_fields():
    torch.manual_seed(0)
    m = AttentionAlignment(4, 8, heads=2)
    q, kn = torch.randn(1, 3, 8), torch.randn(1, 3, 4)
    present = torch.tensor([[True, True, False]])
    a = m(q, kn, present)
    kn2 = kn.clone()
    kn2[0, 2] = 50.0
    torch.testing.assert_close(m(q, kn2, present), a)


def test_info_nce_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = info_nce(a, a, torch.tensor([0, 1]), temperature=1.0)
    expected = -math.log(math.e / (math.e + 1.0))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # the same entity twice: the other copy is not a negative, so the loss is 0
    assert info_nce(a, a, torch.tensor([7, 7]), temperature=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_abs_scorer_is_even_and_the_additive_one_odd_in_the_chunk():
    from llmrec.ranking.knowledge.kser import ESFNet

    torch.manual_seed(0)
    c = torch.randn(5, 1, 3, 16)
    zero_q = torch.zeros(5, 4)
    for scorer, sign in (("abs", 1.0), ("additive", -1.0)):
        net = ESFNet(1, 16, 4, hidden=8, scorer=scorer)
        keys = torch.einsum("bfcd,dh->bfch", c, net.key_w[0])  # key_b is 0 at initialisation
        keys_neg = torch.einsum("bfcd,dh->bfch", -c, net.key_w[0])
        s, s_neg = net.chunk_scores(keys, zero_q), net.chunk_scores(keys_neg, zero_q)
        torch.testing.assert_close(s_neg, sign * s)
        assert s.abs().max() > 1e-3
    with pytest.raises(ValueError, match="scorer"):
        ESFNet(1, 16, 4, scorer="dot")


def _signal_weight_by_sign(scorer: str, seed: int = 0, n=1200, fields=2, chunks=4, dim=128,
                           steps=300):
    """Train ESFNet + a linear head on labels that follow z, with z (either sign) carried by one
    chunk of the last field among random unit chunks; the mean weight the field puts on that
    chunk for z > 0.5 and for z < -0.5."""
    import torch.nn.functional as F

    from llmrec.ranking.knowledge.kser import ESFNet

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    z = torch.randn(n, generator=g)
    u = F.normalize(torch.randn(dim, generator=g), dim=0)
    table = F.normalize(torch.randn(n, fields, chunks, dim, generator=g), dim=-1)
    slot = torch.randint(0, chunks, (n,), generator=g)
    noise = F.normalize(torch.randn(n, dim, generator=g), dim=-1)
    table[torch.arange(n), fields - 1, slot] = F.normalize(z[:, None] * u + noise, dim=-1)
    vectors = table.permute(1, 0, 2, 3).reshape(-1, dim)  # sorted by field
    slices = [(f * n * chunks, (f + 1) * n * chunks) for f in range(fields)]
    index = (1 + torch.arange(fields)[None, :, None] * n * chunks
             + torch.arange(n)[:, None, None] * chunks + torch.arange(chunks)[None, None]).long()
    y = (torch.rand(n, generator=g) < torch.sigmoid(z)).float()
    net = ESFNet(fields, dim, 8, hidden=32, value_dim=32, scorer=scorer)
    head = torch.nn.Linear(fields * 32, 1)
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=1e-3)
    q = torch.zeros(n, 8)
    for _ in range(steps):
        b = torch.randint(0, n, (256,), generator=g)
        k, _, _ = net(vectors, slices, index[b], q[b])
        loss = F.binary_cross_entropy_with_logits(head(k.flatten(1)).squeeze(1), y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        _, _, w = net(vectors, slices, index, q)
    on = w["alpha"][torch.arange(n), fields - 1, slot]
    return float(on[z > 0.5].mean()), float(on[z < -0.5].mean())


def test_abs_scorer_selects_a_signed_signal_chunk_for_both_signs():
    """The additive scorer learns to select the signal chunk for one sign of z and to avoid it
    for the other; the abs scorer selects it for both (4 chunks: uniform weight is 0.25)."""
    abs_pos, abs_neg = _signal_weight_by_sign("abs")
    add_pos, add_neg = _signal_weight_by_sign("additive")
    assert min(abs_pos, abs_neg) > 0.35
    assert min(abs_pos, abs_neg) > min(add_pos, add_neg) + 0.1
