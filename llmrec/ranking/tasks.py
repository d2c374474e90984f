"""Tasks: what a ranking run learns and how it is judged, chosen by :class:`TaskConfig`.

A task owns the labels it reads, the loss, the evaluation metrics and the metric early stopping
watches (with its direction), and how an epoch is cut into batches. Models stay task-agnostic:
they return a dict (see :mod:`llmrec.ranking.models`), ``logit [B]`` for one score per sample,
``logits {task: [B]}`` for multi-task heads, ``hidden [B, H]`` with ``items [R, H]`` (one vector
per item-table row; score = hidden . items) for next-item models, and ``aux_loss`` (a scalar) for
an extra objective the trainer adds.

Built in:

- ``binary``: BCE on ``label``; AUC, gAUC (groups: ``task.group``), LogLoss; watches AUC.
- ``multitask``: weighted BCE over named labels; per-task AUC / gAUC / LogLoss and their mean;
  watches the mean AUC.
- ``regression``: MSE or Huber; MSE, RMSE, MAE; watches RMSE (lower is better).
- ``next_item``: the sample's item among every item-table row (row 0, the padding row, never
  counts); full softmax or sampled softmax with uniform negatives; evaluation ranks the target
  against the whole catalogue with the input history masked (never the target itself): rank =
  number of items scoring strictly higher, HR@k = [rank < k], NDCG@k = 1 / log2(rank + 2), mean
  over all evaluated samples; watches NDCG@10. A generative retriever that does not score every
  item returns ``ranked [B, N]`` (item rows, best first) instead of hidden / items, and its
  own training objective as ``model_loss``: the rank is then the target's position in its list
  (history rows dropped), N when the list does not hold it.
- ``listwise``: samples grouped by a list id (``group.<name>``, e.g. a query); batches hold whole
  lists; softmax cross-entropy (labels normalised per list) or a LambdaRank-style pairwise loss
  weighted by each swap's |delta nDCG|; nDCG@k (exponential gain 2^y - 1) and ERR@k; watches
  nDCG@10.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from llmrec.errors import ConfigError
from llmrec.ranking.metrics import ctr_metrics, err_at_k, ndcg_at_k, pad_groups, regression_metrics
from llmrec.ranking.task_config import TaskConfig

Forward = Callable[[torch.Tensor], dict]  # sample indices -> the model's output dict (eval mode)


def _label(batch: dict, name: str) -> torch.Tensor:
    return batch["label"] if name == "label" else batch["labels"][name]


def _check_labels(names: list[str], spec) -> None:
    bad = [n for n in names if n != "label" and n not in spec.labels]
    if bad:
        raise ConfigError(f"task.labels {bad} are not labels of the features (have: label"
                          f"{''.join(', ' + n for n in spec.labels)}); add them to features.labels")


def _with_aux(loss: torch.Tensor, out: dict) -> torch.Tensor:
    aux = out.get("aux_loss")
    return loss if aux is None else loss + aux.float()


class Task:
    """Base: one score per sample, batches are slices of a random permutation."""

    kind = ""
    default_monitor = ""

    def __init__(self, cfg: TaskConfig, spec) -> None:
        self.cfg = cfg
        self.spec = spec
        self.monitor = cfg.monitor or self.default_monitor
        mode = cfg.mode
        if mode == "auto":
            mode = "min" if self.monitor.split("@")[0].split(".")[-1] in (
                "rmse", "mse", "mae", "logloss", "loss") else "max"
        self.mode = mode

    # -- training ----------------------------------------------------------------------------
    def loss(self, out: dict, batch: dict) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def epoch_batches(self, fs, train: torch.Tensor, batch_size: int, generator: torch.Generator,
                      rank: int = 0, world: int = 1) -> list[torch.Tensor]:
        """This process's batches (sample-index tensors) for one epoch."""
        perm = torch.randperm(train.numel(), generator=generator, device=train.device)
        if world > 1:
            # equal shard sizes keep the processes' step counts (and DDP's all-reduces) aligned
            usable = train.numel() - train.numel() % world
            perm = perm[:usable][rank::world]
        return list(train[perm].split(max(1, batch_size // world)))

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, forward: Forward, fs, idx: torch.Tensor, batch_size: int) -> dict[str, float]:
        raise NotImplementedError  # pragma: no cover - abstract

    def better(self, value: float, best: float, min_delta: float) -> bool:
        if math.isnan(value):
            return False
        return value > best + min_delta if self.mode == "max" else value < best - min_delta

    @property
    def worst(self) -> float:
        return -math.inf if self.mode == "max" else math.inf

    def predict_columns(self, out: dict) -> dict[str, torch.Tensor]:
        """What ``rank predict`` writes per sample."""
        return {"score": out["logit"].float()}

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "monitor": self.monitor, "mode": self.mode}

    def _logits(self, forward: Forward, idx: torch.Tensor, batch_size: int,
                key: str = "logit") -> torch.Tensor:
        outs = [forward(chunk)[key].float() for chunk in idx.split(batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, device=idx.device)


class BinaryTask(Task):
    kind = "binary"
    default_monitor = "auc"

    def loss(self, out, batch):
        return _with_aux(F.binary_cross_entropy_with_logits(out["logit"].float(), batch["label"]),
                         out)

    def evaluate(self, forward, fs, idx, batch_size):
        logits = self._logits(forward, idx, batch_size)
        return ctr_metrics(fs.labels()[idx], logits, fs.groups(idx, self.cfg.group))

    def predict_columns(self, out):
        return {"score": torch.sigmoid(out["logit"].float())}


class MultiTask(Task):
    kind = "multitask"
    default_monitor = "auc"

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.labels = list(cfg.labels) or ["label", *spec.labels]
        _check_labels(self.labels, spec)
        self.weights = list(cfg.weights) or [1.0] * len(self.labels)
        if len(self.weights) != len(self.labels):
            raise ConfigError(f"task.weights has {len(self.weights)} values for the "
                              f"{len(self.labels)} labels {self.labels}: give one weight per label")

    def target(self, name: str, label, out: dict):
        """The 0/1 target of task ``name``: its label, times the label of the task it is
        conditioned on when the model says so (``out["ctcvr_of"]``, ESMM: click x conversion)."""
        of = out.get("ctcvr_of", {}).get(name)
        return label(name) if of is None else label(name) * label(of)

    def task_losses(self, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        """Each task's weighted loss ``w_t * L_t`` (their sum is :meth:`loss` without the model's
        ``aux_loss``): BCE on the task's target, plus, when the model returns own-only logits
        (``out["own_logits"]``, EKTM), their BCE and the hinge ``max(0, BCE - sg(BCE_own))``
        that keeps transfer from making the task worse than its own head."""
        logits, own = out["logits"], out.get("own_logits", {})
        losses = {}
        for name, w in zip(self.labels, self.weights):
            y = self.target(name, lambda n: _label(batch, n), out)
            term = F.binary_cross_entropy_with_logits(logits[name].float(), y)
            if name in own:
                own_term = F.binary_cross_entropy_with_logits(own[name].float(), y)
                term = term + own_term + F.relu(term - own_term.detach())
            losses[name] = w * term
        return losses

    def loss(self, out, batch):
        if getattr(self.cfg, "mto", "base") != "base":
            # the summed loss is mto base: a trainer that calls loss() would ignore task.mto
            raise ConfigError(f"task.mto {self.cfg.mto!r} needs a trainer that hands the "
                              f"per-task losses to llmrec.ranking.mto (or mto.attach(trainer, "
                              f"{self.cfg.mto!r})); this one sums them")
        total = None
        for term in self.task_losses(out, batch).values():
            total = term if total is None else total + term
        return _with_aux(total, out)

    def evaluate(self, forward, fs, idx, batch_size):
        outs = [forward(c) for c in idx.split(batch_size)]
        chunks = [o["logits"] for o in outs]
        groups = fs.groups(idx, self.cfg.group)
        metrics: dict[str, float] = {}
        per = {}
        for name in self.labels:
            z = torch.cat([c[name].float() for c in chunks])
            y = self.target(name, lambda n: fs.labels(n)[idx], outs[0] if outs else {})
            per[name] = ctr_metrics(y, z, groups)
            metrics.update({f"{name}.{k}": v for k, v in per[name].items() if k != "n"})
            of = (outs[0].get("ctcvr_of", {}) if outs else {}).get(name)
            if of is not None and "cvr_logits" in outs[0]:
                # ESMM's conversion head on the clicked samples only (CVR AUC)
                clicked = fs.labels(of)[idx] > 0.5
                cvr = torch.cat([o["cvr_logits"][name].float() for o in outs])
                m = ctr_metrics(fs.labels(name)[idx][clicked], cvr[clicked])
                metrics[f"{name}.cvr_auc"] = m["auc"]
                metrics[f"{name}.cvr_n"] = m["n"]
        for k in ("auc", "gauc", "logloss"):
            vals = [m[k] for m in per.values() if k in m and not math.isnan(m[k])]
            metrics[k] = sum(vals) / len(vals) if vals else float("nan")
        metrics["n"] = int(idx.numel())
        return metrics

    def predict_columns(self, out):
        return {f"score.{n}": torch.sigmoid(out["logits"][n].float()) for n in self.labels}


class RegressionTask(Task):
    kind = "regression"
    default_monitor = "rmse"

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.label = (cfg.labels or ["label"])[0]
        _check_labels([self.label], spec)

    def loss(self, out, batch):
        pred, y = out["logit"].float(), _label(batch, self.label)
        if self.cfg.loss == "huber":
            loss = F.huber_loss(pred, y, delta=self.cfg.huber_delta)
        else:
            loss = F.mse_loss(pred, y)
        return _with_aux(loss, out)

    def evaluate(self, forward, fs, idx, batch_size):
        return regression_metrics(fs.labels(self.label)[idx], self._logits(forward, idx, batch_size))

    def predict_columns(self, out):
        return {"prediction": out["logit"].float()}


class NextItemTask(Task):
    kind = "next_item"
    default_monitor = "ndcg@10"

    def loss(self, out, batch):
        if "model_loss" in out:
            # a generative model's own objective for the target (e.g. FAIR's code prediction);
            # its hidden / items (or its ranked list) define the evaluation
            if self.cfg.sequence_training:
                raise ConfigError("task.sequence_training trains every position of a window "
                                  "from hidden_seq, but this model supplies its own objective "
                                  "for the sample's item (model_loss): set "
                                  "task.sequence_training: false")
            return _with_aux(out["model_loss"].float(), out)
        if self.cfg.sequence_training and self._training_view(out):
            return _with_aux(self._sequence_loss(out, batch), out)
        hidden, items, target = out["hidden"].float(), out["items"].float(), batch["item_row"]
        users_items = batch["hist_rows"] if self.cfg.loss == "bce" else None
        return _with_aux(self._target_loss(hidden, items, target, users_items), out)

    def _target_loss(self, hidden, items, target, users_items):
        """The ``task.loss`` of states ``hidden [N, D]`` for targets ``target [N]`` over the
        item table ``items``: ``full`` softmax over the catalogue (the padding row never an
        answer); ``bce`` with one uniform negative per state, left out of the negative term
        when it is the target or one of ``users_items [N, L]`` (the user's items: SASRec's paper
        samples negatives outside the user's sequence); ``sampled`` softmax over the target and
        ``n_negatives`` uniform negatives shared by the batch (one equal to the target masked)."""
        if self.cfg.loss == "bce":
            neg = torch.randint(1, items.shape[0], target.shape, device=hidden.device)
            ok = (neg != target) & ~(neg[:, None] == users_items).any(1)
            pos = (hidden * items[target]).sum(1)
            negs = (hidden * items[neg]).sum(1)
            return (F.softplus(-pos) + F.softplus(negs) * ok.to(negs.dtype)).mean()
        if self.cfg.loss == "sampled":
            neg = torch.randint(1, items.shape[0], (self.cfg.n_negatives,), device=hidden.device)
            pos = (hidden * items[target]).sum(1, keepdim=True)
            negs = (hidden @ items[neg].T).masked_fill(neg[None] == target[:, None], float("-inf"))
            return F.cross_entropy(torch.cat([pos, negs], 1), torch.zeros_like(target))
        logits = hidden @ items.T
        logits[:, 0] = float("-inf")
        return F.cross_entropy(logits, target)

    def epoch_batches(self, fs, train, batch_size, generator, rank=0, world=1):
        # a next-item sample needs at least one behaviour to predict from
        train = train[fs.tensors["hist_rows"][train, 0] > 0]
        if self.cfg.sequence_training:
            train = sequence_samples(fs, train)
        return super().epoch_batches(fs, train, batch_size, generator, rank, world)

    @staticmethod
    def _training_view(out) -> bool:
        if "hidden_seq" not in out:
            raise ConfigError("task.sequence_training needs a model that returns every "
                              "position's state (hidden_seq), such as sasrec")
        return True

    def _sequence_loss(self, out, batch):
        """Every valid position j of each window predicts the item after it: behaviour j + 1, or
        the sample's own item for the most recent behaviour; each position's state takes the
        task's loss as a sample would (:meth:`_target_loss`), the user's items being the
        window's behaviours and its target."""
        states, items = out["hidden_seq"].float(), out["items"].float()
        hist = batch["hist_rows"]
        n = (hist > 0).sum(1)
        nxt = torch.cat([hist[:, 1:], torch.zeros_like(hist[:, :1])], 1)
        j = torch.arange(hist.shape[1], device=hist.device)[None]
        target = torch.where(j == (n - 1)[:, None], batch["item_row"][:, None], nxt)
        valid = j < n[:, None]
        users_items = torch.cat([hist, batch["item_row"][:, None]], 1)
        # the user's items per position: row b's, for each of its valid positions
        per_position = users_items[valid.nonzero()[:, 0]] if self.cfg.loss == "bce" else None
        return self._target_loss(states[valid], items, target[valid], per_position)

    def evaluate(self, forward, fs, idx, batch_size):
        ks = sorted(self.cfg.ks)
        sums = {f"{m}@{k}": torch.zeros((), dtype=torch.float64, device=idx.device)
                for k in ks for m in ("hr", "ndcg")}
        for chunk in idx.split(batch_size):
            out = forward(chunk)
            if "ranked" in out:  # a generative retriever's own ranked list (e.g. TIGER's beam)
                ranked = out["ranked"]
                if ranked.shape[1] < ks[-1]:
                    raise ConfigError(f"the model returns ranked lists of {ranked.shape[1]} "
                                      f"items, fewer than the cutoff {ks[-1]} of task.ks: raise "
                                      f"its beam size (model_args.beam_size) to at least {ks[-1]}")
                rank = ranked_list_rank(ranked, fs.tensors["item_row"][chunk],
                                        fs.tensors["hist_rows"][chunk])
                for name, value in rank_metric_sums(rank, ks).items():
                    sums[name] += value
                continue
            hidden, items = out["hidden"].float(), out["items"].float()
            # score [rows, catalogue] blocks of about 2^27 scores (0.5 GB in fp32) at a time
            rows = max(1, (1 << 27) // max(items.shape[0], 1))
            for start in range(0, chunk.numel(), rows):
                part = chunk[start:start + rows]
                scores = hidden[start:start + rows] @ items.T
                rank = full_ranking_rank(scores, fs.tensors["item_row"][part],
                                         fs.tensors["hist_rows"][part])
                for name, value in rank_metric_sums(rank, ks).items():
                    sums[name] += value
        n = max(int(idx.numel()), 1)
        metrics = {k: float(v) / n for k, v in sums.items()}
        metrics["n"] = int(idx.numel())
        return metrics

    def predict_columns(self, out):
        if "ranked" in out:
            k = min(max(self.cfg.ks), out["ranked"].shape[1])
            return {"top_rows": out["ranked"][:, :k], "top_scores": out["ranked_scores"][:, :k]}
        scores = out["hidden"].float() @ out["items"].float().T
        scores[:, 0] = float("-inf")
        top = scores.topk(min(max(self.cfg.ks), scores.shape[1] - 1), dim=1)
        return {"top_rows": top.indices, "top_scores": top.values}


def sequence_samples(fs, train: torch.Tensor) -> torch.Tensor:
    """The training samples whose windows cover every training target once: per user, the last
    training position, and for users longer than the window, the positions ``max_hist_len``
    earlier, and so on (each window's positions predict their next items)."""
    users = fs.tensors["user_row"][train]
    pos = fs.tensors["position"][train]
    last = torch.full((int(users.max()) + 1,), -1, dtype=pos.dtype, device=pos.device)
    last = last.scatter_reduce(0, users, pos, reduce="amax")
    L = max(fs.spec.max_hist_len, 1)
    keep = ((last[users] - pos) % L) == 0
    return train[keep]


def rank_metric_sums(rank: torch.Tensor, ks) -> dict[str, torch.Tensor]:
    """Sums over a batch of 0-based ranks of HR@k = [rank < k] and NDCG@k = 1 / log2(rank + 2)
    (0 beyond k), as float64 scalars on the ranks' device: ``{"hr@k": ..., "ndcg@k": ...}``."""
    out = {}
    zero = torch.zeros((), dtype=torch.float64, device=rank.device)
    for k in ks:
        hit = rank < k
        out[f"hr@{k}"] = hit.double().sum()
        out[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(rank.double() + 2), zero).sum()
    return out


def ranked_list_rank(ranked: torch.Tensor, target: torch.Tensor,
                     history: torch.Tensor) -> torch.Tensor:
    """0-based rank of ``target [B]`` in a model's ranked list ``ranked [B, N]`` of item rows
    (best first; 0 = an empty slot): the number of entries before it that are items, neither
    padding nor rows of ``history [B, L]`` (the protocol's masking, applied here whatever the
    model did; the target itself is never dropped). A target the list does not hold ranks after
    it, rank N: a miss at every cutoff k <= N."""
    listed = ranked > 0
    listed &= ~(ranked[:, :, None] == history[:, None, :]).any(2) | (ranked == target[:, None])
    at = ranked == target[:, None]
    found = at.any(1)
    first = at.to(torch.int8).argmax(1)
    before = torch.arange(ranked.shape[1], device=ranked.device)[None] < first[:, None]
    rank = (listed & before).sum(1)
    return torch.where(found, rank, torch.full_like(rank, ranked.shape[1]))


def full_ranking_rank(scores: torch.Tensor, target: torch.Tensor,
                      history: torch.Tensor) -> torch.Tensor:
    """0-based rank of ``target [B]`` among all item rows by ``scores [B, R]``: the number of
    items scoring strictly higher, with row 0 (padding) and the rows of ``history [B, L]`` (0 =
    padding) masked. The target is never masked: its score is read before masking."""
    target_score = scores.gather(1, target[:, None])
    masked = scores.clone()
    masked[:, 0] = float("-inf")
    masked.scatter_(1, history, float("-inf"))
    return (masked > target_score).sum(1)


class ListwiseTask(Task):
    kind = "listwise"
    default_monitor = "ndcg@10"

    def __init__(self, cfg, spec):
        super().__init__(cfg, spec)
        self.label = (cfg.labels or ["label"])[0]
        _check_labels([self.label], spec)
        if cfg.group != "user" and cfg.group not in spec.groups:
            raise ConfigError(f"task.group {cfg.group!r} is not a group of the features (have: "
                              f"user{''.join(', ' + g for g in spec.groups)}); add the column to "
                              f"features.groups")
        self.max_grade = cfg.max_grade

    def _gid(self, batch):
        return batch["user_row"] if self.cfg.group == "user" else batch["groups"][self.cfg.group]

    def epoch_batches(self, fs, train, batch_size, generator, rank=0, world=1):
        """Whole lists per batch: lists in random order, packed until ``batch_size`` samples."""
        g = fs.groups(train, self.cfg.group)
        order = train[torch.argsort(g, stable=True)]
        _, counts = torch.unique_consecutive(fs.groups(order, self.cfg.group), return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        perm = torch.randperm(counts.numel(), generator=generator, device=train.device)
        per_process = max(1, batch_size // world)

        def batch_ids(c):  # consecutive batch id per list, lists packed greedily
            offset = torch.cumsum(c, 0) - c
            return torch.unique_consecutive(offset // per_process, return_inverse=True)[1]

        n_batches = None
        if world > 1:
            usable = counts.numel() - counts.numel() % world
            perm = perm[:usable]
            # lists differ in length, so the shards would differ in batches: every process
            # computes every shard's count (same permutation) and merges its surplus batches into
            # its last one, so all take the same number of steps (DDP's all-reduces line up)
            n_batches = min(int(batch_ids(counts[perm[r::world]]).max()) + 1 if usable else 0
                            for r in range(world))
            perm = perm[rank::world]
        c, s = counts[perm], starts[perm]
        offset = torch.cumsum(c, 0) - c
        within = torch.arange(int(c.sum()), device=train.device) - torch.repeat_interleave(offset, c)
        idx = order[torch.repeat_interleave(s, c) + within]
        batch_of = batch_ids(c)
        if n_batches is not None:
            batch_of = batch_of.clamp_max(max(n_batches - 1, 0))
        sizes = torch.bincount(batch_of, weights=c.double()).long()
        return [b for b in idx.split(sizes.tolist()) if b.numel()]

    def loss(self, out, batch):
        scores, labels, mask = pad_groups(out["logit"].float(), _label(batch, self.label),
                                          self._gid(batch))
        if self.cfg.loss == "lambda":
            loss = lambda_loss(scores, labels, mask)
        else:
            loss = softmax_list_loss(scores, labels, mask)
        return _with_aux(loss, out)

    def evaluate(self, forward, fs, idx, batch_size):
        # evaluation lists must be whole: sort by list id, score in chunks, pad once
        g = fs.groups(idx, self.cfg.group)
        idx = idx[torch.argsort(g, stable=True)]
        scores = self._logits(forward, idx, batch_size)
        s, y, m = pad_groups(scores, fs.labels(self.label)[idx], fs.groups(idx, self.cfg.group))
        max_grade = self.max_grade if self.max_grade is not None else \
            float(fs.labels(self.label)[fs.split_index("train")].max())
        out: dict[str, float] = {}
        for k in sorted(self.cfg.ks):
            out[f"ndcg@{k}"] = ndcg_at_k(s, y, m, k)
            out[f"err@{k}"] = err_at_k(s, y, m, k, max_grade)
        out["n_lists"] = int(s.shape[0])
        out["n"] = int(idx.numel())
        return out


def softmax_list_loss(scores, labels, mask):
    """Cross-entropy between each list's score softmax and its labels normalised to sum 1;
    lists without a positive label are skipped."""
    logp = torch.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
    y = labels.clamp_min(0) * mask
    total = y.sum(1, keepdim=True)
    keep = total.squeeze(1) > 0
    if not bool(keep.any()):
        return scores.sum() * 0.0
    target = y[keep] / total[keep]
    return -(target * logp[keep].masked_fill(~mask[keep], 0.0)).sum(1).mean()


def lambda_loss(scores, labels, mask):
    """LambdaRank-style loss: for pairs with y_i > y_j in a list, log(1 + exp(-(s_i - s_j)))
    weighted by |delta nDCG| of swapping them at the current ranking (exponential gain)."""
    neg_inf = torch.finfo(scores.dtype).min
    s = scores.masked_fill(~mask, neg_inf)
    order = torch.argsort(s.detach(), dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(s.shape[1], device=s.device).expand_as(order))
    disc = 1.0 / torch.log2(rank.float() + 2)
    gain = (2 ** labels.clamp_min(0) - 1) * mask
    ideal = torch.sort(gain, dim=1, descending=True).values
    idcg = (ideal / torch.log2(torch.arange(s.shape[1], device=s.device).float() + 2)).sum(1)
    pair = (labels[:, :, None] > labels[:, None, :]) & mask[:, :, None] & mask[:, None, :]
    pair &= (idcg > 0)[:, None, None]
    if not bool(pair.any()):
        return scores.sum() * 0.0
    delta = ((gain[:, :, None] - gain[:, None, :]) * (disc[:, :, None] - disc[:, None, :])).abs()
    delta = delta / idcg.clamp_min(1e-12)[:, None, None]
    diff = scores[:, :, None] - scores[:, None, :]
    return (F.softplus(-diff) * delta.detach())[pair].sum() / pair.sum()


TASKS: dict[str, type[Task]] = {
    "binary": BinaryTask, "multitask": MultiTask, "regression": RegressionTask,
    "next_item": NextItemTask, "listwise": ListwiseTask,
}


def build_task(cfg: TaskConfig, spec) -> Task:
    return TASKS[cfg.kind](cfg, spec)
