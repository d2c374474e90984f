"""The knowledge cache: content-addressed entries in immutable Parquet shards.

Layout of a cache folder::

    cache.json               format version
    shards/*.parquet         immutable shards, one per flush of one writer; provenance in the
                             Parquet schema metadata (config, versions, git revision)
    claims/<key>.claim       entries some live writer is generating right now
    runs/*.json              one summary per finished ``generate`` run

Every entry's ``key`` is a hash of everything that decides its text: entity kind and id, the
template's content hash, model id + revision, sampling parameters, seed, the user's LM-history
cutoff (with the split's fingerprint) and the rendered prompt itself (so edited item metadata
is a new entry too).

Why shards and claims:

- *Resumable.* A shard is written to a temporary name, fsynced and renamed, so a SIGKILLed writer
  leaves whole shards only; a new run reads the keys already present and generates the rest.
- *Two writers at once.* Each shard file belongs to one writer (host, pid and a sequence in its
  name), so writers never touch the same file. Before generating an entry a writer claims its key
  (an ``O_EXCL`` file, taken under a folder lock); a claim whose process is gone or which is older
  than ``claim_ttl`` is broken and taken over. Claims are removed only after the shard holding the
  entries is in place, so an entry is neither lost nor generated twice. Readers also drop
  duplicate keys (first written wins), which covers writers on different hosts sharing a
  network folder, where the claim lock cannot be relied on.

A shard that cannot be read (truncated by a full disk, overwritten, copied half-way) is moved
aside as ``shards/<name>.corrupt-<UTC time>`` with a warning naming it, and reading goes on with
the other shards; the entries it held are missing from then on, so the next ``knowledge
generate`` makes them again. Nothing is deleted: a shard moved aside by mistake can be moved back.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

from llmrec.artifacts import atomic_file, llmrec_home, write_json_atomic
from llmrec.errors import DataError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_STALE_TMP_S = 3600


def default_cache_dir() -> Path:
    return llmrec_home() / "knowledge"


def schema():
    import pyarrow as pa

    return pa.schema([
        ("key", pa.string()),
        ("entity", pa.string()),
        ("entity_id", pa.string()),
        ("template", pa.string()),
        ("template_hash", pa.string()),
        ("model", pa.string()),
        ("model_revision", pa.string()),
        ("sampling", pa.string()),  # JSON of SamplingParams.key()
        ("seed", pa.int64()),
        ("cutoff", pa.string()),  # JSON {"n_lm", "split"} for users, null for items
        ("prompt_hash", pa.string()),
        ("field_ids", pa.list_(pa.string())),
        ("field_texts", pa.list_(pa.string())),
        ("status", pa.string()),  # ok | partial | raw
        ("missing", pa.list_(pa.string())),
        ("raw", pa.string()),
        ("attempts", pa.int32()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("backend", pa.string()),
        ("job", pa.string()),
        ("writer", pa.string()),
        ("created", pa.timestamp("ms", tz="UTC")),
    ])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class KnowledgeCache:
    """One cache folder; safe to open from several processes at once."""

    def __init__(self, root: str | Path | None = None, *, claim_ttl: float = 6 * 3600):
        self.root = Path(root) if root else default_cache_dir()
        self.shards = self.root / "shards"
        self.claims = self.root / "claims"
        self.claim_ttl = claim_ttl
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.writer = f"{self.host}-{self.pid}-{uuid.uuid4().hex[:6]}"
        self._seq = 0
        self._seen_files: set[str] = set()
        self._done: set[str] = set()
        #: shards found unreadable by this process: name -> where it was moved (or the reason
        #: it could not be moved)
        self.quarantined: dict[str, str] = {}

    # -- setup -------------------------------------------------------------------------------------
    def ensure(self) -> "KnowledgeCache":
        self.shards.mkdir(parents=True, exist_ok=True)
        self.claims.mkdir(parents=True, exist_ok=True)
        info = self.root / "cache.json"
        if not info.exists():
            with contextlib.suppress(OSError):
                write_json_atomic(info, {"format": FORMAT_VERSION, "kind": "llmrec-knowledge-cache"})
        now = time.time()
        for tmp in self.shards.glob(".*.tmp"):  # left by killed writers
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > _STALE_TMP_S:
                    tmp.unlink()
        return self

    def require(self) -> "KnowledgeCache":
        """This cache, if its folder holds one; else a DataError naming the folder (a mistyped
        ``--cache_dir`` must not read as an empty cache)."""
        if not self.root.is_dir():
            what = "does not exist" if not self.root.exists() else "is a file, not a folder"
            raise DataError(f"knowledge cache {self.root} {what}: check --cache_dir (default "
                            f"{default_cache_dir()}), or make the cache with `llmrec knowledge "
                            f"generate` or `llmrec knowledge import`")
        if not (self.root / "cache.json").is_file() and not self.shards.is_dir():
            raise DataError(f"{self.root} is not a knowledge cache (no cache.json or shards/ "
                            f"inside): check --cache_dir")
        return self

    def shard_files(self) -> list[Path]:
        if not self.shards.is_dir():
            return []
        return sorted(f for f in self.shards.glob("*.parquet") if f.name not in self.quarantined)

    def _read_shard(self, f: Path, **kwargs: Any):
        """One shard as an Arrow table; None if it is gone (a compaction since the listing) or
        unreadable (then moved aside, see the module docstring)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(f, **kwargs)
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            raise DataError(f"knowledge cache shard {f} cannot be read ({exc.strerror}): give "
                            f"this user read access to the cache (e.g. chmod -R a+rX "
                            f"{self.root})") from None
        except (pa.ArrowException, OSError, ValueError) as exc:
            self._quarantine(f, exc)
            return None

    def _quarantine(self, f: Path, exc: BaseException) -> None:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        dest = f.with_name(f"{f.name}.corrupt-{stamp}")
        try:
            os.replace(f, dest)
        except FileNotFoundError:  # another reader moved it first
            self.quarantined[f.name] = "moved aside by another process"
            return
        except OSError as move_exc:
            self.quarantined[f.name] = f"left in place ({move_exc.strerror})"
            log.warning("knowledge cache: shard %s is unreadable (%s) and could not be moved "
                        "aside (%s); skipping it. Move or delete it, then run `llmrec knowledge "
                        "generate` again to remake its entries", f, reason, move_exc.strerror)
            return
        self.quarantined[f.name] = str(dest)
        log.warning("knowledge cache: shard %s is unreadable (%s); moved it aside to %s and "
                    "going on with the other shards. Its entries are missing until `llmrec "
                    "knowledge generate` (or `knowledge import` of the same source) remakes "
                    "them; delete the moved file once you no longer need it", f, reason,
                    dest.name)

    # -- reading -----------------------------------------------------------------------------------
    def done_keys(self, refresh: bool = True) -> set[str]:
        """Keys present in the cache (reads only the shards not read before)."""
        if refresh:
            for f in self.shard_files():
                if f.name in self._seen_files:
                    continue
                table = self._read_shard(f, columns=["key"])
                if table is None:
                    continue
                self._done.update(table.column("key").to_pylist())
                self._seen_files.add(f.name)
        return self._done

    def read(self, columns: list[str] | None = None, **filters: Any):
        """All entries as a pandas DataFrame, duplicates of a key dropped (first written wins).

        ``filters``: column=value (or column=list of values) equality filters, e.g.
        ``entity="item", template="item_movie"``.
        """
        import pandas as pd
        import pyarrow as pa

        files = self.shard_files()
        if not files:
            return schema().empty_table().to_pandas()
        tables = []
        for f in files:  # file names start with the write time: this is write order
            table = self._read_shard(f, columns=columns, schema=schema())
            if table is not None:
                tables.append(table)
        if not tables:
            empty = schema().empty_table()
            table = empty.select(columns) if columns else empty
        else:
            table = pa.concat_tables(tables)
        df = table.to_pandas()
        if len(df) and "key" in df.columns:
            df = df.drop_duplicates("key", keep="first")
        for col, val in filters.items():
            if val is None:
                continue
            if isinstance(val, (list, tuple, set)):
                df = df[df[col].isin(list(val))]
            else:
                df = df[df[col] == val]
        return df.reset_index(drop=True) if isinstance(df, pd.DataFrame) else df

    # -- writing -----------------------------------------------------------------------------------
    def write(self, rows: list[dict[str, Any]], provenance: dict[str, Any] | None = None) -> Path:
        """Write ``rows`` as one new shard, atomically; returns its path."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.ensure()
        now = _dt.datetime.now(_dt.timezone.utc)
        for r in rows:
            r.setdefault("writer", self.writer)
            r.setdefault("created", now)
        table = pa.Table.from_pylist(rows, schema=schema())
        if provenance:
            table = table.replace_schema_metadata(
                {b"llmrec": json.dumps(provenance, default=str).encode()})
        self._seq += 1
        name = f"{now.strftime('%Y%m%dT%H%M%S%f')}-{self.writer}-{self._seq:05d}.parquet"
        path = self.shards / name
        with atomic_file(path, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
        self._done.update(r["key"] for r in rows)
        self._seen_files.add(name)
        return path

    # -- claims ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _claims_lock(self) -> Iterator[None]:
        import fcntl

        self.claims.mkdir(parents=True, exist_ok=True)
        with open(self.claims / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _stale(self, path: Path) -> bool:
        try:
            info = json.loads(path.read_text())
            age = time.time() - float(info["time"])
        except (OSError, ValueError, KeyError):
            # unreadable: a claim being written right now, or garbage; judge by its age
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                return True
            return age > 60
        if age > self.claim_ttl:
            return True
        return info.get("host") == self.host and not _pid_alive(int(info.get("pid", -1)))

    def claim(self, keys: Iterable[str]) -> list[str]:
        """Claim as many of ``keys`` as no live writer holds; returns those claimed."""
        got = []
        body = json.dumps({"host": self.host, "pid": self.pid, "writer": self.writer,
                           "time": time.time()})
        with self._claims_lock():
            for key in keys:
                path = self.claims / f"{key}.claim"
                if path.exists():
                    if not self._stale(path):
                        continue
                    log.info("taking over stale claim %s", path.name)
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                try:
                    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    continue
                with os.fdopen(fd, "w") as fh:
                    fh.write(body)
                got.append(key)
        return got

    def release(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self.claims / f"{key}.claim"
            with contextlib.suppress(OSError, ValueError):
                if json.loads(path.read_text()).get("writer") == self.writer:
                    path.unlink()

    def write_run_summary(self, summary: dict[str, Any]) -> Path:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        path = self.root / "runs" / f"{stamp}-{self.writer}.json"
        write_json_atomic(path, summary)
        return path

    def stats(self) -> dict[str, Any]:
        df = self.read(columns=["key", "entity", "template", "model", "model_revision", "status",
                                "prompt_tokens", "completion_tokens", "field_ids"])
        files = self.shard_files()
        out: dict[str, Any] = {
            "root": str(self.root),
            "shards": len(files),
            "bytes": sum(f.stat().st_size for f in files if f.exists()),
            "entries": int(len(df)),
            "claims_open": len(list(self.claims.glob("*.claim"))) if self.claims.is_dir() else 0,
            "groups": [],
            # unreadable shards moved aside, now and by earlier runs
            "corrupt_shards": sorted(f.name for f in self.shards.glob("*.parquet.corrupt-*"))
            if self.shards.is_dir() else [],
        }
        if len(df):
            df = df.assign(n_fields=df["field_ids"].map(len))
            g = df.groupby(["entity", "template", "model", "model_revision"], dropna=False)
            for (entity, template, model, rev), part in g:
                counts = part["status"].value_counts().to_dict()
                out["groups"].append({
                    "entity": entity, "template": template, "model": model, "revision": rev,
                    "entries": int(len(part)),
                    "ok": int(counts.get("ok", 0)), "partial": int(counts.get("partial", 0)),
                    "raw": int(counts.get("raw", 0)),
                    "mean_fields": round(float(part["n_fields"].mean()), 2),
                    "prompt_tokens": int(part["prompt_tokens"].sum()),
                    "completion_tokens": int(part["completion_tokens"].sum()),
                })
        return out
