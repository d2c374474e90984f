"""``llmrec headline eval|sft``: the PHG-DIF grid (filters x fusions x models) on PENS, and LoRA
SFT on proxy targets.

``llmrec headline eval --config eval/headline/pens.yaml`` appends one record per cell to
``out`` (default ``bench/results/headline_eval.jsonl``) and the reference baselines; without
PENS ``news.tsv`` in ``data_path`` it says so and records only the baselines.
``llmrec headline sft --data_path=PENS --out=runs/headline/sft`` tunes the base model with LoRA on
proxy targets from ``train.tsv`` (a clicked news' original headline, the profile of the history
before it); evaluate it with ``--models=[runs/headline/sft]``.
"""

from __future__ import annotations

import sys


def _eval(cfg, args) -> int:
    from llmrec.headline.generate import run_eval

    run_eval(cfg, command="llmrec " + " ".join(sys.argv[1:]))
    return 0


def _sft(cfg, args) -> int:
    from llmrec.headline.generate import run_sft

    run_sft(cfg)
    return 0


def _outputs(cfg):
    return [(cfg.out, "--out", False)] if cfg.out else []


def register(subparsers) -> None:
    """Add ``headline eval|sft`` to the ``llmrec`` parser."""
    from llmrec.cli import add_config_command
    from llmrec.headline.generate import HeadlineEvalConfig, HeadlineSFTConfig

    group = subparsers.add_parser("headline", help="personalised news headlines (PENS, PHG-DIF)")
    group.set_defaults(_group_parser=group)
    sub = group.add_subparsers(dest="headline_command", metavar="COMMAND")
    add_config_command(sub, "eval", HeadlineEvalConfig, _eval,
                       help="generate personalised headlines per cell (filter x fusion x model) "
                            "and score them (ROUGE-1/2/L, factual overlap); reference baselines",
                       outputs=_outputs)
    add_config_command(sub, "sft", HeadlineSFTConfig, _sft,
                       help="LoRA SFT of the base model on proxy targets from PENS train.tsv "
                            "(original headline of a clicked news, profile of the history before "
                            "it); needs news.tsv and train.tsv",
                       outputs=lambda cfg: [(cfg.out, "--out", True)])
