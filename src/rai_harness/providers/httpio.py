"""Bounded HTTP bodies for OpenAI-compatible endpoints: byte caps, bounded decompression, SSE lines.

An endpoint is untrusted input. Without limits a 65 KB gzip body that expands to 64 MB
(a "gzip bomb") is inflated in one piece on the event loop: memory grows by gigabytes and
every other call's timeout stalls behind it. :func:`limited_transport` wraps the HTTP
transport under both client paths (the openai SDK and the lean path) so that, for every
response:

* the bytes on the wire and the decoded bytes are each capped at
  :attr:`ResponseLimits.max_response_bytes`; exceeding it raises
  ``ProviderError(error_type="response_too_large")`` as soon as the cap is crossed,
  after reading at most one network chunk more;
* ``gzip``/``deflate`` bodies are inflated here, incrementally, at most
  :data:`_INFLATE_STEP` bytes per step with a yield to the loop between steps, so
  decompression never blocks other calls or the call's own timeout; any other
  ``Content-Encoding`` is refused (``unsupported_encoding``): we only advertise these two;
* in an ``text/event-stream`` body no line may be longer than
  :attr:`ResponseLimits.max_sse_line_bytes` (``sse_line_too_long``), so an SSE decoder
  never buffers an endless line.

The errors are not retryable: the same endpoint would send the same body again.

The transport also tells a call's timer when its request is written to the connection
(:func:`marking_send`), through httpcore's ``trace`` request extension: the SDK path cannot
pass extensions per request, the transport under it can. TTFT and latency then count from
the send, and the wait before it (a new connection's handshakes, the loop's queue) is
measured apart (see :class:`~rai_harness.providers.base.StreamTimer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from rai_harness.errors import ProviderError

__all__ = [
    "ACCEPT_ENCODING",
    "ResponseLimits",
    "find_limit_error",
    "limit_error",
    "limited_transport",
    "marking_send",
]

#: The encodings :func:`limited_transport` can inflate with a bound; sent as Accept-Encoding.
ACCEPT_ENCODING = "gzip, deflate"

#: Most bytes produced by one inflate step (then the loop gets a turn).
_INFLATE_STEP = 256 * 1024


#: What the transport calls when the current task's request starts being written (see
#: :func:`marking_send`). A context variable because the openai SDK builds the request itself:
#: the provider sets it around the SDK call, the transport (same task) reads it.
_SEND_MARK: ContextVar[Callable[[], None] | None] = ContextVar("rai_harness_send_mark", default=None)

#: httpcore trace events that mean "the request is being written" (HTTP/1.1 and HTTP/2).
_SENT_EVENTS = frozenset({"http11.send_request_headers.started", "http2.send_request_headers.started"})


@contextlib.contextmanager
def marking_send(mark: Callable[[], None]) -> Iterator[None]:
    """Within this block, requests sent through :func:`limited_transport` call ``mark`` when written.

    Args:
        mark: Called (on the event loop, no arguments) as the request's headers start
            being written, after any connection was taken from the pool or opened.
    """
    token = _SEND_MARK.set(mark)
    try:
        yield
    finally:
        _SEND_MARK.reset(token)


def _send_tracer(
    mark: Callable[[], None], inner: Callable[[str, dict[str, Any]], Awaitable[None]] | None
) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
    """An httpcore ``trace`` callback that calls ``mark`` on the send event (and chains ``inner``)."""

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event in _SENT_EVENTS:
            mark()
        if inner is not None:
            await inner(event, info)

    return trace


@dataclass(frozen=True, slots=True)
class ResponseLimits:
    """Caps on one response (see :class:`~rai_harness.providers.base.ResponseLimitsConfig`)."""

    max_response_bytes: int = 32 * 1024 * 1024
    max_output_chars: int = 1_000_000
    max_sse_line_bytes: int = 1024 * 1024


def limit_error(error_type: str, message: str) -> ProviderError:
    """The error for a response over a limit (not retryable: the endpoint would repeat it)."""
    return ProviderError(message, retryable=False, error_type=error_type)


def find_limit_error(exc: BaseException) -> ProviderError | None:
    """The :class:`ProviderError` raised by this module somewhere in ``exc``'s chain.

    The openai SDK wraps whatever a transport raises into ``APIConnectionError``; the
    limit's own error type must survive that wrapping.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ProviderError):
            return current
        current = current.__cause__ or current.__context__
    return None


