"""Semantic ids for items: a residual-quantised autoencoder (RQ-VAE) over item vectors.

TIGER (Rajput et al., NeurIPS 2023) and FAIR read an item as a short tuple of codes, where
items with similar content share code prefixes. Where a dataset ships none (ML-1M), they are
learned here from item vectors (MiniLM of the item's LLM-written text, or the whole-text vectors
of ``llmrec knowledge embed``):

- an MLP encoder maps a vector to a latent z; ``levels`` codebooks of ``codebook_size`` entries
  quantise it residually (level l codes the residual left by levels < l), each codebook initialised
  by k-means on its first residuals; an MLP decoder reconstructs the vector from the sum of the
  chosen entries. Loss: reconstruction MSE + codebook loss + ``beta`` x commitment loss, with the
  straight-through estimator (van den Oord et al., 2017; Zeghidour et al., 2021);
- items that share all codes get one more code, their index among those items (TIGER's collision
  breaker), so the final ids are unique.

:func:`learn_semantic_ids` returns the codes and the statistics to report beside any result that
uses them: per-level utilisation (share of codebook entries used), the collision rate before the
breaker and the largest collision group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmrec.config import option


@dataclass
class SemanticIdConfig:
    """RQ-VAE settings."""

    levels: int = option(3, help="codebooks (codes per item before the collision breaker)")
    codebook_size: int = option(256, help="entries per codebook")
    latent_dim: int = option(32, help="width of the quantised latent")
    hidden: list[int] = option([256, 128], help="encoder widths (the decoder mirrors them)")
    beta: float = option(0.25, help="commitment-loss weight")
    epochs: int = option(200, help="training epochs over the items")
    batch_size: int = option(1024, help="items per step")
    lr: float = option(1e-3, help="Adam learning rate")
    seed: int = option(0, help="seed of initialisation, k-means and batch order")
    device: str = option("cpu", help="cpu or cuda")

    def __post_init__(self) -> None:
        if self.levels < 1 or self.codebook_size < 2:
            raise ValueError("levels must be >= 1 and codebook_size >= 2")


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def kmeans(x: torch.Tensor, k: int, iters: int = 25, generator: torch.Generator | None = None):
    """Plain Lloyd's k-means; centroids start from k distinct random points (fewer points than
    k: the missing centroids repeat points)."""
    n = x.shape[0]
    idx = torch.randperm(n, generator=generator)[:k]
    if idx.numel() < k:
        idx = torch.cat([idx, torch.randint(0, n, (k - idx.numel(),), generator=generator)])
    c = x[idx].clone()
    for _ in range(iters):
        assign = torch.cdist(x, c).argmin(1)
        for j in range(k):
            members = x[assign == j]
            if members.numel():
                c[j] = members.mean(0)
    return c


class RQVAE(nn.Module):
    def __init__(self, in_dim: int, cfg: SemanticIdConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = _mlp([in_dim, *cfg.hidden, cfg.latent_dim])
        self.decoder = _mlp([cfg.latent_dim, *reversed(cfg.hidden), in_dim])
        self.codebooks = nn.ParameterList(
            nn.Parameter(torch.zeros(cfg.codebook_size, cfg.latent_dim)) for _ in range(cfg.levels))
        self.initialised = False

    @torch.no_grad()
    def init_codebooks(self, x: torch.Tensor, generator: torch.Generator) -> None:
        residual = self.encoder(x)
        for book in self.codebooks:
            book.copy_(kmeans(residual, book.shape[0], generator=generator))
            residual = residual - book[torch.cdist(residual, book).argmin(1)]
        self.initialised = True

    def quantise(self, z: torch.Tensor):
        """Codes [N, L], the quantised latent (straight-through) and the VQ losses."""
        residual, quant = z, torch.zeros_like(z)
        codes, vq = [], z.new_zeros(())
        for book in self.codebooks:
            c = torch.cdist(residual.detach(), book).argmin(1)
            e = book[c]
            vq = vq + F.mse_loss(e, residual.detach()) + self.cfg.beta * F.mse_loss(residual, e.detach())
            quant = quant + e
            residual = residual - e.detach()
            codes.append(c)
        quant_st = z + (quant - z).detach()
        return torch.stack(codes, 1), quant_st, vq

    def forward(self, x: torch.Tensor):
        z = self.encoder(x)
        codes, q, vq = self.quantise(z)
        return codes, F.mse_loss(self.decoder(q), x), vq


def break_collisions(codes: np.ndarray) -> np.ndarray:
    """Append a code: each item's index among the items sharing all of its codes."""
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    extra = np.zeros(len(codes), dtype=np.int64)
    seen: dict[int, int] = {}
    for i, g in enumerate(inverse.tolist()):
        extra[i] = seen.get(g, 0)
        seen[g] = extra[i] + 1
    return np.concatenate([codes, extra[:, None]], 1)


def code_statistics(codes: np.ndarray, codebook_size: int) -> dict[str, Any]:
    """Utilisation per level, collision rate and the largest group sharing all codes."""
    _, counts = np.unique(codes, axis=0, return_counts=True)
    return {"items": int(len(codes)),
            "utilisation": [round(len(np.unique(codes[:, j])) / codebook_size, 4)
                            for j in range(codes.shape[1])],
            "distinct_ids": int(len(counts)),
            "collision_rate": round(float(counts[counts > 1].sum()) / max(len(codes), 1), 4),
            "largest_group": int(counts.max()) if len(counts) else 0}


def learn_semantic_ids(vectors, cfg: SemanticIdConfig | None = None) -> dict[str, Any]:
    """Train an RQ-VAE on ``vectors [N, D]`` and return ``codes`` [N, levels + 1] (collision
    breaker last), the statistics before the breaker and the final reconstruction loss."""
    cfg = cfg or SemanticIdConfig()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)  # standardised: one scale for every dim
    dev = torch.device(cfg.device)
    model = RQVAE(x.shape[1], cfg)
    model.init_codebooks(x, gen)
    model.to(dev)
    x = x.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    recon = vq = torch.zeros(())
    for _ in range(cfg.epochs):
        perm = torch.randperm(x.shape[0], generator=gen).to(dev)
        for idx in perm.split(cfg.batch_size):
            _, recon, vq = model(x[idx])
            loss = recon + vq
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        codes, _, _ = model.quantise(model.encoder(x))
    codes = codes.cpu().numpy()
    return {"codes": break_collisions(codes), "stats": code_statistics(codes, cfg.codebook_size),
            "reconstruction_mse": float(recon), "vq_loss": float(vq)}
