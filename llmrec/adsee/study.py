"""The AdSEE study on MovieLens: train the click-rate predictor, edit held-out items' text vectors
with the genetic editor under several distance budgets, and report the *predicted* gain beside
the predictor's held-out error, a random edit of equal norm and how far the edited vectors lie
from every real item.

Per seed: the item split, the predictor's initialisation and batch order, the directions (PCA of
the training items' vectors, or the predictor's dense projection) and the search all follow the
seed. The edited items are the test items (never seen in training), at most ``max_items`` of them
(the first ones in a seeded order).

Off-manifold check, per budget: the cosine distance from each edited vector to the nearest real
item vector other than the item itself, beside the same distance for the unedited vector; the
share of edited vectors whose nearest real vector is still their own original; and the share
whose coordinate along some edit direction leaves the range the training items span. A gain that
comes with vectors far from every item (or outside the catalogue's range) is the predictor
extrapolating, not a text anyone could write. Also: the observed like rate of the real item
nearest to each edited vector (other than itself) minus the item's own, beside the same for the
unedited vector: whether the edit points toward items people did like more.

With ``rewrite_items`` the first seed also runs the text variant (:mod:`llmrec.adsee.rewrite`):
LLM rewrites of those items' texts, embedded with ``embedder`` and scored by the same predictor.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmrec.adsee.editor import (EditorConfig, GeneticEditor, distances, pca_directions,
                                 projection_directions, random_edits)
from llmrec.adsee.rewrite import RewriteConfig, RewriteEditor
from llmrec.adsee.regressor import (ClickRateConfig, ClickRatePredictor, build_item_features,
                                    fit_regressor, heldout_report, item_rates, item_samples)
from llmrec.config import option
from llmrec.data.config import DataConfig
from llmrec.errors import ConfigError, DataError
from llmrec.llm.config import LLMConfig

log = logging.getLogger(__name__)


@dataclass
class AdseeConfig:
    """One AdSEE study: data, item vectors, predictor, editor, budgets and seeds."""

    data_name: str = option("movielens-1m", help="dataset kind of the ratings and items (a "
                                                 "`llmrec data` name); the like rate is "
                                                 "computed from the ratings")
    data_path: str = option("../shared/data/movielens-1m", help="folder of the dataset")
    vectors: str | None = option(None, help="item vectors: a vector file (.safetensors with "
                                            "`vectors` and entity ids) or a `llmrec knowledge "
                                            "embed` folder; null = embed `texts` with `embedder`")
    texts: str = option("../shared/data/movielens-1m/knowledge/item_llm_text.json",
                        help="JSON {item_id: text}, embedded when `vectors` is null")
    embedder: str = option("minilm", help="sentence encoder for `texts` (packaged name or path)")
    vector_cache: str | None = option(None, help="where embedded `texts` are cached (.npz); "
                                                 "default: <output_dir>/item_vectors.npz")
    regressor: ClickRateConfig = option(default_factory=ClickRateConfig,
                                        help="the click-rate predictor")
    editor: EditorConfig = option(default_factory=EditorConfig,
                                  help="the genetic editor (its budget is set per entry of "
                                       "budgets, its seed per seed)")
    directions: Literal["pca", "projection"] = option(
        "pca", help="edit directions: pca (top principal components of the training items' "
                    "vectors) or projection (top singular vectors of the predictor's dense map)")
    n_directions: int = option(20, help="number of edit directions (AdSEE: top-20 SeFa)")
    budgets: list[float] = option([0.01, 0.02, 0.05, 0.1, 0.2],
                                  help="distance budgets to search under (editor.distance)")
    seeds: list[int] = option([0, 1, 2], help="one study per seed")
    max_items: int = option(200, help="edit at most this many test items per seed")
    rewrite_items: int = option(0, help="also search LLM rewrites of the texts of this many "
                                        "edited test items (first seed only; 0 = off); they "
                                        "are embedded with `embedder`")
    rewrite: RewriteConfig = option(default_factory=RewriteConfig,
                                    help="the text editor (its seed follows the study's seed)")
    llm: LLMConfig = option(default_factory=LLMConfig, help="the LLM that writes the rewrites")
    output_dir: str = option("runs/adsee/ml1m", help="results.json (and the vector cache)")

    def __post_init__(self) -> None:
        if not self.budgets or min(self.budgets) <= 0:
            raise ConfigError("budgets must be a non-empty list of positive distances")
        if not self.seeds:
            raise ConfigError("seeds must list at least one seed")
        if self.n_directions < 1 or self.max_items < 1:
            raise ConfigError("n_directions and max_items must be >= 1")


# -- inputs ---------------------------------------------------------------------------------------
def load_vectors(cfg: AdseeConfig) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """{item id: vector} and where they came from."""
    if cfg.vectors:
        from llmrec.ranking.item_knowledge import read_item_vectors

        ids, v, source = read_item_vectors(cfg.vectors)
        return {i: x for i, x in zip(ids, v.numpy().astype(np.float32))}, \
            {"vectors": str(cfg.vectors), **source}
    path = Path(cfg.texts)
    if not path.is_file():
        raise DataError(f"texts {path} does not exist; give a JSON {{item_id: text}} file or "
                        f"set vectors to a vector file")
    texts = json.loads(path.read_text())
    if not isinstance(texts, dict) or not texts:
        raise DataError(f"{path} must hold a non-empty JSON object {{item_id: text}}")
    ids = sorted(texts, key=str)
    cache = Path(cfg.vector_cache or Path(cfg.output_dir) / "item_vectors.npz")
    source = {"texts": str(path), "embedder": cfg.embedder}
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        if list(z["ids"]) == ids and str(z["embedder"]) == cfg.embedder:
            return {i: x for i, x in zip(ids, z["vectors"])}, {**source, "cache": str(cache)}
    from llmrec.artifacts import atomic_file
    from llmrec.knowledge.embed import Encoder

    log.info("embedding %d texts with %s", len(ids), cfg.embedder)
    vecs = Encoder(cfg.embedder).encode([str(texts[i]) for i in ids]).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(cache) as fh:
        np.savez(fh, ids=np.array(ids), vectors=vecs, embedder=np.array(cfg.embedder))
    return {i: x for i, x in zip(ids, vecs)}, source


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def nearest_distance(queries: np.ndarray, catalogue: np.ndarray,
                     exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(cosine distance to the nearest catalogue row, its index) per query; ``exclude [n]``
    names a catalogue row each query may not match (its own item), -1 for none."""
    sims = _unit(queries) @ _unit(catalogue).T
    if exclude is not None:
        rows = np.flatnonzero(exclude >= 0)
        sims[rows, exclude[rows]] = -np.inf
    best = sims.argmax(1)
    return 1.0 - sims[np.arange(len(queries)), best], best


