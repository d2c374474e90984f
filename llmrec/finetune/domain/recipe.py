"""The domain post-training recipe (RedOne's three stages) and its evaluation.

``llmrec finetune domain --config finetune/domain_movies.yaml`` runs the stages below; each
writes under ``out`` and a rerun skips what is already there and made from the same inputs
(a model folder made from other inputs is refused, as in ECPO), while a stage killed during
training resumes from its last checkpoint (``out/work/<model>``):

``cpt``   continued pre-training of the base model on domain documents (ML-1M plots and knowledge
          paragraphs, ReDial movie plots and validation dialogues, ml-latest-small tags) mixed
          with general self-replay text at ``cpt.general_ratio`` of the tokens; loss on all
          tokens (``models/cpt``);
``sft``   multi-task SFT on the suite's training rows, loss on the answers (``models/cpt_sft``),
          plus, as the variants ask, SFT of the base model on all rows (``models/sft``) and one
          SFT model per task (``models/task_<name>``, RedOne's single-task baseline);
``dpo``   preference pairs from the CPT+SFT model's own samples on training prompts with
          checkable answers (chosen: a right sample or the gold answer; rejected: a wrong
          sample), then DPO from the CPT+SFT model (``models/cpt_sft_dpo``);
``eval``  every variant on the held-out sets of the eight tasks (``eval/<variant>/<task>.json``,
          ``results.json``).

What is held out is described in :mod:`llmrec.finetune.domain.data`; the SFT and DPO rows are
checked for leakage before training (no held-out item, user or dialogue, no held-out plot text).
The CPT corpus contains catalogue text of every movie unless ``cpt.exclude_eval_items``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from llmrec.artifacts import StepCache
from llmrec.config import option, to_dict
from llmrec.errors import ConfigError, DataError
from llmrec.finetune.domain import tasks as T
from llmrec.finetune.domain.data import DomainDataConfig, Sources, load_sources
from llmrec.finetune.domain.general import split_general
from llmrec.finetune.domain.train import TrainConfig, cpt_defaults, dpo_defaults, sft_defaults
from llmrec.llm.config import LLMConfig

log = logging.getLogger(__name__)

STAGES = ("cpt", "sft", "dpo", "eval")
VARIANTS = ("base", "cpt", "sft", "cpt_sft", "cpt_sft_dpo", "per_task")
CPT_SOURCES = ("ml1m_plots", "ml1m_knowledge", "redial_plots", "redial_dialogues",
               "ml_latest_tags")


@dataclass
class CptConfig:
    """Continued pre-training: the corpus and its training."""

    sources: list[str] = option(list(CPT_SOURCES),
                                help=f"domain document sources ({', '.join(CPT_SOURCES)})")
    max_docs: int = option(0, help="at most this many domain documents (a seeded sample; 0: all)")
    general_ratio: float = option(0.25, help="share of CPT tokens that are general self-replay "
                                             "text (the replay documents are repeated to reach "
                                             "it); 0: domain text only")
    replay_samples: int = option(4, help="answers sampled from the base model per replay prompt")
    replay_temperature: float = option(0.7, help="temperature of the replay samples")
    exclude_eval_items: bool = option(False, help="leave the held-out movies' plots and "
                                                  "knowledge out of the corpus")
    train: TrainConfig = option(default_factory=cpt_defaults,
                                help="CPT training (default: full fine-tuning, lr 5e-5)")

    def __post_init__(self) -> None:
        bad = [s for s in self.sources if s not in CPT_SOURCES]
        if bad:
            raise ValueError(f"cpt.sources: unknown {bad}; choose from {', '.join(CPT_SOURCES)}")
        if not 0 <= self.general_ratio < 1:
            raise ValueError("cpt.general_ratio must be in [0, 1)")
        if self.replay_samples < 1:
            raise ValueError("cpt.replay_samples must be >= 1")


@dataclass
class SftStageConfig:
    """Multi-task SFT (and the single-task baselines)."""

    train: TrainConfig = option(default_factory=sft_defaults,
                                help="SFT training (default: LoRA r 8, lr 2e-4)")
    per_task_train: TrainConfig | None = option(
        None, help="settings of the one-model-per-task baselines (null: the same as train)")


@dataclass
class DpoStageConfig:
    """Preference pairs from the CPT+SFT model's samples, then DPO."""

    prompts_per_task: int = option(100, help="training prompts sampled per checkable task")
    samples: int = option(4, help="answers sampled per prompt")
    temperature: float = option(1.0, help="sampling temperature")
    max_new_tokens: int = option(32, help="tokens per sampled answer")
    train: TrainConfig = option(default_factory=dpo_defaults,
                                help="DPO training (default: LoRA, beta 0.1, lr 5e-7)")

    def __post_init__(self) -> None:
        if self.prompts_per_task < 1 or self.samples < 2:
            raise ValueError("dpo.prompts_per_task must be >= 1 and dpo.samples >= 2")


