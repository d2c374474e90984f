"""The text variant of the genetic editor: individuals are *texts*, mutation is an LLM rewrite of
a parent with one of a list of instructions (the operators), crossover mixes two parents'
sentences, fitness is the click-rate predictor's score of the rewritten text's vector, and the
budget bounds the cosine distance between the rewrite's vector and the original text's vector.

A text cannot be shrunk back inside a budget the way a gene vector can, so an over-budget (or
empty, or failed) child is discarded: it never enters the population. The original text is
individual 0 and stays unless something scores higher, so a gain is never negative.

Any :class:`~llmrec.llm.base.LLMBackend` writes the rewrites, all of one generation in one
``generate`` call, with a per-conversation seed drawn from the editor's generator: with greedy
decoding (or a backend honouring seeds) a run is deterministic given ``seed``. The embedder must
be the one the predictor's vectors came from for the scores to mean anything; the gain is
measured against the original text embedded by the same embedder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from llmrec.config import option
from llmrec.errors import ConfigError

Embed = Callable[[list[str]], np.ndarray]               # texts -> vectors [m, d]
Score = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (item index [m], vectors [m, d]) -> [m]

DEFAULT_OPERATORS = [
    "Rewrite this movie description so that more viewers would want to watch the film.",
    "Rewrite this movie description in a shorter, livelier style.",
    "Rewrite this movie description putting the story and the feelings it evokes first.",
    "Rewrite this movie description putting the cast and the director first.",
    "Rewrite this movie description putting what audiences liked about the film first.",
]
SYSTEM = ("You rewrite movie descriptions. Keep every fact true to the original and invent "
          "nothing. Reply with the rewritten description only.")


@dataclass
class RewriteConfig:
    """The text editor's settings (ours: AdSEE edits images, not texts)."""

    operators: list[str] = option(DEFAULT_OPERATORS, help="rewrite instructions; each mutation "
                                                          "applies one, chosen at random")
    population: int = option(6, help="texts kept per item (parents + children)")
    generations: int = option(2, help="generations of rewrites")
    parents: int = option(2, help="fittest texts kept as parents each generation")
    crossover_rate: float = option(0.3, help="probability that a child is a sentence-wise "
                                             "crossover of two parents instead of a rewrite")
    budget: float = option(0.2, help="largest cosine distance of a rewrite's vector from the "
                                     "original text's vector")
    penalty: float = option(0.0, help="fitness = predicted rate - penalty * distance")
    max_new_tokens: int = option(200, help="longest rewrite, in tokens")
    seed: int = option(0, help="seed of operator choice, crossover and per-prompt seeds")

    def __post_init__(self) -> None:
        if not self.operators:
            raise ConfigError("rewrite.operators must list at least one instruction")
        if self.population < 2 or not 1 <= self.parents < self.population:
            raise ConfigError("rewrite: need population >= 2 and 1 <= parents < population")
        if self.generations < 0 or not 0 <= self.crossover_rate <= 1:
            raise ConfigError("rewrite: generations >= 0 and crossover_rate in [0, 1]")
        if not 0 < self.budget <= 2:
            raise ConfigError(f"rewrite.budget is a cosine distance in (0, 2], got {self.budget}")


@dataclass
class RewriteResult:
    texts: list[str]          # best text per item
    predicted: np.ndarray     # [n]
    base: np.ndarray          # [n] prediction for the original text (same embedder)
    distance: np.ndarray      # [n] cosine distance of the best text's vector from the original's
    operator: list[str]       # what produced each best text ("original", "crossover" or the
    #                           instruction)
    generated: int            # LLM rewrites asked for
    rejected: int             # children discarded (over budget, empty or failed)

    @property
    def gain(self) -> np.ndarray:
        return self.predicted - self.base


_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def crossover(a: str, b: str, rng: np.random.Generator) -> str:
    """Sentence i of the child comes from ``a`` or ``b`` by a fair coin (the longer parent's
    sentences fill the end)."""
    sa, sb = _SENTENCE.split(a.strip()), _SENTENCE.split(b.strip())
    out = []
    for i in range(max(len(sa), len(sb))):
        pick = rng.random() < 0.5
        src = sa if (pick and i < len(sa)) or i >= len(sb) else sb
        out.append(src[i])
    return " ".join(s for s in out if s)


def _cos_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return 1.0 - num / np.maximum(den, 1e-12)


class RewriteEditor:
    """Search rewrites of each text that the predictor scores higher, within the budget."""

    def __init__(self, cfg: RewriteConfig) -> None:
        self.cfg = cfg

    def run(self, texts: Sequence[str], backend, embed: Embed, score: Score) -> RewriteResult:
        from llmrec.llm.base import SamplingParams

        c = self.cfg
        rng = np.random.default_rng(c.seed)
        n = len(texts)
        items = np.arange(n)
        origin = np.asarray(embed(list(texts)), dtype=np.float64)
        base = np.asarray(score(items, origin), dtype=np.float64)
        # population per item: (fitness, text, vector, predicted, distance, operator)
        pops = [[(base[i], texts[i], origin[i], base[i], 0.0, "original")] for i in items]
        # the backend's temperature (greedy by default), our length limit
        sampling = SamplingParams(temperature=backend.default_sampling().temperature,
                                  repetition_penalty=backend.default_sampling().repetition_penalty,
                                  max_new_tokens=c.max_new_tokens)
        generated = rejected = 0
        for _ in range(c.generations):
            parents = [sorted(p, key=lambda r: -r[0])[:c.parents] for p in pops]
            n_child = c.population - c.parents
            jobs = []  # (item, text or None, operator, conversation or None)
            for i in items:
                for _ in range(n_child):
                    if len(parents[i]) > 1 and rng.random() < c.crossover_rate:
                        a, b = rng.choice(len(parents[i]), size=2, replace=False)
                        jobs.append((i, crossover(parents[i][a][1], parents[i][b][1], rng),
                                     "crossover", None))
                        continue
                    p = parents[i][int(rng.integers(len(parents[i])))][1]
                    op = c.operators[int(rng.integers(len(c.operators)))]
                    conv = [{"role": "system", "content": SYSTEM},
                            {"role": "user", "content": f"{op}\n\nDescription:\n{p}"}]
                    jobs.append((i, None, op, conv))
            convs = [j[3] for j in jobs if j[3] is not None]
            seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=len(convs))]
            gens = iter(backend.generate(convs, sampling, seeds=seeds) if convs else [])
            generated += len(convs)
            children = []
            for i, text, op, conv in jobs:
                if conv is not None:
                    g = next(gens)
                    text = None if g.error else g.text.strip()
                if text:
                    children.append((i, text, op))
                else:
                    rejected += 1
            if children:
                vecs = np.asarray(embed([t for _, t, _ in children]), dtype=np.float64)
                idx = np.array([i for i, _, _ in children])
                dist = _cos_dist(vecs, origin[idx])
                pred = np.asarray(score(idx, vecs), dtype=np.float64)
                for k, (i, text, op) in enumerate(children):
                    if dist[k] > c.budget:
                        rejected += 1
                        continue
                    parents[i].append((pred[k] - c.penalty * dist[k], text, vecs[k], pred[k],
                                       float(dist[k]), op))
            pops = parents
        best = [max(p, key=lambda r: r[0]) for p in pops]  # first maximum among ties
        return RewriteResult(texts=[b[1] for b in best],
                             predicted=np.array([b[3] for b in best]), base=base,
                             distance=np.array([b[4] for b in best]),
                             operator=[b[5] for b in best], generated=generated,
                             rejected=rejected)
