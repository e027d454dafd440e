"""The guard server's HTTP/1.1 client for its one upstream: keep-alive connections, nothing else.

``rai guard serve`` sends every request to one OpenAI-compatible origin. A general client
(aiohttp, httpx) spends most of its time per call on what this path never uses: cookie
jars, redirects, proxies, per-request URL parsing, header multidicts, tracing hooks and
timer objects. Measured against the fake upstream on this project's 2-core machine with 64
calls in flight: aiohttp 0.14 ms of CPU per call, this client 0.03 ms; at 64 closed-loop
clients that was about 15% of the proxy's CPU per request (``benchmarks/guard_serve.py``).

What it does: POST a body to a path of the configured origin over a pooled HTTP/1.1
connection (TLS for ``https``), with the response framed by ``httptools`` (the C parser
uvicorn uses: content-length, chunked, close-delimited), and either read the whole body
(bounded) or read a stream line by line (each line bounded; the socket is paused while
the reader lags, so a fast upstream cannot fill memory). What it deliberately does not:
follow redirects (a 3xx is an answer like any other), decompress (it asks for
``identity`` and refuses an encoded body), use environment proxies or ``.netrc``, or
retry (a POST is not idempotent).

Deadlines are the caller's: cancel the awaiting task (``asyncio.timeout``) and the
connection is closed, never reused half-read.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from typing import NamedTuple, cast

import httptools

__all__ = ["UpstreamClient", "UpstreamError", "UpstreamReply", "UpstreamStream"]

#: Longest whole (non-streamed) upstream answer read, bytes. A chat completion is a few KiB;
#: a hostile or broken upstream must not fill the proxy's memory.
MAX_REPLY_BYTES = 32 * 1024 * 1024

#: Longest line of a streamed answer, bytes (aiohttp's default read limit is the same order).
MAX_LINE_BYTES = 128 * 1024

#: Most bytes of status line and headers read before the body (uvicorn and nginx allow
#: 8-64 KiB); an upstream that never ends its headers must not fill the proxy's memory.
MAX_HEAD_BYTES = 64 * 1024

#: Seconds an idle connection is kept for reuse. Servers close idle keep-alive connections
#: after their own timeout (often 5-75 s); reusing one they are closing fails the request,
#: so stay well under the common values.
KEEPALIVE_S = 4.0


class UpstreamError(Exception):
    """The upstream could not be reached, broke the connection, or sent malformed HTTP.

    The message names what happened, never a header value or body content.
    """


class UpstreamReply(NamedTuple):
    """A whole upstream answer."""

    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its response parsed as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self._done: asyncio.Future[UpstreamReply] | None = None
        self._head: asyncio.Future[None] | None = None
        self.reader: asyncio.StreamReader | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self._header_name = b""
        self._body: list[bytes] = []
        self._size = 0
        self._head_bytes = 0  # bytes received while the headers had not ended
        self._head_size = 0  # bytes of the headers parsed
        self._limit = MAX_REPLY_BYTES
        self.complete = False
        self.reusable = False

    # -- the caller's side ----------------------------------------------------------------

    def request(self, data: bytes, *, stream: bool) -> None:
        """Send one request; its answer resolves :meth:`reply` (or :meth:`head`, streaming)."""
        self._reset()
        if stream:
            self._head = self._loop.create_future()
            self.reader = asyncio.StreamReader(limit=MAX_LINE_BYTES, loop=self._loop)
            assert self.transport is not None
            # Lets the reader pause the socket while its buffer is over 2 x the line limit.
            self.reader.set_transport(self.transport)
        else:
            self._done = self._loop.create_future()
        assert self.transport is not None
        self.transport.write(data)

    async def reply(self) -> UpstreamReply:
        assert self._done is not None
        return await self._done

    async def head(self) -> None:
        assert self._head is not None
        await self._head

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.complete or (self._done is None and self._head is None):
            # Bytes nobody asked for (no request out, or past the end of the answer): the
            # connection's framing can no longer be trusted.
            self._fail(UpstreamError("the upstream sent data after its answer"))
            return
        in_head = not self.status
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(UpstreamError("the upstream sent malformed HTTP"))
            return
        if in_head and not self.status and not self.complete:
            # Still inside the status line and headers after every byte so far: the parser
            # holds them all (an endless header never reaches on_header), so bound the total.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(UpstreamError(f"the upstream's headers are over {MAX_HEAD_BYTES} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.complete:
            return
        if self.status and self._close_delimited():
            self.on_message_complete()  # the body ended with the connection, as announced
            self.reusable = False
            return
        self._fail(UpstreamError("the upstream closed the connection before answering in full"))

    # -- httptools callbacks --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        # Names are ASCII by the grammar; values are decoded leniently (latin-1 never fails).
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD_BYTES:
            self._fail(UpstreamError(f"the upstream's headers are over {MAX_HEAD_BYTES} bytes"))
            return
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if self.status < 200:  # no Expect or Upgrade was sent: an interim answer is a broken one
            self._fail(UpstreamError(f"the upstream sent an unexpected HTTP {self.status}"))
            return
        if self.headers.get("content-encoding", "identity").lower() != "identity":
            self._fail(UpstreamError("the upstream sent an encoded body although asked for identity"))
            return
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self.reader is not None:
            self.reader.feed_data(body)
            return
        self._size += len(body)
        if self._size > self._limit:
            self._fail(UpstreamError(f"the upstream's answer is over {self._limit} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        self.complete = True
        self.reusable = self._parser.should_keep_alive() and not self.closed
        if self.reader is not None:
            self.reader.feed_eof()
        elif self._done is not None and not self._done.done():
            self._done.set_result(UpstreamReply(self.status, self.headers, b"".join(self._body)))

    # -- helpers ----------------------------------------------------------------------------

    def _close_delimited(self) -> bool:
        """Whether the body's end is the connection's end (no length, not chunked)."""
        return (
            "content-length" not in self.headers
            and "chunked" not in self.headers.get("transfer-encoding", "").lower()
            and not (100 <= self.status < 200 or self.status in (204, 304))
        )

    def _fail(self, error: UpstreamError) -> None:
        self.reusable = False
        for future in (self._head, self._done):
            if future is not None and not future.done():
                future.set_exception(error)
        if self.reader is not None and not self.complete:
            self.reader.set_exception(error)
        self.complete = True
        self.close()


class UpstreamStream:
    """A streamed upstream answer: status and headers now, the body line by line.

    Close it (:meth:`close`) when done: a stream received in full returns its connection to
    the pool, one abandoned half-way closes it.
    """

    def __init__(self, client: UpstreamClient, conn: _Connection) -> None:
        self._client = client
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        self._released = False

    async def readline(self) -> bytes:
        """The next line, ``b""`` at the end.

        Raises:
            ValueError: a line over :data:`MAX_LINE_BYTES` (``asyncio.LimitOverrunError``'s
                wrapper, as ``StreamReader.readline`` raises it).
            UpstreamError: the connection broke mid-stream.
        """
        assert self._conn.reader is not None
        return await self._conn.reader.readline()

    async def read(self, limit: int = 64 * 1024) -> bytes:
        """The rest of the body, at most ``limit`` bytes (an error answer's message)."""
        reader = self._conn.reader
        assert reader is not None
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = await reader.read(limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Give the connection back (its answer fully received) or close it."""
        if self._released:
            return
        self._released = True
        # Received in full (a relay stops reading at [DONE], before the final blank line):
        # the framing is intact, so the connection can serve the next request; what is left
        # in this reader is dropped with it.
        self._client._release(self._conn, reuse=self._conn.complete and self._conn.reusable)


class UpstreamClient:
    """Keep-alive HTTP/1.1 POSTs to one origin (see the module docstring).

    Args:
        url: The origin and base path, ``http(s)://host[:port][/base]``; request paths are
            appended to the base path.
        headers: Sent with every request (e.g. ``Authorization``); values must not contain
            line breaks or other control characters.
        max_idle: Idle connections kept for reuse at most.
        connect_timeout_s: Longest wait for a TCP (and TLS) connection.
        ssl_context: For ``https``; default: the system's trust store, hostname checked.

    Raises:
        ValueError: ``url`` is not an http(s) URL with a host, or a header is malformed.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        max_idle: int = 128,
        connect_timeout_s: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the upstream must be an http(s) URL with a host")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        host = f"[{self._host}]" if ":" in self._host else self._host
        default_port = self._port == (443 if parts.scheme == "https" else 80)
        self._host_header = host if default_port else f"{host}:{self._port}"
        self._base = parts.path.rstrip("/")
        lines = [f"Host: {self._host_header}", "Accept-Encoding: identity", "Connection: keep-alive"]
        for name, value in (headers or {}).items():
            if not name.isascii() or not name.replace("-", "").isalnum():
                raise ValueError(f"invalid header name {name!r}")
            if any(ord(c) < 32 or ord(c) == 127 for c in value):
                raise ValueError(f"the value of header {name!r} contains a control character")
            lines.append(f"{name}: {value}")
        # Everything but the request line and the length is the same for every request.
        self._fixed = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._max_idle = max_idle
        self._connect_timeout_s = connect_timeout_s
        self._idle: collections.deque[_Connection] = collections.deque()
        self._busy: set[_Connection] = set()
        self._closed = False

    def _request_bytes(self, path: str, body: bytes, content_type: bytes) -> bytes:
        target = (self._base + path).encode("ascii")
        return b"POST %s HTTP/1.1\r\n%sContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (
            target,
            self._fixed,
            content_type,
            len(body),
            body,
        )

    async def post(
        self, path: str, body: bytes, *, content_type: bytes = b"application/json"
    ) -> UpstreamReply:
        """POST ``body`` to ``path`` and read the whole answer (at most :data:`MAX_REPLY_BYTES`).

        Raises:
            UpstreamError: could not connect, the connection broke, malformed or oversized
                answer.
        """
        conn = await self._acquire()
        reuse = False
        try:
            conn.request(self._request_bytes(path, body, content_type), stream=False)
            reply = await conn.reply()
            reuse = conn.reusable
            return reply
        finally:  # cancelled (the deadline) or failed: never reuse a half-read connection
            self._release(conn, reuse=reuse)

    async def post_stream(
        self, path: str, body: bytes, *, content_type: bytes = b"application/json"
    ) -> UpstreamStream:
        """POST ``body`` to ``path`` and return once the answer's headers are in.

        Raises:
            UpstreamError: as :meth:`post`.
        """
        conn = await self._acquire()
        try:
            conn.request(self._request_bytes(path, body, content_type), stream=True)
            await conn.head()
        except BaseException:
            self._release(conn, reuse=False)
            raise
        return UpstreamStream(self, conn)

    async def close(self) -> None:
        """Close every connection; requests in flight fail."""
        self._closed = True
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()
        self._busy.clear()

    # -- the pool ---------------------------------------------------------------------------

    async def _acquire(self) -> _Connection:
        if self._closed:
            raise UpstreamError("the upstream client is closed")
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to be closing
            if conn.closed or now - conn.idle_since > KEEPALIVE_S:
                conn.close()
                continue
            self._busy.add(conn)
            return conn
        loop = asyncio.get_running_loop()
        try:
            # Once per connection, so wait_for's extra task costs nothing per request.
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                ),
                timeout=self._connect_timeout_s,
            )
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
            raise UpstreamError(f"could not connect to the upstream ({type(exc).__name__})") from None
        self._busy.add(conn)
        return conn

    def _release(self, conn: _Connection, *, reuse: bool) -> None:
        self._busy.discard(conn)
        if reuse and not conn.closed and not self._closed and len(self._idle) < self._max_idle:
            conn.idle_since = time.monotonic()
            conn._reset()
            transport = conn.transport
            if transport is not None and not transport.is_reading():
                # A stream's reader paused the socket and was dropped with its unread tail.
                transport.resume_reading()
            self._idle.append(conn)
        else:
            conn.close()
