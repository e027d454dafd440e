"""The one micro-batching engine: grouping, batch size, waiting, errors, cancellation, closing.

Batches are steered with a gate (an item that holds the worker until released), so what
forms a batch is decided by order, never by how fast the loaded machine runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Sequence

import pytest

from rai_harness.batching import MicroBatchEngine

WAIT_S = 10.0  # generous: a future that should resolve at once has this long


class Recorder:
    """A batch function that records its batches; the item ``"block"`` holds it at a gate."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.started = threading.Event()
        self.threads: set[str] = set()

    def __call__(self, items: list[str]) -> Sequence[str | BaseException]:
        self.threads.add(threading.current_thread().name)
        self.batches.append(list(items))
        if "block" in items:
            self.started.set()
            assert self.gate.wait(WAIT_S)
        if "raise" in items:
            raise ValueError("the whole batch failed")
        return [ValueError(f"bad {i}") if i.startswith("bad") else i.upper() for i in items]


def _blocked(recorder: Recorder, **settings: object) -> MicroBatchEngine[str, str]:
    """An engine whose worker is held inside a first batch, so later items queue up."""
    engine: MicroBatchEngine[str, str] = MicroBatchEngine(recorder, **settings)  # type: ignore[arg-type]
    engine.submit("block", key="block")
    assert recorder.started.wait(WAIT_S)
    return engine


def test_items_are_grouped_by_key_in_arrival_order() -> None:
    rec = Recorder()
    engine = _blocked(rec, max_wait_ms=0)
    futures = [engine.submit(f"{k}{i}", key=k) for i, k in enumerate("abab a") if k != " "]
    rec.gate.set()
    assert [f.result(WAIT_S) for f in futures] == ["A0", "B1", "A2", "B3", "A5"]
    assert rec.batches[1:] == [["a0", "a2", "a5"], ["b1", "b3"]]
    engine.close()


def test_a_batch_holds_at_most_max_batch_size_units_and_order_holds_within_a_key() -> None:
    rec = Recorder()
    engine = _blocked(rec, max_wait_ms=0, max_batch_size=2)
    small = [engine.submit(f"s{i}") for i in range(5)]
    rec.gate.set()
    assert [f.result(WAIT_S) for f in small] == [f"S{i}" for i in range(5)]
    assert rec.batches[1:] == [["s0", "s1"], ["s2", "s3"], ["s4"]]
    # An item larger than the limit runs alone, and the one behind it does not overtake it.
    rec.batches.clear()
    rec.gate.clear()
    rec.started.clear()
    engine.submit("block", key="block")
    assert rec.started.wait(WAIT_S)
    sized = [engine.submit("one", size=1), engine.submit("three", size=3), engine.submit("last", size=1)]
    rec.gate.set()
    assert [f.result(WAIT_S) for f in sized] == ["ONE", "THREE", "LAST"]
    assert rec.batches[1:] == [["one"], ["three"], ["last"]]
    assert engine.stats.largest_batch == 3
    engine.close()


def test_a_full_batch_goes_without_waiting_for_the_window() -> None:
    rec = Recorder()
    with_window: MicroBatchEngine[str, str] = MicroBatchEngine(
        rec, max_wait_ms=60_000, max_batch_size=3, lone_goes_at_once=False
    )
    futures = [with_window.submit(str(i)) for i in range(3)]
    assert [f.result(WAIT_S) for f in futures] == ["0", "1", "2"]  # a minute's window, not waited
    assert rec.batches == [["0", "1", "2"]]
    with_window.close()


def test_without_company_a_call_waits_the_window_unless_lone_calls_go_at_once() -> None:
    rec = Recorder()
    waiting: MicroBatchEngine[str, str] = MicroBatchEngine(rec, max_wait_ms=60_000, lone_goes_at_once=False)
    held = waiting.submit("held")
    time.sleep(0.2)
    assert not held.done() and rec.batches == []  # inside its minute-long window
    waiting.close(error=RuntimeError("closed"))
    with pytest.raises(RuntimeError, match="closed"):
        held.result(WAIT_S)

    eager: MicroBatchEngine[str, str] = MicroBatchEngine(Recorder(), max_wait_ms=60_000)
    assert eager.submit("alone").result(WAIT_S) == "ALONE"  # no other call before it: no wait
    eager.close()

    short: MicroBatchEngine[str, str] = MicroBatchEngine(Recorder(), max_wait_ms=5, lone_goes_at_once=False)
    assert short.submit("x").result(WAIT_S) == "X"  # the window ends without company
    short.close()


def test_errors_reach_their_own_callers_only() -> None:
    rec = Recorder()
    engine = _blocked(rec, max_wait_ms=0)
    per_item = [engine.submit(i, key="k") for i in ("ok", "bad1", "fine")]
    whole = [engine.submit(i, key="x") for i in ("raise", "other")]
    rec.gate.set()
    assert per_item[0].result(WAIT_S) == "OK" and per_item[2].result(WAIT_S) == "FINE"
    with pytest.raises(ValueError, match="bad bad1"):
        per_item[1].result(WAIT_S)
    for f in whole:
        with pytest.raises(ValueError, match="whole batch"):
            f.result(WAIT_S)
    assert engine.stats.errors == 1
    assert engine.submit("after").result(WAIT_S) == "AFTER"  # the worker survived
    engine.close()


