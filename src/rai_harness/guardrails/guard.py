"""The guard: input rails on the prompt, output rails on the answer, one verdict per text.

Every public check has a batch form (one classifier call per rail for the whole list),
and the single-text forms are wrappers over it. Async forms go through each classifier's
micro-batcher so concurrent requests share forward passes. See
:mod:`rai_harness.guardrails.streaming` for checking a streamed answer sentence by
sentence.

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
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

from rai_harness.classifiers.base import Span
from rai_harness.errors import ConfigError
from rai_harness.guardrails import streaming
from rai_harness.guardrails.rails import (
    Action,
    AsyncPendingCheck,
    ClassifierRunner,
    PendingCheck,
    Rail,
    RailResult,
    Stage,
    strongest,
)
from rai_harness.guardrails.textprep import (
    NOTICE_OVER_MAX_CHARS,
    OverLimit,
    PreparedText,
    check_texts,
    prepare,
)

if TYPE_CHECKING:
    from rai_harness.guardrails.policy import ClassifierSource, GuardPolicy

__all__ = ["DEFAULT_MAX_CHARS", "Guard", "GuardResult", "apply_redactions"]

#: Longest text a guard checks whole by default, characters (about 5,000 tokens of
#: English). Longer texts are blocked unchecked, or checked on their head and tail
#: (``over_max_chars``): the work per text must be bounded, or one huge text keeps the
#: classifiers busy for minutes and every other caller's check times out behind it.
DEFAULT_MAX_CHARS = 20_000


@dataclass(frozen=True, slots=True)
class GuardResult:
    """The guard's verdict on one text.

    Attributes:
        action: The strongest action any rail took: ``block`` > ``redact`` > ``flag`` > ``allow``.
        text: The text that was checked: the caller's text, with lone surrogates replaced
            by U+FFFD (same offsets; see :mod:`~rai_harness.guardrails.textprep`).
        redacted_text: What may be passed on. ``None`` when the verdict is ``block`` (no
            part of a blocked text is ever handed back, so a caller that forgets to look at
            ``blocked`` cannot forward it); for ``redact``, ``text`` with every redact
            rail's findings replaced by ``<LABEL>``; for ``flag`` and ``allow``, ``text``.
        rails: One result per rail of the stage, in the order the rails were given. Span
            offsets index ``text`` (findings in the normalised text are mapped back).
        latency_ms: Wall time of the guard call in milliseconds (rails run concurrently, so
            this is about the slowest rail; shared by every text of a batch call).
        stage: ``input`` or ``output``.
        notices: What the guard itself noticed, independent of the rails:
            ``invalid_unicode`` (surrogates replaced; flagged), ``truncated`` (longer than
            ``max_chars``, only head and tail checked; flagged), ``over_max_chars``
            (longer than ``max_chars``, blocked unchecked).
    """

    action: Action
    text: str
    redacted_text: str | None
    rails: tuple[RailResult, ...]
    latency_ms: float
    stage: Stage = "input"
    notices: tuple[str, ...] = ()

    @property
    def blocked(self) -> bool:
        """Whether the text must not pass."""
        return self.action == "block"

    @property
    def allowed(self) -> bool:
        """Whether the text may pass (as ``redacted_text``): flagged and redacted texts may."""
        return self.action != "block"

    @property
    def flagged(self) -> bool:
        """Whether any rail triggered at all (including block and redact), or the guard
        noticed something about the text itself (see ``notices``)."""
        return bool(self.notices) or any(r.triggered for r in self.rails)

    @property
    def errors(self) -> tuple[RailResult, ...]:
        """Rails whose classifier failed or timed out (their ``on_error`` was applied)."""
        return tuple(r for r in self.rails if r.error is not None)

    @property
    def findings(self) -> tuple[Span, ...]:
        """Every span any rail reported, in rail order."""
        return tuple(s for r in self.rails for s in r.spans)

    def rail(self, name: str) -> RailResult:
        """The result of the rail called ``name``."""
        for result in self.rails:
            if result.rail == name:
                return result
        raise KeyError(name)

    def to_dict(self, *, include_text: bool = False) -> dict[str, Any]:
        """JSON-able verdict: action, redacted text (``None`` when blocked), notices,
        per-rail scores and findings.

        Args:
            include_text: Also include the original text. Off by default: it may hold the
                very personal data the redact rails removed, or what a block rail stopped.
        """
        out: dict[str, Any] = {
            "stage": self.stage,
            "action": self.action,
            "blocked": self.blocked,
            "redacted_text": self.redacted_text,
            "notices": list(self.notices),
            "latency_ms": round(self.latency_ms, 3),
            "rails": [r.to_dict() for r in self.rails],
        }
        if include_text:
            out["text"] = self.text
        return out


def apply_redactions(text: str, rails: Iterable[RailResult]) -> str:
    """Replace, in one pass over the original text, the findings of every rail that redacted.

    All spans are applied to the original offsets at once (overlaps merged by
    :func:`~rai_harness.classifiers.redact.redact`), so one rail's replacement can never
    shift another rail's offsets.
    """
    spans = [s for r in rails if r.action == "redact" for s in r.spans]
    if not spans:
        return text
    from rai_harness.classifiers.redact import redact

    return redact(text, spans)


class Guard:
    """Input and output rails with sync, batch, async and streaming checks.

    Args:
        input_rails: Rails run on prompts (:meth:`check_input`).
        output_rails: Rails run on model answers (:meth:`check_output`).
        name: Name shown in records (the policy name when built from one).
        micro_batch: Give each classifier a micro-batcher shared by its rails.
        owned_runners: Runners bound to the rails by whoever built them, which this guard
            should close with itself (:func:`~rai_harness.guardrails.policy.build_guard` uses it).
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

    Raises:
        ConfigError: when two rails of one stage share a name, or on a bad ``max_chars``.
    """

    def __init__(
        self,
        input_rails: Sequence[Rail] = (),
        output_rails: Sequence[Rail] = (),
        *,
        name: str = "guard",
        micro_batch: bool = True,
        owned_runners: Sequence[ClassifierRunner] = (),
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
        self.name = name
        self.max_chars = max_chars
        self.over_max_chars: OverLimit = over_max_chars
        self.input_rails: tuple[Rail, ...] = tuple(input_rails)
        self.output_rails: tuple[Rail, ...] = tuple(output_rails)
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
        shared: dict[int, ClassifierRunner] = {}
        self._owned: dict[int, ClassifierRunner] = {id(r): r for r in owned_runners}
        for rail in (*self.input_rails, *self.output_rails):
            if rail.has_runner:
                continue
            key = id(rail.classifier)
            if key not in shared:
                shared[key] = ClassifierRunner(rail.classifier, micro_batch=micro_batch)
                self._owned[id(shared[key])] = shared[key]
            rail.bind(shared[key])

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

        Args:
            path_or_policy: Path of a policy file, or a :class:`GuardPolicy`.
            pool: Where classifiers come from (anything with ``get(spec) -> Classifier``);
                default: the process-wide pool, which loads each model once.
            micro_batch: Give each classifier a micro-batcher.

        Raises:
            ConfigError: naming the file, the key path and the fix.
        """
        from rai_harness.guardrails.policy import build_guard, load_policy

        policy = path_or_policy if not isinstance(path_or_policy, str | Path) else load_policy(path_or_policy)
        return build_guard(policy, pool=pool, micro_batch=micro_batch)

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
                pending[id(rail.runner)] = rail.submit(texts)
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
                pending[id(rail.runner)] = rail.asubmit(texts)
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
        max_buffer_chars: int = streaming.DEFAULT_MAX_BUFFER_CHARS,
        on_result: Callable[[GuardResult], None] | None = None,
    ) -> Iterator[str] | AsyncIterator[str]:
        """Release a streamed answer sentence by sentence, each checked by the output rails.

        Text is buffered until a sentence ends (``.``, ``!`` or ``?`` followed by
        whitespace, or a newline) or the buffer reaches ``max_buffer_chars``; each sentence
        is checked together with the previous one, so a phrase split across a sentence
        boundary is still seen whole. Redact rails redact within the released sentence.

        Given an async iterable, returns an async iterator (same as :meth:`astream_output`).

        Raises:
            GuardBlocked: (from the iterator) when a sentence is blocked. Nothing of that
                sentence or after it is released; ``released_text`` holds what was.
        """
        if isinstance(chunks, AsyncIterable):
            return streaming.aguard_stream(
                self, chunks, prompt, max_buffer_chars=max_buffer_chars, on_result=on_result
            )
        return streaming.guard_stream(
            self, chunks, prompt, max_buffer_chars=max_buffer_chars, on_result=on_result
        )

    def astream_output(
        self,
        chunks: AsyncIterable[str] | Iterable[str],
        prompt: str | None = None,
        *,
        max_buffer_chars: int = streaming.DEFAULT_MAX_BUFFER_CHARS,
        on_result: Callable[[GuardResult], None] | None = None,
    ) -> AsyncIterator[str]:
        """Async :meth:`stream_output` (checks go through the micro-batchers)."""
        return streaming.aguard_stream(
            self, chunks, prompt, max_buffer_chars=max_buffer_chars, on_result=on_result
        )


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
            results = tuple(_to_original(p, r[scored]) for r in per_rail)
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


def _to_original(prepared: PreparedText, result: RailResult) -> RailResult:
    """``result`` with its spans moved from the detection text to the checked text."""
    if prepared.starts is None or not result.spans:
        return result
    return dataclasses.replace(result, spans=tuple(prepared.to_original(s) for s in result.spans))
