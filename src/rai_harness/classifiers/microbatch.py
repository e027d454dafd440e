"""A classifier in front of the micro-batching engine: concurrent inline calls share batches.

An inline guard sees one or a few texts per request, from many threads or coroutines at
once. :class:`MicroBatcher` wraps a classifier so those calls go through the one
:class:`~rai_harness.batching.MicroBatchEngine`: a call is held for at most
``max_wait_ms`` milliseconds while others join it (a call arriving alone goes at once),
one worker thread runs the whole batch through ``classifier.predict``, and each caller
gets its own results, in order. Each call counts its texts towards ``max_batch_size``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from typing import Any

from rai_harness.batching import BatcherStats, MicroBatchEngine
from rai_harness.classifiers.base import Classifier, LabelScores

__all__ = ["BatcherStats", "MicroBatcher"]


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
        self.classifier = classifier
        self.name: str = classifier.name
        self.labels: tuple[str, ...] = tuple(classifier.labels)
        self.produces_spans: bool = classifier.produces_spans
        self._engine: MicroBatchEngine[list[str], list[LabelScores]] = MicroBatchEngine(
            self._predict_batch,
            max_wait_ms=max_wait_ms,
            max_batch_size=max_batch_size,
            lone_goes_at_once=True,
            name=f"micro-batcher for {self.name}",
        )

    @property
    def stats(self) -> BatcherStats:
        """The engine's counters (``requests`` are calls, ``texts`` the texts scored)."""
        return self._engine.stats

    @property
    def max_wait_s(self) -> float:
        """The gathering window, seconds."""
        return self._engine.max_wait_ms / 1000.0

    @property
    def max_batch_size(self) -> int:
        """Texts per batch at most."""
        return self._engine.max_batch_size

    def _predict_batch(self, calls: list[list[str]]) -> list[list[LabelScores]]:
        """One ``predict`` over every call's texts, split back per call (runs on the worker)."""
        texts = [text for call in calls for text in call]
        results = self.classifier.predict(texts)
        if len(results) != len(texts):
            raise RuntimeError(f"{self.name}.predict returned {len(results)} results for {len(texts)} texts")
        out, offset = [], 0
        for call in calls:
            out.append(results[offset : offset + len(call)])
            offset += len(call)
        return out

    # -- callers ----------------------------------------------------------------------

    def submit(self, texts: Sequence[str]) -> concurrent.futures.Future[list[LabelScores]]:
        """Queue ``texts``; the future resolves to their scores, in order.

        Raises:
            RuntimeError: The batcher is closed.
        """
        texts = list(texts)
        if not texts:
            done: concurrent.futures.Future[list[LabelScores]] = concurrent.futures.Future()
            done.set_result([])
            return done
        return self._engine.submit(texts, size=len(texts))

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
            "micro_batch": {"max_wait_ms": self._engine.max_wait_ms, "max_batch_size": self.max_batch_size},
        }

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive (after :meth:`close`: still finishing a batch)."""
        return self._engine.running

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._engine.closed

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting calls, finish the ones already queued, and stop the worker.

        Args:
            timeout: Seconds to wait for the worker to finish; ``None`` waits until it does.
        """
        self._engine.close(timeout)

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
