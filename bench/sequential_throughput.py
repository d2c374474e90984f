"""SASRec training throughput: ours against RecBole's SASRec (from its wheel), same data, batch
and model size, in one run.

    python bench/sequential_throughput.py --config eval/sequential/beauty.yaml \
        --out bench/results/sequential_throughput.jsonl [--variants eager,compile,graph] \
        [--recbole] [--timed-epochs 2] [--max-users N] [--max-steps N]

* The data: the recipe's leave-one-out features (Amazon Beauty 5-core by default), exported to
  RecBole's atomic file format (``<name>.inter``: ``user_id:token``, ``item_id:token``,
  ``timestamp:float``), one line per interaction with the item-table row as the item token and the
  position in the user's sequence as the timestamp, so RecBole's time order (``order: TO``) and
  its leave-one-out split (``split: {LS: valid_and_test}``) see exactly our sequences; RecBole's
  sequential data augmentation then makes one training sample per prefix, as our default
  next-item task does (``task.sequence_training: false``). Both sides' training sample counts are
  recorded.
* The model: the recipe's SASRec (the S3-Rec protocol's hidden 64, 2 blocks, 1 head, max length
  50, dropout 0.5); RecBole's with ``hidden_size`` 64, ``inner_size`` 64 x ``ffn_mult``, GELU,
  the same dropout, full-softmax cross-entropy (``loss_type: CE``, no negative sampling), Adam at
  the same learning rate, ``train_batch_size`` = our batch size. The parameter counts of both
  are recorded (RecBole adds a bias-carrying LayerNorm after the embeddings and keeps its own
  position table).
* Ours: samples/s of the trainer's step (device-resident features, index-slice batches, bf16
  autocast on CUDA, fused Adam) over ``--timed-epochs`` epochs after a warm-up epoch (which also
  absorbs compilation), for each ``train.step`` variant (eager, compile, graph: CUDA graphs).
* RecBole: its own ``Trainer._train_epoch`` over its own ``TrainDataLoader`` (fp32, its defaults:
  ``reproducibility: True``, ``worker: 0``), one warm-up epoch, then ``--timed-epochs`` epochs.

The GPU host has no package index, so the wheel and the pure-Python dependencies it imports
travel with the run and are installed with ``--no-deps``. RecBole imports ``ray`` (hyper-parameter
tuning), ``plotly`` (plots), ``torch.utils.tensorboard`` (needs the ``tensorboard`` package) and,
in modules this benchmark never calls, ``scipy`` / ``sklearn``; for whichever of them is missing an
inert stand-in module is registered (the SummaryWriter stand-in accepts and drops every call) and
its name is recorded with the results (``stubbed_imports``). NumPy 2 removed ``np.float_``,
``np.complex_`` and ``np.unicode_``, which RecBole 1.2.1's ``Config`` reads to re-create
``np.float`` and friends for its own data code; where they are missing they are defined as their
NumPy 2 equivalents (recorded as ``numpy_aliases``). Nothing of RecBole's is copied here: it is
imported and called.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # llmrec from this checkout

from llmrec import benchrecord as br  # noqa: E402
from llmrec.errors import ConfigError, DataError  # noqa: E402

BENCH = "sequential_throughput"
ATOMIC_HEADER = ("user_id:token", "item_id:token", "timestamp:float")

log = logging.getLogger(BENCH)


# -- RecBole's atomic files ----------------------------------------------------------------------
def user_sequences(fs) -> dict[int, np.ndarray]:
    """Every user's item sequence (item-table rows in position order) rebuilt from the samples of
    all splits: under leave-one-out every interaction is a sample (``position`` 0..n-1)."""
    t = {k: fs.tensors[k].cpu().numpy() for k in ("user_row", "item_row", "position")}
    order = np.lexsort((t["position"], t["user_row"]))
    users, pos, items = t["user_row"][order], t["position"][order], t["item_row"][order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    bounds = np.r_[starts, len(users)]
    out = {}
    for a, b in zip(bounds[:-1], bounds[1:]):
        if not np.array_equal(pos[a:b], np.arange(b - a)):
            raise DataError(f"user row {users[a]}: sample positions {pos[a:b][:8].tolist()}... do "
                            f"not run 0..n-1; the export needs a leave-one-out split "
                            f"(split.protocol: leave-last-out) whose samples are every interaction")
        out[int(users[a])] = items[a:b]
    return out


def export_atomic(fs, folder: str | Path, name: str) -> Path:
    """Write ``folder/name/name.inter`` (RecBole's atomic format, tab-separated, typed header):
    one line per interaction, user-table row and item-table row as tokens, the position in the
    user's sequence as the timestamp (so time order is our order, without ties)."""
    from llmrec.artifacts import atomic_file

    seqs = user_sequences(fs)
    path = Path(folder) / name / f"{name}.inter"
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path, mode="w") as fh:
        fh.write("\t".join(ATOMIC_HEADER) + "\n")
        for u, items in seqs.items():
            fh.writelines(f"{u}\t{int(i)}\t{p}\n" for p, i in enumerate(items))
    return path


