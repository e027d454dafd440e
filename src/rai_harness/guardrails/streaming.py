"""Checking a streamed answer sentence by sentence.

Tokens arrive in arbitrary chunks; a classifier needs whole sentences to judge. The
stream is buffered until a sentence ends (``.``, ``!`` or ``?``, optionally followed by
closing quotes or brackets, then whitespace; or a newline), or until the buffer holds
``max_buffer_chars`` (then it is cut at the last whitespace, so a run-on answer is still
checked in bounded pieces). Each sentence is checked with the previously released piece in
front of it, so a phrase split across a boundary ("you are an. idiot") is still seen whole.

Blocking is signalled by raising :class:`GuardBlocked` from the iterator, not by a final
event: a consumer that forgets to look for a special event would show a cut-off answer as
if it were complete, whereas an exception cannot be missed. ``GuardBlocked.released_text``
holds exactly what was released before the stop, so the caller can replace it.

A finding must not be released in halves: a card number, IBAN, phone number or spelled-out
address cut at the buffer limit or at a newline (``jane dot doe``, a newline, ``at example
dot com``) would go out in its first piece before the rails could see the rest. So the end of each piece is
held back when a finding could run on from it into text not yet received: the last word (or
number, or single character) unless a sentence end follows a word, together with the words
joined to it (number groups, spelled-out "dot" and "at" and the words they join, spaced-out
characters), and anything a rail found reaching into that tail. The held tail is checked again
at the front of the next window, and released once the text after it shows where it ends. At
most :data:`MAX_HELD_TAIL_CHARS` are held this way (a longer run is cut, so answers of numbers
still flow); the end of the stream releases, through the checks, everything left.

Redact rails redact within the released piece (their spans are clipped to it).

This module knows nothing of :class:`~rai_harness.guardrails.guard.Guard`: it takes a
*checking function* (text -> :class:`~rai_harness.guardrails.verdict.GuardResult`), so the
guard depends on it and not the other way round. :meth:`Guard.stream_output` passes its
output check with the prompt bound.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from rai_harness.classifiers.base import Span
from rai_harness.errors import RaiError
from rai_harness.guardrails.textprep import repair_surrogates
from rai_harness.guardrails.verdict import GuardResult

__all__ = [
    "DEFAULT_MAX_BUFFER_CHARS",
    "MAX_HELD_TAIL_CHARS",
    "AsyncCheck",
    "Check",
    "GuardBlocked",
    "SentenceBuffer",
    "aguard_stream",
    "guard_stream",
]

#: Checks one window of a streamed answer (the previous piece, then the held tail and the new
#: sentence).
Check: TypeAlias = Callable[[str], GuardResult]
#: Async :data:`Check` (goes through the micro-batchers when it is the guard's).
AsyncCheck: TypeAlias = Callable[[str], Awaitable[GuardResult]]

#: Longest text held back waiting for a sentence end, characters. About five long English
#: sentences: long enough that normal prose is cut at sentence ends, short enough that a
#: run-on answer (code, lists without full stops) still flows in bounded pieces.
DEFAULT_MAX_BUFFER_CHARS = 500

# End of a sentence: terminal punctuation (plus closing quotes/brackets) and the whitespace
# character after it, or a newline. The whitespace must have arrived, so "3.14" or "e.g."
# at a chunk end is not cut before we know what follows.
_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*\s|\n")


def _single_character_before(text: str, i: int) -> bool:
    """Whether the word ending at ``i`` is one character long ("e" in "e x a m p l e .")."""
    return i >= 1 and not text[i - 1].isspace() and (i == 1 or text[i - 2].isspace())


def _sentence_end(text: str, limit: int) -> int | None:
    """Where the first sentence of ``text`` ends, if within ``limit`` characters.

    A full stop after a one-character word, or after a space, is not an end: it is an initial
    ("J. K. Rowling") or spaced-out text ("j a n e @ e x a m p l e . o r g"), which a cut
    there would release in halves that no rail recognises.
    """
    for match in _BOUNDARY.finditer(text):
        if match.end() > limit:
            return None
        if match.group() == "\n":
            return match.end()
        i = match.start()
        if not _single_character_before(text, i) and not (text[i] == "." and i and text[i - 1].isspace()):
            return match.end()
    return None


class GuardBlocked(RaiError):
    """A streamed answer was stopped because a sentence was blocked.

    Attributes:
        result: The verdict on the blocked sentence (checked with its context).
        released_text: Everything released before the stop (already redacted).
    """

    def __init__(self, result: GuardResult, released_text: str) -> None:
        self.result = result
        self.released_text = released_text
        rails = ", ".join(r.rail for r in result.rails if r.action == "block") or "a rail"
        super().__init__(f"output stream blocked by {rails}")


class SentenceBuffer:
    """Splits a stream of chunks into sentences; concatenating them gives the stream back.

    Args:
        max_chars: Longest buffered text before a cut is forced.
    """

    def __init__(self, max_chars: int = DEFAULT_MAX_BUFFER_CHARS) -> None:
        if max_chars < 1:
            raise ValueError("max_chars must be >= 1")
        self.max_chars = max_chars
        self._buffer = ""

    def feed(self, chunk: str) -> list[str]:
        """Add a chunk; return the sentences it completed (possibly none).

        Raises:
            TypeError: ``chunk`` is not a ``str`` (a stream of bytes or ``None`` must not
                slip past the output rails).
        """
        if not isinstance(chunk, str):
            raise TypeError(f"stream chunks must be str, got {type(chunk).__name__}")
        # Lone surrogates are replaced here, before release, so that what is released is
        # exactly what the rails checked (the verdict carries the invalid_unicode notice).
        chunk, _ = repair_surrogates(chunk)
        self._buffer += chunk
        out: list[str] = []
        while True:
            end = _sentence_end(self._buffer, self.max_chars)
            if end is not None:
                cut = end
            elif len(self._buffer) >= self.max_chars:
                # No sentence end within the limit: cut after the last whitespace so no word
                # is split in two (a classifier would not recognise half a word), and not
                # inside a run of single characters: spaced-out text is one finding.
                space = max(self._buffer.rfind(c, 0, self.max_chars) for c in " \t")
                while space > 0 and _single_character_before(self._buffer, space):
                    space = max(self._buffer.rfind(c, 0, space - 1) for c in " \t")
                cut = space + 1 if space > 0 else self.max_chars
            else:
                break
            out.append(self._buffer[:cut])
            self._buffer = self._buffer[cut:]
        return out

    def flush(self) -> str:
        """End of stream: return whatever is left (the last, unterminated sentence)."""
        rest, self._buffer = self._buffer, ""
        return rest


#: Longest tail of released-ready text held back because a finding may run on from it into text
#: not yet received, characters. The longest shapes the rails detect fit: an IBAN written in
#: groups (at most 42), a card or phone number (about 25), a spelled-out or spaced-out address
#: ("j a n e . d o e @ e x a m p l e . c o . u k" is 45; 128 covers a 64-character one).
MAX_HELD_TAIL_CHARS = 128

_TOKEN = re.compile(r"\S+")
# Sentence-ending punctuation (plus closing quotes or brackets) at the end of a token.
_TERMINAL = re.compile(r"[.!?]+[\"'”’)\]]*$")
# A token that joins the words on either side into one address: "at" and "dot" spelled out
# ("at", "[dot]", "(at)") or written apart ("jane @ example . com"). Other punctuation is not
# a connector (a list's "- item" lines would chain into one long tail); a single "-" or "/"
# between number groups is a group of its own below.
_CONNECTOR = re.compile(r"(?i)[\[(]?(?:at|dot)[\])]?|@|\.")
# A token that can be one group of a number or code written in groups: it holds a digit
# ("4111", "+44", "(0)", "DE89"), is one character with at most a mark of punctuation either
# side (spaced-out text: "j a n e", "l." in "e x a m p l. e . c o m"), or is a group of four
# capitals or digits (an IBAN's bank code: "GB82 WEST 1234").
_GROUP = re.compile(r".*\d.*|\W?\w?\W?|[A-Z0-9]{4}", re.DOTALL)


def _may_run_on(token: str, after: str) -> bool:
    """Whether a finding could continue from ``token``, through the whitespace ``after``, into
    the text that follows.

    Only a sentence end after a word is safe: no rail's pattern runs through ``. `` after a
    word ("doe. at example dot com" is no address). After a number it is not ("+44 20. 7946
    0958" is one phone number to presidio), nor after an address or a single character, and a
    newline or a forced cut is never safe (an address can go on after a newline: ``jane dot
    doe``, newline, ``at example dot com``).
    """
    if not after:  # the cut fell inside the token
        return True
    end = _TERMINAL.search(token)
    if end is None:
        return True
    body = token[: end.start()]
    return len(body) <= 1 or any(c.isdigit() or c == "@" for c in body)


def _joined(left: str, right: str) -> bool:
    """Whether two tokens separated by whitespace could both belong to one finding."""
    if _CONNECTOR.fullmatch(left) or _CONNECTOR.fullmatch(right):
        return True
    return bool(_GROUP.fullmatch(left) and _GROUP.fullmatch(right))


def _held_tail_start(text: str, floor: int) -> int:
    """Where the tail of ``text`` that a finding may run on from begins (``len(text)``: none).

    The tail is the last token when a finding may continue from it, extended backwards over
    the tokens joined to it (number groups, spelled-out "dot" and "at" and the words they
    join), but never starting before ``floor`` (the hold-back is bounded).
    """
    tokens = [m for m in _TOKEN.finditer(text) if m.end() > floor]
    if not tokens or not _may_run_on(tokens[-1].group(), text[tokens[-1].end() :]):
        return len(text)
    start = tokens[-1].start()
    for left, right in zip(reversed(tokens[:-1]), reversed(tokens[1:]), strict=True):
        if left.start() < floor or not _joined(left.group(), right.group()):
            break
        start = left.start()
    return max(start, floor)


def _release_end(pending: str, spans: Sequence[Span], hold_chars: int) -> int:
    """How much of ``pending`` can be released now: up to the held tail, and never through
    a finding that reaches into it (``spans`` index into ``pending``).

    At most ``hold_chars`` are held: a tail or finding longer than that is cut (and its parts
    redacted where the rails see them), so a run-on answer of numbers still flows.
    """
    floor = max(0, len(pending) - hold_chars)
    end = _held_tail_start(pending, floor)
    while True:
        crossing = [s.start for s in spans if s.start < end < s.end]
        if not crossing:
            return end
        # The text just before a finding may itself run on into it ("+44 (0) 20 ..." found
        # as "20 ..."), so the tail rule applies again in front of it.
        earlier = _held_tail_start(pending[: max(floor, min(crossing))], floor)
        if earlier >= end:
            return end
        end = earlier


@dataclass
class _StreamState:
    """What the checker remembers between windows.

    Attributes:
        context: The last released piece as it was written (not redacted): checked in front
            of the next one, so a phrase split across a cut is still seen whole.
        pending: Text cut from the sentence buffer but not released yet: a tail held back
            because a finding may run on from it, then the newest sentence.
        released: Everything released so far (redacted).
    """

    context: str = ""
    pending: str = ""
    released: str = ""


def _release_blank(state: _StreamState) -> str:
    """Release ``pending`` unchecked when it is only whitespace (it cannot be harmful and is
    not worth a classifier call); return what was released."""
    if state.pending.strip():
        return ""
    blank, state.pending = state.pending, ""
    state.released += blank
    return blank


def _next_window(state: _StreamState, sentence: str, final: bool) -> tuple[str, str | None]:
    """Add ``sentence`` to ``pending``: whitespace released unchecked, and the window to check
    (``None``: nothing to check yet)."""
    state.pending += sentence
    if blank := _release_blank(state):
        return blank, None
    return "", _window(state, final)


def _window(state: _StreamState, final: bool) -> str | None:
    """The window to check next (``context + pending``), or ``None`` when there is nothing to
    check yet: ``pending`` is empty, or all of it is a tail that may continue (checked once
    more text has come, or at the end)."""
    if not state.pending.strip():
        return None
    if not final and _held_tail_start(state.pending, max(0, len(state.pending) - MAX_HELD_TAIL_CHARS)) == 0:
        return None
    return state.context + state.pending


def _release(state: _StreamState, result: GuardResult, final: bool) -> str:
    """Apply the verdict on ``context + pending``; return the text to release.

    All of ``pending`` at the end of the stream (``final``), otherwise up to its held tail.
    Redact rails redact within the released piece: a finding that began in the context was
    cut there (only a finding longer than the hold-back can be), so it is clipped to the piece.
    """
    if result.blocked:
        raise GuardBlocked(result, state.released)
    offset = len(state.context)
    spans = [
        Span(max(s.start, offset) - offset, s.end - offset, s.label, s.score)
        for r in result.rails
        if r.action == "redact"
        for s in r.spans
        if s.end > offset
    ]
    pending = state.pending
    end = len(pending) if final else _release_end(pending, spans, MAX_HELD_TAIL_CHARS)
    if end == 0:
        return ""
    text = pending[:end]
    mine = [Span(s.start, min(s.end, end), s.label, s.score) for s in spans if s.start < end]
    if mine:
        from rai_harness.classifiers.redact import redact

        piece = redact(text, mine)
    else:
        piece = text
    state.context, state.pending = text, pending[end:]
    state.released += piece
    return piece


def guard_stream(
    check_window: Check,
    chunks: Iterable[str],
    *,
    max_buffer_chars: int = DEFAULT_MAX_BUFFER_CHARS,
    on_result: Callable[[GuardResult], None] | None = None,
) -> Iterator[str]:
    """Yield the checked (and redacted) pieces of ``chunks``: sentences, less any tail held
    back because a finding may run on from it (released with the next piece).

    Args:
        check_window: Checks one window (previously released piece + held tail + new
            sentence), e.g. a guard's output check with the prompt bound.
        chunks: The streamed answer.
        max_buffer_chars: Longest text held back waiting for a sentence end (a held tail
            of at most :data:`MAX_HELD_TAIL_CHARS` comes on top).
        on_result: Called with each window's verdict (for logging or records).

    Raises:
        GuardBlocked: when a sentence is blocked; nothing from it on is yielded.
    """
    buffer = SentenceBuffer(max_buffer_chars)
    state = _StreamState()

    def check(sentence: str, final: bool = False) -> str:
        released, window = _next_window(state, sentence, final)
        if window is None:
            return released
        result = check_window(window)
        if on_result is not None:
            on_result(result)
        return _release(state, result, final)

    for chunk in chunks:
        for sentence in buffer.feed(chunk):
            if piece := check(sentence):
                yield piece
    if piece := check(buffer.flush(), final=True):
        yield piece


async def aguard_stream(
    check_window: AsyncCheck,
    chunks: AsyncIterable[str] | Iterable[str],
    *,
    max_buffer_chars: int = DEFAULT_MAX_BUFFER_CHARS,
    on_result: Callable[[GuardResult], None] | None = None,
) -> AsyncIterator[str]:
    """Async :func:`guard_stream`: checks go through the micro-batchers, so many concurrent
    streams share classifier batches. Accepts a sync or an async iterable of chunks."""
    buffer = SentenceBuffer(max_buffer_chars)
    state = _StreamState()

    async def check(sentence: str, final: bool = False) -> str:
        released, window = _next_window(state, sentence, final)
        if window is None:
            return released
        result = await check_window(window)
        if on_result is not None:
            on_result(result)
        return _release(state, result, final)

    async def source() -> AsyncIterator[str]:
        if isinstance(chunks, AsyncIterable):
            async for chunk in chunks:
                yield chunk
        else:
            for chunk in chunks:
                yield chunk

    async for chunk in source():
        for sentence in buffer.feed(chunk):
            if piece := await check(sentence):
                yield piece
    if piece := await check(buffer.flush(), final=True):
        yield piece
