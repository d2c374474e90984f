"""The oracle benchmark: can the augmentation path use a planted signal, and can it select it?

    python bench/kser_oracle.py --config eval/kser/ml1m.yaml --models din --seeds 0,1,2 \
        --kinds user,item --sources leaky,fair,noise --layouts whole,hidden \
        --workers 12 --out bench/results/kser_oracle.jsonl

For every (kind, source, layout) an oracle knowledge folder is written once
(:mod:`llmrec.ranking.knowledge.oracle`: ``z`` from the split, ``normalise(strength z u + n)``
as the whole vector or hidden in one chunk among ``fields x chunks``), then every
(method, KSER variant, backbone, seed) cell trains on it; ``none`` cells (no knowledge) run
once per backbone and seed. ``--variants`` adds named KSER settings,
``name:key=value;key=value`` (knowledge options), to compare designs on the same folders.

The summary prints, per method and variant, the paired AUC gain over ``none`` (mean +- std over
seeds) and, for the hidden and decoy layouts, the share of the whole-vector gain it recovers:
``recovered = gain(hidden) / gain(whole)`` from the seed means. Records go through
``llmrec.benchrecord`` with ``augment``, ``strategy``, ``variant``, ``knowledge``
(``oracle:<kind>:<source>:<layout>``), ``kind``, ``source``, ``layout``, ``strength`` and the
exact config.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cellpool import cell_records, run_cells  # noqa: E402

from llmrec import benchrecord as br  # noqa: E402
from llmrec.config import load_config  # noqa: E402

METRICS = ("auc", "logloss", "gauc")


def parse_variants(spec: str) -> dict[str, dict]:
    """``default;small:value_dim=4;t:temperature=0.25`` -> {name: {option: value}}; values are
    parsed as YAML scalars. Variants are separated by ``|``, options by ``;``."""
    import yaml

    out: dict[str, dict] = {}
    for part in [p for p in spec.split("|") if p.strip()]:
        name, _, opts = part.partition(":")
        kv = {}
        for item in [o for o in opts.split(";") if o.strip()]:
            k, _, v = item.partition("=")
            kv[k.strip()] = yaml.safe_load(v)
        out[name.strip()] = kv
    return out


def make_cfg(base, model: str, seed: int, method: str, folder: str | None, kind: str | None,
             overrides: dict, out_dir: Path, tag: str):
    cfg = copy.deepcopy(base)
    cfg.model, cfg.augment, cfg.strategy = model, method, "all"
    cfg.train.seed = seed
    cfg.train.checkpoint = False
    cfg.output_dir = str(out_dir / tag)
    if method != "none":
        cfg.knowledge.cache_dir = None
        cfg.knowledge.embeddings = folder
        cfg.knowledge.item_embeddings = cfg.knowledge.user_embeddings = None
        cfg.knowledge.kinds = [kind]
        for k, v in overrides.items():
            if k == "strategy":
                cfg.strategy = v
            elif k.startswith("model_args."):
                cfg.model_args[k.split(".", 1)[1]] = v
            elif k.startswith("train."):
                setattr(cfg.train, k.split(".", 1)[1], v)
            else:
                if not hasattr(cfg.knowledge, k):
                    raise SystemExit(f"unknown knowledge option {k!r} in --variants")
                setattr(cfg.knowledge, k, v)
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--models", default="din")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--kinds", default="user,item")
    ap.add_argument("--sources", default="leaky,fair,noise")
    ap.add_argument("--layouts", default="whole,hidden")
    ap.add_argument("--methods", default="none,kar,kser")
    ap.add_argument("--variants", default="default",
                    help="KSER settings to compare: name:opt=v;opt=v|name2:... (default: as "
                         "configured)")
    ap.add_argument("--kar-variants", default="default", help="likewise for KAR")
    ap.add_argument("--strength", type=float, default=1.0)
    ap.add_argument("--fields", type=int, default=8)
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--signal-field", type=int, default=3)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dataset-label", default=None)
    args, overrides = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("kser_oracle")

    from llmrec.data.loaders import load_data
    from llmrec.data.splits import make_split
    from llmrec.ranking.knowledge.oracle import oracle_embeddings
    from llmrec.ranking.pipeline import RankConfig, prepare_features

    t0 = time.perf_counter()
    base = load_config(RankConfig, args.config, overrides)
    work = Path(tempfile.mkdtemp(prefix="kser-oracle-"))
    if not base.features_path:
        base.features_path = str(work / "features")
    fs = prepare_features(base)
    split = make_split(load_data(base.data), base.split)
    dataset = args.dataset_label or fs.info.get("dataset", base.data.name)
    del fs
    env = br.environment(extra_versions=("numpy", "pandas"))
    common = {"dataset": dataset, "split": f"{base.split.protocol}-test",
              "command": " ".join(["python", *sys.argv])}
    models = args.models.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    kinds, sources, layouts = (args.kinds.split(","), args.sources.split(","),
                               args.layouts.split(","))
    methods = args.methods.split(",")
    variants = {"kar": parse_variants(args.kar_variants), "kser": parse_variants(args.variants)}
    folders = {}
    for kind in kinds:
        for source in sources:
            for layout in layouts:
                folders[(kind, source, layout)] = str(oracle_embeddings(
                    work / f"oracle-{kind}-{source}-{layout}", split, {kind: source}, layout,
                    args.strength, args.fields, args.chunks, args.signal_field, args.dim))
    log.info("features and %d oracle folders ready in %.1fs", len(folders),
             time.perf_counter() - t0)
    # what a linear read of each pooling can reach at best (llmrec.ranking.knowledge.oracle)
    readout = {key: json.loads((Path(f) / "oracle_readout.json").read_text())[key[0]]
               for key, f in folders.items()}
    for (kind, source, layout), r in readout.items():
        print(f"readout r2 of z {kind:<5} {source:<6} {layout:<7} pooled {r['pooled']:.3f} "
              f"field {r['field']:.3f} chunk {r['chunk']:.3f}")
    jobs = []
    for seed in seeds:
        for model in models:
            if "none" in methods:
                jobs.append({"method": "none", "variant": "none", "model": model, "seed": seed,
                             "kind": None, "source": None, "layout": None,
                             "features": base.features_path,
                             "cfg": make_cfg(base, model, seed, "none", None, None, {}, work,
                                             f"none-{model}-{seed}")})
            for (kind, source, layout), folder in folders.items():
                for method in [m for m in methods if m != "none"]:
                    for vname, opts in variants[method].items():
                        tag = f"{method}-{vname}-{kind}-{source}-{layout}-{model}-{seed}"
                        jobs.append({"method": method, "variant": vname, "model": model,
                                     "seed": seed, "kind": kind, "source": source,
                                     "layout": layout, "features": base.features_path,
                                     "cfg": make_cfg(base, model, seed, method, folder, kind,
                                                     opts, work, tag)})
    log.info("%d cells", len(jobs))
    results: dict[tuple, dict] = {}

    def on_result(r: dict) -> None:
        key = (r["method"], r["variant"], r["model"], r["kind"], r["source"], r["layout"])
        knowledge = (f"oracle:{r['kind']}:{r['source']}:{r['layout']}" if r["kind"] else "none")
        keys = dict(model=r["model"], augment=r["method"], strategy="all", variant=r["variant"],
                    knowledge=knowledge, kind=r["kind"], source=r["source"], layout=r["layout"],
                    strength=args.strength if r["kind"] else None, seed=r["seed"],
                    regime="ours", **common)
        br.append(args.out, cell_records("kser_oracle", r, env, keys, METRICS))
        if "error" in r:
            log.error("%s seed %d failed: %s\n%s", key, r["seed"], r["error"], r.get("trace"))
            return
        res = r["result"]
        results.setdefault(key, {})[r["seed"]] = res["test"]
        log.info("%-5s %-10s %-6s %-5s %-6s %-6s seed %d: test AUC %.5f (epoch %d/%d, %.0fs)",
                 r["method"], r["variant"], r["model"], r["kind"], r["source"], r["layout"],
                 r["seed"], res["test"]["auc"], res["best_epoch"], res["epochs"], r["wall"])

    run_cells(jobs, args.workers, on_result, args.threads, args.time_limit)

    # paired gains over none and the recovered share of the whole-vector gain
    summary = []
    for model in models:
        base_auc = results.get(("none", "none", model, None, None, None), {})
        for key, per in sorted(results.items(), key=lambda kv: str(kv[0])):
            method, vname, m, kind, source, layout = key
            if m != model or method == "none":
                continue
            paired = [per[s]["auc"] - base_auc[s]["auc"] for s in per if s in base_auc]
            if not paired:
                continue
            st = br.summarise(paired)
            r2 = readout[(kind, source, layout)]
            extra = {"readout_pooled": r2["pooled"], "readout_field": r2["field"],
                     "readout_chunk": r2["chunk"]}
            if layout != "whole":
                whole = results.get((method, vname, m, kind, source, "whole"), {})
                wg = [whole[s]["auc"] - base_auc[s]["auc"] for s in whole if s in base_auc]
                if wg and abs(sum(wg) / len(wg)) > 1e-9:
                    extra["recovered"] = st["mean"] / (sum(wg) / len(wg))
            summary.append(br.record(
                "kser_oracle", "auc_gain", st["mean"], "", env, model=m, augment=method,
                strategy="all", variant=vname, knowledge=f"oracle:{kind}:{source}:{layout}",
                kind=kind, source=source, layout=layout, strength=args.strength, seed=None,
                regime="ours", seeds=sorted(per), **st, **extra, **common))
            rec = f" recovered {extra['recovered']:.2f}" if "recovered" in extra else ""
            print(f"{m:<7} {method:<5} {vname:<12} {kind:<5} {source:<6} {layout:<7} "
                  f"gain {st['mean']:+.5f} +- {st['std']:.5f} (n={st['n_seeds']}){rec}")
    br.append(args.out, summary)
    print(f"total {time.perf_counter() - t0:.0f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
