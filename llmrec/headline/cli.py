"""``llmrec headline eval``: the PHG-DIF grid (filters x fusions x models) on PENS.

``llmrec headline eval --config eval/headline/pens.yaml`` appends one record per cell to
``out`` (default ``bench/results/headline_eval.jsonl``) and the reference baselines; without
PENS ``news.tsv`` in ``data_path`` it says so and records only the baselines.
"""

from __future__ import annotations

import sys


def _eval(cfg, args) -> int:
    from llmrec.headline.generate import run_eval

    run_eval(cfg, command="llmrec " + " ".join(sys.argv[1:]))
    return 0


def _outputs(cfg):
    return [(cfg.out, "--out", False)] if cfg.out else []


def register(subparsers) -> None:
    """Add ``headline eval`` to the ``llmrec`` parser."""
    from llmrec.cli import add_config_command
    from llmrec.headline.generate import HeadlineEvalConfig

    group = subparsers.add_parser("headline", help="personalised news headlines (PENS, PHG-DIF)")
    group.set_defaults(_group_parser=group)
    sub = group.add_subparsers(dest="headline_command", metavar="COMMAND")
    add_config_command(sub, "eval", HeadlineEvalConfig, _eval,
                       help="generate personalised headlines per cell (filter x fusion x model) "
                            "and score them (ROUGE-1/2/L, factual overlap); reference baselines",
                       outputs=_outputs)
