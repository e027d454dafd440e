"""MicroBatcher: concurrent threads and coroutines share batches; errors and closing behave."""

from __future__ import annotations

import asyncio
import resource
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from rai_harness.classifiers.base import Classifier, LabelScores
from rai_harness.classifiers.keyword import KeywordClassifier
from rai_harness.classifiers.microbatch import MicroBatcher


class LengthClassifier:
    """Deterministic: score = len(text) / 1000. Records every batch; fails on "boom"."""

    name = "length"
    labels = ("length",)
    produces_spans = False

    def __init__(self, delay_s: float = 0.005, gate: threading.Event | None = None) -> None:
        self.delay_s = delay_s
        self.gate = gate
        self.batches: list[list[str]] = []
        self.active = 0
        self.max_active = 0
        self.threads: set[str] = set()

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.threads.add(threading.current_thread().name)
        try:
            self.batches.append(list(texts))
            if self.gate is not None:
                self.gate.wait(10)
            time.sleep(self.delay_s)  # stands in for the device's work on the batch
            if "boom" in texts:
                raise ValueError("boom in batch")
            return [LabelScores({"length": len(t) / 1000}) for t in texts]
        finally:
            self.active -= 1

    def info(self) -> dict[str, Any]:
        return {"name": self.name}


def wait_for_first_batch(clf: LengthClassifier) -> None:
    """Block until the worker is inside ``predict`` (then new calls queue behind it)."""
    deadline = time.monotonic() + 5
    while not clf.batches and time.monotonic() < deadline:
        time.sleep(0.001)


def text_for(i: int) -> str:
    return "x" * i


def test_is_a_classifier_and_routes_results_in_order():
    clf = LengthClassifier()
    with MicroBatcher(clf) as batcher:
        assert isinstance(batcher, Classifier)
        assert batcher.labels == ("length",) and batcher.name == "length"
        out = batcher.predict([text_for(3), text_for(1), text_for(2)])
        assert [r["length"] for r in out] == [0.003, 0.001, 0.002]
        assert batcher.predict([]) == []
        assert batcher.predict_one(text_for(7))["length"] == 0.007
        assert batcher.info()["micro_batch"]["max_batch_size"] == 64


