"""``ltr`` commands: ``simulate`` a PBM click log on DL19 features, ``train`` a ranker from it,
``eval`` the ranker on the held-out queries' true labels.

Runs as ``llmrec ltr simulate|train|eval ...`` (:func:`register`, listed in
``llmrec.cli.STAGE_CLIS``) or as ``python -m llmrec.ltr.cli simulate|train|eval ...``.

- ``simulate --data DIR --out clicks.npz``: features of the folder's run (``llmrec.ltr.features``),
  a seeded query split, sessions on the training queries' BM25 top 10; the .npz holds the
  features, labels, split and sessions, so the later steps need only it.
- ``train --clicks clicks.npz --out ranker.pt --learner naive|ipw|dla|full --model linear|mlp``;
  ``train --letor DIR --out cv.json``: the same pipeline cross-validated over the folds of a
  LETOR / MSLR folder (``llmrec.ltr.letor``).
- ``eval --model ranker.pt [--out metrics.json]``: nDCG@{1,3,5,10} (exp gain), ERR@10, MRR@10.
- ``session-metrics --data DIR|FILE [--out table.json]``: session metrics (NUM, U-measure, sDCG,
  session RBP, per-query nDCG) of a ``session-sat-chiir16`` folder against its session ratings,
  or query-level metrics of a ``tiangong-ram-clicks`` file against its satisfaction labels, with
  Pearson / Spearman / Kendall and bootstrap 95% intervals (``llmrec.ltr.sessions``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _simulate(cfg, args) -> int:
    import numpy as np

    from llmrec.ltr.clicks import simulate_sessions
    from llmrec.ltr.features import load_dl19
    from llmrec.ltr.train import logged_lists, split_queries

    data = load_dl19(args.data, minilm=args.minilm)
    tr, te = split_queries(len(data.query_ids), args.seed, args.test_frac)
    dtr = data.subset(tr)
    shown, shown_mask = logged_lists(dtr, args.top_k)
    sess = simulate_sessions(shown, shown_mask, dtr.y, args.sessions, eta=args.eta,
                             seed=args.seed, kind=args.propensity, max_grade=data.max_grade,
                             click_model=args.click_model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez_compressed(tmp, x=data.x, y=data.y, mask=data.mask, train=tr, test=te, shown=shown,
                        query=sess["query"], clicks=sess["clicks"], theta=sess["theta"],
                        meta=json.dumps({"data": str(args.data), "eta": args.eta,
                                         "seed": args.seed, "propensity": args.propensity,
                                         "click_model": args.click_model,
                                         "feature_names": data.feature_names,
                                         "query_ids": data.query_ids,
                                         "max_grade": data.max_grade}))
    tmp.replace(out)
    print(json.dumps({"out": str(out), "sessions": int(args.sessions),
                      "train_queries": len(tr), "test_queries": len(te),
                      "ctr_per_rank": [round(float(v), 4) for v in sess["clicks"].mean(0)],
                      "theta": [round(float(v), 4) for v in sess["theta"]]}))
    return 0


def _load_clicks(path):
    import numpy as np

    z = np.load(path)
    return {k: z[k] for k in z.files if k != "meta"}, json.loads(str(z["meta"]))


def _train_letor(args) -> int:
    from llmrec.artifacts import write_json_atomic
    from llmrec.ltr.letor import cross_validate

    res = cross_validate(args.letor, args.learner, args.model, args.eta, args.seed,
                         args.click_model, normalise=args.normalise, n_sessions=args.sessions,
                         steps=args.steps, logger_frac=args.logger_frac,
                         hidden=tuple(args.hidden))
    write_json_atomic(args.out, res)
    summ = res["summary"]
    print(json.dumps({"out": str(args.out), "n_folds": res["n_folds"],
                      "test": {k.split("/", 1)[1]: v for k, v in summ.items()
                               if k.startswith("test/")},
                      "logger_test_ndcg@10": summ["test_logger/ndcg@10"]}))
    return 0


def _train(cfg, args) -> int:
    import torch

    from llmrec.errors import ConfigError
    from llmrec.ltr.train import TrainConfig, train_from_clicks

    if (args.clicks is None) == (args.letor is None):
        raise ConfigError("ltr train: give exactly one of --clicks (a log from 'simulate') or "
                          "--letor (a folder with Fold1..Fold5/{train,vali,test}.txt)")
    if args.letor is not None:
        return _train_letor(args)

    z, meta = _load_clicks(args.clicks)
    tr = z["train"]
    tcfg = TrainConfig(learner=args.learner, model=args.model, steps=args.steps, seed=args.seed,
                       hidden=tuple(args.hidden))
    sess = {"query": z["query"], "clicks": z["clicks"], "theta": z["theta"]}
    res = train_from_clicks(torch.as_tensor(z["x"][tr]), z["shown"], sess, tcfg,
                            grades=z["y"][tr])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save({"state": res.ranker.state_dict(), "learner": tcfg.learner, "model": tcfg.model,
                "hidden": list(tcfg.hidden), "clicks": str(Path(args.clicks).resolve()),
                "propensity": None if res.propensity is None else res.propensity.tolist(),
                "meta": meta}, tmp)
    tmp.replace(out)
    print(json.dumps({"out": str(out), "final_loss": res.losses[-1] if res.losses else None,
                      "propensity": None if res.propensity is None
                      else [round(float(v), 4) for v in res.propensity]}))
    return 0


def _eval(cfg, args) -> int:
    import torch

    from llmrec.ltr.train import evaluate, make_ranker, score

    ck = torch.load(args.model, weights_only=False)
    z, meta = _load_clicks(ck["clicks"])
    ranker = make_ranker(ck["model"], z["x"].shape[-1], tuple(ck["hidden"]))
    ranker.load_state_dict(ck["state"])
    te = z["test"]
    m = evaluate(score(ranker, torch.as_tensor(z["x"][te])), z["y"][te], z["mask"][te],
                 meta["max_grade"])
    m.update({"learner": ck["learner"], "model": ck["model"], "eta": meta["eta"],
              "seed": meta["seed"], "split": "test"})
    text = json.dumps(m)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def session_metrics_table(data: str, n_boot: int = 1000, seed: int = 0, L: float = 1000.0,
                          max_usefulness: float | None = None) -> dict:
    """The metric-vs-satisfaction table of a CHIIR'16 folder or a TianGong file."""
    from llmrec.errors import DataError
    from llmrec.ltr import sessions as S

    path = Path(data)
    if path.is_dir():
        ss = S.load_chiir16(path)
        values = S.chiir16_metrics(ss, L=L)
        rows = S.satisfaction_table(values, [s.rating for s in ss], n_boot, seed)
        return {"format": "chiir16", "data": str(path), "n": len(ss),
                "target": "session rating (Performance, 1-5)", "rows": rows}
    if path.is_file():
        qs = S.load_tiangong(path)
        mx = max_usefulness if max_usefulness is not None else \
            max(max(q.usefulness) for q in qs)
        values = S.tiangong_metrics(qs, mx, L=L)
        rows = S.satisfaction_table(values, [q.satisfaction for q in qs], n_boot, seed)
        return {"format": "tiangong", "data": str(path), "n": len(qs), "max_usefulness": mx,
                "target": "query satisfaction (0-4)", "rows": rows,
                "click_usefulness_agreement": S.click_usefulness_agreement(qs)}
    raise DataError(f"{path}: no such folder or file; pass a session-sat-chiir16 folder or a "
                    "tiangong-ram-clicks file (e.g. fsd_test.tsv.gz)")


