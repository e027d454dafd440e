"""A local OpenAI-compatible chat server with switchable, reproducible fault injection.

Provider tests, runner tests, the resume test and the overhead benchmark all talk to
this server instead of a real vendor, so they run offline, fast and deterministically.
It speaks the OpenAI Chat Completions wire format (plain and SSE streaming) on three
route styles (OpenAI, Azure deployments, Vertex's OpenAI-compatible endpoint) and can
inject the failures a real API produces: 429/500/503 with ``Retry-After``, hangs,
dropped connections and malformed JSON. Hostile modes (``hostile``) send what a broken
or malicious endpoint can: a gzip bomb, an oversized body, an endless SSE line, an endless
reply, impossible ``usage`` counts. With ``stamp`` on, every streamed content chunk carries
its send time (``"x_sent_s"``, ``time.monotonic()``: CLOCK_MONOTONIC, the clock of
``time.perf_counter`` on Linux, shared by every process on the machine) and the request
record keeps ``first_sent`` and the prompt, so a benchmark can compute the harness's TTFT
error per call: measured TTFT minus (first chunk sent - request arrived).

Faults are decided per request from ``(seed, sha256(body), times this body was seen
before)``: the same run against the same config sees the same faults, and a retry of a
body (a new attempt number) draws again, so retries can succeed.

Two ways to run it:

* thread mode (default): an aiohttp app on its own event loop in a daemon thread, for
  tests; cheap to start.
* subprocess mode: ``python -m rai_harness.testing.server`` in a child process, for
  kill -9 tests and benchmarks, so the server's CPU is not charged to the client.

Only loopback addresses are accepted: this is a test double, never a service.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import functools
import hashlib
import hmac
import http.client
import json
import math
import os
import re
import select
import signal
import subprocess as _subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from rai_harness.loopback import is_loopback

__all__ = ["FAULT_KINDS", "HOSTILE_KINDS", "FakeOpenAIServer", "FaultConfig", "main"]

#: Fault kinds the server can inject, in the fixed order used for the weighted draw.
FAULT_KINDS: tuple[str, ...] = ("429", "500", "503", "timeout", "drop", "malformed")

#: Hostile replies (``FaultConfig.hostile``), each ``hostile_bytes`` large:
#: ``gzip_bomb`` (``Content-Encoding: gzip``, tiny on the wire), ``huge_body`` (a valid
#: completion whose content is that long), ``sse_line`` (a streamed data line that never
#: ends), ``bad_usage`` (``usage`` with a negative and a 10**18 count).
HOSTILE_KINDS: tuple[str, ...] = ("gzip_bomb", "huge_body", "sse_line", "bad_usage")

#: How many request records ``stats()["requests"]`` keeps (the most recent ones).
MAX_REQUEST_RECORDS = 20_000

_WORD = re.compile(r"\s*\S+")


def _check_delay(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_optional_delay(name: str, value: Any) -> float | None:
    return None if value is None else _check_delay(name, value)


@dataclass(frozen=True)
class FaultConfig:
    """How the fake server behaves. Every field can be changed at run time with ``configure``.

    Attributes:
        latency_s: Delay before the response starts (non-stream: before the whole
            response; stream: before the response headers, added to ``ttft_s``).
        ttft_s: Stream only: further delay before the first content chunk.
        inter_token_s: Stream only: delay between content chunks.
        fault_rate: Probability that a request gets a fault.
        faults: Relative weights among the kinds in :data:`FAULT_KINDS`.
        retry_after_s: ``Retry-After`` header value (seconds) on 429/503 when set.
        retry_after_ms: ``retry-after-ms`` header value on 429/503 when set.
        hang_s: ``timeout`` fault: sleep this long before answering normally.
        seed: Seed of the fault draws.
        reply: ``"echo"`` replies ``"Echo: " + last user message``; any other string is
            the fixed reply.
        script: Substring -> reply; the first key found in the last user message wins
            over ``reply``.
        max_reply_words: Server-side cap on reply words (like ``max_tokens``); a cut
            reply has ``finish_reason`` ``"length"``.
        omit_usage: Never send ``usage`` (exercises token estimation).
        require_api_key: When set, a request without ``Authorization: Bearer <key>`` or
            ``api-key: <key>`` gets a 401.
        hostile: One of :data:`HOSTILE_KINDS`, or None.
        hostile_match: Only requests whose last user message contains this get the
            hostile reply (empty: every request), so a healthy call can run beside it.
        hostile_bytes: Size of the hostile payload (expanded size for the gzip bomb).
        stamp: Stamp each streamed content chunk with its send time (see module doc).
    """

    latency_s: float = 0.0
    ttft_s: float = 0.0
    inter_token_s: float = 0.0
    fault_rate: float = 0.0
    faults: Mapping[str, float] = field(default_factory=lambda: {"429": 1.0})
    retry_after_s: float | None = None
    retry_after_ms: float | None = None
    hang_s: float = 30.0
    seed: int = 0
    reply: str = "echo"
    script: Mapping[str, str] = field(default_factory=dict)
    max_reply_words: int | None = None
    omit_usage: bool = False
    require_api_key: str | None = None
    hostile: str | None = None
    hostile_match: str = ""
    hostile_bytes: int = 64 * 1024 * 1024
    stamp: bool = False

    def __post_init__(self) -> None:
        # Validate here so a bad value fails in the test that set it, not as an odd
        # server response later; normalise numbers so the config round-trips through JSON.
        setattr_ = object.__setattr__
        for name in ("latency_s", "ttft_s", "inter_token_s", "hang_s"):
            setattr_(self, name, _check_delay(name, getattr(self, name)))
        for name in ("retry_after_s", "retry_after_ms"):
            setattr_(self, name, _check_optional_delay(name, getattr(self, name)))
        rate = _check_delay("fault_rate", self.fault_rate)
        if rate > 1:
            raise ValueError(f"fault_rate must be in [0, 1], got {rate!r}")
        setattr_(self, "fault_rate", rate)
        if not isinstance(self.faults, Mapping):
            raise ValueError("faults must be a mapping of fault kind to weight")
        faults: dict[str, float] = {}
        for kind, weight in self.faults.items():
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
            faults[kind] = _check_delay(f"faults[{kind!r}]", weight)
        if rate > 0 and sum(faults.values()) <= 0:
            raise ValueError("fault_rate > 0 needs at least one fault kind with a positive weight")
        setattr_(self, "faults", faults)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, got {self.seed!r}")
        if not isinstance(self.reply, str):
            raise ValueError("reply must be a string")
        if not isinstance(self.script, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.script.items()
        ):
            raise ValueError("script must map strings to strings")
        setattr_(self, "script", dict(self.script))
        words = self.max_reply_words
        if words is not None and (isinstance(words, bool) or not isinstance(words, int) or words < 0):
            raise ValueError(f"max_reply_words must be None or an int >= 0, got {words!r}")
        if not isinstance(self.omit_usage, bool):
            raise ValueError("omit_usage must be a bool")
        key = self.require_api_key
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError("require_api_key must be None or a non-empty string")
        if self.hostile is not None and self.hostile not in HOSTILE_KINDS:
            raise ValueError(
                f"unknown hostile kind {self.hostile!r}; expected one of {', '.join(HOSTILE_KINDS)}"
            )
        if not isinstance(self.hostile_match, str):
            raise ValueError("hostile_match must be a string")
        size = self.hostile_bytes
        if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= 2**31:
            raise ValueError(f"hostile_bytes must be an int in (0, 2**31], got {size!r}")
        if not isinstance(self.stamp, bool):
            raise ValueError("stamp must be a bool")

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-able dict (what the control endpoint accepts)."""
        out = dataclasses.asdict(self)
        out["faults"] = dict(self.faults)
        out["script"] = dict(self.script)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultConfig:
        """Build a config from a dict, rejecting unknown keys (a typo must not pass silently)."""
        return cls().updated(**data)

    def updated(self, **changes: Any) -> FaultConfig:
        """Return a copy with ``changes`` applied (validated).

        Raises:
            ValueError: on an unknown field or a bad value.
        """
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown FaultConfig field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)