def read_atomic(path: str | Path) -> dict[str, list[str]]:
    """Per user token, the item tokens in timestamp order (what RecBole's TO order reads)."""
    lines = Path(path).read_text().splitlines()
    if tuple(lines[0].split("\t")) != ATOMIC_HEADER:
        raise DataError(f"{path}: header {lines[0]!r} is not {ATOMIC_HEADER}")
    rows = [ln.split("\t") for ln in lines[1:]]
    rows.sort(key=lambda r: (r[0], float(r[2])))
    out: dict[str, list[str]] = {}
    for u, i, _ in rows:
        out.setdefault(u, []).append(i)
    return out


# -- import stand-ins ----------------------------------------------------------------------------
class _Inert:
    """Accepts any construction and any method call, does nothing (stands in for classes RecBole
    builds at import or set-up time, e.g. tensorboard's SummaryWriter, on a path that only logs)."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _stub(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__path__ = []  # a package, so dotted submodules resolve
    mod.__getattr__ = lambda attr: _Inert  # type: ignore[method-assign]
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent and parent in sys.modules:
        setattr(sys.modules[parent], child, mod)
    return mod


# module-level imports of RecBole 1.2.x that its SASRec training path does not use
_STUBS = {"ray": ["ray.tune"], "plotly": ["plotly.graph_objs", "plotly.offline"],
          "torch.utils.tensorboard": [], "scipy": ["scipy.sparse"],
          "sklearn": ["sklearn.metrics"]}


def install_import_stubs() -> list[str]:
    stubbed = []
    for name, subs in _STUBS.items():
        try:
            __import__(name)
        except ImportError:
            _stub(name)
            for sub in subs:
                _stub(sub)
            stubbed.append(name)
    return stubbed


# NumPy 2 removed these aliases; RecBole 1.2.1's Config.compatibility_settings reads them to define
# np.float etc., which its data code uses (e.g. dataset.py, interaction.py)
_NUMPY_ALIASES = {"float_": "float64", "complex_": "complex128", "unicode_": "str_"}


def numpy_aliases() -> list[str]:
    """Define the NumPy 1 aliases RecBole reads, where this NumPy lacks them (returns their names)."""
    added = []
    for old, new in _NUMPY_ALIASES.items():
        try:
            getattr(np, old)
        except AttributeError:
            setattr(np, old, getattr(np, new))
            added.append(f"np.{old} = np.{new}")
    return added


def recbole_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("recbole")
    except Exception:
        return None


@contextlib.contextmanager
def _in_dir(path: Path):
    """RecBole writes ``saved/`` and ``log_tensorboard/`` under the working directory."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def recbole_config(data_dir: Path, name: str, base, device: str) -> dict:
    args = base.model_args
    return {
        "data_path": str(data_dir), "dataset": name, "checkpoint_dir": str(data_dir / "saved"),
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": base.features.max_hist_len,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                      "mode": "full"},
        "train_neg_sample_args": None, "loss_type": "CE",
        "hidden_size": args.get("embed_dim", 64), "n_layers": args.get("blocks", 2),
        "n_heads": args.get("heads", 1),
        "inner_size": args.get("embed_dim", 64) * args.get("ffn_mult", 1), "hidden_act": "gelu",
        "hidden_dropout_prob": args.get("dropout", 0.5),
        "attn_dropout_prob": args.get("dropout", 0.5),
        "train_batch_size": base.train.batch_size, "learning_rate": base.train.lr,
        "epochs": 1, "show_progress": False, "save_dataset": False, "save_dataloaders": False,
        "log_wandb": False, "seed": 0, "state": "WARNING",
        "use_gpu": device == "cuda", "gpu_id": "0",
    }


