"""The SSRA experiment end to end, as resumable steps writing under one output folder.

Layout of ``out``::

    task/                 seed, unlabelled, pool, eval and docs tables (DatasetDict)
    score_model/          g, calibrated; score_report.json: its agreement with held-out labels
    prompt_only/          prompt-only queries (judged by g for the report, all kept)
    ssra/stage1/          Stage-1 pairs
    ssra/f_round<r>/      the LoRA-tuned query model used in round r
    ssra/round<r>/        round r's generated queries with g's verdict and the filter's reason
    ssra/data/            the kept Stage-2 pairs of all rounds (the SSRA synthetic data)
    ssra/report.json      Stage-1 and per-round statistics
    embed/<condition>/    trained bi-encoders (seed, prompt_only, ssra)
    results.json          every number of the run; results.md: the tables

Every step writes atomically; with ``reuse`` (default) a step whose output exists and was made
from the same config values (a :class:`~llmrec.artifacts.StepCache` record of the config sections
it depends on, upstream ones included, stored in its provenance or its JSON) is loaded instead of
recomputed, so an interrupted run resumes where it stopped and a changed option recomputes exactly
the steps it affects (the warning names the sections that changed). ``--reuse=false`` recomputes
everything.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.artifacts import StepCache
from llmrec.config import option
from llmrec.synth.domains import SynthDataConfig
from llmrec.synth.embedder import EmbedConfig
from llmrec.synth.query_model import QueryModelConfig
from llmrec.synth.score_model import ScoreModelConfig
from llmrec.synth.stages import SSRAConfig

log = logging.getLogger(__name__)

CONDITIONS = ("base", "seed", "prompt_only", "ssra")


@dataclass
class SynthConfig:
    """One SSRA experiment: data, g, f, the stages, the embedder and what to compare."""

    data: SynthDataConfig = option(default_factory=SynthDataConfig,
                                   help="domain, seed / held-out split")
    score: ScoreModelConfig = option(default_factory=ScoreModelConfig, help="score model g")
    query: QueryModelConfig = option(default_factory=QueryModelConfig, help="query model f")
    ssra: SSRAConfig = option(default_factory=SSRAConfig, help="Stage 1 / Stage 2 iteration")
    embed: EmbedConfig = option(default_factory=EmbedConfig, help="bi-encoder training")
    conditions: list[str] = option(
        list(CONDITIONS), help="embedders to compare: base (untrained), seed (seed labels only), "
                               "prompt_only (+ prompt-only synthetic data), ssra (+ SSRA data)")
    ssra_with_stage1: bool = option(
        False, help="the ssra condition also trains on Stage-1 re-annotated log pairs (default: "
                    "seed + Stage-2 synthetic pairs only, comparable with prompt_only)")
    eval_k: int = option(10, help="cut-off of nDCG")
    rank_with_g: bool = option(True, help="also report g's expected level as a re-ranker")
    out: str = option("runs/synth", help="output folder of every step")
    reuse: bool = option(True, help="load a step's finished output instead of recomputing it")
    threads: int = option(0, help="torch CPU threads (0 = torch's default)")

    def __post_init__(self) -> None:
        bad = [c for c in self.conditions if c not in CONDITIONS]
        if bad:
            raise ValueError(f"unknown condition(s) {bad}; valid: {', '.join(CONDITIONS)}")


class Run:
    """The steps of one experiment, sharing the loaded task and g."""

    def __init__(self, cfg: SynthConfig) -> None:
        self.cfg = cfg
        self.out = Path(cfg.out)
        self._task = None
        self._g = None
        if cfg.threads > 0:
            import torch

            torch.set_num_threads(cfg.threads)

    # The config sections each step's output depends on, upstream steps included. A finished
    # output is reused only if it was made from the same values (its StepCache record).
    _INPUTS = {
        "task": ("data",),
        "score": ("data", "score"),
        "score_report": ("data", "score", "eval_k", "rank_with_g"),
        "prompt_only": ("data", "score", "query_gen", "ssra"),
        "ssra": ("data", "score", "query", "ssra"),
        "embed:seed": ("data", "embed"),
        "embed:prompt_only": ("data", "score", "query_gen", "ssra", "embed"),
        "embed:ssra": ("data", "score", "query", "ssra", "embed", "ssra_with_stage1"),
    }

    def _parts(self, step: str) -> dict[str, Any]:
        from llmrec.config import to_dict

        parts: dict[str, Any] = {}
        for name in self._INPUTS[step]:
            if name == "query_gen":  # generation only: the LoRA settings do not matter
                parts[name] = {k: v for k, v in to_dict(self.cfg.query).items() if k != "lora"}
            else:
                parts[name] = getattr(self.cfg, name)
        return parts

    def cache(self, path: Path, step: str) -> StepCache:
        """``path`` as an output of ``step``: its record sits in the output (the JSON file or the
        folder's provenance)."""
        return StepCache(path, self._parts(step), enabled=self.cfg.reuse)

    def inputs(self, step: str) -> str:
        """Fingerprint of the config values ``step`` depends on."""
        return self.cache(self.out, step).fingerprint

    def record(self, step: str) -> dict[str, Any]:
        """The record keys of ``step``'s outputs (stored in their provenance or JSON)."""
        return self.cache(self.out, step).fields()

    def _done(self, path: Path, step: str) -> bool:
        """True if ``path`` holds a finished output of ``step`` made from the current config
        (otherwise the step is redone)."""
        return self.cache(path, step).reuse(on_stale="redo",
                                            made="was made from a different config")

    # -- task ------------------------------------------------------------------------------------
    @property
    def task(self):
        if self._task is None:
            from llmrec.synth.domains import SynthTask, build_task

            path = self.out / "task"
            if self._done(path, "task"):
                self._task = SynthTask.load(path)
            else:
                self._task = build_task(self.cfg.data)
                self._task.save(path, self.cfg.data, **self.record("task"))
            log.info("task %s: %s", self._task.name, json.dumps(self._task.summary()))
        return self._task

    # -- g ---------------------------------------------------------------------------------------
    @property
    def g(self):
        if self._g is None:
            from llmrec.synth.score_model import ScoreModel, train_score_model

            path = self.out / "score_model"
            if self._done(path, "score"):
                self._g = ScoreModel.load(path, self.cfg.score.llm
                                          if self.cfg.score.kind == "llm" else None)
            else:
                self._g = train_score_model(self.cfg.score, self.task.seed, self.task.doc_text())
                self._g.save(path, self.cfg.score, task=self.task.name, **self.record("score"))
        return self._g

    def score_report(self) -> dict[str, Any]:
        """g's per-level agreement with the held-out human labels (and as a re-ranker)."""
        from llmrec.artifacts import write_json_atomic
        from llmrec.synth.metrics import agreement, avg_ap, mean_ndcg

        path = self.out / "score_report.json"
        if self._done(path, "score_report"):
            return json.loads(path.read_text())
        ev = self.task.eval
        doc_text = self.task.doc_text()
        levels, proba = self.g.predict(ev["query"].tolist(), [doc_text[d] for d in ev["doc_id"]])
        report: dict[str, Any] = {**self.record("score_report"),
                                  "model": self.g.identity(), "info": self.g.info,
                                  "heldout": agreement(levels, ev["grade"].astype(int).tolist())}
        if self.cfg.rank_with_g:
            expected = proba @ list(range(proba.shape[1]))
            nd = mean_ndcg(ev["query_id"].tolist(), expected, ev["grade"].tolist(),
                           self.cfg.eval_k)
            report["as_reranker"] = {f"ndcg@{self.cfg.eval_k}": nd["ndcg"],
                                     **avg_ap(ev["grade"].to_numpy(), expected)}
        write_json_atomic(path, report)
        return report

    # -- documents of Stage 2 and of the prompt-only baseline --------------------------------------
    def round_docs(self, round_: int) -> list[str]:
        from llmrec.synth.stages import round_docs

        return round_docs(self.task.pool["doc_id"].tolist(), self.cfg.ssra.docs_per_round,
                          round_, self.cfg.ssra.seed)

    def planned_docs(self) -> list[str]:
        out: list[str] = []
        for r in range(1, self.cfg.ssra.rounds + 1):
            out += [d for d in self.round_docs(r) if d not in out]
        return out

    # -- prompt-only baseline ----------------------------------------------------------------------
    def prompt_only(self):
        from llmrec.synth.io import load_frame, save_dataset
        from llmrec.synth.stages import prompt_only, round_stats

        path = self.out / "prompt_only"
        if self._done(path, "prompt_only"):
            return load_frame(path)
        judged, identity = prompt_only(self.task, self.cfg.query.llm.model, self.cfg.query,
                                       self.planned_docs(), g=self.g)
        stats = round_stats(judged)
        save_dataset(judged, path, self.cfg.query, stage="prompt_only", generator=identity,
                     **self.record("prompt_only"),
                     score_model=self.g.identity(), stats=stats, task=self.task.name)
        return judged

    # -- SSRA ------------------------------------------------------------------------------------
    def ssra(self):
        """Stage 1, then Stage-2 rounds; returns (kept pairs of all rounds, report)."""
        import pandas as pd

        from llmrec.artifacts import write_json_atomic
        from llmrec.synth.io import load_frame, save_dataset
        from llmrec.synth.query_model import generate_queries, train_query_model
        from llmrec.synth.stages import (
            as_pairs, cap_per_level, filter_generated, generation_jobs, round_stats, stage1,
        )

        root = self.out / "ssra"
        report_path = root / "report.json"
        if self._done(report_path, "ssra") and self._done(root / "data", "ssra"):
            return load_frame(root / "data"), json.loads(report_path.read_text())
        cfg, qcfg = self.cfg.ssra, self.cfg.query
        doc_text = self.task.doc_text()
        g_id = self.g.identity()
        rec = self.record("ssra")
        report: dict[str, Any] = {**rec, "rounds": []}

        s1_path = root / "stage1"
        if self._done(s1_path, "ssra") and self._done(root / "stage1.json", "ssra"):
            s1 = load_frame(s1_path)
            report["stage1"] = json.loads((root / "stage1.json").read_text())
        else:
            s1, report["stage1"] = stage1(self.task, self.g, cfg)
            report["stage1"].update(rec)
            save_dataset(s1, s1_path, cfg, stage="ssra_stage1", score_model=g_id, **rec,
                         stats=report["stage1"], task=self.task.name)
            write_json_atomic(root / "stage1.json", report["stage1"])
        sft_base = s1[["doc_id", "level", "query"]]

        kept_all = []
        previous = None
        for r in range(1, cfg.rounds + 1):
            f_path = root / f"f_round{r}"
            sft = pd.concat([sft_base] + [k[["doc_id", "level", "query"]] for k in kept_all],
                            ignore_index=True)
            sft = cap_per_level(sft, cfg.max_per_level, cfg.seed + r)
            if not self._done(f_path, "ssra"):
                train_query_model(qcfg.llm.model, sft, doc_text, f_path, qcfg, qcfg, round=r,
                                  **rec,
                                  sft_levels=sft["level"].value_counts().sort_index().to_dict(),
                                  task=self.task.name)
            r_path = root / f"round{r}"
            if self._done(r_path, "ssra"):
                judged = load_frame(r_path)
            else:
                docs, levels = generation_jobs(self.round_docs(r))
                gen, identity = generate_queries(str(f_path), docs, levels, doc_text, qcfg,
                                                 round_=r)
                judged = filter_generated(gen, self.g, doc_text, cfg.order_check)
                save_dataset(judged, r_path, self.cfg, stage="ssra_stage2", round=r, **rec,
                             generator=identity, score_model=g_id, task=self.task.name,
                             sft_rows=len(sft))
            stats = {"round": r, "sft_rows": len(sft), **round_stats(judged)}
            report["rounds"].append(stats)
            log.info("SSRA round %d: kept %d of %d (per level %s)", r, stats["kept"],
                     stats["generated"],
                     [round(stats[f"kept_fraction_{lv}"], 2) for lv in range(4)])
            kept_all.append(as_pairs(judged, "ssra", r))
            gain = stats["kept_fraction_mean"]
            if cfg.stop_when_no_gain and previous is not None and gain <= previous:
                log.info("kept fraction did not improve (%.3f <= %.3f): stopping after round %d",
                         gain, previous, r)
                report["stopped_early_after_round"] = r
                break
            previous = gain
        data = pd.concat(kept_all, ignore_index=True)
        from llmrec.synth.metrics import duplicate_rate, level_balance

        report["data"] = {"pairs": len(data), "levels": level_balance(data["level"]),
                          "duplicate_rate": duplicate_rate(data["query"])}
        save_dataset(data, root / "data", self.cfg, stage="ssra_data", score_model=g_id, **rec,
                     rounds=len(kept_all), prompt=qcfg.prompt, task=self.task.name,
                     report=report)
        write_json_atomic(report_path, report)
        return data, report

    # -- embedders ---------------------------------------------------------------------------------
    def training_pairs(self, condition: str):
        import pandas as pd

        from llmrec.synth.stages import dedup_seed

        seed = dedup_seed(self.task.seed)
        seed = pd.DataFrame({"query": seed["query"], "doc_id": seed["doc_id"],
                             "level": seed["grade"].astype(int)})
        if condition == "seed":
            return seed
        if condition == "prompt_only":
            po = self.prompt_only()
            po = po[po["kept"]]
            return pd.concat([seed, po[["query", "doc_id", "level"]]], ignore_index=True)
        if condition == "ssra":
            data, _ = self.ssra()
            parts = [seed, data[["query", "doc_id", "level"]]]
            if self.cfg.ssra_with_stage1:
                from llmrec.synth.io import load_frame

                s1 = load_frame(self.out / "ssra" / "stage1")
                parts.append(s1.loc[s1["source"] == "reannotated", ["query", "doc_id", "level"]])
            return pd.concat(parts, ignore_index=True)
        raise ValueError(f"no training pairs for condition {condition!r}")

    def embedder(self, condition: str) -> str:
        """The embedder of ``condition`` (trained and saved unless done); its folder or name."""
        from llmrec.synth.embedder import train_embedder

        if condition == "base":
            return self.cfg.embed.model
        path = self.out / "embed" / condition
        step = f"embed:{condition}"
        if not self._done(path, step):
            pairs = self.training_pairs(condition)
            train_embedder(pairs, self.task.doc_text(), path, self.cfg.embed, self.cfg.embed,
                           condition=condition, task=self.task.name, **self.record(step))
        return str(path)

    def evaluate(self, condition: str) -> dict[str, Any]:
        from llmrec.synth.embedder import evaluate_embedder

        from llmrec.artifacts import read_meta

        model = self.embedder(condition)
        res = evaluate_embedder(model, self.task.eval, self.task.doc_text(), k=self.cfg.eval_k)
        meta = read_meta(model) if condition != "base" else None
        res["train_rows"] = (meta or {}).get("training", {}).get("rows", 0)
        if self.cfg.embed.matryoshka_dims:
            for dim in self.cfg.embed.matryoshka_dims:
                r = evaluate_embedder(model, self.task.eval, self.task.doc_text(),
                                      k=self.cfg.eval_k, matryoshka_dim=dim)
                res[f"dim{dim}"] = {k: v for k, v in r.items() if k.startswith(("ndcg", "avg"))}
        return res

    # -- everything ------------------------------------------------------------------------------
    def experiment(self) -> dict[str, Any]:
        import time

        from llmrec.artifacts import provenance, write_json_atomic

        t0 = time.perf_counter()
        results: dict[str, Any] = {"task": self.task.summary(), "task_info": self.task.info}
        results["score_model"] = self.score_report()
        if "prompt_only" in self.cfg.conditions:
            po = self.prompt_only()
            from llmrec.synth.stages import round_stats

            results["prompt_only"] = round_stats(po)
        if "ssra" in self.cfg.conditions:
            _, results["ssra"] = self.ssra()
        results["embedders"] = {}
        for cond in self.cfg.conditions:
            log.info("evaluating embedder: %s", cond)
            results["embedders"][cond] = self.evaluate(cond)
            # saved after every condition, so a long run shows its progress
            write_json_atomic(self.out / "results.json", {**results, "complete": False})
        results["seconds"] = round(time.perf_counter() - t0, 1)
        results["provenance"] = provenance(self.cfg)
        results["complete"] = True
        write_json_atomic(self.out / "results.json", results)
        (self.out / "results.md").write_text(results_markdown(results))
        return results


# ------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------

_LABELS = {"base": "base embedder (no training)", "seed": "trained on seed labels only",
           "prompt_only": "+ prompt-only synthetic data", "ssra": "+ SSRA synthetic data"}


def _pct(x: Any) -> str:
    try:
        return "n/a" if x != x else f"{100 * float(x):.2f}"
    except (TypeError, ValueError):
        return "n/a"


def _balance(b: dict[str, Any] | None) -> str:
    if not b:
        return "n/a"
    return " / ".join(f"{100 * float(b.get(str(lv), 0)):.0f}" for lv in range(4)) + \
        f" (n={int(b.get('n', 0))})"


def results_markdown(results: dict[str, Any]) -> str:
    """The markdown tables of one experiment's ``results.json``."""
    k = next((key for r in results.get("embedders", {}).values() for key in r
              if key.startswith("ndcg@")), "ndcg@10")
    lines = [f"| embedder | {k.replace('ndcg', 'nDCG')} | AvgAP | AP>=1 | AP>=2 | AP>=3 | "
             f"train rows |", "|---|---|---|---|---|---|---|"]
    for cond, r in results.get("embedders", {}).items():
        lines.append(f"| {_LABELS.get(cond, cond)} | {_pct(r.get(k))} | {_pct(r.get('avg_ap'))} | "
                     f"{_pct(r.get('ap_ge1'))} | {_pct(r.get('ap_ge2'))} | "
                     f"{_pct(r.get('ap_ge3'))} | {r.get('train_rows', '')} |")
    g = results.get("score_model", {})
    if g.get("as_reranker"):
        rr = g["as_reranker"]
        lines.append(f"| score model g as re-ranker (E[level]) | {_pct(rr.get(k))} | "
                     f"{_pct(rr.get('avg_ap'))} | {_pct(rr.get('ap_ge1'))} | "
                     f"{_pct(rr.get('ap_ge2'))} | {_pct(rr.get('ap_ge3'))} | |")
    out = ["nDCG and AP in %, on the held-out queries.", "", *lines, ""]
    h = g.get("heldout")
    if h:
        out += ["g's agreement with the held-out labels (human judgments for trec, the metadata "
                "rule for movies): of the pairs labelled at a level, the share g puts there too:",
                "",
                "| level | 0 | 1 | 2 | 3 | accuracy | macro |", "|---|---|---|---|---|---|---|",
                "| agreement % | " + " | ".join(_pct(h.get(f"agreement_{lv}")) for lv in range(4))
                + f" | {_pct(h.get('accuracy'))} | {_pct(h.get('macro_agreement'))} |",
                "| precision % | " + " | ".join(_pct(h.get(f"precision_{lv}")) for lv in range(4))
                + " | | |",
                "| labelled pairs | " + " | ".join(str(h.get(f"n_gold_{lv}", "")) for lv in range(4))
                + f" | {h.get('n', '')} | |", ""]
    out += ["Level balance (% at levels 0 / 1 / 2 / 3):", "", "| data | balance | duplicate rate |",
            "|---|---|---|"]
    t = results.get("task", {})
    out.append(f"| seed labels | {_balance(t.get('seed_levels'))} | |")
    po = results.get("prompt_only")
    if po:
        out.append(f"| prompt-only queries, as g judges them | {_balance(po.get('levels_before'))}"
                   f" | {_pct(po.get('duplicate_rate_before'))}% |")
        out.append(f"| prompt-only data (target levels, all kept) | "
                   f"{_balance(po.get('levels_after'))} | "
                   f"{_pct(po.get('duplicate_rate_after'))}% |")
    s = results.get("ssra")
    if s:
        st1 = s.get("stage1", {})
        out.append(f"| Stage 1 data (seed + re-annotated logs) | {_balance(st1.get('levels'))}"
                   f" | |")
        for r in s.get("rounds", []):
            out.append(f"| round {r['round']}: generated, as g judges them (before Stage-2 "
                       f"filter) | {_balance(r.get('levels_before'))} | "
                       f"{_pct(r.get('duplicate_rate_before'))}% |")
            out.append(f"| round {r['round']}: kept (after Stage-2 filter) | "
                       f"{_balance(r.get('levels_after'))} | "
                       f"{_pct(r.get('duplicate_rate_after'))}% |")
        out += ["", "Stage-2 kept fraction per target level (%):", "",
                "| round | SFT rows | 0 | 1 | 2 | 3 | mean | drop reasons |",
                "|---|---|---|---|---|---|---|---|"]
        for r in s.get("rounds", []):
            out.append(f"| {r['round']} | {r.get('sft_rows', '')} | " + " | ".join(
                _pct(r.get(f"kept_fraction_{lv}")) for lv in range(4))
                + f" | {_pct(r.get('kept_fraction_mean'))} | "
                + ", ".join(f"{k} {v}" for k, v in r.get("reasons", {}).items()) + " |")
    return "\n".join(out) + "\n"
