"""Rails: one classifier plus the policy that turns its scores into an action.

A rail holds what a classifier deliberately does not: the threshold(s), the action
taken when a threshold is crossed (``block``, ``redact`` or ``flag``), what to do when
the classifier fails or is too slow (``on_error``: fail closed or open) and how long to
wait for it (``timeout_ms``). Keeping thresholds here means an eval, an audit and the
inline filter all read the very same scores.

Trigger rule: a rail triggers when any *watched* label's score is at or above that
label's threshold, or when any span of a watched label has a score at or above it
(span classifiers such as Presidio report both; the two agree). The findings of a
rail are those spans; a ``redact`` rail replaces exactly them.

A rail scores text through a :class:`ClassifierRunner`, which owns the micro-batcher
(:class:`~rai_harness.classifiers.microbatch.MicroBatcher`) of its classifier, so
concurrent callers (threads or asyncio tasks) share one forward pass. Rails that use the
same classifier share one runner (the :class:`~rai_harness.guardrails.guard.Guard` sees
to that), hence one worker owns the device.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rai_harness.classifiers.base import Classifier, LabelScores, Span
from rai_harness.classifiers.microbatch import MicroBatcher
from rai_harness.errors import ConfigError
from rai_harness.guardrails.textprep import DEFAULT_MAX_CHARS
from rai_harness.validation import MAX_WAIT_S, did_you_mean

__all__ = [
    "ACTION_STRENGTH",
    "Action",
    "AsyncPendingCheck",
    "ClassifierRunner",
    "OnError",
    "PendingCheck",
    "Rail",
    "RailAction",
    "RailResult",
    "Stage",
    "check_rail_settings",
    "check_redact_support",
    "strongest",
]

logger = logging.getLogger(__name__)

#: What a rail does when it triggers.
RailAction = Literal["block", "redact", "flag"]
#: What a rail (or a whole guard) did to a text; ``allow`` when nothing triggered.
Action = Literal["allow", "flag", "redact", "block"]
#: What a rail does when its classifier raises or times out: fail closed or fail open.
OnError = Literal["block", "allow"]
#: Where a rail runs: on the user's prompt or on the model's answer.
Stage = Literal["input", "output"]

#: Order used to pick the strongest action of several rails.
ACTION_STRENGTH: Mapping[str, int] = {"allow": 0, "flag": 1, "redact": 2, "block": 3}

#: Texts one timeout allowance covers. A batch call of n texts may take
#: ceil(n / TIMEOUT_BATCH_TEXTS) allowances, so a 256-line CLI batch is not failed for
#: being a batch (the micro-batcher's default largest batch is 64 texts).
TIMEOUT_BATCH_TEXTS = 64
#: Characters one timeout allowance covers. The work per text grows with its length (about
#: one token per character for punctuation-dense text), so a long text within ``max_chars``
#: gets one allowance per started block of this size and a real verdict, instead of timing
#: out: a rail with ``on_error: allow`` would then let a padded prompt pass unchecked. Worst
#: measured on 2 quiet CPU cores: 0.36 ms per character for the default policy's output stage
#: (20,000 characters of "1-" in 7.1 s), so 2,000 ms per block is 2.8x that; 20,000 characters
#: of English took 2.0 s. A short text still gets exactly ``timeout_ms``. Each text counts
#: up to twice the guard's ``max_chars`` (see :func:`timed_chars`; ``DEFAULT_MAX_CHARS`` when
#: it has none: past that no more time, so a guard run without ``max_chars`` still bounds
#: every wait).
TIMEOUT_BLOCK_CHARS = 2000


def timeout_allowances(n_texts: int, n_chars: int) -> int:
    """How many ``timeout_ms`` a rail call of ``n_texts`` texts and ``n_chars`` counted
    characters may take: one per started 64 texts or 2,000 characters, at least one.

    The one formula for the rails' deadline and for a run's ``slow_rails`` (which must
    report a check as slow only where production would have timed it out).
    """
    return max(1, math.ceil(n_texts / TIMEOUT_BATCH_TEXTS), math.ceil(n_chars / TIMEOUT_BLOCK_CHARS))


def timed_chars(texts: Sequence[str], max_chars: int | None) -> int:
    """Characters that earn timeout allowances: each detection text's length, up to twice
    ``max_chars`` (``DEFAULT_MAX_CHARS`` when ``None``).

    Twice, because a text within ``max_chars`` that holds controls rendering as nothing is
    scored twice over (read both ways, see ``textprep.normalize_for_detection``): capped at
    ``max_chars``, 20,000 characters of "1-" with one NUL took 16.5 s of a 20 s allowance on
    2 quiet cores, and a busy machine would time its ``on_error: allow`` rails out.
    """
    cap = 2 * (DEFAULT_MAX_CHARS if max_chars is None else max_chars)
    return sum(min(len(text), cap) for text in texts)


#: Texts longer than this (characters) are scored piece by piece on a lane of their own
#: (see :class:`ClassifierRunner`): a few hundred tokens, tens of milliseconds per piece.
DEFAULT_LONG_TEXT_CHARS = 2000

#: A call whose short texts hold more than this many long texts' worth of characters is
#: scored on the long lane, in groups (see :class:`ClassifierRunner`).
_BULK_CALL_TEXTS = 4

# Longest wait for a micro-batcher's worker to finish its queued batches on close, seconds.
_CLOSE_TIMEOUT_S = 2.0

# Longest error message kept in a result: classifier exceptions can be long and can echo
# their input, and results end up in logs and reports.
_MAX_ERROR_CHARS = 300


def strongest(actions: Iterable[str]) -> Action:
    """The strongest of ``actions`` (block > redact > flag > allow); ``allow`` when empty."""
    best: Action = "allow"
    for action in actions:
        if ACTION_STRENGTH[action] > ACTION_STRENGTH[best]:
            best = action  # type: ignore[assignment]
    return best


@dataclass(frozen=True, slots=True)
class RailResult:
    """What one rail found in one text.

    Attributes:
        rail: Name of the rail.
        stage: ``input`` (prompt) or ``output`` (model answer).
        triggered: Whether a watched score reached its threshold (``False`` on error).
        action: What this rail did: ``allow`` when it did not trigger, its configured action
            when it did, and ``block`` or ``allow`` (per ``on_error``) when its classifier
            failed or timed out.
        scores: The score of each label the rail watches (0.0 when the classifier returned
            none for it; empty on error). Other labels of the classifier are left out.
        spans: Findings: spans of watched labels at or above their threshold (offsets into
            the checked text; the matched text is never stored).
        error: Why the classifier gave no usable answer, or ``None``.
        latency_ms: Wall time of the classifier call that produced this result, in
            milliseconds (shared by every text of a batch call).
    """

    rail: str
    stage: Stage
    triggered: bool
    action: Action
    scores: Mapping[str, float]
    spans: tuple[Span, ...] = ()
    error: str | None = None
    latency_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: scores and findings (offsets and labels), never the text."""
        return {
            "rail": self.rail,
            "stage": self.stage,
            "triggered": self.triggered,
            "action": self.action,
            "scores": {k: round(float(v), 6) for k, v in self.scores.items()},
            "findings": [
                {"start": s.start, "end": s.end, "label": s.label, "score": round(float(s.score), 6)}
                for s in self.spans
            ],
            "error": self.error,
            "latency_ms": round(self.latency_ms, 3),
        }