def _eval_llm() -> LLMConfig:
    return LLMConfig(repetition_penalty=1.1)


@dataclass
class DomainEvalConfig:
    """Which variants are evaluated, with which engine settings and judge."""

    variants: list[str] = option(["base", "cpt", "cpt_sft", "cpt_sft_dpo", "per_task"],
                                 help=f"variants ({', '.join(VARIANTS)}); per_task: one SFT "
                                      "model per task, each evaluated on its own task")
    llm: LLMConfig = option(default_factory=_eval_llm,
                            help="engine settings of every evaluated model (its model is set "
                                 "per variant)")
    judge: LLMConfig = option(default_factory=LLMConfig,
                              help="the reply task's judge (default: the packaged base model)")

    def __post_init__(self) -> None:
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad:
            raise ValueError(f"eval.variants: unknown {bad}; choose from {', '.join(VARIANTS)}")


@dataclass
class DomainConfig:
    """The domain post-training recipe."""

    model: str = option("smollm2", help="the base model: 'smollm2' (packaged) or a local folder")
    data: DomainDataConfig = option(default_factory=DomainDataConfig, help="data sources")
    suite: T.SuiteConfig = option(default_factory=T.SuiteConfig, help="the task suite")
    cpt: CptConfig = option(default_factory=CptConfig, help="continued pre-training")
    sft: SftStageConfig = option(default_factory=SftStageConfig, help="SFT")
    dpo: DpoStageConfig = option(default_factory=DpoStageConfig, help="DPO")
    eval: DomainEvalConfig = option(default_factory=DomainEvalConfig, help="evaluation")
    stages: list[str] = option(list(STAGES), help=f"stages to run ({', '.join(STAGES)})")
    seed: int = option(0, help="seed of the splits, sampling and training")
    out: str = option("runs/finetune/domain", help="output folder of every stage")

    def __post_init__(self) -> None:
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise ValueError(f"stages: unknown {bad}; choose from {', '.join(STAGES)}")


# --------------------------------------------------------------------------- corpus

