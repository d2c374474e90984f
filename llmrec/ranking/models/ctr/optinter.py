"""OptInter: for every field pair, choose how its interaction is modelled: memorised (an
embedding of the value pair itself), factorised (the product of per-field vectors) or naive
(nothing); a search stage learns the choice, a retrain stage trains the chosen architecture.

Lyu, Tang, Guo, Tang, He, Zhang and Liu, "Memorize, Factorize, or be Naive: Learning Optimal
Feature Interaction Methods for CTR Prediction", ICDE 2022 (official code
fuyuanlyu/OptInter@7273550).

Per pair (i, j) of the flat fields (:meth:`Embedded.fields` order):

- memorised ``m_ij = cross[id(v_i, v_j)]`` (``cross_dim``, 10). The engine gives no pair
  vocabulary, so pair ids come from the two fields' ids: exact (``v_i * V_j + v_j``) when
  ``V_i * V_j <= hash_size`` (default 2**17 = 131,072 buckets), hashed into ``hash_size`` buckets
  per pair otherwise. Only pairs of two single-valued categorical fields (user fields, the target
  item's scalar fields, context fields) can be memorised; pairs with a multi-valued attribute,
  a pooled history slot or a dense field choose between factorised and naive.
- factorised ``f_ij = a_i * a_j`` (element-wise, ``cross_dim``), ``a`` from a separate embedding
  of every field.
- naive: nothing.

``mode="search"``: ``c_ij = w_m m_ij + w_f f_ij`` with ``w = softmax(alpha_ij / t)``, ``alpha``
``[P, 3]`` (xavier-normal start, as the official code), ``t = max(0.01, 1 - 5e-5 * step)``
(``temperature_decay``, ``min_temperature``; ``gumbel=True`` adds Gumbel noise in training). The
architecture weights and the model weights are trained jointly by the one optimiser; ``alpha`` is
stored divided by ``alpha_lr_scale`` (10), and Adam's step does not depend on the gradient's
scale, so alpha moves ``alpha_lr_scale`` times faster: with ``train.lr=1e-4`` that is the paper's
1e-4 for weights and 1e-3 for alpha.

``mode="retrain"``: ``choices`` fixes the method of every pair (fresh weights; the tables of
unused methods are not built, naive pairs leave the MLP input). ``choices`` is a mapping
``{"field_a*field_b": "memorized"|"factorized"|"naive"}`` (or the JSON document written by
:func:`export_choices`, which holds it under ``"choices"``), the path of such a JSON file, the
folder of a search run (its ``optinter_choices.json``, written from its best weights when
absent), or one method name for every pair (the ablations; ``"memorized"`` falls back to
factorised on pairs that cannot be memorised).

The classifier is ``[e_1..e_F (embed_dim), c_1..c_P (cross_dim)] -> MLP`` with Linear ->
LayerNorm -> ReLU blocks (official: 5 x 700).

Search, export, retrain::

    llmrec rank train --config eval/ranking/ml1m.yaml --model optinter \\
        --output_dir runs/rank/optinter_search
    python -m llmrec.ranking.models.ctr.optinter runs/rank/optinter_search
    llmrec rank train --config eval/ranking/ml1m.yaml --model optinter \\
        --model_args='{mode: retrain, choices: runs/rank/optinter_search/optinter_choices.json}' \\
        --output_dir runs/rank/optinter_retrain
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.errors import ConfigError
from llmrec.ranking.features import FeatureSpec
from llmrec.ranking.layers import FeatureEmbedding, make_activation
from llmrec.ranking.models.base import Backbone

METHODS = ("memorized", "factorized", "naive")
CHOICES_FILE = "optinter_choices.json"
CHOICES_FORMAT = "optinter-choices/1"
_HASH_PRIME = 2_147_483_647  # 2**31 - 1
_HASH_A, _HASH_B = 1_103_515_245, 747_796_405  # odd multipliers < 2**31: products stay < 2**62


def field_names(spec: FeatureSpec) -> list[str]:
    """Names of the flat fields in :meth:`Embedded.fields` order (history slots ``hist:<name>``,
    dense fields ``dense:<name>``)."""
    slots = [n for n, _ in spec.item_fields] + [n for n, _, _ in spec.item_multi_fields]
    names = [n for n, _ in spec.user_fields] + slots
    if spec.max_hist_len > 0:
        names += [f"hist:{n}" for n in slots]
    return names + [n for n, _ in spec.context_fields] + [f"dense:{n}" for n in spec.dense]


def categorical_fields(spec: FeatureSpec) -> dict[int, tuple[str, int, int]]:
    """Flat-field position -> (batch key, column, vocabulary size) of the single-valued
    categorical fields: the ones whose value pairs can be memorised."""
    out: dict[int, tuple[str, int, int]] = {}
    for c, (_, v) in enumerate(spec.user_fields):
        out[c] = ("user", c, v)
    u = spec.n_user_fields
    for c, (_, v) in enumerate(spec.item_fields):
        out[u + c] = ("item", c, v)
    start = u + spec.n_item_slots * (2 if spec.max_hist_len > 0 else 1)
    for c, (_, v) in enumerate(spec.context_fields):
        out[start + c] = ("context", c, v)
    return out


def pair_key(a: str, b: str) -> str:
    return f"{a}*{b}"


def pair_ids(x: torch.Tensor, y: torch.Tensor, vy: torch.Tensor, size: torch.Tensor,
             exact: torch.Tensor) -> torch.Tensor:
    """Row of the value pair (x, y) in its pair's table: ``x * V_y + y`` where the table holds
    every pair (``exact``), else a multiply-add hash modulo a prime, then modulo ``size``. All
    int64 products stay below 2**62."""
    hashed = ((x % _HASH_PRIME) * _HASH_A + (y % _HASH_PRIME) * _HASH_B) % _HASH_PRIME % size
    return torch.where(exact, x * vy + y, hashed)


def _normalise_choices(choices: Any, names: list[str], pairs: list[tuple[int, int]],
                       memorisable: list[bool]) -> list[str]:
    """The method of every pair, from any accepted form of ``choices``."""
    if isinstance(choices, str) and choices in METHODS:
        return [("factorized" if choices == "memorized" and not m else choices)
                for m in memorisable]
    if isinstance(choices, (str, Path)):
        choices = read_choices(choices)
    if not isinstance(choices, dict):
        raise ConfigError(f"optinter: choices must be a mapping, a JSON file, a search run folder "
                          f"or one of {', '.join(METHODS)}; got {type(choices).__name__}")
    if "choices" in choices and isinstance(choices["choices"], dict):
        doc_fields = choices.get("fields")
        if doc_fields is not None and list(doc_fields) != names:
            raise ConfigError(f"optinter: the choices were searched over fields {doc_fields}, "
                              f"these features have {names}; search again on these features")
        choices = choices["choices"]
    keys = [pair_key(names[i], names[j]) for i, j in pairs]
    unknown = sorted(set(choices) - set(keys))
    missing = [k for k in keys if k not in choices]
    if unknown or missing:
        raise ConfigError(f"optinter: choices do not match the field pairs of these features "
                          f"(unknown: {unknown[:5]}{'...' if len(unknown) > 5 else ''}; missing: "
                          f"{missing[:5]}{'...' if len(missing) > 5 else ''}); keys are "
                          f"'field_a*field_b' in field order {names}")
    out = []
    for key, m in zip(keys, memorisable):
        c = choices[key]
        if c not in METHODS:
            raise ConfigError(f"optinter: choice {c!r} for pair {key!r} is not one of "
                              f"{', '.join(METHODS)}")
        if c == "memorized" and not m:
            raise ConfigError(f"optinter: pair {key!r} cannot be memorised (one of its fields is "
                              f"multi-valued, a history slot or dense); choose factorized or naive")
        out.append(c)
    return out


def read_choices(path: str | Path) -> dict:
    """The choices document at ``path`` (a JSON file, or a search run folder: its
    ``optinter_choices.json``, exported from its best weights first when absent)."""
    p = Path(path)
    if p.is_dir():
        if not (p / CHOICES_FILE).is_file():
            export_choices(p)
        p = p / CHOICES_FILE
    if not p.is_file():
        raise ConfigError(f"optinter: choices file {p} does not exist; write it with "
                          f"`python -m llmrec.ranking.models.ctr.optinter SEARCH_RUN_DIR`")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"optinter: {p} is not valid JSON: {exc}") from None


class OptInter(Backbone):
    def __init__(self, spec: FeatureSpec, embed_dim: int = 20, cross_dim: int = 10,
                 mode: str = "search", choices: Any = None, hash_size: int = 2 ** 17,
                 hidden: tuple[int, ...] = (700, 700, 700, 700, 700), dropout: float = 0.0,
                 activation: str = "relu", temperature_decay: float = 5e-5,
                 min_temperature: float = 0.01, gumbel: bool = False,
                 alpha_lr_scale: float = 10.0) -> None:
        super().__init__(spec, embed_dim)
        if mode not in ("search", "retrain"):
            raise ConfigError(f"optinter: mode must be search or retrain, not {mode!r}")
        if hash_size < 1 or cross_dim < 1:
            raise ConfigError("optinter: hash_size and cross_dim must be >= 1")
        self.mode = mode
        self.names = field_names(spec)
        f = len(self.names)
        self.pairs = [(i, j) for i in range(f) for j in range(i + 1, f)]
        cat = categorical_fields(spec)
        self.memorisable = [i in cat and j in cat for i, j in self.pairs]
        if mode == "search":
            if choices is not None:
                raise ConfigError("optinter: choices are for mode=retrain; the search learns them")
            methods = None
            mem = [p for p, m in enumerate(self.memorisable) if m]
            fac = list(range(len(self.pairs)))
        else:
            if choices is None:
                raise ConfigError("optinter: mode=retrain needs choices (a search run folder, its "
                                  "optinter_choices.json, a mapping or one method for all pairs)")
            methods = _normalise_choices(choices, self.names, self.pairs, self.memorisable)
            mem = [p for p, c in enumerate(methods) if c == "memorized"]
            fac = [p for p, c in enumerate(methods) if c == "factorized"]
        self.methods = methods
        self.cross_dim = cross_dim
        self.alpha_lr_scale = alpha_lr_scale
        self.temperature_decay = temperature_decay
        self.min_temperature = min_temperature
        self.gumbel = gumbel

        # memorised pairs: one table, per-pair offsets; exact pair ids where they fit
        sources = {"user": 0, "item": 1, "context": 2}
        src_i, col_i, src_j, col_j, vj, sizes = [], [], [], [], [], []
        for p in mem:
            i, j = self.pairs[p]
            (si, ci, v_i), (sj, cj, v_j) = cat[i], cat[j]
            src_i.append(sources[si])
            col_i.append(ci)
            src_j.append(sources[sj])
            col_j.append(cj)
            vj.append(v_j)
            sizes.append(min(v_i * v_j, hash_size))
        self.n_cross_rows = sum(sizes)
        self._buf("mem_pairs", mem)
        self._buf("fac_pairs", fac)
        self._buf("fac_left", [self.pairs[p][0] for p in fac])
        self._buf("fac_right", [self.pairs[p][1] for p in fac])
        # [P, 3]: True on the memorised method of pairs that cannot be memorised
        blocked = torch.zeros(len(self.pairs), 3, dtype=torch.bool)
        blocked[:, 0] = ~torch.tensor(self.memorisable, dtype=torch.bool)
        self.register_buffer("blocked", blocked, persistent=False)
        self._buf("mem_src", [src_i, col_i, src_j, col_j])
        self._buf("mem_vj", vj)
        self._buf("mem_size", sizes)
        self.register_buffer("mem_exact", torch.tensor(
            [s == self._vocab_product(cat, self.pairs[p]) for s, p in zip(sizes, mem)],
            dtype=torch.bool), persistent=False)
        self._buf("mem_offset", [sum(sizes[:k]) for k in range(len(sizes))])
        self.cross = nn.Embedding(self.n_cross_rows, cross_dim) if mem else None
        self.factor = FeatureEmbedding(spec, cross_dim) if fac else None
        if self.cross is not None:
            nn.init.normal_(self.cross.weight, std=1e-4)
        if self.factor is not None:
            # products of two std-1e-2 vectors start at the 1e-4 scale of the field embeddings
            for m in self.factor.modules():
                if isinstance(m, nn.Embedding):
                    nn.init.normal_(m.weight, std=1e-2)
                    if m.padding_idx is not None:
                        with torch.no_grad():
                            m.weight[m.padding_idx].zero_()

        if mode == "search":
            alpha = torch.empty(len(self.pairs), 3)
            nn.init.xavier_normal_(alpha)
            self.alpha = nn.Parameter(alpha / alpha_lr_scale)
            self.register_buffer("step", torch.zeros((), dtype=torch.long))
            self.n_inputs = len(self.pairs)
        else:
            self.alpha = None
            self.n_inputs = len(mem) + len(fac)
        # the MLP input order: retrain keeps the non-naive pairs in pair order
        order = sorted(mem + fac) if mode == "retrain" else list(range(len(self.pairs)))
        self._buf("input_pairs", order)
        layers: list[nn.Module] = []
        d = f * embed_dim + self.n_inputs * cross_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.LayerNorm(h), make_activation(activation, h)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            d = h
        layers.append(nn.Linear(d, 1))
        self.mlp = nn.Sequential(*layers)

    @staticmethod
    def _vocab_product(cat: dict, pair: tuple[int, int]) -> int:
        return cat[pair[0]][2] * cat[pair[1]][2]

    def _buf(self, name: str, values: list) -> None:
        self.register_buffer(name, torch.tensor(values, dtype=torch.long), persistent=False)

    # ------------------------------------------------------------------------------------------
    def temperature(self) -> float:
        return float(self._temperature())

    def _temperature(self) -> torch.Tensor:
        # on the device: no host sync per step
        t = 1.0 - self.temperature_decay * self.step.to(torch.float32)
        return t.clamp(min=self.min_temperature)

    def arch_weights(self) -> torch.Tensor:
        """Search mode: w = softmax(alpha / t) [P, 3] (memorised, factorised, naive); the
        memorised weight of a pair that cannot be memorised is 0."""
        alpha = (self.alpha * self.alpha_lr_scale).masked_fill(self.blocked, float("-inf"))
        logits = alpha / self._temperature()
        if self.gumbel and self.training:
            u = torch.rand_like(logits).clamp_(1e-10, 1 - 1e-10)
            logits = logits - torch.log(-torch.log(u))
        return torch.softmax(logits, dim=-1)

    def memorised(self, batch: dict) -> torch.Tensor:
        """[B, n_memorised, cross_dim] embeddings of the value pairs."""
        ids = [batch["user"], batch["item"]]
        ids.append(batch["context"] if "context" in batch and batch["context"] is not None
                   else batch["user"][:, :0])
        # [B, 3 sources, max columns]: one gather for the left and one for the right field
        width = max(t.shape[1] for t in ids)
        table = torch.stack([F.pad(t, (0, width - t.shape[1])) for t in ids], 1)
        si, ci, sj, cj = self.mem_src
        x = table[:, si, ci]
        y = table[:, sj, cj]
        rows = pair_ids(x, y, self.mem_vj, self.mem_size, self.mem_exact) + self.mem_offset
        return self.cross(rows)

    def factorised(self, batch: dict) -> torch.Tensor:
        """[B, n_factorised, cross_dim] element-wise products a_i * a_j."""
        a = self.factor(batch).fields()
        return a[:, self.fac_left] * a[:, self.fac_right]

    def forward(self, batch: dict) -> dict:
        e = self.embed(batch).fields()
        b = e.shape[0]
        n_pairs = len(self.pairs)
        parts = []
        if self.mode == "search":
            w = self.arch_weights().to(e.dtype)
            c = self.factorised(batch) * w[:, 1, None]
            if self.cross is not None:
                m = self.memorised(batch) * w[self.mem_pairs, 0, None]
                c = c.index_add(1, self.mem_pairs, m)
            parts.append(c)
            if self.training:
                with torch.no_grad():
                    self.step += 1
        else:
            c = e.new_zeros(b, n_pairs, self.cross_dim)
            if self.cross is not None:
                c = c.index_copy(1, self.mem_pairs, self.memorised(batch).to(c.dtype))
            if self.factor is not None:
                c = c.index_copy(1, self.fac_pairs, self.factorised(batch).to(c.dtype))
            parts.append(c[:, self.input_pairs])
        x = torch.cat([e.flatten(1)] + [p.flatten(1) for p in parts], dim=1)
        return {"logit": self.mlp(x).squeeze(-1)}

    # ------------------------------------------------------------------------------------------
    def chosen(self) -> list[str]:
        """The method of every pair: argmax of the architecture weights (search) or the fixed
        choices (retrain)."""
        if self.methods is not None:
            return list(self.methods)
        with torch.no_grad():
            w = self.arch_weights()
        return [METHODS[int(k)] for k in w.argmax(-1)]

    def choices_document(self) -> dict:
        """What :func:`export_choices` writes: the fields, the method per pair, the search
        weights and the counts per method."""
        methods = self.chosen()
        keys = [pair_key(self.names[i], self.names[j]) for i, j in self.pairs]
        doc: dict[str, Any] = {"format": CHOICES_FORMAT, "fields": self.names,
                               "choices": dict(zip(keys, methods)),
                               "counts": {m: methods.count(m) for m in METHODS}}
        if self.alpha is not None:
            with torch.no_grad():
                w = self.arch_weights().cpu()
            doc["temperature"] = self.temperature()
            doc["weights"] = {k: [round(float(v), 6) for v in row] for k, row in zip(keys, w)}
        return doc


def export_choices(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the chosen method per field pair of an OptInter search run (from its best weights)
    as JSON: ``out`` or ``run_dir/optinter_choices.json``."""
    from llmrec.artifacts import write_json_atomic
    from llmrec.ranking.runs import load_run

    run = load_run(run_dir)
    model = run.model
    if not isinstance(model, OptInter):
        raise ConfigError(f"{run_dir} is a {type(model).__name__} run, not an OptInter run")
    if model.mode != "search":
        raise ConfigError(f"{run_dir} is an OptInter retrain run; export the choices of its "
                          f"search run")
    doc = model.choices_document()
    doc["source"] = str(run_dir)
    path = Path(out) if out else Path(run_dir) / CHOICES_FILE
    write_json_atomic(path, doc)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m llmrec.ranking.models.ctr.optinter SEARCH_RUN_DIR [--out FILE]``."""
    import argparse
    import sys

    from llmrec.errors import LlmrecError

    parser = argparse.ArgumentParser(
        prog="python -m llmrec.ranking.models.ctr.optinter",
        description="Write the chosen interaction method per field pair of an OptInter search "
                    "run as JSON (the retrain stage's choices).")
    parser.add_argument("run_dir",
                        help="the search run folder (llmrec rank train --model optinter)")
    parser.add_argument("--out", default=None, help=f"default: RUN_DIR/{CHOICES_FILE}")
    args = parser.parse_args(argv)
    # under `python -m` this file is __main__; load_run builds the model from the package module,
    # whose OptInter class is the one to check against
    from llmrec.ranking.models.ctr import optinter

    try:
        path = optinter.export_choices(args.run_dir, args.out)
    except LlmrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    doc = json.loads(path.read_text())
    print(f"{path}: " + ", ".join(f"{k} {v}" for k, v in doc["counts"].items()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
