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

Each verdict travels on its :class:`~rai_harness.types.Generation` (``generation.guard``,
the :meth:`GuardVerdict.summary`); the provider keeps none of them, so a long run holds
no per-call state.

Evaluation mode (``fail_on_rail_error=True``, what ``rai run`` uses): a rail whose
classifier failed is never turned into the rail's ``on_error`` action (a silent allow or
block that would make the safety numbers depend on how busy the machine was). The call
fails instead with :class:`GuardRailError` (``error_type`` ``guard_error``, or
``guard_timeout`` when the rail gave up waiting), which the run records as an error on
the sample. ``rai run`` also builds the guard with the rails' wall-clock timeouts lifted
above the call's own ``timeout_s`` (see ``run.execute``), so a slow classifier only makes
the call slower; ``policy_timeouts_ms`` then lets the verdict say which rails were slower
than the policy's ``timeout_ms`` (``slow_rails``: in production they would have given up).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rai_harness.errors import ProviderError
from rai_harness.guardrails.guard import Guard, GuardResult
from rai_harness.guardrails.rails import Action, RailResult, strongest, timed_chars, timeout_allowances
from rai_harness.providers.base import BaseProvider, Provider
from rai_harness.types import ChatMessage, ChatRequest, Generation, Usage

__all__ = ["DEFAULT_REFUSAL", "GuardRailError", "GuardVerdict", "GuardedProvider"]

#: What the user sees instead of a blocked prompt's or answer's text.
DEFAULT_REFUSAL = "Sorry, I can't help with that."

FINISH_BLOCKED_INPUT = "guard_blocked_input"
FINISH_BLOCKED_OUTPUT = "guard_blocked_output"


#: ``error_type`` of a call failed because a rail's classifier failed (evaluation mode).
GUARD_ERROR = "guard_error"
#: ``error_type`` of a call failed because a rail gave up waiting for its classifier.
GUARD_TIMEOUT = "guard_timeout"


class GuardRailError(ProviderError):
    """A rail's classifier failed or timed out while the guard ran in evaluation mode.

    Not retryable: the inner model already answered (a retry would pay for it again), and
    a classifier that raised usually raises again. ``rails`` names the failed rails as
    ``"<stage>:<rail>"``.
    """

    def __init__(self, failed: Sequence[RailResult]) -> None:
        timed_out = any(_is_timeout(r) for r in failed)
        detail = "; ".join(f"{r.stage} rail '{r.rail}': {r.error}" for r in failed)
        super().__init__(
            f"guard rail failed (recorded as an error, not as allow or block): {detail}",
            retryable=False,
            error_type=GUARD_TIMEOUT if timed_out else GUARD_ERROR,
        )
        self.rails = tuple(f"{r.stage}:{r.rail}" for r in failed)


