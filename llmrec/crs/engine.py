"""The simulation engine: many dialogues in flight, each step's LLM calls batched across them.

The engine keeps up to ``in_flight`` live dialogues. Every iteration advances all of them by one
move, phase by phase, so that each kind of LLM work is one batched backend call:

- **user phase** (dialogues waiting for the user): one ``choose`` call holding every rater
  decision (strategy, three expression deductions) and every policy choice, then one ``generate``
  call holding every user message and every rater reason;
- **agent phase** (dialogues waiting for the agent): one ``generate`` call per search step holding
  the agent prompts of every dialogue still in its turn, with one batched catalog search between
  steps.

A finished dialogue is appended at once, as one JSON line, to ``<out>/transcripts.jsonl`` (flushed
and fsynced), so a killed run loses at most the dialogues in flight; a rerun with the same config
skips the task ids already there (a torn last line from a kill is dropped first). The run's config
fingerprint is kept in ``<out>/run.json`` (a :class:`~llmrec.artifacts.StepCache` record):
resuming with settings that change results is refused, naming the settings that changed. Records
are :class:`~llmrec.crs.transcript.Transcript` objects, checked before they are written.
At the end the engine writes ``metrics.json``, ``transcripts.arrow`` (one row per dialogue) and
``llmrec_meta.json`` beside the transcripts.

A dialogue in which an LLM call failed in a way another try could fix (the endpoint was
unreachable or overloaded past the backend's retries: ``Generation.extra["retryable"]``) is
*abandoned*: it is not written, so a rerun makes it again, and the run reports it
(:attr:`RunResult.abandoned`; ``llmrec simulate`` then exits 1). A backend that cannot serve the
run at all (:class:`~llmrec.llm.openai_backend.EndpointError`) stops the run at once, before the
first dialogue when it is unreachable from the start.

Seeds are per call and derived from (run seed, task id, round, purpose), never from the batch, so a
dialogue's sampled text does not depend on which other dialogues shared its batch (exactly so
for greedy decoding and for backends that honour per-request seeds).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from llmrec.artifacts import StepCache
from llmrec.config import option, to_dict
from llmrec.crs.agent import Agent, AgentConfig
from llmrec.crs.catalog import Catalog, CatalogConfig
from llmrec.crs.decide import DecisionStats, choose
from llmrec.crs.metrics import outcome, search_hits_target, summarize, turn_hits_target
from llmrec.crs.simulator import DEDUCTIONS, END, OPENING, Simulator, SimulatorConfig
from llmrec.crs.tasks import Task, TaskConfig
from llmrec.crs.transcript import TRANSCRIPTS, Transcript, TranscriptStore, turn_from_dict
from llmrec.errors import ConfigError

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
# LLM / catalog settings that change speed, not results (wherever they occur), and the agent's
# label (a name for reports): excluded from the resume fingerprint.
_RUNTIME_KEYS = ("batch_size", "device", "concurrency", "timeout", "retries",
                 "gpu_memory_utilization", "max_model_len", "fast_decode", "api_key_env", "cache",
                 "agent.label")
# the settings that decide a run's transcripts (not `out`, `in_flight`, `resume`, `show`)
_RESULT_SECTIONS = ("tasks", "catalog", "agent", "simulator", "max_rounds", "seed")


@dataclass
class SimulationConfig:
    """One simulator run: tasks, catalog, agent, simulator, engine settings."""

    tasks: TaskConfig = option(default_factory=TaskConfig, help="where tasks come from")
    catalog: CatalogConfig = option(default_factory=CatalogConfig, help="catalog and search")
    agent: AgentConfig = option(default_factory=AgentConfig, help="the agent")
    simulator: SimulatorConfig = option(default_factory=SimulatorConfig, help="the user simulator")
    max_rounds: int = option(5, help="most agent turns per dialogue")
    in_flight: int = option(16, help="dialogues advanced together (the LLM batch per step)")
    seed: int = option(0, help="base seed of every LLM call's seed")
    out: str = option("runs/crs/movielens", help="output folder (transcripts, metrics, meta)")
    resume: bool = option(True, help="skip tasks already finished in `out`; false: start over")
    save_prompts: bool = option(True, help="store every prompt in the transcript (for ECPO)")
    show: int = option(1, help="transcripts printed at the end of `llmrec simulate`")

    def __post_init__(self) -> None:
        if self.max_rounds < 1:
            raise ValueError("max_rounds must be >= 1")
        if self.in_flight < 1:
            raise ValueError("in_flight must be >= 1")


def call_seed(*parts: Any) -> int:
    """A 31-bit seed from its parts (run seed, task id, round, purpose)."""
    h = hashlib.sha256(json.dumps(parts, default=str).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def result_inputs(cfg: SimulationConfig) -> dict[str, Any]:
    """The settings that decide a run's transcripts, by section (runtime keys are excluded when
    they are fingerprinted, see :func:`run_step`)."""
    full = to_dict(cfg)
    return {k: full[k] for k in _RESULT_SECTIONS}


def run_step(cfg: SimulationConfig) -> StepCache:
    """The run folder's transcripts as a resumable step: its record is ``run.json``."""
    out = Path(cfg.out)
    return StepCache(out / TRANSCRIPTS, result_inputs(cfg), record=out / RUN_FILE,
                     exclude=_RUNTIME_KEYS, keep_values=True, enabled=cfg.resume)


