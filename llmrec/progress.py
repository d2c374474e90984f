"""Progress bars for long work: shown on a TTY, hidden under ``--quiet`` or when output is piped."""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable


def progress_enabled() -> bool:
    return os.environ.get("LLMREC_QUIET") != "1" and sys.stderr.isatty()


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any):
    """A tqdm bar (rate and ETA included) that respects ``--quiet`` and non-TTY output."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", not progress_enabled())
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
