"""The hf backend on a tiny random Llama with SmolLM2's real tokenizer and chat template."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from llmrec.config import ConfigError, load_config, to_dict  # noqa: E402
from llmrec.llm import LLMConfig, SamplingParams, load_backend  # noqa: E402
from llmrec.llm.fast_decode import gumbel_noise, sample_next  # noqa: E402


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    from llmrec.models.tiny import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))


def _convs(n: int):
    return [[{"role": "user", "content": f"Describe movie number {i}." + " Please." * (i % 4)}]
            for i in range(n)]


@pytest.fixture(scope="module")
def fast(tiny_path):
    return load_backend(LLMConfig(model=str(tiny_path), batch_size=3, max_new_tokens=12))


@pytest.fixture(scope="module")
def slow(tiny_path):
    return load_backend(LLMConfig(model=str(tiny_path), batch_size=3, max_new_tokens=12,
                                  fast_decode="off"))


def test_fast_prefill_logits_match_transformers(fast):
    rows = [fast.encode(c) for c in _convs(3)]
    length = max(len(r) for r in rows) + 5
    ids, mask = fast._pad_left(rows, length)
    dec = fast.decoder
    st = dec._state(3, length + 4, SamplingParams(), 1)
    ours = dec._prefill(ids, mask, st["kc"], st["vc"])
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    ref = fast.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_unfused_weights_give_the_same_logits(fast, monkeypatch):
    import llmrec.llm.fast_decode as fd

    monkeypatch.setattr(fd, "_FUSE_MAX_PARAMS", 0)
    unfused = fd.StaticDecoder(fast.model)
    assert len(unfused.layers[0].wqkv) == 3 and len(fast.decoder.layers[0].wqkv) == 1
    rows = [fast.encode(c) for c in _convs(2)]
    ids, mask = fast._pad_left(rows, max(len(r) for r in rows))
    a = fast.decoder._state(2, ids.shape[1] + 2, SamplingParams(), 1)
    b = unfused._state(2, ids.shape[1] + 2, SamplingParams(), 1)
    torch.testing.assert_close(fast.decoder._prefill(ids, mask, a["kc"], a["vc"]),
                               unfused._prefill(ids, mask, b["kc"], b["vc"]))


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_fast_greedy_equals_generate(fast, slow, penalty):
    convs = _convs(7)  # 3 batches of 3, 3, 1, different prompt lengths
    sp = SamplingParams(max_new_tokens=12, repetition_penalty=penalty)
    a = fast.generate(convs, sp)
    b = slow.generate(convs, sp)
    assert [g.text for g in a] == [g.text for g in b]
    assert [g.completion_tokens for g in a] == [g.completion_tokens for g in b]
    assert all(g.prompt_tokens > 10 for g in a)


def test_sampling_depends_on_seed_not_on_batch(fast):
    convs = _convs(3)
    sp = SamplingParams(temperature=1.0, top_p=0.95, top_k=200, max_new_tokens=10,
                        repetition_penalty=1.0)
    together = fast.generate(convs, sp, seeds=[11, 12, 13])
    reordered = fast.generate([convs[2], convs[0], convs[1]], sp, seeds=[13, 11, 12])
    assert [g.text for g in together] == [reordered[1].text, reordered[2].text, reordered[0].text]
    other = fast.generate(convs, sp, seeds=[21, 22, 23])
    assert [g.text for g in other] != [g.text for g in together]
    # no seeds given: derived from the config seed and the prompt, so repeatable
    assert [g.text for g in fast.generate(convs, sp)] == [g.text for g in fast.generate(convs, sp)]


@pytest.mark.parametrize("backend", ["fast", "slow"])
def test_ignore_eos_gives_exactly_max_new_tokens(backend, request):
    llm = request.getfixturevalue(backend)
    out = llm.generate(_convs(4), SamplingParams(max_new_tokens=9, ignore_eos=True))
    assert [g.completion_tokens for g in out] == [9] * 4
    assert {g.finish_reason for g in out} == {"length"}


def test_gumbel_sampling_follows_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    n = 4000
    seeds = torch.arange(n)
    picks = sample_next(logits.expand(n, 4), SamplingParams(temperature=1.0), seeds,
                        torch.zeros(1, dtype=torch.long), None)
    freq = torch.bincount(picks, minlength=4).float() / n
    torch.testing.assert_close(freq, logits.softmax(-1)[0], atol=0.03, rtol=0)
    noise = gumbel_noise(seeds[:2], torch.tensor([5]), 8)
    assert torch.equal(noise, gumbel_noise(seeds[:2], torch.tensor([5]), 8))
    assert not torch.equal(noise[0], noise[1])


def test_top_k_path_equals_masking_the_full_vocabulary():
    logits = torch.randn(64, 300, generator=torch.Generator().manual_seed(1)) * 3
    seeds, step = torch.arange(64), torch.tensor([7])
    sp = SamplingParams(temperature=0.8, top_k=20, top_p=0.9)
    fast = sample_next(logits, sp, seeds, step, None)
    # reference: mask everything outside the top-k and the nucleus, noise on the full vocabulary
    scaled = logits / 0.8
    kth = torch.topk(scaled, 20, dim=-1).values[:, -1:]
    masked = scaled.masked_fill(scaled < kth, float("-inf"))
    srt, order = torch.sort(masked, dim=-1, descending=True)
    p = srt.softmax(-1)
    drop = torch.zeros_like(srt, dtype=torch.bool).scatter(-1, order, (p.cumsum(-1) - p) >= 0.9)
    ref = (masked.masked_fill(drop, float("-inf")) + gumbel_noise(seeds, step, 300)).argmax(-1)
    assert torch.equal(fast, ref)


def test_top_k_one_is_greedy():
    logits = torch.randn(5, 50, generator=torch.Generator().manual_seed(0))
    picks = sample_next(logits, SamplingParams(temperature=1.5, top_k=1), torch.arange(5),
                        torch.zeros(1, dtype=torch.long), None)
    assert torch.equal(picks, logits.argmax(-1))


def test_score_options_is_the_reply_log_likelihood(fast):
    convs = _convs(2)
    options = ["Yes", "No", "Not sure at all"]
    scores = fast.score_options(convs, [options, options])
    tok = fast.tok
    for i, conv in enumerate(convs):
        for j, opt in enumerate(options):
            prompt = fast.encode(conv)
            reply = tok(opt, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            ids = torch.tensor([prompt + reply])
            logp = torch.log_softmax(fast.model(input_ids=ids).logits[0].float(), -1)
            expect = sum(float(logp[len(prompt) - 1 + t, reply[t]]) for t in range(len(reply)))
            assert scores[i][j] == pytest.approx(expect, abs=1e-3)
    picks = fast.choose(convs, options)
    assert picks == [max(range(3), key=lambda j: s[j]) for s in scores]
    # a shared option list is accepted, and option order does not change a score
    shared = fast.score_options(convs, options[::-1])
    assert shared[0] == pytest.approx(scores[0][::-1], abs=1e-4)


def test_model_revision_is_a_content_hash(fast, tiny_path, tmp_path):
    from llmrec.models.tiny import tiny_llama

    assert fast.model_revision == fast.model_revision
    other = tiny_llama(tmp_path / "other", seed=1)
    from llmrec.llm.identity import model_fingerprint

    assert model_fingerprint(other) != fast.model_revision
    assert model_fingerprint(tiny_path) == fast.model_revision


def test_llm_config_keeps_key_out_and_rejects_typos():
    cfg = load_config(LLMConfig, overrides=["--backend=openai", "--api_key_env=MY_KEY",
                                            "--temperature=0.7"])
    d = to_dict(cfg)
    assert d["api_key_env"] == "MY_KEY" and "api_key" not in d
    assert cfg.sampling().temperature == 0.7
    with pytest.raises(ConfigError, match="temperatur"):
        load_config(LLMConfig, overrides=["--temperatur=0.7"])
    with pytest.raises(ConfigError, match="top_p"):
        load_config(LLMConfig, overrides=["--top_p=0"])
    assert SamplingParams().key() == SamplingParams(top_p=0.5).key()  # greedy ignores top_p


def test_backend_leaves_autograd_alone(fast):
    # training code in the same process (e.g. a fine-tune after generation) needs gradients
    fast.generate(_convs(1), SamplingParams(max_new_tokens=2))
    fast.score_options(_convs(1), ["a", "b"])
    assert torch.is_grad_enabled()
