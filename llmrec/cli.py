"""The ``llmrec`` command line.

Each stage owns a small ``cli`` module (``llmrec/<stage>/cli.py``) with a ``register(subparsers)``
function; this file lists them explicitly. Stage modules keep heavy imports inside their handlers
so ``llmrec --help`` stays fast.

Stage commands take ``--config FILE.yaml`` and ``--key=value`` overrides of their dataclass config;
``llmrec <cmd> --help`` lists every option with its help text.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any, Callable

from llmrec.errors import LlmrecError

# Explicit list of stage CLIs, in the order they appear in --help.
STAGE_CLIS = (
    "llmrec.envinfo",
    "llmrec.data.cli",
    "llmrec.knowledge.cli",
    "llmrec.ranking.cli",
    "llmrec.synth.cli",
    "llmrec.crs.cli",
    "llmrec.finetune.cli",
)

log = logging.getLogger("llmrec")


def add_config_command(subparsers, name: str, config_cls: type | None, handler: Callable[..., Any],
                       help: str, description: str | None = None,
                       configure: Callable[[argparse.ArgumentParser], None] | None = None):
    """Add a subcommand whose options are a dataclass config plus ``--key=value`` overrides.

    The handler is called as ``handler(cfg, args)``, ``cfg`` the resolved config (or None).
    """
    from llmrec.config import format_help

    epilog = format_help(config_cls) if config_cls is not None else None
    p = subparsers.add_parser(name, help=help, description=description or help, epilog=epilog,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    if config_cls is not None:
        p.add_argument("--config", metavar="FILE", help="YAML file with config options")
    if configure is not None:
        configure(p)
    p.set_defaults(_handler=handler, _config_cls=config_cls)
    return p


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


def _setup_logging(quiet: bool, verbose: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if quiet:
        os.environ["LLMREC_QUIET"] = "1"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
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
        result = args._handler(cfg, args)
        return int(result or 0)
    except LlmrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
