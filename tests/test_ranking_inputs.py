"""A ranking run uses a saved split (``split_path``) or saved features (``features_path``) only
when they were made from what its config says, and its provenance then records what ran.

Real files: splits written by `llmrec data split`, features saved by `prepare_features`, on two
small CSV datasets cut from the bundled MovieLens ratings; the refusals are checked on a real
`llmrec rank train` process too (it fails before any training).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmrec.config import load_config
from llmrec.data.config import bundled_path
from llmrec.errors import ConfigError
from llmrec.ranking.pipeline import RankConfig, prepare_features

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = "{user_id: userId, item_id: movieId, rating: rating, timestamp: timestamp}"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    lines = (bundled_path() / "ratings.csv").read_text().splitlines(keepends=True)
    (root / "a.csv").write_text("".join(lines[:4001]))
    (root / "b.csv").write_text("".join(lines[:1] + lines[4001:8001]))
    for name, extra in (("split_a", []), ("split_a_seed3", ["--split.seed=3"])):
        assert _llmrec(root, "data", "split", *_data(root / "a.csv"), f"--out={root / name}",
                       *extra).returncode == 0
    return root


def _data(path: Path) -> list[str]:
    return ["--data.name=csv", f"--data.path={path}", f"--data.columns={COLUMNS}"]


def _llmrec(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMREC_HOME": str(cwd / "home"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "llmrec", "-q", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _cfg(*flags: str) -> RankConfig:
    return load_config(RankConfig, None, list(flags))


def test_a_split_of_another_dataset_is_refused(files, tmp_path):
    proc = _llmrec(tmp_path, "rank", "train", f"--split_path={files / 'split_a'}",
                   "--train.epochs=1", "--train.device=cpu", f"--output_dir={tmp_path / 'run'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert "is a split of dataset 'csv', but this run loads 'ml-latest-small'" in line
    assert not (tmp_path / "run").exists()


def test_a_split_of_other_interactions_of_the_same_kind_is_refused(files):
    cfg = _cfg(f"--split_path={files / 'split_a'}", *_data(files / "b.csv"))
    with pytest.raises(ConfigError, match="was made from other interactions than the data"):
        prepare_features(cfg)


def test_the_saved_split_settings_are_what_the_run_records(files, tmp_path):
    cfg = _cfg(f"--split_path={files / 'split_a_seed3'}", *_data(files / "a.csv"))
    assert cfg.split.seed == 42
    fs = prepare_features(cfg)
    assert cfg.split.seed == 3 and fs.info["dataset"] == "csv"
    # a real run: its llmrec_meta.json says seed 3, the split it trained on
    run = tmp_path / "run"
    proc = _llmrec(tmp_path, "rank", "train", f"--split_path={files / 'split_a_seed3'}",
                   *_data(files / "a.csv"), "--train.epochs=1", "--train.device=cpu",
                   f"--output_dir={run}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run / "llmrec_meta.json").read_text())["config"]["split"]["seed"] == 3


def test_split_options_contradicting_the_saved_split_are_refused(files):
    cfg = _cfg(f"--split_path={files / 'split_a_seed3'}", *_data(files / "a.csv"),
               "--split.seed=5")
    with pytest.raises(ConfigError, match=r"other split settings than this run's \(split.seed\)"):
        prepare_features(cfg)


def test_features_are_reused_only_for_the_settings_that_built_them(files, tmp_path):
    feats = tmp_path / "feats"
    base = [*_data(files / "a.csv"), f"--features_path={feats}"]
    built = prepare_features(_cfg(*base))
    assert (feats / "features.safetensors").is_file()
    again = prepare_features(_cfg(*base))  # same settings: loaded as they are
    assert again.info["split_fingerprint"] == built.info["split_fingerprint"]
    for flags, named in (
            (["--features.max_hist_len=3"], "features.max_hist_len"),
            (["--split.seed=7"], "split.seed"),
            ([f"--data.path={files / 'b.csv'}"], "data.path"),
            ([f"--split_path={files / 'split_a_seed3'}"], "split (fingerprint")):
        with pytest.raises(ConfigError, match="holds features built with other settings") as e:
            prepare_features(_cfg(*base, *flags))
        assert named in str(e.value) and "--features_path" in str(e.value)
    # the refusal on the command line, before any training
    proc = _llmrec(tmp_path, "rank", "train", *base, "--features.max_hist_len=3",
                   "--train.epochs=1", "--train.device=cpu", f"--output_dir={tmp_path / 'r'}")
    assert proc.returncode == 2 and "features.max_hist_len" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()


def test_features_built_on_a_saved_split_need_that_split(files, tmp_path):
    feats = tmp_path / "feats"
    base = [*_data(files / "a.csv"), f"--features_path={feats}"]
    prepare_features(_cfg(*base, f"--split_path={files / 'split_a'}"))
    prepare_features(_cfg(*base, f"--split_path={files / 'split_a'}"))  # the same split: reused
    with pytest.raises(ConfigError, match="split_path .*built on the split saved in"):
        prepare_features(_cfg(*base))