def time_recbole(folder: Path, name: str, base, timed_epochs: int, max_steps: int | None):
    """(samples/s, per-epoch seconds, training samples, parameters) of RecBole's SASRec."""
    import torch

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    device = "cuda" if torch.cuda.is_available() else "cpu"
    argv, sys.argv = sys.argv, sys.argv[:1]  # RecBole's Config also parses the command line
    try:
        with _in_dir(folder):
            config = Config(model="SASRec", dataset=name,
                            config_dict=recbole_config(folder, name, base, device))
            init_seed(config["seed"], config["reproducibility"])
            dataset = create_dataset(config)
            train_data, _, _ = data_preparation(config, dataset)
            model = SASRec(config, train_data._dataset).to(config["device"])
            trainer = Trainer(config, model)
    finally:
        sys.argv = argv
    logging.getLogger().setLevel(logging.INFO)  # RecBole's init lowers the root logger
    n = len(train_data._dataset)
    batches = len(train_data)
    if max_steps:
        # a prefix of the epoch: RecBole's loader has no step limit, so wrap it
        train_data = _Limited(train_data, max_steps)
        n = min(n, max_steps * base.train.batch_size)
    times = []
    for epoch in range(1 + timed_epochs):
        _sync()
        t0 = time.perf_counter()
        trainer._train_epoch(train_data, epoch, show_progress=False)
        _sync()
        times.append(time.perf_counter() - t0)
    n_params = sum(p.numel() for p in model.parameters())
    return n / (sum(times[1:]) / timed_epochs), times, n, n_params, batches, config


class _Limited:
    """The first ``steps`` batches of a RecBole loader (CPU smoke runs)."""

    def __init__(self, loader, steps):
        self.loader, self.steps = loader, steps
        self.shuffle = loader.shuffle
        self.sampler = getattr(loader, "sampler", None)

    def __iter__(self):
        for k, batch in enumerate(self.loader):
            if k >= self.steps:
                break
            yield batch

    def __len__(self):
        return min(self.steps, len(self.loader))


# -- ours ----------------------------------------------------------------------------------------
def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_ours(fs, base, variant: str, timed_epochs: int, max_steps: int | None):
    """(samples/s, warm-up seconds, samples per epoch, parameters, step used) of our SASRec."""
    import torch

    from llmrec.ranking.registry import build_model
    from llmrec.ranking.trainer import Trainer, seed_everything

    cfg = copy.deepcopy(base.train)
    cfg.step = variant
    cfg.checkpoint = False
    seed_everything(0)
    model = build_model(base.model, copy.deepcopy(fs.spec), **base.model_args)
    trainer = Trainer(model, copy.copy(fs), cfg, task=base.task)

    def epoch():
        batches = trainer.epoch_batches()
        return batches[:max_steps] if max_steps else batches

    t0 = time.perf_counter()
    for idx in epoch():  # warm-up: compilation, graph capture, allocator
        trainer.train_step(idx)
    _sync()
    warm = time.perf_counter() - t0
    n = 0
    t0 = time.perf_counter()
    for _ in range(timed_epochs):
        for idx in epoch():
            trainer.train_step(idx)
            n += idx.numel()
    _sync()
    dt = time.perf_counter() - t0
    step = getattr(trainer, "step_kind", variant)
    n_params = sum(p.numel() for p in model.parameters())
    per_epoch = n // timed_epochs
    trainer = model = None  # free the device memory before the next variant
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    torch._dynamo.reset()
    return n / dt, warm, per_epoch, n_params, step


