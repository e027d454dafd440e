"""The guard server's upstream client: keep-alive reuse, framing, bounds and failures.

Each test runs a raw asyncio server on 127.0.0.1 that answers with canned bytes, so the
framing cases (content-length, chunked, close-delimited) and the broken ones (closed
mid-answer, encoded, interim, oversized, garbage after the answer) are exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

pytest.importorskip("httptools")

from rai_harness.guardrails import upstream as upstream_module
from rai_harness.guardrails.upstream import UpstreamClient, UpstreamError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


class _Server:
    """A loopback server answering each request with ``reply(request_bytes)``; counts connections."""

    def __init__(self, reply: Callable[[bytes], bytes], *, close_after: bool = False) -> None:
        self.reply = reply
        self.close_after = close_after
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append(request)
                writer.write(self.reply(request))
                await writer.drain()
                if self.close_after:
                    return
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()


def _ok(body: bytes = b'{"ok": true}') -> Callable[[bytes], bytes]:
    return lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def test_requests_reuse_one_keep_alive_connection_and_send_the_fixed_headers():
    server = _Server(_ok())
    async with server as url:
        client = UpstreamClient(url, headers={"Authorization": "Bearer sk-test"})
        for _ in range(3):
            reply = await client.post("/chat/completions", b'{"a": 1}')
            assert (reply.status, reply.body) == (200, b'{"ok": true}')
        await client.close()
    assert server.connections == 1
    request = server.requests[0]
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in request
    assert b"\r\nAuthorization: Bearer sk-test\r\n" in request
    assert b"\r\nAccept-Encoding: identity\r\n" in request
    assert request.endswith(b'\r\n\r\n{"a": 1}')


async def test_chunked_and_close_delimited_answers_are_read_whole():
    chunked = _Server(
        lambda _: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
    )
    async with chunked as url:
        client = UpstreamClient(url)
        assert (await client.post("/x", b"{}")).body == b"abcdefg"
        await client.close()
    eof = _Server(lambda _: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", close_after=True)
    async with eof as url:
        client = UpstreamClient(url)
        reply = await client.post("/x", b"{}")
        assert reply.body == b"until the end"
        assert not client._idle  # the connection ended with the answer: never reused
        await client.close()


async def test_an_answer_cut_short_is_an_error_and_the_connection_is_dropped():
    server = _Server(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", close_after=True)
    async with server as url:
        client = UpstreamClient(url)
        with pytest.raises(UpstreamError, match="closed the connection"):
            await client.post("/x", b"{}")
        assert not client._idle
        await client.close()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc", "encoded"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "unexpected HTTP 100"),
        (b"NOT HTTP AT ALL\r\n\r\n", "malformed"),
    ],
)
async def test_broken_answers_fail_closed(answer, message):
    async with _Server(lambda _: answer) as url:
        client = UpstreamClient(url)
        with pytest.raises(UpstreamError, match=message):
            await client.post("/x", b"{}")
        assert not client._idle
        await client.close()


async def test_an_oversized_answer_is_refused(monkeypatch):
    monkeypatch.setattr(upstream_module, "MAX_REPLY_BYTES", 1000)
    async with _Server(_ok(b"x" * 5000)) as url:
        client = UpstreamClient(url)
        with pytest.raises(UpstreamError, match="over 1000 bytes"):
            await client.post("/x", b"{}")
        await client.close()


async def test_an_endless_header_or_too_many_headers_are_refused_early():
    async def endless_header(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nX-Pad: ")
        try:
            for _ in range(10_000):  # 640 MB if nobody stops reading
                writer.write(b"a" * 65536)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    many = b"".join(b"X-H%d: v\r\n" % i for i in range(20_000))
    for handler in (endless_header, None):
        if handler is None:
            server: Any = await asyncio.start_server(
                _Server(lambda _: b"HTTP/1.1 200 OK\r\n" + many + b"Content-Length: 0\r\n\r\n").handle,
                "127.0.0.1",
                0,
            )
        else:
            server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = UpstreamClient(f"http://127.0.0.1:{port}/v1")
        with pytest.raises(UpstreamError, match=f"headers are over {upstream_module.MAX_HEAD_BYTES} bytes"):
            await asyncio.wait_for(client.post("/x", b"{}"), 10)
        await client.close()
        server.close()


async def test_a_cancelled_request_closes_its_connection():
    done = asyncio.Event()

    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await done.wait()
        writer.close()

    server = await asyncio.start_server(never_answers, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = UpstreamClient(f"http://127.0.0.1:{port}")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.post("/x", b"{}"), 0.2)
    assert not client._idle and not client._busy  # a half-read connection is never reused
    await client.close()
    done.set()
    server.close()
    await server.wait_closed()


async def test_a_stream_is_read_line_by_line_and_its_connection_reused():
    events = b"data: one\n\ndata: two\n\ndata: [DONE]\n\n"
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(events), events)
    server = _Server(lambda _: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    async with server as url:
        client = UpstreamClient(url)
        for _ in range(2):
            stream = await client.post_stream("/x", b"{}")
            assert stream.status == 200
            lines = []
            while line := await stream.readline():
                lines.append(line)
            stream.close()
            assert lines == [b"data: one\n", b"\n", b"data: two\n", b"\n", b"data: [DONE]\n", b"\n"]
        await client.close()
    assert server.connections == 1


async def test_a_stream_line_over_the_limit_raises_value_error(monkeypatch):
    monkeypatch.setattr(upstream_module, "MAX_LINE_BYTES", 1024)
    done = asyncio.Event()

    async def endless_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n" + b"x" * 5000 + b"\r\n")
        await writer.drain()
        await done.wait()  # the line never ends
        writer.close()

    server = await asyncio.start_server(endless_line, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = UpstreamClient(f"http://127.0.0.1:{port}")
    stream = await client.post_stream("/x", b"{}")
    with pytest.raises(ValueError):
        await stream.readline()
    stream.close()
    assert not client._idle and not client._busy  # abandoned half-way: closed, not pooled
    await client.close()
    done.set()
    server.close()
    await server.wait_closed()


async def test_unreachable_upstream_is_an_upstream_error():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = UpstreamClient(f"http://127.0.0.1:{port}")
    with pytest.raises(UpstreamError, match="could not connect"):
        await client.post("/x", b"{}")


def test_header_values_with_line_breaks_are_refused():
    with pytest.raises(ValueError, match="control character"):
        UpstreamClient("http://127.0.0.1:1", headers={"Authorization": "Bearer x\r\nX-Evil: 1"})
    with pytest.raises(ValueError, match="http"):
        UpstreamClient("ftp://example.com")


async def test_a_stream_closed_after_done_with_a_long_unread_tail_leaves_a_usable_connection(monkeypatch):
    """The reader paused the socket (its buffer over 2x the line limit); reuse resumes it."""
    monkeypatch.setattr(upstream_module, "MAX_LINE_BYTES", 1024)
    tail = b"data: [DONE]\n\n" + b": padding\n" * 500
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(tail), tail),
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ]
    )
    server = _Server(lambda _: next(answers))
    async with server as url:
        client = UpstreamClient(url)
        stream = await client.post_stream("/x", b"{}")
        assert await stream.readline() == b"data: [DONE]\n"
        await asyncio.sleep(0.05)  # let the rest of the answer arrive
        stream.close()
        reply = await asyncio.wait_for(client.post("/x", b"{}"), 10)
        assert reply.body == b"ok"
        await client.close()
