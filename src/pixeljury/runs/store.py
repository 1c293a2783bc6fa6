"""Content-addressed result store: one SQLite file (WAL) per run directory.

A result's key is the SHA-256 of everything that determines it (image bytes, prompt, protocol and
version, judge model and revision, rubric, generation parameters, dimension, preprocessing). Each
finished request is committed the moment it exists; a rerun looks its key up and skips the work.
Failed attempts are kept in a separate table and never take the place of a result.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from pixeljury.core.evaluator import content_key
from pixeljury.runs.faults import cannot_write, fault_point, writing

SCHEMA_VERSION = 2  # 2: failures.permanent

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    protocol TEXT NOT NULL,
    dimension TEXT NOT NULL,
    image_sha256 TEXT,
    prompt TEXT,
    model_id TEXT,
    key_fields TEXT NOT NULL,
    status TEXT NOT NULL,
    raw_text TEXT,
    reasoning TEXT,
    parsed TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    seconds REAL,
    error TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT,
    row_index INTEGER,
    stage TEXT NOT NULL,
    message TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    permanent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS failures_key ON failures(key);
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rows (
    row_index INTEGER PRIMARY KEY,
    payload TEXT NOT NULL
);
"""


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def storable_text(text: str | None) -> str | None:
    """``text`` as UTF-8 can hold it. A server's JSON may carry ``\\ud800``-style escapes that decode
    to unpaired surrogates, which no UTF-8 writer (SQLite, the JSONL exports) accepts: each becomes
    U+FFFD, the replacement character, instead of failing the commit of a whole batch."""
    if text is None or not _LONE_SURROGATE.search(text):
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)


def _json(obj: Any, **kw: Any) -> str:
    return storable_text(json.dumps(obj, ensure_ascii=False, **kw))  # type: ignore[return-value]


result_key = content_key  # SHA-256 of the canonical JSON of the key fields (sorted keys, no whitespace)


@dataclass
class ResultRecord:
    key: str
    protocol: str
    dimension: str
    key_fields: dict[str, Any]
    status: str  # protocol's word: "scored", "all_na", "parse_failure", ...
    image_sha256: str | None = None
    prompt: str | None = None
    model_id: str | None = None
    raw_text: str | None = None
    reasoning: str | None = None
    parsed: dict[str, Any] | None = None  # protocol-specific structured result (JSON)
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float | None = None
    error: str | None = None
    created_at: float = field(default_factory=time.time)


_COLUMNS = (
    "key", "protocol", "dimension", "image_sha256", "prompt", "model_id", "key_fields", "status", "raw_text",
    "reasoning", "parsed", "finish_reason", "prompt_tokens", "completion_tokens", "seconds", "error", "created_at",
)


class FailureState(NamedTuple):
    """A key's most recent failure, as :meth:`ResultStore.latest_failure_details` reads it."""

    message: str
    permanent: bool  # the input itself is at fault: a rerun fails the same way
    stage: str  # where it failed: "image", "engine", "parse", "metric:<name>"...


class StoreDamaged(ValueError):
    """The result store is not a SQLite database, or is damaged. Nothing in it can be trusted."""

    def __init__(self, path: Path, cause: Exception):
        self.path = path
        super().__init__(
            f"the result store {path} is damaged or not a pixeljury store ({cause}); no outputs were changed. "
            f"Move it away (e.g. `mv {path} {path}.damaged`) and rerun to recompute, or restore a copy")


