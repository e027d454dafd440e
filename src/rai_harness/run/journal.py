"""The generation journal: every finished call is written to SQLite as soon as it finishes.

Why SQLite in WAL mode: a committed row survives ``kill -9`` of the process (the WAL is
fsynced at checkpoints and, with ``synchronous=NORMAL``, a committed transaction is in
the OS page cache, so only a power cut could lose the last ones), readers never block
the writer, and one file is easy to copy. Rows are keyed by a hash of the provider's
cache identity (no secrets, no runner knobs), the messages, the parameters and the
repeat index, so a rerun into the same folder reuses exactly the calls it already made.

The journal stores the full call record as JSON; it never stores API keys (records are
built from secret-free values and scrubbed of any secret the runner knows).

Writes happen behind the caller, on one writer thread: :meth:`Journal.put` encodes the
record and queues it; the thread looks at the queue every :data:`BATCH_WINDOW_S` (10 ms)
and commits what it finds in one transaction. Why: the runner calls ``put`` on the event loop, and an SQLite commit there
costs 0.1 ms of blocking I/O per call and, when a WAL checkpoint or the kernel's write-back
lands on it, 7-25 ms at the 99th percentile on this project's loaded machine: a stall of
every call in flight, visible as late TTFTs. The thread releases the GIL inside SQLite, so
the loop goes on meanwhile, and no call wakes the thread (a thread switch per call costs
the loop more than the write; the thread ends after :data:`WRITER_IDLE_EXIT_S` without
records and the next ``put`` starts another). A record is durable once its batch commits,
at most about 10 ms after ``put``; ``kill -9`` in between loses it like a call still in flight
(a resumed run makes it again). Every read, :meth:`Journal.set_meta` and :meth:`Journal.close`
first wait for the queue to drain (:meth:`Journal.flush`), so a reader always sees every
record put before; a write that failed raises on the next ``put``, read or close.

A file that is not SQLite, a damaged SQLite file or somebody else's database (tables
with other columns) raises :class:`~rai_harness.errors.RunError` naming the file and
pointing at ``--fresh``, never a raw ``sqlite3`` traceback: the CLI turns it into exit 2.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rai_harness.errors import RunError
from rai_harness.jsoncodec import dumps_compact
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

#: Columns each table must have; a foreign database with a same-named table is refused.
_COLUMNS = {
    "calls": {"key", "provider_id", "sample_id", "repeat", "status", "record", "written_at"},
    "meta": {"name", "value"},
}

#: Seconds between the writer thread's looks at its queue (a record's longest wait to be written).
BATCH_WINDOW_S = 0.01

#: Seconds of an empty queue after which the writer thread ends (the next put starts another).
WRITER_IDLE_EXIT_S = 1.0

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
        self._lock = threading.Lock()
        # The write-behind queue (see the module docstring): rows waiting for the writer
        # thread, whether it is committing a batch, and the first error it met.
        self._queue_cond = threading.Condition()
        self._queued: list[tuple[Any, ...]] = []
        self._writing = False
        self._write_error: RunError | None = None
        self._writer: threading.Thread | None = None
        self._closed = False
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=30.0, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise self._unusable(exc) from None
        try:
            with self._lock:
                self._check_foreign()
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.executescript(_SCHEMA)
                # quick_check reads every page once (milliseconds for 10^5 calls): damage found
                # now is a clear error, not a failure halfway through a resumed run.
                check = self._conn.execute("PRAGMA quick_check(1)").fetchone()
                if check is None or check[0] != "ok":
                    raise sqlite3.DatabaseError(f"integrity check: {check[0] if check else 'no answer'}")
        except (sqlite3.Error, RunError) as exc:
            self._conn.close()
            raise self._unusable(exc) from None

    def _unusable(self, exc: BaseException) -> RunError:
        """The error for a journal we cannot use: names the file and the way out."""
        return RunError(
            f"{self.path} is not a usable rai-harness journal ({exc}); rerun with --fresh to "
            "discard it (its calls will be made again), or choose another --out folder"
        )

    def _check_foreign(self) -> None:
        """Refuse a database whose ``calls``/``meta`` tables have other columns."""
        tables = {
            name for (name,) in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        for table, wanted in _COLUMNS.items():
            if table not in tables:
                continue
            have = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            if not wanted <= have:
                missing = ", ".join(sorted(wanted - have))
                raise RunError(f"table {table!r} lacks column(s) {missing}: another program's database")

    def _loads(self, blob: Any) -> dict[str, Any]:
        """Decode one stored record; a damaged row is an unusable journal, not a traceback."""
        try:
            value = json.loads(blob)
        except (TypeError, ValueError) as exc:
            raise self._unusable(exc) from None
        if not isinstance(value, dict):
            raise self._unusable(ValueError("a stored record is not a JSON object"))
        return value

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Run one statement (caller holds the lock) and return every row.

        Damage found mid-run raises :class:`RunError` (fetching can fail too, so it is inside).
        """
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:  # OperationalError and "malformed" included
            raise self._unusable(exc) from None

    def put(
        self, key: str, provider_id: str, sample_id: str, repeat: int, status: str, record: Mapping[str, Any]
    ) -> None:
        """Queue one call record (written or replaced) for the writer thread; returns at once.

        Raises:
            RunError: when an earlier write failed (the file is damaged), or after :meth:`close`.
        """
        # Bytes (stored as a BLOB; json.loads reads them back with surrogatepass): orjson when it
        # writes the same value, about 10x faster than the standard library (jsoncodec).
        blob = dumps_compact(record)
        row = (key, provider_id, sample_id, repeat, status, blob, time.time())
        with self._queue_cond:
            if self._write_error is not None:
                raise self._write_error
            if self._closed:
                raise RunError(f"{self.path}: the journal is closed")
            self._queued.append(row)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name=f"journal-writer:{self.path.name}", daemon=True
                )
                self._writer.start()
            # No wake-up: the writer polls (see _write_loop). Waking it per call is a thread
            # switch per call, and the GIL hand-over it forces cost the event loop 1-2 ms a
            # call in a profile on the loaded machine, more than the write it saves.

    def _write_loop(self) -> None:
        """The writer thread: commit whatever is queued, one transaction per batch, until closed."""
        idle_since = time.monotonic()
        while True:
            with self._queue_cond:
                if not self._queued:
                    if self._closed or time.monotonic() - idle_since > WRITER_IDLE_EXIT_S:
                        # Closed and drained, or idle: end the thread (put starts a new one), so
                        # a journal left open does not poll for the rest of the process.
                        self._writer = None
                        return
                    # Poll: what the loop queued in the meantime becomes one commit. flush()
                    # and close() wake it early; put() never does (see put).
                    self._queue_cond.wait(timeout=BATCH_WINDOW_S)
                    continue
                batch, self._queued = self._queued, []
                self._writing = True
            error: RunError | None = None
            try:
                with self._lock:
                    try:
                        self._conn.execute("BEGIN")
                        self._conn.executemany(
                            "INSERT OR REPLACE INTO calls(key, provider_id, sample_id, repeat, status, record, "
                            "written_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            batch,
                        )
                        self._conn.execute("COMMIT")
                    except Exception as exc:
                        # Any failure, not only sqlite3's (a str column it cannot encode): a
                        # writer that died silently would leave flush() waiting for ever.
                        if self._conn.in_transaction:
                            with contextlib.suppress(sqlite3.Error):
                                self._conn.execute("ROLLBACK")
                        error = (
                            self._unusable(exc)
                            if isinstance(exc, sqlite3.Error)
                            else RunError(
                                f"{self.path}: cannot write call records: {type(exc).__name__}: {exc}"
                            )
                        )
            finally:
                idle_since = time.monotonic()
                with self._queue_cond:
                    self._writing = False
                    if error is not None and self._write_error is None:
                        self._write_error = error
                    self._queue_cond.notify_all()

    def flush(self) -> None:
        """Wait until every queued record is committed.

        Raises:
            RunError: when a write failed (the journal file is damaged).
        """
        with self._queue_cond:
            while self._queued or self._writing:
                self._queue_cond.notify_all()  # the writer may be polling: write now
                self._queue_cond.wait()
            if self._write_error is not None:
                raise self._write_error

    def get(self, key: str) -> dict[str, Any] | None:
        """The record stored under ``key``, or ``None``."""
        self.flush()
        with self._lock:
            rows = self._execute("SELECT record FROM calls WHERE key = ?", (key,))
        return self._loads(rows[0][0]) if rows else None

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored records among ``keys``, by key (absent keys are left out)."""
        self.flush()
        out: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(keys))
        # SQLite caps bound parameters per statement (999 on old builds): query in slices.
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._execute(f"SELECT key, record FROM calls WHERE key IN ({marks})", chunk)
            for key, blob in rows:
                out[key] = self._loads(blob)
        return out

    def records(self, provider_id: str | None = None) -> Iterator[dict[str, Any]]:
        """All stored records (optionally of one provider), in insertion order."""
        sql = "SELECT record FROM calls"
        args: tuple[Any, ...] = ()
        if provider_id is not None:
            sql += " WHERE provider_id = ?"
            args = (provider_id,)
        sql += " ORDER BY rowid"
        self.flush()
        with self._lock:
            rows = self._execute(sql, args)
        for (blob,) in rows:
            yield self._loads(blob)

    def count(self, status: str | None = None) -> int:
        """Number of stored records (optionally with one status)."""
        self.flush()
        with self._lock:
            if status is None:
                return int(self._execute("SELECT COUNT(*) FROM calls")[0][0])
            return int(self._execute("SELECT COUNT(*) FROM calls WHERE status = ?", (status,))[0][0])

    def set_meta(self, name: str, value: Any) -> None:
        """Store a small JSON value (run id, first start time)."""
        self.flush()
        with self._lock:
            self._execute(
                "INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)",
                (name, json.dumps(value, default=str)),
            )

    def get_meta(self, name: str) -> Any | None:
        """Read a value stored with :meth:`set_meta`."""
        self.flush()
        with self._lock:
            rows = self._execute("SELECT value FROM meta WHERE name = ?", (name,))
        if not rows:
            return None
        try:
            return json.loads(rows[0][0])
        except (TypeError, ValueError) as exc:
            raise self._unusable(exc) from None

    def close(self) -> None:
        """Commit what is queued, checkpoint the WAL into the main file and close.

        Raises:
            RunError: when a queued write failed (the records it held are not stored).
        """
        with self._queue_cond:
            if self._closed:
                return
            self._closed = True
            self._queue_cond.notify_all()
            writer = self._writer
        if writer is not None:
            writer.join()
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:  # a damaged file is reported where it was used, not on close
                pass
            finally:
                self._conn.close()
        if self._write_error is not None:
            raise self._write_error

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
