"""llmrec.progress: bars on a terminal, sparse whole lines under a pipe, nothing under --quiet."""

from __future__ import annotations

import llmrec.progress as progress_mod


def test_without_a_terminal_progress_writes_whole_lines(capsys, monkeypatch):
    monkeypatch.delenv("LLMREC_QUIET", raising=False)
    monkeypatch.setattr(progress_mod, "LOG_INTERVAL", 0.0)
    bar = progress_mod.progress(total=4, desc="embedding chunks", unit="chunk")
    for _ in range(4):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines and all(ln.startswith("embedding chunks:") for ln in lines)
    assert "4/4" in lines[-1]  # the closing line says where it ended


def test_quiet_silences_progress(capsys, monkeypatch):
    monkeypatch.setenv("LLMREC_QUIET", "1")
    bar = progress_mod.progress(total=2, desc="x")
    bar.update(2)
    bar.close()
    assert capsys.readouterr().err == ""
    assert not progress_mod.progress_enabled()
