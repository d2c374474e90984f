"""``llmrec synth ...``: the SSRA steps one by one, or the whole experiment.

Every subcommand takes the same :class:`~llmrec.synth.pipeline.SynthConfig` (so one YAML recipe
drives them all) and reads / writes under ``--out``; a step finds the outputs of the steps before
it there, and makes them if they are missing.
"""

from __future__ import annotations

import json
import logging

log = logging.getLogger(__name__)


def _run(cfg):
    from llmrec.synth.pipeline import Run

    return Run(cfg)


def _task(cfg, args) -> int:
    run = _run(cfg)
    print(json.dumps(run.task.summary(), indent=2))
    print(f"-> {run.out / 'task'}")
    return 0


def _score(cfg, args) -> int:
    run = _run(cfg)
    report = run.score_report()
    h = report["heldout"]
    print(f"g ({cfg.score.kind}) on {h['n']} held-out human-labelled pairs: accuracy "
          f"{h['accuracy']:.3f}, macro agreement {h['macro_agreement']:.3f}")
    for lv in range(4):
        print(f"  level {lv}: agreement {h[f'agreement_{lv}']:.3f}  precision "
              f"{h[f'precision_{lv}']:.3f}  (human pairs {h[f'n_gold_{lv}']})")
    print(f"-> {run.out / 'score_model'}, {run.out / 'score_report.json'}")
    return 0


def _prompt_only(cfg, args) -> int:
    from llmrec.synth.stages import round_stats

    run = _run(cfg)
    stats = round_stats(run.prompt_only())
    print(json.dumps(stats, indent=2))
    print(f"-> {run.out / 'prompt_only'}")
    return 0


def _ssra(cfg, args) -> int:
    run = _run(cfg)
    data, report = run.ssra()
    for r in report["rounds"]:
        print(f"round {r['round']}: kept {r['kept']}/{r['generated']}; kept fraction per level "
              + " ".join(f"{lv}:{r[f'kept_fraction_{lv}']:.2f}" for lv in range(4))
              + f"; duplicate rate {r['duplicate_rate_after']:.3f}")
    print(f"{len(data)} SSRA pairs -> {run.out / 'ssra' / 'data'}")
    return 0


def _embed(cfg, args) -> int:
    run = _run(cfg)
    for cond in cfg.conditions:
        print(f"{cond}: {run.embedder(cond)}")
    return 0


def _evaluate(cfg, args) -> int:
    from llmrec.synth.embedder import evaluate_embedder

    run = _run(cfg)
    models = args.embedder or [run.embedder(c) for c in cfg.conditions]
    for m in models:
        res = evaluate_embedder(m, run.task.eval, run.task.doc_text(), k=cfg.eval_k)
        print(json.dumps({"embedder": str(m), **res}))
    return 0


def _experiment(cfg, args) -> int:
    from llmrec.synth.pipeline import results_markdown

    results = _run(cfg).experiment()
    print(results_markdown(results))
    print(f"-> {cfg.out}/results.json, {cfg.out}/results.md")
    return 0


def register(subparsers) -> None:
    from llmrec.cli import add_config_command
    from llmrec.synth.pipeline import SynthConfig

    p = subparsers.add_parser(
        "synth", help="relevance-controlled synthetic data (SSRA) and embedder training",
        description="SSRA: a score model g and a LoRA-tuned query model f write graded synthetic "
                    "queries; bi-encoders trained on them are evaluated on held-out queries. "
                    "Every subcommand takes the same config; 'experiment' runs them all.")
    p.set_defaults(_handler=None, _group_parser=p)
    sub = p.add_subparsers(dest="synth_command", metavar="SUBCOMMAND")
    for name, fn, help_text in (
        ("task", _task, "build the seed / unlabelled / held-out tables of a domain"),
        ("score", _score, "train and calibrate g; report its agreement with held-out labels"),
        ("prompt-only", _prompt_only, "the prompt-only baseline: base LLM queries per level"),
        ("ssra", _ssra, "Stage 1 and the Stage-2 rounds: the SSRA synthetic data"),
        ("embed", _embed, "train the bi-encoders of the configured conditions"),
        ("experiment", _experiment, "everything, then the results tables"),
    ):
        add_config_command(sub, name, SynthConfig, fn, help=help_text,
                           outputs=lambda c: [(c.out, "--out")])

    def eval_args(parser):
        parser.add_argument("--embedder", action="append", metavar="PATH",
                            help="evaluate this sentence-transformers folder (repeatable); "
                                 "default: the configured conditions' embedders")

    add_config_command(sub, "eval", SynthConfig, _evaluate,
                       help="nDCG@k and AvgAP of embedders on the held-out queries",
                       configure=eval_args, outputs=lambda c: [(c.out, "--out")])
