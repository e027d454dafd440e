"""A PII finding that crosses a cut of the streamed answer is released whole, or not at all.

The streaming guard cuts the answer at sentence ends, newlines and (in a run-on answer) at the
buffer limit. A card number, IBAN, phone number or spelled-out address that straddles such a cut
must come out exactly as the whole-text check redacts it: no digit or word of it may have gone out
in the piece before the cut. Each test sweeps a class of inputs (every start offset around the
cut, every chunk size, every inner space turned into a boundary), not one quoted example.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator

import pytest

from rai_harness.classifiers.base import ClassifierSpec
from rai_harness.guardrails import Guard, Rail
from rai_harness.guardrails.streaming import MAX_HELD_TAIL_CHARS, guard_stream
from rai_harness.guardrails.verdict import GuardResult

#: PII kind -> (value, what of it must never appear in the released stream).
PII = {
    "card": ("4111 1111 1111 1111", re.compile(r"\d")),
    "iban": ("DE89 3704 0044 0532 0130 00", re.compile(r"\d|\bDE")),
    "email": ("jane dot doe at example dot com", re.compile(r"jane|doe|example")),
    "phone": ("+44 20 7946 0958", re.compile(r"\d|\+")),
    # Longer than WINDOW: the cut must fall inside it, and the held tail carries it whole.
    "spaced": ("j a n e . d o e @ e x a m p l e . c o . u k", re.compile(r"@|(?<!\S)\w \w(?!\S)")),
}
#: Small window, so the sweeps stay short texts (a few milliseconds a check).
WINDOW = 40
CHUNK_SIZES = (1, 3, 7, None)  # None: the whole answer in one chunk
TAIL = " and that is all"


@pytest.fixture(scope="module")
def pii_guard() -> Iterator[Guard]:
    from rai_harness.classifiers.pool import default_pool

    pii = default_pool().classifier(
        ClassifierSpec(
            backend="presidio",
            options={"entities": ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE"]},
        )
    )
    guard = Guard(
        [],
        [Rail("pii-out", pii, action="redact", threshold=0.4, on_error="block", timeout_ms=30_000)],
        max_chars=20_000,
    )
    yield guard
    guard.close()


def lead(length: int) -> str:
    """Filler of exactly ``length`` (>= 2) characters ending in a space, with no sentence end."""
    words = (length - 2) // 5
    return "word " * words + "x" * (length - 5 * words - 1) + " "


def chunked(text: str, size: int | None) -> list[str]:
    if size is None:
        return [text]
    return [text[i : i + size] for i in range(0, len(text), size)]


def streamed(guard: Guard, text: str, size: int | None, window: int = WINDOW) -> str:
    return "".join(guard.stream_output(chunked(text, size), max_buffer_chars=window))


@pytest.mark.parametrize("kind", sorted(PII))
def test_a_finding_across_the_forced_cut_is_redacted_whole_at_every_offset(
    pii_guard: Guard, kind: str
) -> None:
    value, leak = PII[kind]
    for start in range(max(2, WINDOW - len(value) - 4), WINDOW + 5):
        text = lead(start) + value + TAIL
        whole = pii_guard.check_output(text).redacted_text
        assert whole is not None and not leak.search(whole), (kind, start, whole)
        for size in CHUNK_SIZES:
            out = streamed(pii_guard, text, size)
            assert out == whole, (kind, start, size, out)


@pytest.mark.parametrize("kind", sorted(PII))
def test_a_finding_at_the_end_of_the_stream_is_redacted_whole(pii_guard: Guard, kind: str) -> None:
    value, leak = PII[kind]
    for start in range(WINDOW - len(value) - 2, WINDOW + 3):
        text = lead(start) + value
        whole = pii_guard.check_output(text).redacted_text
        assert whole is not None and not leak.search(whole)
        for size in (1, 7):
            assert streamed(pii_guard, text, size) == whole, (kind, start, size)


@pytest.mark.parametrize("kind", sorted(PII))
@pytest.mark.parametrize("boundary", ["\n", ". ", "\n\n"], ids=["newline", "full stop", "blank line"])
def test_a_sentence_boundary_inside_a_finding_does_not_release_its_first_part(
    pii_guard: Guard, kind: str, boundary: str
) -> None:
    # Every inner space in turn becomes the boundary: "jane dot doe\nat example dot com",
    # "+44 20. 7946 0958". Whatever the whole-text check makes of it, the stream matches.
    value, _ = PII[kind]
    spaces = [i for i, c in enumerate(value) if c == " "]
    for i in spaces[:: max(1, len(spaces) // 6)]:  # the spaced-out address: every third space
        text = "Write to " + value[:i] + boundary + value[i + 1 :] + " please. Bye."
        whole = pii_guard.check_output(text).redacted_text
        for size in (1, 7, None):
            assert streamed(pii_guard, text, size, window=500) == whole, (kind, i, size)


def test_the_reviewed_examples_at_the_default_window(pii_guard: Guard) -> None:
    # As reported: about 485 characters without a sentence end, then the number.
    for kind, (value, leak) in PII.items():
        for start in (480, 485, 490, 495, 500):
            text = lead(start) + value + " thanks"
            out = "".join(pii_guard.stream_output(chunked(text, 4)))
            assert out == pii_guard.check_output(text).redacted_text, (kind, start)
            assert not leak.search(out), (kind, start)
    text = "Write to jane dot doe\nat example dot com please."
    assert "".join(pii_guard.stream_output([text])) == "Write to <EMAIL_ADDRESS> please."


async def test_the_async_stream_holds_back_the_same_tail(pii_guard: Guard) -> None:
    for kind, (value, leak) in PII.items():
        text = lead(WINDOW - len(value) // 2) + value + TAIL

        async def chunks(text: str = text) -> AsyncIterator[str]:
            for chunk in chunked(text, 3):
                await asyncio.sleep(0)
                yield chunk

        out = "".join([p async for p in pii_guard.astream_output(chunks(), max_buffer_chars=WINDOW)])
        assert out == pii_guard.check_output(text).redacted_text and not leak.search(out), kind


# -- the hold-back is bounded and sentences still flow ---------------------------------------------


def allow_all(seen: list[str]):
    def check(window: str) -> GuardResult:
        seen.append(window)
        return GuardResult("allow", window, window, (), 0.0, "output")

    return check


def test_prose_is_still_released_sentence_by_sentence() -> None:
    seen: list[str] = []
    text = "First one is fine. Second is fine too! Third? Yes.\nFourth line\nFifth."
    pieces = list(guard_stream(allow_all(seen), chunked(text, 3), max_buffer_chars=100))
    # A sentence end after a word is safe; a newline after a word holds the word (it could be
    # "jane dot doe\nat example dot com"), released with the next sentence.
    assert pieces == [
        "First one is fine. ",
        "Second is fine too! ",
        "Third? ",
        "Yes.\n",
        "Fourth ",
        "line\nFifth.",
    ]
    assert "".join(pieces) == text


def test_a_run_of_numbers_is_held_back_only_a_bounded_tail() -> None:
    # No sentence end and every token could be part of a number: the stream still flows, each
    # piece released once the text after it is more than the window plus the held tail.
    text = "1234 " * 400
    fed = 0
    released = 0
    seen: list[str] = []

    def chunks() -> Iterator[str]:
        nonlocal fed
        for chunk in chunked(text, 7):
            fed += len(chunk)
            yield chunk

    for piece in guard_stream(allow_all(seen), chunks(), max_buffer_chars=100):
        released += len(piece)
        assert fed - released <= 100 + MAX_HELD_TAIL_CHARS
    assert released == len(text)
    assert max(len(w) for w in seen) <= 2 * (100 + MAX_HELD_TAIL_CHARS)
