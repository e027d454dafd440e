"""A provider wrapped in a guard: what a user of a guarded application would experience.

:class:`GuardedProvider` implements the :class:`~rai_harness.providers.base.Provider`
protocol, so the runner can evaluate a model *behind* its guardrails exactly as it
evaluates a bare one:

* input blocked: the inner provider is not called; the generation is the refusal message
  with ``finish_reason="guard_blocked_input"`` and zero tokens;
* input redacted: the inner provider receives the redacted user messages;
* output blocked: the text becomes the refusal, ``finish_reason="guard_blocked_output"``
  (the inner usage is kept: those tokens were paid for);
* output redacted: the text becomes the redacted answer.

Timing is honest: the guard's time is added to ``latency_s``, since the user waits for
it. ``ttft_s`` grows by the input check; when the output is checked, nothing reaches the
user before the whole answer has been checked, so ``ttft_s`` equals ``latency_s`` (use
:meth:`Guard.stream_output` in an application to release checked sentences early).

The verdicts are kept in :attr:`GuardedProvider.verdicts`, keyed by
``(sample_id, repeat)``, until the runner takes them with :meth:`pop_verdict`.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rai_harness.guardrails.guard import Guard, GuardResult
from rai_harness.guardrails.rails import Action, strongest
from rai_harness.providers.base import Provider
from rai_harness.types import ChatMessage, ChatRequest, Generation, Usage

__all__ = ["DEFAULT_REFUSAL", "GuardVerdict", "GuardedProvider"]

#: What the user sees instead of a blocked prompt's or answer's text.
DEFAULT_REFUSAL = "Sorry, I can't help with that."

FINISH_BLOCKED_INPUT = "guard_blocked_input"
FINISH_BLOCKED_OUTPUT = "guard_blocked_output"


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """The guard's verdicts on one request.

    Attributes:
        inputs: One verdict per user message of the request, in order (empty when input
            checking is off).
        output: Verdict on the answer, or ``None`` when output checking is off or the input
            was blocked (no answer was generated).
        guard_latency_s: Seconds the guard added to the call (input plus output check).
    """

    inputs: tuple[GuardResult, ...]
    output: GuardResult | None
    guard_latency_s: float

    @property
    def action(self) -> Action:
        """The strongest action over every message and the answer."""
        return strongest(r.action for r in (*self.inputs, self.output) if r is not None)

    @property
    def input_blocked(self) -> bool:
        """Whether any user message was blocked (then the model was not called)."""
        return any(r.blocked for r in self.inputs)

    def summary(self) -> dict[str, Any]:
        """JSON-able summary for a run record (no original text)."""
        return {
            "action": self.action,
            "guard_latency_s": round(self.guard_latency_s, 6),
            "inputs": [r.to_dict() for r in self.inputs],
            "output": None if self.output is None else self.output.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class _CheckedRequest:
    """The verdicts on a request's user messages and the request to send on."""

    results: tuple[GuardResult, ...]
    request: ChatRequest
    latency_s: float


