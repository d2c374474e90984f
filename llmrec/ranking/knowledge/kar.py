"""KAR's hybrid-expert adaptor (HEA), the knowledge-augmentation baseline.

Xi et al., "Towards Open-World Recommendation with Knowledge Augmentation from Large Language
Models", RecSys 2024. Each entity's knowledge is one vector (the encoder's embedding of the whole
text). For knowledge type t (user or item) the adaptor mixes S experts shared by both types and P
experts of its own: ``g_t = softmax(W_t x_t)`` over its S + P experts and
``o_t = sum_k g_t,k E_k(x_t)``. Sharing lets the two types borrow statistical strength; the
type-specific experts keep what is particular to each. ``o_u`` and ``o_i`` then enter the
backbone as two more dense fields.
"""

from __future__ import annotations

import torch
from torch import nn

from llmrec.ranking.layers import MLP


class HybridExpertAdaptor(nn.Module):
    """Maps each kind's knowledge vector [B, in_dim] to an ``hidden[-1]``-wide vector.

    ``forward`` returns ``{kind: o_kind}``; :meth:`gates` the gate weights (for inspection).
    """

    def __init__(self, in_dims: dict[str, int], n_shared: int = 2, n_specific: int = 2,
                 hidden: tuple[int, ...] | list[int] = (128, 32)) -> None:
        super().__init__()
        if len(set(in_dims.values())) > 1 and n_shared:
            raise ValueError(f"shared experts need one input width for every kind, got {in_dims}")
        self.kinds = list(in_dims)
        self.n_shared = n_shared
        self.n_specific = n_specific
        hidden = list(hidden)
        self.out_dim = hidden[-1]
        any_dim = next(iter(in_dims.values()))
        # the expert's last layer has no activation: o_t is a representation, not a hidden state
        self.shared = nn.ModuleList(MLP(any_dim, hidden[:-1], out_dim=hidden[-1])
                                    for _ in range(n_shared))
        self.specific = nn.ModuleDict({
            k: nn.ModuleList(MLP(d, hidden[:-1], out_dim=hidden[-1]) for _ in range(n_specific))
            for k, d in in_dims.items()})
        self.gate = nn.ModuleDict({k: nn.Linear(d, n_shared + n_specific)
                                   for k, d in in_dims.items()})

    def gates(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        """Gate weights [B, S + P] (shared experts first); rows sum to 1."""
        return torch.softmax(self.gate[kind](x), dim=-1)

    def expert_outputs(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        """[B, S + P, out] outputs of the experts kind ``kind`` mixes."""
        experts = list(self.shared) + list(self.specific[kind])
        return torch.stack([e(x) for e in experts], dim=1)

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for kind, x in inputs.items():
            g = self.gates(kind, x)
            out[kind] = (g.unsqueeze(-1) * self.expert_outputs(kind, x)).sum(1)
        return out
