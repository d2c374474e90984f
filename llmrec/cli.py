"""The ``llmrec`` command line.

Each stage owns a small ``cli`` module (``llmrec/<stage>/cli.py``) with a ``register(subparsers)``
function; this file lists them explicitly. Stage modules keep heavy imports inside their handlers
so ``llmrec --help`` stays fast.

Stage commands take ``--config FILE.yaml`` and ``--key=value`` overrides of their dataclass config;
``llmrec <cmd> --help`` lists every option with its help text.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import sys
from typing import Any, Callable, Iterable

from llmrec.errors import LlmrecError

# Explicit list of stage CLIs, in the order they appear in --help.
STAGE_CLIS = (
    "llmrec.envinfo",
    "llmrec.models.stronger",
    "llmrec.data.cli",
    "llmrec.knowledge.cli",
    "llmrec.ranking.cli",
    "llmrec.synth.cli",
    "llmrec.crs.cli",
    "llmrec.finetune.cli",
    "llmrec.ltr.cli",
    "llmrec.headline.cli",
    "llmrec.adsee.cli",
)

log = logging.getLogger("llmrec")


Outputs = Callable[[Any], Iterable[tuple[Any, str] | tuple[Any, str, bool]]]


def add_config_command(subparsers, name: str, config_cls: type | None, handler: Callable[..., Any],
                       help: str, description: str | None = None,
                       configure: Callable[[argparse.ArgumentParser], None] | None = None,
                       outputs: Outputs | None = None):
    """Add a subcommand whose options are a dataclass config plus ``--key=value`` overrides.

    The handler is called as ``handler(cfg, args)``, ``cfg`` the resolved config (or None).
    ``outputs(cfg)`` lists what the command writes, as ``(path, option)`` or ``(path, option,
    is_folder)``; each is checked to be writable (:func:`llmrec.artifacts.check_writable`)
    before the handler runs, so a bad output path fails in a second, not after the work.
    """
    from llmrec.config import format_help

    epilog = format_help(config_cls) if config_cls is not None else None
    p = subparsers.add_parser(name, help=help, description=description or help, epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    if config_cls is not None:
        p.add_argument("--config", metavar="FILE", help="YAML file with config options")
    if configure is not None:
        configure(p)
    p.set_defaults(_handler=handler, _config_cls=config_cls, _outputs=outputs)
    return p


def check_outputs(args: argparse.Namespace, cfg: Any) -> None:
    """Check the outputs a command declared (``add_config_command(outputs=...)``) are writable."""
    fn = getattr(args, "_outputs", None)
    if fn is None or cfg is None:
        return
    from llmrec.artifacts import check_writable

    for entry in fn(cfg):
        path, option, *rest = entry
        if path is not None and str(path) != "":
            check_writable(path, option, folder=rest[0] if rest else True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmrec",
        description="LLM-augmented recommendation workbench.",
        epilog="Run 'llmrec COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars or info logs")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    from llmrec import __version__

    parser.add_argument("--version", action="version", version=f"llmrec {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for modname in STAGE_CLIS:
        importlib.import_module(modname).register(subparsers)
    return parser


# Global flags, accepted anywhere on the line (`llmrec data stats --quiet` as well as
# `llmrec --quiet data stats`): argparse only knows them before the subcommand, and after it they
# would reach the config parser as unknown config keys.
_GLOBAL_FLAGS = {"--quiet": "quiet", "-q": "quiet", "--verbose": "verbose", "-v": "verbose"}


def _hoist_global_flags(argv: list[str]) -> list[str]:
    """``argv`` with the global flags moved to the front (none after a ``--``)."""
    front, rest = [], []
    for i, arg in enumerate(argv):
        if arg == "--":
            rest.extend(argv[i:])
            break
        (front if arg in _GLOBAL_FLAGS else rest).append(arg)
    return front + rest


def _reclaim_overrides(args: argparse.Namespace, rest: list[str]) -> None:
    """argparse takes an argument that starts with ``--`` but contains a space
    (``--data.columns={user_id: uid, item_id: iid}``) for a positional value, so an optional
    positional (``llmrec data split [DATASET]``) swallowed the override and it was silently
    lost. Such values go back to the overrides."""
    for name, value in list(vars(args).items()):
        if not name.startswith("_") and isinstance(value, str) and value.startswith("--"):
            rest.insert(0, value)
            setattr(args, name, None)


def _setup_logging(quiet: bool, verbose: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if quiet:
        os.environ["LLMREC_QUIET"] = "1"
        # the loading bars and info lines of the Hugging Face libraries, which read these when
        # they are imported (handlers import them later); already imported ones are told below
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
        if "transformers" in sys.modules:
            with contextlib.suppress(Exception):
                sys.modules["transformers"].utils.logging.disable_progress_bar()
                sys.modules["transformers"].utils.logging.set_verbosity_error()
        if "datasets" in sys.modules:
            with contextlib.suppress(Exception):
                sys.modules["datasets"].disable_progress_bars()


def _stdout_closed() -> int:
    """The reader of our output went away (``llmrec ... | head``): stop quietly, as Unix tools
    do, with the SIGPIPE status. stdout is pointed at /dev/null so that the interpreter's final
    flush does not raise again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 128 + 13


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = _hoist_global_flags(list(sys.argv[1:] if argv is None else argv))
    args, rest = parser.parse_known_args(argv)
    _reclaim_overrides(args, rest)
    _setup_logging(args.quiet, args.verbose)
    if not getattr(args, "_handler", None):
        # a group like 'llmrec data' without its subcommand
        sub = getattr(args, "_group_parser", parser)
        sub.print_help()
        return 2
    try:
        cfg = None
        if args._config_cls is not None:
            from llmrec.config import load_config

            base_fn = getattr(args, "_base_from_args", None)
            cfg = load_config(args._config_cls, getattr(args, "config", None), rest,
                              base=base_fn(args) if base_fn else None)
        elif rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        check_outputs(args, cfg)
        result = args._handler(cfg, args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return int(result or 0)
    except BrokenPipeError:
        return _stdout_closed()
    except LlmrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # the environment, not a bug: no permission, a read-only or full disk (outputs are
        # checked before work starts, but a disk can fill up or change under a long run)
        if exc.errno not in _ENVIRONMENT_ERRNOS or args.verbose:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot access{where}: {exc.strerror}; check the permissions and free "
              f"space there (--verbose shows the traceback)", file=sys.stderr)
        return 2


_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