# -- one seed -------------------------------------------------------------------------------------
def run_seed(cfg: AdseeConfig, data, rates, vectors: dict[str, np.ndarray], seed: int,
             encoder=None, backend=None) -> dict[str, Any]:
    """One seed of the study (``encoder`` / ``backend``: for the rewrites, built from ``cfg``
    when not given)."""
    rcfg = cfg.regressor
    samples = item_samples(rates, seed, rcfg.valid_frac, rcfg.test_frac)
    fs = build_item_features(data, samples, rcfg, vectors)
    t0 = time.perf_counter()
    model, fit = fit_regressor(fs, rcfg, seed)
    fit_s = time.perf_counter() - t0
    pred = ClickRatePredictor(model, fs)
    y = fs.labels().cpu().numpy().astype(np.float64)
    train = fs.split_index("train").cpu().numpy()
    test = fs.split_index("test").cpu().numpy()
    report = heldout_report(pred.predict(test), y[test], float(y[train].mean()), seed=seed)

    item_ids = samples["item_id"].tolist()  # sample i is item item_ids[i]
    all_vec = np.stack([vectors[i] for i in item_ids]).astype(np.float64)
    train_vec = all_vec[train]
    if cfg.directions == "pca":
        dirs, scales = pca_directions(train_vec, cfg.n_directions)
    else:
        dirs, scales = projection_directions(pred.projection_weight(), train_vec,
                                             cfg.n_directions)
    D = dirs * scales[:, None]
    proj_train = (train_vec - train_vec.mean(0)) @ dirs.T
    lo, hi = proj_train.min(0), proj_train.max(0)

    order = np.random.default_rng(seed).permutation(test)
    edit_idx = np.sort(order[: cfg.max_items])
    origins = all_vec[edit_idx]
    nn_orig, nn_orig_which = nearest_distance(origins, all_vec, exclude=edit_idx)
    proj_orig = (origins - train_vec.mean(0)) @ dirs.T
    outside_orig = float(((proj_orig < lo) | (proj_orig > hi)).any(1).mean())

    def fitness(v: np.ndarray) -> np.ndarray:
        return pred.predict(edit_idx, v)

    rows = []
    for b_i, budget in enumerate(cfg.budgets):
        ecfg = EditorConfig(**{**cfg.editor.__dict__, "budget": float(budget),
                               "seed": seed * 1000 + b_i})
        t1 = time.perf_counter()
        res = GeneticEditor(ecfg).run(fitness, origins, D)
        search_s = time.perf_counter() - t1
        rnd = random_edits(origins, D, res.edit_norm, seed=seed * 1000 + 500 + b_i,
                           renormalise=ecfg.renormalise)
        rnd_gain = pred.predict(edit_idx, rnd) - res.base
        nn_edit, nn_which = nearest_distance(res.vectors, all_vec, exclude=edit_idx)
        _, self_which = nearest_distance(res.vectors, all_vec)
        proj = (res.vectors - train_vec.mean(0)) @ dirs.T
        outside = ((proj < lo) | (proj > hi)).any(1)
        gain = res.gain
        rows.append({
            "budget": float(budget), "distance": ecfg.distance, "n_items": int(len(edit_idx)),
            "gain_mean": float(gain.mean()), "gain_median": float(np.median(gain)),
            "gain_std": float(gain.std()),
            "gain_over_rmse": float(gain.mean() / report["rmse"]),
            "random_gain_mean": float(rnd_gain.mean()),
            "random_distance_mean": float(distances(origins, rnd, ecfg.distance).mean()),
            "base_mean": float(res.base.mean()), "edited_mean": float(res.predicted.mean()),
            "distance_mean": float(res.distance.mean()), "distance_max": float(res.distance.max()),
            "within_budget": bool((res.distance <= budget + 1e-12).all()),
            "nn_distance_edited": float(nn_edit.mean()),
            "nn_distance_original": float(nn_orig.mean()),
            "nearest_is_self": float((self_which == edit_idx).mean()),
            "outside_catalogue_range": float(outside.mean()),
            "outside_catalogue_range_original": outside_orig,
            "nn_true_rate_gain": float((y[nn_which] - y[edit_idx]).mean()),
            "nn_true_rate_gain_original": float((y[nn_orig_which] - y[edit_idx]).mean()),
            "predicted_above_1": float((res.predicted > 1).mean()),
            "evaluations_per_item": int(res.evaluations), "search_seconds": round(search_s, 2),
        })
    out_rw = None
    if cfg.rewrite_items > 0 and seed == cfg.seeds[0]:
        out_rw = rewrite_study(cfg, pred, edit_idx, item_ids, seed, encoder, backend)
    return {"seed": seed, "heldout": report, "rewrite": out_rw, "fit": {
        "best_epoch": fit.get("best_epoch"), "valid": fit.get("valid"), "seconds": round(fit_s, 2),
        "n_train": int(len(train)), "n_test": int(len(test))}, "edits": rows,
        "direction_scales": [float(s) for s in scales]}


