"""SSRA on TREC DL19: record the held-out results in bench/results/synth_dl19.jsonl.

Runs (or, by default, resumes / reuses) ``llmrec synth experiment`` with the DL19 recipe, prints
the markdown tables, and appends one JSON object per number: the four embedders' nDCG@10 and
AvgAP (with the AP at each threshold), g's per-level agreement with held-out human labels, the
level balance of the synthetic data before and after the Stage-2 filter, and the kept fraction
per level and round, how often g agrees with the target level of the generated queries, and
paired per-query differences between the embedders with bootstrap intervals (``--no-paired``
skips them). Every record carries the device, package versions, commit, config and
seeds, and when each step of a resumed run was written (and by which commit). Recorded lines are
never edited; a new run appends new ones, a run already recorded is not appended again.

    python bench/synth_dl19.py                        # eval/synth/dl19.yaml, runs/synth-dl19
    python bench/synth_dl19.py --config eval/synth/dl19.yaml --out runs/synth-dl19 --rerun
    python bench/synth_dl19.py --out runs/synth-dl19-qwen --query.llm.model=qwen2.5-coder-0.5b \
        --embed.model=mpnet                           # any --key=value overrides the recipe
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "synth_dl19.jsonl"
sys.path.insert(0, str(ROOT))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402

# versions recorded besides benchrecord's own set (the data stack of the synth pipeline)
EXTRA_VERSIONS = ("datasets", "pyarrow", "numpy", "pandas")


def _model_name(name: str, aliases: frozenset, default: str) -> str:
    """A config's model name as recorded: the packaged default's id for its aliases."""
    return default if str(name).strip().lower() in aliases else str(name)


def _steps(out: Path) -> dict[str, dict]:
    """When each step's output was written and by which code (a resumed run spans sessions)."""
    from llmrec.artifacts import read_meta

    steps = {}
    for meta_file in sorted(out.glob("**/llmrec_meta.json")):
        folder = meta_file.parent
        if any(part.startswith(".") for part in folder.relative_to(out).parts):
            continue  # an unfinished temporary folder
        meta = read_meta(folder) or {}
        steps[str(folder.relative_to(out))] = {"finished": meta.get("timestamp"),
                                               "git_revision": meta.get("git_revision")}
    return steps