class GuardClosedError(RuntimeError):
    """A check on a guard (or classifier runner) that was closed: a programming error.

    It is raised to the caller, never handled by a rail's ``on_error``: ``on_error: allow``
    would otherwise turn every later check into a pass, silently switching the guard off.
    """


class ClassifierRunner:
    """Runs one classifier for the rails that use it, sync or async, with micro-batching.

    Sync callers get a :class:`concurrent.futures.Future` (so a rail can stop waiting after
    its timeout without killing anything); async callers await the micro-batcher, so
    concurrent threads and tasks share batches. Without a micro-batcher
    (``micro_batch=False``) each call runs the classifier alone on a worker thread.

    Long texts (over ``long_text_chars``) take a separate lane, so that one slow text never
    holds the worker the next caller's short text needs: each long text is scored piece by
    piece (overlapping pieces of about ``long_text_chars``, cut at whitespace; label scores
    are the maximum over pieces, spans are shifted back to the text's offsets), on a small
    pool of its own, and the work stops at the next piece once every rail waiting for it
    has given up (timed out). So a timed-out call frees its worker within one piece.

    Args:
        classifier: The classifier to run.
        micro_batch: Gather concurrent calls into shared batches.
        max_wait_ms: Longest a call waits for others to join its batch, milliseconds.
        max_batch_size: Largest batch the micro-batcher forms.
        max_workers: Threads that run unbatched calls at once. A timed-out call keeps its
            thread until the classifier returns (threads cannot be killed), so this also
            bounds how many stuck calls pile up.
        long_text_chars: Texts longer than this go to the long-text lane (see above).
        long_workers: Threads of the long-text lane.
    """

    def __init__(
        self,
        classifier: Classifier,
        *,
        micro_batch: bool = True,
        max_wait_ms: float = 2.0,
        max_batch_size: int = 64,
        max_workers: int = 64,
        long_text_chars: int = DEFAULT_LONG_TEXT_CHARS,
        long_workers: int = 2,
    ) -> None:
        if long_text_chars < 100:
            raise ValueError(f"long_text_chars must be >= 100, got {long_text_chars}")
        self.classifier = classifier
        self.long_text_chars = long_text_chars
        self._long = concurrent.futures.ThreadPoolExecutor(
            max_workers=long_workers, thread_name_prefix="rai-guard-long"
        )
        # Long-lane jobs inside the classifier right now (close() waits for them: their
        # futures may be cancelled, i.e. done, while a piece still runs).
        self._long_active = 0
        self._long_cond = threading.Condition()
        self._batcher: MicroBatcher | None = None
        if micro_batch:
            self._batcher = MicroBatcher(classifier, max_wait_ms=max_wait_ms, max_batch_size=max_batch_size)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="rai-guard"
        )
        # Unbatched calls still running, so close() can tell whether a worker is busy.
        self._inflight: set[concurrent.futures.Future[Any]] = set()
        self._inflight_lock = threading.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (every later call raises :class:`GuardClosedError`)."""
        return self._closed

    @property
    def micro_batched(self) -> bool:
        """Whether calls go through a micro-batcher."""
        return self._batcher is not None

    def submit(self, texts: Sequence[str]) -> concurrent.futures.Future[list[LabelScores]]:
        """Start scoring ``texts`` on a worker thread; the future holds one result per text.

        Cancelling the future (what :meth:`PendingCheck.abandon` does) drops work not yet
        started and stops long texts at their next piece.
        """
        if self._closed:
            raise GuardClosedError("this classifier runner is closed; build a new guard")
        texts = list(texts)
        long_ids = [i for i, t in enumerate(texts) if len(t) > self.long_text_chars]
        short_ids = [i for i in range(len(texts)) if len(texts[i]) <= self.long_text_chars]
        # Many short texts in one call (a request of a thousand 900-character parts) are as
        # slow as a long text: on the micro-batcher they held it for 43 s, and every other
        # caller's check timed out. Past a few long texts' worth they take the long lane too.
        bulk = sum(len(texts[i]) for i in short_ids) > self.long_text_chars * _BULK_CALL_TEXTS
        if not long_ids and not bulk:
            return self._submit_short(texts)
        parts: list[tuple[list[int], concurrent.futures.Future[list[LabelScores]]]] = []
        if short_ids:
            short = [texts[i] for i in short_ids]
            parts.append((short_ids, self._submit_bulk(short) if bulk else self._submit_short(short)))
        for i in long_ids:
            parts.append(([i], self._submit_long(texts[i])))
        return _gather(parts, len(texts))

    def _submit_short(self, texts: list[str]) -> concurrent.futures.Future[list[LabelScores]]:
        if self._batcher is not None:
            # The batcher hands back its own future: no extra thread hop per call.
            future: concurrent.futures.Future[list[LabelScores]] = self._batcher.submit(list(texts))
            return future
        future = self._executor.submit(self.classifier.predict, list(texts))
        self._track(future)
        return future

    def _submit_long(self, text: str) -> concurrent.futures.Future[list[LabelScores]]:
        """Score one long text piece by piece on the long lane; cancellable between pieces."""

        def score(future: concurrent.futures.Future[list[LabelScores]]) -> list[LabelScores] | None:
            result = self._score_in_pieces(text, future)
            return None if result is None else [result]

        return self._on_long_lane(score)

    def _submit_bulk(self, texts: list[str]) -> concurrent.futures.Future[list[LabelScores]]:
        """Score many short texts on the long lane, a few long texts' worth of characters per
        classifier call; cancellable between calls."""

        def score(future: concurrent.futures.Future[list[LabelScores]]) -> list[LabelScores] | None:
            out: list[LabelScores] = []
            start = 0
            while start < len(texts):
                end, chars = start, 0
                while end < len(texts) and (end == start or chars + len(texts[end]) <= self.long_text_chars):
                    chars += len(texts[end])
                    end += 1
                if future.cancelled() or self._closed:
                    return None
                out.extend(self.classifier.predict(texts[start:end]))
                start = end
            return out

        return self._on_long_lane(score)

    def _on_long_lane(
        self,
        score: Callable[[concurrent.futures.Future[list[LabelScores]]], list[LabelScores] | None],
    ) -> concurrent.futures.Future[list[LabelScores]]:
        """Run ``score`` on the long lane; it returns None once the future is cancelled."""
        # The future stays PENDING while the work runs, so that cancel() succeeds and the
        # worker sees it at its next step (a RUNNING future cannot be cancelled).
        future: concurrent.futures.Future[list[LabelScores]] = concurrent.futures.Future()

        def work() -> None:
            with self._long_cond:
                self._long_active += 1
            try:
                result = score(future)
            except BaseException as exc:
                if future.set_running_or_notify_cancel():
                    future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                return
            finally:
                with self._long_cond:
                    self._long_active -= 1
                    self._long_cond.notify_all()
            if result is None:
                future.cancel()  # stopped early (closed, or nobody waits): settle it
            elif future.set_running_or_notify_cancel():
                future.set_result(result)

        try:
            self._long.submit(work)
        except RuntimeError:  # shut down meanwhile
            future.cancel()
            raise
        return future

    def _score_in_pieces(
        self, text: str, future: concurrent.futures.Future[list[LabelScores]]
    ) -> LabelScores | None:
        """Max over pieces; ``None`` when the future was cancelled (nobody waits any more)."""
        from rai_harness.classifiers.presidio_backend import split_for_analysis

        scores: dict[str, float] = {}
        spans: dict[tuple[int, int, str], float] = {}
        pieces = split_for_analysis(text, self.long_text_chars)
        for offset, piece in pieces:
            if future.cancelled() or self._closed:
                return None
            (result,) = self.classifier.predict([piece])
            for label, value in result.scores.items():
                scores[label] = max(scores.get(label, 0.0), float(value))
            for span in result.spans:
                key = (span.start + offset, span.end + offset, span.label)
                spans[key] = max(spans.get(key, 0.0), float(span.score))
        return LabelScores(
            scores=scores,
            spans=tuple(Span(k[0], k[1], k[2], v) for k, v in sorted(spans.items())),
            chunks=len(pieces),
        )

    async def apredict(self, texts: Sequence[str]) -> list[LabelScores]:
        """Score ``texts`` from asyncio without blocking the event loop.

        Cancelling the awaiting task cancels the call as :meth:`submit` describes.
        """
        if self._closed:
            raise GuardClosedError("this classifier runner is closed; build a new guard")
        texts = list(texts)
        if (
            self._batcher is not None
            and all(len(t) <= self.long_text_chars for t in texts)
            and sum(map(len, texts)) <= self.long_text_chars * _BULK_CALL_TEXTS
        ):
            result: list[LabelScores] = await self._batcher.apredict(texts)
            return result
        return await asyncio.wrap_future(self.submit(texts))

    def close(self, timeout: float = _CLOSE_TIMEOUT_S) -> bool:
        """Stop the micro-batcher and the worker threads (pending sync calls are cancelled).

        Args:
            timeout: Seconds to wait for a classifier call still running (one a rail gave
                up on after its timeout keeps its thread until the classifier returns).

        Returns:
            Whether every worker has stopped. ``False`` means a classifier call is still
            running: a process exiting now should skip interpreter finalisation
            (``os._exit``), since native code (BLAS, spaCy) may abort under it.
        """
        deadline = time.monotonic() + timeout
        if not self._closed:
            self._closed = True
            if self._batcher is not None:
                # Bounded join: a classifier stuck past its rails' timeouts must not hang
                # shutdown (the batcher's worker is a daemon thread).
                self._batcher.close(timeout=timeout)
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._long.shutdown(wait=False, cancel_futures=True)
        if self._batcher is not None and self._batcher.running:
            return False
        with self._long_cond:
            # Long jobs stop at their next piece once closed; wait for the current one.
            self._long_cond.wait_for(
                lambda: self._long_active == 0, timeout=max(0.0, deadline - time.monotonic())
            )
            if self._long_active:
                return False
        with self._inflight_lock:
            inflight = list(self._inflight)
        if inflight:
            concurrent.futures.wait(inflight, timeout=max(0.0, deadline - time.monotonic()))
        return all(f.done() for f in inflight)

    def _track(self, future: concurrent.futures.Future[Any]) -> None:
        with self._inflight_lock:
            self._inflight.add(future)
        future.add_done_callback(self._untrack)

    def _untrack(self, future: concurrent.futures.Future[Any]) -> None:
        with self._inflight_lock:
            self._inflight.discard(future)


def _gather(
    parts: Sequence[tuple[list[int], concurrent.futures.Future[list[LabelScores]]]], n: int
) -> concurrent.futures.Future[list[LabelScores]]:
    """One future over several sub-calls (results put back at their indices).

    Cancelling it cancels every sub-call; the first failure fails it.
    """
    outer: concurrent.futures.Future[list[LabelScores]] = concurrent.futures.Future()
    results: list[LabelScores | None] = [None] * n
    lock = threading.Lock()
    remaining = [len(parts)]
    settled = [False]

    def on_outer_done(f: concurrent.futures.Future[Any]) -> None:
        if f.cancelled():
            for _, sub in parts:
                sub.cancel()

    def on_part_done(ids: list[int], sub: concurrent.futures.Future[list[LabelScores]]) -> None:
        exc = None if sub.cancelled() else sub.exception()
        with lock:
            if settled[0]:
                return
            if not sub.cancelled() and exc is None:
                for i, value in zip(ids, sub.result(), strict=True):
                    results[i] = value
            remaining[0] -= 1
            settle = sub.cancelled() or exc is not None or remaining[0] == 0
            settled[0] = settle
        if not settle:
            return
        if sub.cancelled():
            outer.cancel()
        elif outer.set_running_or_notify_cancel():
            if exc is not None:
                outer.set_exception(exc)
            else:
                outer.set_result([r for r in results if r is not None])

    outer.add_done_callback(on_outer_done)
    for ids, sub in parts:
        sub.add_done_callback(lambda f, ids=ids: on_part_done(ids, f))  # type: ignore[misc]
    return outer


@dataclass(frozen=True, slots=True)
class PendingCheck:
    """A sync rail call in flight (returned by :meth:`Rail.submit`)."""

    future: concurrent.futures.Future[list[LabelScores]] | None
    n_texts: int
    started: float
    #: Set when the call could not even start (the runner is closed...).
    error: str | None = None
    #: Characters in the call's texts (their timeout allowance grows with it).
    n_chars: int = 0

    def abandon(self) -> None:
        """Once every rail sharing this call has its result: drop it if it has not started
        (a micro-batcher skips cancelled requests), so nobody's abandoned work is done."""
        if self.future is not None and not self.future.done():
            self.future.cancel()


