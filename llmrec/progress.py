"""Progress bars for long work: a live bar on a TTY; under a pipe or a log file, a plain line at
most once a minute (so a long batch job shows it is moving); nothing under ``--quiet``."""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable

# seconds between two progress lines when stderr is not a terminal
LOG_INTERVAL = 60.0


def progress_enabled() -> bool:
    """Whether live bars are shown (a TTY, not ``--quiet``); libraries with bars of their own
    (trainers, sentence-transformers) follow this."""
    return not _quiet() and sys.stderr.isatty()


def _quiet() -> bool:
    return os.environ.get("LLMREC_QUIET") == "1"


class _Lines:
    """A stream for tqdm that turns its carriage-return redraws into whole lines."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, s: str) -> None:
        s = s.replace("\r", "").strip()
        if s:
            self.stream.write(s + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any):
    """A tqdm bar (rate and ETA included) that respects ``--quiet``; without a TTY it writes a
    line at most every :data:`LOG_INTERVAL` seconds (and one at the end) instead of redrawing."""
    import tqdm
    import tqdm.auto

    bar = tqdm.auto.tqdm
    if "disable" not in kwargs:
        if _quiet():
            kwargs["disable"] = True
        elif not sys.stderr.isatty():
            bar = tqdm.tqdm  # the plain class: no notebook widget without a terminal
            kwargs.update(file=_Lines(sys.stderr), mininterval=LOG_INTERVAL, ascii=True,
                          ncols=100, dynamic_ncols=False)
    kwargs.setdefault("dynamic_ncols", True)
    return bar(iterable, **kwargs)