class GuardedProvider:
    """A :class:`~rai_harness.providers.base.Provider` whose prompts and answers pass a guard.

    Args:
        inner: The provider to guard.
        guard: The guard (not closed by :meth:`aclose`; it may be shared).
        check_input: Run the input rails on every user message of the request.
        check_output: Run the output rails on the answer.
        refusal: Text returned in place of blocked content.
    """

    def __init__(
        self,
        inner: Provider,
        guard: Guard,
        *,
        check_input: bool = True,
        check_output: bool = True,
        refusal: str = DEFAULT_REFUSAL,
    ) -> None:
        self.inner = inner
        self.guard = guard
        self.check_input = check_input
        self.check_output = check_output
        self.refusal = refusal
        #: Verdicts by (sample_id, repeat), until taken with :meth:`pop_verdict`.
        self.verdicts: dict[tuple[str, int], GuardVerdict] = {}
        self.last_verdict: GuardVerdict | None = None
        self._lock = threading.Lock()

    def pop_verdict(self, sample_id: str, repeat: int = 0) -> GuardVerdict | None:
        """Take (and forget) the verdict of a request, so a long run does not hoard them."""
        with self._lock:
            return self.verdicts.pop((sample_id, repeat), None)

    def _remember(self, request: ChatRequest, verdict: GuardVerdict) -> None:
        with self._lock:
            self.verdicts[(request.sample_id, request.repeat)] = verdict
            self.last_verdict = verdict

    async def generate(self, request: ChatRequest) -> Generation:
        """Check the prompt, call the inner provider, check the answer.

        Raises:
            ProviderError: whatever the inner provider raised (the runner retries it).
        """
        checked = (
            await self._check_request(request) if self.check_input else _CheckedRequest((), request, 0.0)
        )
        inputs, input_s = checked.results, checked.latency_s
        if any(r.blocked for r in inputs):
            verdict = GuardVerdict(inputs, None, input_s)
            self._remember(request, verdict)
            return Generation(
                text=self.refusal,
                usage=Usage(0, 0),
                latency_s=input_s,
                ttft_s=input_s,
                finish_reason=FINISH_BLOCKED_INPUT,
                model=None,
                streamed=False,
                guard=verdict.summary(),
            )

        generation = await self.inner.generate(checked.request)
        if not self.check_output:
            verdict = GuardVerdict(inputs, None, input_s)
            self._remember(request, verdict)
            return dataclasses.replace(
                generation,
                guard=verdict.summary(),
                latency_s=generation.latency_s + input_s,
                ttft_s=None if generation.ttft_s is None else generation.ttft_s + input_s,
            )

        started = time.perf_counter()
        output = await self.guard.acheck_output(generation.text, checked.request.prompt_text)
        output_s = time.perf_counter() - started
        verdict = GuardVerdict(inputs, output, input_s + output_s)
        self._remember(request, verdict)
        total_s = generation.latency_s + input_s + output_s
        # redacted_text is None exactly when the answer is blocked (nothing of it is returned).
        text = self.refusal if output.redacted_text is None else output.redacted_text
        finish = FINISH_BLOCKED_OUTPUT if output.blocked else generation.finish_reason
        # The answer is released only once checked, so the first token the user sees arrives
        # at the very end: ttft equals the total latency (honest, if unflattering).
        return dataclasses.replace(
            generation,
            text=text,
            finish_reason=finish,
            latency_s=total_s,
            ttft_s=total_s,
            guard=verdict.summary(),
        )

    async def _check_request(self, request: ChatRequest) -> _CheckedRequest:
        """Check every user message in one batch; redact them in the request sent on."""
        positions = [i for i, m in enumerate(request.messages) if m.role == "user"]
        if not positions:
            return _CheckedRequest((), request, 0.0)
        started = time.perf_counter()
        results = tuple(await self.guard.acheck_inputs([request.messages[i].content for i in positions]))
        latency_s = time.perf_counter() - started
        if any(r.blocked for r in results) or all(r.redacted_text == r.text for r in results):
            return _CheckedRequest(results, request, latency_s)
        messages = list(request.messages)
        for i, result in zip(positions, results, strict=True):
            if result.redacted_text is None:  # blocked: returned above; never sent on
                return _CheckedRequest(results, request, latency_s)
            messages[i] = ChatMessage("user", result.redacted_text)
        return _CheckedRequest(results, dataclasses.replace(request, messages=tuple(messages)), latency_s)

    async def aclose(self) -> None:
        """Close the inner provider (the guard is left open: it may be shared)."""
        await self.inner.aclose()

    async def load(self) -> None:
        """Load the inner provider's model, if it has one, before any call is timed."""
        load = getattr(self.inner, "load", None)
        if callable(load):
            result = load()
            if inspect.isawaitable(result):
                await result

    async def describe(self) -> dict[str, Any]:
        """The inner provider's description plus what guards it (for the run record)."""
        inner: Any = {}
        describe = getattr(self.inner, "describe", None)
        if callable(describe):
            inner = describe()
            if inspect.isawaitable(inner):
                inner = await inner
        return {**dict(inner or {}), "guarded_by": dict(self.info())}

    def info(self) -> Mapping[str, Any]:
        """What guards this provider (for a run record)."""
        return {
            "guard": self.guard.info(),
            "check_input": self.check_input,
            "check_output": self.check_output,
        }
