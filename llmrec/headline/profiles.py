"""Interest profiles from a (filtered) click history, and the prompts they are rendered into.

Levels (PHG-DIF's multi-level temporal fusion, as we implement it):

- **short**: the titles of the last ``k_short`` (default 10) kept clicks, oldest first;
- **long**: category and topic weights, each kept click adding ``0.5 ** (age / half_life)``
  (``half_life_days`` default 7; age measured from the user's latest click) to its category and
  its topic, normalised to sum 1 per kind, the ``long_top`` largest shown. Where clicks have no
  time (the PENS test file) every click weighs 1: no decay. Optionally an LLM-written summary of
  the kept titles (``prompts/headline/summary.jinja``);
- **nearest**: the ``k_near`` kept titles closest to the article (cosine of embeddings).

``fusion`` names the levels a prompt shows: ``short``, ``long``, ``short+long``,
``short+long+nearest``. Prompts are Jinja files under ``prompts/headline/`` with ``system`` and
``user`` blocks (:func:`prompt_messages`); their content hash goes into every record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from llmrec.config import option
from llmrec.errors import ConfigError

FUSIONS = ("short", "long", "short+long", "short+long+nearest")

__all__ = ["FUSIONS", "ProfileConfig", "short_term", "long_term", "nearest", "build_profile",
           "prompt_messages", "prompt_hash"]


@dataclass
class ProfileConfig:
    k_short: int = option(10, help="short-term profile: the last this many kept click titles")
    half_life_days: float = option(7.0, help="long-term profile: a click's weight halves every "
                                             "this many days before the user's latest click")
    long_top: int = option(5, help="long-term profile: show the this many heaviest categories "
                                   "and topics")
    k_near: int = option(3, help="nearest level: the this many kept titles closest to the article")
    summary: bool = option(False, help="add an LLM-written interest summary of the kept titles "
                                       "to the long-term level (one more LLM call per user)")

    def __post_init__(self) -> None:
        if self.k_short < 1 or self.long_top < 1 or self.k_near < 1:
            raise ValueError("k_short, long_top and k_near must be >= 1")
        if self.half_life_days <= 0:
            raise ValueError(f"half_life_days must be > 0 (got {self.half_life_days})")


def short_term(titles: Sequence[str], k: int = 10) -> list[str]:
    """The last ``k`` of the kept click titles (time order), oldest first."""
    return [t for t in titles if t][-k:]


def long_term(labels: Sequence[Sequence[str]], times: Sequence[float] | None = None,
              half_life_days: float = 7.0, top: int = 5) -> list[dict[str, Any]]:
    """Decayed label weights: ``labels[i]`` are click i's labels (its category and topic).

    Weights are normalised over all labels and the ``top`` heaviest returned as ``{"name",
    "weight"}``, heaviest first (ties by name)."""
    n = len(labels)
    if n == 0:
        return []
    t = np.full(n, np.nan) if times is None else np.asarray(times, dtype=float)
    if np.isnan(t).all():
        w = np.ones(n)
    else:
        latest = np.nanmax(t)
        age_days = (latest - np.where(np.isnan(t), latest, t)) / 86400.0
        w = 0.5 ** (age_days / half_life_days)
    acc: dict[str, float] = {}
    for ls, wi in zip(labels, w):
        for name in ls:
            if name:
                acc[name] = acc.get(name, 0.0) + float(wi)
    total = sum(acc.values())
    ranked = sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [{"name": k, "weight": v / total} for k, v in ranked] if total else []


def nearest(title_vecs: np.ndarray, titles: Sequence[str], article_vec: np.ndarray,
            k: int = 3) -> list[str]:
    """The ``k`` titles whose vectors have the highest cosine to ``article_vec``, best first."""
    if len(titles) == 0:
        return []
    v = np.asarray(title_vecs, dtype=float)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    a = np.asarray(article_vec, dtype=float)
    a = a / max(float(np.linalg.norm(a)), 1e-12)
    order = np.argsort(-(v @ a), kind="stable")[:k]
    return [titles[i] for i in order]


def build_profile(fusion: str, titles: Sequence[str], labels: Sequence[Sequence[str]],
                  times: Sequence[float] | None, cfg: ProfileConfig, *,
                  summary: str | None = None, near: Sequence[str] = ()) -> dict[str, Any]:
    """The prompt context of the levels ``fusion`` names."""
    if fusion not in FUSIONS:
        raise ConfigError(f"unknown fusion {fusion!r}; choose one of {', '.join(FUSIONS)}")
    levels = set(fusion.split("+"))
    ctx: dict[str, Any] = {"short_term": [], "long_term": [], "summary": None, "nearest": []}
    if "short" in levels:
        ctx["short_term"] = short_term(titles, cfg.k_short)
    if "long" in levels:
        ctx["long_term"] = long_term(labels, times, cfg.half_life_days, cfg.long_top)
        ctx["summary"] = summary
    if "nearest" in levels:
        ctx["nearest"] = list(near)[:cfg.k_near]
    return ctx


# -- prompt files ---------------------------------------------------------------------------------

def _prompt_path(name: str) -> Path:
    from llmrec.knowledge.templates import prompts_dir

    p = Path(name).expanduser()
    if p.is_file():
        return p
    p = prompts_dir() / "headline" / f"{name}.jinja"
    if not p.is_file():
        have = sorted(q.stem for q in (prompts_dir() / "headline").glob("*.jinja"))
        raise ConfigError(f"no headline prompt {name!r}: not a file and not one of "
                          f"{', '.join(have)} in {p.parent}")
    return p


@lru_cache(maxsize=16)
def _template(path: str, mtime_ns: int):
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, autoescape=False)
    tmpl = env.from_string(Path(path).read_text(encoding="utf-8"))
    if "user" not in tmpl.blocks:
        raise ConfigError(f"prompt {path} has no {{% block user %}}")
    return tmpl


def prompt_hash(name: str) -> str:
    return hashlib.sha256(_prompt_path(name).read_bytes()).hexdigest()[:16]


def prompt_messages(name: str, ctx: dict[str, Any]) -> list[dict[str, str]]:
    """System (if any) and user messages of ``prompts/headline/<name>.jinja`` for ``ctx``."""
    p = _prompt_path(name)
    tmpl = _template(str(p), p.stat().st_mtime_ns)
    out = []
    for block, role in (("system", "system"), ("user", "user")):
        if block in tmpl.blocks:
            text = "".join(tmpl.blocks[block](tmpl.new_context(dict(ctx)))).strip()
            if text:
                out.append({"role": role, "content": text})
    return out
