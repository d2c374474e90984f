"""The score model g(q, d) -> {0, 1, 2, 3}, trained on seed pairs and calibrated per level.

Two kinds:

- ``cross-encoder`` (default): MiniLM (or any BERT-like folder) with a 4-way classification head
  over ``[CLS] query [SEP] document``, fine-tuned with class-weighted cross-entropy (the seed data
  is skewed towards levels 0 and 3, and an unweighted head learns to never say 1 or 2), on top of
  a bi-encoder prior (see :class:`CrossEncoderScorer`);
- ``llm``: the LLM prompted with the level definitions (``prompts/synth/grade.jinja``); its logits
  are the log-likelihoods of the answers "0".."3" (``LLMBackend.score_options``), so the answer is
  always a valid level. It is not fine-tuned; the seed pairs only calibrate it.

Calibration, both kinds: the seed *queries* are split into a training part and a calibration
part (``calib_fraction``, by query so that calibration pairs are unseen). On the calibration pairs
a temperature T and one bias per level b_s are fitted, p(s | q, d) = softmax(z / T + b)_s, by
minimising the negative log-likelihood; with ``calibration=balanced`` every level's pairs weigh
the same in that likelihood, so a level that is rare in the seed data is not predicted less often
merely for being rare. The fitted values are saved with the model and reported.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from llmrec.config import option
from llmrec.llm.config import LLMConfig
from llmrec.synth.levels import LEVEL_DEFINITIONS, LEVELS

log = logging.getLogger(__name__)

CONFIG_FILE = "score_model.json"


@dataclass
class ScoreModelConfig:
    """How g is built, trained and calibrated."""

    kind: Literal["cross-encoder", "llm"] = option(
        "cross-encoder", help="cross-encoder: MiniLM + 4-way head fine-tuned on the seed pairs; "
                              "llm: the prompted LLM classifier (llm.*), calibrated only")
    model: str = option("minilm", help="cross-encoder: base encoder, 'minilm' (the packaged "
                        "all-MiniLM-L6-v2) or a local transformers / sentence-transformers folder")
    prior: bool = option(
        True, help="cross-encoder: add a per-level linear function of the base model's "
                   "bi-encoder cosine to the logits, fitted before fine-tuning (a strong start "
                   "when there are only a few hundred seed pairs)")
    epochs: float = option(2.0, help="cross-encoder: passes over the training seed pairs")
    learning_rate: float = option(5e-5, help="cross-encoder: peak AdamW learning rate")
    batch_size: int = option(16, help="cross-encoder: pairs per training / scoring batch")
    max_length: int = option(256, help="cross-encoder: token limit of query + document")
    class_weighting: Literal["balanced", "none"] = option(
        "balanced", help="cross-encoder loss weights: balanced = inverse level frequency")
    calibration: Literal["balanced", "nll", "none"] = option(
        "balanced", help="per-level calibration on the held-out seed queries: balanced (levels "
                         "weigh equally), nll (plain likelihood) or none")
    calib_fraction: float = option(
        0.2, help="share of the seed queries kept out of training to calibrate g (at least one)")
    seed: int = option(0, help="seed of the calibration split, head initialisation and shuffling")
    llm: LLMConfig = option(default_factory=LLMConfig, help="kind=llm: the LLM classifier")
    prompt: str = option("grade", help="kind=llm: prompt template (prompts/synth/<name>.jinja)")
    max_doc_words: int = option(150, help="kind=llm: words of the document shown in the prompt")

    def __post_init__(self) -> None:
        if not 0 < self.calib_fraction < 1:
            raise ValueError("calib_fraction must be in (0, 1)")
        if self.batch_size < 1 or self.max_length < 8:
            raise ValueError("batch_size must be >= 1 and max_length >= 8")


# ------------------------------------------------------------------------------------------------
# calibration
# ------------------------------------------------------------------------------------------------

def fit_calibration(logits: np.ndarray, labels: Sequence[int], mode: str = "balanced",
                    l2: float = 1e-2, steps: int = 200) -> dict[str, Any]:
    """Temperature and per-level biases minimising the (level-balanced) NLL of ``labels``.

    A small L2 penalty on the biases and on log T keeps a level that is absent from the
    calibration pairs from being pushed to minus infinity, and a few calibration pairs from
    sharpening the model without bound.
    """
    import torch

    if mode == "none":
        return {"temperature": 1.0, "bias": [0.0] * len(LEVELS), "mode": "none"}
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    counts = torch.bincount(y, minlength=len(LEVELS)).to(torch.float64)
    if mode == "balanced":
        w_level = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
        w = w_level[y]
    else:
        w = torch.ones_like(y, dtype=torch.float64)
    w = w / w.sum()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(len(LEVELS), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t, bias], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logp = torch.log_softmax(z / log_t.exp() + bias, dim=-1)
        loss = -(w * logp[torch.arange(len(y)), y]).sum() + l2 * ((bias ** 2).sum() + log_t ** 2)
        loss.backward()
        return loss

    opt.step(closure)
    return {"temperature": float(log_t.detach().exp()), "bias": bias.detach().tolist(),
            "mode": mode}


def apply_calibration(logits: np.ndarray, calibration: dict[str, Any]) -> np.ndarray:
    """Calibrated probabilities softmax(z / T + b)."""
    z = np.asarray(logits, dtype=np.float64) / float(calibration.get("temperature", 1.0))
    z = z + np.asarray(calibration.get("bias", [0.0] * len(LEVELS)), dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------

class ScoreModel:
    """A trained g: raw logits from a scorer, calibrated probabilities, levels."""

    def __init__(self, scorer: Any, calibration: dict[str, Any] | None = None,
                 info: dict[str, Any] | None = None) -> None:
        self.scorer = scorer
        self.calibration = calibration or {"temperature": 1.0, "bias": [0.0] * 4, "mode": "none"}
        self.info = dict(info or {})

    def logits(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        if len(queries) != len(docs):
            raise ValueError(f"{len(queries)} queries for {len(docs)} documents")
        if not len(queries):
            return np.zeros((0, len(LEVELS)))
        return self.scorer.logits(list(queries), list(docs))

    def proba(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        return apply_calibration(self.logits(queries, docs), self.calibration)

    def predict(self, queries: Sequence[str], docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(levels, calibrated probabilities) of each pair."""
        p = self.proba(queries, docs)
        return p.argmax(axis=-1), p

    def identity(self) -> dict[str, Any]:
        return {"kind": self.scorer.kind, **self.scorer.identity(),
                "calibration": self.calibration}

    def save(self, path: str | Path, config: Any = None, **provenance: Any) -> Path:
        from llmrec.artifacts import atomic_dir, write_json_atomic, write_meta

        path = Path(path)
        with atomic_dir(path) as tmp:
            self.scorer.save(tmp)
            write_json_atomic(tmp / CONFIG_FILE, {"kind": self.scorer.kind,
                                                  "scorer": self.scorer.state(),
                                                  "calibration": self.calibration,
                                                  "info": self.info})
            write_meta(tmp, config, stage="score_model", **provenance)
        return path

    @classmethod
    def load(cls, path: str | Path, llm: LLMConfig | None = None) -> "ScoreModel":
        from llmrec.errors import DataError

        path = Path(path)
        if not (path / CONFIG_FILE).is_file():
            raise DataError(f"{path} is not a saved score model (no {CONFIG_FILE}); train one with "
                            f"`llmrec synth score`")
        state = json.loads((path / CONFIG_FILE).read_text())
        if state["kind"] == "cross-encoder":
            scorer = CrossEncoderScorer.from_folder(path / "model", **state["scorer"])
        else:
            scorer = LLMScorer.from_state(state["scorer"], llm)
        return cls(scorer, state["calibration"], state.get("info"))

    def close(self) -> None:
        close = getattr(self.scorer, "close", None)
        if close:
            close()


