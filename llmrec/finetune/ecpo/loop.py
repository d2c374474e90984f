"""ECPO: SGPT warm-up, forward expectation confirmation, backward rewriting, turn-level DPO.

One recipe runs the whole loop (``llmrec finetune ecpo --config finetune/<recipe>.yaml``); each
stage writes its artifact under ``out`` and a rerun skips what is already there (and refuses an
artifact built from other data), so a killed run resumes at the stage it stopped in (the
simulator runs resume dialogue by dialogue):

``expert``   the expert agent talks to the AILO simulator on training tasks (``runs/expert``);
``sgpt``     every agent step of the expert's successful dialogues becomes one SFT example
             (the student's prompt -> the expert's action); LoRA SFT (``models/sgpt``: the merged
             model, its adapter under ``adapter/``);
``forward``  the SGPT agent runs the training tasks; each turn's (context, response, expression
             rating, reason) is logged (``forward_ec.jsonl``);
``rewrite``  turns rated 0 < r < lambda are rewritten by the rewriter LLM from the context, the
             response and the rater's reason (``pairs/ec.jsonl``); the ablation rewrites without
             the reason (``pairs/noec.jsonl``); a rewrite is kept only if it is a valid action of
             the same kind that differs from the original;
``dpo``      DPO on the turn-level pairs (prompt = context, chosen = rewrite, rejected =
             original) with a new LoRA on top of the SGPT model, which is also the reference
             (``models/ecpo``, ``models/ecpo_noec``);
``eval``     base, SGPT, ECPO and ECPO-without-EC on held-out tasks: SR, Recall@5, mean
             expression rating, and WR of each against the base agent (``eval/``,
             ``results.json``, optionally appended to a results file).

The training tasks come from training users and the evaluation tasks from test/valid users, so no
evaluated user was seen in training.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from llmrec.artifacts import StepCache
from llmrec.config import option, to_dict
from llmrec.crs.actions import parse_action
from llmrec.crs.agent import AgentConfig
from llmrec.crs.catalog import CatalogConfig
from llmrec.crs.decide import DecisionMode
from llmrec.crs.simulator import SimulatorConfig
from llmrec.crs.tasks import TaskConfig
from llmrec.crs.transcript import AgentTurn, Transcript, as_transcript
from llmrec.errors import ConfigError
from llmrec.finetune.ecpo.expert import ExpertConfig
from llmrec.llm.tuning import LoraDPOConfig, LoraSFTConfig
from llmrec.llm.config import LLMConfig

log = logging.getLogger(__name__)

STAGES = ("expert", "sgpt", "forward", "rewrite", "dpo", "eval")
AGENTS = ("base", "sgpt", "ecpo", "ecpo_noec")


def _train_tasks() -> TaskConfig:
    return TaskConfig(user_splits=["train"], n_tasks=200)


def _eval_tasks() -> TaskConfig:
    return TaskConfig(user_splits=["test", "valid"], n_tasks=100)


def _sgpt_lora() -> LoraSFTConfig:
    return LoraSFTConfig(epochs=2.0, learning_rate=2e-4, batch_size=8, max_length=1024)


@dataclass
class SgptConfig:
    """SGPT: SFT of a LoRA adapter on the expert's steps."""

    only_successful: bool = option(True, help="use only the expert's successful dialogues "
                                              "(SR true), as SGPT prescribes")
    lora: LoraSFTConfig = option(default_factory=_sgpt_lora,
                                 help="LoRA SFT settings (loss on the action tokens only)")


