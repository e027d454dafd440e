"""The one micro-batching engine: concurrent callers' items run in shared batches on one worker thread.

Inline callers (a guard's rails, the in-process ``hf-local`` generator) see one or a few
items per call, from many threads or coroutines at once. Running each call alone wastes
the device (a batch of 32 short texts costs about as much as one on a GPU, and a CPU
decoding step reads all the weights once whatever the batch). The
:class:`MicroBatchEngine` holds a call for at most ``max_wait_ms`` milliseconds while
others join it, then one dedicated worker thread hands the batch to a *batch function*
and routes each caller its own result through a per-item
:class:`concurrent.futures.Future`.

* **Grouping.** Each item has a key; a batch holds items of one key only (the oldest
  queued item's), in arrival order. ``hf-local`` keys calls by their generation
  settings, so one ``model.generate`` serves them all; the guard uses one key.
* **Size.** Each item has a size in units (texts for the guard, calls for ``hf-local``);
  a batch holds at most ``max_batch_size`` units, except that an item larger than that
  still runs, alone (the batch function splits it further if it must).
* **Waiting.** The window opens when the oldest item arrives; a batch goes when its key
  has ``max_batch_size`` units queued, when the window ends, or at once when the item
  waited through a running batch. With ``lone_goes_at_once`` a call arriving alone (no
  other within the window before it) goes at once: waiting only adds latency for a lone
  caller, and under load calls queue behind the running batch, so batches still form.
* **Errors.** A batch function may return an exception in an item's place (that caller
  alone gets it) or raise (every caller of that batch gets it, and no one else).
* **Cancellation.** A future cancelled before its batch starts is dropped; one cancelled
  or failed (:meth:`MicroBatchEngine.fail`) while its batch runs has its result dropped.

The worker sleeps on a condition variable and is woken by each submission, so there is
no polling: an idle engine costs nothing. Inspect's HF batcher, by contrast, waits up to
2 s for quiet and polls every second. Callers in asyncio wrap the future with
:func:`asyncio.wrap_future`; cancelling the awaiting task cancels a queued item.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["BatchFunction", "BatcherStats", "MicroBatchEngine"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Runs one batch: the items, in arrival order -> one result per item, in the same order;
#: an exception in an item's place fails that item alone.
BatchFunction = Callable[[list[T]], Sequence["R | BaseException"]]


@dataclass(slots=True)
class BatcherStats:
    """Counters of a :class:`MicroBatchEngine` (read them for monitoring; they only grow).

    Attributes:
        batches: Calls made to the batch function.
        requests: Items served (one per ``submit``; cancelled ones excluded).
        units: Units batched (the sum of the items' sizes).
        largest_batch: Most units in one batch.
        errors: Batches whose batch function raised.
    """

    batches: int = 0
    requests: int = 0
    units: int = 0
    largest_batch: int = 0
    errors: int = 0

    @property
    def texts(self) -> int:
        """``units`` under the name a classifier's caller uses (one unit per text)."""
        return self.units


@dataclass(slots=True, eq=False)
class _Entry(Generic[T, R]):
    item: T
    key: Hashable
    size: int
    future: concurrent.futures.Future[R]
    arrived: float  # time.monotonic() at submit


def _settle(future: concurrent.futures.Future[R], outcome: R | BaseException) -> None:
    try:
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except concurrent.futures.InvalidStateError:
        pass  # failed by fail()/close() while its batch ran: its caller already has an answer


class MicroBatchEngine(Generic[T, R]):
    """Runs a batch function for concurrent callers in shared batches on one worker thread.

    The worker thread starts with the first submission, so building an engine is cheap.

    Args:
        run_batch: The batch function (only the worker thread calls it); see
            :data:`BatchFunction`.
        max_wait_ms: Longest an item waits for others to join its batch, milliseconds.
        max_batch_size: Units per batch at most.
        lone_goes_at_once: Send an item that arrived alone without waiting for the window.
        name: Names the worker thread and error messages.

    Raises:
        ValueError: ``max_wait_ms < 0`` or ``max_batch_size < 1``.
    """

    def __init__(
        self,
        run_batch: BatchFunction[T, R],
        *,
        max_wait_ms: float = 2.0,
        max_batch_size: int = 64,
        lone_goes_at_once: bool = True,
        name: str = "micro-batcher",
    ) -> None:
        _check_settings(max_wait_ms, max_batch_size)
        self._run_batch_fn = run_batch
        self.name = name
        self.lone_goes_at_once = lone_goes_at_once
        self._max_wait_s = max_wait_ms / 1000.0
        self._max_batch_size = max_batch_size
        self.stats = BatcherStats()
        self._queue: deque[_Entry[T, R]] = deque()
        self._queued_units: dict[Hashable, int] = {}  # per key, cancelled items included until taken
        self._running: list[_Entry[T, R]] = []
        # Arrival times (monotonic) of the latest item and of the one before the head of
        # the queue: how a lone caller is told from the first of a burst.
        self._last_arrival = -float("inf")
        self._previous_arrival = -float("inf")
        self._cond = threading.Condition()
        self._closed = False
        self._worker: threading.Thread | None = None

    # -- settings -----------------------------------------------------------------------

    @property
    def max_wait_ms(self) -> float:
        """The gathering window, milliseconds."""
        return self._max_wait_s * 1000.0

    @property
    def max_batch_size(self) -> int:
        """Units per batch at most."""
        return self._max_batch_size

    def configure(self, *, max_wait_ms: float | None = None, max_batch_size: int | None = None) -> None:
        """Change the window or the batch size; the next batch formed uses them.

        Raises:
            ValueError: as in the constructor.
        """
        with self._cond:
            wait_ms = self.max_wait_ms if max_wait_ms is None else max_wait_ms
            size = self._max_batch_size if max_batch_size is None else max_batch_size
            _check_settings(wait_ms, size)
            self._max_wait_s, self._max_batch_size = wait_ms / 1000.0, size
            self._cond.notify()

    # -- callers ------------------------------------------------------------------------

    def submit(self, item: T, *, key: Hashable = None, size: int = 1) -> concurrent.futures.Future[R]:
        """Queue ``item``; the future resolves to its result from the batch function.

        Args:
            item: What the batch function receives.
            key: Only items with equal keys share a batch.
            size: The item's units towards ``max_batch_size`` (>= 1).

        Raises:
            RuntimeError: The engine is closed.
            ValueError: ``size < 1``.
        """
        if size < 1:
            raise ValueError(f"an item's size must be >= 1, not {size}")
        future: concurrent.futures.Future[R] = concurrent.futures.Future()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            entry = _Entry(item, key, size, future, time.monotonic())
            if not self._queue:  # it becomes the head of the queue
                self._previous_arrival = self._last_arrival
            self._last_arrival = entry.arrived
            self._queue.append(entry)
            self._queued_units[key] = self._queued_units.get(key, 0) + size
            if self._worker is None:
                self._start_worker()
            self._cond.notify()
        return future

    def _start_worker(self) -> None:
        """Start the worker thread (lock held)."""
        self._worker = threading.Thread(target=self._run, name=f"rai-batch[{self.name}]", daemon=True)
        self._worker.start()

    def fail(self, predicate: Callable[[T], bool], error: BaseException) -> int:
        """Fail the queued and running items ``predicate`` selects (one caller is leaving).

        Queued items leave the queue; running ones keep running and their results are dropped.

        Returns:
            How many items were failed.
        """
        with self._cond:
            failed = [e for e in self._queue if predicate(e.item)]
            if failed:
                self._queue = deque(e for e in self._queue if not predicate(e.item))
                self._recount()
            failed.extend(e for e in self._running if predicate(e.item))
        for entry in failed:
            _settle(entry.future, error)
        return len(failed)

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive (after :meth:`close`: still finishing a batch)."""
        return self._worker is not None and self._worker.is_alive()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self, timeout: float | None = None, *, error: BaseException | None = None) -> None:
        """Stop accepting items, and stop the worker once the queue is done.

        Args:
            timeout: Seconds to wait for the worker to finish; ``None`` waits until it does.
            error: Without it, queued items still run; with it, queued and running items
                fail with it at once (a running batch finishes, its results dropped).
        """
        with self._cond:
            self._closed = True
            failed = [*self._queue, *self._running] if error is not None else []
            if error is not None:
                self._queue.clear()
                self._queued_units.clear()
            self._cond.notify_all()
            worker = self._worker
        if error is not None:
            for entry in failed:
                _settle(entry.future, error)
        if worker is not None and threading.current_thread() is not worker:
            worker.join(timeout)

    # -- the worker ---------------------------------------------------------------------

    def _recount(self) -> None:
        counts: dict[Hashable, int] = {}
        for entry in self._queue:
            counts[entry.key] = counts.get(entry.key, 0) + entry.size
        self._queued_units = counts

    def _gather(self) -> bool:
        """Wait (lock held) until the head's batch should go; False: closed and nothing queued."""
        while True:
            while not self._queue:
                if self._closed:
                    return False
                self._cond.wait()
            head = self._queue[0]
            deadline = head.arrived + self._max_wait_s
            lone = (
                self.lone_goes_at_once
                and len(self._queue) == 1
                and head.arrived - self._previous_arrival > self._max_wait_s
            )
            while (
                self._queue
                and self._queued_units.get(self._queue[0].key, 0) < self._max_batch_size
                and not self._closed
                and not lone
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._queue:  # fail() may have emptied it while we waited
                return True

    def _take_batch(self) -> list[_Entry[T, R]] | None:
        """The next batch (marked running), or ``None`` when the worker should stop."""
        with self._cond:
            if not self._gather():
                return None
            key = self._queue[0].key
            batch: list[_Entry[T, R]] = []
            rest: deque[_Entry[T, R]] = deque()
            units, full = 0, False
            for entry in self._queue:
                fits = not batch or units + entry.size <= self._max_batch_size
                if entry.key == key and fits and not full:
                    batch.append(entry)
                    units += entry.size
                else:
                    # Within a key, arrival order holds: nothing overtakes an item that did not fit.
                    full = full or entry.key == key
                    rest.append(entry)
            self._queue = rest
            left = self._queued_units.pop(key, 0) - units
            if left > 0:
                self._queued_units[key] = left
            if self._queue:  # the new head came with the batch just taken: not alone
                self._previous_arrival = batch[-1].arrived
            # Inside the lock, so fail() cannot settle a future between taking and starting it.
            live = [e for e in batch if e.future.set_running_or_notify_cancel()]
            self._running = live
            return live

    def _run(self) -> None:
        try:
            while True:
                batch = self._take_batch()
                if batch is None:
                    return
                if batch:  # all cancelled: nothing to run
                    try:
                        self._run_batch(batch)
                    finally:
                        with self._cond:
                            self._running = []
        finally:
            with self._cond:
                if self._worker is threading.current_thread():
                    self._worker = None
                    # Stopped by something other than close() (a bug): the items queued still
                    # need a worker, or they wait out their callers' timeouts.
                    if self._queue and not self._closed:
                        self._start_worker()

    def _run_batch(self, batch: list[_Entry[T, R]]) -> None:
        units = sum(e.size for e in batch)
        stats = self.stats
        stats.batches += 1
        stats.requests += len(batch)
        stats.units += units
        stats.largest_batch = max(stats.largest_batch, units)
        try:
            results = list(self._run_batch_fn([e.item for e in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name} returned {len(results)} results for {len(batch)} items")
        except BaseException as exc:
            stats.errors += 1
            for entry in batch:
                _settle(entry.future, exc)
            # Not re-raised, whatever it is (a KeyboardInterrupt or SystemExit from inside a
            # model call included): its callers have it, and a worker that stopped on it left
            # every later item waiting until its caller timed out, which a rail's
            # on_error: allow turned into passes.
            logger.debug("%s: a batch of %d items failed: %r", self.name, len(batch), exc)
            return
        for entry, outcome in zip(batch, results, strict=True):
            _settle(entry.future, outcome)


def _check_settings(max_wait_ms: float, max_batch_size: int) -> None:
    if max_wait_ms < 0 or max_batch_size < 1:
        raise ValueError("max_wait_ms must be >= 0 and max_batch_size >= 1")