def result_fingerprint(cfg: SimulationConfig) -> str:
    """Fingerprint of the settings that decide a run's transcripts."""
    return run_step(cfg).fingerprint


# --------------------------------------------------------------------------- dialogues

@dataclass
class Dialogue:
    """A live dialogue: its task, the turns so far and whose move is next."""

    task: Task
    target: int
    turns: list[dict[str, Any]] = field(default_factory=list)
    round: int = 0  # agent turns taken
    phase: str = "user"  # user | agent | done
    end_reason: str | None = None
    started: float = field(default_factory=time.time)
    # a retryable backend failure: the dialogue is dropped (not recorded) and redone on resume
    backend_error: str | None = None

    def note_failure(self, gen) -> None:
        if gen is not None and gen.finish_reason == "error" and gen.extra.get("retryable") \
                and self.backend_error is None:
            self.backend_error = gen.error or "backend error"

    def last_agent_turn(self) -> dict[str, Any] | None:
        return self.turns[-1] if self.turns and self.turns[-1]["role"] == "assistant" else None

    def seen_results(self) -> list[int]:
        return [i for t in self.turns if t["role"] == "assistant"
                for s in t.get("searches", []) for i in s.get("_idx", [])]


@dataclass
class CallLog:
    """Every backend call of a run: kind and batch size (how well batching works)."""

    calls: list[tuple[str, int]] = field(default_factory=list)

    def add(self, kind: str, n: int) -> None:
        if n:
            self.calls.append((kind, n))

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kind in dict.fromkeys(k for k, _ in self.calls):
            sizes = [n for k, n in self.calls if k == kind]
            out[kind] = {"calls": len(sizes), "rows": sum(sizes),
                         "mean_batch": round(sum(sizes) / len(sizes), 2)}
        return out


@dataclass
class RunResult:
    out: Path
    records: list[dict[str, Any]]
    metrics: dict[str, Any]
    new: int
    #: task id -> backend error of the dialogues dropped by retryable failures (not recorded;
    #: a rerun redoes them)
    abandoned: dict[str, str] = field(default_factory=dict)