def domain_documents(src: Sources, cfg: CptConfig, seed: int) -> list[dict[str, str]]:
    """The CPT domain documents, ``{"text", "source"}``, in a seeded order."""
    held = set(src.eval_items) if cfg.exclude_eval_items else set()
    docs: list[dict[str, str]] = []
    for i, m in sorted(src.movies.items()):
        if i in held:
            continue
        if "ml1m_plots" in cfg.sources and m.plot:
            docs.append({"source": "ml1m_plots",
                         "text": f"{m.title}. Genres: {', '.join(m.genres)}. Directed by "
                                 f"{m.director}. Starring {m.actors}.\n{m.plot}"})
        if "ml1m_knowledge" in cfg.sources and m.knowledge:
            docs.append({"source": "ml1m_knowledge", "text": m.knowledge})
    if "redial_plots" in cfg.sources:
        for v in src.redial_info.values():
            if v.get("plot"):
                docs.append({"source": "redial_plots",
                             "text": f"{v['name']}. Genres: {', '.join(v.get('genre') or [])}."
                                     f"\n{v['plot']}"})
    if "redial_dialogues" in cfg.sources:
        # the validation dialogues only: the test ones are the held-out set of tasks 5 and 7
        last: dict[str, dict[str, Any]] = {}
        for t in src.redial_train:
            prev = last.get(t["dialog_id"])
            if prev is None or len(t["context"]) > len(prev["context"]):
                last[t["dialog_id"]] = t
        for t in last.values():
            lines = T.speakers(t["context"] + [t["resp"]], last="assistant")
            docs.append({"source": "redial_dialogues", "text": "\n".join(
                f"{'Recommender' if r == 'assistant' else 'Seeker'}: {u}" for r, u in lines)})
    if "ml_latest_tags" in cfg.sources:
        for title, tags in sorted(src.tags.items()):
            if len(tags) >= 2:
                docs.append({"source": "ml_latest_tags",
                             "text": f"{title} was tagged by viewers as: {', '.join(tags)}."})
    rng = random.Random(f"domain-cpt-{seed}")
    rng.shuffle(docs)
    if cfg.max_docs:
        docs = docs[:cfg.max_docs]
    return docs


def mix_general(domain: list[dict[str, str]], replay: list[dict[str, str]], ratio: float,
                seed: int) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Domain documents plus replay documents repeated until they are ``ratio`` of the
    characters (a proxy for tokens), shuffled; and the mix's statistics."""
    d_chars = sum(len(x["text"]) for x in domain)
    r_chars = sum(len(x["text"]) for x in replay)
    out = list(domain)
    repeats = 0.0
    if ratio > 0 and replay and r_chars:
        want = ratio / (1 - ratio) * d_chars
        k = 0
        while sum(len(x["text"]) for x in out[len(domain):]) < want:
            out.append(replay[k % len(replay)])
            k += 1
        repeats = k / len(replay)
    random.Random(f"domain-mix-{seed}").shuffle(out)
    g_chars = sum(len(x["text"]) for x in out) - d_chars
    return out, {"domain_docs": len(domain), "replay_docs": len(replay),
                 "replay_repeats": round(repeats, 2),
                 "general_char_share": round(g_chars / max(1, g_chars + d_chars), 4)}


def leakage(train_rows: Sequence[dict[str, Any]], held_out: Sequence[dict[str, Any]]
            ) -> list[str]:
    """Problems of training rows against held-out examples: a shared item, user or dialogue key
    (tasks 1-7), or a held-out movie's plot text (its first 80 characters) inside a row."""
    problems = []
    train_keys = {r["key"] for r in train_rows}
    for ex in held_out:
        if ex["key"] in train_keys and not ex["key"].startswith("general:"):
            problems.append(f"{ex['task']}: held-out {ex['key']} is in the training rows")
    plots = {" ".join(ex["plot"].split())[:80] for ex in held_out if ex.get("plot")}
    plots.discard("")
    if plots:
        for r in train_rows:
            text = json.dumps(r, ensure_ascii=False)
            text = " ".join(text.split())
            for p in plots:
                if p in text:
                    problems.append(f"{r['task']} row {r['key']}: contains a held-out plot "
                                    f"({p[:40]!r}...)")
    return problems


# --------------------------------------------------------------------------- the pipeline