class _Abort(BaseException):
    """Not an Exception: what a KeyboardInterrupt or SystemExit inside a model call looks like."""


def test_a_batch_that_raises_a_base_exception_does_not_strand_the_items_behind_it() -> None:
    # Its callers get it and the worker goes on. The worker used to stop on it while staying
    # registered, so no later item ever ran and every caller timed out (a rail's
    # on_error: allow passed them).
    calls: list[list[str]] = []
    started, gate = threading.Event(), threading.Event()

    def fn(items: list[str]) -> list[str]:
        calls.append(items)
        if "abort" in items:
            started.set()
            assert gate.wait(WAIT_S)
            raise _Abort
        return [i.upper() for i in items]

    engine: MicroBatchEngine[str, str] = MicroBatchEngine(fn, max_wait_ms=0)
    aborted = engine.submit("abort", key="a")
    assert started.wait(WAIT_S)
    queued = engine.submit("queued", key="b")  # waits behind the batch that will abort
    gate.set()
    with pytest.raises(_Abort):
        aborted.result(WAIT_S)
    assert queued.result(WAIT_S) == "QUEUED"
    assert engine.submit("later").result(WAIT_S) == "LATER"
    engine.close()


def test_a_result_count_mismatch_fails_the_batch() -> None:
    engine: MicroBatchEngine[str, str] = MicroBatchEngine(lambda items: [], max_wait_ms=0)
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        engine.submit("x").result(WAIT_S)
    engine.close()


def test_cancelled_items_are_dropped_and_failed_ones_leave_or_are_ignored() -> None:
    rec = Recorder()
    engine = _blocked(rec, max_wait_ms=0)
    keep, cancel, leave = (engine.submit(i) for i in ("keep", "cancel", "leave"))
    assert cancel.cancel()
    assert engine.fail(lambda item: item in ("leave", "block"), KeyError("gone")) == 2
    rec.gate.set()
    assert keep.result(WAIT_S) == "KEEP"
    with pytest.raises(KeyError):
        leave.result(WAIT_S)
    assert rec.batches[1:] == [["keep"]]  # neither the cancelled nor the failed item ran
    assert engine.stats.requests == 2  # block and keep
    engine.close()


async def test_cancelling_an_awaiting_task_drops_its_queued_item() -> None:
    rec = Recorder()
    engine = _blocked(rec, max_wait_ms=0)

    async def call(item: str) -> str:
        return await asyncio.wrap_future(engine.submit(item))

    task = asyncio.create_task(call("cancel me"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rec.gate.set()
    assert await asyncio.wrap_future(engine.submit("ok")) == "OK"
    assert all("cancel me" not in b for b in rec.batches)
    engine.close()


def test_close_finishes_or_fails_the_queue_then_refuses() -> None:
    rec = Recorder()
    engine = _blocked(rec, max_wait_ms=0)
    queued = engine.submit("queued")
    closer = threading.Thread(target=engine.close)
    closer.start()
    rec.gate.set()
    closer.join(WAIT_S)
    assert not closer.is_alive() and engine.closed and not engine.running
    assert queued.result(0) == "QUEUED"
    with pytest.raises(RuntimeError, match="closed"):
        engine.submit("late")

    rec2 = Recorder()
    failing = _blocked(rec2, max_wait_ms=0)
    queued = failing.submit("queued")
    failing.close(0, error=ConnectionError("shut"))
    for f in (queued,):
        with pytest.raises(ConnectionError):
            f.result(0)
    rec2.gate.set()
    failing.close(WAIT_S)  # idempotent; the running batch's late result is dropped quietly
    assert rec2.batches == [["block"]] and not failing.running


def test_many_threads_share_batches_on_one_worker() -> None:
    rec = Recorder()
    engine: MicroBatchEngine[str, str] = MicroBatchEngine(rec, max_wait_ms=5, max_batch_size=16)
    barrier = threading.Barrier(32)

    def call(i: int) -> str:
        barrier.wait()
        return engine.submit(str(i), key=i % 2).result(WAIT_S)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(call, range(32)))
    engine.close()
    assert results == [str(i) for i in range(32)]
    assert len(rec.threads) == 1  # one worker runs every batch
    assert all(len({int(i) % 2 for i in b}) == 1 and len(b) <= 16 for b in rec.batches)
    assert engine.stats.requests == 32 and engine.stats.units == 32 and len(rec.batches) < 32


def test_settings_are_checked_and_can_change() -> None:
    with pytest.raises(ValueError):
        MicroBatchEngine(Recorder(), max_batch_size=0)
    with pytest.raises(ValueError):
        MicroBatchEngine(Recorder(), max_wait_ms=-1)
    engine: MicroBatchEngine[str, str] = MicroBatchEngine(Recorder())
    engine.configure(max_batch_size=3, max_wait_ms=7)
    assert (engine.max_batch_size, engine.max_wait_ms) == (3, 7)
    with pytest.raises(ValueError):
        engine.configure(max_batch_size=0)
    with pytest.raises(ValueError):
        engine.submit("x", size=0)
    assert not engine.running  # the worker starts with the first item
    engine.close()
