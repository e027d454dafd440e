"""The lean path for OpenAI-compatible endpoints: one HTTP client, raw SSE, only the fields we need.

``client: httpx`` (the default of ``kind: openai``) sends the same request body as the
openai SDK but skips its per-call machinery: no pydantic model per chunk, no request
options object, no retry wrapper (the runner retries). A streamed call is parsed line
by line; each ``data:`` event is decoded with :func:`rai_harness.jsoncodec.loads` (orjson,
the standard library's values) and only
``choices[0].delta.content``, ``finish_reason``, ``model`` and ``usage`` are read. On two
cores this is the difference between the event loop keeping up at concurrency 64 or
falling behind, which shows directly as late TTFT (see ``benchmarks/runner_overhead.py``
and ``benchmarks/RESULTS.md``). ``client: sdk`` keeps the SDK path.

Both paths share the HTTP client factory (:func:`~.openai_compat.make_http_client`: pool
sized to the concurrency, no redirects, bounded bodies through :mod:`.httpio`), the
error mapping (:mod:`.errors_map`) and the usage validation (:mod:`.tokens`), so they
classify every failure the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from rai_harness.errors import ProviderError
from rai_harness.jsoncodec import dumps_compact
from rai_harness.jsoncodec import loads as json_loads
from rai_harness.providers.base import BaseProvider, StreamTimer
from rai_harness.providers.errors_map import (
    map_openai_error,
    provider_error_for_body,
    stream_error_event,
    well_formed,
    without_secrets,
)
from rai_harness.providers.httpio import ResponseLimits, find_limit_error
from rai_harness.providers.openai_compat import (
    build_chat_kwargs,
    check_output_chars,
    make_http_client,
    usage_from_server,
)
from rai_harness.types import ChatRequest, Generation

__all__ = ["LeanOpenAIProvider", "SSEParser", "request_body"]


def request_body(model: str, request: ChatRequest, *, stream: bool) -> bytes:
    """The JSON body the SDK would send for ``request`` (``extra`` fields merged in)."""
    kwargs = build_chat_kwargs(model, request)
    extra = kwargs.pop("extra_body", None) or {}
    body: dict[str, Any] = {**kwargs, **extra}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return dumps_compact(body)


class SSEParser:
    """Incremental Server-Sent Events parser (WHATWG rules) that returns each event's data.

    Lines end at ``\\n``, ``\\r\\n`` or ``\\r``; ``data:`` lines of one event are joined with
    ``\\n``; a blank line dispatches the event; comments (``:``) and other fields are
    skipped. Line length is bounded upstream by the transport (``max_sse_line_bytes``).
    """

    __slots__ = ("_buffer", "_data")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """Add bytes; return the data of every event completed by them."""
        buffer = self._buffer + chunk if self._buffer else chunk
        hold = False
        if b"\r" in buffer:
            # A trailing \r may be the first half of \r\n: hold it back for the next chunk.
            hold = buffer.endswith(b"\r")
            if hold:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = buffer.split(b"\n")
        rest = lines.pop()
        self._buffer = rest + b"\r" if hold else rest
        events: list[bytes] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        return events

    def close(self) -> list[bytes]:
        """Dispatch what is left when the stream ends without a final blank line."""
        events = self.feed(b"\n\n") if (self._buffer or self._data) else []
        return events


class LeanOpenAIProvider(BaseProvider):
    """OpenAI-compatible Chat Completions over one pooled HTTP client, without the SDK.

    Args:
        base_url: API root ending in ``/v1``.
        api_key: Bearer key, or ``None`` for no ``Authorization`` header.
        model: Model name to send.
        stream: Stream (measures TTFT) or not.
        headers: Extra headers (literal and secret ones, already resolved).
        concurrency: Pool size (calls in flight).
        timeout_s: Connect/read/write/pool timeout of the HTTP client.
        limits: Response caps.
        secrets: Values to scrub from error messages.
        info: Non-secret facts for :meth:`describe`.
        http_client: A ready client (tests pass one with a mock transport).
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str,
        stream: bool = True,
        headers: Mapping[str, str] | None = None,
        concurrency: int = 8,
        timeout_s: float = 120.0,
        limits: ResponseLimits | None = None,
        secrets: Sequence[str] = (),
        info: Mapping[str, Any] | None = None,
        http_client: Any = None,
    ) -> None:
        self._limits = limits or ResponseLimits()
        self._client = http_client or make_http_client(concurrency, timeout_s, limits=self._limits, sdk=False)
        self._base_url = base_url.rstrip("/")
        self._url = self._base_url + "/chat/completions"
        self._model = model
        self._stream = stream
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._secrets = tuple(s for s in secrets if s)
        self._info = dict(info or {})

    def describe(self) -> dict[str, Any]:
        """Non-secret facts about the endpoint, recorded in the run summary."""
        return {**self._info, "base_url": self._base_url, "model": self._model, "stream": self._stream}

    async def load(self) -> None:
        """Nothing to warm: the path has no per-process schema building."""

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def generate(self, request: ChatRequest) -> Generation:
        """Make one call (no retries) and return the completion with measured timings.

        Raises:
            ProviderError: for every failure, classified as on the SDK path.
        """
        body = request_body(self._model, request, stream=self._stream)
        timer = StreamTimer()
        try:
            with timer.sending():  # TTFT and latency count from the request's send
                if self._stream:
                    generation = await self._generate_stream(body, request, timer)
                else:
                    generation = await self._generate_once(body, request, timer)
        except ProviderError:
            raise
        except Exception as exc:
            raise (find_limit_error(exc) or map_openai_error(exc, secrets=self._secrets)) from None
        return without_secrets(well_formed(generation), self._secrets)

    async def _status_error(self, response: Any) -> ProviderError:
        body = await response.aread()
        return provider_error_for_body(
            response.status_code, body, headers=response.headers, secrets=self._secrets
        )

    async def _generate_once(self, body: bytes, request: ChatRequest, timer: StreamTimer) -> Generation:
        response = await self._client.post(self._url, content=body, headers=self._headers)
        latency = timer.elapsed_s()
        if not 200 <= response.status_code < 300:
            raise await self._status_error(response)
        # The body is at most max_response_bytes (the transport's cap), so parsing it is bounded.
        data = json_loads(response.content)
        if not isinstance(data, dict):
            raise _bad("the server's reply is not a JSON object")
        if data.get("error"):
            raise stream_error_event(data, secrets=self._secrets)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise _bad("the server's reply is not a chat completion with choices")
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise _bad("the chat completion's choice has no message")
        content = message.get("content")
        if content is None:
            content = message.get("refusal") or ""  # a refusal is an answer for a safety evaluation
        if not isinstance(content, str):
            raise _bad("the message content is not a string")
        check_output_chars(len(content), self._limits)
        raw_usage = data.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        return Generation(
            text=content,
            usage=usage_from_server(
                usage.get("prompt_tokens"), usage.get("completion_tokens"), request, content
            ),
            latency_s=latency,
            ttft_s=None,
            connect_s=timer.connect_s,
            finish_reason=choice.get("finish_reason") or None,
            model=data.get("model") or self._model,
            streamed=False,
        )

    async def _generate_stream(self, body: bytes, request: ChatRequest, timer: StreamTimer) -> Generation:
        parts: list[str] = []
        chars = 0
        finish: str | None = None
        model: str | None = None
        usage: dict[str, Any] | None = None
        events = 0
        parser = SSEParser()
        async with self._client.stream("POST", self._url, content=body, headers=self._headers) as response:
            if not 200 <= response.status_code < 300:
                raise await self._status_error(response)
            done = False
            chunks = response.aiter_raw()
            async for chunk in chunks:
                for data in parser.feed(chunk):
                    if data == b"[DONE]":
                        done = True
                        break
                    event = json_loads(data)
                    events += 1
                    if not isinstance(event, dict):
                        raise _bad("an SSE event is not a JSON object")
                    if event.get("error"):
                        raise stream_error_event(event, secrets=self._secrets)
                    if event.get("model"):
                        model = event["model"]
                    if isinstance(event.get("usage"), dict):
                        usage = event["usage"]
                    choices = event.get("choices") or ()
                    if not isinstance(choices, list | tuple):
                        raise _bad("an SSE event's choices is not a list")
                    for choice in choices:
                        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                            continue
                        delta = choice.get("delta")
                        content = delta.get("content") if isinstance(delta, dict) else None
                        if content and isinstance(content, str):
                            timer.mark_first_token()
                            chars += len(content)
                            check_output_chars(chars, self._limits)
                            parts.append(content)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]  # a string: checked by well_formed
                if done:
                    break
            latency = timer.elapsed_s()
            if done:
                await _drain_after_done(chunks)
        if events == 0:
            raise _bad("the stream ended without any chunk")
        if finish is None:
            # Every event arrived intact but the stream stopped before the model finished: a
            # cut connection that fell on an event boundary. Partial text is not a valid sample.
            # A usage count does not prove the end (servers with continuous usage stats, vLLM,
            # put one on every chunk), and neither does [DONE] alone: the SDK client cannot see
            # it, and both clients must take the same answers.
            raise ProviderError(
                f"the stream ended before the model finished ({events} chunks, no finish_reason)",
                retryable=True,
                error_type="connection",
            )
        text = "".join(parts)
        usage = usage or {}
        return Generation(
            text=text,
            usage=usage_from_server(
                usage.get("prompt_tokens"), usage.get("completion_tokens"), request, text
            ),
            latency_s=latency,
            ttft_s=timer.ttft_s,
            connect_s=timer.connect_s,
            finish_reason=finish,
            # An odd-typed model is refused by well_formed, as in a whole answer.
            model=model or self._model,
            streamed=True,
        )


#: Seconds the rest of a body after ``[DONE]`` is read for (a server ends it at once).
DRAIN_AFTER_DONE_S = 0.5


async def _drain_after_done(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows ``[DONE]``, for at most :data:`DRAIN_AFTER_DONE_S`.

    Normally that is only the end of the chunked body, and reading it lets the connection go
    back to the pool (leaving at once would close it and cost a new connect per call). A
    server that holds the body open, or sends more, loses the connection, never the answer.
    """
    with contextlib.suppress(Exception):  # the answer is complete: nothing here can fail it
        async with asyncio.timeout(DRAIN_AFTER_DONE_S):
            async for _ in chunks:
                pass


def _bad(message: str) -> ProviderError:
    return ProviderError(message, retryable=True, error_type="bad_response")