@dataclass
class RewriteConfig:
    """Backward expectation derivation: the rewriter and which turns it rewrites."""

    llm: LLMConfig = option(default_factory=LLMConfig, help="the rewriter's backend and model")
    prompt: str = option("rewrite", help="template: a name under prompts/finetune/ or a file")
    lam: int = option(4, help="lambda: turns with expression rating 0 < r < lambda are "
                              "rewritten (2..5)")
    mode: Literal["argument", "free"] = option(
        "argument", help="argument: the rewriter writes only the new argument of the same "
                         "action kind; free: it writes the whole action Kind[...]")
    keep_kind: bool = option(True, help="free mode: keep a rewrite only if its action kind is "
                                        "the original's (the strategy is kept)")
    catalog_titles: bool = option(True, help="keep a Recommend rewrite only if every title it "
                                             "names is a catalog title")
    attempts: int = option(2, help="rewrites sampled per turn; the first valid one is kept")
    max_new_tokens: int = option(48, help="tokens per rewrite")
    history_turns: int = option(6, help="dialogue turns shown to the rewriter")

    def __post_init__(self) -> None:
        if not 2 <= self.lam <= 5:
            raise ValueError("rewrite.lam (lambda) must be in 2..5")
        if self.attempts < 1:
            raise ValueError("rewrite.attempts must be >= 1")


@dataclass
class EcpoEvalConfig:
    """Held-out evaluation of the agents."""

    agents: list[str] = option(list(AGENTS), help=f"agents to evaluate ({', '.join(AGENTS)})")
    judge: LLMConfig = option(default_factory=LLMConfig, help="the WR judge's backend and model")
    judge_prompt: str = option("judge", help="judge template (prompts/crs/)")
    judge_criteria: list[str] = option(["flexibility", "coherence", "guidance", "overall"],
                                       help="criteria the judge compares")
    judge_decisions: DecisionMode = option("auto", help="how the judge's verdicts are chosen")
    record: str | None = option(None, help="append one JSON line per number to this file "
                                           "(e.g. bench/results/ecpo.jsonl)")
    benchmark: str = option("ecpo", help="the `benchmark` key of recorded lines")
    show: int = option(1, help="transcripts of each agent printed at the end")

    def __post_init__(self) -> None:
        bad = [a for a in self.agents if a not in AGENTS]
        if bad:
            raise ValueError(f"eval.agents: unknown {bad}; choose from {', '.join(AGENTS)}")


@dataclass
class EcpoConfig:
    """The ECPO recipe: data, the agent to tune, the simulator, and every stage's settings."""

    tasks: TaskConfig = option(default_factory=_train_tasks,
                               help="training tasks (training users) for the expert and the "
                                    "forward runs")
    eval_tasks: TaskConfig = option(default_factory=_eval_tasks,
                                    help="held-out tasks (test/valid users) for the evaluation")
    catalog: CatalogConfig = option(default_factory=CatalogConfig, help="catalog and search")
    agent: AgentConfig = option(default_factory=AgentConfig,
                                help="the base agent (its llm.model is the model tuned)")
    simulator: SimulatorConfig = option(default_factory=SimulatorConfig,
                                        help="the AILO user simulator and its raters")
    max_rounds: int = option(5, help="most agent turns per dialogue")
    in_flight: int = option(32, help="dialogues advanced together")
    seed: int = option(0, help="base seed of every LLM call")
    expert: ExpertConfig = option(default_factory=ExpertConfig, help="SGPT's expert agent")
    sgpt: SgptConfig = option(default_factory=SgptConfig, help="SGPT (SFT) settings")
    rewrite: RewriteConfig = option(default_factory=RewriteConfig, help="the rewriter")
    dpo: LoraDPOConfig = option(default_factory=LoraDPOConfig, help="DPO settings")
    without_ec: bool = option(True, help="also run the ablation: rewrite without the rater's "
                                         "reason, DPO -> ecpo_noec")
    eval: EcpoEvalConfig = option(default_factory=EcpoEvalConfig, help="held-out evaluation")
    stages: list[str] = option(list(STAGES), help=f"stages to run ({', '.join(STAGES)}); a "
                                                  "stage needs the artifacts of the ones before")
    out: str = option("runs/finetune/ecpo", help="output folder of every stage")

    def __post_init__(self) -> None:
        bad = [s for s in self.stages if s not in STAGES]
        if bad:
            raise ValueError(f"stages: unknown {bad}; choose from {', '.join(STAGES)}")
        if self.max_rounds < 1 or self.in_flight < 1:
            raise ValueError("max_rounds and in_flight must be >= 1")


# --------------------------------------------------------------------------- data of the stages

