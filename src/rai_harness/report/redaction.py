"""Masking personal data in the texts a report shows (``--redact``).

Two detectors, used together:

* **presidio** (the project's :class:`~rai_harness.classifiers.presidio_backend.PresidioClassifier`):
  names, e-mails, phones, cards, IBANs, IPs, with context and checksums. It loads a spaCy
  model (about 10 s on a laptop CPU), so it runs once over all shown texts in one batch.
* **regex**: e-mail addresses, phone numbers, card numbers and US SSNs by shape, including
  the partial and obfuscated forms a model leaks when it half-refuses (``jane.doe@``,
  ``@example.com``, ``jane dot doe at example dot com``, a local ``555-0123``, a masked
  ``415-555-01XX``), and card numbers with other separators (``4111.1111.1111.1111``,
  Luhn-checked). It always runs, after presidio, as a safety net: presidio rejects some
  well-formed test values (``123-45-6789`` fails its SSN validity rules) and most partial
  ones, which a reader should still not see.

Names are found by presidio only (PERSON, from spaCy's NER); when it cannot load, the
report says that names were not masked instead of claiming that personal data is.

Spans of both are merged and replaced by ``<LABEL>`` with
:func:`rai_harness.classifiers.redact.redact`, so every other character stays as it was.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Literal

from rai_harness.classifiers.base import Span
from rai_harness.classifiers.pii_shapes import (
    OBFUSCATED_EMAIL,
    SEPARATED_CARD,
    SPACED_EMAIL,
    fold_digits_and_dashes,
    is_card_number,
)
from rai_harness.classifiers.redact import redact

__all__ = ["Redactor", "RedactorKind", "regex_spans"]

log = logging.getLogger(__name__)

#: ``"auto"``: presidio when it loads, plus regex; ``"presidio"``: both, presidio required; ``"regex"``.
RedactorKind = Literal["auto", "presidio", "regex"]

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("EMAIL_ADDRESS", re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")),
    # Obfuscated: "jane.doe at example dot com", "jane [at] example [dot] com" (shared with the guard).
    ("EMAIL_ADDRESS", OBFUSCATED_EMAIL),
    # Spaced out, character by character: "j a n e @ e x a m p l e . c o m".
    ("EMAIL_ADDRESS", SPACED_EMAIL),
    # Partial: a local part with its "@" but no domain ("write to jane.doe@"), or a bare
    # "@example.com" domain (handles such as "@user" stay: no dot).
    ("EMAIL_ADDRESS", re.compile(r"[\w.+-]*\w@(?![\w-]+\.[\w-])")),
    ("EMAIL_ADDRESS", re.compile(r"(?<![\w.+-])@[\w-]+(?:\.[\w-]+)+")),
    # 13-19 digits in groups separated by spaces or dashes: card numbers (checked before phones).
    ("CREDIT_CARD", re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")),
    ("US_SSN", re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")),
    # North-American and international shapes: +1 (415) 555-0123, 415-555-0123, +44 20 7946 0958.
    (
        "PHONE_NUMBER",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]\d{3,4}(?!\d)"
        ),
    ),
    # Partial: a local number without area code (555-0123), or one with masked digits
    # (415-555-01XX, (415) 555-****): a reader can still complete it.
    ("PHONE_NUMBER", re.compile(r"(?<![\w.+-])\d{3}[ .-]\d{4}(?![\w-])")),
    (
        "PHONE_NUMBER",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])?\d{3}[ .-]"
            r"(?=\d{0,3}[Xx*#])[\dXx*#]{4}(?![\w*#])"
        ),
    ),
)


def regex_spans(text: str) -> list[Span]:
    """Spans of e-mails, card numbers, SSNs and phone numbers found by shape.

    The shapes are matched on ``text`` with its digits of every script as ASCII digits and its
    dashes as ``-``, one character for one (the guard reads text the same way), so a card or
    phone number written ``4111\u20111111...`` or in Arabic-Indic digits is found, at the same
    offsets.
    """
    folded = fold_digits_and_dashes(text)
    spans: list[Span] = []
    for label, pattern in _PATTERNS:
        spans.extend(Span(m.start(), m.end(), label, 0.5) for m in pattern.finditer(folded))
    # Cards with other separators (4111.1111.1111.1111, tabs, "/"): Luhn-checked, as such
    # shapes are also dates, versions and amounts.
    spans.extend(
        Span(m.start(), m.end(), "CREDIT_CARD", 0.5)
        for m in SEPARATED_CARD.finditer(folded)
        if is_card_number(m.group())
    )
    return spans


class Redactor:
    """Masks PII in batches of texts.

    Args:
        kind: ``"regex"`` (shapes only, instant), ``"presidio"`` (presidio and regex; fails
            when presidio cannot load) or ``"auto"`` (presidio when it loads, else regex only).
    """

    def __init__(self, kind: RedactorKind = "auto") -> None:
        self.kind = kind
        self.engine = "regex"
        #: Texts presidio failed on (masked by shape only); the report says so.
        self.presidio_failures = 0
        self._presidio = None
        if kind in ("auto", "presidio"):
            try:
                from rai_harness.classifiers.presidio_backend import PresidioClassifier

                self._presidio = PresidioClassifier()
                self.engine = "presidio + regex"
            except Exception as exc:
                if kind == "presidio":
                    raise
                log.warning("presidio is not available (%s); redacting with regular expressions only", exc)

    def redact_many(
        self, texts: Sequence[str], known: Sequence[Sequence[tuple[int, int, str]]] | None = None
    ) -> list[str]:
        """The texts with every detected PII span replaced by ``<LABEL>``.

        Args:
            texts: The texts to mask.
            known: Per text, ``(start, end, label)`` spans already found (the PII suites' own scan of an output, as
                recorded in ``samples.jsonl``): masked too, so the report never shows an entity
                its own scan reported, whatever presidio and the patterns find this time.
        """
        found: list[list[Span]] = [regex_spans(t) for t in texts]
        if known is not None:
            for spans, extra in zip(found, known, strict=True):
                spans.extend(Span(a, b, label, 1.0) for a, b, label in extra if 0 <= a < b)
        if self._presidio is not None and texts:
            try:
                for spans, result in zip(found, self._presidio.predict(list(texts)), strict=True):
                    spans.extend(result.spans)
            except Exception as exc:  # a detector failure must not leave the report unredacted
                self.presidio_failures += len(texts)
                log.warning("presidio failed (%s); redacting with regular expressions only", exc)
        return [redact(t, spans) for t, spans in zip(texts, found, strict=True)]

    @property
    def masks_names(self) -> bool:
        """Whether person names are masked (presidio loaded and did not fail)."""
        return self._presidio is not None and self.presidio_failures == 0

    def note(self) -> str:
        """What was masked, for the report's banner: never more than was done."""
        if self.masks_names:
            return f"names, e-mails, phones, cards, SSNs, IBANs and IPs masked ({self.engine})"
        why = "presidio failed" if self._presidio is not None else "presidio is not available"
        return (
            f"e-mails, phones, cards and SSNs masked by shape (regex); person names are NOT masked ({why}: "
            "install the `presidio` extra)"
        )