def records(results: dict, cfg_dict: dict, versions: dict, device: str = "",
            steps: dict | None = None, command: str = "",
            extra: list[dict] | None = None) -> list[dict]:
    """One record per number of ``results`` (an experiment's results.json), then ``extra``
    (records with their own metric, value and keys) with the same common fields."""
    from llmrec.models.resolve import (
        DEFAULT_EMBEDDER, DEFAULT_LLM, EMBEDDER_ALIASES, LLM_ALIASES,
    )

    prov = results.get("provenance") or {}
    split = (f"heldout-{results['task']['eval_queries']}q-seed{cfg_dict['data']['split_seed']}"
             f"-of-{results['task']['seed_queries']}seedq")
    seeds = {"split": cfg_dict["data"]["split_seed"], "score": cfg_dict["score"]["seed"],
             "query_sampling": cfg_dict["query"]["llm"]["seed"],
             "query_lora": cfg_dict["query"]["lora"]["seed"], "ssra": cfg_dict["ssra"]["seed"],
             "embed": cfg_dict["embed"]["seed"]}
    embedder = _model_name(cfg_dict["embed"]["model"], EMBEDDER_ALIASES, DEFAULT_EMBEDDER)
    g_id = results["score_model"].get("model") or {}
    g_base = g_id.get("base") or g_id.get("model") or cfg_dict["score"]["model"]
    if cfg_dict["score"]["kind"] == "cross-encoder":
        g_base = _model_name(cfg_dict["score"]["model"], EMBEDDER_ALIASES, DEFAULT_EMBEDDER)
    g_name = f"g: {cfg_dict['score']['kind']} {g_base}"
    env = {"device": device or br.device_name(), "commit": br.commit(), "date": br.now_iso(),
           "versions": versions}
    base = {"run_id": prov.get("timestamp"),
            "run_git_revision": prov.get("git_revision"), "dataset": "trec-dl19",
            "split": split, "seed": seeds["embed"], "seeds": seeds, "n_seeds": 1,
            "generator": _model_name(cfg_dict["query"]["llm"]["model"], LLM_ALIASES, DEFAULT_LLM),
            "config": cfg_dict,
            # wall time of the invocation that finished the experiment; steps reused from
            # earlier invocations are not in it (see "steps" for when each step was written)
            "run_seconds_last_invocation": results.get("seconds"),
            "steps": steps or {},
            "command": command}
    out = []

    def add(metric, value, unit="fraction", **keys):
        if value is None or value != value:  # NaN: nothing measured
            return
        out.append(br.record("synth_dl19", metric, float(value), unit, env, **{**base, **keys}))

    for cond, r in results["embedders"].items():
        keys = dict(model=embedder, strategy=cond, baseline="base" if cond != "base"
                    else None, train_rows=r.get("train_rows"), n_queries=r.get("n_queries"),
                    n_pairs=r.get("n_pairs"))
        for metric in ("ndcg@10", "avg_ap", "ap_ge1", "ap_ge2", "ap_ge3"):
            add(metric, r.get(metric), **keys)
    g = results["score_model"]
    gkeys = dict(model=g_name, strategy="score_model")
    for lv in range(4):
        add(f"g_agreement_level{lv}", g["heldout"].get(f"agreement_{lv}"),
            n_pairs=g["heldout"].get(f"n_gold_{lv}"), **gkeys)
        add(f"g_precision_level{lv}", g["heldout"].get(f"precision_{lv}"), **gkeys)
    add("g_accuracy", g["heldout"]["accuracy"], n_pairs=g["heldout"]["n"], **gkeys)
    add("g_macro_agreement", g["heldout"]["macro_agreement"], **gkeys)
    for metric, v in (g.get("as_reranker") or {}).items():
        add(metric, v, **{**gkeys, "strategy": "score_model_reranker"})

    def balance(name, b, **keys):
        for lv in range(4):
            add(f"level_share_{lv}", (b or {}).get(str(lv)), data=name, n=(b or {}).get("n"),
                **keys)

    balance("seed_labels", results["task"]["seed_levels"])
    po = results.get("prompt_only")
    if po:
        balance("prompt_only_generated_as_judged_by_g", po["levels_before"])
        balance("prompt_only_data_target_levels", po["levels_after"])
        add("duplicate_rate", po["duplicate_rate_before"], data="prompt_only_generated")
    s = results.get("ssra")
    if s:
        balance("ssra_stage1_data", s["stage1"]["levels"])
        for r in s["rounds"]:
            balance("ssra_generated_before_stage2_filter", r["levels_before"], round=r["round"])
            balance("ssra_kept_after_stage2_filter", r["levels_after"], round=r["round"])
            for lv in range(4):
                add(f"kept_fraction_level{lv}", r.get(f"kept_fraction_{lv}"), round=r["round"],
                    data="ssra_stage2")
            add("duplicate_rate", r["duplicate_rate_before"], round=r["round"],
                data="ssra_generated")
            add("duplicate_rate", r["duplicate_rate_after"], round=r["round"], data="ssra_kept")
        balance("ssra_data_all_rounds", s["data"]["levels"])
        st1 = s["stage1"]
        for name in ("seed_pairs", "logs_annotated", "reannotated_kept", "docs_multi_level"):
            add(f"stage1_{name}", st1.get(name), unit="count", data="ssra_stage1")
        for r in s["rounds"]:
            add("generated", r["generated"], unit="count", round=r["round"], data="ssra_stage2")
            add("kept", r["kept"], unit="count", round=r["round"], data="ssra_stage2")
            add("sft_rows", r.get("sft_rows"), unit="count", round=r["round"], data="ssra_stage2")
            for reason, count in (r.get("reasons") or {}).items():
                add(f"reason_{reason}", count, unit="count", round=r["round"], data="ssra_stage2")
    for lv in range(4):
        for lp in range(4):
            add(f"g_confusion_gold{lv}_pred{lp}", g["heldout"]["confusion"][lv][lp],
                unit="pairs", **gkeys)
    for rec in extra or []:
        rec = dict(rec)
        add(rec.pop("metric"), rec.pop("value"), rec.pop("unit", "fraction"), **rec)
    return out