class Engine:
    """Runs the tasks' dialogues between the agent and the simulator (see the module docstring).

    ``backends`` may give already loaded backends as ``{"agent": ..., "simulator": ...}`` (tests,
    benchmarks); otherwise they are loaded from the configs, once each, and shared when the two
    configs are the same.
    """

    def __init__(self, cfg: SimulationConfig, catalog: Catalog, tasks: Sequence[Task], *,
                 backends: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.tasks = list(tasks)
        ids = [t.task_id for t in self.tasks]
        if len(set(ids)) != len(ids):
            raise ConfigError("task ids must be unique")
        self.agent = Agent(cfg.agent, top_k=catalog.cfg.top_k)
        self.sim = Simulator(cfg.simulator, catalog)
        self._owned: list[Any] = []
        self.backends = backends or self._load_backends()
        self.calls = CallLog()
        self.decisions = DecisionStats()

    # -- setup -----------------------------------------------------------------------------------
    def _load_backends(self) -> dict[str, Any]:
        from llmrec.llm import load_backend

        a, s = self.cfg.agent.llm, self.cfg.simulator.llm
        agent = load_backend(a)
        self._owned.append(agent)
        if to_dict(a) == to_dict(s):
            return {"agent": agent, "simulator": agent}
        sim = load_backend(s)
        self._owned.append(sim)
        return {"agent": agent, "simulator": sim}

    def close(self) -> None:
        for b in self._owned:
            b.close()
        self._owned.clear()

    def identity(self) -> dict[str, Any]:
        from llmrec.llm.openai_backend import EndpointError

        def ident(b):
            try:
                return b.identity()
            except EndpointError:
                raise  # nobody answers there: the run cannot go on
            except Exception as exc:  # a backend without a revision still names its model
                log.debug("no identity for backend: %s", exc)
                return {"model": getattr(b, "model_id", "?")}

        return {"agent": {**ident(self.backends["agent"]), "backend": self.cfg.agent.llm.backend,
                          "label": self.cfg.agent.label},
                "simulator": {**ident(self.backends["simulator"]),
                              "backend": self.cfg.simulator.llm.backend},
                "embedder": self.cfg.catalog.embedder}

    def prompt_hashes(self) -> dict[str, str]:
        return {"agent": self.agent.prompt.hash, "simulator": self.sim.prompt.hash,
                "rater": self.sim.rater.hash}

    # -- LLM calls -------------------------------------------------------------------------------
    def _generate(self, who: str, convs, sampling, seeds):
        if not convs:
            return []
        self.calls.add(f"{who}_generate", len(convs))
        return self.backends[who].generate(convs, sampling, seeds=seeds)

    def _choose(self, who: str, convs, options):
        if not convs:
            return []
        self.calls.add(f"{who}_choose", len(convs))
        mode = self.cfg.agent.decisions if who == "agent" else self.cfg.simulator.decisions
        return choose(self.backends[who], convs, options, mode=mode, stats=self.decisions)

    # -- the user's move ---------------------------------------------------------------------------
    def user_phase(self, ds: list[Dialogue]) -> None:
        if not ds:
            return
        cfg, sim = self.cfg, self.sim
        dec_convs, dec_opts, dec_meta = [], [], []
        plans: dict[int, dict[str, Any]] = {}
        self._rate_recommendations(ds)
        for k, d in enumerate(ds):
            last = d.last_agent_turn()
            plan: dict[str, Any] = {"policy": None, "accepted": False, "options": None}
            plans[k] = plan
            if last is None:
                plan["policy"] = OPENING
                continue
            if last["ok"] and cfg.simulator.rate:
                prompts = sim.rating_prompts(d.task, d.turns, d.round)
                for crit, conv in prompts.items():
                    dec_convs.append(conv)
                    dec_opts.append(sim.criterion_options(crit))
                    dec_meta.append((k, "rate", crit))
            if turn_hits_target(last, d.task.target_title):
                plan.update(policy=END, accepted=True)
            elif d.round >= cfg.max_rounds:
                plan["policy"] = None  # out of rounds: rate the last turn and stop
            else:
                allowed = sim.allowed(last, d.round)
                if len(allowed) == 1:
                    plan["policy"] = allowed[0]
                else:
                    conv, order = sim.policy_prompt(
                        d.task, d.turns, d.round, cfg.max_rounds, allowed,
                        call_seed(cfg.seed, d.task.task_id, d.round, "policy-order"))
                    plan["options"] = order
                    plan["policy_prompt"] = conv
                    dec_convs.append(conv)
                    dec_opts.append(["A", "B", "C"][:len(order)])
                    dec_meta.append((k, "policy", None))
        picks = self._choose("simulator", dec_convs, dec_opts)
        ratings: dict[int, dict[str, int]] = {}
        for (k, what, crit), p in zip(dec_meta, picks):
            if what == "rate":
                ratings.setdefault(k, {})[crit] = int(p)
            else:
                plans[k]["policy"] = plans[k]["options"][p]

        gen_convs, gen_seeds, gen_meta = [], [], []
        for k, d in enumerate(ds):
            plan, last = plans[k], d.last_agent_turn()
            if last is not None:
                self._apply_ratings(last, ratings.get(k))
                if k in ratings:
                    r = last["ratings"]
                    for crit in ("strategy", "expression"):
                        details = r[crit].get("details", "")
                        gen_convs.append(sim.reason_prompt(d.task, d.turns, d.round, crit,
                                                           r[crit]["rating"], details))
                        gen_seeds.append(call_seed(cfg.seed, d.task.task_id, d.round, crit))
                        gen_meta.append((k, "reason", crit))
            if plan["policy"] is None:
                continue
            if plan["policy"] == OPENING:
                conv = sim.opening_prompt(d.task, cfg.max_rounds)
            else:
                conv = sim.respond_prompt(d.task, d.turns, d.round, cfg.max_rounds,
                                          plan["policy"], plan["accepted"])
            plan["prompt"] = conv
            gen_convs.append(conv)
            gen_seeds.append(call_seed(cfg.seed, d.task.task_id, d.round, "user"))
            gen_meta.append((k, "user", None))
        gens = self._generate("simulator", gen_convs, sim.sampling(), gen_seeds)

        for (k, what, crit), g in zip(gen_meta, gens):
            d = ds[k]
            d.note_failure(g)
            if what == "reason":
                d.last_agent_turn()["ratings"][crit]["reason"] = g.text.strip()
                continue
            plan = plans[k]
            text, masked = sim.mask_leak(d.task, g.text.strip())
            turn = {"role": "user", "round": d.round, "policy": plan["policy"], "text": text,
                    "accepted": plan["accepted"], "leak_masked": masked,
                    "options": plan["options"]}
            if cfg.save_prompts:
                turn["prompt"] = plan["prompt"]
                if plan.get("policy_prompt"):
                    turn["policy_prompt"] = plan["policy_prompt"]
            if masked:
                turn["raw"] = g.text.strip()
            # a user turn is appended after the reasons of the agent turn it answers were set
            plan["turn"] = turn
        for k, d in enumerate(ds):
            plan = plans[k]
            if "turn" in plan:
                d.turns.append(plan["turn"])
            if d.backend_error is not None:
                d.phase, d.end_reason = "done", "backend_error"
            elif plan["policy"] is None:
                d.phase, d.end_reason = "done", "max_rounds"
            elif plan["policy"] == END:
                d.phase, d.end_reason = "done", "accepted" if plan["accepted"] else "user_ended"
            else:
                d.phase = "agent"

    def _rate_recommendations(self, ds: list[Dialogue]) -> None:
        """The grounded recommendation rating of each dialogue's last agent turn (titles not in
        the catalog are embedded in one batch)."""
        unknown = sorted({title for d in ds if (t := d.last_agent_turn()) and t["ok"]
                          for title, idx in zip(t["titles"], t["recommended_idx"]) if idx is None})
        vecs = dict(zip(unknown, self.catalog.embed(unknown))) if unknown else {}
        for d in ds:
            t = d.last_agent_turn()
            if t is None:
                continue
            if not t["ok"]:
                t["ratings"] = {"recommendation": {"rating": 0, "reason": "failed turn: nothing "
                                                                         "was recommended"}}
                continue
            t["ratings"] = {"recommendation": self.sim.rate_recommendation(
                d.target, list(t["titles"]), list(t["recommended_idx"]), vecs)}

    def _apply_ratings(self, turn: dict[str, Any], picked: dict[str, int] | None) -> None:
        r = turn["ratings"]
        if not turn["ok"]:
            why = f"failed turn: {turn['error']}"
            r["strategy"] = {"rating": None, "reason": why}
            r["expression"] = {"rating": None, "reason": why}
            return
        if not picked:  # raters switched off
            r["strategy"] = {"rating": None, "reason": "not rated (simulator.rate=false)"}
            r["expression"] = {"rating": None, "reason": "not rated (simulator.rate=false)"}
            return
        deductions = {c: min(picked[c], DEDUCTIONS[c]) for c in DEDUCTIONS}
        details = ", ".join(f"{c} -{v}" for c, v in deductions.items() if v) or "no deductions"
        r["strategy"] = {"rating": picked["strategy"], "reason": ""}
        r["expression"] = {"rating": 5 - sum(deductions.values()), "deductions": deductions,
                           "details": details, "reason": ""}

    # -- the agent's move --------------------------------------------------------------------------
    def agent_phase(self, ds: list[Dialogue]) -> None:
        if not ds:
            return
        cfg, agent = self.cfg, self.agent
        turns = {id(d): {"role": "assistant", "round": d.round + 1, "ok": False, "action": None,
                         "argument": None, "titles": [], "thought": "", "text": "", "raw": "",
                         "action_text": "", "error": None, "searches": [], "steps": []}
                 for d in ds}
        # the agent sees its own earlier turns as the actions it wrote
        history = {id(d): [{"role": t["role"],
                            "text": t["action_text"] if t["role"] == "assistant" else t["text"]}
                           for t in d.turns] for d in ds}
        active = list(ds)
        for step in range(cfg.agent.max_searches + 1):
            if not active:
                break
            base, seeds, lefts = [], [], []
            for d in active:
                t = turns[id(d)]
                left = cfg.agent.max_searches - len(t["searches"])
                view = [{"query": s["query"], "results": s["shown"]} for s in t["searches"]]
                base.append(agent.messages(history[id(d)], view, left))
                seeds.append(call_seed(cfg.seed, d.task.task_id, d.round + 1, "agent", step))
                lefts.append(left)
            act = getattr(self.backends["agent"], "act", None)
            if act is not None:
                # a policy agent (e.g. the scripted expert of SGPT) sees the dialogue as the LLM
                # agent would, as data: its turns so far, this turn's searches, the search budget
                views = [{"history": [dict(h) for h in history[id(d)]],
                          "searches": [{"query": s["query"], "results": list(s["results"])}
                                       for s in turns[id(d)]["searches"]],
                          "searches_left": left, "round": d.round + 1}
                         for d, left in zip(active, lefts)]
                self.calls.add("agent_act", len(views))
                raws = [str(r).strip() for r in act(views)]
                gens = [None] * len(raws)
            elif cfg.agent.decoding == "structured":
                kinds = [agent.allowed_kinds(left) for left in lefts]
                picks = self._choose("agent", [agent.choice_messages(b, k)
                                               for b, k in zip(base, kinds)],
                                     [list("ABCD"[:len(k)]) for k in kinds])
                chosen = [k[p] for k, p in zip(kinds, picks)]
                arg_convs = [agent.argument_messages(b, k) for b, k in zip(base, chosen)]
                gens = self._generate("agent", arg_convs, agent.sampling(), seeds)
                raws = [agent.compose(k, g.text) for k, g in zip(chosen, gens)]
            else:
                gens = self._generate("agent", base, agent.sampling(), seeds)
                raws = [g.text.strip() for g in gens]
            searching: list[tuple[Dialogue, str]] = []
            for i, (d, conv, raw) in enumerate(zip(active, base, raws)):
                t = turns[id(d)]
                step_rec: dict[str, Any] = {"output": raw}
                if cfg.save_prompts:
                    step_rec["prompt"] = conv
                if cfg.agent.decoding == "structured" and act is None:
                    step_rec["kind"] = chosen[i]
                    step_rec["argument_output"] = gens[i].text
                t["steps"].append(step_rec)
                t["raw"] = raw
                gen = gens[i]
                d.note_failure(gen)
                if gen is not None and gen.finish_reason == "error":
                    # the backend gave up on this request (HTTP errors after retries): recorded
                    # as a failed turn that names the cause, not as an unparseable reply
                    t.update(error=f"backend error: {gen.error}", text=raw, action_text=raw)
                    continue
                parsed = agent.parse(raw, chosen[i] if cfg.agent.decoding == "structured"
                                     and act is None else None)
                if not parsed.ok:
                    t.update(error=parsed.error, text=raw, action_text=raw)
                    continue
                a = parsed.action
                if a.kind == "Search":
                    if len(t["searches"]) >= cfg.agent.max_searches:
                        t.update(error=f"search limit reached ({cfg.agent.max_searches} per turn)",
                                 text=raw, action_text=raw)
                    else:
                        searching.append((d, a.argument))
                    continue
                t.update(ok=True, action=a.kind, argument=a.argument, titles=list(a.titles),
                         thought=a.thought, text=a.user_text(), action_text=a.render())
            if searching:
                hits = self.catalog.search([q for _, q in searching])
                for (d, q), hs in zip(searching, hits):
                    items = [self.catalog.items[h.index] for h in hs]
                    turns[id(d)]["searches"].append({
                        "query": q, "results": [it.title for it in items],
                        "result_ids": [it.item_id for it in items],
                        "scores": [round(h.score, 4) for h in hs],
                        "shown": [it.short() for it in items], "_idx": [h.index for h in hs]})
            active = [d for d, _ in searching]
        for d in ds:
            t = turns[id(d)]
            prefer = d.seen_results() + [i for s in t["searches"] for i in s["_idx"]]
            t["recommended_idx"] = [self.catalog.resolve(x, prefer) for x in t["titles"]]
            t["recommended_ids"] = [self.catalog.items[i].item_id if i is not None else None
                                    for i in t["recommended_idx"]]
            t["recall_hit"] = search_hits_target(t, d.task.target_id, d.task.target_title)
            d.turns.append(t)
            d.round += 1
            d.phase = "user" if d.backend_error is None else "done"

    # -- records -----------------------------------------------------------------------------------
    def record(self, d: Dialogue) -> Transcript:
        turns = []
        for i, t in enumerate(d.turns):
            t = dict(t)
            t.pop("recommended_idx", None)
            if "searches" in t:
                t["searches"] = [{k: v for k, v in s.items() if not k.startswith("_")}
                                 for s in t["searches"]]
            turns.append(turn_from_dict(t, f"{d.task.task_id}: turns[{i}]"))
        rec = Transcript(task_id=d.task.task_id, task=d.task, turns=turns,
                         end_reason=d.end_reason, max_rounds=self.cfg.max_rounds,
                         seed=self.cfg.seed, models=self.identity(),
                         prompts=self.prompt_hashes(),
                         seconds=round(time.time() - d.started, 2))
        for k, v in outcome(rec.to_dict()).items():
            setattr(rec, k, v)
        return rec

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, *, on_finished: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
        from llmrec.artifacts import write_json_atomic, write_meta
        from llmrec.progress import progress

        cfg = self.cfg
        out = Path(cfg.out)
        store = TranscriptStore(out)
        step = run_step(cfg)
        resumed = step.reuse(on_stale="refuse", made="holds a run with different settings",
                             hint="use another --out, or --resume=false to start over")
        if not resumed:
            store.reset()
        step.record()
        fp = step.fingerprint
        done = store.load() if resumed else []
        done_ids = {r["task_id"] for r in done}
        pending = deque(t for t in self.tasks if t.task_id not in done_ids)
        if done_ids:
            log.info("resuming %s: %d of %d tasks already done", out,
                     len(done_ids & {t.task_id for t in self.tasks}), len(self.tasks))
        if pending:
            self.identity()  # asks an HTTP backend for its model: an unreachable one stops here
        new: list[dict[str, Any]] = []
        abandoned: dict[str, str] = {}
        live: list[Dialogue] = []
        start = time.time()
        with progress(total=len(self.tasks), initial=len(self.tasks) - len(pending),
                      desc="dialogues", unit="dlg") as bar:
            while pending or live:
                while pending and len(live) < cfg.in_flight:
                    task = pending.popleft()
                    live.append(Dialogue(task=task, target=self.catalog.by_id[task.target_id]))
                self.user_phase([d for d in live if d.phase == "user"])
                self.agent_phase([d for d in live if d.phase == "agent"])
                for d in [d for d in live if d.phase == "done"]:
                    if d.backend_error is not None:
                        # not finished work: left out of the transcripts, redone on resume
                        abandoned[d.task.task_id] = d.backend_error
                        log.warning("dialogue %s dropped after a backend failure (%s); a rerun "
                                    "will redo it", d.task.task_id, d.backend_error)
                        live.remove(d)
                        bar.update(1)
                        continue
                    transcript = self.record(d)
                    store.append(transcript)
                    rec = transcript.to_dict()
                    new.append(rec)
                    live.remove(d)
                    bar.update(1)
                    if on_finished is not None:
                        on_finished(rec)
        seconds = time.time() - start
        wanted = {t.task_id for t in self.tasks}
        records = [r for r in done if r["task_id"] in wanted] + new
        order = {t.task_id: i for i, t in enumerate(self.tasks)}
        records.sort(key=lambda r: order[r["task_id"]])
        metrics = summarize(records)
        run_info = {"seconds": round(seconds, 2), "new_dialogues": len(new),
                    "abandoned_dialogues": len(abandoned),
                    "dialogues_per_minute": round(60 * len(new) / seconds, 3) if new and seconds
                    else None,
                    "calls": self.calls.summary(), "decisions": self.decisions.as_dict(),
                    "models": self.identity(), "prompts": self.prompt_hashes(),
                    "fingerprint": fp}
        write_json_atomic(out / "metrics.json", {"metrics": metrics, "run": run_info})
        store.export_arrow(records)
        write_meta(out, cfg, **{k: run_info[k] for k in ("models", "prompts", "fingerprint")})
        return RunResult(out=out, records=records, metrics={**metrics, "run": run_info},
                         new=len(new), abandoned=abandoned)


def run_simulation(cfg: SimulationConfig, *, backends: dict[str, Any] | None = None,
                   catalog: Catalog | None = None, tasks: Sequence[Task] | None = None
                   ) -> RunResult:
    """Load tasks and catalog (unless given), run the engine, close what it loaded."""
    if catalog is None or tasks is None:
        from llmrec.crs.tasks import load_catalog_and_tasks

        catalog, tasks = load_catalog_and_tasks(cfg.tasks, cfg.catalog)
    engine = Engine(cfg, catalog, tasks, backends=backends)
    try:
        return engine.run()
    finally:
        engine.close()


def format_transcript(record: dict[str, Any], *, reasons: bool = True) -> str:
    """A readable transcript: turns, actions, searches and ratings with reasons."""
    task = record["task"]
    p = task["persona"]
    lines = [f"== {record['task_id']}  target: {task['target_title']}  "
             f"({p['activity']}; likes {', '.join(p['interests'][:3])})",
             f"   outcome: success={record.get('success')} recall5={record.get('recall5')} "
             f"rounds={record.get('rounds')} end={record.get('end_reason')}"]
    for t in record["turns"]:
        if t["role"] == "user":
            tag = t.get("policy") or ""
            lines.append(f"USER [{tag}]{' (title masked)' if t.get('leak_masked') else ''}: "
                         f"{t['text']}")
            continue
        for s in t.get("searches", []):
            lines.append(f"  agent Search[{s['query']}] -> {'; '.join(s['results'])}")
        if t["ok"]:
            lines.append(f"AGENT {t['action']}: {t['text']}")
        else:
            lines.append(f"AGENT (failed turn: {t['error']}): {t['raw'][:200]!r}")
        for name, r in (t.get("ratings") or {}).items():
            extra = f" ({r['details']})" if r.get("details") else ""
            why = f" - {r.get('reason')}" if reasons and r.get("reason") else ""
            lines.append(f"    {name}: {r.get('rating')}{extra}{why}")
    return "\n".join(lines)


__all__ = ["Engine", "RunResult", "SimulationConfig", "Transcript", "TranscriptStore",
           "format_transcript", "run_simulation", "call_seed"]
