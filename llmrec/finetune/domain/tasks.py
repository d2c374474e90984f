"""The eight-task recommendation-domain suite: instruction rows, held-out sets, metrics.

Every task builds examples from the real data in :mod:`llmrec.finetune.domain.data`; a training
example carries a ``completion`` (its SFT answer), an evaluation example what its metric needs.
Held-out examples come from held-out movies (tasks 1, 2, 6), held-out users (3, 4), ReDial test
dialogues (5, 7; training uses the validation dialogues) and held-out general prompts (8).

==  =============  ===========================================================  ===============
#   name           what                                                         metric
==  =============  ===========================================================  ===============
1   genre          ML-1M title + plot -> genres (generated, parsed)             micro-F1
2   plot_title     ML-1M plot -> its title, one of 4 lettered options            accuracy
3   next_item      liked-movie history -> the next liked movie among 20          HR@1, NDCG@10
                   candidates (the target + 19 unrated movies), ranked by the
                   model's per-token log-likelihood of each title as the reply
4   rating         rated history + a movie -> will the user rate it >= 4         AUC (log p(Yes)
                                                                                - log p(No))
5   redial_rec     ReDial dialogue context -> the recommended movie among 20     Recall@1/10
                   candidates (the gold ones + sampled ReDial movies)
6   knowledge      the item knowledge template (prompts/knowledge/item_movie)    share ``ok``
                   on held-out movies; parsed by llmrec.knowledge.parse
7   reply          ReDial context -> the recommender's next message; a judge     WR vs base
                   LLM compares it with the base model's, both orders
8   general        held-out general prompts                                     ROUGE-L to base,
                                                                                perplexity
==  =============  ===========================================================  ===============

Scores use the backend's ``score_options`` (whole-turn log-likelihood, end-of-turn included);
generation is greedy.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Sequence

from llmrec.config import option
from llmrec.finetune.domain import metrics as M

TASKS = ("genre", "plot_title", "next_item", "rating", "redial_rec", "knowledge", "reply",
         "general")
#: tasks with SFT rows (general has none: it measures retention)
TRAINABLE = TASKS[:7]
#: tasks whose sampled answers can be checked against gold (DPO pairs come from these)
CHECKABLE = ("genre", "plot_title", "next_item", "rating", "redial_rec")
#: the metric each task's table cell shows first
MAIN_METRIC = {"genre": "micro_f1", "plot_title": "accuracy", "next_item": "NDCG@10",
               "rating": "AUC", "redial_rec": "Recall@10", "knowledge": "ok_share",
               "reply": "WR_vs_base", "general": "rougeL_to_base"}

ML1M_GENRES = ("Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
               "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
               "Romance", "Sci-Fi", "Thriller", "War", "Western")
LETTERS = "ABCD"


@dataclass
class SuiteConfig:
    """Which tasks, how many rows, and the generation limits of the suite."""

    tasks: list[str] = option(list(TASKS), help=f"tasks of the suite ({', '.join(TASKS)})")
    n_train: int = option(400, help="SFT rows per trainable task (from training items, users "
                                    "and dialogues)")
    n_eval: int = option(100, help="held-out examples per task (at most data.eval_items / "
                                   "eval_users for the ML-1M tasks)")
    n_candidates: int = option(20, help="candidates ranked in next_item and redial_rec")
    history: int = option(10, help="history movies shown in next_item and rating prompts")
    plot_chars: int = option(600, help="plots are cut to this many characters in prompts")
    context_turns: int = option(6, help="ReDial utterances shown (the last ones)")
    genre_tokens: int = option(24, help="new tokens of a genre answer")
    knowledge_tokens: int = option(384, help="new tokens of a knowledge answer (9 JSON fields)")
    reply_tokens: int = option(64, help="new tokens of a ReDial reply")
    general_tokens: int = option(160, help="new tokens of a general answer")
    general_held_out: int = option(16, help="general prompts held out for retention (the rest "
                                            "feed the CPT self-replay)")

    def __post_init__(self) -> None:
        bad = [t for t in self.tasks if t not in TASKS]
        if bad:
            raise ValueError(f"suite.tasks: unknown {bad}; choose from {', '.join(TASKS)}")
        if self.n_train < 1 or self.n_eval < 1:
            raise ValueError("suite.n_train and suite.n_eval must be >= 1")
        if self.n_candidates < 2:
            raise ValueError("suite.n_candidates must be >= 2")


# --------------------------------------------------------------------------- prompts

def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _cut(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n].rsplit(" ", 1)[0] + " ..."


def genre_prompt(title: str, plot: str, n: int) -> list[dict[str, str]]:
    return _user(f"Movie: {title}\nPlot: {_cut(plot, n)}\n\nWhich of these genres does the "
                 f"movie belong to: {', '.join(ML1M_GENRES)}?\nAnswer with the matching genres, "
                 "separated by commas.")


def parse_genres(text: str) -> list[str]:
    """The ML-1M genre names found in a generated answer (case and hyphens ignored)."""
    norm = re.sub(r"[^a-z]", "", text.lower().replace("science fiction", "scifi"))
    found = []
    for g in ML1M_GENRES:
        key = re.sub(r"[^a-z]", "", g.lower())
        if key == "children":
            hit = "children" in norm
        else:
            hit = key in norm
        if hit:
            found.append(g)
    # "Film-Noir" contains no other genre, but "Sci-Fi" answers often say "fiction" only
    return found


def plot_title_prompt(plot: str, options: Sequence[str], n: int) -> list[dict[str, str]]:
    lines = "\n".join(f"{LETTERS[i]}. {t}" for i, t in enumerate(options))
    return _user(f"Plot: {_cut(plot, n)}\n\nWhich movie is this?\n{lines}\n"
                 "Answer with the letter only.")


def next_item_prompt(history: Sequence[str]) -> list[dict[str, str]]:
    lines = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(history))
    return _user("A user liked these movies, most recent last:\n"
                 f"{lines}\n\nName one more movie this user will like. Answer with its title.")


def rating_prompt(history: Sequence[tuple[str, int]], target: str) -> list[dict[str, str]]:
    lines = "\n".join(f"- {t}: {r} stars" for t, r in history)
    return _user("A user rated these movies from 1 to 5 stars, most recent last:\n"
                 f"{lines}\n\nWill the user rate \"{target}\" 4 stars or more? "
                 "Answer Yes or No.")


def speakers(context: Sequence[str], last: str = "user") -> list[tuple[str, str]]:
    """(role, text) of each non-empty utterance: the last one is ``last``'s (in a ReDial turn
    the seeker's, since the reply to predict is the recommender's) and the speakers alternate
    backwards from it (the turns file merges a speaker's consecutive messages)."""
    other = {"user": "assistant", "assistant": "user"}
    said = [u for u in context if u.strip()]
    n = len(said)
    return [(last if (n - 1 - i) % 2 == 0 else other[last], u) for i, u in enumerate(said)]


def redial_text(turn: dict[str, Any], n_turns: int) -> str:
    lines = speakers(turn["context"])[-n_turns:]
    return "\n".join(f"{'Recommender' if r == 'assistant' else 'Seeker'}: {_cut(u, 300)}"
                     for r, u in lines)


def redial_rec_prompt(turn: dict[str, Any], n_turns: int) -> list[dict[str, str]]:
    return _user(f"A conversation about movies:\n{redial_text(turn, n_turns)}\n\nWhich movie "
                 "should the recommender suggest next? Answer with the movie title.")


def reply_prompt(turn: dict[str, Any], n_turns: int) -> list[dict[str, str]]:
    """The ReDial context as a chat: the seeker is the user, the recommender the assistant."""
    msgs = [{"role": r, "content": _cut(u, 300)}
            for r, u in speakers(turn["context"])[-n_turns:]]
    while msgs and msgs[0]["role"] == "assistant":
        msgs.pop(0)
    sys = {"role": "system", "content": "You are a friendly movie recommender chatting with a "
                                        "user. Reply in one or two sentences."}
    return [sys] + msgs


def judge_prompt(turn: dict[str, Any], a: str, b: str, n_turns: int) -> list[dict[str, str]]:
    return _user(f"A conversation about movies:\n{redial_text(turn, n_turns)}\n\n"
                 f"Reply A: {_cut(a, 400)}\nReply B: {_cut(b, 400)}\n\nWhich reply is the better "
                 "next message from the recommender (helpful, on topic, fluent)? "
                 "Answer A or B.")


@functools.lru_cache(maxsize=1)
def _knowledge_template():
    from llmrec.knowledge.templates import load_template

    return load_template("item_movie")


def knowledge_prompt(m) -> list[dict[str, str]]:
    title = m.title
    year = m.year or ""
    item = {"title": title, "year": year, "genres": list(m.genres), "tags": []}
    return _knowledge_template().messages({"item": item})


_FIELD_HINTS = {"character": ("character", "role", "plays", "portray"),
                "mood_tone": ("tone", "mood", "atmosphere", "humor", "humour", "dark"),
                "critical_acclaim": ("acclaim", "award", "critic", "oscar", "praise",
                                     "nominat"),
                "production_quality": ("cinematograph", "effects", "visual", "editing",
                                       "production", "performance"),
                "soundtrack": ("music", "score", "soundtrack", "song", "composer")}


def knowledge_answer(m) -> str:
    """A reference answer in the template's JSON: facts from the side information for genre,
    people, date and plot; for the other fields the first sentence of the movie's knowledge
    paragraph that names the field's topic (or "Not known.")."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", m.knowledge) if s.strip()]

    def pick(words):
        for s in sentences:
            if any(w in s.lower() for w in words):
                return s
        return "Not known."

    out = {"genre": ", ".join(m.genres) + ".",
           "director_actors": (f"Directed by {m.director}; starring {m.actors}."
                               if m.director else "Not known."),
           "time_period_country": (f"Released {m.released}." if m.released else
                                   f"Released in {m.year}." if m.year else "Not known."),
           "character": "", "plot_theme": _cut(m.plot, 300) or "Not known.",
           "mood_tone": "", "critical_acclaim": "", "production_quality": "",
           "soundtrack": ""}
    for k, words in _FIELD_HINTS.items():
        out[k] = pick(words)
    return json.dumps({f: out[f] for f in _knowledge_template().field_ids}, ensure_ascii=False)


# --------------------------------------------------------------------------- examples

def _movie_title(src, i: int) -> str:
    return src.movies[i].title


def _user_cases(src, users: Sequence[int], n: int, rng: random.Random, cfg: SuiteConfig,
                last: bool) -> list[tuple[int, int]]:
    """(user, position of a liked target) pairs with at least ``history`` liked movies before
    the target: the last liked position for held-out users, a random one for training users."""
    out = []
    for u in users:
        rows = src.ratings[u]
        liked = [k for k, (_, r, _) in enumerate(rows) if r >= 4]
        ok = liked[cfg.history:]  # liked positions with `history` liked ones before them
        if not ok:
            continue
        out.append((u, ok[-1] if last else rng.choice(ok)))
        if len(out) >= n:
            break
    return out


def build_examples(task: str, src, split: str, cfg: SuiteConfig, seed: int,
                   general: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """The ``split`` ("train" or "eval") examples of ``task`` (see the module docstring).

    Every example has ``task``, ``prompt`` (chat messages) and ``key`` (the item, user or
    dialogue it comes from); training ones have ``completion``. ``general`` (task 8 only) are
    the held-out prompts with the base model's answers."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be train or eval, got {split!r}")
    rng = random.Random(f"domain-{task}-{split}-{seed}")
    n = cfg.n_train if split == "train" else cfg.n_eval
    items = list(src.train_items if split == "train" else src.eval_items)
    users = list(src.train_users if split == "train" else src.eval_users)
    rng.shuffle(items)
    rng.shuffle(users)
    out: list[dict[str, Any]] = []
    if task == "genre":
        for i in items[:n]:
            m = src.movies[i]
            ex = {"prompt": genre_prompt(m.title, m.plot, cfg.plot_chars), "gold": m.genres,
                  "key": f"item:{i}", "plot": m.plot}
            ex["completion"] = ", ".join(m.genres)
            out.append(ex)
    elif task == "plot_title":
        # distractors come from the same split's movies, so no held-out title leaks into training
        for i in items[:n]:
            m = src.movies[i]
            others = rng.sample([j for j in items if j != i], 3)
            opts = [m.title] + [_movie_title(src, j) for j in others]
            rng.shuffle(opts)
            gold = opts.index(m.title)
            out.append({"prompt": plot_title_prompt(m.plot, opts, cfg.plot_chars),
                        "options": list(LETTERS), "gold": gold, "key": f"item:{i}",
                        "plot": m.plot, "completion": LETTERS[gold]})
    elif task in ("next_item", "rating"):
        all_items = sorted(src.movies)
        for u, pos in _user_cases(src, users, n, rng, cfg, last=split == "eval"):
            rows = src.ratings[u]
            if task == "next_item":
                hist = [_movie_title(src, i) for i, r, _ in rows[:pos] if r >= 4][-cfg.history:]
                target = rows[pos][0]
                seen = {i for i, _, _ in rows}
                negs = []
                while len(negs) < cfg.n_candidates - 1:
                    j = rng.choice(all_items)
                    if j not in seen and j not in negs:
                        negs.append(j)
                cands = [target] + negs
                rng.shuffle(cands)
                out.append({"prompt": next_item_prompt(hist), "key": f"user:{u}",
                            "options": [_movie_title(src, j) for j in cands],
                            "gold": cands.index(target), "completion": _movie_title(src, target)})
            else:
                # the probed movie: any rating after the history (liked or not), so both
                # labels occur; the history is the `history` ratings before it
                k = rng.randrange(cfg.history, len(rows)) if split == "train" else len(rows) - 1
                if k < cfg.history:
                    continue
                hist = [(_movie_title(src, i), r) for i, r, _ in rows[k - cfg.history:k]]
                i, r, _ = rows[k]
                label = int(r >= 4)
                out.append({"prompt": rating_prompt(hist, _movie_title(src, i)),
                            "key": f"user:{u}", "options": ["Yes", "No"], "label": label,
                            "gold": 0 if label else 1, "completion": "Yes" if label else "No"})
    elif task in ("redial_rec", "reply"):
        turns = list(src.redial_train if split == "train" else src.redial_eval)
        rng.shuffle(turns)
        names = src.redial_names
        for t in turns:
            if len(out) >= n:
                break
            if not t["context"] or not t["resp"].strip():
                continue
            key = f"dialog:{'valid' if split == 'train' else 'test'}:{t['dialog_id']}"
            if task == "redial_rec":
                gold = [g for g in dict.fromkeys(t["rec"]) if g in set(names)]
                if not gold:
                    continue
                gold = gold[:cfg.n_candidates // 2]
                pool = []
                while len(pool) < cfg.n_candidates - len(gold):
                    c = rng.choice(names)
                    if c not in gold and c not in pool:
                        pool.append(c)
                cands = gold + pool
                rng.shuffle(cands)
                out.append({"prompt": redial_rec_prompt(t, cfg.context_turns), "key": key,
                            "options": cands, "gold": cands.index(gold[0]),
                            "relevant": [cands.index(g) for g in gold], "completion": gold[0]})
            else:
                prompt = reply_prompt(t, cfg.context_turns)
                if len(prompt) < 2:
                    continue
                out.append({"prompt": prompt, "key": key, "turn": t,
                            "completion": _cut(t["resp"], 400)})
    elif task == "knowledge":
        for i in items[:n]:
            m = src.movies[i]
            ex = {"prompt": knowledge_prompt(m), "key": f"item:{i}", "plot": m.plot}
            if split == "train":
                ex["completion"] = knowledge_answer(m)
            out.append(ex)
    elif task == "general":
        if split == "train":
            return []
        out = [{"prompt": _user(g["prompt"]), "key": f"general:{g['prompt']}",
                "reference": g["answer"]} for g in general]
    for ex in out:
        ex["task"] = task
    return out


def sft_row(ex: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": ex["prompt"], "completion": [{"role": "assistant",
                                                    "content": ex["completion"]}],
            "task": ex["task"], "key": ex["key"]}


