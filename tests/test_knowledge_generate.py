"""``knowledge generate``: planning (LM-history only, cache keys), the repair loop, the CLI."""

from __future__ import annotations

import json

import pytest

from llmrec.data.loaders import DataConfig, load_data
from llmrec.data.splits import make_split
from llmrec.knowledge.generate import GenerateConfig, plan, run_generate
from llmrec.knowledge.templates import load_template
from llmrec.llm.base import Generation, LLMBackend
from llmrec.llm.config import LLMConfig

IDENT = {"model": "m", "revision": "r1"}
FIELDS = load_template("item_movie").field_ids


@pytest.fixture(scope="module")
def data():
    return load_data(DataConfig())


@pytest.fixture(scope="module")
def split(data):
    return make_split(data)


def test_user_prompts_show_only_the_lm_history(data, split):
    cfg = GenerateConfig(entities="users", limit=20)
    ents = plan(cfg, data, load_template("user_movie"), "user", IDENT, {}, split)
    assert len(ents) == 20
    hist = split.history
    for e in ents:
        n_lm = int(split.cutoffs.set_index("user_id").loc[e.id, "n_lm"])
        assert e.cutoff == {"n_lm": n_lm, "split": split.fingerprint}
        rows = hist[(hist["user_id"] == e.id)].sort_values("position")
        allowed = rows[rows["position"] < n_lm]["item_id"].astype(str).tolist()
        shown = [h["item_id"] for h in e.ctx["history"]]
        assert shown == allowed[-cfg.max_history:]
        later = set(rows[rows["position"] >= n_lm]["item_id"].astype(str)) - set(allowed)
        assert not later & set(shown)


def test_cache_key_changes_with_each_part(data, split, tmp_path):
    tmpl = load_template("item_movie")
    base = {e.id: e.key for e in plan(GenerateConfig(limit=3), data, tmpl, "item", IDENT, {"t": 0})}
    assert base == {e.id: e.key for e in plan(GenerateConfig(limit=3), data, tmpl, "item", IDENT,
                                              {"t": 0})}
    variants = [
        plan(GenerateConfig(limit=3), data, tmpl, "item", {**IDENT, "revision": "r2"}, {"t": 0}),
        plan(GenerateConfig(limit=3), data, tmpl, "item", IDENT, {"t": 1}),
        plan(GenerateConfig(limit=3, llm=LLMConfig(seed=5)), data, tmpl, "item", IDENT, {"t": 0}),
    ]
    edited = tmp_path / "item_movie.jinja"
    edited.write_text(tmpl.path.read_text().replace("briefly", "concisely"))
    variants.append(plan(GenerateConfig(limit=3), data, load_template(str(edited)), "item", IDENT,
                         {"t": 0}))
    for v in variants:
        assert not set(base.values()) & {e.key for e in v}
    users = plan(GenerateConfig(limit=2), data, load_template("user_movie"), "user", IDENT, {}, split)
    split2 = make_split(data, type(split.config)(max_lm_history=5))
    users2 = plan(GenerateConfig(limit=2), data, load_template("user_movie"), "user", IDENT, {}, split2)
    assert {e.key for e in users}.isdisjoint({e.key for e in users2})


class Scripted(LLMBackend):
    """Replies by rule: good JSON for some items, junk that a repair fixes, junk forever."""

    name = "scripted"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.calls = []

    model_id = property(lambda self: "scripted")
    model_revision = property(lambda self: "v1")

    def generate(self, conversations, sampling=None, *, seeds=None, json_schema=None):
        out = []
        for conv in conversations:
            text = conv[-1]["content"]
            self.calls.append(text)
            good = json.dumps({f: f"About {f}." for f in FIELDS})
            if "Rewrite the text" in text:
                reply = good if "FIXABLE" in text else "still junk"
            elif '"Toy Story' in text:
                reply = good
            elif '"Jumanji' in text:
                reply = "FIXABLE junk"
            else:
                reply = "hopeless junk"
            out.append(Generation(reply, prompt_tokens=10, completion_tokens=5))
        return out

    def score_options(self, conversations, options):
        raise NotImplementedError