async def test_64_threads_and_64_coroutines_share_batches():
    clf = LengthClassifier(delay_s=0.01)
    batcher = MicroBatcher(clf, max_wait_ms=5, max_batch_size=64)
    thread_results: dict[int, float] = {}
    barrier = threading.Barrier(64)

    def thread_caller(i: int) -> None:
        barrier.wait()
        thread_results[i] = batcher.predict_one(text_for(i))["length"]

    threads = [threading.Thread(target=thread_caller, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()

    async def coroutine_caller(i: int) -> list[float]:
        texts = [text_for(100 + i), text_for(200 + i)]
        return [r["length"] for r in await batcher.apredict(texts)]

    coroutine_results = await asyncio.gather(*(coroutine_caller(i) for i in range(64)))
    for t in threads:
        t.join(timeout=10)
    batcher.close()

    assert thread_results == {i: i / 1000 for i in range(64)}
    assert coroutine_results == [[(100 + i) / 1000, (200 + i) / 1000] for i in range(64)]
    assert clf.max_active == 1 and len(clf.threads) == 1  # one worker owns the device
    assert batcher.stats.requests == 128 and batcher.stats.texts == 64 + 128
    assert len(clf.batches) == batcher.stats.batches
    assert batcher.stats.batches <= 16, clf.batches  # far fewer than 128 calls
    assert batcher.stats.largest_batch <= 64


def test_an_exception_reaches_every_caller_of_its_batch_and_only_them():
    gate = threading.Event()
    clf = LengthClassifier(gate=gate)
    batcher = MicroBatcher(clf, max_wait_ms=1, max_batch_size=64)
    first = batcher.submit([text_for(1)])  # occupies the worker until the gate opens
    wait_for_first_batch(clf)
    failing = [batcher.submit(["boom" if i == 2 else text_for(i)]) for i in range(5)]
    gate.set()
    assert first.result(timeout=5)[0]["length"] == 0.001
    for future in failing:
        with pytest.raises(ValueError, match="boom in batch"):
            future.result(timeout=5)
    assert clf.batches[1] == ["x" * 0, "x", "boom", "xxx", "xxxx"]  # the five shared one batch
    assert batcher.stats.errors == 1
    # The worker survives: later calls work.
    assert batcher.predict([text_for(9)])[0]["length"] == 0.009
    batcher.close()


async def test_async_callers_get_exceptions_too():
    clf = LengthClassifier()
    with MicroBatcher(clf) as batcher:
        with pytest.raises(ValueError, match="boom"):
            await batcher.apredict(["boom"])
        assert (await batcher.apredict_one("abc"))["length"] == 0.003


def test_a_lone_call_waits_only_max_wait():
    clf = LengthClassifier(delay_s=0.0)
    with MicroBatcher(clf, max_wait_ms=2) as batcher:
        batcher.predict_one("warm up")
        start = time.perf_counter()
        for _ in range(20):
            batcher.predict_one("a")
        per_call = (time.perf_counter() - start) / 20
    assert per_call < 0.1  # milliseconds, not Inspect's seconds-long quiet wait


def test_an_idle_batcher_does_not_poll():
    with MicroBatcher(LengthClassifier(), max_wait_ms=2):
        before = resource.getrusage(resource.RUSAGE_SELF)
        time.sleep(0.5)
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu_s < 0.1


def test_close_finishes_queued_work_then_refuses_new_calls():
    gate = threading.Event()
    clf = LengthClassifier(gate=gate)
    batcher = MicroBatcher(clf, max_wait_ms=50, max_batch_size=2)
    futures = [batcher.submit([text_for(i)]) for i in range(6)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    gate.set()
    closer.join(timeout=10)
    assert not closer.is_alive() and batcher.closed
    assert [f.result(timeout=1)[0]["length"] for f in futures] == [i / 1000 for i in range(6)]
    assert not batcher.running
    with pytest.raises(RuntimeError, match="closed"):
        batcher.predict(["late"])
    batcher.close()  # idempotent


async def test_a_cancelled_async_call_is_dropped_without_harm():
    gate = threading.Event()
    clf = LengthClassifier(gate=gate)
    with MicroBatcher(clf, max_wait_ms=1) as batcher:
        blocker = batcher.submit(["a"])
        wait_for_first_batch(clf)
        task = asyncio.ensure_future(batcher.apredict(["cancel me"]))
        await asyncio.sleep(0.01)
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert blocker.result(timeout=5)[0]["length"] == 0.001
        assert (await batcher.apredict(["ok"]))[0]["length"] == 0.002
    assert all("cancel me" not in batch for batch in clf.batches)


def test_wraps_a_real_classifier():
    with MicroBatcher(KeywordClassifier({"insult": ["idiot"]})) as batcher:
        results: list[float] = []

        def call(text: str) -> None:
            results.append(batcher.predict_one(text)["insult"])

        threads = [threading.Thread(target=call, args=("you idiot",)) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
    assert results == [1.0] * 8


def test_rejects_bad_settings():
    with pytest.raises(ValueError):
        MicroBatcher(LengthClassifier(), max_batch_size=0)


def test_a_lone_caller_does_not_wait_for_the_window_but_a_burst_is_batched() -> None:
    clf = LengthClassifier(delay_s=0.05)
    with MicroBatcher(clf, max_wait_ms=400) as batcher:
        for _ in range(3):  # calls further apart than the window: none waits for it
            started = time.perf_counter()
            batcher.predict(["alone"])
            assert time.perf_counter() - started < 0.3
            time.sleep(0.45)
        assert batcher.stats.largest_batch == 1
        # A burst: all but the first arrive within the window, so they share batches.
        threads = [threading.Thread(target=batcher.predict, args=([text_for(i)],)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert batcher.stats.largest_batch > 1
