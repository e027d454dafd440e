"""Gather concurrent inline calls into shared batches on one device-owning worker thread.

An inline guard sees one or a few texts per request, from many threads or coroutines at
once. Scoring each call alone wastes the device (a batch of 32 short texts costs about as
much as one on a GPU); the :class:`MicroBatcher` holds a call for at most ``max_wait_ms``
milliseconds while others join it (a call arriving alone, with no other call in the
window before it, goes at once: waiting only adds latency for a lone caller), then one
dedicated worker thread runs the whole batch
through the classifier and routes each caller its own results, in order.

The worker sleeps on a condition variable and is woken by each submission, so there is no
polling: an idle batcher costs nothing, and a lone call waits at most ``max_wait_ms`` (a
full batch goes at once). Inspect's HF batcher, by contrast, waits up to 2 s for quiet
and polls every second.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rai_harness.classifiers.base import Classifier, LabelScores

__all__ = ["BatcherStats", "MicroBatcher"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class BatcherStats:
    """Counters of a :class:`MicroBatcher` (read them for monitoring; they only grow).

    Attributes:
        batches: Calls made to the classifier's ``predict``.
        requests: Caller requests served (a request is one ``predict``/``apredict`` call).
        texts: Texts scored.
        largest_batch: Most texts in one batch.
        errors: Batches whose ``predict`` raised.
    """

    batches: int = 0
    requests: int = 0
    texts: int = 0
    largest_batch: int = 0
    errors: int = 0


@dataclass(slots=True)
class _Request:
    texts: list[str]
    future: concurrent.futures.Future[list[LabelScores]]
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Runs a classifier for concurrent callers in shared batches on one worker thread.

    It is itself a :class:`~rai_harness.classifiers.base.Classifier` (``name``, ``labels``,
    ``predict``, ``info``), so it can stand in for the classifier it wraps.

    Args:
        classifier: The classifier to run (only the worker thread calls it).
        max_wait_ms: Longest a call waits for others to join its batch, milliseconds.
        max_batch_size: Texts per batch at most; a single call with more texts still runs
            whole, alone (the classifier batches internally).
    """

    def __init__(self, classifier: Classifier, *, max_wait_ms: float = 2.0, max_batch_size: int = 64) -> None:
        if max_wait_ms < 0 or max_batch_size < 1:
            raise ValueError("max_wait_ms must be >= 0 and max_batch_size >= 1")
        self.classifier = classifier
        self.name: str = classifier.name
        self.labels: tuple[str, ...] = tuple(classifier.labels)
        self.produces_spans: bool = classifier.produces_spans
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_batch_size = max_batch_size
        self.stats = BatcherStats()
        self._queue: deque[_Request] = deque()
        self._queued_texts = 0
        # Arrival times (monotonic) of the latest request and of the one before the head
        # of the queue: how a lone caller is told from the first of a burst.
        self._last_arrival = -float("inf")
        self._previous_arrival = -float("inf")
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name=f"rai-microbatch[{self.name}]", daemon=True)
        self._worker.start()

    # -- callers ----------------------------------------------------------------------

    def submit(self, texts: Sequence[str]) -> concurrent.futures.Future[list[LabelScores]]:
        """Queue ``texts``; the future resolves to their scores, in order.

        Raises:
            RuntimeError: The batcher is closed.
        """
        future: concurrent.futures.Future[list[LabelScores]] = concurrent.futures.Future()
        texts = list(texts)
        if not texts:
            future.set_result([])
            return future
        with self._cond:
            if self._closed:
                raise RuntimeError(f"micro-batcher for {self.name} is closed")
            request = _Request(texts, future)
            if not self._queue:  # it becomes the head of the queue
                self._previous_arrival = self._last_arrival
            self._last_arrival = request.arrived
            self._queue.append(request)
            self._queued_texts += len(texts)
            self._cond.notify()
        return future

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        """Score ``texts`` (blocking), sharing a batch with concurrent callers.

        Args:
            texts: The texts.

        Returns:
            One result per text, in order.
        """
        return self.submit(texts).result()

    def predict_one(self, text: str) -> LabelScores:
        """Score one text (blocking)."""
        return self.predict([text])[0]

    async def apredict(self, texts: Sequence[str]) -> list[LabelScores]:
        """Score ``texts`` from asyncio without blocking the event loop.

        Cancelling the awaiting task drops the request if its batch has not started yet.

        Args:
            texts: The texts.

        Returns:
            One result per text, in order.
        """
        return await asyncio.wrap_future(self.submit(texts))

    async def apredict_one(self, text: str) -> LabelScores:
        """Score one text from asyncio."""
        return (await self.apredict([text]))[0]

    def info(self) -> dict[str, Any]:
        """The wrapped classifier's info plus the batching settings."""
        return {
            **self.classifier.info(),
            "micro_batch": {"max_wait_ms": self.max_wait_s * 1000.0, "max_batch_size": self.max_batch_size},
        }

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive (after :meth:`close`: still finishing a batch)."""
        return self._worker.is_alive()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting calls, finish the ones already queued, and stop the worker.

        Args:
            timeout: Seconds to wait for the worker to finish; ``None`` waits until it does.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if threading.current_thread() is not self._worker:
            self._worker.join(timeout)

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the worker ---------------------------------------------------------------------

    def _take_batch(self) -> list[_Request] | None:
        """Wait for work, gather for up to ``max_wait_s`` after the oldest call; ``None``: stop."""
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = self._queue[0].arrived + self.max_wait_s
            # A lone caller does not wait for company that is not coming: when nothing else
            # arrived within the last window (no concurrent traffic), its batch goes at once.
            # Under load, calls arrive while a batch runs and queue up, so batches still form.
            lone = len(self._queue) == 1 and self._queue[0].arrived - self._previous_arrival > self.max_wait_s
            while self._queued_texts < self.max_batch_size and not self._closed and not lone:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = [self._queue.popleft()]
            size = len(batch[0].texts)
            while self._queue and size + len(self._queue[0].texts) <= self.max_batch_size:
                request = self._queue.popleft()
                size += len(request.texts)
                batch.append(request)
            self._queued_texts -= size
            if self._queue:  # the new head came with the batch just taken: not alone
                self._previous_arrival = batch[-1].arrived
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            # A caller that cancelled (an asyncio timeout, say) before its batch started is dropped.
            live = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if live:
                self._run_batch(live)

    def _run_batch(self, batch: list[_Request]) -> None:
        texts = [text for request in batch for text in request.texts]
        stats = self.stats
        stats.batches += 1
        stats.requests += len(batch)
        stats.texts += len(texts)
        stats.largest_batch = max(stats.largest_batch, len(texts))
        try:
            results = self.classifier.predict(texts)
            if len(results) != len(texts):
                raise RuntimeError(
                    f"{self.name}.predict returned {len(results)} results for {len(texts)} texts"
                )
        except BaseException as exc:
            stats.errors += 1
            for request in batch:
                request.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            logger.debug("micro-batch of %d texts failed: %r", len(texts), exc)
            return
        offset = 0
        for request in batch:
            n = len(request.texts)
            request.future.set_result(results[offset : offset + n])
            offset += n