def sgpt_rows(records: Sequence[Transcript | dict[str, Any]], only_successful: bool = True
              ) -> list[dict[str, Any]]:
    """One SFT row per agent step of the (successful) dialogues: the student's prompt at that
    step -> the expert's action. Steps that did not parse are skipped."""
    rows = []
    for rec in map(as_transcript, records):
        if only_successful and not rec.success:
            continue
        for t in rec.agent_turns():
            for step in t.steps:
                if step.prompt is None:
                    raise ConfigError(f"{rec.task_id}: the transcripts hold no prompts; the "
                                      "expert run needs save_prompts=true")
                if not parse_action(step.output).ok:
                    continue
                rows.append({"prompt": step.prompt,
                             "completion": [{"role": "assistant", "content": step.output}],
                             "task_id": rec.task_id, "round": t.round})
    return rows


def forward_log(records: Sequence[Transcript | dict[str, Any]]) -> list[dict[str, Any]]:
    """Forward expectation confirmation: (context, response, expression rating, reason) per
    agent turn. The context is the prompt of the turn's last step (the one that wrote the
    user-visible action), the response that step's output."""
    out = []
    for rec in map(as_transcript, records):
        dialogue: list[dict[str, str]] = []
        for t in rec.turns:
            if isinstance(t, AgentTurn):
                expr = t.ratings.get("expression")
                if t.steps and t.steps[-1].prompt is not None:
                    last = t.steps[-1]
                    out.append({
                        "task_id": rec.task_id, "round": t.round, "ok": t.ok,
                        "kind": t.action, "error": t.error,
                        "context": last.prompt, "response": last.output,
                        "action": t.action_text, "dialogue": list(dialogue),
                        "results": [r for sr in t.searches for r in sr.results],
                        "rating": expr.rating if expr else None,
                        "details": (expr.details or "") if expr else "",
                        "reason": expr.reason if expr else "", "success": rec.success})
                dialogue.append({"role": "assistant", "text": t.text or t.raw})
            else:
                dialogue.append({"role": "user", "text": t.text})
    return out


def rewrite_candidates(turns: Sequence[dict[str, Any]], lam: int) -> list[dict[str, Any]]:
    """Turns to rewrite: valid, rated, 0 < r < lambda (turns rated 0 or not rated are dropped)."""
    return [t for t in turns if t["ok"] and t["kind"] != "Search" and t["rating"] is not None
            and 0 < t["rating"] < lam]


def check_rewrite(original: str, rewrite: str, kind: str, keep_kind: bool = True,
                  max_titles: int = 5, known_title: Callable[[str], bool] | None = None
                  ) -> str | None:
    """Why a rewrite is rejected (None: kept): it must parse as one action, be user-visible, keep
    the kind when asked, name only catalog titles when it recommends (``known_title``), and
    differ from the original."""
    p = parse_action(rewrite, max_titles=max_titles)
    if not p.ok:
        return f"invalid action: {p.error}"
    if p.action.kind == "Search":
        return "not a user-visible action"
    if keep_kind and p.action.kind != kind:
        return f"changed the action kind ({kind} -> {p.action.kind})"
    if known_title is not None and p.action.kind == "Recommend":
        unknown = [t for t in p.action.titles if not known_title(t)]
        if unknown:
            return f"recommends titles not in the catalog: {unknown[0][:60]!r}"
    o = parse_action(original, max_titles=max_titles)
    norm = " ".join(p.action.render().lower().split())
    if o.ok and norm == " ".join(o.action.render().lower().split()):
        return "same as the original"
    return None


# --------------------------------------------------------------------------- the pipeline

@dataclass
class _Ctx:
    cfg: EcpoConfig
    out: Path
    catalog: Any = None
    train: list = field(default_factory=list)
    held_out: list = field(default_factory=list)
    backends: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        for b in {id(b): b for b in self.backends.values()}.values():
            b.close()
        self.backends.clear()


