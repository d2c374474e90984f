"""The command line under bad input and a hostile environment, as a user meets it: real `llmrec`
processes, real files and folders. Each case exits non-zero with one line that names the problem
and the fix (never a traceback), or succeeds where going on is right.

Cases: a string option given without a value, global flags after the subcommand, output piped
into `head`, outputs that cannot be written (under a file; a read-only folder), a cache folder
that does not exist, help pages kept readable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmrec.artifacts import NotWritableError, check_writable

ROOT = Path(__file__).resolve().parents[1]


def llmrec(*args: str, cwd: Path, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "LLMREC_HOME": str(cwd / "home"), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "llmrec", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **popen)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The process failed with exactly one line on stderr, starting 'error: ', no traceback."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# --------------------------------------------------------------------------- item 5


def test_string_option_without_value_is_an_error_not_true(tmp_path):
    proc = llmrec("-q", "data", "split", "--out", cwd=tmp_path)
    line = one_error_line(proc)
    assert proc.returncode == 2
    assert "--out needs a value" in line and "--out=VALUE" in line
    assert not (tmp_path / "true").exists() and not (tmp_path / "runs").exists()
    # followed by another flag, the same
    line = one_error_line(llmrec("data", "split", "--out", "--split.seed=3", cwd=tmp_path))
    assert "--out needs a value" in line


def test_bare_boolean_flag_still_switches_on():
    from llmrec.config import load_config
    from llmrec.data.cli import StatsConfig, SplitCommandConfig
    from llmrec.errors import ConfigError

    assert load_config(StatsConfig, None, ["--json"]).json is True
    with pytest.raises(ConfigError, match=r"--split.seed needs a value \(int\)"):
        load_config(SplitCommandConfig, None, ["--split.seed"])


def test_an_override_with_a_space_is_not_swallowed_by_the_dataset_argument(tmp_path):
    # argparse takes '--x={a: b}' (it has a space) for a positional: it used to become the
    # optional DATASET of `data split`, and the column mapping was silently lost
    (tmp_path / "r.csv").write_text("uid,iid,score,t\n1,2,4,100\n1,3,2,101\n2,2,5,102\n")
    proc = llmrec("-q", "data", "stats", "--data.name=csv", "--data.path=r.csv",
                  "--data.columns={user_id: uid, item_id: iid, rating: score, timestamp: t}",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "interactions" in proc.stdout and "3" in proc.stdout


# --------------------------------------------------------------------------- item 7


def test_quiet_works_after_the_subcommand(tmp_path):
    for argv in (["data", "stats", "--quiet"], ["data", "stats", "-q", "--json"],
                 ["--quiet", "data", "stats"]):
        proc = llmrec(*argv, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "INFO" not in proc.stderr and "Valid keys" not in proc.stderr
        assert "ml-latest-small" in proc.stdout


def test_quiet_silences_the_hugging_face_bars_too(tmp_path):
    code = ("import os, sys; from llmrec.cli import main; rc = main(sys.argv[1:]); "
            "print(os.environ.get('HF_HUB_DISABLE_PROGRESS_BARS'), "
            "os.environ.get('TRANSFORMERS_VERBOSITY'))")
    env = {**os.environ, "LLMREC_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    env.pop("TRANSFORMERS_VERBOSITY", None)
    proc = subprocess.run([sys.executable, "-c", code, "data", "stats", "--json", "--quiet"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("1 error"), proc.stderr


def test_output_piped_into_head_stops_quietly(tmp_path):
    env = {**os.environ, "LLMREC_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "llmrec", "-q", "data", "show", "--n=3000"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    first = proc.stdout.readline()  # what `head -1` reads, then it exits
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert first.startswith(b"---")
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141  # 128 + SIGPIPE, as a Unix tool killed by the signal


def test_missing_cache_folder_is_an_error_not_zero_entries(tmp_path):
    for cmd in ("stats", "show", "export"):
        line = one_error_line(llmrec("knowledge", cmd, f"--cache_dir={tmp_path / 'nope'}",
                                     f"--out={tmp_path / 'exp'}" if cmd == "export" else "-q",
                                     cwd=tmp_path))
        assert "nope does not exist" in line and "--cache_dir" in line
    (tmp_path / "empty").mkdir()
    line = one_error_line(llmrec("knowledge", "stats", f"--cache_dir={tmp_path / 'empty'}",
                                 cwd=tmp_path))
    assert "is not a knowledge cache" in line


def test_help_pages_are_grouped_and_readable(tmp_path):
    from llmrec.config import HELP_WIDTH, format_help
    from llmrec.ranking.pipeline import RankConfig

    text = format_help(RankConfig)
    assert max(len(ln) for ln in text.splitlines()) <= HELP_WIDTH
    for section in (" general:", " data:", " split:", " features:", " train:"):
        assert section in text.splitlines()
    proc = llmrec("simulate", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    epilog = proc.stdout.split("config options", 1)[1]
    assert max(len(ln) for ln in epilog.splitlines()) <= HELP_WIDTH


# --------------------------------------------------------------------------- item 4


def test_output_under_a_file_fails_before_any_work(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    t0 = time.time()
    for argv, option in ((["data", "split", f"--out={blocker}/split"], "--out"),
                         (["rank", "train", f"--output_dir={blocker}/run", "--train.epochs=1",
                           "--train.device=cpu"], "--output_dir"),
                         (["knowledge", "generate", f"--cache_dir={blocker}/cache"],
                          "--cache_dir"),
                         (["simulate", f"--out={blocker}/sim"], "--out"),
                         (["rank", "features", f"--features_path={blocker}/f"],
                          "--features_path")):
        line = one_error_line(llmrec("-v", *argv, cwd=tmp_path))
        assert f"{blocker} is a file, not a folder" in line and option in line, line
    # checked before the data is loaded or a model built: the five took seconds, not an epoch
    assert time.time() - t0 < 60


def _read_only_folder(tmp_path: Path) -> Path:
    ro = tmp_path / "read_only"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        probe = ro / "probe"
        probe.write_text("x")
    except OSError:
        return ro
    probe.unlink()
    ro.chmod(0o755)
    pytest.skip("this user can write into a 0555 folder (root): no real read-only folder here; "
                "the under-a-file case covers the failure path")


def test_read_only_output_folder(tmp_path):
    ro = _read_only_folder(tmp_path)
    try:
        line = one_error_line(llmrec("data", "split", f"--out={ro}/split", cwd=tmp_path))
        assert str(ro) in line and "not writable" in line and "--out" in line
        with pytest.raises(NotWritableError, match="not writable"):
            check_writable(ro / "x", "--out")
    finally:
        ro.chmod(0o755)


def test_check_writable_cases(tmp_path):
    assert check_writable(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # nothing is created
    f = tmp_path / "f.txt"
    f.write_text("x")
    with pytest.raises(NotWritableError, match="is a file, but a folder is written there"):
        check_writable(f, "--out")
    with pytest.raises(NotWritableError, match="is a folder, but a file is written there"):
        check_writable(tmp_path, "--out", folder=False)
    check_writable(f, "--out", folder=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]  # probes cleaned up