def generated_records(out: Path) -> list[dict]:
    """Per target level, how often g puts a generated query at its target level (before the
    duplicate and order checks), and the words per query: the prompt-only queries and each
    Stage-2 round, read from the saved datasets."""
    from llmrec.synth.io import load_frame

    parts = [("prompt_only_generated", None, out / "prompt_only")]
    parts += [("ssra_generated", int(d.name[len("round"):]), d)
              for d in sorted((out / "ssra").glob("round*"), key=lambda d: int(d.name[5:]))
              if d.name[5:].isdigit()]
    recs = []
    for data, rnd, path in parts:
        if not path.exists():
            continue
        f = load_frame(path)
        for lv in range(4):
            part = f[f["level"] == lv]
            if len(part):
                recs.append({"metric": f"g_agrees_with_target_level{lv}",
                             "value": float((part["g_level"] == lv).mean()), "unit": "fraction",
                             "data": data, "round": rnd, "n": int(len(part))})
        words = f["query"].fillna("").str.split().str.len()
        recs.append({"metric": "mean_query_words", "value": float(words.mean()), "unit": "words",
                     "data": data, "round": rnd, "n": int(len(f))})
    return recs


# (condition, reference) pairs compared per query
PAIRS = (("seed", "base"), ("prompt_only", "base"), ("ssra", "base"),
         ("prompt_only", "seed"), ("ssra", "seed"), ("ssra", "prompt_only"))


