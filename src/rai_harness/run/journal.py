"""The generation journal: every finished call is written to SQLite as soon as it finishes.

Why SQLite in WAL mode: a committed row survives ``kill -9`` of the process (the WAL is
fsynced at checkpoints and, with ``synchronous=NORMAL``, a committed transaction is in
the OS page cache, so only a power cut could lose the last ones), readers never block
the writer, and one file is easy to copy. Rows are keyed by a hash of the provider's
cache identity (no secrets, no runner knobs), the messages, the parameters and the
repeat index, so a rerun into the same folder reuses exactly the calls it already made.

The journal stores the full call record as JSON; it never stores API keys (records are
built from secret-free values and scrubbed of any secret the runner knows).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rai_harness.types import ChatRequest, stable_hash

__all__ = ["Journal", "call_key"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key         TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL,
    sample_id   TEXT NOT NULL,
    repeat      INTEGER NOT NULL,
    status      TEXT NOT NULL,
    record      TEXT NOT NULL,
    written_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_provider ON calls(provider_id);
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

#: Bump when the key recipe changes, so old journals are not wrongly reused.
KEY_VERSION = 1


def call_key(provider_identity: Mapping[str, Any], request: ChatRequest) -> str:
    """Cache key of one call: provider identity + messages + params + repeat index."""
    return stable_hash(
        {
            "v": KEY_VERSION,
            "provider": dict(provider_identity),
            "messages": request.messages_as_dicts(),
            "params": request.params.to_dict(),
            "repeat": request.repeat,
        }
    )


class Journal:
    """Append-mostly store of call records, safe to use from one process's threads.

    Args:
        path: SQLite file; created with its folder when missing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # check_same_thread=False + our own lock: the runner writes from the event-loop
        # thread, and hf-local/threads may read; SQLite itself serialises the file.
        self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)

    def put(
        self, key: str, provider_id: str, sample_id: str, repeat: int, status: str, record: Mapping[str, Any]
    ) -> None:
        """Write (or replace) one call record and commit it at once."""
        blob = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO calls(key, provider_id, sample_id, repeat, status, record, written_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, provider_id, sample_id, repeat, status, blob, time.time()),
            )

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or ``None``."""
        with self._lock:
            row = self._conn.execute("SELECT record FROM calls WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored records among ``keys``, by key (absent keys are left out)."""
        out: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(keys))
        # SQLite caps bound parameters per statement (999 on old builds): query in slices.
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT key, record FROM calls WHERE key IN ({marks})", chunk
                ).fetchall()
            for key, blob in rows:
                out[key] = json.loads(blob)
        return out

    def records(self, provider_id: str | None = None) -> Iterator[dict[str, Any]]:
        """All stored records (optionally of one provider), in insertion order."""
        sql = "SELECT record FROM calls"
        args: tuple[Any, ...] = ()
        if provider_id is not None:
            sql += " WHERE provider_id = ?"
            args = (provider_id,)
        sql += " ORDER BY rowid"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        for (blob,) in rows:
            yield json.loads(blob)

    def count(self, status: str | None = None) -> int:
        """Number of stored records (optionally with one status)."""
        with self._lock:
            if status is None:
                return int(self._conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
            return int(
                self._conn.execute("SELECT COUNT(*) FROM calls WHERE status = ?", (status,)).fetchone()[0]
            )

    def set_meta(self, name: str, value: Any) -> None:
        """Store a small JSON value (run id, first start time)."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)",
                (name, json.dumps(value, default=str)),
            )

    def get_meta(self, name: str) -> Any | None:
        """Read a value stored with :meth:`set_meta`."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close."""
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