class _Stats:
    """Counters of one epoch (between resets). Replaced, not cleared, on reset."""

    __slots__ = ("calls", "completed", "faults", "requests", "seen")

    def __init__(self) -> None:
        self.calls = 0
        self.completed = 0
        self.faults: dict[str, int] = {}
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_REQUEST_RECORDS)
        # sha256(body) -> how many times that body was seen: the attempt number of the draw.
        self.seen: dict[bytes, int] = {}


def _last_user(messages: Sequence[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


_BOMB_HEAD = (
    b'{"id":"chatcmpl-bomb","object":"chat.completion","created":0,"model":"bomb","choices":'
    b'[{"index":0,"message":{"role":"assistant","content":"'
)
_BOMB_TAIL = b'"},"finish_reason":"stop"}]}'


@functools.lru_cache(maxsize=4)
def _gzip_bomb(expanded: int) -> bytes:
    """A gzip body that expands to a completion of ``expanded`` bytes, built in 1 MiB steps
    (the server never holds the expanded text: in thread mode it shares the test's memory)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [packer.compress(_BOMB_HEAD)]
    block = b"A" * (1024 * 1024)
    left = expanded
    while left > 0:
        out.append(packer.compress(block[: min(left, len(block))]))
        left -= len(block)
    out.append(packer.compress(_BOMB_TAIL))
    out.append(packer.flush())
    return b"".join(out)


async def _hostile_reply(request: web.Request, config: FaultConfig, stream: bool) -> web.StreamResponse:
    """Send the configured hostile reply, in 64 KiB writes (never the whole payload in memory)."""
    kind, size = config.hostile, config.hostile_bytes
    if kind == "bad_usage":
        usage = {"prompt_tokens": -5, "completion_tokens": 10**18, "total_tokens": 10**18}
        if stream:
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": "Hello there"}, "finish_reason": "stop"}],
                "usage": usage,
            }
            body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
            return web.Response(body=body, content_type="text/event-stream")
        payload = {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello there"},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        return web.json_response(payload)
    if kind == "gzip_bomb":
        # Content-Length is the compressed size; aiohttp must not compress again.
        return web.Response(
            body=_gzip_bomb(size),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream" if stream else "application/json"}
    )
    await response.prepare(request)
    block = b"A" * (64 * 1024)
    try:
        if kind == "sse_line":
            await response.write(b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"')
        elif stream:  # huge_body, streamed: one content chunk per 64 KiB, a reply without end
            block = (
                b'data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
                b'"delta":{"content":"' + b"A" * (64 * 1024) + b'"},"finish_reason":null}]}\n\n'
            )
        else:
            await response.write(_BOMB_HEAD)
        sent = 0
        while sent < size:
            await response.write(block)
            sent += len(block)
        if not stream:
            await response.write(_BOMB_TAIL)
        await response.write_eof()
    except ConnectionError:
        pass  # the client gave up (its cap): the point of the exercise
    return response


def _error_body(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


_FAULT_RESPONSES: dict[str, tuple[int, dict[str, Any]]] = {
    "429": (
        429,
        _error_body(
            "Rate limit reached for requests (fake server). Please try again later.",
            "requests",
            "rate_limit_exceeded",
        ),
    ),
    "500": (
        500,
        _error_body(
            "The server had an error while processing your request (fake server).", "server_error", None
        ),
    ),
    "503": (
        503,
        _error_body(
            "The engine is currently overloaded, please try again later (fake server).",
            "server_error",
            "overloaded",
        ),
    ),
}


def _text_of(content: Any) -> str:
    """Text of a message ``content``: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    return ""


def _format_number(value: float) -> str:
    # Integers print without ".0" so strict Retry-After parsers (integer seconds) accept them.
    return str(int(value)) if value == int(value) else repr(value)


class _BadRequest(Exception):
    pass


class _FakeOpenAI:
    """State and request handlers of one server (one event loop)."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self.stats = _Stats()
        self.in_flight = 0
        self.max_in_flight = 0
        self._ids = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    def make_app(self) -> web.Application:
        """Build the aiohttp application with every route."""
        # Prompts can be long (few-shot, long-context suites); the 1 MiB default is too small.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self.chat)
        app.router.add_post(
            "/{version:v1|v1beta1}/projects/{project}/locations/{location}/endpoints/openapi/chat/completions",
            self.chat,
        )
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/_control/config", self.get_config)
        app.router.add_post("/_control/config", self.set_config)
        app.router.add_get("/_control/stats", self.get_stats)
        app.router.add_post("/_control/reset", self.reset)
        return app

    def cancel_in_flight(self) -> None:
        """Cancel every chat handler still running (hung ``timeout`` faults), for a fast stop."""
        for task in list(self._tasks):
            task.cancel()

    # -- control -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The ``stats()`` dict."""
        stats = self.stats
        return {
            "calls": stats.calls,
            "completed": stats.completed,
            "faults": dict(stats.faults),
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
            "by_body": len(stats.seen),
            "requests": list(stats.requests),
        }

    async def get_config(self, request: web.Request) -> web.Response:
        """GET /_control/config: the current config."""
        return web.json_response(self.config.to_dict())

    async def set_config(self, request: web.Request) -> web.Response:
        """POST /_control/config: apply a partial update; 400 (nothing changed) on a bad value."""
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object")
            self.config = self.config.updated(**changes)
        except (ValueError, TypeError) as exc:
            return web.json_response(_error_body(str(exc), "invalid_request_error", None), status=400)
        return web.json_response(self.config.to_dict())

    async def get_stats(self, request: web.Request) -> web.Response:
        """GET /_control/stats."""
        return web.json_response(self.snapshot())

    async def reset(self, request: web.Request) -> web.Response:
        """POST /_control/reset: new counters and attempt history.

        Requests still in flight keep counting into the old epoch's counters, so a
        straggler from a previous test cannot leak into the next one's numbers; the
        in-flight gauge stays true (it is a current state, not a counter).
        """
        self.stats = _Stats()
        self.max_in_flight = self.in_flight
        return web.json_response({"ok": True})

    # -- API ---------------------------------------------------------------------------------

    def _auth_error(self) -> web.Response:
        return web.json_response(
            _error_body(
                "Incorrect API key provided (fake server).", "invalid_request_error", "invalid_api_key"
            ),
            status=401,
        )

    def _authorized(self, request: web.Request) -> tuple[bool, bool, str | None]:
        """Return (allowed, had a credential header, bearer token)."""
        authorization = request.headers.get("Authorization")
        api_key = request.headers.get("api-key")
        bearer = None
        if authorization is not None and authorization[:7].lower() == "bearer ":
            bearer = authorization[7:].strip()
        required = self.config.require_api_key
        allowed = required is None or any(
            value is not None and hmac.compare_digest(value.encode(), required.encode())
            for value in (bearer, api_key)
        )
        return allowed, authorization is not None or api_key is not None, bearer

    async def models(self, request: web.Request) -> web.Response:
        """GET /v1/models: one fake model."""
        if not self._authorized(request)[0]:
            return self._auth_error()
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "rai-harness"}],
            }
        )

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """Every chat route: count the request, then answer (or fail) as configured."""
        stats = self.stats
        stats.calls += 1
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        record: dict[str, Any] = {
            "t": time.monotonic(),
            "fault": None,
            "stream": False,
            "auth": False,
            "bearer": None,
            "status": None,
        }
        stats.requests.append(record)
        try:
            return await self._chat(request, stats, record)
        finally:
            self.in_flight -= 1
            if task is not None:
                self._tasks.discard(task)

    def _draw_fault(self, stats: _Stats, body: bytes) -> str | None:
        config = self.config
        digest = hashlib.sha256(body).digest()
        attempt = stats.seen.get(digest, 0)
        stats.seen[digest] = attempt + 1
        if config.fault_rate <= 0:
            return None
        draw = hashlib.sha256(b"%d:%d:" % (config.seed, attempt) + digest).digest()
        if int.from_bytes(draw[:8], "big") / 2.0**64 >= config.fault_rate:
            return None
        weights = [(kind, config.faults.get(kind, 0.0)) for kind in FAULT_KINDS]
        total = sum(w for _, w in weights)
        point = int.from_bytes(draw[8:16], "big") / 2.0**64 * total
        chosen = None
        for kind, weight in weights:
            if weight <= 0:
                continue
            chosen = kind
            if point < weight:
                break
            point -= weight
        return chosen

    async def _chat(self, request: web.Request, stats: _Stats, record: dict[str, Any]) -> web.StreamResponse:
        config = self.config
        allowed, has_credential, bearer = self._authorized(request)
        record["auth"] = has_credential
        record["bearer"] = bearer
        body = await request.read()
        if not allowed:
            record["status"] = 401
            return self._auth_error()
        try:
            parsed = self._parse(body)
        except _BadRequest as exc:
            record["status"] = 400
            return web.json_response(_error_body(str(exc), "invalid_request_error", None), status=400)
        messages, stream, include_usage, limit, model = parsed
        record["stream"] = stream
        if config.stamp:
            record["prompt"] = _last_user(messages)[:200]
        if config.hostile is not None and config.hostile_match in _last_user(messages):
            record["fault"] = "hostile:" + config.hostile
            record["status"] = 200
            return await _hostile_reply(request, config, stream)

        fault = self._draw_fault(stats, body)
        record["fault"] = fault
        if fault is not None:
            stats.faults[fault] = stats.faults.get(fault, 0) + 1
        if fault in _FAULT_RESPONSES:
            status, error = _FAULT_RESPONSES[fault]
            record["status"] = status
            headers = {}
            if status in (429, 503):
                if config.retry_after_s is not None:
                    headers["Retry-After"] = _format_number(config.retry_after_s)
                if config.retry_after_ms is not None:
                    headers["retry-after-ms"] = _format_number(config.retry_after_ms)
            return web.json_response(error, status=status, headers=headers)
        if fault == "timeout":
            await asyncio.sleep(config.hang_s)

        reply = self._reply_text(messages, config)
        pieces = _WORD.findall(reply)
        if config.max_reply_words is not None:
            limit = config.max_reply_words if limit is None else min(limit, config.max_reply_words)
        finish = "stop"
        if limit is not None and len(pieces) > limit:
            pieces = pieces[:limit]
            finish = "length"
            text = "".join(pieces)
        else:
            text = reply
            tail = reply[len("".join(pieces)) :]
            if tail and pieces:
                pieces[-1] += tail  # keep trailing whitespace so stream and non-stream texts match
        prompt_tokens = sum(len(_text_of(m.get("content")).split()) for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(pieces),
            "total_tokens": prompt_tokens + len(pieces),
        }
        # Azure names the model by deployment in the path, as the real service reports it.
        model = request.match_info.get("deployment") or model
        self._ids += 1
        completion_id = f"chatcmpl-fake{self._ids:012d}"
        record["status"] = 200
        if stream:
            return await self._stream(
                request,
                stats,
                config,
                fault,
                completion_id,
                model,
                pieces,
                finish,
                usage,
                include_usage,
                record,
            )
        if config.latency_s:
            await asyncio.sleep(config.latency_s)
        if fault == "drop":
            self._drop(request)
            return web.Response()
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
        }
        if not config.omit_usage:
            payload["usage"] = usage
        data = json.dumps(payload).encode()
        if fault == "malformed":
            # A 200 whose JSON is cut in half: what a proxy that truncates bodies produces.
            return web.Response(body=data[: len(data) // 2], content_type="application/json")
        stats.completed += 1
        return web.Response(body=data, content_type="application/json")

    @staticmethod
    def _parse(body: bytes) -> tuple[list[dict[str, Any]], bool, bool, int | None, str]:
        """Return (messages, stream, include_usage, max tokens, model) or raise :class:`_BadRequest`."""
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise _BadRequest(f"the body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise _BadRequest("the body must be a JSON object")
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise _BadRequest("'messages' must be a non-empty list of objects")
        limit = data.get("max_completion_tokens")
        if limit is None:
            limit = data.get("max_tokens")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise _BadRequest("max_tokens must be a non-negative integer")
        stream = bool(data.get("stream"))
        options = data.get("stream_options")
        include_usage = stream and isinstance(options, dict) and bool(options.get("include_usage"))
        model = data.get("model")
        return (
            messages,
            stream,
            include_usage,
            limit,
            model if isinstance(model, str) and model else "fake-model",
        )

    @staticmethod
    def _reply_text(messages: Sequence[dict[str, Any]], config: FaultConfig) -> str:
        last_user = _last_user(messages)
        for key, value in config.script.items():
            if key in last_user:
                return value
        return "Echo: " + last_user if config.reply == "echo" else config.reply

    @staticmethod
    def _drop(request: web.Request) -> None:
        # Close the transport: buffered bytes are flushed, then FIN, and aiohttp's later
        # attempt to finish the response fails as a client disconnect (logged at debug).
        transport = request.transport
        if transport is not None:
            transport.close()

    async def _stream(
        self,
        request: web.Request,
        stats: _Stats,
        config: FaultConfig,
        fault: str | None,
        completion_id: str,
        model: str,
        pieces: list[str],
        finish: str,
        usage: dict[str, int],
        include_usage: bool,
        record: dict[str, Any],
    ) -> web.StreamResponse:
        delay = config.latency_s + config.ttft_s
        if delay:
            await asyncio.sleep(delay)
        # Chunks are built from a string template: json.dumps of a whole chunk per token
        # would dominate the server's CPU in the benchmark.
        head = (
            f'{{"id":"{completion_id}","object":"chat.completion.chunk","created":{int(time.time())},'
            f'"model":{json.dumps(model)},"system_fingerprint":"fp_fake","choices":[{{"index":0,"delta":'
        )
        usage_null = ',"usage":null' if include_usage and not config.omit_usage else ""
        open_tail = ',"logprobs":null,"finish_reason":null}]' + usage_null + "}\n\n"

        def content(piece: str) -> str:
            return "data: " + head + '{"content":' + json.dumps(piece) + "}" + open_tail

        first = "data: " + head + '{"role":"assistant","content":""}' + open_tail
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        try:
            await response.prepare(request)
            if fault == "drop":
                # Half the content, then the connection goes: no finish chunk, no [DONE],
                # no terminating HTTP chunk.
                await self._write_paced(
                    response,
                    first,
                    [content(p) for p in pieces[: len(pieces) // 2]],
                    [],
                    config.inter_token_s,
                )
                self._drop(request)
                return response
            if fault == "malformed":
                await response.write((first + "data: {not json\n\ndata: [DONE]\n\n").encode())
                await response.write_eof()
                return response
            end = [
                "data: "
                + head
                + '{},"logprobs":null,"finish_reason":"'
                + finish
                + '"}]'
                + usage_null
                + "}\n\n"
            ]
            if include_usage and not config.omit_usage:
                end.append(
                    "data: "
                    + json.dumps(
                        {
                            "id": completion_id,
                            "object": "chat.completion.chunk",
                            "created": int(time.time()),
                            "model": model,
                            "system_fingerprint": "fp_fake",
                            "choices": [],
                            "usage": usage,
                        }
                    )
                    + "\n\n"
                )
            end.append("data: [DONE]\n\n")
            if config.stamp:
                await self._write_stamped(response, record, head, first, pieces, open_tail, end, config)
            else:
                await self._write_paced(
                    response, first, [content(p) for p in pieces], end, config.inter_token_s
                )
            await response.write_eof()
        except ConnectionError:
            # The client went away mid-stream (its timeout, a cancelled task): not completed.
            return response
        stats.completed += 1
        return response

    @staticmethod
    async def _write_stamped(
        response: web.StreamResponse,
        record: dict[str, Any],
        head: str,
        first: str,
        pieces: list[str],
        open_tail: str,
        end: list[str],
        config: FaultConfig,
    ) -> None:
        """Like :meth:`_write_paced`, each content chunk stamped with the time it is written."""
        for i, piece in enumerate(pieces):
            if i and config.inter_token_s:
                await asyncio.sleep(config.inter_token_s)
            sent = time.monotonic()
            chunk = (
                "data: "
                + head
                + '{"content":'
                + json.dumps(piece)
                + "}"
                + open_tail[:-3]
                + f',"x_sent_s":{sent!r}'
                + "}\n\n"
            )
            if i == 0:
                record["first_sent"] = sent
                chunk = first + chunk
            await response.write(chunk.encode())
        await response.write("".join(end).encode())

    @staticmethod
    async def _write_paced(
        response: web.StreamResponse, first: str, chunks: list[str], end: list[str], inter_token_s: float
    ) -> None:
        """Write the role chunk with the first content chunk, the rest ``inter_token_s`` apart."""
        if not inter_token_s or len(chunks) <= 1:
            # One write for the whole stream: the cheap path the benchmark takes.
            await response.write("".join([first, *chunks, *end]).encode())
            return
        await response.write((first + chunks[0]).encode())
        for chunk in chunks[1:]:
            await asyncio.sleep(inter_token_s)
            await response.write(chunk.encode())
        if end:
            await response.write("".join(end).encode())


# -- serving ------------------------------------------------------------------------------------


def _check_loopback(host: str) -> None:
    if not is_loopback(host):
        raise ValueError(f"the fake server only binds loopback addresses (127.0.0.1, ::1), got {host!r}")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _serve(
    state: _FakeOpenAI, host: str, port: int, on_ready: Callable[[int], None], stop: asyncio.Event
) -> None:
    """Serve until ``stop`` is set, then shut down quickly (hung handlers are cancelled)."""
    runner = web.AppRunner(
        state.make_app(),
        access_log=None,  # per-request logging would cost more than the handler itself
        handler_cancellation=True,  # a client that hangs up cancels its hung handler
        shutdown_timeout=1.0,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        on_ready(int(runner.addresses[0][1]))
        await stop.wait()
    finally:
        state.cancel_in_flight()
        await runner.cleanup()


def _read_line(stream: Any, timeout_s: float) -> bytes:
    """Read one line from a pipe, giving up after ``timeout_s`` (the child may die silently)."""
    fd = stream.fileno()
    deadline = time.monotonic() + timeout_s
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf


class FakeOpenAIServer:
    """Start a fake OpenAI server on a free loopback port (context manager).

    Args:
        config: Initial behaviour (default: no faults, echo replies).
        subprocess: Run the server in a child process instead of a thread.
        host: Loopback address to bind.
        port: Port to bind (0: a free one).
        startup_timeout_s: How long to wait for the server to listen.

    Example:
        >>> with FakeOpenAIServer(FaultConfig(fault_rate=0.2)) as srv:  # doctest: +SKIP
        ...     client = AsyncOpenAI(base_url=srv.base_url, api_key="x")
    """

    def __init__(
        self,
        config: FaultConfig | None = None,
        *,
        subprocess: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout_s: float = 30.0,
    ) -> None:
        _check_loopback(host)
        self.config = config or FaultConfig()
        self.subprocess = subprocess
        self.host = host
        #: The bound port once started (the requested one, 0 for any, until then).
        self.port = port
        self._bind_port = port
        self.startup_timeout_s = startup_timeout_s
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._proc: _subprocess.Popen[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether the server is listening."""
        return self._thread is not None or self._proc is not None

    @property
    def pid(self) -> int | None:
        """The server process's id in subprocess mode (for CPU accounting); ``None`` otherwise."""
        return self._proc.pid if self._proc is not None else None

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if not self.started:
            raise RuntimeError("the fake server is not started")
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (the OpenAI SDK's ``base_url``)."""
        return self.root_url + "/v1"

    def start(self) -> FakeOpenAIServer:
        """Start listening; returns self. Raises ``RuntimeError`` if the server fails to start."""
        if self.started:
            return self
        if self.subprocess:
            self._start_process()
        else:
            self._start_thread()
        return self

    def stop(self) -> None:
        """Stop the server and wait for it (idempotent)."""
        if self._proc is not None:
            self._stop_process()
        if self._thread is not None:
            self._stop_thread()

    close = stop

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start_thread(self) -> None:
        state = _FakeOpenAI(self.config)
        self._ready.clear()
        self._error = None

        def on_ready(port: int) -> None:
            self.port = port
            self._ready.set()

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await _serve(state, self.host, self._bind_port, on_ready, self._stop)

        def target() -> None:
            try:
                asyncio.run(serve())
            except BaseException as exc:  # report to start(), which re-raises in the caller's thread
                self._error = exc
            finally:
                self._ready.set()

        thread = threading.Thread(target=target, name="fake-openai-server", daemon=True)
        thread.start()
        if not self._ready.wait(self.startup_timeout_s) or self._error is not None:
            error = self._error
            self._thread = thread
            self._stop_thread()
            raise RuntimeError(f"the fake server did not start: {error!r}") from error
        self._thread = thread

    def _stop_thread(self) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if loop is not None and stop is not None:
            # RuntimeError: the loop already ended (it failed to start).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if thread is not None:
            thread.join(timeout=15)
        self._thread = self._loop = self._stop = None

    def _start_process(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "rai_harness.testing.server",
            "--host",
            self.host,
            "--port",
            str(self._bind_port),
            "--config",
            json.dumps(self.config.to_dict()),
            "--exit-on-stdin-eof",
        ]
        proc = _subprocess.Popen(cmd, stdin=_subprocess.PIPE, stdout=_subprocess.PIPE)
        self._proc = proc
        assert proc.stdout is not None
        line = _read_line(proc.stdout, self.startup_timeout_s).decode(errors="replace").strip()
        if not line.startswith("READY "):
            self._stop_process()
            raise RuntimeError(f"the fake server process did not start (said {line!r})")
        url = line.split(" ", 1)[1]
        self.port = int(url.rsplit(":", 1)[1].split("/", 1)[0])

    def _stop_process(self) -> None:
        proc = self._proc
        if proc is None:
            return
        # Closing stdin is the polite stop (the child watches for EOF, which also ends it
        # if this process dies); SIGTERM, then SIGKILL, if it does not go.
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except _subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except _subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self._proc = None

    # -- control -----------------------------------------------------------------------------

    def _control(self, method: str, path: str, payload: Any = None) -> Any:
        # http.client, not httpx/urllib: those honour *_PROXY variables, and control
        # traffic must go straight to the loopback server.
        if not self.started:
            raise RuntimeError("the fake server is not started")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            body = None if payload is None else json.dumps(payload).encode()
            headers = {"Content-Type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = json.loads(response.read() or b"null")
        finally:
            conn.close()
        if response.status == 400:
            raise ValueError(data["error"]["message"])
        if response.status != 200:
            raise RuntimeError(f"fake server control {path} answered {response.status}")
        return data

    def configure(self, **changes: Any) -> FaultConfig:
        """Update some fields of the running server's config; returns the new config.

        Raises:
            ValueError: on an unknown field or a bad value (the config is left unchanged).
        """
        self.config = FaultConfig.from_dict(self._control("POST", "/_control/config", changes))
        return self.config

    def stats(self) -> dict[str, Any]:
        """Counters since start or the last :meth:`reset` (see the module docs for keys)."""
        result: dict[str, Any] = self._control("GET", "/_control/stats")
        return result

    def reset(self) -> None:
        """Zero the counters and the per-body attempt history (the config is kept)."""
        self._control("POST", "/_control/reset", {})


# -- CLI ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server in the foreground; print ``READY <base_url>`` once listening."""
    parser = argparse.ArgumentParser(
        prog="python -m rai_harness.testing.server", description="Fake OpenAI-compatible server for tests."
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=0, help="port (0: a free one)")
    parser.add_argument("--config", default="{}", help="FaultConfig fields as a JSON object")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when stdin closes (the parent's handle, so the server never outlives it)",
    )
    args = parser.parse_args(argv)
    try:
        _check_loopback(args.host)
        raw = json.loads(args.config)
        if not isinstance(raw, dict):
            raise ValueError("--config must be a JSON object")
        config = FaultConfig.from_dict(raw)
    except ValueError as exc:
        parser.error(str(exc))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if args.exit_on_stdin_eof:

            def watch_stdin() -> None:
                try:
                    while sys.stdin.buffer.read(4096):
                        pass
                finally:
                    with contextlib.suppress(RuntimeError):  # the loop already ended
                        loop.call_soon_threadsafe(stop.set)

            threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()

        def on_ready(port: int) -> None:
            print(f"READY http://{_url_host(args.host)}:{port}/v1", flush=True)

        await _serve(_FakeOpenAI(config), args.host, args.port, on_ready, stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