class ResultStore:
    """Thread-confined SQLite connection to ``<run dir>/results.sqlite``."""

    FILENAME = "results.sqlite"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fault_point(self.path)
        try:
            self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.Error as exc:
            raise cannot_write(exc, self.path) or StoreDamaged(self.path, exc) from None
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
            self._conn.executescript(_SCHEMA)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta(name, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self._migrate()
            if str(self.path) != ":memory:":
                # A truncated or overwritten file can still open; the check reads every page once.
                problems = [row[0] for row in self._conn.execute("PRAGMA quick_check")]
                if problems != ["ok"]:
                    raise sqlite3.DatabaseError("; ".join(problems[:3]))
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            # A full disk or a read-only directory is not damage: the file may be perfectly good.
            raise cannot_write(exc, self.path) or StoreDamaged(self.path, exc) from None

    def _migrate(self) -> None:
        """Bring a store written by an older pixeljury up to this schema (columns added, never removed)."""
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(failures)")}
        if "permanent" not in columns:
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.execute("ALTER TABLE failures ADD COLUMN permanent INTEGER NOT NULL DEFAULT 0")
                self._conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))

    @contextmanager
    def _writing(self):
        """One write transaction; a full disk or a read-only file system becomes CannotWrite."""
        with writing(self.path):
            fault_point(self.path)
            with self._conn:
                self._conn.execute("BEGIN IMMEDIATE")
                yield

    @classmethod
    def in_dir(cls, run_dir: str | Path) -> "ResultStore":
        return cls(Path(run_dir) / cls.FILENAME)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- results ---------------------------------------------------------------------------------
    def put(self, record: ResultRecord) -> None:
        self.put_many([record])

    def put_many(self, records: Iterable[ResultRecord]) -> None:
        """Commit results at once (one transaction). A key already present is left as it was."""
        rows = [
            (
                r.key, r.protocol, r.dimension, r.image_sha256, storable_text(r.prompt), r.model_id,
                _json(r.key_fields, sort_keys=True, default=str), r.status, storable_text(r.raw_text),
                storable_text(r.reasoning), None if r.parsed is None else _json(r.parsed, default=str),
                r.finish_reason, r.prompt_tokens, r.completion_tokens, r.seconds, storable_text(r.error), r.created_at,
            )
            for r in records
        ]
        if not rows:
            return
        placeholders = ",".join("?" * len(_COLUMNS))
        with self._writing():
            self._conn.executemany(
                f"INSERT OR IGNORE INTO results({','.join(_COLUMNS)}) VALUES ({placeholders})", rows
            )

    def _where_key_in(self, select: str, keys: Iterable[str], order: str = "") -> Iterator[tuple]:
        """Rows of ``select ... WHERE key IN (keys) order``, asked in chunks under SQLite's variable limit."""
        keys = list(keys)
        for i in range(0, len(keys), 900):
            chunk = keys[i : i + 900]
            yield from self._conn.execute(f"{select} WHERE key IN ({','.join('?' * len(chunk))}) {order}", chunk)

    def existing_keys(self, keys: Iterable[str] | None = None) -> set[str]:
        """Which of ``keys`` have a result (all keys when None)."""
        if keys is None:
            return {k for (k,) in self._conn.execute("SELECT key FROM results")}
        return {k for (k,) in self._where_key_in("SELECT key FROM results", keys)}

    def get_many(self, keys: Iterable[str]) -> dict[str, ResultRecord]:
        records = (self._record(row) for row in self._where_key_in(f"SELECT {','.join(_COLUMNS)} FROM results", keys))
        return {rec.key: rec for rec in records}

    def iter_results(self, protocol: str | None = None) -> Iterator[ResultRecord]:
        q = f"SELECT {','.join(_COLUMNS)} FROM results"
        args: tuple = ()
        if protocol:
            q += " WHERE protocol = ?"
            args = (protocol,)
        for row in self._conn.execute(q + " ORDER BY created_at", args):
            yield self._record(row)

    def count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    @staticmethod
    def _record(row: tuple) -> ResultRecord:
        d = dict(zip(_COLUMNS, row))
        d["key_fields"] = json.loads(d["key_fields"])
        d["parsed"] = None if d["parsed"] is None else json.loads(d["parsed"])
        return ResultRecord(**d)

    # -- file hash cache: (path, size, mtime) -> sha256, so a resume need not re-read every image ----
    def cached_hashes(self) -> dict[str, tuple[int, int, str]]:
        return {p: (size, mtime, sha) for p, size, mtime, sha in self._conn.execute("SELECT * FROM file_hashes")}

    def save_hashes(self, entries: Iterable[tuple[str, int, int, str]]) -> None:
        entries = list(entries)
        if entries:
            with self._writing():
                self._conn.executemany("INSERT OR REPLACE INTO file_hashes VALUES (?,?,?,?)", entries)

    # -- the row plan of the latest run (lets `export` rebuild outputs without the input) --------
    def replace_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        self.drop_rows_from(0)
        self.add_rows(rows)

    def drop_rows_from(self, first_row: int) -> None:
        """Forget planned rows with index >= ``first_row`` (the input got shorter)."""
        with self._writing():
            self._conn.execute("DELETE FROM rows WHERE row_index >= ?", (first_row,))

    def add_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        data = [(r["row"], _json(r, default=str)) for r in rows]
        if data:
            with self._writing():
                self._conn.executemany("INSERT OR REPLACE INTO rows(row_index, payload) VALUES (?, ?)", data)

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        for (payload,) in self._conn.execute("SELECT payload FROM rows ORDER BY row_index"):
            yield json.loads(payload)

    def latest_failure_states(self, keys: Iterable[str]) -> dict[str, tuple[str, bool]]:
        """(message, permanent) of each key's most recent failure, for keys that have one."""
        return {k: (f.message, f.permanent) for k, f in self.latest_failure_details(keys).items()}

    def latest_failure_details(self, keys: Iterable[str]) -> dict[str, FailureState]:
        """Each key's most recent failure (message, permanent, stage), for keys that have one."""
        rows = self._where_key_in("SELECT key, message, permanent, stage FROM failures", keys, "ORDER BY id")
        return {k: FailureState(m, bool(p), st) for k, m, p, st in rows}  # later rows win: the latest

    # -- failures --------------------------------------------------------------------------------
    def record_failure(self, stage: str, message: str, *, key: str | None = None, row_index: int | None = None,
                       attempts: int = 1, permanent: bool = False) -> None:
        """``permanent``: the request itself is at fault (an image no decoder can read, a request the
        engine refuses as such), so a rerun of the same input fails the same way."""
        with self._writing():
            self._conn.execute(
                "INSERT INTO failures(key, row_index, stage, message, attempts, created_at, permanent) "
                "VALUES (?,?,?,?,?,?,?)",
                (key, row_index, stage, storable_text(message), attempts, time.time(), int(permanent)),
            )

    def failures(self) -> list[dict[str, Any]]:
        cur = self._conn.execute(
            "SELECT key, row_index, stage, message, attempts, created_at, permanent FROM failures ORDER BY id"
        )
        cols = [c[0] for c in cur.description]
        return [{**dict(zip(cols, r)), "permanent": bool(r[-1])} for r in cur]