class CrossEncoderScorer:
    """A BERT-like encoder with a 4-way head over the (query, document) pair, plus an optional
    bi-encoder prior.

    With ``prior`` set, the logits are ``head(CE(q, d)) + w * cos(q, d) + c``: ``cos`` is the
    cosine similarity of the *base* model used as a bi-encoder (all-MiniLM-L6-v2 is one), and the
    per-level ``w, c`` are fitted first, by class-weighted logistic regression of the level on
    ``cos``, then frozen while the cross-encoder learns the rest. A cross-encoder started from a
    bi-encoder checkpoint with a new head needs far more than a few hundred seed pairs to beat
    that cosine; the prior gives it the cosine to start from.
    """

    kind = "cross-encoder"

    def __init__(self, model: Any, tokenizer: Any, max_length: int, batch_size: int,
                 base: str, prior: dict[str, list[float]] | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.base = base
        self.prior = prior  # {"weight": [4], "bias": [4]} once fitted; None = no prior
        self._prior_model = None

    @classmethod
    def from_base(cls, base: str, max_length: int, batch_size: int, seed: int = 0):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from llmrec.models import resolve_embedder

        folder = resolve_embedder(base)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the new head's initial weights
            model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), num_labels=len(LEVELS), dtype=torch.float32)
        return cls(model, tokenizer, max_length, batch_size, base=str(folder))

    @classmethod
    def from_folder(cls, folder: Path, max_length: int, batch_size: int, base: str,
                    prior: dict[str, list[float]] | None = None, **_: Any):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForSequenceClassification.from_pretrained(str(folder))
        return cls(model, tokenizer, max_length, batch_size, base, prior)

    def _encode(self, queries: Sequence[str], docs: Sequence[str]):
        return self.tokenizer(list(queries), list(docs), truncation="only_second",
                              max_length=self.max_length, padding=True, return_tensors="pt")

    # -- the bi-encoder prior --------------------------------------------------------------------
    def cosine(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each pair under the base model used as a bi-encoder."""
        from sentence_transformers import SentenceTransformer

        if self._prior_model is None:
            self._prior_model = SentenceTransformer(self.base, device=str(self.model.device))
            self._prior_model.max_seq_length = self.max_length
        texts = sorted(set(queries) | set(docs))
        vecs = self._prior_model.encode(texts, batch_size=self.batch_size * 2,
                                        normalize_embeddings=True, convert_to_numpy=True)
        index = {t: i for i, t in enumerate(texts)}
        q = vecs[[index[t] for t in queries]]
        d = vecs[[index[t] for t in docs]]
        return np.sum(q * d, axis=1)

    def fit_prior(self, cos: np.ndarray, labels: Sequence[int], weight: np.ndarray) -> None:
        """Class-weighted multinomial logistic regression of the level on the cosine."""
        import torch

        x = torch.as_tensor(cos, dtype=torch.float64)[:, None]
        y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        w = torch.nn.Parameter(torch.zeros(len(LEVELS), dtype=torch.float64))
        c = torch.nn.Parameter(torch.zeros(len(LEVELS), dtype=torch.float64))
        cw = torch.as_tensor(weight, dtype=torch.float64)
        opt = torch.optim.LBFGS([w, c], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x * w + c, y, weight=cw)
            loss = loss + 1e-4 * (w ** 2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        self.prior = {"weight": w.detach().tolist(), "bias": c.detach().tolist()}

    def _prior_logits(self, cos: np.ndarray) -> np.ndarray:
        if self.prior is None:
            return np.zeros((len(cos), len(LEVELS)))
        return cos[:, None] * np.asarray(self.prior["weight"]) + np.asarray(self.prior["bias"])

    # -- scoring and training --------------------------------------------------------------------
    def logits(self, queries: list[str], docs: list[str]) -> np.ndarray:
        import torch

        from llmrec.progress import progress

        self.model.eval()
        # longest first: little padding inside a batch, and memory trouble shows up at once
        order = sorted(range(len(queries)), key=lambda i: -(len(queries[i]) + len(docs[i])))
        out = np.zeros((len(queries), len(LEVELS)), dtype=np.float64)
        starts = range(0, len(order), self.batch_size)
        with torch.no_grad():
            for s in progress(starts, desc="g: scoring pairs", unit="batch"):
                idx = order[s:s + self.batch_size]
                batch = self._encode([queries[i] for i in idx], [docs[i] for i in idx])
                out[idx] = self.model(**batch).logits.float().numpy()
        if self.prior is not None:
            out += self._prior_logits(self.cosine(queries, docs))
        return out

    def train(self, queries: list[str], docs: list[str], labels: list[int], epochs: float,
              lr: float, class_weighting: str, seed: int, prior: bool = True) -> dict[str, Any]:
        """(Fit the prior, then) fine-tune on the pairs; returns a summary of the run."""
        import torch

        from llmrec.progress import progress

        y_all = torch.tensor(labels, dtype=torch.long)
        counts = torch.bincount(y_all, minlength=len(LEVELS)).float()
        if class_weighting == "balanced":
            weight = torch.where(counts > 0, counts.sum() / (len(LEVELS) * counts.clamp(min=1)),
                                 torch.zeros_like(counts))
        else:
            weight = torch.ones(len(LEVELS))
        summary: dict[str, Any] = {"class_weights": [float(w) for w in weight]}
        prior_logits = torch.zeros((len(labels), len(LEVELS)))
        if prior:
            cos = self.cosine(queries, docs)
            self.fit_prior(cos, labels, weight.numpy())
            prior_logits = torch.as_tensor(self._prior_logits(cos), dtype=torch.float32)
            summary["prior"] = self.prior
            summary["prior_train_accuracy"] = float(
                np.mean(prior_logits.argmax(-1).numpy() == np.asarray(labels)))
        n = len(labels)
        steps_per_epoch = -(-n // self.batch_size)
        total = max(1, int(round(epochs * steps_per_epoch)))
        opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.01)
        warmup = max(1, total // 10)
        # linear warm-up over the first tenth, then linear decay to zero
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(
            (step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup))))
        gen = torch.Generator().manual_seed(seed)
        losses: list[float] = []
        order: list[int] = []
        self.model.train()
        bar = progress(range(total), desc="g: training", unit="step")
        # an LLM backend loaded earlier in the process may have switched autograd off globally
        with torch.enable_grad():
            for _ in bar:
                if len(order) < self.batch_size:
                    order += torch.randperm(n, generator=gen).tolist()
                idx, order = order[:self.batch_size], order[self.batch_size:]
                batch = self._encode([queries[i] for i in idx], [docs[i] for i in idx])
                logits = self.model(**batch).logits + prior_logits[idx]
                loss = torch.nn.functional.cross_entropy(logits, y_all[idx], weight=weight)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad()
                losses.append(loss.item())
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                if len(losses) % 25 == 0:  # a trace in logs, where no progress bar is shown
                    log.info("g: step %d/%d, loss %.3f", len(losses), total,
                             float(np.mean(losses[-25:])))
        self.model.eval()
        return {**summary, "steps": total, "first_loss": losses[0], "last_loss": losses[-1]}

    def save(self, folder: Path) -> None:
        self.model.save_pretrained(folder / "model")
        self.tokenizer.save_pretrained(folder / "model")

    def state(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "batch_size": self.batch_size, "base": self.base,
                "prior": self.prior}

    def identity(self) -> dict[str, Any]:
        return {"base": self.base, "prior": self.prior is not None}


class LLMScorer:
    """The prompted LLM classifier: logits = log-likelihood of answering "0".."3"."""

    kind = "llm"

    def __init__(self, backend: Any, llm_cfg: LLMConfig, prompt_name: str, max_doc_words: int):
        from llmrec.synth.prompts import load_prompt

        self.backend = backend
        self.llm_cfg = llm_cfg
        self.prompt = load_prompt(prompt_name)
        self.max_doc_words = max_doc_words

    @classmethod
    def from_config(cls, llm_cfg: LLMConfig, prompt_name: str, max_doc_words: int):
        from llmrec.llm import load_backend

        return cls(load_backend(llm_cfg), llm_cfg, prompt_name, max_doc_words)

    @classmethod
    def from_state(cls, state: dict[str, Any], llm: LLMConfig | None):
        from llmrec.config import from_dict

        cfg = llm or from_dict(LLMConfig, state["llm"])
        return cls.from_config(cfg, state["prompt"], state["max_doc_words"])

    def conversations(self, queries: list[str], docs: list[str]) -> list[list[dict[str, str]]]:
        from llmrec.synth.prompts import shorten

        defs = sorted(LEVEL_DEFINITIONS.items(), reverse=True)
        return [self.prompt.messages(definitions=defs, query=q,
                                     document=shorten(d, self.max_doc_words))
                for q, d in zip(queries, docs)]

    def logits(self, queries: list[str], docs: list[str]) -> np.ndarray:
        convs = self.conversations(queries, docs)
        scores = self.backend.score_options(convs, [str(lv) for lv in LEVELS])
        return np.asarray(scores, dtype=np.float64)

    def save(self, folder: Path) -> None:
        pass  # nothing but the state: the LLM is named by its config

    def state(self) -> dict[str, Any]:
        from llmrec.config import to_dict

        return {"llm": to_dict(self.llm_cfg), "prompt": self.prompt.name,
                "max_doc_words": self.max_doc_words}

    def identity(self) -> dict[str, Any]:
        return {**self.backend.identity(), "prompt": self.prompt.identity()}

    def close(self) -> None:
        self.backend.close()


def split_calibration(query_ids: Sequence[str], fraction: float, seed: int) -> set[str]:
    """The seed query ids kept for calibration: ``fraction`` of them (at least one, not all)."""
    unique = sorted(set(map(str, query_ids)))
    if len(unique) < 2:
        from llmrec.errors import DataError

        raise DataError("g needs at least two seed queries: one to train on, one to calibrate")
    n_cal = min(len(unique) - 1, max(1, int(round(fraction * len(unique)))))
    rng = random.Random(seed)
    rng.shuffle(unique)
    return set(unique[:n_cal])


def train_score_model(cfg: ScoreModelConfig, seed_pairs, doc_text: dict[str, str]) -> ScoreModel:
    """Train (cross-encoder) and calibrate g on the seed pairs (query_id, query, doc_id, grade)."""
    cal_ids = split_calibration(seed_pairs["query_id"], cfg.calib_fraction, cfg.seed)
    is_cal = seed_pairs["query_id"].astype(str).isin(cal_ids)
    train, cal = seed_pairs[~is_cal], seed_pairs[is_cal]
    docs = lambda df: [doc_text[d] for d in df["doc_id"]]  # noqa: E731
    info: dict[str, Any] = {"train_pairs": len(train), "calib_pairs": len(cal),
                            "calib_queries": sorted(cal_ids)}
    if cfg.kind == "cross-encoder":
        scorer = CrossEncoderScorer.from_base(cfg.model, cfg.max_length, cfg.batch_size, cfg.seed)
        log.info("training g (cross-encoder from %s) on %d seed pairs, calibrating on %d",
                 scorer.base, len(train), len(cal))
        info["training"] = scorer.train(train["query"].tolist(), docs(train),
                                        train["grade"].astype(int).tolist(), cfg.epochs,
                                        cfg.learning_rate, cfg.class_weighting, cfg.seed,
                                        prior=cfg.prior)
    else:
        scorer = LLMScorer.from_config(cfg.llm, cfg.prompt, cfg.max_doc_words)
        # the LLM classifier is not trained: every seed pair may calibrate it
        cal = seed_pairs
        info["calib_pairs"] = len(cal)
    model = ScoreModel(scorer, info=info)
    raw = model.logits(cal["query"].tolist(), docs(cal))
    model.calibration = fit_calibration(raw, cal["grade"].astype(int).tolist(), cfg.calibration)
    from llmrec.synth.metrics import agreement

    before = agreement(raw.argmax(-1), cal["grade"].astype(int).tolist())
    after = agreement(apply_calibration(raw, model.calibration).argmax(-1),
                      cal["grade"].astype(int).tolist())
    info["calibration_pairs_agreement"] = {"raw": before, "calibrated": after}
    log.info("g calibrated: T=%.2f bias=%s; calibration-pair accuracy %.3f -> %.3f",
             model.calibration["temperature"],
             [round(b, 2) for b in model.calibration["bias"]], before["accuracy"],
             after["accuracy"])
    return model