@dataclass(frozen=True, slots=True)
class AsyncPendingCheck:
    """An async rail call in flight (returned by :meth:`Rail.asubmit`)."""

    task: asyncio.Future[list[LabelScores]]
    n_texts: int
    started: float
    #: Characters in the call's texts (their timeout allowance grows with it).
    n_chars: int = 0

    def abandon(self) -> None:
        """Once every rail sharing this call has its result: cancel it if still pending."""
        if not self.task.done():
            self.task.cancel()


def _consume_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class Rail:
    """A classifier, its threshold(s), an action, an error policy and a timeout.

    Args:
        name: Name shown in results and reports.
        classifier: Any :class:`~rai_harness.classifiers.base.Classifier`.
        action: ``block`` (the text must not pass), ``redact`` (replace the findings; needs
            a classifier that returns spans) or ``flag`` (let it pass and record it).
        threshold: One threshold applied to every label in ``labels``.
        labels: Labels watched by ``threshold``; default: all the classifier's labels.
        thresholds: Per-label thresholds instead (``{"toxic": 0.8, "threat": 0.5}``);
            give either this or ``threshold``.
        on_error: ``block`` to fail closed (a failing or slow classifier blocks the text),
            ``allow`` to fail open (the text passes; the error is recorded).
        timeout_ms: Longest wait for the classifier per call of up to 64 texts and
            2,000 characters, milliseconds (a call gets one allowance per started 64 texts
            or 2,000 characters, whichever gives more: :data:`TIMEOUT_BLOCK_CHARS`).
        runner: Runner to score with; by default the guard gives rails sharing a classifier
            one shared runner (and a standalone rail makes its own on first use).

    Raises:
        ConfigError: on a threshold outside [0, 1], an unknown label, a missing or doubled
            threshold, or a ``redact`` rail over a classifier that declares it has no spans.
    """

    def __init__(
        self,
        name: str,
        classifier: Classifier,
        *,
        action: RailAction,
        threshold: float | None = None,
        labels: Sequence[str] | None = None,
        thresholds: Mapping[str, float] | None = None,
        on_error: OnError = "block",
        timeout_ms: float = 1000.0,
        runner: ClassifierRunner | None = None,
    ) -> None:
        check_rail_settings(
            name=name,
            action=action,
            on_error=on_error,
            timeout_ms=timeout_ms,
            threshold=threshold,
            labels=labels,
            thresholds=thresholds,
        )
        check_redact_support(action, classifier.produces_spans, f"'{classifier.name}'")
        self.name = name
        self.classifier = classifier
        self.action: RailAction = action
        self.on_error: OnError = on_error
        self.timeout_ms = float(timeout_ms)
        self.thresholds: Mapping[str, float] = _resolve_thresholds(classifier, threshold, labels, thresholds)
        self._runner = runner
        # A runner the caller passed is kept by every guard; one a guard bound is that guard's.
        self._runner_given = runner is not None
        self._owns_runner = False
        self._runner_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Rail(name={self.name!r}, classifier={self.classifier.name!r}, action={self.action!r}, "
            f"thresholds={dict(self.thresholds)!r}, on_error={self.on_error!r}, timeout_ms={self.timeout_ms})"
        )

    # -- runner ----------------------------------------------------------------------------

    @property
    def runner(self) -> ClassifierRunner:
        """The runner this rail scores with (created on first use when none was bound)."""
        runner = self._runner
        if runner is None:
            with self._runner_lock:  # two first callers on two threads must not make two
                if self._runner is None:
                    self._runner = ClassifierRunner(self.classifier)
                    self._owns_runner = True
                runner = self._runner
        return runner

    @property
    def has_runner(self) -> bool:
        """Whether a runner is bound already."""
        return self._runner is not None

    def for_guard(self) -> Rail:
        """A copy of this rail for one guard: same classifier and settings, its own runner binding.

        A guard binds its rails to runners it owns and closes. Binding the caller's object
        itself let a second guard built from the same rails silently reuse the first guard's
        runner (ignoring its own ``micro_batch``) and, once the first guard closed, fail every
        check on a closed runner, which ``on_error: allow`` turns into a pass. A runner given
        to the rail's constructor is kept.
        """
        twin = copy.copy(self)
        twin._runner_lock = threading.Lock()
        if not self._runner_given:
            twin._runner = None
            twin._owns_runner = False
        return twin

    def bind(self, runner: ClassifierRunner) -> None:
        """Use ``runner`` (shared with other rails of the same classifier) from now on."""
        self._runner = runner
        self._owns_runner = False

    def close(self) -> None:
        """Close the runner if this rail created it."""
        if self._owns_runner and self._runner is not None:
            self._runner.close()
            self._runner = None
            self._owns_runner = False

    def timeout_s(self, n_texts: int, n_chars: int = 0) -> float:
        """Seconds to wait for a call of ``n_texts`` texts of ``n_chars`` characters in all
        (see ``timeout_ms``)."""
        return self.timeout_ms / 1000.0 * timeout_allowances(n_texts, n_chars)

    # -- pure scoring ----------------------------------------------------------------------

    def score(self, result: LabelScores) -> float:
        """The raw score a threshold sweep ranks by: the max watched label or span score."""
        best = 0.0
        for label in self.thresholds:
            best = max(best, float(result.scores.get(label, 0.0)))
        for span in result.spans:
            if span.label in self.thresholds:
                best = max(best, float(span.score))
        return best

    def findings(self, result: LabelScores) -> tuple[Span, ...]:
        """Spans of watched labels whose score reaches that label's threshold."""
        return tuple(
            s for s in result.spans if s.label in self.thresholds and s.score >= self.thresholds[s.label]
        )

    def is_triggered(self, result: LabelScores) -> bool:
        """The trigger rule (see the module docstring)."""
        if any(float(result.scores.get(label, 0.0)) >= t for label, t in self.thresholds.items()):
            return True
        return bool(self.findings(result))

    def evaluate(self, result: LabelScores, stage: Stage, latency_ms: float = 0.0) -> RailResult:
        """Apply thresholds and action to one classifier result.

        A watched score that is not a finite number (NaN from an fp16 overflow, a plugin's bug)
        is a failed check, which ``on_error`` decides: compared with a threshold, NaN is never
        reached, so the text would pass as if the classifier had cleared it.
        """
        watched = [float(result.scores.get(label, 0.0)) for label in self.thresholds]
        watched += [float(s.score) for s in result.spans if s.label in self.thresholds]
        if not all(math.isfinite(score) for score in watched):
            return self.failed(
                stage, "the classifier returned a score that is not a finite number", latency_ms
            )
        findings = self.findings(result)
        triggered = self.is_triggered(result)
        action: Action = self.action if triggered else "allow"
        error = None
        if triggered and self.action == "redact" and not findings:
            # A label score crossed the threshold but there is no span to cut out: letting the
            # text through unredacted would leak what the rail exists to stop, so fail closed.
            action = "block"
            error = "triggered on a label score but the classifier returned no span to redact; blocked"
        return RailResult(
            rail=self.name,
            stage=stage,
            triggered=triggered,
            action=action,
            # Only the labels this rail watches: a names rail listing the e-mail score it
            # ignores (EMAIL_ADDRESS: 1.0, not triggered) reads as a rail that saw PII and let it go.
            scores={label: float(result.scores.get(label, 0.0)) for label in self.thresholds},
            spans=findings,
            error=error,
            latency_ms=latency_ms,
        )

    def failed(self, stage: Stage, error: str, latency_ms: float) -> RailResult:
        """The result when the classifier raised or timed out: ``on_error`` decides."""
        return RailResult(
            rail=self.name,
            stage=stage,
            triggered=False,
            action="block" if self.on_error == "block" else "allow",
            scores={},
            spans=(),
            error=error[:_MAX_ERROR_CHARS],
            latency_ms=latency_ms,
        )

    # -- running ---------------------------------------------------------------------------

    def submit(self, texts: Sequence[str], *, max_chars: int | None = None) -> PendingCheck:
        """Start scoring ``texts`` without waiting (the guard starts every rail, then waits).

        ``max_chars``: the guard's; each text earns timeout allowances up to it (:func:`timed_chars`).
        """
        started = time.perf_counter()
        try:
            future = self.runner.submit(texts)
        except GuardClosedError:
            raise
        except Exception as exc:
            return PendingCheck(None, len(texts), started, error=_describe(exc))
        return PendingCheck(future, len(texts), started, n_chars=timed_chars(texts, max_chars))

    def collect(self, pending: PendingCheck, stage: Stage) -> list[RailResult]:
        """Wait for a :meth:`submit` call until this rail's deadline and turn it into results."""
        n = pending.n_texts
        if pending.future is None:
            return self._all_failed(stage, pending.error or "the call could not start", pending.started, n)
        remaining = pending.started + self.timeout_s(n, pending.n_chars) - time.perf_counter()
        try:
            scores = pending.future.result(timeout=max(remaining, 0.0))
        except concurrent.futures.TimeoutError:
            # The classifier keeps running (threads cannot be killed); we only stop waiting,
            # which is what bounds the latency a user sees. No cancel here: another rail may
            # share this call with a longer timeout (see PendingCheck.abandon).
            return self._all_failed(stage, self._timeout_message(n, pending.n_chars), pending.started, n)
        except Exception as exc:
            self._raise_if_closed(exc)
            return self._all_failed(stage, _describe(exc), pending.started, n)
        return self._results(scores, stage, pending.started, n)

    def check(self, texts: Sequence[str], stage: Stage = "input") -> list[RailResult]:
        """Score ``texts`` in one batched call and return one result per text."""
        if not texts:
            return []
        pending = self.submit(texts)
        try:
            return self.collect(pending, stage)
        finally:
            pending.abandon()

    def asubmit(self, texts: Sequence[str], *, max_chars: int | None = None) -> AsyncPendingCheck:
        """Start scoring ``texts`` as an asyncio task (must be called inside a running loop); see :meth:`submit`."""
        started = time.perf_counter()
        task = asyncio.ensure_future(self.runner.apredict(texts))
        # Every rail awaiting the task may give up (timeout) before it ends; consume its
        # outcome anyway so asyncio does not log "exception was never retrieved".
        task.add_done_callback(_consume_outcome)
        return AsyncPendingCheck(task, len(texts), started, n_chars=timed_chars(texts, max_chars))

    async def acollect(self, pending: AsyncPendingCheck, stage: Stage) -> list[RailResult]:
        """Await an :meth:`asubmit` call until this rail's deadline and turn it into results."""
        n = pending.n_texts
        remaining = pending.started + self.timeout_s(n, pending.n_chars) - time.perf_counter()
        try:
            # shield: when this rail stops waiting, a rail sharing the task may still want it.
            scores = await asyncio.wait_for(asyncio.shield(pending.task), timeout=max(remaining, 0.0))
        except asyncio.TimeoutError:
            return self._all_failed(stage, self._timeout_message(n, pending.n_chars), pending.started, n)
        except Exception as exc:
            self._raise_if_closed(exc)
            return self._all_failed(stage, _describe(exc), pending.started, n)
        return self._results(scores, stage, pending.started, n)

    async def acheck(self, texts: Sequence[str], stage: Stage = "input") -> list[RailResult]:
        """Async :meth:`check`; concurrent callers share micro-batches."""
        if not texts:
            return []
        pending = self.asubmit(texts)
        try:
            return await self.acollect(pending, stage)
        finally:
            pending.abandon()

    # -- helpers ---------------------------------------------------------------------------

    def _raise_if_closed(self, exc: BaseException) -> None:
        """Re-raise a call that failed because the guard was closed (before or during it).

        A closed guard is the caller's mistake, not a classifier failure: handled by
        ``on_error: allow``, it would pass every text from then on.
        """
        if isinstance(exc, GuardClosedError):
            raise exc
        if self._runner is not None and self._runner.closed:
            raise GuardClosedError("the guard was closed during this check; build a new guard") from exc

    def _timeout_message(self, n: int, n_chars: int) -> str:
        return f"timed out after {self.timeout_s(n, n_chars) * 1000:.0f} ms"

    def _all_failed(self, stage: Stage, error: str, started: float, n: int) -> list[RailResult]:
        latency_ms = (time.perf_counter() - started) * 1000.0
        logger.warning(
            "rail %r failed (%s); on_error=%s applies to %d text(s)", self.name, error, self.on_error, n
        )
        return [self.failed(stage, error, latency_ms) for _ in range(n)]

    def _results(
        self, scores: Sequence[LabelScores], stage: Stage, started: float, n: int
    ) -> list[RailResult]:
        latency_ms = (time.perf_counter() - started) * 1000.0
        if len(scores) != n:
            return self._all_failed(
                stage, f"classifier returned {len(scores)} results for {n} texts", started, n
            )
        return [self.evaluate(s, stage, latency_ms) for s in scores]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_rail_settings(
    *,
    name: str,
    action: str,
    on_error: str,
    timeout_ms: float,
    threshold: float | None,
    labels: Sequence[str] | None,
    thresholds: Mapping[str, float] | None,
) -> None:
    """The rules every rail obeys that need no model: the one implementation of each.

    Called by :class:`Rail` (rails built in code) and by the policy's ``RailSpec`` (rails in
    a file, checked at load time before any model loads). What only a loaded classifier
    knows (its labels, whether it returns spans) is checked when the rail is built.

    Raises:
        ConfigError: with a key path inside the rail (``threshold``, ``action``...), or none
            when the rail as a whole is wrong (both or neither threshold form).
    """
    if not name:
        raise ConfigError("a rail needs a non-empty name", key_path="name")
    if action not in ("block", "redact", "flag"):
        raise ConfigError(f"action must be block, redact or flag, got {action!r}", key_path="action")
    if on_error not in ("block", "allow"):
        raise ConfigError(f"on_error must be block or allow, got {on_error!r}", key_path="on_error")
    if not 0 < timeout_ms <= MAX_WAIT_S * 1000:  # also rejects NaN and infinity: every wait is bounded
        raise ConfigError(
            f"timeout_ms must be > 0 and at most {MAX_WAIT_S * 1000:.0f} (an hour), got {timeout_ms!r}",
            key_path="timeout_ms",
        )
    if (threshold is None) == (thresholds is None):
        raise ConfigError(
            "give exactly one of `threshold` (with optional `labels`) or `thresholds` (per label)"
        )
    if thresholds is not None:
        if labels is not None:
            raise ConfigError(
                "`labels` goes with a single `threshold`; with `thresholds` the keys are the labels",
                key_path="labels",
            )
        if not thresholds:
            raise ConfigError("`thresholds` must name at least one label", key_path="thresholds")
        for label, value in thresholds.items():
            if not _is_probability(value):
                raise ConfigError(f"threshold for '{label}' {_probability_problem(value)}")
    elif not _is_probability(threshold):
        raise ConfigError(f"threshold {_probability_problem(threshold)}", key_path="threshold")


