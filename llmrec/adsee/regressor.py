"""The click-rate predictor (AdSEE's CRP): a ranking-engine backbone trained with the regression
task on one sample per item, with the item's text vector as a dense field.

Target (MovieLens): an item's *like rate*, the share of its ratings that are >= ``like_threshold``
(4 of 5 stars), over the items with at least ``min_ratings`` ratings. This is the CTR label mean
of the KAR protocol (label = rating >= 4) per item, taken over all of an item's ratings in the
files given (ML-1M users 1-2999 here). Items are split at random (seeded) into train / valid /
test, so the test error is that of items the predictor never saw; the item id is *not* a
feature (a held-out item's id would be unknown anyway), only its attributes (year, genres) and
its text vector are.

The engine does the work: :func:`item_samples` builds flat samples (one per item, no user, no
history) that :func:`~llmrec.ranking.features.build_features` encodes, the vectors become the
item-level dense field ``text`` (:meth:`FeatureSet.add_dense`), any registered CTR backbone reads
it through its dense projection, and :class:`~llmrec.ranking.trainer.Trainer` trains it with
``TaskConfig(kind="regression")`` (MSE, early stopping on validation RMSE). What this module
adds is the held-out report (:func:`heldout_report`: MSE / RMSE / MAE, Pearson and Spearman
correlation, nDCG@10 of the test items ranked by prediction, each beside the mean predictor's)
and :class:`ClickRatePredictor`, which scores *edited* vectors for an item by replacing the dense
field of its sample's batch.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmrec.config import option
from llmrec.errors import ConfigError, DataError
from llmrec.ranking.train_config import TrainConfig

log = logging.getLogger(__name__)

DENSE_FIELD = "text"


@dataclass
class ClickRateConfig:
    """The click-rate predictor: target, item split, fields, backbone and training."""

    min_ratings: int = option(20, help="items with fewer ratings are left out (their rate is "
                                       "too noisy to learn or to judge)")
    like_threshold: float = option(4.0, help="a rating at or above this counts as a click "
                                             "(KAR's label: rating >= 4)")
    valid_frac: float = option(0.15, help="share of the items held out for early stopping")
    test_frac: float = option(0.15, help="share of the items held out for the reported error")
    item_fields: list[str] = option(["year"], help="scalar item attributes (categorical fields)")
    item_multi_fields: list[str] = option(["genres"], help="list-valued item attributes")
    use_text: bool = option(True, help="feed the item text vector as the dense field `text` "
                                       "(off: attributes only, the ablation)")
    model: str = option("dnn", help="CTR backbone of the ranking engine (`llmrec rank models`)")
    model_args: dict[str, Any] = option({"embed_dim": 16, "hidden": [128, 64], "dropout": 0.1},
                                        help="the backbone's hyper-parameters")
    # a few thousand samples: small batches, many epochs, patience for a noisy validation RMSE
    # (flat options rather than a nested TrainConfig, whose class defaults suit CTR logs)
    epochs: int = option(60, help="most training epochs (early stopping on validation RMSE)")
    batch_size: int = option(128, help="training batch size")
    lr: float = option(1e-3, help="Adam learning rate")
    weight_decay: float = option(0.0, help="Adam L2 penalty")
    patience: int = option(8, help="stop after this many epochs without a better validation RMSE")
    device: str = option("cpu", help="cpu, cuda or auto (a few thousand samples: cpu is enough)")

    def train_config(self, seed: int) -> TrainConfig:
        """The ranking engine's training settings for this predictor."""
        return TrainConfig(seed=seed, device=self.device, batch_size=self.batch_size,
                           epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                           patience=self.patience, checkpoint=False)

    def __post_init__(self) -> None:
        if self.min_ratings < 1:
            raise ConfigError("regressor.min_ratings must be >= 1")
        if not (0 < self.valid_frac < 1 and 0 < self.test_frac < 1
                and self.valid_frac + self.test_frac < 1):
            raise ConfigError(f"regressor: valid_frac {self.valid_frac} and test_frac "
                              f"{self.test_frac} must be in (0, 1) and sum below 1")