def test_repair_loop_is_bounded_and_keeps_raw_replies(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    cfg = GenerateConfig(limit=3, cache_dir=str(tmp_path / "c"), max_attempts=3,
                         llm=LLMConfig(guided=False))
    backend = Scripted(cfg.llm)
    s = run_generate(cfg, backend, out=lambda *_: None)
    t = s["totals"]
    assert (t["generated"], t["ok"], t["raw"], t["failed"]) == (3, 2, 1, 0)
    # Toy Story: 1 call; Jumanji: answer + repair; Grumpier Old Men: answer + repair + resample
    assert len(backend.calls) == 1 + 2 + 3
    from llmrec.knowledge.cache import KnowledgeCache

    df = KnowledgeCache(tmp_path / "c").read().set_index("entity_id")
    assert df.loc["1", "status"] == "ok" and df.loc["1", "attempts"] == 1
    assert df.loc["2", "attempts"] == 2 and list(df.loc["2", "field_ids"]) == FIELDS
    assert df.loc["3", "status"] == "raw" and list(df.loc["3", "field_texts"]) == ["hopeless junk"]
    assert df.loc["3", "raw"] == "hopeless junk" and df.loc["3", "prompt_tokens"] == 30
    # everything cached: a second run asks the backend nothing
    backend.calls.clear()
    s2 = run_generate(cfg, backend, out=lambda *_: None)
    assert s2["totals"]["cached"] == 3 and backend.calls == []


@pytest.fixture(scope="module")
def tiny_paths(tmp_path_factory):
    from llmrec.models.tiny import tiny_bert, tiny_llama

    root = tmp_path_factory.mktemp("tiny_models")
    return tiny_llama(root / "llama"), tiny_bert(root / "bert")


def _cli(argv, monkeypatch):
    import llmrec.cli as cli

    if "llmrec.knowledge.cli" not in cli.STAGE_CLIS:
        monkeypatch.setattr(cli, "STAGE_CLIS", cli.STAGE_CLIS + ("llmrec.knowledge.cli",))
    return cli.main(argv)


def test_cli_generate_show_stats_export_embed(tiny_paths, tmp_path, monkeypatch, capsys):
    import pandas as pd

    llama, bert = tiny_paths
    monkeypatch.setenv("LLMREC_HOME", str(tmp_path / "home"))
    cache = tmp_path / "cache"
    common = [f"--cache_dir={cache}"]
    assert _cli(["-q", "knowledge", "generate", "--entities=both", "--limit=4",
                 f"--llm.model={llama}", "--llm.max_new_tokens=6", "--max_attempts=1"] + common,
                monkeypatch) == 0
    out = capsys.readouterr().out
    assert "8 generated" in out and "tokens" in out
    assert _cli(["knowledge", "show", "--entity=user", "--id=1", "--raw"] + common, monkeypatch) == 0
    out = capsys.readouterr().out
    assert "user 1" in out and '"n_lm": 30' in out
    assert _cli(["knowledge", "stats", "--json"] + common, monkeypatch) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entries"] == 8 and {g["entity"] for g in stats["groups"]} == {"item", "user"}
    assert _cli(["knowledge", "export", f"--out={tmp_path / 'exp'}", "--entity=item"] + common,
                monkeypatch) == 0
    assert len(pd.read_parquet(tmp_path / "exp" / "knowledge.parquet")) == 4
    assert _cli(["knowledge", "show", "--id=nope"] + common, monkeypatch) == 2
    assert _cli(["knowledge", "generate", "--entitys=items"] + common, monkeypatch) == 2
    assert _cli(["-q", "knowledge", "embed", f"--embedder={bert}", f"--out={tmp_path / 'emb'}"]
                + common, monkeypatch) == 0
    assert (tmp_path / "emb" / "item.safetensors").is_file()