def paired_records(run, results: dict, n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """Paired differences between embedders on the held-out queries, with a bootstrap over
    queries: the mean nDCG@k difference and the pooled-AvgAP difference, each with its 95%
    percentile interval, and the per-query nDCG wins / losses / ties."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from llmrec.models import resolve_embedder
    from llmrec.synth.metrics import avg_ap, ndcg_at_k

    ev = run.task.eval.reset_index(drop=True)
    doc_text = run.task.doc_text()
    k = run.cfg.eval_k
    grades = ev["grade"].astype(int).to_numpy()
    qids = ev["query_id"].astype(str).to_numpy()
    queries = sorted(set(qids))
    rows_of = {q: np.nonzero(qids == q)[0] for q in queries}
    conds = [c for c in results["embedders"] if c in {x for pair in PAIRS for x in pair}]
    scores = {}
    for cond in conds:
        model = SentenceTransformer(str(resolve_embedder(run.embedder(cond))), device="cpu")
        enc = dict(convert_to_numpy=True, normalize_embeddings=True, batch_size=64,
                   show_progress_bar=False)
        qs, ds = sorted(set(ev["query"])), sorted(set(ev["doc_id"]))
        qv = dict(zip(qs, model.encode(qs, **enc)))
        dv = dict(zip(ds, model.encode([doc_text[d] for d in ds], **enc)))
        scores[cond] = np.array([float(np.dot(qv[q], dv[d]))
                                 for q, d in zip(ev["query"], ev["doc_id"])])
    per_query = {c: np.array([ndcg_at_k(scores[c][rows_of[q]], grades[rows_of[q]], k)
                              for q in queries], dtype=float) for c in conds}
    for c in conds:  # the same numbers as the experiment's, or the comparison is meaningless
        mine, theirs = float(np.nanmean(per_query[c])), results["embedders"][c][f"ndcg@{k}"]
        if abs(mine - theirs) > 1e-4:
            raise RuntimeError(f"{c}: recomputed nDCG@{k} {mine:.5f} differs from the "
                               f"experiment's {theirs:.5f}; is {run.out} from another config?")
    rng = np.random.default_rng(seed)
    boots = rng.integers(0, len(queries), size=(n_boot, len(queries)))
    recs = []
    for cond, ref in PAIRS:
        if cond not in scores or ref not in scores:
            continue
        d = per_query[cond] - per_query[ref]
        ok = ~np.isnan(d)
        keys = {"strategy": cond, "baseline": ref, "n_queries": int(ok.sum()),
                "n_boot": n_boot, "bootstrap_seed": seed, "unit": "fraction"}
        nd_boot = np.array([np.nanmean(d[b]) for b in boots])
        recs.append({"metric": f"ndcg@{k}_delta", "value": float(np.nanmean(d)),
                     "ci95_low": float(np.percentile(nd_boot, 2.5)),
                     "ci95_high": float(np.percentile(nd_boot, 97.5)),
                     "queries_better": int(np.sum(d[ok] > 1e-12)),
                     "queries_worse": int(np.sum(d[ok] < -1e-12)),
                     "queries_tied": int(np.sum(np.abs(d[ok]) <= 1e-12)), **keys})
        ap_boot = []
        for b in boots:
            idx = np.concatenate([rows_of[queries[i]] for i in b])
            ap_boot.append(avg_ap(grades[idx], scores[cond][idx])["avg_ap"]
                           - avg_ap(grades[idx], scores[ref][idx])["avg_ap"])
        full = avg_ap(grades, scores[cond])["avg_ap"] - avg_ap(grades, scores[ref])["avg_ap"]
        recs.append({"metric": "avg_ap_delta", "value": float(full),
                     "ci95_low": float(np.percentile(ap_boot, 2.5)),
                     "ci95_high": float(np.percentile(ap_boot, 97.5)), **keys})
    return recs


_NAMES = {"base": "base embedder (no training)", "seed": "trained on seed labels only",
          "prompt_only": "+ prompt-only synthetic data", "ssra": "+ SSRA synthetic data",
          "score_model_reranker": "score model g as re-ranker (E[level])"}
_SHORT = {"base": "base", "seed": "seed only", "prompt_only": "+ prompt-only",
          "ssra": "+ SSRA"}
_DATA = {"seed_labels": "seed labels (human)",
         "prompt_only_generated_as_judged_by_g": "prompt-only queries, as g judges them",
         "prompt_only_data_target_levels": "prompt-only data (target levels, all kept)",
         "ssra_stage1_data": "Stage 1 data (seed + re-annotated logs)",
         "ssra_generated_before_stage2_filter": "SSRA generated, as g judges them (before "
                                                "the Stage-2 filter)",
         "ssra_kept_after_stage2_filter": "SSRA kept (after the Stage-2 filter)",
         "ssra_data_all_rounds": "SSRA synthetic data, all rounds",
         "prompt_only_generated": "prompt-only (untuned base LLM)",
         "ssra_generated": "SSRA (LoRA-tuned f)"}


def table_from_records(path: Path = RESULTS) -> str:
    """The docs' markdown tables, built from the most recent run recorded in ``path``."""
    recs = br.read(path)
    if not recs:
        return "(no records)"
    last = max(r["date"] for r in recs)
    recs = [r for r in recs if r["date"] == last]
    head = recs[0]
    cell = {(r.get("strategy"), r["metric"]): r["value"] for r in recs if r.get("strategy")}
    secs = head.get("run_seconds_last_invocation")
    lines = [f"Run of {last}, commit `{head['commit']}`, {head['device']}; split "
             f"`{head['split']}`; one seed"
             + (f"; last invocation {secs / 60:.0f} min" if secs is not None else "")
             + ". nDCG@10 and AP in %.", "",
             "| embedder | nDCG@10 | AvgAP | AP>=1 | AP>=2 | AP>=3 | train rows |",
             "|---|---|---|---|---|---|---|"]
    rows = {r["strategy"]: r.get("train_rows") for r in recs if r.get("metric") == "avg_ap"}
    # the base row names the embedder of this run where recorded (a path shows as its last part)
    names = dict(_NAMES)
    base_model = next((str(r["model"]) for r in recs if r.get("strategy") == "base"
                       and r.get("model")), None)
    if base_model:
        names["base"] = f"base {Path(base_model.rstrip('/')).name} (no training)"
    for strat in ("base", "seed", "prompt_only", "ssra", "score_model_reranker"):
        vals = [cell.get((strat, m)) for m in ("ndcg@10", "avg_ap", "ap_ge1", "ap_ge2", "ap_ge3")]
        if all(v is None for v in vals):
            continue
        lines.append(f"| {names[strat]} | " + " | ".join(
            "n/a" if v is None else f"{100 * v:.2f}" for v in vals)
            + f" | {rows.get(strat) if rows.get(strat) is not None else ''} |")
    lines += ["", "g's per-level agreement with held-out human labels (%):", "",
              "| | level 0 | level 1 | level 2 | level 3 |", "|---|---|---|---|---|"]
    for what in ("agreement", "precision"):
        lines.append(f"| {what} | " + " | ".join(
            f"{100 * cell[('score_model', f'g_{what}_level{lv}')]:.1f}"
            if ("score_model", f"g_{what}_level{lv}") in cell else "n/a" for lv in range(4))
            + " |")
    n_gold = {r["metric"]: r.get("n_pairs") for r in recs
              if r["metric"].startswith("g_agreement_level")}
    lines.append("| labelled pairs | " + " | ".join(
        str(n_gold.get(f"g_agreement_level{lv}", "n/a")) for lv in range(4)) + " |")
    acc, macro = cell.get(("score_model", "g_accuracy")), cell.get(("score_model",
                                                                    "g_macro_agreement"))
    if acc is not None and macro is not None:
        lines += ["", f"g's accuracy {100 * acc:.1f}%, macro agreement {100 * macro:.1f}% "
                  "(chance: 25% macro)."]
    lines += ["", "Level balance (% at levels 0 / 1 / 2 / 3):", "",
              "| data | round | balance | n |", "|---|---|---|---|"]
    seen = []
    for r in recs:
        key = (r.get("data"), r.get("round"))
        if r["metric"].startswith("level_share_") and key not in seen:
            seen.append(key)
    for data, rnd in seen:
        shares = {r["metric"][-1]: r["value"] for r in recs
                  if r.get("data") == data and r.get("round") == rnd
                  and r["metric"].startswith("level_share_")}
        n = next(r.get("n") for r in recs if r.get("data") == data and r.get("round") == rnd
                 and r["metric"].startswith("level_share_"))
        lines.append(f"| {_DATA.get(data, data)} | {rnd if rnd is not None else ''} | "
                     + " / ".join(f"{100 * shares.get(str(lv), 0):.0f}" for lv in range(4))
                     + f" | {n} |")

    def by(metric, **keys):
        return next((r for r in recs if r["metric"] == metric
                     and all(r.get(k) == v for k, v in keys.items())), None)

    gens = []
    for r in recs:
        key = (r.get("data"), r.get("round"))
        if r["metric"].startswith("g_agrees_with_target_level") and key not in gens:
            gens.append(key)
    if gens:
        lines += ["", "Generated queries: share that g puts at their target level (%), before "
                  "the duplicate and order checks; kept fraction after the whole Stage-2 filter "
                  "(%); words per query:", "",
                  "| queries | round | level 0 | level 1 | level 2 | level 3 | kept (0/1/2/3) "
                  "| words |", "|---|---|---|---|---|---|---|---|"]
        for data, rnd in gens:
            agree = [by(f"g_agrees_with_target_level{lv}", data=data, round=rnd)
                     for lv in range(4)]
            kept = [by(f"kept_fraction_level{lv}", data="ssra_stage2", round=rnd)
                    for lv in range(4)] if rnd is not None else [None] * 4
            words = by("mean_query_words", data=data, round=rnd)
            lines.append(f"| {_DATA.get(data, data)} | {rnd if rnd is not None else ''} | "
                         + " | ".join(
                "n/a" if a is None else f"{100 * a['value']:.0f}" for a in agree) + " | "
                + ("all kept" if rnd is None else " / ".join(
                    "n/a" if x is None else f"{100 * x['value']:.0f}" for x in kept))
                + f" | {words['value']:.1f} |" if words else " | |")
    deltas = [r for r in recs if r["metric"].endswith("_delta")]
    if deltas:
        lines += ["", "Paired differences on the held-out queries (percentage points; 95% "
                  "bootstrap interval over queries; per-query nDCG better / worse / tied):", "",
                  "| comparison | nDCG@10 diff | interval | better / worse / tied | AvgAP diff "
                  "| interval |", "|---|---|---|---|---|---|"]
        for r in deltas:
            if not r["metric"].startswith("ndcg"):
                continue
            ap = by("avg_ap_delta", strategy=r["strategy"], baseline=r["baseline"])
            lines.append(
                f"| {_SHORT[r['strategy']]} vs {_SHORT[r['baseline']]} | "
                f"{100 * r['value']:+.2f} | "
                f"[{100 * r['ci95_low']:+.2f}, {100 * r['ci95_high']:+.2f}] | "
                f"{r['queries_better']} / {r['queries_worse']} / {r['queries_tied']} | "
                + (f"{100 * ap['value']:+.2f} | [{100 * ap['ci95_low']:+.2f}, "
                   f"{100 * ap['ci95_high']:+.2f}] |" if ap else "n/a | |"))
    return "\n".join(lines) + "\n"


def _recorded_run_ids(path: Path = RESULTS) -> set:
    return {r.get("run_id") for r in br.read(path)}


def _same_config(saved: dict | None, current: dict) -> bool:
    """Whether a saved experiment's config is the current one (its output folder aside: a run
    copied to another folder is still the same run)."""
    if saved is None:
        return False
    norm = [json.loads(json.dumps({k: v for k, v in c.items() if k != "out"}, default=str))
            for c in (saved, current)]
    return norm[0] == norm[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "eval" / "synth" / "dl19.yaml"))
    p.add_argument("--out", default=None, help="output folder (default: the recipe's)")
    p.add_argument("--rerun", action="store_true", help="recompute every step")
    p.add_argument("--no-record", action="store_true", help="print only, append nothing")
    p.add_argument("--force-record", action="store_true",
                   help="append even if this run's numbers are recorded already")
    p.add_argument("--device-note", default="",
                   help="added to the recorded device, e.g. 'shared with other jobs'")
    p.add_argument("--no-paired", action="store_true",
                   help="skip the paired per-query comparison (it re-encodes the held-out pairs "
                        "with each embedder, a few minutes on a CPU)")
    p.add_argument("--n-boot", type=int, default=2000,
                   help="bootstrap resamples of the held-out queries for the paired comparison")
    p.add_argument("--results", type=Path, default=RESULTS,
                   help="the JSONL file to read and append (default bench/results/synth_dl19.jsonl)")
    p.add_argument("--table", action="store_true",
                   help="only print the markdown tables of the last recorded run")
    args, extra_overrides = p.parse_known_args(argv)
    bad = [a for a in extra_overrides if not a.startswith("--")]
    if bad:
        p.error(f"unexpected arguments {bad}; config overrides are --key=value")
    if args.table:
        if not args.results.is_file():
            print(f"error: {args.results} does not exist yet; run "
                  "python bench/synth_dl19.py first", file=sys.stderr)
            return 1
        print(table_from_records(args.results))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from llmrec.config import load_config, to_dict
    from llmrec.synth.pipeline import Run, SynthConfig, results_markdown

    # any other --key=value is a config override (e.g. --query.llm.model=qwen2.5-coder-0.5b)
    overrides = ([f"--out={args.out}"] if args.out else []) + extra_overrides
    if args.rerun:
        overrides.append("--reuse=false")
    cfg = load_config(SynthConfig, args.config, overrides)
    if cfg.data.domain != "trec":
        print(f"error: {args.config} is a {cfg.data.domain!r} recipe; this script records TREC "
              "DL19 runs (data.domain: trec)", file=sys.stderr)
        return 2
    saved = Path(cfg.out) / "results.json"
    results = None
    if not args.rerun and saved.is_file():
        results = json.loads(saved.read_text())
        log = logging.getLogger("synth_dl19")
        if not results.get("complete"):
            results = None
        elif not _same_config((results.get("provenance") or {}).get("config"), to_dict(cfg)):
            # e.g. another --embed.model in the same folder: Run.experiment() reuses every step
            # whose inputs are unchanged and recomputes the rest
            log.warning("%s holds a finished experiment with other settings; running this one",
                        saved)
            results = None
        else:
            log.info("using the finished experiment in %s (--rerun recomputes it)", saved)
    if results is None:
        results = Run(cfg).experiment()
    print(results_markdown(results))
    if not args.no_record:
        run_id = (results.get("provenance") or {}).get("timestamp")
        if run_id in _recorded_run_ids(args.results) and not args.force_record:
            print(f"the numbers of run {run_id} are in {args.results} already; "
                  "nothing appended (--force-record appends them again)")
            return 0
        extra = generated_records(Path(cfg.out))
        if not args.no_paired:
            extra += paired_records(Run(cfg), results, n_boot=args.n_boot)
        recs = records(results, to_dict(cfg), br.versions(*EXTRA_VERSIONS),
                       device=br.device_name(note=args.device_note),
                       steps=_steps(Path(cfg.out)),
                       command=" ".join(["python", "bench/synth_dl19.py", *sys.argv[1:]]),
                       extra=extra)
        br.append(args.results, recs)
        print(f"appended {len(recs)} records to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