# -- data -----------------------------------------------------------------------------------------
def item_rates(interactions, min_ratings: int, like_threshold: float):
    """Per item: ``item_id, n_ratings, rate`` (share of ratings >= ``like_threshold``), items
    with at least ``min_ratings`` ratings, sorted by item id as text."""
    import pandas as pd

    for col in ("item_id", "rating"):
        if col not in interactions.columns:
            raise DataError(f"the interactions table has no {col!r} column (has: "
                            f"{', '.join(interactions.columns)}); the like rate needs ratings")
    df = pd.DataFrame({"item_id": interactions["item_id"].astype(str),
                       "like": (interactions["rating"].to_numpy() >= like_threshold)})
    g = df.groupby("item_id", sort=True)["like"].agg(["size", "mean"])
    g = g[g["size"] >= min_ratings]
    if len(g) < 3:  # a train, a valid and a test item at the least
        raise DataError(f"only {len(g)} items have >= {min_ratings} ratings; lower "
                        f"regressor.min_ratings")
    return pd.DataFrame({"item_id": g.index.to_numpy(dtype=object),
                         "n_ratings": g["size"].to_numpy(), "rate": g["mean"].to_numpy()})


def split_items(n: int, valid_frac: float, test_frac: float, seed: int) -> np.ndarray:
    """A seeded random assignment of ``n`` items to train / valid / test (array of names)."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test, n_valid = max(1, round(n * test_frac)), max(1, round(n * valid_frac))
    out = np.full(n, "train", dtype=object)
    out[perm[:n_test]] = "test"
    out[perm[n_test:n_test + n_valid]] = "valid"
    return out


def item_samples(rates, seed: int, valid_frac: float, test_frac: float):
    """Flat samples, one per item: ``user_id`` (one constant, unused), ``item_id``, ``label``
    (the rate), ``split``."""
    import pandas as pd

    return pd.DataFrame({"user_id": "all", "item_id": rates["item_id"].astype(str).to_numpy(),
                         "label": rates["rate"].to_numpy(dtype=np.float32),
                         "split": split_items(len(rates), valid_frac, test_frac, seed)})


@dataclass
class _Split:
    samples: Any
    history: Any = None


def build_item_features(data, samples, cfg: ClickRateConfig, vectors: dict[str, np.ndarray]
                        | None):
    """Encode ``samples`` with the ranking engine's features and attach the item vectors as the
    item-level dense field ``text`` (rows of items without a vector stay zero)."""
    from llmrec.ranking.features import FeatureConfig, build_features

    fcfg = FeatureConfig(max_hist_len=0, user_fields=[], use_user_id=False, use_item_id=False,
                         use_hist_rating=False, item_fields=list(cfg.item_fields),
                         item_multi_fields=list(cfg.item_multi_fields))
    fs = build_features(data, _Split(samples), fcfg)
    if cfg.use_text:
        if not vectors:
            raise ConfigError("regressor.use_text is on but no item vectors were given")
        rows = fs.row_ids("item")
        d = len(next(iter(vectors.values())))
        table = np.zeros((len(rows) + 1, d), dtype=np.float32)
        for r, item in enumerate(rows, start=1):
            v = vectors.get(str(item))
            if v is not None:
                table[r] = v
        fs.add_dense(DENSE_FIELD, table, level="item")
    return fs


# -- training and report --------------------------------------------------------------------------
def fit_regressor(fs, cfg: ClickRateConfig, seed: int):
    """Train ``cfg.model`` on ``fs`` with the regression task; returns (model, trainer result)."""
    from llmrec.ranking.registry import build_model, family_of
    from llmrec.ranking.task_config import TaskConfig
    from llmrec.ranking.trainer import Trainer, seed_everything

    if family_of(cfg.model) != "ctr":
        raise ConfigError(f"regressor.model {cfg.model!r} is not a CTR backbone; the click-rate "
                          f"predictor needs one score per sample (dnn, autoint, dcnv2, ...)")
    seed_everything(seed)
    model = build_model(cfg.model, copy.deepcopy(fs.spec), **cfg.model_args)
    trainer = Trainer(model, fs, cfg.train_config(seed), output_dir=None, task=TaskConfig(kind="regression"))
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    model.eval()
    return model, result


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    import pandas as pd

    return pd.Series(x).rank(method="average").to_numpy()


def ndcg10(pred: np.ndarray, truth: np.ndarray) -> float:
    """nDCG@10 of the items ranked by ``pred`` with linear gain ``truth``."""
    import torch

    from llmrec.ranking.metrics import ndcg_at_k

    p = torch.as_tensor(pred, dtype=torch.float64)[None]
    y = torch.as_tensor(truth, dtype=torch.float64)[None]
    return ndcg_at_k(p, y, torch.ones_like(p, dtype=torch.bool), 10, gain="linear")


def heldout_report(pred: np.ndarray, truth: np.ndarray, train_mean: float, seed: int = 0,
                   n_perm: int = 200) -> dict[str, float]:
    """Held-out error of ``pred`` against ``truth``, beside the mean predictor (``train_mean``
    for every item). A constant predictor orders items arbitrarily, so its nDCG@10 is the mean
    over ``n_perm`` seeded random orders."""
    pred = np.asarray(pred, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    err, err0 = pred - truth, train_mean - truth
    rng = np.random.default_rng(seed)
    rand = float(np.mean([ndcg10(rng.random(len(truth)), truth) for _ in range(n_perm)]))
    return {"n": int(len(truth)),
            "mse": float((err ** 2).mean()), "rmse": float(math.sqrt((err ** 2).mean())),
            "mae": float(np.abs(err).mean()),
            "pearson": _pearson(pred, truth), "spearman": _pearson(_ranks(pred), _ranks(truth)),
            "ndcg@10": ndcg10(pred, truth),
            "mean_mse": float((err0 ** 2).mean()), "mean_rmse": float(math.sqrt((err0 ** 2).mean())),
            "mean_mae": float(np.abs(err0).mean()), "mean_ndcg@10": rand,
            "truth_std": float(truth.std())}


class ClickRatePredictor:
    """A trained predictor that scores edited text vectors of given samples (items)."""

    def __init__(self, model, fs, field: str = DENSE_FIELD, batch_rows: int = 8192) -> None:
        if field not in fs.spec.dense:
            raise ConfigError(f"the predictor has no dense field {field!r} to edit (fields: "
                              f"{', '.join(fs.spec.dense) or 'none'}); train it with use_text")
        self.model = model
        self.fs = fs
        self.field = field
        self.batch_rows = batch_rows

    def predict(self, sample_idx: np.ndarray, vectors: np.ndarray | None = None) -> np.ndarray:
        """Predicted rate of samples ``sample_idx [n]``; with ``vectors [n, d]`` or ``[n, P, d]``
        the item's text vector is replaced by each given one (result [n] or [n, P])."""
        import torch

        idx = torch.as_tensor(np.asarray(sample_idx), dtype=torch.long, device=self.fs.device)
        if vectors is None:
            flat_idx, flat_v, shape = idx, None, (len(idx),)
        else:
            v = np.asarray(vectors, dtype=np.float32)
            if v.ndim == 2:
                v = v[:, None]
            if v.ndim != 3 or v.shape[0] != len(idx):
                raise ConfigError(f"predict: vectors of shape {np.shape(vectors)} for "
                                  f"{len(idx)} samples; give [n, d] or [n, P, d]")
            shape = v.shape[:2] if np.ndim(vectors) == 3 else (v.shape[0],)
            flat_idx = idx.repeat_interleave(v.shape[1])
            flat_v = torch.from_numpy(v.reshape(-1, v.shape[-1])).to(self.fs.device)
        outs = []
        self.model.eval()
        with torch.no_grad():
            for s in range(0, len(flat_idx), self.batch_rows):
                batch = self.fs.batch(flat_idx[s:s + self.batch_rows])
                if flat_v is not None:
                    batch["dense"] = {**batch["dense"],
                                      self.field: flat_v[s:s + self.batch_rows]}
                outs.append(self.model(batch)["logit"].float().cpu().numpy())
        out = np.concatenate(outs) if outs else np.zeros(0, dtype=np.float32)
        return out.reshape(shape).astype(np.float64)

    def projection_weight(self) -> np.ndarray:
        """The backbone's linear map of the dense field (``[embed_dim, d]``), if it has one."""
        emb = getattr(self.model, "embedding", None)
        lin = getattr(getattr(emb, "dense", None), "__getitem__", None)
        if lin is None:
            raise ConfigError(f"{type(self.model).__name__} has no dense projection to take "
                              f"directions from; use editor directions: pca")
        return self.model.embedding.dense[self.field].weight.detach().cpu().numpy()