def _subset_csv(base, max_users: int, work: Path) -> None:
    """Keep the first ``max_users`` users of a csv recipe's interactions (CPU smoke runs)."""
    import pandas as pd

    if base.data.name != "csv":
        raise ConfigError("--max-users works on csv recipes (data.name: csv)")
    df = pd.read_csv(base.data.path)
    keep = pd.unique(df["user_id"])[:max_users]
    path = work / "interactions.csv"
    df[df["user_id"].isin(keep)].to_csv(path, index=False)
    base.data.path = str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="a sequential recipe (SASRec, leave-one-out)")
    ap.add_argument("--out", required=True, help="JSONL file to append the records to")
    ap.add_argument("--variants", default="eager,compile,graph", help="our train.step values")
    ap.add_argument("--recbole", action="store_true", help="also time RecBole's SASRec")
    ap.add_argument("--timed-epochs", type=int, default=2)
    ap.add_argument("--max-users", type=int, default=None, help="smoke runs: first N users")
    ap.add_argument("--max-steps", type=int, default=None, help="smoke runs: batches per epoch")
    ap.add_argument("--dataset-label", default=None)
    args, overrides = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from llmrec.config import load_config, to_dict
    from llmrec.ranking.pipeline import RankConfig, prepare_features

    base = load_config(RankConfig, args.config, overrides)
    if base.model != "sasrec" or base.task.kind != "next_item":
        raise ConfigError("this benchmark compares SASRec on the next_item task")
    if base.task.sequence_training or base.task.loss != "full":
        raise ConfigError("RecBole's SASRec trains one sample per prefix with full-softmax CE: "
                          "use task.sequence_training: false and task.loss: full")
    work = Path(tempfile.mkdtemp(prefix="seq-tp-"))
    if args.max_users:
        _subset_csv(base, args.max_users, work)
    base.features_path = None
    fs = prepare_features(base)
    env = br.environment(extra_versions=("numpy", "pandas"))
    dataset = args.dataset_label or fs.info.get("dataset", base.data.name)
    common = {"dataset": dataset, "augment": "none", "batch_size": base.train.batch_size,
              "max_hist_len": base.features.max_hist_len, "model": "sasrec",
              "hyper_parameters": dict(base.model_args), "max_users": args.max_users,
              "max_steps": args.max_steps, "timed_epochs": args.timed_epochs,
              "command": " ".join(["python", *sys.argv])}
    import torch

    cuda = torch.cuda.is_available() and base.train.device != "cpu"
    precision = "bf16 autocast" if cuda and base.train.precision in ("auto", "bf16") else "fp32"
    rows, records, best = [], [], 0.0
    for variant in args.variants.split(","):
        try:
            sps, warm, n, n_params, step = time_ours(fs, base, variant, args.timed_epochs,
                                                     args.max_steps)
        except Exception as exc:  # a variant this stack cannot run is recorded, not fatal
            log.exception("ours %s failed", variant)
            records.append(br.record(BENCH, "train_samples_per_s", None, "samples/s", env,
                                     engine="llmrec", variant=variant, error=repr(exc)[:500],
                                     **common))
            continue
        best = max(best, sps)
        records.append(br.record(BENCH, "train_samples_per_s", sps, "samples/s", env,
                                 engine="llmrec", variant=variant, step=step,
                                 warmup_seconds=round(warm, 2), samples_per_epoch=n,
                                 n_parameters=n_params, precision=precision,
                                 config=to_dict(base.train), **common))
        rows.append((f"llmrec {variant}", sps, warm, n, n_params))
        log.info("ours %s: %.0f samples/s (warm-up %.1fs, %d samples per epoch)", variant, sps,
                 warm, n)
    br.append(args.out, records)
    records = []
    if args.recbole:
        stubbed = install_import_stubs()
        aliases = numpy_aliases()
        name = "llmrec_seq"
        export_atomic(fs, work / "recbole", name)
        sps, times, n, n_params, batches, rcfg = time_recbole(work / "recbole", name, base,
                                                               args.timed_epochs, args.max_steps)
        ours_n = int(fs.split_index("train").numel())
        rb_common = {**common, "engine": "recbole", "recbole_version": recbole_version(),
                     "stubbed_imports": stubbed, "numpy_aliases": aliases,
                     "precision": "fp32 (RecBole default)",
                     "reproducibility": bool(rcfg["reproducibility"]), "worker": rcfg["worker"]}
        records.append(br.record(BENCH, "train_samples_per_s", sps, "samples/s", env,
                                 epoch_seconds=[round(t, 3) for t in times],
                                 samples_per_epoch=n, batches_per_epoch=batches,
                                 n_parameters=n_params, **rb_common))
        rows.append(("recbole", sps, times[0], n, n_params))
        log.info("recbole: %.0f samples/s (epochs %s s, %d samples per epoch, stand-ins for %s)",
                 sps, [round(t, 2) for t in times], n, stubbed or "nothing")
        if best:
            records.append(br.record(BENCH, "speedup", best / sps, "x", env, engine="llmrec",
                                     baseline="recbole SASRec", ours_samples_per_s=best,
                                     recbole_samples_per_s=sps, **common))
            rows.append(("speedup (best ours / recbole)", best / sps, 0.0, 0, 0))
        log.info("training samples per epoch: ours %s, recbole %d", ours_n if not args.max_steps
                 else "(steps limited)", n)
    br.append(args.out, records)
    print(f"\n{'engine':<32} {'samples/s':>12} {'first/warm s':>12} {'samples':>9} "
          f"{'params':>9}   ({env['device']})")
    for label, v, w, n, p in rows:
        print(f"{label:<32} {v:>12,.1f} {w:>12.2f} {n:>9} {p:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