def rewrite_study(cfg: AdseeConfig, pred: ClickRatePredictor, edit_idx: np.ndarray,
                  item_ids: list[str], seed: int, encoder=None, backend=None
                  ) -> dict[str, Any]:
    """LLM rewrites of the first ``rewrite_items`` edited items' texts, scored by the predictor
    on their ``embedder`` vectors (the gain against the original text embedded the same way)."""
    from dataclasses import replace

    texts = json.loads(Path(cfg.texts).read_text())
    sel = np.array([i for i in edit_idx if item_ids[i] in texts][: cfg.rewrite_items])
    if not len(sel):
        raise DataError(f"none of the edited items has a text in {cfg.texts}")
    originals = [str(texts[item_ids[i]]) for i in sel]
    if encoder is None:
        from llmrec.knowledge.embed import Encoder

        encoder = Encoder(cfg.embedder)
    if backend is None:
        from llmrec.llm.config import load_backend

        backend = load_backend(cfg.llm)
    t0 = time.perf_counter()
    res = RewriteEditor(replace(cfg.rewrite, seed=seed)).run(
        originals, backend, lambda t: np.asarray(encoder.encode(t), dtype=np.float32),
        lambda items, v: pred.predict(sel[np.asarray(items)], v))
    return {"n_items": int(len(sel)), "budget": cfg.rewrite.budget, "llm": backend.identity(),
            "embedder": cfg.embedder, "gain_mean": float(res.gain.mean()),
            "distance_mean": float(res.distance.mean()),
            "improved": float((res.gain > 0).mean()), "generated": res.generated,
            "rejected": res.rejected, "seconds": round(time.perf_counter() - t0, 1),
            "examples": [{"item_id": item_ids[i], "original": o, "best": t, "operator": op,
                          "base": float(b), "predicted": float(p), "distance": float(d)}
                         for i, o, t, op, b, p, d in zip(sel, originals, res.texts,
                                                         res.operator, res.base, res.predicted,
                                                         res.distance)]}