def check_answer(ex: dict[str, Any], text: str) -> bool | None:
    """Whether a sampled answer to a training example is right (None: cannot tell)."""
    t = " ".join(text.strip().split())
    task = ex["task"]
    if task == "genre":
        f1 = M.micro_f1([parse_genres(t)], [ex["gold"]])
        return True if f1 >= 0.999 else False if f1 < 0.5 else None
    if task == "plot_title":
        m = re.match(r"\(?([A-D])\b", t.upper())
        return bool(m) and m.group(1) == ex["completion"]
    if task == "rating":
        m = re.match(r"(yes|no)\b", t.lower())
        return bool(m) and m.group(1) == ex["completion"].lower()
    if task in ("next_item", "redial_rec"):
        return t.lower().strip(" .\"") == ex["completion"].lower()
    return None


# --------------------------------------------------------------------------- evaluation

def _per_token(backend, options: Sequence[Sequence[str]], scores: list[list[float]]
               ) -> list[list[float]]:
    """Log-likelihoods divided by the option's token count (end-of-turn included), so long
    titles are not ranked down for their length."""
    tok = getattr(backend, "tok", None)
    out = []
    for opts, sc in zip(options, scores):
        lens = [len(tok(o, add_special_tokens=False)["input_ids"]) + 1 if tok is not None
                else max(1, len(o.split())) for o in opts]
        out.append([s / n for s, n in zip(sc, lens)])
    return out


