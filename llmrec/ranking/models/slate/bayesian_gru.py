"""Bayesian GRU slate model: a GRU user state over the clicked items, Gaussian item vectors.

Eide, Leslie and Frigessi, "Dynamic Slate Recommendation with Gated Recurrent Units and Thompson
Sampling", Data Mining and Knowledge Discovery 2022 (the FINN.no slates study).

Data layout (FINN.no ``data.npz`` convention): item row 0 is padding, row 1 the no-click
option, rows 2.. are items. A batch holds, per user, ``T`` steps of a shown ``slate [B, T, S]``
(0 = empty slot) and the row clicked at each step ``click [B, T]`` (1 = no click, 0 = a padded
step that is not part of the data).

Model:

- item vectors ``v_i ~ q(v_i) = N(m_i, diag(s_i^2))`` (mean-field, reparameterised), with the
  hierarchical prior ``v_i ~ N(mu_g(i), sigma_g(i)^2 I)`` around a per-group mean; the group
  means get an ``N(0, prior_group_scale^2)`` prior and the group scales an
  ``N(0, prior_group_scale^2)`` prior on their softplus value (both MAP estimates);
- the user state ``z_t = GRU(z_{t-1}, v_{click_{t-1}})`` from a per-user start ``h0_u``
  (``N(0, prior_user_scale^2)`` prior, MAP) through GRU weights with an
  ``N(0, prior_gru_scale^2)`` prior (MAP); the no-click row has a vector too, so a step without a
  click still moves the state;
- score(z, v) = z . v (``score="dot"``) or -||z - v|| (``score="euclid"``, the original's
  default), times a learned positive scale ``a``.

Likelihoods: ``slate``: a softmax over the shown slate plus the no-click option, whose logit is
a learned bias per slate length; ``all_items``: the shown slate is replaced by ``n_candidates``
items drawn uniformly from the catalogue (plus the clicked item when there is one), the
no-click option with one learned bias. The loss is the mean negative log-likelihood per observed
step plus ``kl_weight`` x (KL(q || prior) + the negative log-priors of the MAP parameters)
divided by the number of observed steps of the whole data set (``n_data``), i.e. the negative
ELBO per step with a tempered prior term.

Only the item vectors are sampled: Thompson sampling (:mod:`llmrec.slates.policies`) draws them
from ``q`` and scores every item against the user state computed with the posterior means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.errors import ConfigError

PAD, NO_CLICK = 0, 1


@dataclass
class SlateSpec:
    """What a slate model is sized for: item rows (0 = padding, 1 = no click, 2.. = items),
    users, the longest slate and the group of every item row (``None``: a single group)."""

    n_items: int
    n_users: int
    max_slate_len: int
    item_group: list[int] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.n_items < 3:
            raise ConfigError(f"SlateSpec.n_items is {self.n_items}: it counts rows 0 (padding) "
                              f"and 1 (no click) plus at least one item")
        if self.item_group is not None and len(self.item_group) != self.n_items:
            raise ConfigError(f"SlateSpec.item_group has {len(self.item_group)} entries for "
                              f"{self.n_items} item rows: give one group per row (rows 0 and 1 "
                              f"included)")

    @property
    def n_groups(self) -> int:
        return 1 if self.item_group is None else max(self.item_group) + 1

    def to_dict(self) -> dict:
        return {"n_items": self.n_items, "n_users": self.n_users,
                "max_slate_len": self.max_slate_len, "item_group": self.item_group}


def _inv_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))


class BayesianGRUSlate(nn.Module):
    def __init__(self, spec: SlateSpec, hidden_dim: int = 25, score: str = "dot",
                 likelihood: str = "slate", n_candidates: int = 25, particles: int = 1,
                 prior_group_scale: float = 5.0, prior_user_scale: float = 0.5,
                 prior_gru_scale: float = 5.0, init_scale: float = 0.05,
                 kl_weight: float = 1.0, user_init: str = "user") -> None:
        super().__init__()
        if score not in ("dot", "euclid"):
            raise ConfigError(f"score must be dot or euclid, not {score!r}")
        if likelihood not in ("slate", "all_items"):
            raise ConfigError(f"likelihood must be slate or all_items, not {likelihood!r}")
        if user_init not in ("user", "shared"):
            raise ConfigError(f"user_init must be user or shared, not {user_init!r}")
        if particles < 1 or n_candidates < 1:
            raise ConfigError("particles and n_candidates must be >= 1")
        self.spec = spec
        self.dim = hidden_dim
        self.score_kind = score
        self.likelihood = likelihood
        self.n_candidates = n_candidates
        self.particles = particles
        self.prior_group_scale = prior_group_scale
        self.prior_user_scale = prior_user_scale
        self.prior_gru_scale = prior_gru_scale
        self.kl_weight = kl_weight
        n, d = spec.n_items, hidden_dim
        self.item_mu = nn.Parameter(torch.randn(n, d) * 0.5)
        self.item_rho = nn.Parameter(torch.full((n, d), _inv_softplus(init_scale)))
        groups = spec.item_group if spec.item_group is not None else [0] * n
        self.register_buffer("item_group", torch.as_tensor(groups, dtype=torch.long))
        self.group_mu = nn.Parameter(torch.zeros(spec.n_groups, d))
        self.group_rho = nn.Parameter(torch.full((spec.n_groups,), _inv_softplus(0.5)))
        self.user_init = user_init
        self.h0 = nn.Parameter(0.1 * torch.randn(spec.n_users if user_init == "user" else 1, d))
        self.gru = nn.GRU(d, d, batch_first=True)
        self.log_a = nn.Parameter(torch.zeros(()))
        self.noclick = nn.Parameter(torch.zeros(spec.max_slate_len + 1))  # per slate length
        self.noclick_all = nn.Parameter(torch.zeros(()))

    # -- parameters --------------------------------------------------------------------------
    def item_scale(self) -> torch.Tensor:
        return F.softplus(self.item_rho)

    def item_vectors(self, sample: bool = False, n: int | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """The posterior mean ``[R, D]`` or, with ``sample``, a draw (``n`` draws: ``[n, R, D]``)."""
        if not sample:
            return self.item_mu
        shape = (n, *self.item_mu.shape) if n is not None else self.item_mu.shape
        eps = torch.randn(shape, generator=generator, device=self.item_mu.device,
                          dtype=self.item_mu.dtype)
        return self.item_mu + self.item_scale() * eps

    # -- user states -------------------------------------------------------------------------
    def states(self, user: torch.Tensor, click: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        """``[B, T + 1, D]``: the state before each of the ``T`` steps and after the last one
        (``z_t`` has seen the clicks of steps ``< t``)."""
        h0 = self._h0(user)
        x = V[click.clamp_min(0)]
        out, _ = self.gru(x, h0[None].contiguous())
        return torch.cat([h0[:, None], out], 1)

    def next_state(self, user: torch.Tensor, click: torch.Tensor | None,
                   V: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, D]``: each user's state after its observed steps (``click`` may be ``None`` or
        have zero steps: then ``h0``); padded steps (0) at the end are not counted."""
        V = self.item_mu if V is None else V
        if click is None or click.shape[1] == 0:
            return self._h0(user)
        z = self.states(user, click, V)
        n_obs = (click > 0).sum(1)
        return z[torch.arange(user.numel(), device=user.device), n_obs]

    def _h0(self, user: torch.Tensor) -> torch.Tensor:
        return self.h0[user] if self.user_init == "user" else self.h0.expand(user.numel(), -1)

    def score(self, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Logits ``a * score(z, v)``: ``z [..., D]`` against ``v [..., K, D]`` -> ``[..., K]``."""
        a = self.log_a.exp()
        if self.score_kind == "dot":
            return a * (z.unsqueeze(-2) * v).sum(-1)
        return -a * ((z.unsqueeze(-2) - v).pow(2).sum(-1) + 1e-8).sqrt()

    def item_scores(self, z: torch.Tensor, V: torch.Tensor | None = None) -> torch.Tensor:
        """Every item row's logit for states ``z [B, D]``: ``[B, R]`` (``V [R, D]``) or
        ``[B, R]`` from per-user vectors ``V [B, R, D]``; rows 0 and 1 are ``-inf``."""
        V = self.item_mu if V is None else V
        if V.dim() == 2:
            if self.score_kind == "dot":
                s = self.log_a.exp() * (z @ V.T)
            else:
                s = -self.log_a.exp() * torch.cdist(z, V)
        else:
            s = self.score(z, V)
        s = s.clone()
        s[:, :2] = float("-inf")
        return s

    # -- likelihood --------------------------------------------------------------------------
    def _targets(self, slate: torch.Tensor, click: torch.Tensor) -> torch.Tensor:
        """Option index of each step's click among [no click, slot 0, slot 1, ...]."""
        hit = (slate == click[..., None]) & (click[..., None] > NO_CLICK)
        observed_click = click > NO_CLICK
        if bool((observed_click & ~hit.any(-1)).any()):
            raise ConfigError("a clicked item is not in its shown slate: the slate likelihood "
                              "needs click rows taken from the slate (or 1 for no click)")
        return torch.where(observed_click, hit.float().argmax(-1) + 1, torch.zeros_like(click))

    def forward(self, batch: dict) -> dict:
        """``logits [B, T, 1 + K]`` (option 0 = no click), ``mask`` (valid options),
        ``target [B, T]`` and ``step_mask [B, T]`` (observed steps); a training-mode call draws
        the item vectors (one particle), an eval-mode call uses the posterior means."""
        user, slate, click = batch["user"], batch["slate"], batch["click"]
        top = max(int(slate.max()) if slate.numel() else 0, int(click.max()) if click.numel() else 0)
        if top >= self.spec.n_items or bool((slate < 0).any()) or bool((click < 0).any()):
            raise ConfigError(f"slate / click rows must be in 0..{self.spec.n_items - 1} (0 = "
                              f"padding, 1 = no click); got up to {top}: size SlateSpec.n_items "
                              f"to the catalogue")
        V = self.item_vectors(sample=self.training)
        z = self.states(user, click, V)[:, :-1]  # [B, T, D]
        step_mask = click > PAD
        if self.likelihood == "all_items" and self.training:
            options, bias = self._candidates(click), self.noclick_all
        else:
            options = slate
            bias = (self.noclick_all if self.likelihood == "all_items" else
                    self.noclick[(slate > PAD).sum(-1).clamp_max(self.spec.max_slate_len)])
        logits = self.score(z, V[options])  # [B, T, K]
        mask = options > PAD
        logits = torch.cat([bias.expand(click.shape)[..., None],
                            logits.masked_fill(~mask, float("-inf"))], -1)
        mask = torch.cat([torch.ones_like(mask[..., :1]), mask], -1)
        return {"logits": logits, "mask": mask, "target": self._targets(options, click),
                "step_mask": step_mask}

    def _candidates(self, click: torch.Tensor) -> torch.Tensor:
        """All-items variant: ``n_candidates`` uniform items per step, the clicked row first
        (a sampled duplicate of it is blanked)."""
        cand = torch.randint(2, self.spec.n_items, (*click.shape, self.n_candidates),
                             device=click.device)
        cand = cand.masked_fill(cand == click[..., None], PAD)
        first = torch.where(click > NO_CLICK, click, torch.zeros_like(click))
        return torch.cat([first[..., None], cand], -1)

    def log_likelihood(self, batch: dict) -> torch.Tensor:
        """Per observed step, log P(observed click | shown slate) ``[n_obs]`` (current mode)."""
        out = self(batch)
        logp = torch.log_softmax(out["logits"], -1).gather(-1, out["target"][..., None])[..., 0]
        return logp[out["step_mask"]]

    def prior_terms(self) -> torch.Tensor:
        """KL(q(v) || p(v | group)) + negative log-priors of the MAP parameters (constants
        dropped)."""
        m, s = self.item_mu[2:], self.item_scale()[2:]
        g = self.item_group[2:]
        gm, gs = self.group_mu[g], F.softplus(self.group_rho)[g][:, None] + 1e-4
        kl = (torch.log(gs / s) + (s.pow(2) + (m - gm).pow(2)) / (2 * gs.pow(2)) - 0.5).sum()
        pg = self.prior_group_scale
        neg_log_prior = (self.group_mu.pow(2).sum() + F.softplus(self.group_rho).pow(2).sum()) \
            / (2 * pg ** 2)
        neg_log_prior = neg_log_prior + self.h0.pow(2).sum() / (2 * self.prior_user_scale ** 2)
        neg_log_prior = neg_log_prior + sum(p.pow(2).sum() for p in self.gru.parameters()) \
            / (2 * self.prior_gru_scale ** 2)
        return kl + neg_log_prior

    def loss(self, batch: dict, n_data: int | None = None) -> torch.Tensor:
        """Negative ELBO per observed step (``particles`` draws of the item vectors averaged);
        ``n_data``: observed steps in the whole data set (default: this batch's)."""
        nll = 0.0
        for _ in range(self.particles):
            nll = nll - self.log_likelihood(batch).mean()
        nll = nll / self.particles
        n = n_data or int((batch["click"] > PAD).sum())
        return nll + self.kl_weight * self.prior_terms() / max(n, 1)
