"""Replace labelled character spans of a text, leaving every other character unchanged.

:func:`redact` is pure: it takes the original text and the spans a span-level classifier
(e.g. :class:`~rai_harness.classifiers.presidio_backend.PresidioClassifier`) found in it,
and rewrites all spans in one left-to-right pass over the *original* offsets, so the
replacement of one span can never shift or corrupt another. Overlapping spans are merged
first (``"John Smith"`` as PERSON inside ``"John Smith <john@x.org>"`` as something
longer becomes one replacement).

Styles:

* ``label``: ``<EMAIL_ADDRESS>``: what was there, not its value (the default).
* ``mask``: the same number of ``*`` characters, so offsets and layout survive.
* ``hash``: ``<EMAIL_ADDRESS:1f2e3d4c5b6a>``, a keyed digest of the value, so equal values
  stay linkable across texts (the same customer's e-mail in two turns) without showing
  them. Without ``key`` this is a plain SHA-256 prefix, which can be reversed by trying
  candidates for low-entropy values (SSNs, phone numbers): pass a secret ``key``
  (HMAC-SHA256) when that matters.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Literal

from rai_harness.classifiers.base import Span

__all__ = ["RedactStyle", "merge_spans", "redact"]

RedactStyle = Literal["label", "mask", "hash"]

#: Hex digits of the digest kept by the ``hash`` style (48 bits: enough to link values
#: within a report, short enough to read).
_HASH_HEX_CHARS = 12


def merge_spans(spans: Iterable[Span], *, text_length: int | None = None) -> list[Span]:
    """Merge overlapping spans into disjoint spans sorted by start.

    Two spans overlap when they share at least one character; spans that merely touch
    (``a.end == b.start``) stay separate, so two adjacent findings keep their own labels.
    A merged span takes the label of its highest-scoring member (ties: the longer, then
    the earlier one) and that member's score. Empty spans are dropped, and spans are
    clipped to ``[0, text_length]`` when ``text_length`` is given.

    Args:
        spans: Spans in any order.
        text_length: Length of the text the spans index into, to clip stray offsets.

    Returns:
        Disjoint spans, sorted by ``start``.
    """
    clipped: list[Span] = []
    for s in spans:
        start, end = max(0, s.start), s.end
        if text_length is not None:
            end = min(end, text_length)
        if end > start:
            clipped.append(s if (start, end) == (s.start, s.end) else Span(start, end, s.label, s.score))
    clipped.sort(key=lambda s: (s.start, -s.end))

    merged: list[Span] = []
    group: list[Span] = []
    group_end = 0
    for s in clipped:
        if group and s.start < group_end:  # shares a character with the current group
            group.append(s)
            group_end = max(group_end, s.end)
            continue
        if group:
            merged.append(_merge_group(group, group_end))
        group, group_end = [s], s.end
    if group:
        merged.append(_merge_group(group, group_end))
    return merged


def _merge_group(group: list[Span], end: int) -> Span:
    best = max(group, key=lambda s: (s.score, s.end - s.start, -s.start))
    return Span(start=group[0].start, end=end, label=best.label, score=best.score)


def redact(
    text: str,
    spans: Iterable[Span],
    style: RedactStyle = "label",
    *,
    min_score: float = 0.0,
    mask_char: str = "*",
    key: bytes | None = None,
) -> str:
    """Replace every span of ``text`` according to ``style``; all other characters stay.

    Args:
        text: The original text the spans index into.
        spans: Findings (``text[start:end]`` each), in any order, possibly overlapping.
        style: ``label`` (``<LABEL>``), ``mask`` (``mask_char`` repeated over the span) or
            ``hash`` (``<LABEL:digest>``); see the module docstring.
        min_score: Ignore spans scoring below this (0.0 keeps all; rails usually pass
            only the spans that crossed their threshold and leave this at 0).
        mask_char: The single character used by the ``mask`` style.
        key: Secret for the ``hash`` style (HMAC-SHA256); plain SHA-256 when ``None``.

    Returns:
        The redacted text.

    Raises:
        ValueError: on an unknown style or a ``mask_char`` that is not one character.
    """
    if style not in ("label", "mask", "hash"):
        raise ValueError(f"unknown redaction style {style!r}; use 'label', 'mask' or 'hash'")
    if len(mask_char) != 1:
        raise ValueError(f"mask_char must be one character, got {mask_char!r}")
    kept = (s for s in spans if s.score >= min_score)
    pieces: list[str] = []
    cursor = 0
    for s in merge_spans(kept, text_length=len(text)):
        pieces.append(text[cursor : s.start])
        pieces.append(_replacement(text[s.start : s.end], s.label, style, mask_char, key))
        cursor = s.end
    pieces.append(text[cursor:])
    return "".join(pieces)


def _replacement(value: str, label: str, style: RedactStyle, mask_char: str, key: bytes | None) -> str:
    if style == "label":
        return f"<{label}>"
    if style == "mask":
        return mask_char * len(value)
    data = value.encode("utf-8", "surrogatepass")
    digest = (
        hmac.new(key, data, hashlib.sha256).hexdigest()
        if key is not None
        else hashlib.sha256(data).hexdigest()
    )
    return f"<{label}:{digest[:_HASH_HEX_CHARS]}>"
