"""User knowledge as the history text itself, with or without an LLM answer appended.

KAR's user "knowledge" vector encodes more than the LLM's answer: the text it encodes is the
prompt's user part (demographics and the LM-history titles with their star ratings) followed by
the answer. :func:`history_embeddings` writes that kind of user knowledge as a folder in the
format of ``llmrec knowledge embed``, so KAR and KSER read it like any other:

- fields ``profile`` (one chunk: the user's demographics) and ``history`` (chunks of
  ``titles_per_chunk`` rated titles, oldest first: the LM history, nothing after the cutoff);
- with ``answers`` (a knowledge cache's parsed LLM fields per user), the answer's fields follow,
  one chunk per sentence, as ``knowledge embed`` would split them;
- ``whole``: the encoder's vector of the full text (profile, history, then the raw answer),
  truncated by the encoder at its own maximum length, as KAR's encoder truncates at 512 tokens.

Only the LM history is used (``Split.lm_history``), so the text is as leakage-safe as the
prompts of the knowledge layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llmrec.data.splits import lm_history_rows
from llmrec.errors import DataError

PROFILE_COLUMNS = ("gender", "age", "occupation")
_GENDER = {"F": "female", "M": "male"}


def profile_sentence(row: dict[str, Any]) -> str:
    """``A male user, age group 25, occupation: writer.`` from a users-table row."""
    parts = []
    g = _GENDER.get(str(row.get("gender", "")), str(row.get("gender", "") or "")).strip()
    parts.append(f"A {g} user" if g else "A user")
    if row.get("age") not in (None, ""):
        parts.append(f"age group {row['age']}")
    if row.get("occupation") not in (None, ""):
        parts.append(f"occupation: {row['occupation']}")
    return ", ".join(parts) + "."


def history_chunks(titles: list[str], ratings: list[float], per_chunk: int = 5) -> list[str]:
    """Rated titles, ``per_chunk`` per chunk: ``Rated "Heat (1995)" 4 of 5; ...``."""
    items = [f'"{t}" {int(r)} of 5' for t, r in zip(titles, ratings)]
    return ["Rated " + "; ".join(items[i:i + per_chunk]) + "."
            for i in range(0, len(items), per_chunk)]


def user_texts(data, split, users: list[str] | None = None, per_chunk: int = 5
               ) -> dict[str, dict[str, Any]]:
    """Per user: ``profile`` (str) and ``history`` (list of chunk strings) from the LM history."""
    items = data.df("items")
    title = dict(zip(items["item_id"].astype(str), items["title"].astype(str)))
    users_df = data.df("users") if data.has("users") else None
    prof = ({str(r["user_id"]): r for r in users_df.to_dict("records")}
            if users_df is not None else {})
    h = lm_history_rows(split)
    h = h.assign(user_id=h["user_id"].astype(str))
    wanted = set(users) if users is not None else None
    out = {}
    for uid, g in h.groupby("user_id", sort=True):
        if wanted is not None and uid not in wanted:
            continue
        g = g.sort_values("position")
        if g["rating"].isna().any():
            raise DataError("history text needs ratings in the LM history")
        out[uid] = {"profile": profile_sentence(prof.get(uid, {})),
                    "history": history_chunks([title.get(str(i), str(i)) for i in g["item_id"]],
                                              g["rating"].tolist(), per_chunk)}
    return out


def history_embeddings(out: str | Path, data, split, embedder: str = "minilm",
                       device: str = "auto", answers: dict[str, dict] | None = None,
                       per_chunk: int = 5, max_chunks: int = 8, encoder=None,
                       memo: dict[str, np.ndarray] | None = None) -> Path:
    """Write the user history-text knowledge (``answers``: ``{user: {"fields": {field: text},
    "raw": text}}`` to append an LLM's answer) as an embeddings folder under ``out``.

    ``encoder`` (an :class:`~llmrec.knowledge.embed.Encoder`) and ``memo`` (text -> vector,
    filled as texts are encoded) let several folders share one model and one encoding of the
    texts they have in common."""
    from llmrec.knowledge.embed import Encoder, split_chunks
    from llmrec.ranking.knowledge.synthetic import write_embeddings

    texts = user_texts(data, split, per_chunk=per_chunk)
    users = sorted(texts, key=lambda u: (len(u), u))
    answer_fields: list[str] = []
    if answers:
        for a in answers.values():
            for f in a.get("fields", {}):
                if f not in answer_fields:
                    answer_fields.append(f)
    fields = ["profile", "history", *answer_fields]
    E, F, C = len(users), len(fields), max(max_chunks, 1)
    chunk_text: list[str] = []
    where: list[tuple[int, int, int]] = []
    whole_text = []
    rows = []
    for e, u in enumerate(users):
        per_field = {"profile": [texts[u]["profile"]], "history": texts[u]["history"][:C]}
        a = (answers or {}).get(u)
        for f in answer_fields:
            t = (a or {}).get("fields", {}).get(f) or ""
            per_field[f] = split_chunks(t, max_chunks=C) if t.strip() else []
        for fi, f in enumerate(fields):
            for c, t in enumerate(per_field.get(f, [])):
                chunk_text.append(t)
                where.append((e, fi, c))
                rows.append((u, f, c, t))
        full = texts[u]["profile"] + " " + " ".join(texts[u]["history"])
        if a and a.get("raw"):
            full += " " + str(a["raw"]).strip()
        whole_text.append(full)
    enc = encoder or Encoder(embedder, device=device)
    memo = {} if memo is None else memo
    todo = list(dict.fromkeys(t for t in chunk_text + whole_text if t not in memo))
    if todo:
        memo.update(zip(todo, enc.encode(todo)))
    vecs = np.stack([memo[t] for t in chunk_text])
    whole = np.stack([memo[t] for t in whole_text])
    D = vecs.shape[1]
    chunks = np.zeros((E, F, C, D), dtype=np.float16)
    mask = np.zeros((E, F, C), dtype=bool)
    for (e, f, c), v in zip(where, vecs):
        chunks[e, f, c] = v
        mask[e, f, c] = True
    template = "user_history" + ("+answer" if answers else "")
    return write_embeddings(out, {"user": {"ids": users, "fields": fields, "chunks": chunks,
                                           "mask": mask, "whole": whole, "texts": rows,
                                           "template": template}},
                            digest=f"{template}-{len(users)}-{per_chunk}-{C}",
                            embedder=str(enc.path.name))


def memo_from_folder(folder: str | Path, kind: str = "user") -> dict[str, np.ndarray]:
    """text -> vector of every chunk of an embeddings folder (to reuse its encodings)."""
    import pandas as pd

    from llmrec.knowledge.embed import load_embeddings

    emb = load_embeddings(folder, kind)
    chunks = np.asarray(emb["chunks"])
    pos = {str(e): i for i, e in enumerate(emb["entity_ids"])}
    fpos = {str(f): i for i, f in enumerate(emb["field_ids"])}
    df = pd.read_parquet(Path(folder) / f"{kind}_chunks.parquet")
    return {t: chunks[pos[str(e)], fpos[str(f)], int(c)]
            for e, f, c, t in df[["entity_id", "field", "chunk", "text"]].itertuples(index=False)
            if str(e) in pos and str(f) in fpos}


def answers_from_cache(cache_dir: str | Path, template: str = "user_movie",
                       model: str | None = None) -> dict[str, dict]:
    """``{user: {"fields": {field: text}, "raw": text}}`` from a knowledge cache's user entries."""
    from llmrec.knowledge.cache import KnowledgeCache

    df = KnowledgeCache(cache_dir).read()
    df = df[(df["entity"] == "user") & (df["template"] == template)]
    if model is not None:
        df = df[df["model"] == model]
    if df.empty:
        raise DataError(f"{cache_dir} holds no user entries of template {template!r}")
    out = {}
    for r in df.to_dict("records"):
        ids, texts = r["field_ids"], r["field_texts"]
        fields = {str(f): str(t) for f, t in zip(list(ids) if ids is not None else [],
                                                 list(texts) if texts is not None else [])}
        out[str(r["entity_id"])] = {"fields": fields, "raw": r.get("raw") or ""}
    return out