def _session_metrics(cfg, args) -> int:
    from llmrec.artifacts import write_json_atomic

    table = session_metrics_table(args.data, args.boot, args.seed, args.L, args.max_usefulness)
    print(f"{table['format']}: {table['n']} rows, correlation with {table['target']} "
          f"(95% bootstrap intervals, {args.boot} resamples)")
    print(f"{'metric':44s} {'pearson':>22s} {'spearman':>22s} {'kendall':>22s}")
    for r in table["rows"]:
        cells = [f"{r[m]['r']:+.3f} [{r[m]['lo']:+.3f}, {r[m]['hi']:+.3f}]"
                 for m in ("pearson", "spearman", "kendall")]
        print(f"{r['metric']:44s} " + " ".join(f"{c:>22s}" for c in cells))
    if args.out:
        write_json_atomic(args.out, table)
    return 0


def _add_commands(sub) -> None:
    p = sub.add_parser("simulate", help="simulate PBM clicks on a TREC folder's BM25 top 10")
    p.add_argument("--data", required=True, help="trec folder (e.g. ../shared/data/trec-dl19)")
    p.add_argument("--out", required=True, help="click log to write (.npz)")
    p.add_argument("--sessions", type=int, default=20000, help="number of sessions")
    p.add_argument("--eta", type=float, default=1.0, help="position-bias severity")
    p.add_argument("--propensity", default="rho", choices=["rho", "inverse_rank"],
                   help="rho_k (eye-tracking, the spec's) or 1/k, raised to eta")
    p.add_argument("--click-model", default="pbm", choices=["pbm", "cascade"],
                   help="position-based model, or cascade (stops after the first click)")
    p.add_argument("--top-k", type=int, default=10, help="documents shown per session")
    p.add_argument("--test-frac", type=float, default=0.3, help="share of held-out queries")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the clicks")
    p.add_argument("--minilm", action="store_true", help="add the MiniLM cosine feature")
    p.set_defaults(_handler=_simulate, _config_cls=None, _outputs=None)

    p = sub.add_parser("train", help="train a ranker from a click log, or cross-validate the "
                       "click pipeline on a LETOR folder")
    p.add_argument("--clicks", default=None, help="click log from 'simulate'")
    p.add_argument("--letor", default=None, help="LETOR / MSLR folder (Fold1..Fold5 with "
                   "train.txt, vali.txt, test.txt): clicks are simulated on each fold's training "
                   "queries and the learner is scored on its test queries; --out is then a "
                   "JSON file of per-fold and mean metrics")
    p.add_argument("--out", required=True, help="ranker file to write (.pt), or the JSON "
                   "results with --letor")
    p.add_argument("--eta", type=float, default=1.0, help="--letor: position-bias severity")
    p.add_argument("--click-model", default="pbm", choices=["pbm", "cascade"],
                   help="--letor: click model of the simulation")
    p.add_argument("--sessions", type=int, default=20000, help="--letor: sessions per fold")
    p.add_argument("--logger-frac", type=float, default=0.01, help="--letor: share of "
                   "training queries the logging ranker is fit on (at least one query)")
    p.add_argument("--normalise", default="query", choices=["query", "none"],
                   help="--letor: min-max features per query (QueryLevelNorm) or as read")
    p.add_argument("--learner", default="dla", choices=["naive", "ipw", "dla", "full"])
    p.add_argument("--model", default="linear", choices=["linear", "mlp"])
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 32], help="MLP hidden sizes")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and batches")
    p.set_defaults(_handler=_train, _config_cls=None, _outputs=None)

    p = sub.add_parser("eval", help="evaluate a ranker on the held-out queries' true labels")
    p.add_argument("--model", required=True, help="ranker file from 'train'")
    p.add_argument("--out", default=None, help="optional JSON file for the metrics")
    p.set_defaults(_handler=_eval, _config_cls=None, _outputs=None)

    p = sub.add_parser("session-metrics",
                       help="session / query metrics against user satisfaction, with CIs")
    p.add_argument("--data", required=True, help="session-sat-chiir16 folder, or one "
                   "tiangong-ram-clicks file (fsd_test.tsv.gz, ...)")
    p.add_argument("--out", default=None, help="optional JSON file for the table")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--L", type=float, default=1000.0, help="U-measure / NUM patience "
                   "(characters)")
    p.add_argument("--max-usefulness", type=float, default=None, help="TianGong: top "
                   "usefulness grade (FSD 4, QRef 3); default: the largest in the file")
    p.set_defaults(_handler=_session_metrics, _config_cls=None, _outputs=None)


def register(subparsers) -> None:
    """Add ``ltr simulate|train|eval|session-metrics`` to the ``llmrec`` parser."""
    group = subparsers.add_parser("ltr", help="unbiased learning to rank from simulated clicks")
    group.set_defaults(_group_parser=group)
    _add_commands(group.add_subparsers(dest="ltr_command", metavar="COMMAND"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmrec.ltr.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_commands(parser.add_subparsers(dest="ltr_command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    if not getattr(args, "_handler", None):
        parser.print_help()
        return 2
    return int(args._handler(None, args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