class _Inflater:
    """Incremental gzip/deflate decoding that never produces more than a step at once."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding in ("gzip", "x-gzip")
        self._first = True
        self._obj = self._new()

    def _new(self) -> Any:
        # 16 + MAX_WBITS: gzip header; MAX_WBITS: zlib header (deflate as RFC 9110 means it).
        return zlib.decompressobj(16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS)

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """Yield decoded pieces of ``data``, each at most :data:`_INFLATE_STEP` bytes."""
        while data:
            try:
                out = self._obj.decompress(data, _INFLATE_STEP)
            except zlib.error:
                if self._first and not self._gzip:
                    # Servers send raw deflate (no zlib header) under "deflate" too.
                    self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._first = False
                    continue
                raise
            self._first = False
            if out:
                yield out
            data = self._obj.unconsumed_tail
            if self._obj.eof:
                # A second gzip member after the first (allowed by RFC 1952).
                data = self._obj.unused_data + data
                if not data:
                    return
                self._obj = self._new()

    def flush(self) -> bytes:
        return self._obj.flush(_INFLATE_STEP)


class _LineMeter:
    """Tracks the longest SSE line in a byte stream without buffering it."""

    __slots__ = ("current", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.current = 0

    def check(self, piece: bytes) -> None:
        # \r, \n and \r\n all end an SSE line; a normalised copy of one piece is cheap.
        if b"\r" in piece:
            piece = piece.replace(b"\r", b"\n")
        end = piece.rfind(b"\n")
        if end == -1:
            self.current += len(piece)
        else:
            first = piece.find(b"\n")
            longest = self.current + first
            if end > first:
                longest = max(longest, max(len(line) for line in piece[first + 1 : end].split(b"\n")))
            if longest > self.limit:
                self._fail()
            self.current = len(piece) - end - 1
        if self.current > self.limit:
            self._fail()

    def _fail(self) -> None:
        raise limit_error(
            "sse_line_too_long",
            f"the server sent an SSE line longer than max_sse_line_bytes ({self.limit} bytes)",
        )


@functools.cache
def _classes(http: Any) -> tuple[type, type]:
    """The stream and transport classes for one HTTP module (httpx or the SDK's httpx2)."""

    class LimitedStream(http.AsyncByteStream):
        def __init__(self, inner: Any, encoding: str, limits: ResponseLimits, sse: bool) -> None:
            self._inner = inner
            self._inflater = _Inflater(encoding) if encoding else None
            self._limits = limits
            self._lines = _LineMeter(limits.max_sse_line_bytes) if sse else None

        def _too_large(self, what: str) -> ProviderError:
            return limit_error(
                "response_too_large",
                f"the response's {what} bytes exceeded max_response_bytes ({self._limits.max_response_bytes})",
            )

        def _emit(self, piece: bytes, decoded: int) -> int:
            decoded += len(piece)
            if decoded > self._limits.max_response_bytes:
                raise self._too_large("decoded")
            if self._lines is not None:
                self._lines.check(piece)
            return decoded

        async def __aiter__(self) -> AsyncIterator[bytes]:
            cap = self._limits.max_response_bytes
            wire = decoded = 0
            try:
                async for chunk in self._inner:
                    wire += len(chunk)
                    if wire > cap:
                        raise self._too_large("on-the-wire")
                    if self._inflater is None:
                        decoded = self._emit(chunk, decoded)
                        yield chunk
                        continue
                    for steps, piece in enumerate(self._inflater.pieces(chunk), 1):
                        decoded = self._emit(piece, decoded)
                        yield piece
                        if steps % 4 == 0:
                            await asyncio.sleep(0)  # inflating is CPU work: let other calls run
                if self._inflater is not None:
                    tail = self._inflater.flush()
                    if tail:
                        decoded = self._emit(tail, decoded)
                        yield tail
            except zlib.error as exc:
                raise ProviderError(
                    f"the response's compressed body is corrupt ({exc})",
                    retryable=True,
                    error_type="bad_response",
                ) from None

        async def aclose(self) -> None:
            await self._inner.aclose()

    class LimitedTransport(http.AsyncBaseTransport):
        def __init__(self, inner: Any, limits: ResponseLimits) -> None:
            self._inner = inner
            self._limits = limits

        async def handle_async_request(self, request: Any) -> Any:
            mark = _SEND_MARK.get()
            if mark is not None:
                request.extensions["trace"] = _send_tracer(mark, request.extensions.get("trace"))
            response = await self._inner.handle_async_request(request)
            raw_encoding = response.headers.get("content-encoding", "")
            encodings = [e.strip().lower() for e in raw_encoding.split(",") if e.strip()]
            encodings = [e for e in encodings if e != "identity"]
            if len(encodings) > 1 or (encodings and encodings[0] not in ("gzip", "x-gzip", "deflate")):
                await response.aclose()
                raise limit_error(
                    "unsupported_encoding",
                    f"the server sent Content-Encoding {raw_encoding!r}; only {ACCEPT_ENCODING} are accepted",
                )
            sse = "event-stream" in response.headers.get("content-type", "").lower()
            stream = LimitedStream(response.stream, encodings[0] if encodings else "", self._limits, sse)
            # Decoded here, so the client must not decode again (and the length changes).
            headers = [
                (k, v)
                for k, v in response.headers.raw
                if k.lower() not in (b"content-encoding", b"content-length")
            ]
            return http.Response(
                status_code=response.status_code,
                headers=headers,
                stream=stream,
                extensions=response.extensions,
                request=request,
            )

        async def aclose(self) -> None:
            await self._inner.aclose()

    return LimitedStream, LimitedTransport


def limited_transport(http: Any, caps: ResponseLimits, *, inner: Any = None, **transport_kwargs: Any) -> Any:
    """An ``http.AsyncHTTPTransport`` (``http`` is httpx or httpx2) that enforces ``limits``.

    Args:
        http: The HTTP module (:func:`~rai_harness.providers.openai_compat.http_module`).
        caps: The caps.
        inner: The transport to wrap (tests pass a scripted one); default a new
            ``http.AsyncHTTPTransport(**transport_kwargs)``.
        **transport_kwargs: Passed to ``AsyncHTTPTransport`` (``limits`` of the pool...).
    """
    _, transport_cls = _classes(http)
    return transport_cls(inner if inner is not None else http.AsyncHTTPTransport(**transport_kwargs), caps)
