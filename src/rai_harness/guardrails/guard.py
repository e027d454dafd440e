"""The guard: input rails on the prompt, output rails on the answer, one verdict per text.

Every public check has a batch form (one classifier call per rail for the whole list),
and the single-text forms are wrappers over it. Async forms go through each classifier's
micro-batcher so concurrent requests share forward passes. See
:mod:`rai_harness.guardrails.streaming` for checking a streamed answer sentence by
sentence.

Imports point one way (a test keeps them acyclic): ``textprep`` and ``rails`` at the
bottom, then ``verdict`` (:class:`GuardResult`), then ``policy`` (data) and ``streaming``
(takes a checking function), then this module, which builds guards from policies and owns
the classifier runners of the guards it makes; ``provider``, ``server`` and ``audit`` on top.

Example::

    guard = Guard.from_policy("guardrails/default.yaml")
    verdict = guard.check_input("my card is 4111 1111 1111 1111")
    if verdict.blocked:
        ...
    send(verdict.redacted_text)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, overload

from rai_harness.classifiers.base import Classifier, ClassifierSpec
from rai_harness.errors import ConfigError
from rai_harness.guardrails.policy import GuardPolicy, load_policy
from rai_harness.guardrails.rails import (
    AsyncPendingCheck,
    ClassifierRunner,
    GuardClosedError,
    PendingCheck,
    Rail,
    RailResult,
    Stage,
    strongest,
)
from rai_harness.guardrails.streaming import DEFAULT_MAX_BUFFER_CHARS, aguard_stream, guard_stream
from rai_harness.guardrails.textprep import (
    DEFAULT_MAX_CHARS,
    NOTICE_OVER_MAX_CHARS,
    OverLimit,
    PreparedText,
    check_texts,
    prepare,
)
from rai_harness.guardrails.verdict import GuardResult, apply_redactions

__all__ = ["DEFAULT_MAX_CHARS", "ClassifierSource", "Guard", "GuardResult", "apply_redactions"]


class ClassifierSource(Protocol):
    """Where a guard gets its classifiers: the process-wide pool, or a test double."""

    def classifier(self, spec: ClassifierSpec) -> Classifier:
        """The (shared) classifier described by ``spec``.

        Raises:
            ConfigError: with a key path inside the spec (``backend``, ``options.x``).
        """
        ...


class Guard:
    """Input and output rails with sync, batch, async and streaming checks.

    Args:
        input_rails: Rails run on prompts (:meth:`check_input`).
        output_rails: Rails run on model answers (:meth:`check_output`).
        name: Name shown in records (the policy name when built from one).
        micro_batch: Give each classifier a micro-batcher shared by its rails.
        max_chars: Longest text checked whole (characters); ``None`` for no limit (then
            one huge text can hold the classifiers for minutes).
        over_max_chars: A longer text is ``block``-ed unchecked (notice
            ``over_max_chars``) or checked on its first and last ``max_chars / 2``
            characters and at least flagged (``head_tail``, notice ``truncated``; the
            unchecked middle stays in ``redacted_text`` as it was).

    Every check first refuses anything but ``str`` (``TypeError``), replaces lone
    surrogates and normalises the text for detection (NFKC, invisible and bidi-control
    characters removed), mapping findings back to the caller's offsets: see
    :mod:`~rai_harness.guardrails.textprep`.

    The guard is the one owner of classifier runners: rails given without one (the usual
    case, and every rail of :meth:`from_policy`) get one runner per classifier instance,
    shared by every rail on that instance, and :meth:`close` stops them. A rail bound to a
    runner by its caller keeps it, and the caller closes it.

    Raises:
        ConfigError: when there are no rails, when two rails of one stage share a name, or on a
            bad ``max_chars``.
    """

    def __init__(
        self,
        input_rails: Iterable[Rail] = (),
        output_rails: Iterable[Rail] = (),
        *,
        name: str = "guard",
        micro_batch: bool = True,
        max_chars: int | None = DEFAULT_MAX_CHARS,
        over_max_chars: OverLimit = "block",
    ) -> None:
        if max_chars is not None and max_chars < 2:
            raise ConfigError(f"max_chars must be at least 2, got {max_chars!r}", key_path="max_chars")
        if over_max_chars not in ("block", "head_tail"):
            raise ConfigError(
                f"over_max_chars must be block or head_tail, got {over_max_chars!r}",
                key_path="over_max_chars",
            )
        # Materialised first: a generator or map() checked with all() would be used up, and the
        # guard built with no rails would allow every text.
        stages: dict[str, tuple[Rail, ...]] = {}
        for stage_name, given in (("input_rails", input_rails), ("output_rails", output_rails)):
            if isinstance(given, Rail | str | bytes | Mapping):
                raise TypeError(f"{stage_name} must be a list of Rail objects, e.g. {stage_name}=[rail]")
            stages[stage_name] = tuple(given)
            if not all(isinstance(r, Rail) for r in stages[stage_name]):
                raise TypeError(f"{stage_name} must be a list of Rail objects, e.g. {stage_name}=[rail]")
        input_rails, output_rails = stages["input_rails"], stages["output_rails"]
        if not input_rails and not output_rails:
            raise ConfigError(
                "a guard needs at least one rail (input_rails or output_rails): without any it allows every text"
            )
        self.name = name
        self.max_chars = max_chars
        self.over_max_chars: OverLimit = over_max_chars
        # Copies: the guard binds them to runners it owns, so two guards built from the same
        # Rail objects never share (or close) each other's runners.
        self.input_rails: tuple[Rail, ...] = tuple(rail.for_guard() for rail in input_rails)
        self.output_rails: tuple[Rail, ...] = tuple(rail.for_guard() for rail in output_rails)
        for stage, rails in (("input", self.input_rails), ("output", self.output_rails)):
            seen: set[str] = set()
            for rail in rails:
                if rail.name in seen:
                    raise ConfigError(
                        f"two {stage} rails are named '{rail.name}'; rename one", key_path=stage
                    )
                seen.add(rail.name)
        # One runner per classifier *instance*: rails sharing a model share its micro-batcher,
        # so one worker owns the device and their calls join the same batches. The guard holds
        # the classifiers, so their ids stay unique while it lives.
        self._owned: dict[int, ClassifierRunner] = {}
        for rail in (*self.input_rails, *self.output_rails):
            if rail.has_runner:
                continue
            key = id(rail.classifier)
            if key not in self._owned:
                self._owned[key] = ClassifierRunner(rail.classifier, micro_batch=micro_batch)
            rail.bind(self._owned[key])
        self._closed = False

    def __repr__(self) -> str:
        inputs = [r.name for r in self.input_rails]
        outputs = [r.name for r in self.output_rails]
        return f"Guard(name={self.name!r}, input={inputs}, output={outputs})"

    @classmethod
    def from_policy(
        cls,
        path_or_policy: str | Path | GuardPolicy,
        pool: ClassifierSource | None = None,
        *,
        micro_batch: bool = True,
    ) -> Guard:
        """Build a guard from a policy YAML file (or an already loaded policy).

        Loads each classifier some rail uses, once (two names with identical specs get one
        instance from the pool, and then one runner); checks each rail's labels against its
        loaded classifier, which only the loaded model knows.

        Args:
            path_or_policy: Path of a policy file, or a :class:`GuardPolicy`.
            pool: Where classifiers come from (anything with ``classifier(spec)``);
                default: the process-wide pool, which loads each model once.
            micro_batch: Give each classifier a micro-batcher.

        Raises:
            ConfigError: naming the file, the key path and the fix.
        """
        policy = path_or_policy if isinstance(path_or_policy, GuardPolicy) else load_policy(path_or_policy)
        loaded = _load_classifiers(policy, pool)
        return cls(
            _rails_of(policy, "input", loaded),
            _rails_of(policy, "output", loaded),
            name=policy.name,
            micro_batch=micro_batch,
            max_chars=policy.max_chars,
            over_max_chars=policy.over_max_chars,
        )

    # -- lifecycle ------------------------------------------------------------------------

    def close(self, timeout: float = 2.0) -> bool:
        """Stop the micro-batchers and worker threads this guard started.

        Args:
            timeout: Seconds to wait, per classifier, for a call still running (a rail
                that timed out stops waiting, but the classifier runs on until it returns).

        Returns:
            Whether every worker stopped. ``False``: a classifier call is still running,
            and a process about to exit should leave with ``os._exit`` after flushing its
            output, since finalising the interpreter under native code (BLAS, spaCy) can
            abort it (``rai guard check`` does so).
        """
        self._closed = True
        clean = True
        for runner in self._owned.values():
            clean = runner.close(timeout) and clean
        return clean

    def __enter__(self) -> Guard:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def rails(self, stage: Stage) -> tuple[Rail, ...]:
        """The rails of ``stage``."""
        return self.input_rails if stage == "input" else self.output_rails

    def info(self) -> dict[str, Any]:
        """Rails and classifiers, for a run record."""

        def describe(rail: Rail) -> dict[str, Any]:
            return {
                "name": rail.name,
                "classifier": rail.classifier.name,
                "thresholds": dict(rail.thresholds),
                "action": rail.action,
                "on_error": rail.on_error,
                "timeout_ms": rail.timeout_ms,
            }

        return {
            "name": self.name,
            "max_chars": self.max_chars,
            "over_max_chars": self.over_max_chars,
            "input": [describe(r) for r in self.input_rails],
            "output": [describe(r) for r in self.output_rails],
        }

    # -- sync -----------------------------------------------------------------------------

    def check_input(self, text: str) -> GuardResult:
        """Check one prompt."""
        return self.check_inputs([text])[0]

    def check_inputs(self, texts: Sequence[str]) -> list[GuardResult]:
        """Check prompts with one batched classifier call per rail."""
        return self._check(self.input_rails, "input", texts)

    def check_output(self, text: str, prompt: str | None = None) -> GuardResult:
        """Check one model answer.

        Args:
            text: The answer.
            prompt: The prompt it answers. Accepted for context-aware rails; the built-in
                rails score the answer alone (an answer's toxicity is what the model said).
        """
        return self.check_outputs([text], None if prompt is None else [prompt])[0]

    def check_outputs(self, texts: Sequence[str], prompts: Sequence[str] | None = None) -> list[GuardResult]:
        """Check answers with one batched classifier call per rail (``prompts`` as in :meth:`check_output`)."""
        _check_prompts(texts, prompts)
        return self._check(self.output_rails, "output", texts)

    def _prepare(self, texts: Sequence[str]) -> tuple[list[PreparedText], list[str]]:
        """Prepared texts, and the detection texts of those the classifiers must score."""
        if self._closed:
            # Raised, never left to the rails: an ``on_error: allow`` rail would pass every text.
            raise GuardClosedError(f"guard {self.name!r} is closed; build a new one to check more texts")
        prepared = [
            prepare(t, max_chars=self.max_chars, over_limit=self.over_max_chars) for t in check_texts(texts)
        ]
        return prepared, [p.detection for p in prepared if not p.skip]

    def _check(self, rails: Sequence[Rail], stage: Stage, texts: Sequence[str]) -> list[GuardResult]:
        started = time.perf_counter()
        prepared, texts = self._prepare(texts)
        if not texts:
            return _combine(stage, prepared, rails, [[] for _ in rails], started)
        # Start every rail before waiting on any: rails watch different models (or join the
        # same batcher), so running them concurrently makes the guard's latency the slowest
        # rail's rather than the sum of all of them, which every user request would pay.
        # Rails sharing a classifier share one call (compute once, many consumers): a block
        # rail and a flag rail on the same model cost one forward pass.
        pending: dict[int, PendingCheck] = {}
        for rail in rails:
            if id(rail.runner) not in pending:
                pending[id(rail.runner)] = rail.submit(texts, max_chars=self.max_chars)
        try:
            per_rail = [rail.collect(pending[id(rail.runner)], stage) for rail in rails]
        finally:
            for call in pending.values():
                call.abandon()
        return _combine(stage, prepared, rails, per_rail, started)

    # -- async ----------------------------------------------------------------------------

    async def acheck_input(self, text: str) -> GuardResult:
        """Async :meth:`check_input`; concurrent callers share micro-batches."""
        return (await self.acheck_inputs([text]))[0]

    async def acheck_inputs(self, texts: Sequence[str]) -> list[GuardResult]:
        """Async :meth:`check_inputs`."""
        return await self._acheck(self.input_rails, "input", texts)

    async def acheck_output(self, text: str, prompt: str | None = None) -> GuardResult:
        """Async :meth:`check_output`."""
        return (await self.acheck_outputs([text], None if prompt is None else [prompt]))[0]

    async def acheck_outputs(
        self, texts: Sequence[str], prompts: Sequence[str] | None = None
    ) -> list[GuardResult]:
        """Async :meth:`check_outputs`."""
        _check_prompts(texts, prompts)
        return await self._acheck(self.output_rails, "output", texts)

    async def _acheck(self, rails: Sequence[Rail], stage: Stage, texts: Sequence[str]) -> list[GuardResult]:
        import asyncio

        started = time.perf_counter()
        prepared, texts = self._prepare(texts)
        if not texts:
            return _combine(stage, prepared, rails, [[] for _ in rails], started)
        # Concurrent, one call per classifier, for the same reasons as the sync path.
        pending: dict[int, AsyncPendingCheck] = {}
        for rail in rails:
            if id(rail.runner) not in pending:
                pending[id(rail.runner)] = rail.asubmit(texts, max_chars=self.max_chars)
        try:
            per_rail = await asyncio.gather(
                *(rail.acollect(pending[id(rail.runner)], stage) for rail in rails)
            )
        finally:
            for call in pending.values():
                call.abandon()
        return _combine(stage, prepared, rails, list(per_rail), started)

    # -- streaming ------------------------------------------------------------------------

    @overload
    def stream_output(
        self,
        chunks: Iterable[str],
        prompt: str | None = None,
        *,
        max_buffer_chars: int = ...,
        on_result: Callable[[GuardResult], None] | None = ...,
    ) -> Iterator[str]: ...

    @overload
    def stream_output(
        self,
        chunks: AsyncIterable[str],
        prompt: str | None = None,
        *,
        max_buffer_chars: int = ...,
        on_result: Callable[[GuardResult], None] | None = ...,
    ) -> AsyncIterator[str]: ...

    def stream_output(
        self,
        chunks: Iterable[str] | AsyncIterable[str],
        prompt: str | None = None,
        *,
        max_buffer_chars: int = DEFAULT_MAX_BUFFER_CHARS,
        on_result: Callable[[GuardResult], None] | None = None,
    ) -> Iterator[str] | AsyncIterator[str]:
        """Release a streamed answer sentence by sentence, each checked by the output rails.

        Text is buffered until a sentence ends (``.``, ``!`` or ``?`` followed by
        whitespace, or a newline) or the buffer reaches ``max_buffer_chars``; each sentence
        is checked together with the previously released piece, so a phrase split across a
        sentence boundary is still seen whole. Redact rails redact within the released
        piece. A tail a finding could run on from (a number group, a word at a newline or
        at the cut, a spelled-out "dot doe") is held back, at most
        :data:`~rai_harness.guardrails.streaming.MAX_HELD_TAIL_CHARS` characters, and
        checked again with the text after it, so a card number or address that straddles a
        cut is redacted whole, as the whole-text check would.

        Given an async iterable, returns an async iterator (same as :meth:`astream_output`).

        Raises:
            GuardBlocked: (from the iterator) when a sentence is blocked. Nothing of that
                sentence or after it is released; ``released_text`` holds what was.
        """
        if isinstance(chunks, AsyncIterable):
            return self.astream_output(chunks, prompt, max_buffer_chars=max_buffer_chars, on_result=on_result)

        def check_window(text: str) -> GuardResult:
            return self.check_output(text, prompt)

        return guard_stream(check_window, chunks, max_buffer_chars=max_buffer_chars, on_result=on_result)

    def astream_output(
        self,
        chunks: AsyncIterable[str] | Iterable[str],
        prompt: str | None = None,
        *,
        max_buffer_chars: int = DEFAULT_MAX_BUFFER_CHARS,
        on_result: Callable[[GuardResult], None] | None = None,
    ) -> AsyncIterator[str]:
        """Async :meth:`stream_output` (checks go through the micro-batchers)."""

        async def check_window(text: str) -> GuardResult:
            return await self.acheck_output(text, prompt)

        return aguard_stream(check_window, chunks, max_buffer_chars=max_buffer_chars, on_result=on_result)


def _check_prompts(texts: Sequence[str], prompts: Sequence[str] | None) -> None:
    if prompts is not None:
        prompts = check_texts(prompts, "prompts")
        if len(prompts) != len(check_texts(texts)):
            raise ValueError(f"got {len(prompts)} prompts for {len(texts)} outputs")


def _combine(
    stage: Stage,
    prepared: Sequence[PreparedText],
    rails: Sequence[Rail],
    per_rail: Sequence[Sequence[RailResult]],
    started: float,
) -> list[GuardResult]:
    """One verdict per prepared text from the rails' results on the texts that were scored."""
    latency_ms = (time.perf_counter() - started) * 1000.0
    out = []
    scored = 0
    for p in prepared:
        if p.skip:
            error = f"not checked: {len(p.text)} characters is over the guard's max_chars"
            results = tuple(
                RailResult(rail.name, stage, False, "block", {}, (), error, 0.0) for rail in rails
            )
        else:
            results = tuple(_to_original(p, _usable_redaction(r[scored], len(p.detection))) for r in per_rail)
            scored += 1
        action = strongest(
            [*(r.action for r in results), "flag" if p.notices else "allow"]
            + (["block"] if NOTICE_OVER_MAX_CHARS in p.notices else [])
        )
        if action == "block":
            redacted: str | None = None
        elif action == "redact":
            redacted = apply_redactions(p.text, results)
        else:
            redacted = p.text
        out.append(
            GuardResult(
                action=action,
                text=p.text,
                redacted_text=redacted,
                rails=results,
                latency_ms=latency_ms,
                stage=stage,
                notices=p.notices,
            )
        )
    return out


def _usable_redaction(result: RailResult, n_chars: int) -> RailResult:
    """A redacting ``result`` with only the spans that lie inside the scored text (``n_chars``
    long); with none, a block.

    A classifier's spans are its own (a plugin, a remote model): one that is reversed, negative
    or past the end cuts nothing, and a redact verdict that cuts nothing would let the text
    through as if it were cleaned.
    """
    if result.action != "redact":
        return result
    usable = tuple(s for s in result.spans if 0 <= s.start < s.end <= n_chars)
    if usable == result.spans:
        return result
    if usable:
        return dataclasses.replace(result, spans=usable)
    return dataclasses.replace(
        result,
        action="block",
        spans=(),
        error="triggered, but every span the classifier returned lies outside the text: nothing to redact; blocked",
    )


def _to_original(prepared: PreparedText, result: RailResult) -> RailResult:
    """``result`` with its spans moved from the detection text to the checked text."""
    if prepared.starts is None or not result.spans:
        return result
    return dataclasses.replace(result, spans=tuple(prepared.to_original(s) for s in result.spans))


def _load_classifiers(policy: GuardPolicy, pool: ClassifierSource | None) -> dict[str, Classifier]:
    """The classifiers the policy's rails use, by policy name, each loaded once."""
    if pool is None:
        from rai_harness.classifiers.pool import default_pool

        pool = default_pool()
    used = {rail.classifier for stage in ("input", "output") for rail in getattr(policy, stage)}
    loaded: dict[str, Classifier] = {}
    for name, spec in policy.classifiers.items():
        if name not in used:
            continue
        try:
            loaded[name] = pool.classifier(spec)
        except ConfigError as exc:
            raise _relocated(exc, policy.source, f"classifiers.{name}") from exc
    return loaded


def _rails_of(policy: GuardPolicy, stage: Stage, loaded: dict[str, Classifier]) -> list[Rail]:
    """The rails of one stage, on their loaded classifiers (no runners: the guard gives them)."""
    rails = []
    for i, spec in enumerate(getattr(policy, stage)):
        try:
            rails.append(
                Rail(
                    spec.name,
                    loaded[spec.classifier],
                    action=spec.action,
                    threshold=spec.threshold,
                    labels=spec.labels,
                    thresholds=spec.thresholds,
                    on_error=spec.on_error,
                    timeout_ms=spec.timeout_ms,
                )
            )
        except ConfigError as exc:
            raise _relocated(exc, policy.source, f"{stage}[{i}]") from exc
    return rails


def _relocated(exc: ConfigError, file: str | None, prefix: str) -> ConfigError:
    """The same error, placed under ``prefix`` in ``file``."""
    key_path = f"{prefix}.{exc.key_path}" if exc.key_path else prefix
    return ConfigError(exc.detail, file=file or exc.file, key_path=key_path)
