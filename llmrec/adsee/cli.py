"""``adsee`` commands: ``llmrec adsee run --config eval/adsee/movielens.yaml`` trains the
click-rate predictor on item text vectors, edits held-out items' vectors with the genetic editor
under each distance budget, and writes ``<output_dir>/results.json`` (per seed and mean +- std)
plus ``llmrec_meta.json`` (config, versions, git revision); it prints the markdown table.
Listed in ``llmrec.cli.STAGE_CLIS``.
"""

from __future__ import annotations

from pathlib import Path


def _run(cfg, args) -> int:
    from llmrec.adsee.study import format_table, run_study
    from llmrec.artifacts import write_json_atomic, write_meta

    result = run_study(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", result)
    write_meta(out, cfg)
    print(format_table(result))
    print(f"\nwritten: {out / 'results.json'} (gains are predicted by the model, not observed)")
    return 0


def register(subparsers) -> None:
    from llmrec.adsee.study import AdseeConfig
    from llmrec.cli import add_config_command

    p = subparsers.add_parser("adsee", help="click-rate predictor over item text vectors and a "
                                            "genetic editor of those vectors (AdSEE without images)",
                              description="AdSEE's fitting part: predicted click-rate gain of "
                                          "embedding edits under a distance budget.")
    p.set_defaults(_handler=None, _group_parser=p)
    sub = p.add_subparsers(dest="adsee_command", metavar="SUBCOMMAND")
    add_config_command(sub, "run", AdseeConfig, _run,
                       help="train the predictor, edit held-out items under each budget, write "
                            "results.json",
                       outputs=lambda c: [(c.output_dir, "--output_dir")])