def _is_timeout(result: RailResult) -> bool:
    # The rails word a timeout as "timed out after N ms" (rails.Rail._timeout_message).
    return bool(result.error) and str(result.error).startswith("timed out")


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """The guard's verdicts on one request.

    Attributes:
        inputs: One verdict per user message of the request, in order (empty when input
            checking is off).
        output: Verdict on the answer, or ``None`` when output checking is off or the input
            was blocked (no answer was generated).
        guard_latency_s: Seconds the guard added to the call (input plus output check).
        slow_rails: Rails (``"<stage>:<rail>"``) slower than the policy's ``timeout_ms``
            while running without a wall-clock timeout (evaluation mode): in production
            they would have given up and applied ``on_error``.
    """

    inputs: tuple[GuardResult, ...]
    output: GuardResult | None
    guard_latency_s: float
    slow_rails: tuple[str, ...] = ()

    @property
    def rail_results(self) -> tuple[RailResult, ...]:
        """Every rail result, inputs first."""
        results = (*self.inputs, *((self.output,) if self.output is not None else ()))
        return tuple(rail for result in results for rail in result.rails)

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
        rails = self.rail_results
        return {
            "action": self.action,
            "guard_latency_s": round(self.guard_latency_s, 6),
            "rail_errors": sum(1 for r in rails if r.error is not None and not _is_timeout(r)),
            "rail_timeouts": sum(1 for r in rails if _is_timeout(r)),
            "slow_rails": list(self.slow_rails),
            "inputs": [r.to_dict() for r in self.inputs],
            "output": None if self.output is None else self.output.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class _CheckedRequest:
    """The verdicts on a request's user messages and the request to send on."""

    results: tuple[GuardResult, ...]
    request: ChatRequest
    latency_s: float


class GuardedProvider(BaseProvider):
    """A :class:`~rai_harness.providers.base.Provider` whose prompts and answers pass a guard.

    Args:
        inner: The provider to guard.
        guard: The guard.
        check_input: Run the input rails on every user message of the request.
        check_output: Run the output rails on the answer.
        refusal: Text returned in place of blocked content.
        fail_on_rail_error: Evaluation mode: a failed or timed-out rail fails the call with
            :class:`GuardRailError` instead of applying its ``on_error`` action.
        policy_timeouts_ms: ``"<stage>:<rail>"`` -> the policy's ``timeout_ms``, when the
            guard was built with longer timeouts (evaluation mode); rails slower than
            these are listed in the verdict's ``slow_rails``.
        owns_guard: Close the guard in :meth:`aclose` (when it was built for this provider
            alone; a shared guard is left open).
    """

    def __init__(
        self,
        inner: Provider,
        guard: Guard,
        *,
        check_input: bool = True,
        check_output: bool = True,
        refusal: str = DEFAULT_REFUSAL,
        fail_on_rail_error: bool = False,
        policy_timeouts_ms: Mapping[str, float] | None = None,
        owns_guard: bool = False,
    ) -> None:
        self.inner = inner
        self.guard = guard
        self.check_input = check_input
        self.check_output = check_output
        self.refusal = refusal
        self.fail_on_rail_error = fail_on_rail_error
        self.policy_timeouts_ms: dict[str, float] = dict(policy_timeouts_ms or {})
        self.owns_guard = owns_guard

    def _verdict(
        self, inputs: tuple[GuardResult, ...], output: GuardResult | None, latency_s: float
    ) -> GuardVerdict:
        """Build the verdict; in evaluation mode, fail the call on any failed rail."""
        verdict = GuardVerdict(inputs, output, latency_s, self._slow_rails(inputs, output))
        if self.fail_on_rail_error:
            failed = [r for r in verdict.rail_results if r.error is not None]
            if failed:
                raise GuardRailError(failed)
        return verdict

    def _slow_rails(self, inputs: tuple[GuardResult, ...], output: GuardResult | None) -> tuple[str, ...]:
        if not self.policy_timeouts_ms:
            return ()
        slow: list[str] = []
        for stage, results in (("input", inputs), ("output", (output,) if output is not None else ())):
            if not results:
                continue
            # As the rails count them: one timeout per started 64 texts or 2,000 characters.
            allowances = timeout_allowances(
                len(results), timed_chars([r.text for r in results], self.guard.max_chars)
            )
            for rail in results[0].rails:
                key = f"{stage}:{rail.rail}"
                limit = self.policy_timeouts_ms.get(key)
                if limit is not None and rail.latency_ms > limit * allowances:
                    slow.append(key)
        return tuple(slow)

    async def generate(self, request: ChatRequest) -> Generation:
        """Check the prompt, call the inner provider, check the answer.

        Raises:
            ProviderError: whatever the inner provider raised (the runner retries it).
            GuardRailError: in evaluation mode, when a rail failed.
        """
        checked = (
            await self._check_request(request) if self.check_input else _CheckedRequest((), request, 0.0)
        )
        inputs, input_s = checked.results, checked.latency_s
        # In evaluation mode a failed input rail fails the call here, before the model is paid for.
        verdict = self._verdict(inputs, None, input_s)
        if any(r.blocked for r in inputs):
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
            return dataclasses.replace(
                generation,
                guard=verdict.summary(),
                latency_s=generation.latency_s + input_s,
                ttft_s=None if generation.ttft_s is None else generation.ttft_s + input_s,
            )

        started = time.perf_counter()
        output = await self.guard.acheck_output(generation.text, checked.request.prompt_text)
        output_s = time.perf_counter() - started
        verdict = self._verdict(inputs, output, input_s + output_s)
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
        """Close the inner provider, and the guard when this provider owns it."""
        try:
            await self.inner.aclose()
        finally:
            if self.owns_guard:
                # Guard.close joins its worker threads (bounded): keep the event loop free.
                await asyncio.to_thread(self.guard.close)

    async def load(self) -> None:
        """Load the inner provider's model, if it has one, before any call is timed."""
        await self.inner.load()

    def describe(self) -> dict[str, Any]:
        """The inner provider's description plus what guards it (for the run record)."""
        return {**dict(self.inner.describe() or {}), "guarded_by": dict(self.info())}

    def info(self) -> Mapping[str, Any]:
        """What guards this provider (for a run record)."""
        return {
            "guard": self.guard.info(),
            "check_input": self.check_input,
            "check_output": self.check_output,
            "rail_errors": "fail the call" if self.fail_on_rail_error else "on_error of each rail",
            "policy_timeouts_ms": dict(self.policy_timeouts_ms),
        }
