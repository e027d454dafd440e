"""Checking a streamed answer sentence by sentence.

Tokens arrive in arbitrary chunks; a classifier needs whole sentences to judge. The
stream is buffered until a sentence ends (``.``, ``!`` or ``?``, optionally followed by
closing quotes or brackets, then whitespace; or a newline), or until the buffer holds
``max_buffer_chars`` (then it is cut at the last whitespace, so a run-on answer is still
checked in bounded pieces). Each sentence is checked with the previous sentence in front
of it, so a phrase split across a boundary ("you are an. idiot") is still seen whole.

Blocking is signalled by raising :class:`GuardBlocked` from the iterator, not by a final
event: a consumer that forgets to look for a special event would show a cut-off answer as
if it were complete, whereas an exception cannot be missed. ``GuardBlocked.released_text``
holds exactly what was released before the stop, so the caller can replace it.

Redact rails redact within the released sentence (their spans are clipped to it).

This module knows nothing of :class:`~rai_harness.guardrails.guard.Guard`: it takes a
*checking function* (text -> :class:`~rai_harness.guardrails.verdict.GuardResult`), so the
guard depends on it and not the other way round. :meth:`Guard.stream_output` passes its
output check with the prompt bound.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeAlias

from rai_harness.classifiers.base import Span
from rai_harness.errors import RaiError
from rai_harness.guardrails.textprep import repair_surrogates
from rai_harness.guardrails.verdict import GuardResult

__all__ = [
    "DEFAULT_MAX_BUFFER_CHARS",
    "AsyncCheck",
    "Check",
    "GuardBlocked",
    "SentenceBuffer",
    "aguard_stream",
    "guard_stream",
]

#: Checks one window of a streamed answer (the previous sentence and the new one).
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


@dataclass
class _StreamState:
    """What the checker remembers between sentences."""

    context: str = ""
    released: str = ""


def _window(state: _StreamState, sentence: str) -> str:
    return state.context + sentence


def _release(state: _StreamState, sentence: str, result: GuardResult) -> str:
    """Apply the verdict on ``context + sentence``; return the text to release."""
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
    if spans:
        from rai_harness.classifiers.redact import redact

        piece = redact(sentence, spans)
    else:
        piece = sentence
    state.context = sentence
    state.released += piece
    return piece


def guard_stream(
    check_window: Check,
    chunks: Iterable[str],
    *,
    max_buffer_chars: int = DEFAULT_MAX_BUFFER_CHARS,
    on_result: Callable[[GuardResult], None] | None = None,
) -> Iterator[str]:
    """Yield the checked (and redacted) sentences of ``chunks``.

    Args:
        check_window: Checks one window (previous sentence + new sentence), e.g. a guard's
            output check with the prompt bound.
        chunks: The streamed answer.
        max_buffer_chars: Longest text held back waiting for a sentence end.
        on_result: Called with each sentence's verdict (for logging or records).

    Raises:
        GuardBlocked: when a sentence is blocked; nothing from it on is yielded.
    """
    buffer = SentenceBuffer(max_buffer_chars)
    state = _StreamState()

    def check(sentence: str) -> str:
        if not sentence.strip():
            # Whitespace cannot be harmful and is not worth a classifier call.
            state.released += sentence
            return sentence
        result = check_window(_window(state, sentence))
        if on_result is not None:
            on_result(result)
        return _release(state, sentence, result)

    for chunk in chunks:
        for sentence in buffer.feed(chunk):
            yield check(sentence)
    tail = buffer.flush()
    if tail:
        yield check(tail)


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

    async def check(sentence: str) -> str:
        if not sentence.strip():
            state.released += sentence
            return sentence
        result = await check_window(_window(state, sentence))
        if on_result is not None:
            on_result(result)
        return _release(state, sentence, result)

    async def source() -> AsyncIterator[str]:
        if isinstance(chunks, AsyncIterable):
            async for chunk in chunks:
                yield chunk
        else:
            for chunk in chunks:
                yield chunk

    async for chunk in source():
        for sentence in buffer.feed(chunk):
            yield await check(sentence)
    tail = buffer.flush()
    if tail:
        yield await check(tail)
