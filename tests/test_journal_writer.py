"""The journal writes behind the caller: on its own thread, in batches, and every read sees every put."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from rai_harness.errors import RunError
from rai_harness.run import journal as journal_module
from rai_harness.run.journal import Journal


def test_put_returns_before_the_write_and_the_insert_runs_on_the_writer_thread(tmp_path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    inserting: list[int] = []
    journal._conn.set_trace_callback(
        lambda sql: inserting.append(threading.get_ident()) if sql.startswith("INSERT") else None
    )
    for i in range(50):
        journal.put(f"k{i}", "p", f"s{i}", 0, "ok", {"i": i})
    assert journal.count() == 50  # a read waits for the queue: every put is visible
    assert inserting and threading.get_ident() not in inserting
    assert journal.get("k49") == {"i": 49}
    journal.close()


def test_close_commits_what_is_queued(tmp_path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        for i in range(300):
            journal.put(f"k{i}", "p", f"s{i}", 0, "ok" if i % 3 else "error", {"i": i})
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 300
    conn.close()
    with Journal(path) as journal:
        assert journal.count("error") == 100
        assert [r["i"] for r in journal.records()] == list(range(300))  # insertion order kept


def test_a_failed_write_raises_on_the_next_put_and_on_flush(tmp_path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    journal.put("k0", "p", "s0", 0, "ok", {"i": 0})
    journal.flush()
    journal._conn.execute("DROP TABLE calls")  # the file changes under the run
    journal.put("k1", "p", "s1", 0, "ok", {"i": 1})
    with pytest.raises(RunError, match="--fresh"):
        journal.flush()
    with pytest.raises(RunError, match="--fresh"):
        journal.put("k2", "p", "s2", 0, "ok", {"i": 2})
    with pytest.raises(RunError):
        journal.close()


def test_an_idle_writer_thread_ends_and_the_next_put_starts_another(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(journal_module, "WRITER_IDLE_EXIT_S", 0.05)
    journal = Journal(tmp_path / "j.sqlite")
    journal.put("k0", "p", "s0", 0, "ok", {"i": 0})
    first = journal._writer
    assert first is not None
    deadline = time.monotonic() + 30  # generous: only a bound against hanging
    while journal._writer is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert journal._writer is None
    first.join(timeout=30)
    assert not first.is_alive()
    journal.put("k1", "p", "s1", 0, "ok", {"i": 1})
    assert journal._writer is not None and journal._writer is not first
    assert journal.count() == 2
    journal.close()


def test_records_round_trip_with_nan_surrogates_and_big_ints(tmp_path) -> None:
    record = {
        "score": float("nan"),
        "inf": float("-inf"),
        "text": "a\ud800b",
        "big": 2**70,
        "ok": [1.5, None],
    }
    with Journal(tmp_path / "j.sqlite") as journal:
        journal.put("k", "p", "s", 0, "ok", record)
        got = journal.get("k")
    assert got is not None
    assert got["score"] != got["score"] and got["inf"] == float("-inf")  # NaN stays a float, not None
    assert got["text"] == "a\ud800b" and got["big"] == 2**70 and got["ok"] == [1.5, None]


def test_a_write_that_fails_outside_sqlite_raises_instead_of_hanging(tmp_path) -> None:
    journal = Journal(tmp_path / "j.sqlite")
    # A column sqlite3 cannot encode (a lone surrogate in an id) fails in the writer thread with
    # UnicodeEncodeError, not sqlite3.Error: it must surface, and flush() must not wait for ever.
    journal.put("k0", "p", "s\ud800", 0, "ok", {"i": 0})
    outcome: list[BaseException | None] = []

    def flush() -> None:
        try:
            journal.flush()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=flush, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "flush() hung after a failed write"
    assert isinstance(outcome[0], RunError) and "UnicodeEncodeError" in str(outcome[0])
    with pytest.raises(RunError):
        journal.put("k1", "p", "s1", 0, "ok", {"i": 1})