class Domain:
    """Runs the stages of a :class:`DomainConfig` (see the module docstring)."""

    def __init__(self, cfg: DomainConfig, *, sources: Sources | None = None,
                 quiet: bool | None = None, callbacks: Sequence[Any] = ()) -> None:
        """``sources`` replaces reading the data (tests); ``callbacks`` go to every trainer."""
        self.cfg = cfg
        self.out = Path(cfg.out)
        self._src = sources
        self._examples: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.quiet = quiet
        self.callbacks = list(callbacks)
        self.summary: dict[str, Any] = {}

    # -- paths and data ---------------------------------------------------------------------------
    def base_path(self) -> str:
        from llmrec.models import resolve_llm

        return str(resolve_llm(self.cfg.model))

    def model_path(self, name: str) -> str:
        return self.base_path() if name == "base" else str(self.out / "models" / name)

    @property
    def src(self) -> Sources:
        if self._src is None:
            self._src = load_sources(self.cfg.data, self.cfg.seed)
        return self._src

    def trainable_tasks(self) -> list[str]:
        return [t for t in self.cfg.suite.tasks if t in T.TRAINABLE]

    def examples(self, task: str, split: str) -> list[dict[str, Any]]:
        key = (task, split)
        if key not in self._examples:
            general = self.general()["held_out"] if task == "general" and split == "eval" else ()
            self._examples[key] = T.build_examples(task, self.src, split, self.cfg.suite,
                                                   self.cfg.seed, general)
        return self._examples[key]

    def _backend(self, path: str, llm: LLMConfig | None = None):
        from llmrec.llm import load_backend

        return load_backend(replace(llm or self.cfg.eval.llm, model=path, seed=self.cfg.seed))

    @staticmethod
    def _fingerprint(path: str) -> str:
        from llmrec.llm.identity import model_fingerprint

        return model_fingerprint(path)

    def general(self) -> dict[str, list[dict[str, str]]]:
        """Self-replay documents (sampled base answers to the replay prompts) and the held-out
        prompts with the base model's greedy answers; made once (``data/general.json``)."""
        from llmrec.artifacts import write_json_atomic
        from llmrec.llm.base import SamplingParams

        cfg = self.cfg
        path = self.out / "data" / "general.json"
        base = self.base_path()
        replay_p, held_p = split_general(cfg.seed, cfg.suite.general_held_out)
        step = StepCache(path, {"model": self._fingerprint(base), "replay": replay_p,
                                "held_out": held_p, "samples": cfg.cpt.replay_samples,
                                "temperature": cfg.cpt.replay_temperature,
                                "tokens": cfg.suite.general_tokens, "seed": cfg.seed,
                                "llm": to_dict(cfg.eval.llm)})
        if step.reuse(on_stale="redo", made="was generated by another model or settings"):
            return json.loads(path.read_text())
        log.info("general self-replay: %d prompts x %d samples, %d held-out references",
                 len(replay_p), cfg.cpt.replay_samples, len(held_p))
        be = self._backend(base)
        try:
            convs = [[{"role": "user", "content": p}] for p in replay_p]
            replay = []
            for s in range(cfg.cpt.replay_samples):
                sp = SamplingParams(temperature=cfg.cpt.replay_temperature,
                                    max_new_tokens=cfg.suite.general_tokens,
                                    repetition_penalty=1.1)
                gens = be.generate(convs, sp, seeds=[cfg.seed * 1000 + s] * len(convs))
                for c, g in zip(convs, gens):
                    if g.text.strip():
                        replay.append({"prompt": c[0]["content"], "answer": g.text.strip()})
            sp = SamplingParams(temperature=0.0, max_new_tokens=cfg.suite.general_tokens,
                                repetition_penalty=1.1)
            gens = be.generate([[{"role": "user", "content": p}] for p in held_p], sp,
                               seeds=[cfg.seed] * len(held_p))
            held = [{"prompt": p, "answer": g.text.strip()} for p, g in zip(held_p, gens)]
        finally:
            be.close()
        rec = {"replay": replay, "held_out": held, **step.fields()}
        write_json_atomic(path, rec)
        return rec

    def replay_documents(self) -> list[dict[str, str]]:
        """Replay answers rendered with the base model's chat template, so CPT keeps seeing
        the chat format the model answers in."""
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(self.base_path())
        docs = []
        for r in self.general()["replay"]:
            text = tok.apply_chat_template(
                [{"role": "user", "content": r["prompt"]},
                 {"role": "assistant", "content": r["answer"]}], tokenize=False)
            docs.append({"source": "general_replay", "text": text})
        return docs

    # -- training ---------------------------------------------------------------------------------
    def _train(self, kind: str, name: str, base: str, rows: list[dict[str, Any]],
               settings: TrainConfig, **provenance: Any) -> dict[str, Any]:
        """Train (or reuse) ``models/<name>``; refuses a folder trained from other inputs."""
        from llmrec.artifacts import atomic_dir, read_meta, write_meta
        from llmrec.finetune.domain.train import clear_work, train

        target = self.out / "models" / name
        if not (Path(base) / "config.json").is_file():
            raise ConfigError(f"{base} is missing; run the stage that trains it first "
                              f"(stages: {', '.join(STAGES)})")
        step = StepCache(target, {"kind": kind, "base": self._fingerprint(base), "rows": rows,
                                  "settings": settings, "seed": self.cfg.seed})
        if step.reuse(on_stale="refuse", made="was trained from other inputs",
                      hint="delete it or use another --out to retrain"):
            log.info("%s: already trained from the same inputs, skipping", target)
            summary = (read_meta(target) or {})["training"]
            return {**summary, "skipped": True}
        work = self.out / "work" / name
        log.info("%s %s on %d rows from %s (%s)", kind.upper(), name, len(rows), base,
                 settings.method)
        with atomic_dir(target) as tmp:
            summary = train(kind, base, rows, tmp, work, settings, self.cfg.seed,
                            quiet=self.quiet, callbacks=self.callbacks)
            write_meta(tmp, self.cfg, stage=name, base_model=str(base), training=summary,
                       **step.fields(), **provenance)
        clear_work(work)
        return {**summary, "skipped": False}

    def stage_cpt(self) -> None:
        cfg = self.cfg
        domain = domain_documents(self.src, cfg.cpt, cfg.seed)
        replay = self.replay_documents() if cfg.cpt.general_ratio > 0 else []
        docs, stats = mix_general(domain, replay, cfg.cpt.general_ratio, cfg.seed)
        by_source: dict[str, int] = {}
        for d in domain:
            by_source[d["source"]] = by_source.get(d["source"], 0) + 1
        stats["by_source"] = by_source
        summary = self._train("cpt", "cpt", self.base_path(), [{"text": d["text"]} for d in docs],
                              cfg.cpt.train, corpus=stats)
        self.summary["cpt"] = {**stats, **summary}

    def sft_rows(self, tasks: Sequence[str]) -> list[dict[str, Any]]:
        rows = [T.sft_row(ex) for t in tasks for ex in self.examples(t, "train")]
        random.Random(f"domain-sft-{self.cfg.seed}").shuffle(rows)
        return rows

    def held_out(self) -> list[dict[str, Any]]:
        return [ex for t in self.cfg.suite.tasks if t != "general"
                for ex in self.examples(t, "eval")]

    def check_leakage(self, rows: Sequence[dict[str, Any]]) -> None:
        problems = leakage(rows, self.held_out())
        if problems:
            raise DataError(f"{len(problems)} training rows leak held-out data, e.g. "
                            f"{problems[0]}; check data.eval_items / eval_users")

    def stage_sft(self) -> None:
        cfg = self.cfg
        tasks = self.trainable_tasks()
        if not tasks:
            raise ConfigError("suite.tasks has no trainable task; SFT has nothing to learn")
        rows = self.sft_rows(tasks)
        self.check_leakage(rows)
        variants = cfg.eval.variants
        out: dict[str, Any] = {}
        if {"cpt_sft", "cpt_sft_dpo"} & set(variants):
            out["cpt_sft"] = self._train("sft", "cpt_sft", self.model_path("cpt"), rows,
                                         cfg.sft.train, tasks=tasks)
        if "sft" in variants:
            out["sft"] = self._train("sft", "sft", self.base_path(), rows, cfg.sft.train,
                                     tasks=tasks)
        if "per_task" in variants:
            settings = cfg.sft.per_task_train or cfg.sft.train
            for t in tasks:
                out[f"task_{t}"] = self._train("sft", f"task_{t}", self.base_path(),
                                               self.sft_rows([t]), settings, tasks=[t])
        self.summary["sft"] = out

    def dpo_pairs(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Pairs from the CPT+SFT model's samples (cached in ``data/dpo_pairs.json``)."""
        from llmrec.artifacts import write_json_atomic
        from llmrec.llm.base import SamplingParams

        cfg, d = self.cfg, self.cfg.dpo
        sft = self.model_path("cpt_sft")
        if not (Path(sft) / "config.json").is_file():
            raise ConfigError(f"{sft} is missing; run the sft stage first")
        tasks = [t for t in self.cfg.suite.tasks if t in T.CHECKABLE]
        prompts = [ex for t in tasks for ex in self.examples(t, "train")[:d.prompts_per_task]]
        path = self.out / "data" / "dpo_pairs.json"
        step = StepCache(path, {"model": self._fingerprint(sft), "prompts": prompts,
                                "samples": d.samples, "temperature": d.temperature,
                                "tokens": d.max_new_tokens, "seed": cfg.seed})
        if step.reuse(on_stale="redo", made="was sampled from another model or prompts"):
            rec = json.loads(path.read_text())
            return rec["pairs"], rec["stats"]
        be = self._backend(sft)
        try:
            sp = SamplingParams(temperature=d.temperature, max_new_tokens=d.max_new_tokens)
            samples = [[] for _ in prompts]
            for s in range(d.samples):
                gens = be.generate([ex["prompt"] for ex in prompts], sp,
                                   seeds=[cfg.seed * 7919 + 31 * k + s
                                          for k in range(len(prompts))])
                for k, g in enumerate(gens):
                    samples[k].append(g.text.strip())
        finally:
            be.close()
        pairs, stats = [], {t: {"prompts": 0, "pairs": 0, "right_samples": 0,
                                "wrong_samples": 0} for t in tasks}
        for ex, outs in zip(prompts, samples):
            st = stats[ex["task"]]
            st["prompts"] += 1
            verdicts = [T.check_answer(ex, o) for o in outs]
            st["right_samples"] += verdicts.count(True)
            st["wrong_samples"] += verdicts.count(False)
            wrong = [o for o, v in zip(outs, verdicts) if v is False and o]
            if not wrong:
                continue
            right = [o for o, v in zip(outs, verdicts) if v is True]
            chosen = right[0] if right else ex["completion"]
            pairs.append({"prompt": ex["prompt"], "chosen": [{"role": "assistant",
                                                              "content": chosen}],
                          "rejected": [{"role": "assistant", "content": wrong[0]}],
                          "task": ex["task"], "key": ex["key"],
                          "chosen_is_sample": bool(right)})
            st["pairs"] += 1
        write_json_atomic(path, {"pairs": pairs, "stats": stats, **step.fields()})
        return pairs, stats

    def stage_dpo(self) -> None:
        from llmrec.llm.tuning import count_tokens

        pairs, stats = self.dpo_pairs()
        if not pairs:
            log.warning("dpo: no pair (no wrong sample among %s); cpt_sft_dpo is not trained",
                        stats)
            self.summary["dpo"] = {"pairs": 0, "trained": False, "stats": stats}
            return
        self.check_leakage(pairs)
        sft = self.model_path("cpt_sft")
        lengths = count_tokens(sft, pairs, ["chosen", "rejected"])
        kept = [p for p, n in zip(pairs, lengths) if n <= self.cfg.dpo.train.max_length]
        summary = self._train("dpo", "cpt_sft_dpo", sft, kept, self.cfg.dpo.train,
                              pair_stats=stats, dropped_long_pairs=len(pairs) - len(kept))
        self.summary["dpo"] = {"pairs": len(kept), "trained": True, "stats": stats, **summary}

    # -- evaluation -------------------------------------------------------------------------------
    def variant_models(self, variant: str) -> list[tuple[str, list[str]]]:
        """(model name, tasks it is evaluated on) for a variant."""
        tasks = list(self.cfg.suite.tasks)
        if variant == "per_task":
            return [(f"task_{t}", [t]) for t in self.trainable_tasks()]
        return [(variant, tasks)]

    def stage_eval(self) -> None:
        from llmrec.artifacts import write_json_atomic

        cfg = self.cfg
        results: dict[str, dict[str, Any]] = {}
        base_replies: list[str] | None = None
        order = ["base"] + [v for v in cfg.eval.variants if v != "base"]
        if "reply" in cfg.suite.tasks and "base" not in cfg.eval.variants:
            log.info("eval: the reply task compares with the base model, which is evaluated "
                     "too")
        judge = None
        try:
            for variant in order:
                for name, tasks in self.variant_models(variant):
                    path = self.model_path(name)
                    if not (Path(path) / "config.json").is_file():
                        log.warning("eval: %s has no model at %s (not trained); skipped", name,
                                    path)
                        continue
                    if "reply" in tasks and name != "base" and judge is None:
                        judge = self._backend(cfg.eval.judge.model, cfg.eval.judge)
                    res = self._eval_model(name, path, tasks, base_replies, judge)
                    if name == "base":
                        base_replies = res.get("reply", {}).get("_outputs")
                    for t, r in res.items():
                        results.setdefault(variant, {})[t] = {k: v for k, v in r.items()
                                                              if k != "_outputs"}
        finally:
            if judge is not None:
                judge.close()
        results = {v: r for v, r in results.items() if v in cfg.eval.variants}
        write_json_atomic(self.out / "results.json", results)
        self.summary["eval"] = results

    def _eval_model(self, name: str, path: str, tasks: Sequence[str],
                    base_replies: list[str] | None, judge) -> dict[str, dict[str, Any]]:
        from llmrec.artifacts import write_json_atomic
        from llmrec.progress import progress

        cfg = self.cfg
        fp = self._fingerprint(path)
        judge_fp = self._fingerprint(judge.path) if judge is not None and \
            getattr(judge, "path", None) else None
        out: dict[str, dict[str, Any]] = {}
        todo = []
        for t in tasks:
            f = self.out / "eval" / name / f"{t}.json"
            inputs = {"model": fp, "examples": self.examples(t, "eval"),
                      "suite": cfg.suite, "llm": to_dict(cfg.eval.llm), "seed": cfg.seed}
            if t == "reply" and name != "base":
                inputs.update(base=base_replies, judge=judge_fp)
            step = StepCache(f, inputs)
            if step.reuse(on_stale="redo", made="was measured on another model or set"):
                out[t] = json.loads(f.read_text())
            else:
                todo.append((t, f, step))
        if not todo:
            return out
        be = self._backend(path)
        try:
            for t, f, step in progress(todo, desc=f"eval {name}", unit="task"):
                t0 = time.time()
                ex = self.examples(t, "eval")
                metrics, outputs = T.evaluate(t, be, ex, cfg.suite,
                                              base_replies=None if name == "base" else
                                              base_replies, judge=judge, seed=cfg.seed)
                rec = {**metrics, "seconds": round(time.time() - t0, 2),
                       "_outputs": outputs if t == "reply" else None, **step.fields()}
                write_json_atomic(f, rec)
                out[t] = rec
                log.info("eval %s %s: %s", name, t, {k: v for k, v in metrics.items()})
        finally:
            be.close()
        return out

    # -- all --------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from llmrec.artifacts import write_json_atomic

        self.out.mkdir(parents=True, exist_ok=True)
        started = time.time()
        for stage in STAGES:
            if stage in self.cfg.stages:
                t0 = time.time()
                log.info("== domain stage %s", stage)
                getattr(self, f"stage_{stage}")()
                self.summary.setdefault("seconds", {})[stage] = round(time.time() - t0, 1)
        self.summary["total_seconds"] = round(time.time() - started, 1)
        write_json_atomic(self.out / "summary.json", self.summary)
        return self.summary
