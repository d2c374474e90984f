"""Typed transcripts: the engine's records round-trip exactly, old files load, bad records are
named by file, line and key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from llmrec.crs.transcript import (AgentTurn, Rating, Step, Transcript, TranscriptError,
                                   TranscriptStore, UserTurn)
from test_crs_engine import TASKS, Scripted, _cfg, toy_catalog

# written by the engine before transcripts were typed (05906cd): one dialogue with saved
# prompts, one in structured decoding, one of failed turns
V1 = Path(__file__).parent / "data" / "transcripts_v1.jsonl"


def test_transcripts_written_before_typing_load_and_round_trip_exactly(tmp_path):
    lines = V1.read_text().splitlines()
    typed = [Transcript.from_dict(json.loads(x), f"{V1.name}:{i}")
             for i, x in enumerate(lines, 1)]
    for t, line in zip(typed, lines):
        # same keys, same order, same values
        assert json.dumps(t.to_dict(), ensure_ascii=False) == \
            json.dumps(json.loads(line), ensure_ascii=False)
    plain, structured, failed = typed
    assert isinstance(plain.turns[0], UserTurn) and isinstance(plain.turns[1], AgentTurn)
    agent = plain.agent_turns()[0]
    assert agent.ok and agent.steps and isinstance(agent.steps[0], Step)
    assert agent.steps[0].prompt[0]["role"] == "system"
    assert isinstance(agent.ratings["expression"], Rating)
    assert agent.ratings["expression"].deductions is not None
    # keys the classes do not name (the recommendation rater's best / similarity) are kept
    assert set(agent.ratings["recommendation"].extra) == {"best", "similarity"}
    assert structured.agent_turns()[0].steps[0].kind in ("Search", "Recommend")
    assert structured.agent_turns()[0].steps[0].prompt is None
    bad = failed.agent_turns()[0]
    assert not bad.ok and bad.error and bad.ratings["expression"].rating is None
    # through the store: the first record of a task id is kept (the third line repeats "a")
    shutil.copy(V1, tmp_path / "transcripts.jsonl")
    store = TranscriptStore(tmp_path)
    assert [t.task_id for t in store.transcripts()] == ["a", "b"]
    assert store.load() == [json.loads(x) for x in lines[:2]]


def test_engine_records_are_typed_and_round_trip(tmp_path):
    from llmrec.crs.engine import Engine

    backend = Scripted()
    cfg = _cfg(tmp_path, save_prompts=True)
    res = Engine(cfg, toy_catalog(), TASKS, backends={"agent": backend,
                                                      "simulator": backend}).run()
    lines = (tmp_path / "run" / "transcripts.jsonl").read_text().splitlines()
    assert len(lines) == len(TASKS)
    for line, rec in zip(lines, res.records):
        t = Transcript.from_dict(json.loads(line))
        assert t.to_dict() == json.loads(line) == rec
        assert t.success == rec["success"] and t.rounds == len(t.agent_turns())
    # typed in, typed out: from_dict(to_dict(t)) is t again
    t = TranscriptStore(tmp_path / "run").transcripts()[0]
    assert Transcript.from_dict(t.to_dict()) == t


def test_a_bad_record_names_its_file_line_and_key(tmp_path):
    lines = V1.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["turns"][1]["steps"][0]["output"] = 7
    (tmp_path / "transcripts.jsonl").write_text(lines[0] + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(TranscriptError, match=r"transcripts.jsonl:2: turns\[1\]\.steps\[0\]"
                                              r"\.output: expected str, got int \(7\)"):
        TranscriptStore(tmp_path).transcripts()
    rec = json.loads(lines[1])
    del rec["task"]
    with pytest.raises(TranscriptError, match=r"^x:3: task: missing key$"):
        Transcript.from_dict(rec, "x:3")
    rec = json.loads(lines[0])
    rec["turns"][0]["role"] = "narrator"
    with pytest.raises(TranscriptError, match=r"turns\[0\]\.role: expected one of"):
        Transcript.from_dict(rec)
    with pytest.raises(TranscriptError, match="record: expected an object, got list"):
        Transcript.from_dict([1])


def test_append_checks_the_record_and_a_torn_line_is_still_cut(tmp_path):
    store = TranscriptStore(tmp_path)
    rec = json.loads(V1.read_text().splitlines()[0])
    store.append(Transcript.from_dict(rec))
    with pytest.raises(TranscriptError, match="task_id: missing key"):
        store.append({k: v for k, v in rec.items() if k != "task_id"})
    with open(store.path, "ab") as fh:
        fh.write(b'{"task_id": "z", "turns": [')
    assert [t.task_id for t in store.transcripts()] == ["a"]
    assert store.path.read_bytes().endswith(b"}\n")


def test_a_damaged_middle_line_is_an_error_and_loses_nothing(tmp_path):
    from llmrec.crs.transcript import TranscriptStore
    from llmrec.errors import DataError

    src = Path(__file__).parent / "data" / "transcripts_v1.jsonl"
    lines = src.read_text().splitlines(keepends=True)
    store = TranscriptStore(tmp_path)
    store.path.write_text(lines[0] + "{not json\n" + "".join(lines[1:]))
    before = store.path.read_bytes()
    with pytest.raises(DataError, match=r":2: not a JSON record"):
        store.transcripts()
    assert store.path.read_bytes() == before  # nothing cut
    # a torn last line (a killed writer) is still cut, keeping every finished record
    store.path.write_text("".join(lines))
    n = len(store.transcripts())
    store.path.write_text("".join(lines) + '{"task_id": "half')
    assert len(store.transcripts()) == n
    assert store.path.read_text() == "".join(lines)