def run_study(cfg: AdseeConfig) -> dict[str, Any]:
    """Every seed of ``cfg``; returns the per-seed results and their means / stds."""
    from llmrec.config import to_dict
    from llmrec.data.loaders import load_data

    vectors, source = load_vectors(cfg)  # first: a bad path fails before the data loads
    data = load_data(DataConfig(name=cfg.data_name, path=cfg.data_path))
    rates = item_rates(data.df("interactions"), cfg.regressor.min_ratings,
                       cfg.regressor.like_threshold)
    have = rates["item_id"].astype(str).isin(vectors)
    if not have.any():
        raise DataError("no rated item has a vector: the vector ids do not match the items' ids")
    if (~have).any():
        log.info("%d rated items have no vector and are left out", int((~have).sum()))
    rates = rates[have].reset_index(drop=True)
    per_seed = [run_seed(cfg, data, rates, vectors, s) for s in cfg.seeds]
    return {"config": to_dict(cfg), "vectors": source, "n_items": int(len(rates)),
            "target": f"like rate: share of ratings >= {cfg.regressor.like_threshold} per item "
                      f"with >= {cfg.regressor.min_ratings} ratings",
            "seeds": per_seed, "summary": summarise(per_seed)}


def _ms(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
            "n_seeds": int(len(a))}


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample std over seeds of the held-out report and of each budget's row."""
    keys = [k for k, v in per_seed[0]["heldout"].items() if isinstance(v, float)]
    held = {k: _ms([s["heldout"][k] for s in per_seed]) for k in keys}
    edits = []
    for j, row in enumerate(per_seed[0]["edits"]):
        out = {"budget": row["budget"], "distance": row["distance"]}
        for k, v in row.items():
            if isinstance(v, float) and k != "budget":
                out[k] = _ms([s["edits"][j][k] for s in per_seed])
        out["within_budget"] = all(s["edits"][j]["within_budget"] for s in per_seed)
        edits.append(out)
    rw = next((s["rewrite"] for s in per_seed if s.get("rewrite")), None)
    return {"heldout": held, "edits": edits, "rewrite": rw and {
        k: v for k, v in rw.items() if k != "examples"}}


def format_table(result: dict[str, Any]) -> str:
    """A markdown table of the summary (mean +- std over seeds)."""
    s = result["summary"]
    h = s["heldout"]
    n = h["rmse"]["n_seeds"]

    def f(d, p=4):
        return f"{d['mean']:.{p}f} +- {d['std']:.{p}f}"

    lines = [f"Predictor held-out error ({n} seeds, test items): RMSE {f(h['rmse'])} "
             f"(mean predictor {f(h['mean_rmse'])}), MAE {f(h['mae'])} (mean predictor "
             f"{f(h['mean_mae'])}), Pearson {f(h['pearson'], 3)}, Spearman "
             f"{f(h['spearman'], 3)}, nDCG@10 {f(h['ndcg@10'], 3)} (random order "
             f"{f(h['mean_ndcg@10'], 3)})", "",
             "| budget | predicted gain (GA) | random edit, equal norm | distance used | "
             "NN distance edited / original | nearest is self | outside catalogue range |",
             "|---|---|---|---|---|---|---|"]
    for r in s["edits"]:
        lines.append(f"| {r['distance']} {r['budget']:g} | {f(r['gain_mean'])} | "
                     f"{f(r['random_gain_mean'])} | {f(r['distance_mean'])} | "
                     f"{r['nn_distance_edited']['mean']:.3f} / "
                     f"{r['nn_distance_original']['mean']:.3f} | "
                     f"{r['nearest_is_self']['mean']:.2f} | "
                     f"{r['outside_catalogue_range']['mean']:.2f} |")
    rw = s.get("rewrite")
    if rw:
        lines += ["", f"LLM rewrites ({rw['llm']['model']}, {rw['n_items']} items, first seed, "
                      f"cosine budget {rw['budget']:g}): predicted gain {rw['gain_mean']:.4f}, "
                      f"improved {rw['improved']:.2f}, distance {rw['distance_mean']:.3f}, "
                      f"{rw['rejected']} of {rw['generated']} children rejected"]
    return "\n".join(lines)