def check_redact_support(action: str, produces_spans: bool, classifier: str) -> None:
    """A ``redact`` rail needs a classifier that returns spans (``Classifier.produces_spans``).

    Args:
        action: The rail's action.
        produces_spans: What the classifier (or its backend's registry entry) declares.
        classifier: How messages name the classifier (quoted).

    Raises:
        ConfigError: at key path ``action``.
    """
    if action == "redact" and not produces_spans:
        raise ConfigError(
            f"classifier {classifier} returns no spans, so there is nothing to redact; "
            "use action: block or flag, or a span classifier such as presidio",
            key_path="action",
        )


def _is_probability(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not math.isnan(value)
        and 0.0 <= value <= 1.0
    )


def _probability_problem(value: object) -> str:
    """What is wrong with a threshold that is not a probability (the rest of the message)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number between 0 and 1, got {value!r} ({type(value).__name__})"
    return f"must be greater than or equal to 0 and less than or equal to 1 (within [0, 1]), got {value!r}"


def _resolve_thresholds(
    classifier: Classifier,
    threshold: float | None,
    labels: Sequence[str] | None,
    thresholds: Mapping[str, float] | None,
) -> dict[str, float]:
    """Per-label thresholds from either form (checked by :func:`check_rail_settings`), with
    every label checked against the classifier's labels."""
    known = tuple(classifier.labels or ())
    if thresholds is not None:
        resolved = {str(k): float(v) for k, v in thresholds.items()}
        key = "thresholds"
    else:
        assert threshold is not None
        watched = tuple(labels) if labels is not None else known
        if not watched:
            raise ConfigError(
                "the classifier declares no labels; list the labels to watch in `labels`", key_path="labels"
            )
        resolved = dict.fromkeys(watched, float(threshold))
        key = "labels"
    for label in resolved:
        if known and label not in known:
            suggestion = did_you_mean(label, known)
            raise ConfigError(
                f"classifier '{classifier.name}' has no label '{label}'{suggestion}; "
                f"its labels: {', '.join(known)}",
                key_path=key,
            )
    return resolved