def evaluate(task: str, backend, examples: Sequence[dict[str, Any]], cfg: SuiteConfig, *,
             base_replies: Sequence[str] | None = None, judge=None, seed: int = 0
             ) -> tuple[dict[str, Any], list[Any]]:
    """``(metrics, outputs)`` of ``backend`` on held-out ``examples`` of ``task``. ``reply``
    needs ``base_replies`` (the base model's replies, same order) and a ``judge`` backend;
    without them (evaluating the base model itself) it returns its replies only."""
    from llmrec.llm.base import SamplingParams

    prompts = [ex["prompt"] for ex in examples]
    n = len(examples)

    def gen(max_new: int) -> list[str]:
        sp = SamplingParams(temperature=0.0, max_new_tokens=max_new, repetition_penalty=1.1)
        return [g.text for g in backend.generate(prompts, sp, seeds=[seed] * n)]

    if task == "genre":
        texts = gen(cfg.genre_tokens)
        pred = [parse_genres(t) for t in texts]
        return {"micro_f1": M.micro_f1(pred, [ex["gold"] for ex in examples]), "n": n}, texts
    if task in ("plot_title", "rating", "next_item", "redial_rec"):
        opts = [ex["options"] for ex in examples]
        scores = backend.score_options(prompts, opts)
        if task in ("next_item", "redial_rec"):
            scores = _per_token(backend, opts, scores)
        if task == "plot_title":
            acc = sum(1 for ex, s in zip(examples, scores)
                      if M.ranks_of(s, [ex["gold"]])[0] == 0) / n
            return {"accuracy": acc, "n": n}, scores
        if task == "rating":
            margin = [s[0] - s[1] for s in scores]
            labels = [ex["label"] for ex in examples]
            return {"AUC": M.auc(margin, labels), "n": n, "positives": sum(labels)}, scores
        if task == "next_item":
            return {"HR@1": _mean(M.hit_at(s, ex["gold"], 1) for ex, s in zip(examples, scores)),
                    "NDCG@10": _mean(M.ndcg_at(s, ex["gold"], 10)
                                     for ex, s in zip(examples, scores)), "n": n}, scores
        return {"Recall@1": _mean(M.recall_at(s, ex["relevant"], 1)
                                  for ex, s in zip(examples, scores)),
                "Recall@10": _mean(M.recall_at(s, ex["relevant"], 10)
                                   for ex, s in zip(examples, scores)), "n": n}, scores
    if task == "knowledge":
        from llmrec.knowledge.parse import parse_fields

        texts = gen(cfg.knowledge_tokens)
        fields = _knowledge_template().fields
        status = [parse_fields(t, fields).status for t in texts]
        return {"ok_share": status.count("ok") / n, "partial_share": status.count("partial") / n,
                "n": n}, texts
    if task == "reply":
        texts = gen(cfg.reply_tokens)
        if base_replies is None or judge is None:
            return {"n": n}, texts
        if len(base_replies) != n:
            raise ValueError(f"{len(base_replies)} base replies for {n} examples")
        convs = []
        for ex, mine, base in zip(examples, texts, base_replies):
            convs.append(judge_prompt(ex["turn"], mine, base, cfg.context_turns))
            convs.append(judge_prompt(ex["turn"], base, mine, cfg.context_turns))
        picks = judge.choose(convs, ["A", "B"])
        outcomes = []
        for k in range(n):
            first, second = picks[2 * k] == 0, picks[2 * k + 1] == 1  # "mine" chosen each time
            outcomes.append(1.0 if first and second else 0.0 if not (first or second) else 0.5)
        return {"WR_vs_base": M.win_rate(outcomes), "n": n,
                "position_consistent": sum(1 for o in outcomes if o != 0.5) / n}, texts
    if task == "general":
        texts = gen(cfg.general_tokens)
        refs = [ex["reference"] for ex in examples]
        rouge = _mean(M.rouge_l(t, r) for t, r in zip(texts, refs))
        lls = backend.score_options(prompts, [[r] for r in refs])
        tok = getattr(backend, "tok", None)
        ntok = sum(len(tok(r, add_special_tokens=False)["input_ids"]) + 1 if tok is not None
                   else len(r.split()) + 1 for r in refs)
        ppl = math.exp(-sum(s[0] for s in lls) / max(1, ntok))
        return {"rougeL_to_base": rouge, "ppl_heldout_replay": ppl, "n": n}, texts
    raise ValueError(f"unknown task {task!r}")


def _mean(xs) -> float | None:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None
