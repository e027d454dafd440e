"""The guard's verdict on one text (:class:`GuardResult`), and how redactions are applied.

Data only: the guard (:mod:`~rai_harness.guardrails.guard`), the streaming checker
(:mod:`~rai_harness.guardrails.streaming`), the guarded provider and the server all read
verdicts, so the verdict lives below all of them and imports none of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rai_harness.classifiers.base import Span
from rai_harness.guardrails.rails import Action, RailResult, Stage

__all__ = ["GuardResult", "apply_redactions"]


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
        names = ", ".join(repr(r.rail) for r in self.rails) or "none"
        raise KeyError(f"no rail {name!r} in this {self.stage} verdict; its rails: {names}")

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