class Ecpo:
    """Runs the stages of an :class:`EcpoConfig` (see the module docstring)."""

    def __init__(self, cfg: EcpoConfig, *, catalog: Any = None, train: Sequence[Any] = (),
                 held_out: Sequence[Any] = (), backend_factory: Any = None) -> None:
        """``catalog``/``train``/``held_out`` and ``backend_factory`` (LLMConfig -> backend)
        replace loading from the configs (tests, notebooks that hold them already)."""
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.ctx = _Ctx(cfg, self.out)
        if catalog is not None:
            self.ctx.catalog, self.ctx.train, self.ctx.held_out = catalog, list(train), \
                list(held_out)
        self._factory = backend_factory

    # -- paths -------------------------------------------------------------------------------------
    def model_path(self, agent: str) -> str:
        if agent == "base":
            from llmrec.models import resolve_llm

            return str(resolve_llm(self.cfg.agent.llm.model))
        return str(self.out / "models" / agent)

    # -- shared resources --------------------------------------------------------------------------
    def _load_data(self) -> None:
        if self.ctx.catalog is not None:
            return
        from llmrec.crs.catalog import Catalog
        from llmrec.crs.tasks import build_tasks
        from llmrec.data.loaders import load_data

        cfg = self.cfg
        for name, tc in (("tasks", cfg.tasks), ("eval_tasks", cfg.eval_tasks)):
            if tc.domain != cfg.tasks.domain or to_dict(tc.data) != to_dict(cfg.tasks.data):
                raise ConfigError("tasks and eval_tasks must use the same domain and data "
                                  f"(differs in {name}); they share one catalog")
        data = load_data(cfg.tasks.data)
        cat_data = load_data(cfg.tasks.catalog_data) if cfg.tasks.catalog_data else data
        self.ctx.catalog = Catalog.from_recdata(cat_data, cfg.catalog)
        self.ctx.train = build_tasks(data, self.ctx.catalog, cfg.tasks)
        self.ctx.held_out = build_tasks(data, self.ctx.catalog, cfg.eval_tasks)
        train_users = {t.user_id for t in self.ctx.train}
        shared = train_users & {t.user_id for t in self.ctx.held_out}
        if shared and cfg.tasks.domain == "movielens":
            raise ConfigError(f"{len(shared)} users have both training and held-out tasks; give "
                              "tasks.user_splits and eval_tasks.user_splits disjoint parts")

    def _backend(self, llm: LLMConfig):
        """Load a backend once per distinct config."""
        from llmrec.llm import load_backend

        key = json.dumps(to_dict(llm), sort_keys=True)
        if key not in self.ctx.backends:
            self.ctx.backends[key] = (self._factory or load_backend)(llm)
        return self.ctx.backends[key]

    def _drop_backend(self, llm: LLMConfig) -> None:
        key = json.dumps(to_dict(llm), sort_keys=True)
        b = self.ctx.backends.pop(key, None)
        if b is not None and all(b is not o for o in self.ctx.backends.values()):
            b.close()

    def _agent_llm(self, agent: str) -> LLMConfig:
        return replace(self.cfg.agent.llm, model=self.model_path(agent))

    def _simulate(self, name: str, agent_label: str, tasks, *, agent_backend=None,
                  agent_llm: LLMConfig | None = None, folder: str = "runs"):
        from llmrec.crs.engine import Engine, SimulationConfig

        cfg = self.cfg
        agent_cfg = replace(cfg.agent, label=agent_label,
                            llm=agent_llm if agent_llm is not None else cfg.agent.llm)
        sim_cfg = SimulationConfig(tasks=cfg.tasks if folder == "runs" else cfg.eval_tasks,
                                   catalog=cfg.catalog, agent=agent_cfg,
                                   simulator=cfg.simulator, max_rounds=cfg.max_rounds,
                                   in_flight=cfg.in_flight, seed=cfg.seed,
                                   out=str(self.out / folder / name), resume=True,
                                   save_prompts=True, show=0)
        backends = {"agent": agent_backend if agent_backend is not None
                    else self._backend(agent_cfg.llm),
                    "simulator": self._backend(cfg.simulator.llm)}
        engine = Engine(sim_cfg, self.ctx.catalog, tasks, backends=backends)
        log.info("simulating %d dialogues: %s", len(tasks), sim_cfg.out)
        res = engine.run()
        if res.abandoned:
            from llmrec.errors import LlmrecError

            first = next(iter(res.abandoned.items()))
            raise LlmrecError(f"{sim_cfg.out}: {len(res.abandoned)} dialogue(s) were dropped "
                              f"after backend failures (e.g. {first[0]}: {first[1]}); rerun the "
                              f"same command to redo them (finished stages are kept)")
        return res

    # -- stages ------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from llmrec.artifacts import write_json_atomic

        self.out.mkdir(parents=True, exist_ok=True)
        started = time.time()
        try:
            self._load_data()
            for stage in STAGES:
                if stage in self.cfg.stages:
                    t0 = time.time()
                    log.info("== ECPO stage %s", stage)
                    getattr(self, f"stage_{stage}")()
                    self.ctx.summary.setdefault("seconds", {})[stage] = round(time.time() - t0, 1)
        finally:
            self.ctx.close()
        self.ctx.summary["total_seconds"] = round(time.time() - started, 1)
        write_json_atomic(self.out / "summary.json", self.ctx.summary)
        return self.ctx.summary

    def stage_expert(self) -> None:
        from llmrec.finetune.ecpo.expert import ScriptedExpert

        cfg = self.cfg
        if cfg.expert.kind == "scripted":
            res = self._simulate("expert", "expert", self.ctx.train,
                                 agent_backend=ScriptedExpert(cfg.expert, cfg.agent.max_titles))
        else:
            res = self._simulate("expert", "expert", self.ctx.train, agent_llm=cfg.expert.llm)
        m = res.metrics
        self.ctx.summary["expert"] = {k: m.get(k) for k in ("n_tasks", "SR", "Recall@5",
                                                            "avg_expression", "avg_rounds")}
        log.info("expert: SR %.3f on %d training tasks", m["SR"] or 0.0, m["n_tasks"])

    def _records(self, folder: str, name: str) -> list[Transcript]:
        from llmrec.crs.transcript import TranscriptStore

        recs = TranscriptStore(self.out / folder / name).transcripts()
        if not recs:
            raise ConfigError(f"no transcripts in {self.out / folder / name}; run the stage "
                              f"that writes them first (stages: {', '.join(STAGES)})")
        return recs

    def _fit_rows(self, rows: list[dict[str, Any]], keys: Sequence[str], max_length: int,
                  model: str) -> tuple[list[dict[str, Any]], int]:
        from llmrec.llm.tuning import count_tokens

        lengths = count_tokens(model, rows, keys)
        kept = [r for r, n in zip(rows, lengths) if n <= max_length]
        if len(kept) < len(rows):
            log.warning("dropping %d of %d rows longer than %d tokens (raise max_length to keep "
                        "them)", len(rows) - len(kept), len(rows), max_length)
        return kept, len(rows) - len(kept)

    def _train(self, kind: str, name: str, rows: list[dict[str, Any]], base: str,
               settings: Any, **provenance: Any) -> dict[str, Any]:
        """Train (or reuse) ``models/<name>``: refuses a folder trained on other data."""
        from llmrec.artifacts import atomic_dir, read_meta, write_meta
        from llmrec.llm.tuning import dpo_lora, sft_lora

        target = self.out / "models" / name
        data = [{k: r[k] for k in r if k not in ("task_id", "round")} for r in rows]
        step = StepCache(target, {"data": data, "settings": settings})
        hashes = step.input_fingerprints
        if step.reuse(on_stale="refuse", made="was trained on other data or settings",
                      hint="delete it or use another --out to retrain"):
            log.info("%s: already trained on the same data (%s), reusing", target,
                     hashes["data"])
            return (read_meta(target) or {})["training"]
        (self.out / "models").mkdir(parents=True, exist_ok=True)
        log.info("%s of %s on %d rows (base %s)", kind.upper(), name, len(rows), base)
        with atomic_dir(target) as tmp:
            fn = sft_lora if kind == "sft" else dpo_lora
            summary = fn(base, rows, tmp, settings)
            (Path(tmp) / "curve.jsonl").write_text(
                "".join(json.dumps(c) + "\n" for c in summary["curve"]))
            write_meta(tmp, self.cfg, stage=name, base_model=str(base),
                       data_hash=hashes["data"], settings_hash=hashes["settings"],
                       training=summary, **step.fields(),
                       load=("PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("
                             f"{str(base)!r}), '<this folder>/adapter'); or load this folder "
                             "directly (adapter merged)"), **provenance)
        return summary

    def stage_sgpt(self) -> None:
        cfg = self.cfg
        records = self._records("runs", "expert")
        rows = sgpt_rows(records, cfg.sgpt.only_successful)
        n_ok = sum(1 for r in records if r.success)
        if not rows:
            raise ConfigError(
                f"the expert succeeded on {n_ok} of {len(records)} training tasks, so SGPT has "
                "no example; raise tasks.n_tasks or max_rounds, or set "
                "sgpt.only_successful=false")
        base = self.model_path("base")
        rows, dropped = self._fit_rows(rows, ["completion"], cfg.sgpt.lora.max_length, base)
        summary = self._train("sft", "sgpt", rows, base, cfg.sgpt.lora,
                              expert_dialogues=len(records), expert_successes=n_ok,
                              dropped_long_rows=dropped)
        self.ctx.summary["sgpt"] = {"rows": len(rows), "dropped_long_rows": dropped,
                                    "expert_successes": n_ok,
                                    **{k: v for k, v in summary.items() if k != "curve"}}

    def stage_forward(self) -> None:
        from llmrec.artifacts import atomic_file

        res = self._simulate("forward", "sgpt", self.ctx.train, agent_llm=self._agent_llm("sgpt"))
        self._drop_backend(self._agent_llm("sgpt"))
        turns = forward_log(res.records)
        with atomic_file(self.out / "forward_ec.jsonl", "w") as fh:
            for t in turns:
                fh.write(json.dumps(t, ensure_ascii=False) + "\n")
        rated = [t["rating"] for t in turns if t["rating"] is not None]
        self.ctx.summary["forward"] = {
            "turns": len(turns), "failed_turns": sum(1 for t in turns if not t["ok"]),
            "rated_turns": len(rated),
            "rating_histogram": {str(r): rated.count(r) for r in sorted(set(rated))},
            "SR": res.metrics.get("SR")}

    def _forward_turns(self) -> list[dict[str, Any]]:
        path = self.out / "forward_ec.jsonl"
        if not path.is_file():
            raise ConfigError(f"{path} is missing; run the forward stage first")
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def variants(self) -> list[str]:
        return ["ec", "noec"] if self.cfg.without_ec else ["ec"]

    def stage_rewrite(self) -> None:
        from llmrec.crs.engine import call_seed
        from llmrec.crs.prompts import load_prompt

        cfg, rw = self.cfg, self.cfg.rewrite
        prompt = load_prompt(rw.prompt, required=("user",), folder="finetune")
        cands = rewrite_candidates(self._forward_turns(), rw.lam)
        backend = self._backend(rw.llm)
        sampling = rw.llm.sampling(max_new_tokens=rw.max_new_tokens)
        pairs_dir = self.out / "pairs"
        stats_all = {}
        catalog = self.ctx.catalog

        def known(title: str) -> bool:
            return catalog.resolve(title) is not None

        known = known if rw.catalog_titles else None  # type: ignore[assignment]
        for variant in self.variants():
            with_reason = variant == "ec"
            path = pairs_dir / f"{variant}.jsonl"
            stats_path = pairs_dir / f"{variant}.stats.json"
            step = StepCache(path, {"candidates": cands, "rewrite": rw, "prompt": prompt.hash,
                                    "variant": variant, "seed": cfg.seed}, record=stats_path)
            if step.reuse(on_stale="redo", made="was rewritten from other turns or settings"):
                log.info("%s: already written for these turns, reusing", path)
                stats_all[variant] = json.loads(stats_path.read_text())
                continue
            pending = list(range(len(cands)))
            kept: dict[int, dict[str, Any]] = {}
            rejects: dict[str, int] = {}
            for attempt in range(rw.attempts):
                if not pending:
                    break
                convs = [self._rewrite_messages(prompt, cands[i], with_reason) for i in pending]
                seeds = [call_seed(cfg.seed, cands[i]["task_id"], cands[i]["round"], "rewrite",
                                   variant, attempt) for i in pending]
                gens = backend.generate(convs, sampling, seeds=seeds)
                still = []
                for i, g in zip(pending, gens):
                    c = cands[i]
                    text = g.text.strip()
                    new = f"{c['kind']}[{text}]" if rw.mode == "argument" else text
                    why = check_rewrite(c["response"], new, c["kind"],
                                        keep_kind=rw.keep_kind or rw.mode == "argument",
                                        max_titles=cfg.agent.max_titles, known_title=known)
                    if why is None:
                        kept[i] = {"prompt": c["context"],
                                   "chosen": [{"role": "assistant", "content": new}],
                                   "rejected": [{"role": "assistant", "content": c["response"]}],
                                   "task_id": c["task_id"], "round": c["round"],
                                   "rating": c["rating"], "reason": c["reason"],
                                   "details": c["details"], "attempt": attempt}
                    else:
                        rejects[why.split(":")[0]] = rejects.get(why.split(":")[0], 0) + 1
                        still.append(i)
                pending = still
            pairs = [kept[i] for i in sorted(kept)]
            pairs_dir.mkdir(parents=True, exist_ok=True)
            from llmrec.artifacts import atomic_file

            with atomic_file(path, "w") as fh:
                for p in pairs:
                    fh.write(json.dumps(p, ensure_ascii=False) + "\n")
            stats_all[variant] = step.record(**{
                "candidates": len(cands), "pairs": len(pairs), "rejected_attempts": rejects,
                "lambda": rw.lam, "with_reason": with_reason, "prompt": prompt.hash})
            log.info("rewrite (%s): %d pairs from %d candidate turns", variant, len(pairs),
                     len(cands))
        self.ctx.summary["rewrite"] = stats_all

    def _rewrite_messages(self, prompt, cand: dict[str, Any], with_reason: bool):
        rw = self.cfg.rewrite
        shown = cand["dialogue"][-rw.history_turns:] if rw.history_turns else cand["dialogue"]
        return prompt.messages("user", {
            "dialogue": shown, "original": cand["action"] or cand["response"],
            "results": list(dict.fromkeys(cand.get("results") or [])),
            "kind": cand["kind"], "with_reason": with_reason, "rating": cand["rating"],
            "details": cand["details"], "reason": cand["reason"] or "(no reason given)",
            "mode": rw.mode})

    def stage_dpo(self) -> None:
        cfg = self.cfg
        sgpt = self.model_path("sgpt")
        if not (Path(sgpt) / "config.json").is_file():
            raise ConfigError(f"{sgpt} is missing; run the sgpt stage first")
        out = {}
        for variant in self.variants():
            path = self.out / "pairs" / f"{variant}.jsonl"
            if not path.is_file():
                raise ConfigError(f"{path} is missing; run the rewrite stage first")
            pairs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            name = "ecpo" if variant == "ec" else "ecpo_noec"
            if not pairs:
                log.warning("%s: no preference pair survived the rewrite checks; %s is not "
                            "trained (see pairs/%s.stats.json)", variant, name, variant)
                out[name] = {"pairs": 0, "trained": False}
                continue
            pairs, dropped = self._fit_rows(pairs, ["chosen", "rejected"], cfg.dpo.max_length,
                                            sgpt)
            summary = self._train("dpo", name, pairs, sgpt, cfg.dpo, pairs_file=str(path),
                                  dropped_long_pairs=dropped)
            out[name] = {"trained": True, "dropped_long_pairs": dropped,
                         **{k: v for k, v in summary.items() if k != "curve"}}
        self.ctx.summary["dpo"] = out

    def stage_eval(self) -> None:
        from llmrec.artifacts import write_json_atomic
        from llmrec.crs.metrics import judge, position_bias, win_rates

        cfg, ev = self.cfg, self.cfg.eval
        results: dict[str, Any] = {}
        records: dict[str, list[dict[str, Any]]] = {}
        for agent in ev.agents:
            path = self.model_path(agent)
            if not (Path(path) / "config.json").is_file():
                log.warning("eval: %s has no model at %s (not trained); skipped", agent, path)
                continue
            llm = self._agent_llm(agent) if agent != "base" else cfg.agent.llm
            res = self._simulate(agent, agent, self.ctx.held_out, agent_llm=llm, folder="eval")
            if agent != "base":
                self._drop_backend(llm)
            records[agent] = res.records
            m = res.metrics
            results[agent] = {k: m.get(k) for k in ("n_tasks", "SR", "Recall@5", "avg_rounds",
                                                    "avg_expression", "avg_strategy",
                                                    "avg_recommendation", "failed_turn_rate")}
        if "base" in records and len(records) > 1:
            jb = self._backend(ev.judge)
            for agent, recs in records.items():
                if agent == "base":
                    continue
                verdicts, info = judge(jb, recs, records["base"], prompt=ev.judge_prompt,
                                       criteria=ev.judge_criteria, mode=ev.judge_decisions)
                wr = win_rates(verdicts)
                # the judge's position bias comes with its WR: a judge that mostly picks the
                # first-shown dialogue gives WR near 0.5 whatever the agents did
                results[agent]["judge_position_bias"] = position_bias(verdicts)
                results[agent]["WR_vs_base"] = {c: r["WR"] for c, r in wr.items()}
                results[agent]["judge"] = {**info, "model": ev.judge.model}
                with open(self.out / "eval" / agent / "judge_vs_base.jsonl", "w") as fh:
                    for v in verdicts:
                        fh.write(json.dumps(v.__dict__) + "\n")
        write_json_atomic(self.out / "results.json", results)
        self.ctx.summary["eval"] = results
        if ev.record:
            n = self._record(ev.record, results)
            log.info("recorded %d numbers in %s", n, ev.record)

    def _record(self, path: str, results: dict[str, Any]) -> int:
        from llmrec.artifacts import git_revision, now_iso, package_versions
        from llmrec.crs.cli import _device

        cfg = self.cfg
        base = {"benchmark": cfg.eval.benchmark, "device": _device(cfg.agent.llm),
                "commit": git_revision(), "date": now_iso(), "model": cfg.agent.llm.model,
                "simulator_model": cfg.simulator.llm.model, "judge_model": cfg.eval.judge.model,
                "embedder": cfg.catalog.embedder, "dataset": cfg.eval_tasks.data.name,
                "split": "+".join(cfg.eval_tasks.user_splits),
                "max_rounds": cfg.max_rounds, "out": str(self.out),
                "versions": package_versions(("torch", "transformers", "trl", "peft")),
                "config": to_dict(cfg)}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        n = 0
        with open(path, "a") as fh:
            for agent, r in results.items():
                for metric in ("SR", "Recall@5", "avg_expression", "avg_rounds",
                               "failed_turn_rate"):
                    if r.get(metric) is None:
                        continue
                    fh.write(json.dumps({**base, "agent": agent, "n_tasks": r["n_tasks"],
                                         "metric": metric, "value": r[metric]}) + "\n")
                    n += 1
                for key, v in (r.get("judge_position_bias") or {}).items():
                    if key == "total" or v is None:
                        continue
                    fh.write(json.dumps({**base, "agent": agent, "n_tasks": r["n_tasks"],
                                         "metric": f"judge_{key}_vs_base", "value": v,
                                         "verdicts": r["judge_position_bias"]["total"]}) + "\n")
                    n += 1
                for crit, v in (r.get("WR_vs_base") or {}).items():
                    fh.write(json.dumps({**base, "agent": agent, "n_tasks": r["n_tasks"],
                                         "metric": f"WR_{crit}_vs_base", "value": v}) + "\n")
                    n += 1
        return n


def run_ecpo(cfg: EcpoConfig) -> dict[str, Any]:
    return Ecpo(cfg).run()


__all__ = ["EcpoConfig", "Ecpo", "run_ecpo", "sgpt_rows", "forward_log", "rewrite_candidates",
           "check_rewrite", "STAGES", "AGENTS"]
