"""``rai guard serve``: the guard as an OpenAI-compatible proxy and a rails-only checks API.

Routes (Starlette app, served by uvicorn):

* ``POST /v1/chat/completions``: OpenAI-compatible proxy. The input rails check every
  text of every message; a blocked prompt is answered here (``finish_reason:
  "content_filter"``, the verdict in ``rai_guard`` and the ``X-RAI-Guard-*`` headers) and
  never reaches the upstream; otherwise the request goes upstream with its messages
  redacted and every other field untouched, and the output rails check the answer. A
  streamed answer is checked in windows by the library's streaming guard
  (:meth:`Guard.astream_output`); a blocked window ends the stream with a
  ``content_filter`` chunk.
* ``POST /v1/guardrail/checks``: rails only, no upstream: ``texts`` or ``messages`` in,
  per-text verdicts with per-rail scores, findings (offsets, labels) and latency out.
* ``GET /healthz``: 200 once the classifiers are loaded and warmed up, 503 before.
* ``GET /metrics``: Prometheus text (requests, verdicts by rail and action, errors,
  latency histograms per rail and per stage).

Security model: loopback by default; a non-loopback bind needs client API keys (bearer
tokens, compared in constant time); bounded body size, message count, concurrency and
time per request; the guard fails closed (an exception or a missed deadline never lets
unchecked text through); keys are never logged or echoed, and model output is never
copied into a header.

One :class:`~rai_harness.guardrails.guard.Guard` (micro-batched) serves every request,
so concurrent requests share classifier batches; it is closed on shutdown, and uvicorn's
graceful shutdown (SIGTERM) lets in-flight requests finish first.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import gc
import hmac
import json
import logging
import math
import re
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar, cast

import httpx

from rai_harness.errors import ConfigError, MissingDependencyError
from rai_harness.guardrails.guard import Guard, GuardResult
from rai_harness.guardrails.rails import strongest
from rai_harness.guardrails.streaming import DEFAULT_MAX_BUFFER_CHARS, GuardBlocked
from rai_harness.loopback import is_loopback

try:
    import orjson
    import prometheus_client
    import uvicorn
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.registry import Collector
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route
    from starlette.types import Receive, Scope, Send

    from rai_harness.guardrails.upstream import UpstreamClient, UpstreamError, UpstreamStream

    _IMPORT_ERROR: ImportError | None = None
except ImportError as _exc:  # the `serve` extra is not installed: say so when it is used
    _IMPORT_ERROR = _exc

__all__ = [
    "GUARD_FIELD",
    "BackgroundServer",
    "GuardService",
    "ServeConfig",
    "ServeMetrics",
    "create_app",
    "is_loopback",
    "keys_from_env",
    "require_serve_deps",
    "serve",
    "tune_gc_for_serving",
]

logger = logging.getLogger(__name__)

#: Extra top-level field of every proxied completion (and of the final stream chunk)
#: holding the guard's verdicts. Clients that do not know it ignore it.
GUARD_FIELD = "rai_guard"

#: Shortest client API key accepted: a bearer token is the only thing between the network
#: and the upstream key's budget.
MIN_API_KEY_CHARS = 16

#: Message shown (as the OpenAI ``refusal`` field) in place of a blocked text.
REFUSAL = "This content was blocked by the guard policy."

#: Latency histogram buckets, seconds: sub-millisecond rails to minute-long upstream calls.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

_T = TypeVar("_T")

# Longest upstream error message relayed to the client, characters.
_MAX_UPSTREAM_MESSAGE = 500

# Most of a streamed request's error answer read to find its message, bytes.
_MAX_UPSTREAM_ERROR_BYTES = 64 * 1024


def require_serve_deps() -> None:
    """Raise :class:`MissingDependencyError` (with the pip hint) when the ``serve`` extra is missing."""
    if _IMPORT_ERROR is not None:
        missing = (_IMPORT_ERROR.name or "starlette").replace("_", "-")
        raise MissingDependencyError(missing, extra="serve", feature="rai guard serve") from _IMPORT_ERROR


#: Allocations between young-generation collections in a serving process (CPython's
#: default: 700). See :func:`tune_gc_for_serving`.
SERVING_GC_THRESHOLD = 10_000


def tune_gc_for_serving() -> None:
    """Tune the cyclic garbage collector of a process that does nothing but serve.

    Two changes, both process-wide:

    * ``gc.freeze()`` everything alive now (modules, models, the guard: it lives as long
      as the process), so full collections stop walking these ~10^5 objects again.
    * Young collections every :data:`SERVING_GC_THRESHOLD` allocations instead of 700. With
      64 requests in flight, a collection every 700 allocations finds each request's
      objects still alive, promotes them and scans them again in the older generations;
      waiting longer lets reference counting free most of them first. A young collection
      then looks at up to ~10^4 objects: about a millisecond, the worst pause it adds.

    Measured at 64 concurrent clients with the keyword policy on this project's 2-core
    machine: the collector took 8-17% of the proxy's CPU with the defaults and ~2% with
    both changes, and the proxy's CPU per request fell by about 30% (freeze alone: ~6%).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(SERVING_GC_THRESHOLD, older, oldest)


def _safe_url(url: str) -> str:
    """``url`` without user info, query or fragment: what may appear in a log line."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass(frozen=True)
class ServeConfig:
    """How the server listens, whom it lets in, and the bounds on each request.

    Attributes:
        upstream_url: Base URL of the OpenAI-compatible upstream (``.../v1``); ``None``
            serves the checks API only.
        upstream_key: Bearer key sent upstream (never logged, never echoed).
        api_keys: Client bearer keys; empty means no authentication (loopback only).
        host: Address to bind; a non-loopback one needs ``api_keys``.
        port: Port to bind.
        max_body_bytes: Largest request body; larger gets 413.
        max_messages: Most messages (or texts) per request; more gets 413.
        max_texts: Most texts one request has checked (message contents and content parts,
            other text fields, tool-call arguments, tool descriptions); more gets 413. It
            bounds the rails' work per request, so that one request of many tiny parts cannot
            hold the classifiers for seconds while other clients' checks time out.
        max_concurrency: Requests served at once; more get 429 with ``Retry-After``.
        retry_after_s: ``Retry-After`` sent with 429 and 503, seconds.
        request_timeout_s: Deadline of a whole request, upstream and rails included
            (a stream's whole duration); past it the request ends with 504 (or a stream
            error event), never with unchecked text.
        stream_buffer_chars: Longest text the streaming guard holds back waiting for a
            sentence end (see :mod:`rai_harness.guardrails.streaming`).
        check_tool_definitions: Run the input rails on the descriptions in ``tools`` and
            ``functions`` too (see ``_tool_definition_segments``); off only for applications
            whose every tool definition is their own.
    """

    upstream_url: str | None = None
    upstream_key: str | None = field(default=None, repr=False)
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1024 * 1024
    max_messages: int = 256
    max_texts: int = 1024
    max_concurrency: int = 64
    retry_after_s: int = 1
    request_timeout_s: float = 60.0
    stream_buffer_chars: int = DEFAULT_MAX_BUFFER_CHARS
    check_tool_definitions: bool = True

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_messages",
            "max_texts",
            "max_concurrency",
            "retry_after_s",
            "stream_buffer_chars",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"must be an integer >= 1, got {value!r}", key_path=name)
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"must be a port number in 0..65535, got {self.port!r}", key_path="port")
        if not self.request_timeout_s > 0:
            raise ConfigError(f"must be > 0, got {self.request_timeout_s!r}", key_path="request_timeout_s")
        for key in self.api_keys:
            if len(key) < MIN_API_KEY_CHARS or any(c.isspace() for c in key):
                raise ConfigError(
                    f"every client API key must be at least {MIN_API_KEY_CHARS} characters without "
                    "spaces (generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')",
                    key_path="api_keys",
                )
        if not is_loopback(self.host) and not self.api_keys:
            raise ConfigError(
                f"refusing to listen on {self.host} without client API keys: anyone who can reach it "
                "could spend the upstream key; set --api-keys-env to a variable holding the keys, "
                "or bind 127.0.0.1",
                key_path="host",
            )
        if self.upstream_key is not None and any(ord(c) < 33 or ord(c) == 127 for c in self.upstream_key):
            # It goes into a header line: a line break would let it add headers of its own.
            raise ConfigError(
                "the upstream key must not contain spaces or control characters", key_path="upstream_key"
            )
        if self.upstream_url is not None:
            parts = urllib.parse.urlsplit(self.upstream_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"must be an http(s) URL such as https://api.openai.com/v1, got {_safe_url(self.upstream_url)!r}",
                    key_path="upstream_url",
                )


class _Histogram:
    """One histogram series: per-bucket counts (not cumulative; the last is +Inf) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)
        self.total = 0.0


class ServeMetrics(Collector if _IMPORT_ERROR is None else object):  # type: ignore[misc]
    """The server's Prometheus metrics, in their own registry (one per app).

    Counted in plain dicts and turned into Prometheus families only when ``/metrics`` is
    scraped (this object is the registry's collector). prometheus-client's own ``Counter``
    and ``Histogram`` take a lock and re-check their labels on every update; a proxied
    request makes about 16 updates, which cost ~4% of the proxy's CPU per request. Every
    update and every scrape runs on the server's event-loop thread, so no lock is needed.
    Every label value comes from the policy (rail names) or a fixed set (stages, actions,
    endpoints, status codes), so the series are as bounded as before.

    Exposed: ``rai_guard_requests_total{endpoint,status}``,
    ``rai_guard_verdicts_total{stage,rail,action}``, ``rai_guard_decisions_total{stage,action}``,
    ``rai_guard_errors_total{kind}``, histograms ``rai_guard_rail_latency_seconds{stage,rail}``
    and ``rai_guard_stage_latency_seconds{stage}``, gauge ``rai_guard_in_flight_requests``.

    Args:
        registry: Registry to register in; default: a new one.
    """

    def __init__(self, registry: prometheus_client.CollectorRegistry | None = None) -> None:
        require_serve_deps()
        self.registry = registry if registry is not None else prometheus_client.CollectorRegistry()
        self.requests: dict[tuple[str, str], int] = {}
        self.verdicts: dict[tuple[str, str, str], int] = {}
        self.decisions: dict[tuple[str, str], int] = {}
        self.errors: dict[str, int] = {}
        self.rail_latency: dict[tuple[str, str], _Histogram] = {}
        self.stage_latency: dict[str, _Histogram] = {}
        #: Requests being served (the concurrency limit reads it too).
        self.in_flight = 0
        self.registry.register(self)

    # -- updates (event-loop thread) -----------------------------------------------------------

    def count_request(self, endpoint: str, status: int) -> None:
        """Count one answered request."""
        key = (endpoint, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1

    def count_error(self, kind: str) -> None:
        """Count one error: rail, upstream, deadline or internal."""
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Record one latency of ``stage`` (input, output, upstream, total)."""
        series = self.stage_latency.get(stage)
        if series is None:
            series = self.stage_latency[stage] = _Histogram(len(LATENCY_BUCKETS))
        _observe(series, seconds)

    def observe(self, results: Sequence[GuardResult]) -> None:
        """Count the verdicts of one guard call and record its latencies."""
        if not results:
            return
        first = results[0]
        stage = first.stage
        # Latencies are per call (every text of a batch call shares them), verdicts per text.
        self.observe_stage(stage, first.latency_ms / 1000.0)
        rail_latency = self.rail_latency
        for rail in first.rails:
            series = rail_latency.get((stage, rail.rail))
            if series is None:
                series = rail_latency[(stage, rail.rail)] = _Histogram(len(LATENCY_BUCKETS))
            _observe(series, rail.latency_ms / 1000.0)
        verdicts, decisions = self.verdicts, self.decisions
        for result in results:
            key = (stage, result.action)
            decisions[key] = decisions.get(key, 0) + 1
            for rail in result.rails:
                vkey = (stage, rail.rail, rail.action)
                verdicts[vkey] = verdicts.get(vkey, 0) + 1
                if rail.error is not None:
                    self.count_error("rail")

    # -- the collector (scrape time) -------------------------------------------------------

    def collect(self) -> Iterator[prometheus_client.Metric]:
        """The Prometheus families, from the counts so far."""
        counters: list[tuple[str, str, list[str], Mapping[Any, int]]] = [
            (
                "rai_guard_requests",
                "HTTP requests by endpoint and status code.",
                ["endpoint", "status"],
                self.requests,
            ),
            (
                "rai_guard_verdicts",
                "Rail verdicts per checked text, by stage, rail and action.",
                ["stage", "rail", "action"],
                self.verdicts,
            ),
            (
                "rai_guard_decisions",
                "Guard decisions per checked text (strongest action of its rails), by stage and action.",
                ["stage", "action"],
                self.decisions,
            ),
            (
                "rai_guard_errors",
                "Errors by kind: rail (a classifier failed or timed out; its on_error applied), upstream, "
                "deadline, internal.",
                ["kind"],
                self.errors,
            ),
        ]
        for name, doc, labels, values in counters:
            family = CounterMetricFamily(name, doc, labels=labels)
            for key, value in list(values.items()):
                family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
            yield family
        histograms: list[tuple[str, str, list[str], Mapping[Any, _Histogram]]] = [
            (
                "rai_guard_rail_latency_seconds",
                "Latency of each rail's classifier call, seconds.",
                ["stage", "rail"],
                self.rail_latency,
            ),
            (
                "rai_guard_stage_latency_seconds",
                "Latency per stage, seconds: input and output (guard calls; each stream window counts), "
                "upstream (until the answer or the stream's headers), total (whole request).",
                ["stage"],
                self.stage_latency,
            ),
        ]
        bounds = [*(prometheus_client.utils.floatToGoString(b) for b in LATENCY_BUCKETS), "+Inf"]
        for name, doc, labels, series_by_key in histograms:
            hist = HistogramMetricFamily(name, doc, labels=labels)
            for key, series in list(series_by_key.items()):
                cumulative, running = [], 0
                for bound, count in zip(bounds, series.counts, strict=True):
                    running += count
                    cumulative.append((bound, running))
                hist.add_metric(list(key) if isinstance(key, tuple) else [key], cumulative, series.total)
            yield hist
        gauge = GaugeMetricFamily("rai_guard_in_flight_requests", "Requests being served.")
        gauge.add_metric([], self.in_flight)
        yield gauge


def _observe(series: _Histogram, value: float) -> None:
    # bisect_left: the first bound >= value, i.e. the bucket "le" that value falls in.
    series.counts[bisect.bisect_left(LATENCY_BUCKETS, value)] += 1
    series.total += value


async def _within(awaitable: Awaitable[_T], timeout_s: float) -> _T:
    """``await awaitable``, raising ``asyncio.TimeoutError`` after ``timeout_s`` seconds.

    ``asyncio.timeout`` (3.11+) runs it in the calling task; ``wait_for`` on 3.11 wraps it
    in a task of its own, which cost about 4% of the proxy's CPU per request.
    """
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout_s):
            return await awaitable
    return await asyncio.wait_for(awaitable, timeout=timeout_s)  # pragma: no cover - 3.10


class _JSONResponse(Response if _IMPORT_ERROR is None else object):  # type: ignore[misc]
    """Starlette's ``JSONResponse``, rendered by orjson (compact UTF-8, as ``ensure_ascii=False``).

    orjson encodes a completion with its verdicts several times faster than the standard
    library; JSON in and out was ~5% of the proxy's CPU per request before.
    """

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class _HTTPError(Exception):
    """An OpenAI-shaped error response to send (raised inside handlers)."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.headers = dict(headers or {})

    def response(self) -> Response:
        body = {"error": {"message": self.message, "type": self.type, "param": None, "code": self.code}}
        return _JSONResponse(body, status_code=self.status, headers=self.headers)


class _Segment(NamedTuple):
    """One checked text of a request: where it sits and what it says."""

    message: int  # index into ``messages``; TOOL_DEFINITION for a tool definition's text
    part: int | None  # index into a content-parts list; None otherwise
    role: str
    text: str
    # Keys from the message (a tool definition: from the request body) down to the text.
    path: tuple[str | int, ...] = ("content",)

    @property
    def field(self) -> str:
        """The path as one string, e.g. ``content``, ``content[1].text``, ``tool_calls[0].function.arguments``."""
        return _field_of(self.path)


#: Content-part types whose text the rails check (the key holding it).
_TEXT_PARTS = {"text": "text", "refusal": "refusal"}

#: ``_Segment.message`` of a text from a tool definition (not from a message).
TOOL_DEFINITION = -1

#: Deepest nesting of a tool's parameter schema searched for descriptions. Real schemas are a
#: few levels deep; a deeper one is refused (400) rather than passed on partly unchecked.
_MAX_SCHEMA_DEPTH = 32


def _verdict(result: GuardResult) -> dict[str, Any]:
    """A verdict without any text: action, latency, per-rail scores and findings."""
    return {
        "action": result.action,
        "blocked": result.blocked,
        "latency_ms": round(result.latency_ms, 3),
        "rails": [r.to_dict() for r in result.rails],
    }


def _blocking_rails(results: Sequence[GuardResult]) -> list[str]:
    names: list[str] = []
    for result in results:
        for rail in result.rails:
            if rail.action == "block" and rail.rail not in names:
                names.append(rail.rail)
    return names


def _bad_message(where: str, problem: str) -> _HTTPError:
    return _HTTPError(400, f"{where} {problem}", "invalid_request_error", "unchecked_content")


def _segments(messages: Sequence[Mapping[str, Any]]) -> list[_Segment]:
    """Every text of every message, for the input rails.

    Checked: string contents, ``text`` and ``refusal`` content parts, a message's own
    ``refusal`` and ``name`` strings, and the arguments of assistant tool calls
    (``tool_calls[].function.arguments``, legacy ``function_call``): each goes back into the
    model's context as much as any text does.
    Anything else the rails cannot read (an image, audio or file part, a part or tool call
    of an unexpected shape) is refused with a 400 naming it rather than sent on unchecked:
    the guard fails closed.
    """
    out: list[_Segment] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            # The role is relayed as is: an unknown one would carry text no rail reads.
            raise _bad_message(f"messages[{i}].role", f"must be one of {', '.join(sorted(_ROLES))}")
        content = message.get("content")
        if isinstance(content, str):
            if content:
                out.append(_Segment(i, None, role, content))
        elif isinstance(content, list):
            try:
                for j, _kind, key, text in _text_parts(content):
                    if text:
                        out.append(_Segment(i, j, role, text, ("content", j, key)))
                    # A part's other fields travel with it: text is checked, the rest refused.
                    for extra, value in content[j].items():
                        if extra in ("type", key) or value is None or _is_small_number(value):
                            continue
                        if extra == "cache_control" and _is_cache_control(value):
                            continue  # prompt caching through OpenAI-compatible gateways
                        if not isinstance(value, str):
                            raise _bad_message(
                                f"messages[{i}].content[{j}].{extra}",
                                "must be a string or a small number (the guard checks every text a part carries)",
                            )
                        if value:
                            out.append(_Segment(i, j, role, value, ("content", j, extra)))
            except _UnreadablePart as bad:
                if bad.kind is None:
                    problem = "must be an object with a string `type`"
                elif bad.key is None:
                    problem = (
                        f"is a {bad.kind!r} part, which the guard's text rails cannot check; the proxy "
                        "refuses it rather than pass it unchecked (send text parts only)"
                    )
                else:
                    problem = f"needs a string `{bad.key}`"
                raise _bad_message(f"messages[{i}].content[{bad.index}]", problem) from None
        for key, value in message.items():
            if key in _MESSAGE_KEYS or value is None:
                continue
            if key == "tool_call_id":
                if not _is_identifier(value):
                    raise _bad_message(
                        f"messages[{i}].{key}", "must be an identifier (letters, digits, _.:-)"
                    )
                continue
            if _is_small_number(value) and key not in _MESSAGE_TEXT_KEYS:
                continue  # a flag or a count carries no text (e.g. a prefix: true)
            # Every other field (refusal, name, reasoning_content...) goes into the model's
            # context with the message: a string is checked like the content, anything else
            # is refused rather than passed on unread.
            if not isinstance(value, str):
                raise _bad_message(
                    f"messages[{i}].{key}", "must be a string (the guard checks every text a message carries)"
                )
            if value:
                out.append(_Segment(i, None, role, value, (key,)))
        out.extend(_tool_call_segments(i, role, message))
    return out


#: Roles a request's message may have (OpenAI's, ``developer`` and the legacy ``function``).
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

#: Message keys :func:`_segments` reads on their own terms; every other key is text it checks.
_MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "function_call"})
#: Message keys that hold text by definition: anything but a string there is refused.
_MESSAGE_TEXT_KEYS = frozenset({"refusal", "name", "reasoning_content", "reasoning"})


def _is_cache_control(value: Any) -> bool:
    """A prompt-caching marker (``{"type": "ephemeral", "ttl": "1h"}``): short words only."""
    return (
        isinstance(value, Mapping)
        and len(value) <= 4
        and all(isinstance(v, str) and re.fullmatch(r"[a-z0-9_]{1,16}", v) for v in value.values())
    )


def _is_small_number(value: Any) -> bool:
    """A boolean, or a number with fewer than 9 digits: a flag or a count, never a card, phone or
    social-security number written as a JSON number."""
    if isinstance(value, bool):
        return True
    return isinstance(value, int | float) and math.isfinite(value) and abs(value) < 1e8


def _check_tool_call(where: str, call: Any, *, legacy: bool) -> None:
    """A prompt's tool call must be only what a tool call is: an identifier ``id``, ``type``
    ``function``, a stream ``index`` and a ``function`` of a tool ``name`` and ``arguments``;
    anything else (a name holding an address, an extra key) would reach the model unread.

    Raises:
        _HTTPError: 400 naming the field.
    """
    function = call if legacy else (call.get("function") if isinstance(call, Mapping) else None)
    if not legacy:
        # `index` too: clients that rebuild a streamed answer keep each call's stream index.
        if not isinstance(call, Mapping) or set(call) - {"id", "type", "function", "index"}:
            raise _bad_message(where, "may hold only `id`, `type`, `function` and `index`")
        if call.get("index") is not None and not (
            isinstance(call["index"], int)
            and not isinstance(call["index"], bool)
            and 0 <= call["index"] < 1024
        ):
            raise _bad_message(f"{where}.index", "must be a small whole number")
        if call.get("id") is not None and not _is_identifier(call["id"]):
            raise _bad_message(f"{where}.id", "must be an identifier (letters, digits, _.:-)")
        if call.get("type", "function") != "function":
            raise _bad_message(f"{where}.type", "must be 'function'")
    inner = where if legacy else f"{where}.function"
    if not isinstance(function, Mapping) or set(function) - {"name", "arguments"}:
        raise _bad_message(inner, "must be an object of `name` and `arguments` only")
    name = function.get("name")
    if name is not None and not (isinstance(name, str) and _TOOL_NAME.match(name)):
        raise _bad_message(f"{inner}.name", "must be a tool name (letters, digits, _.-, at most 64)")


def _checkable_arguments(arguments: str) -> str:
    """Tool-call ``arguments`` in the form the rails should read.

    An agent decodes the arguments as JSON, so ``"jane\\u0040example.com"`` reaches the
    tool as ``jane@example.com``: a rail reading the raw string sees no address. Arguments
    that are JSON and hold any escape are checked re-encoded without needless escapes, and so
    is every string inside them that is JSON itself (a tool taking a JSON document decodes it
    again): the same values, so relaying either form is the same call. Decoding is lenient
    about raw control characters inside strings, as many agents' parsers are. Anything else
    is checked as sent (arguments that are not JSON decode to nothing for the agent either).
    """
    if "\\" not in arguments:
        return arguments
    try:
        return json.dumps(_decoded_json(json.loads(arguments, strict=False), 0), ensure_ascii=False)
    except (ValueError, RecursionError):  # not JSON, or nested past the decoder's limit
        return arguments


#: Levels of JSON held in JSON strings that tool-call arguments are read through.
_MAX_NESTED_JSON = 4


def _decoded_json(value: Any, depth: int) -> Any:
    """``value`` with each string that is a JSON object or array re-encoded without escapes."""
    if isinstance(value, dict):
        return {k: _decoded_json(v, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_decoded_json(v, depth) for v in value]
    if (
        isinstance(value, str)
        and depth < _MAX_NESTED_JSON
        and value.lstrip()[:1] in ("{", "[")
        and "\\" in value
    ):
        try:
            inner = json.loads(value, strict=False)
        except ValueError:
            return value
        return json.dumps(_decoded_json(inner, depth + 1), ensure_ascii=False)
    return value


class _UnreadablePart(Exception):
    """A content part the text rails cannot read: its index, its type and text key if known."""

    def __init__(self, index: int, kind: str | None, key: str | None) -> None:
        super().__init__(index, kind, key)
        self.index, self.kind, self.key = index, kind, key


def _text_parts(parts: Sequence[Any]) -> Iterator[tuple[int, str, str, str]]:
    """``(index, type, text key, text)`` of each part of a content list (``text``/``refusal``).

    Raises:
        _UnreadablePart: a part of another type, or without a string text.
    """
    for j, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if not isinstance(kind, str):
            raise _UnreadablePart(j, None, None)
        key = _TEXT_PARTS.get(kind)
        if key is None:
            raise _UnreadablePart(j, kind, None)
        text = part.get(key)
        if not isinstance(text, str):
            raise _UnreadablePart(j, kind, key)
        yield j, kind, key, text


def _tool_call_segments(i: int, role: str, message: Mapping[str, Any]) -> list[_Segment]:
    """The arguments of a message's tool calls (and of a legacy ``function_call``)."""
    out: list[_Segment] = []
    calls = message.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            raise _bad_message(f"messages[{i}].tool_calls", "must be a list")
        for j, call in enumerate(calls):
            _check_tool_call(f"messages[{i}].tool_calls[{j}]", call, legacy=False)
            function = call.get("function") if isinstance(call, Mapping) else None
            arguments = function.get("arguments") if isinstance(function, Mapping) else None
            if not isinstance(arguments, str):
                raise _bad_message(f"messages[{i}].tool_calls[{j}]", "needs `function.arguments` as a string")
            if arguments:
                out.append(
                    _Segment(
                        i,
                        None,
                        role,
                        _checkable_arguments(arguments),
                        ("tool_calls", j, "function", "arguments"),
                    )
                )
    legacy = message.get("function_call")
    if legacy is not None:
        _check_tool_call(f"messages[{i}].function_call", legacy, legacy=True)
        arguments = legacy.get("arguments") if isinstance(legacy, Mapping) else None
        if not isinstance(arguments, str):
            raise _bad_message(f"messages[{i}].function_call", "needs `arguments` as a string")
        if arguments:
            out.append(
                _Segment(i, None, role, _checkable_arguments(arguments), ("function_call", "arguments"))
            )
    return out


def _tool_definition_segments(body: Mapping[str, Any]) -> list[_Segment]:
    """The descriptions in the tools offered to the model (``tools``, legacy ``functions``).

    A tool's description, and every ``description`` in its parameter schema, goes into the
    model's context as instructions, and often does not come from the application's own
    authors (MCP servers, plugin catalogues): a poisoned description is a prompt injection
    the user never sees. So they go through the input rails like any message. Names, types
    and enums are identifiers, not prose, and are left alone (redacting them would break the
    schema). A definition of a shape the guard cannot read is refused (400), as elsewhere.
    """
    out: list[_Segment] = []
    for key in ("tools", "functions"):
        definitions = body.get(key)
        if definitions is None:
            continue
        if not isinstance(definitions, list):
            raise _bad_message(key, "must be a list")
        for j, item in enumerate(definitions):
            where: tuple[str | int, ...] = (key, j)
            if key == "tools":
                kind = item.get("type") if isinstance(item, Mapping) else None
                if not isinstance(kind, str) or not isinstance(item.get(kind), Mapping):
                    raise _bad_message(
                        f"{key}[{j}]", "must be an object with a `type` and an object under that key"
                    )
                item, where = item[kind], (key, j, kind)
            elif not isinstance(item, Mapping):
                raise _bad_message(f"{key}[{j}]", "must be an object")
            out.extend(_schema_descriptions(item, where))
    return out


def _schema_descriptions(root: Mapping[str, Any], path: tuple[str | int, ...]) -> list[_Segment]:
    """Every string under a ``description`` key in ``root``, depth-first, without recursion."""
    out: list[_Segment] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(root, path)]
    while stack:
        node, where = stack.pop()
        if len(where) - len(path) > _MAX_SCHEMA_DEPTH:
            raise _bad_message(_field_of(path), f"nests deeper than {_MAX_SCHEMA_DEPTH} levels")
        children: list[tuple[Any, tuple[str | int, ...]]] = []
        if isinstance(node, Mapping):
            for name, value in node.items():
                if name == "description" and isinstance(value, str):
                    if value:
                        out.append(_Segment(TOOL_DEFINITION, None, "", value, (*where, name)))
                elif isinstance(value, Mapping | list):
                    children.append((value, (*where, name)))
        elif isinstance(node, list):
            children.extend(
                (value, (*where, i)) for i, value in enumerate(node) if isinstance(value, Mapping | list)
            )
        stack.extend(reversed(children))  # keep document order
    return out


def _field_of(path: Sequence[str | int]) -> str:
    """A path as one string, e.g. ``content[1].text`` or ``tools[0].function.description``."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


def _redacted_tools(
    body: Mapping[str, Any], segments: Sequence[_Segment], results: Sequence[GuardResult]
) -> dict[str, Any]:
    """The top-level tool fields (``tools``, ``functions``) that had a text redacted, as copies."""
    out: dict[str, Any] = {}
    for segment, result in zip(segments, results, strict=True):
        if segment.message != TOOL_DEFINITION or result.redacted_text == segment.text:
            continue
        key = cast(str, segment.path[0])
        if key not in out:
            out[key] = copy.deepcopy(body[key])
        _set_path(out[key], segment.path[1:], result.redacted_text)
    return out


def _set_path(holder: Any, path: Sequence[str | int], value: Any) -> None:
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value


def _redacted_messages(
    messages: list[dict[str, Any]], segments: Sequence[_Segment], results: Sequence[GuardResult]
) -> list[dict[str, Any]]:
    """``messages`` with each redacted text replaced; unchanged messages are the same objects."""
    out = list(messages)
    for segment, result in zip(segments, results, strict=True):
        if segment.message == TOOL_DEFINITION or result.redacted_text == segment.text:
            continue
        if out[segment.message] is messages[segment.message]:
            out[segment.message] = copy.deepcopy(messages[segment.message])
        _set_path(out[segment.message], segment.path, result.redacted_text)
    return out


#: Key of a streamed legacy ``function_call`` among the tool calls a relay holds back.
_LEGACY_CALL = -1

#: Message keys of an answer that are not model text: the role, the content (checked on its
#: own) and the tool calls (checked by their arguments). Every other string field of a
#: message (``refusal``, ``reasoning_content``...) is model text the output rails check.
_ANSWER_KEYS = frozenset({"role", "content", "tool_calls", "function_call"})

#: Top-level fields of a chat completion the proxy relays (each checked for shape).
_COMPLETION_KEYS = frozenset(
    {"id", "object", "created", "model", "system_fingerprint", "service_tier", "usage", "choices"}
)

#: Most characters a streamed answer may hold back to check whole at its end (tool-call
#: arguments and text fields other than the content): beyond it the relay ends the stream
#: with an error rather than fill memory with what a hostile upstream sends.
MAX_HELD_CHARS = 1_000_000

#: Most distinct field names of an answer reported as removed (a hostile upstream could
#: send thousands).
_MAX_REMOVED_NAMES = 16


def _note_removed(removed: list[str], name: str) -> None:
    if name not in removed and len(removed) < _MAX_REMOVED_NAMES:
        removed.append(name[:64])


#: Shapes of what an answer carries besides its texts. The proxy relays identifiers, numbers
#: and short tokens only when they look like what they claim to be: a hostile upstream could
#: put text the rails never see into a model name, a finish reason or a tool name.
_IDENTIFIER = re.compile(r"[\w.:/@+-]{1,256}\Z")
#: What an identifier must not hold: an e-mail address (``@`` then a domain; a version tag
#: such as ``model@20240620`` passes), or nine or more digits standing alone, single
#: separators allowed (a phone, card or social-security number; a date or a version has fewer,
#: and digits inside a hex id touch letters).
_PII_SHAPED = re.compile(r"@[^@]*\.[^\W\d_]{2}|(?<![^\W_])\d(?:[._:/+-]?\d){8,}(?![^\W_])")
#: The service tiers relayed (OpenAI's); another value is left out and named.
_SERVICE_TIERS = frozenset({"auto", "default", "flex", "scale", "priority"})
#: ``usage`` keys relayed, with their ``*_details`` breakdowns: OpenAI's and those of the
#: common OpenAI-compatible servers (vLLM, Groq's times, DeepSeek's cache counts, OpenRouter's
#: cost). Another key is left out: a key is a name, and a hostile upstream's names can be text.
_USAGE_KEYS = frozenset(
    {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cached_tokens",
        "audio_tokens",
        "text_tokens",
        "image_tokens",
        "accepted_prediction_tokens",
        "rejected_prediction_tokens",
        "prompt_cache_hit_tokens",
        "prompt_cache_miss_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "queue_time",
        "prompt_time",
        "completion_time",
        "total_time",
        "cost",
        "upstream_inference_cost",
    }
)
#: Largest number relayed in ``usage`` or ``created``: counts and seconds are far below it,
#: and a card or phone number sent as a JSON number is above it.
_MAX_RELAYED_NUMBER = 1e10
#: The finish reasons relayed; any other (a hostile upstream's text) becomes ``stop``.
_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
_TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")

#: Most distinct text fields besides the content one answer may carry (refusal,
#: reasoning_content...); more are left out and named.
_MAX_TEXT_FIELDS = 8


#: Stand-ins for the identifiers a client's SDK requires (``id``, ``model``, ``created``), when
#: the upstream sent none or one of an odd shape.
_STAND_IN = {"id": "chatcmpl-guard", "model": "unknown"}


def _is_identifier(value: Any) -> bool:
    """``value`` is a string of an identifier's shape that holds no e-mail, phone or card number."""
    return isinstance(value, str) and bool(_IDENTIFIER.match(value)) and not _PII_SHAPED.search(value)


def _identifiers(source: Mapping[str, Any], removed: list[str], *, fill: bool = True) -> dict[str, Any]:
    """The completion-level metadata a relayed answer keeps.

    Identifiers of a sane shape (``id``, ``model``, ``system_fingerprint``, ``service_tier``)
    and ``created`` (a whole number of seconds) are kept. One of another shape is replaced by
    a stand-in (``id``, ``model``; ``created``: now) or left out, and named in ``removed``;
    with ``fill``, the fields an SDK requires are there even when the upstream sent none.
    """
    out: dict[str, Any] = {}
    for key in ("id", "model", "system_fingerprint", "service_tier"):
        value = source.get(key)
        if value in _SERVICE_TIERS if key == "service_tier" else _is_identifier(value):
            out[key] = value
        elif value is not None:
            _note_removed(removed, key)
            if key in _STAND_IN:
                out[key] = _STAND_IN[key]
        elif fill and key in _STAND_IN:
            out[key] = _STAND_IN[key]
    created = source.get("created")
    if _relayable_number(created):
        out["created"] = int(cast(float, created))
    elif created is not None or fill:
        if created is not None:
            _note_removed(removed, "created")
        out["created"] = int(time.time())
    return out


def _counts(value: Any) -> dict[str, Any] | None:
    """``usage`` as token counts only: numbers, and detail objects of numbers, by sane names."""
    if not isinstance(value, Mapping):
        return None

    def numbers(source: Mapping[Any, Any]) -> dict[str, Any]:
        return {k: v for k, v in source.items() if k in _USAGE_KEYS and _relayable_number(v)}

    out = numbers(value)
    for key, inner in value.items():
        # prompt_tokens_details, cost_details...: the breakdown of a usage key.
        if (
            isinstance(key, str)
            and key.endswith("_details")
            and key.removesuffix("_details") in _USAGE_KEYS | {"prompt_tokens", "completion_tokens"}
            and isinstance(inner, Mapping)
        ):
            out[key] = numbers(inner)
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):  # an SDK requires them
        out.setdefault(key, 0)
    return out


def _relayable_number(value: Any) -> bool:
    """A finite, non-negative number below :data:`_MAX_RELAYED_NUMBER` (not a boolean)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value < _MAX_RELAYED_NUMBER
    )


def _finish_reason(value: Any) -> str | None:
    """``value`` if it is one of :data:`_FINISH_REASONS`, else None."""
    return value if isinstance(value, str) and value in _FINISH_REASONS else None


def _text_fields(fields: Mapping[str, Any], removed: list[str], held: int = 0) -> list[tuple[str, str]]:
    """The text fields of an answer's message or delta besides its content (``refusal``,
    ``reasoning_content``...), as ``(name, text)``; ``held`` names are already held.

    Names in :data:`_ANSWER_KEYS` are the caller's. A field that is not text (``audio``,
    ``annotations``), has an odd name, or comes past the first :data:`_MAX_TEXT_FIELDS` is left
    out and its name noted in ``removed`` (empty values are simply dropped).
    """
    out: list[tuple[str, str]] = []
    for key, value in fields.items():
        if key in _ANSWER_KEYS or value is None or value == "" or value == []:
            continue
        if (
            isinstance(value, str)
            and isinstance(key, str)
            and _FIELD_NAME.match(key)
            and held + len(out) < _MAX_TEXT_FIELDS
        ):
            out.append((key, value))
        else:
            _note_removed(removed, str(key))
    return out


def _relayed_tool_calls(message: Mapping[str, Any]) -> dict[str, Any]:
    """A message's tool calls rebuilt from id, name and arguments (a legacy ``function_call``
    from name and arguments), or ``{}``.

    Raises:
        _HTTPError: 502 for a call of another shape, or a name that is not an identifier.
    """
    unreadable = _HTTPError(
        502, "the upstream's answer has a tool call the guard cannot read", "upstream_error"
    )

    def function(source: Any) -> dict[str, str]:
        if not isinstance(source, Mapping):
            raise unreadable
        name, arguments = source.get("name"), source.get("arguments")
        if not isinstance(name, str) or not _TOOL_NAME.match(name) or not isinstance(arguments, str):
            raise unreadable
        return {"name": name, "arguments": arguments}

    out: dict[str, Any] = {}
    calls = message.get("tool_calls")
    if calls not in (None, []):
        if not isinstance(calls, list):
            raise unreadable
        rebuilt = []
        for j, call in enumerate(calls):
            if not isinstance(call, Mapping):
                raise unreadable
            call_id = call.get("id")
            rebuilt.append(
                {
                    "id": call_id if _is_identifier(call_id) else f"call_{j}",
                    "type": "function",
                    "function": function(call.get("function")),
                }
            )
        out["tool_calls"] = rebuilt
    if message.get("function_call") is not None:
        out["function_call"] = function(message["function_call"])
    return out


class _HeldBack:
    """What a streamed answer carries besides its content, held back and checked whole at the end.

    Tool calls (by index; a legacy ``function_call`` under :data:`_LEGACY_CALL`) and other
    text fields of the delta (``refusal``, ``reasoning_content``...) are gathered piece by
    piece into lists (joined once: repeated concatenation would cost quadratic time), at
    most :data:`MAX_HELD_CHARS` in all, field names counted, and at most
    :data:`_MAX_TEXT_FIELDS` text fields. A field that is neither text nor a tool call (audio,
    annotations), or one past those limits, cannot be checked, so it is not passed on; its
    name is reported. Tool calls are sent rebuilt from id, name and arguments.
    """

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, Any]] = {}
        self._call_parts: dict[tuple[int, str], list[str]] = {}
        self.texts: dict[str, list[str]] = {}
        self.removed: list[str] = []
        self.role: str | None = None
        self._chars = 0

    def __bool__(self) -> bool:
        return bool(self.calls or self.texts)

    def add(self, delta: Mapping[str, Any]) -> None:
        """Gather one delta's tool-call pieces and text fields (its ``content`` is not held).

        Raises:
            _UpstreamStreamError: a piece the guard cannot read, or more than
                :data:`MAX_HELD_CHARS` held back (fail closed).
        """
        self._add_calls(delta)
        if self.role is None and isinstance(delta.get("role"), str):
            self.role = "assistant"  # whatever the upstream says: an answer's role
        content = delta.get("content")
        if content is not None and not isinstance(content, str):
            raise _UpstreamStreamError("the upstream sent content the guard cannot read")
        known = [key for key in delta if key in self.texts and delta[key] not in (None, "")]
        new = {key: value for key, value in delta.items() if key not in self.texts}
        for key, text in [(k, delta[k]) for k in known] + _text_fields(new, self.removed, len(self.texts)):
            if not isinstance(text, str):
                raise _UpstreamStreamError(f"the upstream sent a {key!r} piece that is not text")
            if key not in self.texts:
                self._count(len(key))
            self.texts.setdefault(key, []).append(text)
            self._count(len(text))

    def _count(self, chars: int) -> None:
        self._chars += chars
        if self._chars > MAX_HELD_CHARS:
            raise _UpstreamStreamError(
                f"the upstream sent over {MAX_HELD_CHARS} characters of tool calls and text outside "
                "the content, more than the guard holds back to check"
            )

    def _add_calls(self, delta: Mapping[str, Any]) -> None:
        pieces: list[tuple[int, Any]] = []
        if "tool_calls" in delta:
            if not isinstance(delta["tool_calls"], list):
                raise _UpstreamStreamError("the upstream sent tool calls the guard cannot read")
            for piece in delta["tool_calls"]:
                index = piece.get("index") if isinstance(piece, Mapping) else None
                if not isinstance(index, int) or isinstance(index, bool) or index < 0:
                    raise _UpstreamStreamError("the upstream sent a tool call the guard cannot read")
                pieces.append((index, piece))
        if "function_call" in delta:
            pieces.append((_LEGACY_CALL, {"function": delta["function_call"]}))
        for index, piece in pieces:
            if index not in self.calls and len(self.calls) >= 128:
                raise _UpstreamStreamError("the upstream sent more than 128 tool calls")
            call = self.calls.setdefault(index, {"index": index, "type": "function"})
            call_id = piece.get("id")
            if _is_identifier(call_id):
                call["id"] = call_id
            function = piece.get("function")
            if function is None:
                continue
            if not isinstance(function, Mapping):
                raise _UpstreamStreamError("the upstream sent a tool call the guard cannot read")
            for key in ("name", "arguments"):
                value = function.get(key)
                if value is None:
                    continue
                if not isinstance(value, str):
                    raise _UpstreamStreamError("the upstream sent a tool call the guard cannot read")
                self._call_parts.setdefault((index, key), []).append(value)
                self._count(len(value))

    def call_arguments(self) -> list[tuple[int, str]]:
        """``(index, joined arguments)`` of each held tool call, in index order."""
        return [(i, "".join(self._call_parts.get((i, "arguments"), ()))) for i in sorted(self.calls)]

    def call_delta(self, index: int, arguments: str) -> dict[str, Any]:
        """The delta that sends held tool call ``index`` whole, with ``arguments`` (checked).

        Raises:
            _UpstreamStreamError: its name is not an identifier (text the rails did not check).
        """
        name = "".join(self._call_parts.get((index, "name"), ()))
        if not _TOOL_NAME.match(name):
            raise _UpstreamStreamError("the upstream sent a tool call the guard cannot read")
        function = {"name": name, "arguments": arguments}
        if index == _LEGACY_CALL:
            return {"function_call": function}
        call = {"id": f"call_{index}", **self.calls[index], "function": function}
        return {"tool_calls": [call]}


def _sse(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


_DONE = b"data: [DONE]\n\n"


class _UpstreamStreamError(Exception):
    """The upstream stream failed or sent something that is not a chunk."""


class _RequestHead(NamedTuple):
    """The request headers the proxy reads, straight from the ASGI scope ("" when absent)."""

    authorization: str
    content_length: str
    content_type: str = ""
    host: str = ""
    origin: str | None = None

    @classmethod
    def of(cls, scope: Scope) -> _RequestHead:
        # One pass over the raw header list instead of building Starlette's Request and
        # Headers objects. A repeated header: the first one counts, as with Starlette's get().
        found: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in _HEAD_FIELDS and name not in found:
                found[name] = value
        text = {name.decode(): value.decode("latin-1") for name, value in found.items()}
        return cls(
            authorization=text.get("authorization", ""),
            content_length=text.get("content-length", ""),
            content_type=text.get("content-type", ""),
            host=text.get("host", ""),
            origin=text.get("origin"),
        )


_HEAD_FIELDS = frozenset((b"authorization", b"content-length", b"content-type", b"host", b"origin"))


def _hostname(value: str, *, url: bool) -> str | None:
    """The host name of a ``Host`` header (``url=False``) or an ``Origin`` (``url=True``), or None."""
    try:
        return urllib.parse.urlsplit(value if url else f"//{value}").hostname
    except ValueError:
        return None


def _is_json_media_type(content_type: str) -> bool:
    """``application/json`` or a ``+json`` type, parameters (``charset``) ignored."""
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class GuardService:
    """State shared by every request: the guard, the upstream client, limits and metrics.

    Args:
        guard_factory: Builds the guard (called once, on a worker thread, at startup: loading
            classifiers can take seconds, and ``/healthz`` answers 503 meanwhile).
        config: Limits, keys and upstream.
        metrics: Where to count; default: a new :class:`ServeMetrics`.
        tune_gc: Once the guard is loaded, :func:`tune_gc_for_serving`: freeze the
            long-lived heap and collect the young generation less often. It affects the
            whole process: :func:`serve` (a process of its own) turns it on, an app
            embedded in a larger process leaves it off.
    """

    def __init__(
        self,
        guard_factory: Callable[[], Guard],
        config: ServeConfig,
        *,
        metrics: ServeMetrics | None = None,
        tune_gc: bool = False,
    ) -> None:
        self.config = config
        self.tune_gc = tune_gc
        self.metrics = metrics or ServeMetrics()
        self._factory = guard_factory
        self.guard: Guard | None = None
        self.load_error: str | None = None
        self._client: UpstreamClient | None = None
        self._load_task: asyncio.Task[None] | None = None
        self._api_keys = tuple(k.encode() for k in config.api_keys)

    @property
    def ready(self) -> bool:
        """Whether the guard is loaded and warmed up."""
        return self.guard is not None

    @property
    def in_flight(self) -> int:
        """Requests being served now (streams until they end)."""
        return self.metrics.in_flight

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the upstream client and start loading the guard in the background."""
        # Our own keep-alive client rather than aiohttp or httpx (see upstream.py): per
        # request, httpx's pool cost 3.3 ms of CPU at 64 in flight, aiohttp 0.14 ms, this one
        # 0.03 ms. It uses no environment proxies or .netrc: the upstream is exactly as configured.
        if self.config.upstream_url is not None:
            headers = {}
            if self.config.upstream_key:
                headers["Authorization"] = f"Bearer {self.config.upstream_key}"
            self._client = UpstreamClient(
                self.config.upstream_url,
                headers=headers,
                max_idle=self.config.max_concurrency * 2,
                connect_timeout_s=min(10.0, self.config.request_timeout_s),
            )
        self._load_task = asyncio.create_task(self._load())

    async def _load(self) -> None:
        try:
            guard = await asyncio.to_thread(self._factory)
            try:
                # Warm-up: the first call loads lazy models and compiles regexes, so the first
                # user request does not pay for it and /healthz means "ready to answer fast".
                await asyncio.to_thread(guard.check_inputs, ["warm-up"])
                await asyncio.to_thread(guard.check_outputs, ["warm-up"])
            except BaseException:
                guard.close()
                raise
            if self.tune_gc:
                tune_gc_for_serving()
            self.guard = guard
            logger.info("guard %r ready: %s", guard.name, guard.info())
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"[:500]
            logger.error("the guard failed to load: %s", self.load_error)

    async def stop(self) -> None:
        """Stop loading, close the upstream client and the guard (its micro-batchers)."""
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
            with contextlib.suppress(BaseException):
                await self._load_task
        if self._client is not None:
            await self._client.close()
        if self.guard is not None:
            self.guard.close()
            self.guard = None

    # -- admission ----------------------------------------------------------------------------

    def authorized(self, authorization: str) -> bool:
        """Whether an ``Authorization`` header value holds a valid bearer key (always, when no keys are set)."""
        if not self._api_keys:
            return True
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        presented = token.strip().encode()
        # Compare against every key without stopping early: the time taken says nothing
        # about which key (or how much of one) matched.
        matched = False
        for key in self._api_keys:
            matched |= hmac.compare_digest(presented, key)
        return matched

    def cross_site_refusal(self, head: _RequestHead) -> Response | None:
        """The 403 for :meth:`cross_site_problem`, or None when the request may go on."""
        problem = self.cross_site_problem(head)
        if problem is None:
            return None
        return _HTTPError(403, problem, "invalid_request_error", "cross_site_request").response()

    def cross_site_problem(self, head: _RequestHead) -> str | None:
        """Why a request to a proxy without API keys may come from a web page, or None.

        Without keys the proxy trusts whoever can reach its loopback port. A web page in the
        operator's browser can reach it too: a ``text/plain`` or ``Blob`` POST needs no CORS
        preflight, so any site could spend the upstream key (it cannot read the answer, but
        the call is made). Browsers always send ``Origin`` on such a request, so one naming
        another host is refused; a ``Host`` that is not a loopback name is refused too, which
        is what a DNS-rebinding page sends. With API keys neither applies: a page cannot send
        an ``Authorization`` header cross-site without a preflight the proxy never approves.
        """
        if self._api_keys:
            return None
        host = _hostname(head.host, url=False) if head.host else None
        if head.host and (host is None or not is_loopback(host)):
            return (
                f"Host {head.host[:100]!r} is not a loopback name; this proxy has no API keys and "
                "answers only requests addressed to 127.0.0.1, ::1 or localhost"
            )
        if head.origin is not None:
            origin = _hostname(head.origin, url=True)
            if origin is None or not is_loopback(origin):
                return (
                    f"cross-site request from origin {head.origin[:100]!r} refused: without API keys "
                    "the proxy serves only local clients (configure api_keys to serve web pages)"
                )
        return None

    async def read_json(self, head: _RequestHead, receive: Receive) -> dict[str, Any]:
        """The body as a JSON object, read no further than ``max_body_bytes``."""
        if head.content_type and not _is_json_media_type(head.content_type):
            raise _HTTPError(
                415,
                f"the body must be JSON (Content-Type: application/json), got {head.content_type[:100]!r}",
                "invalid_request_error",
                "unsupported_media_type",
            )
        limit = self.config.max_body_bytes
        if head.content_length.isdigit() and int(head.content_length) > limit:
            raise _HTTPError(
                413, f"request body over {limit} bytes", "invalid_request_error", "body_too_large"
            )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # Nobody is left to read an answer; this ends the request without running it.
                raise _HTTPError(
                    400, "the client disconnected", "invalid_request_error", "client_disconnected"
                )
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _HTTPError(
                    413, f"request body over {limit} bytes", "invalid_request_error", "body_too_large"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        try:
            # orjson: strict JSON (no NaN, no lone surrogates: both 400 here rather than a
            # failure later); integers past 64 bits are read as floats.
            body = orjson.loads(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        except ValueError:
            raise _HTTPError(400, "the body is not valid JSON", "invalid_request_error") from None
        if not isinstance(body, dict):
            raise _HTTPError(400, "the body must be a JSON object", "invalid_request_error")
        return body

    async def handle(
        self,
        scope: Scope,
        receive: Receive,
        endpoint: str,
        handler: Callable[[dict[str, Any], float, Callable[[], None]], Awaitable[Response]],
    ) -> Response:
        """Authenticate, admit (readiness, concurrency), read the body and run ``handler``.

        ``handler(body, deadline, release)`` gets the request's monotonic deadline and the
        function that frees its concurrency slot; a streaming handler takes the slot over
        (frees it when the stream ends) by returning a :class:`_GuardedStream`.
        """
        started = time.perf_counter()
        response: Response
        released = False
        metrics = self.metrics
        head = _RequestHead.of(scope)

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                metrics.in_flight -= 1

        refusal = self.cross_site_refusal(head)
        if refusal is not None:
            response = refusal
        elif not self.authorized(head.authorization):
            response = _HTTPError(
                401,
                "missing or invalid API key (send Authorization: Bearer <key>)",
                "invalid_request_error",
                "invalid_api_key",
                {"WWW-Authenticate": "Bearer"},
            ).response()
        elif not self.ready:
            message = "the guard failed to load" if self.load_error else "the guard is still loading"
            response = _HTTPError(
                503, message, "service_unavailable", None, {"Retry-After": str(self.config.retry_after_s)}
            ).response()
        elif metrics.in_flight >= self.config.max_concurrency:
            response = _HTTPError(
                429,
                f"too many concurrent requests (limit {self.config.max_concurrency}); retry later",
                "rate_limit_error",
                "concurrency_limit",
                {"Retry-After": str(self.config.retry_after_s)},
            ).response()
        else:
            metrics.in_flight += 1
            deadline = time.monotonic() + self.config.request_timeout_s
            try:
                # The deadline covers reading the body too: a client that trickles its body
                # must not hold a concurrency slot for longer than any other request.
                response = await _within(
                    self._read_and_run(head, receive, handler, deadline, release),
                    self.config.request_timeout_s,
                )
            except _HTTPError as exc:
                response = exc.response()
            except asyncio.TimeoutError:
                metrics.count_error("deadline")
                response = _HTTPError(
                    504, f"the request took longer than {self.config.request_timeout_s:g} s", "timeout"
                ).response()
            except Exception as exc:
                # Fail closed: nothing unchecked goes out. The exception type only: its message
                # may quote request or model text.
                metrics.count_error("internal")
                logger.error(
                    "internal error on %s: %s",
                    endpoint,
                    type(exc).__name__,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                )
                response = _HTTPError(500, "internal error in the guard proxy", "server_error").response()
            if isinstance(response, _GuardedStream):
                response.on_close(lambda: self._finish(endpoint, response.status_code, started))
                return response
            release()
        self._finish(endpoint, response.status_code, started)
        return response

    async def _read_and_run(
        self,
        head: _RequestHead,
        receive: Receive,
        handler: Callable[[dict[str, Any], float, Callable[[], None]], Awaitable[Response]],
        deadline: float,
        release: Callable[[], None],
    ) -> Response:
        return await handler(await self.read_json(head, receive), deadline, release)

    def _finish(self, endpoint: str, status: int, started: float) -> None:
        self.metrics.count_request(endpoint, status)
        self.metrics.observe_stage("total", time.perf_counter() - started)

    # -- guard --------------------------------------------------------------------------------

    def _guard(self) -> Guard:
        guard = self.guard
        if guard is None:  # stop() ran while a request was in flight
            raise _HTTPError(503, "the guard is shutting down", "service_unavailable")
        return guard

    async def check_texts(self, texts: Sequence[str], stage: str) -> list[GuardResult]:
        """Run the ``stage`` rails on ``texts`` (micro-batched with concurrent requests)."""
        if not texts:
            return []
        guard = self._guard()
        if stage == "output":
            results = await guard.acheck_outputs(texts)
        else:
            results = await guard.acheck_inputs(texts)
        self.metrics.observe(results)
        return results

    # -- checks API ---------------------------------------------------------------------------

    async def checks(self, body: dict[str, Any], deadline: float, release: Callable[[], None]) -> Response:
        """``POST /v1/guardrail/checks``: rails only."""
        started = time.perf_counter()
        stage = body.get("stage", "input")
        if stage not in ("input", "output"):
            raise _HTTPError(400, "`stage` must be 'input' or 'output'", "invalid_request_error")
        unknown = sorted(set(body) - {"stage", "texts", "messages"})
        if unknown:
            raise _HTTPError(
                400,
                f"unknown field(s): {', '.join(unknown)}; send `texts` or `messages`",
                "invalid_request_error",
            )
        if ("texts" in body) == ("messages" in body):
            raise _HTTPError(
                400, "send exactly one of `texts` (list of strings) or `messages`", "invalid_request_error"
            )
        if "texts" in body:
            texts = body["texts"]
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise _HTTPError(400, "`texts` must be a list of strings", "invalid_request_error")
            self._check_count(len(texts), "texts")
            segments = [_Segment(i, None, "", t) for i, t in enumerate(texts)]
        else:
            segments = _segments(self._messages(body))
            self._check_texts(segments)
        results = await self.check_texts([s.text for s in segments], stage)
        items = []
        for i, (segment, result) in enumerate(zip(segments, results, strict=True)):
            item: dict[str, Any] = {"index": i}
            if "messages" in body:
                item.update(
                    message=segment.message, part=segment.part, field=segment.field, role=segment.role
                )
            item.update(_verdict(result))
            item["redacted_text"] = result.redacted_text
            items.append(item)
        guard = self._guard()
        payload = {
            "policy": guard.name,
            "stage": stage,
            "action": strongest(r.action for r in results),
            "blocked": any(r.blocked for r in results),
            "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
            "results": items,
        }
        return _JSONResponse(payload, headers={"X-RAI-Guard-Action": payload["action"]})

    # -- proxy --------------------------------------------------------------------------------

    def _check_count(self, n: int, what: str) -> None:
        if n > self.config.max_messages:
            raise _HTTPError(
                413,
                f"{n} {what} is over the limit of {self.config.max_messages}",
                "invalid_request_error",
                "too_many_messages",
            )

    def _check_texts(self, segments: Sequence[_Segment]) -> None:
        if len(segments) > self.config.max_texts:
            raise _HTTPError(
                413,
                f"the request holds {len(segments)} texts to check (contents, content parts, text "
                f"fields, tool-call arguments, tool descriptions), over the limit of {self.config.max_texts}",
                "invalid_request_error",
                "too_many_texts",
            )

    def _messages(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise _HTTPError(400, "`messages` must be a non-empty list of objects", "invalid_request_error")
        self._check_count(len(messages), "messages")
        for i, message in enumerate(messages):
            content = message.get("content")
            if content is not None and not isinstance(content, str | list):
                raise _HTTPError(
                    400, f"messages[{i}].content must be a string or a list of parts", "invalid_request_error"
                )
        return messages

    def _upstream(self) -> UpstreamClient:
        if self.config.upstream_url is None:
            raise _HTTPError(
                404,
                "no upstream is configured (start with --upstream URL); this server answers "
                "/v1/guardrail/checks only",
                "invalid_request_error",
                "no_upstream",
            )
        if self._client is None:
            raise _HTTPError(503, "the server is not started", "service_unavailable")
        return self._client

    def _scrub(self, text: str) -> str:
        key = self.config.upstream_key
        if key:
            text = text.replace(key, "***")
        return text[:_MAX_UPSTREAM_MESSAGE]

    def _upstream_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> _HTTPError:
        self.metrics.count_error("upstream")
        logger.warning("upstream answered HTTP %d", status)
        if status in (401, 403):
            # The proxy's own credentials were refused: the client can do nothing about it,
            # and the upstream's message may quote part of the key.
            return _HTTPError(
                502, "the upstream refused the proxy's credentials", "upstream_error", "upstream_auth"
            )
        if status >= 500:
            return _HTTPError(502, f"the upstream failed with HTTP {status}", "upstream_error")
        message = f"the upstream answered HTTP {status}"
        try:
            detail = orjson.loads(body)["error"]["message"]
            if isinstance(detail, str):
                message = self._scrub(detail)
        except (ValueError, KeyError, TypeError):
            pass
        extra = {}
        retry_after = headers.get("retry-after", "")
        if status == 429 and retry_after.replace(".", "", 1).isdigit():
            extra["Retry-After"] = retry_after
        return _HTTPError(status, message, "upstream_error", None, extra)

    async def chat(self, body: dict[str, Any], deadline: float, release: Callable[[], None]) -> Response:
        """``POST /v1/chat/completions``: input rails, upstream, output rails."""
        client = self._upstream()
        messages = self._messages(body)
        stream = body.get("stream", False)
        if not isinstance(stream, bool) and stream is not None:
            raise _HTTPError(400, "`stream` must be a boolean", "invalid_request_error")
        if stream and body.get("n") not in (None, 1):
            raise _HTTPError(
                400, "streaming with n > 1 is not supported by the guard proxy", "invalid_request_error"
            )
        segments = _segments(messages)
        if self.config.check_tool_definitions:
            segments += _tool_definition_segments(body)
        self._check_texts(segments)
        inputs = await self.check_texts([s.text for s in segments], "input")
        input_action = strongest(r.action for r in inputs)
        input_verdict = {
            "action": input_action,
            "texts": [
                # A tool definition's text: message and role null, field from the body (tools[0]...).
                {
                    "message": None if s.message == TOOL_DEFINITION else s.message,
                    "part": s.part,
                    "field": s.field,
                    "role": None if s.message == TOOL_DEFINITION else s.role,
                    **_verdict(r),
                }
                for s, r in zip(segments, inputs, strict=True)
            ],
        }
        if input_action == "block":
            return self._blocked_prompt(body, input_verdict, _blocking_rails(inputs))
        upstream_body = dict(body)  # every non-message field passes through untouched
        upstream_body["messages"] = _redacted_messages(messages, segments, inputs)
        upstream_body.update(_redacted_tools(body, segments, inputs))
        data = orjson.dumps(upstream_body)
        if stream:
            return await self._stream(client, data, deadline, input_verdict, release)
        started = time.perf_counter()
        # No timer of its own: the request's deadline (handle's _within) cancels this await,
        # and the client closes a connection whose answer was not read in full.
        try:
            reply = await client.post("/chat/completions", data)
        except UpstreamError as exc:
            raise self._unreachable(exc) from None
        self.metrics.observe_stage("upstream", time.perf_counter() - started)
        if reply.status != 200:
            raise self._upstream_error(reply.status, reply.body, reply.headers)
        try:
            completion = orjson.loads(reply.body)
            choices = completion["choices"]
            if not isinstance(completion, dict) or not isinstance(choices, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            self.metrics.count_error("upstream")
            raise _HTTPError(
                502, "the upstream's answer is not a chat completion", "upstream_error"
            ) from None
        return await self._checked_completion(completion, choices, input_verdict)

    def _unreachable(self, exc: UpstreamError) -> _HTTPError:
        # UpstreamError messages name what happened, never a header or body: safe to relay.
        self.metrics.count_error("upstream")
        logger.warning("upstream request failed: %s", exc)
        return _HTTPError(502, str(exc), "upstream_error")

    def _blocked_prompt(
        self, body: Mapping[str, Any], input_verdict: dict[str, Any], rails: list[str]
    ) -> Response:
        model = body.get("model")
        payload = {
            "id": f"chatcmpl-guard-{time.time_ns():x}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model if isinstance(model, str) else "",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "refusal": REFUSAL},
                    "logprobs": None,
                    "finish_reason": "content_filter",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            GUARD_FIELD: {
                "action": "block",
                "blocked_stage": "input",
                "input": input_verdict,
                "output": None,
            },
        }
        return _JSONResponse(payload, headers=self._verdict_headers("block", "block", None, rails))

    @staticmethod
    def _verdict_headers(
        action: str, input_action: str, output_action: str | None, rails: list[str]
    ) -> dict[str, str]:
        # Only actions and rail names (from the policy, not from any text) go into headers.
        headers = {"X-RAI-Guard-Action": action, "X-RAI-Guard-Input-Action": input_action}
        if output_action is not None:
            headers["X-RAI-Guard-Output-Action"] = output_action
        if rails:
            headers["X-RAI-Guard-Blocked-Rails"] = ",".join(rails)
        return headers

    async def _checked_completion(
        self, completion: dict[str, Any], choices: list[Any], input_verdict: dict[str, Any]
    ) -> Response:
        # Every text of every answer is checked: the content, every other text field (refusal,
        # reasoning_content...) and the arguments of any tool calls (an agent runs those, so
        # they are output as much as the content is). The answer relayed is rebuilt from
        # what was checked and from metadata of a sane shape; the rest is left out and named.
        try:
            relayed, checked, removed = self._relayable(completion, choices)
        except _HTTPError:
            self.metrics.count_error("upstream")
            raise
        outputs = await self.check_texts([segment.text for _, segment in checked], "output")
        verdicts = []
        blocked: dict[int, dict[str, Any]] = {}
        for (choice, segment), result in zip(checked, outputs, strict=True):
            if result.blocked:
                blocked[id(choice)] = choice
            elif result.redacted_text != segment.text:
                _set_path(choice["message"], segment.path, result.redacted_text)
            verdicts.append({"index": choice["index"], "field": segment.field, **_verdict(result)})
        for choice in blocked.values():
            # One blocked text withholds the whole answer: every text field and tool call.
            choice["message"] = {"role": "assistant", "content": None, "refusal": REFUSAL}
            choice["finish_reason"] = "content_filter"
        output_action = strongest(r.action for r in outputs)
        action = strongest((input_verdict["action"], output_action))
        relayed[GUARD_FIELD] = {
            "action": action,
            "blocked_stage": "output" if output_action == "block" else None,
            "input": input_verdict,
            "output": {"action": output_action, "choices": verdicts},
        }
        if removed:
            relayed[GUARD_FIELD]["output"]["removed_fields"] = removed
        headers = self._verdict_headers(
            action, input_verdict["action"], output_action, _blocking_rails(outputs)
        )
        return _JSONResponse(relayed, headers=headers)

    def _relayable(
        self, completion: Mapping[str, Any], choices: list[Any]
    ) -> tuple[dict[str, Any], list[tuple[dict[str, Any], _Segment]], list[str]]:
        """The completion to relay, rebuilt; the texts the output rails must check; what was left out.

        Kept: the completion's identifiers, ``created`` and ``usage`` counts; per choice its
        index, finish reason and a message of role ``assistant`` holding the content (a string
        or text parts), the other text fields and the tool calls (id, name, arguments). Left
        out, and named: log-probs (their tokens and top alternatives spell text the rails do
        not check), fields that are not text (``audio``, ``annotations``) and unknown keys.

        Raises:
            _HTTPError: 502 for a choice, message, content or tool call of a shape the guard
                cannot read (fail closed: never relayed unchecked).
        """
        removed: list[str] = [str(k) for k in completion if k not in _COMPLETION_KEYS][:_MAX_REMOVED_NAMES]
        relayed: dict[str, Any] = {
            **_identifiers(completion, removed),
            "object": "chat.completion",
            "choices": [],
        }
        checked: list[tuple[dict[str, Any], _Segment]] = []
        for position, choice in enumerate(choices):
            message = choice.get("message") if isinstance(choice, Mapping) else None
            if not isinstance(message, Mapping):
                raise _HTTPError(
                    502, "the upstream's answer has a choice the guard cannot read", "upstream_error"
                )
            for key in choice:
                if key not in ("index", "message", "finish_reason", "logprobs") or (
                    key == "logprobs" and choice[key] is not None
                ):
                    _note_removed(removed, str(key))
            index = choice.get("index")
            content, segments = self._answer_content(message.get("content"))
            kept: dict[str, Any] = {"role": "assistant", "content": content}
            for key, text in _text_fields(message, removed):
                kept[key] = text
                segments.append(_Segment(0, None, "assistant", text, (key,)))
            kept.update(_relayed_tool_calls(message))
            segments.extend(_tool_call_segments(0, "assistant", kept))
            rebuilt = {
                "index": index if isinstance(index, int) and not isinstance(index, bool) else position,
                "message": kept,
                "logprobs": None,
                # An odd reason (not a short token) may be text: "stop" stands in, as in a stream.
                "finish_reason": _finish_reason(choice.get("finish_reason"))
                or ("stop" if choice.get("finish_reason") is not None else None),
            }
            relayed["choices"].append(rebuilt)
            checked.extend((rebuilt, segment) for segment in segments)
        usage = _counts(completion.get("usage"))
        if usage is not None:
            relayed["usage"] = usage
        return relayed, checked, removed

    async def _stream(
        self,
        client: UpstreamClient,
        data: bytes,
        deadline: float,
        input_verdict: dict[str, Any],
        release: Callable[[], None],
    ) -> Response:
        started = time.perf_counter()
        # Until the headers are in, the request's deadline (handle's _within) bounds the wait;
        # from then on the relay enforces it on every read.
        try:
            upstream = await client.post_stream("/chat/completions", data)
        except UpstreamError as exc:
            raise self._unreachable(exc) from None
        self.metrics.observe_stage("upstream", time.perf_counter() - started)
        if upstream.status != 200:
            try:
                body = await upstream.read(_MAX_UPSTREAM_ERROR_BYTES)
            except (UpstreamError, ValueError):
                body = b""
            finally:
                upstream.close()
            raise self._upstream_error(upstream.status, body, upstream.headers)
        response = _GuardedStream(
            self._relay(upstream, deadline, input_verdict),
            media_type="text/event-stream",
            headers={
                "Cache-Control": "no-cache",
                "X-RAI-Guard-Input-Action": input_verdict["action"],
            },
        )
        response.on_close(upstream.close)
        response.on_close(release)
        return response

    async def _relay(
        self, upstream: UpstreamStream, deadline: float, input_verdict: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        """Re-emit the upstream stream with its text released window by window, as checked."""
        template: dict[str, Any] = {
            "object": "chat.completion.chunk",
            **_identifiers({}, [], fill=True),
        }
        pending: list[bytes] = []  # the role chunk, until the first checked text goes out
        # Tool calls and text fields other than the content (refusal, reasoning_content):
        # held back to the end, checked whole, then sent as one chunk each.
        held = _HeldBack()
        tail: dict[str, Any] = {"finish_reason": None, "usage": None, "done": False}
        output_actions: list[str] = []
        windows = 0

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
            payload = {
                **template,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
                **extra,
            }
            return _sse(payload)

        async def deltas() -> AsyncIterator[str]:
            async for data in self._sse_data(upstream, deadline):
                if data == "[DONE]":
                    tail["done"] = True
                    return
                try:
                    event = orjson.loads(data)
                except ValueError:
                    raise _UpstreamStreamError("the upstream sent a chunk that is not JSON") from None
                if not isinstance(event, dict):
                    raise _UpstreamStreamError("the upstream sent a chunk that is not an object")
                if event.get("error"):
                    raise _UpstreamStreamError("the upstream reported an error mid-stream")
                template.update(_identifiers(event, held.removed, fill=False))
                choices = event.get("choices") or []
                if not isinstance(choices, list):
                    raise _UpstreamStreamError("the upstream sent `choices` that is not a list")
                if not choices:
                    usage = _counts(event.get("usage"))
                    if usage is not None:
                        tail["usage"] = usage
                    continue
                choice = choices[0] if isinstance(choices[0], dict) else {}
                if len(choices) > 1 or (choice.get("index") or 0) != 0:
                    # One answer per stream (n > 1 is refused): a second would be read as more
                    # text of the first.
                    raise _UpstreamStreamError("the upstream streamed a second choice; the guard checks one")
                delta = choice.get("delta") or {}
                if not isinstance(delta, dict):
                    raise _UpstreamStreamError("the upstream sent a delta that is not an object")
                content = delta.get("content")
                had_role = held.role is not None
                held.add(delta)
                if not had_role and held.role is not None:
                    pending.append(chunk({"role": held.role, "content": ""}))
                if choice.get("finish_reason"):
                    tail["finish_reason"] = _finish_reason(choice["finish_reason"]) or "stop"
                if isinstance(content, str) and content:
                    yield content

        def on_result(result: GuardResult) -> None:
            nonlocal windows
            windows += 1
            output_actions.append(result.action)
            self.metrics.observe([result])

        def summary(action: str, blocked: GuardResult | None) -> dict[str, Any]:
            output: dict[str, Any] = {"action": action, "windows": windows}
            if held.removed:
                output["removed_fields"] = list(held.removed)
            if blocked is not None:
                output["blocked_window"] = _verdict(blocked)
            return {
                "action": strongest((input_verdict["action"], action)),
                "blocked_stage": "output" if blocked is not None else None,
                "input": input_verdict,
                "output": output,
            }

        def blocked_ending(result: GuardResult) -> list[bytes]:
            # Keep the role chunk (clients expect it first), then the content_filter end.
            events = [event for event in pending if b'"role"' in event]
            events.append(chunk({}, "content_filter", **{GUARD_FIELD: summary("block", result)}))
            events.append(_DONE)
            return events

        guard = self._guard()
        try:
            async for piece in guard.astream_output(
                deltas(), max_buffer_chars=self.config.stream_buffer_chars, on_result=on_result
            ):
                for event in pending:
                    yield event
                pending.clear()
                yield chunk({"content": piece})
            if not tail["done"]:
                raise _UpstreamStreamError("the upstream stream ended without [DONE]")
            for event in pending:
                yield event
            pending.clear()
            if held:
                checked_deltas, blocked_held = await self._checked_held_back(held, on_result)
                if blocked_held is not None:
                    for event in blocked_ending(blocked_held):
                        yield event
                    return
                for delta in checked_deltas:
                    yield chunk(delta)
            extra = {GUARD_FIELD: summary(strongest(output_actions), None)}
            yield chunk({}, tail["finish_reason"] or "stop", **extra)
            if tail["usage"] is not None:
                yield _sse({**template, "choices": [], "usage": tail["usage"]})
            yield _DONE
        except GuardBlocked as blocked:
            for event in blocked_ending(blocked.result):
                yield event
        # ValueError: a line over the client's limit (upstream.MAX_LINE_BYTES).
        except (_UpstreamStreamError, UpstreamError, ValueError, asyncio.TimeoutError) as exc:
            kind = "deadline" if isinstance(exc, asyncio.TimeoutError) else "upstream"
            self.metrics.count_error(kind)
            message = (
                f"the request took longer than {self.config.request_timeout_s:g} s"
                if kind == "deadline"
                else str(exc)
                if isinstance(exc, _UpstreamStreamError | UpstreamError)
                else f"the upstream stream failed ({type(exc).__name__})"
            )
            logger.warning("stream ended early: %s", message)
            # An error event (the OpenAI SDK raises APIError on it), never a clean end: a cut
            # answer must not look complete. Nothing unchecked was sent.
            yield _sse({"error": {"message": message, "type": "upstream_error", "param": None, "code": kind}})
        except Exception as exc:  # whatever broke, the stream must not end looking complete
            # An answer of a shape nothing above foresaw: still an error event, counted. The log
            # names the exception type only (its message may quote the upstream's text).
            self.metrics.count_error("internal")
            logger.error("stream relay failed: %s", type(exc).__name__)
            yield _sse(
                {
                    "error": {
                        "message": "the guard could not read the upstream stream",
                        "type": "server_error",
                        "param": None,
                        "code": "internal",
                    }
                }
            )

    @staticmethod
    def _answer_content(content: Any) -> tuple[Any, list[_Segment]]:
        """An answer's ``content`` as relayed (a string, or text parts rebuilt from type and
        text) and its texts to check.

        Raises:
            _HTTPError: 502 for content of any other shape (fail closed: never relayed
                unchecked).
        """
        if content is None or content == "":
            return content, []
        if isinstance(content, str):
            return content, [_Segment(0, None, "assistant", content)]
        parts: list[dict[str, str]] = []
        segments: list[_Segment] = []
        try:
            for j, kind, key, text in _text_parts(content if isinstance(content, list) else [None]):
                parts.append({"type": kind, key: text})
                if text:
                    segments.append(_Segment(0, j, "assistant", text, ("content", j, key)))
        except _UnreadablePart:
            raise _HTTPError(
                502, "the upstream's answer has content the guard cannot read", "upstream_error"
            ) from None
        return parts, segments

    async def _checked_held_back(
        self, held: _HeldBack, on_result: Callable[[GuardResult], None]
    ) -> tuple[list[dict[str, Any]], GuardResult | None]:
        """The held text fields and tool calls as checked deltas (redacted where a rail says
        so), or the verdict that blocks the answer."""
        texts = [(key, "".join(parts)) for key, parts in held.texts.items()]
        calls = [(index, _checkable_arguments(arguments)) for index, arguments in held.call_arguments()]
        results = await self._guard().acheck_outputs([t for _, t in texts] + [a for _, a in calls])
        for result in results:
            on_result(result)
        blocking = next((r for r in results if r.blocked), None)
        if blocking is not None:
            return [], blocking
        deltas: list[dict[str, Any]] = [
            # Not blocked, so each redacted_text is a string (the text itself, or redacted).
            {key: result.redacted_text or ""}
            for (key, _), result in zip(texts, results, strict=False)
        ]
        for (index, _), result in zip(calls, results[len(texts) :], strict=True):
            deltas.append(held.call_delta(index, result.redacted_text or ""))
        return deltas, None

    @staticmethod
    async def _sse_data(upstream: UpstreamStream, deadline: float) -> AsyncIterator[str]:
        """The ``data:`` payloads of an SSE stream, each awaited no longer than the deadline."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise asyncio.TimeoutError
            raw = await _within(upstream.readline(), remaining)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("data:"):
                yield line[5:].strip()


class _GuardedStream(StreamingResponse if _IMPORT_ERROR is None else object):  # type: ignore[misc]
    """A streaming response that runs its close callbacks however the stream ends.

    Starlette runs a response's ``background`` only after a clean end; a stream cut by a
    client disconnect or an error must still free its concurrency slot and close the
    upstream connection.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._callbacks: list[Callable[[], Any]] = []

    def on_close(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` (sync or async) when the response ends, in the order added."""
        self._callbacks.append(callback)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            for callback in self._callbacks:
                try:
                    outcome = callback()
                    if asyncio.iscoroutine(outcome):
                        await outcome
                except Exception as exc:  # one failing callback must not skip the others
                    logger.warning("stream close callback failed: %s", type(exc).__name__)


class _GuardApp(Starlette if _IMPORT_ERROR is None else object):  # type: ignore[misc]
    """Starlette, with the two POST endpoints dispatched before its middleware and router.

    Every proxied request otherwise walks five ASGI layers (error and exception middleware,
    router, route, request-response wrapper) that add nothing here: ``GuardService.handle``
    already turns every exception into an OpenAI-shaped error, and reads the two headers it
    needs from the scope itself. Other paths and methods, and lifespan events, go through
    Starlette as usual.
    """

    def __init__(
        self, *args: Any, fast: Mapping[str, Callable[[Scope, Receive], Awaitable[Response]]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._fast = dict(fast)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self._fast.get(scope["path"])
            if endpoint is not None:
                scope["app"] = self
                response = await endpoint(scope, receive)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    guard: Guard | Callable[[], Guard],
    config: ServeConfig | None = None,
    *,
    metrics: ServeMetrics | None = None,
    tune_gc: bool = False,
) -> Starlette:
    """Build the ASGI app.

    Args:
        guard: The guard, or a function that builds it (run on a worker thread at startup, so
            the server answers ``/healthz`` while classifiers load). The app closes it on
            shutdown either way.
        config: Limits, keys and upstream; default :class:`ServeConfig()` (loopback, no upstream).
        metrics: Metrics to count into; default: a new registry.
        tune_gc: :func:`tune_gc_for_serving` once the guard is loaded; for a process
            that serves nothing else.

    Raises:
        MissingDependencyError: the ``serve`` extra is not installed.
    """
    require_serve_deps()
    config = config or ServeConfig()
    factory: Callable[[], Guard] = guard if not isinstance(guard, Guard) else (lambda: guard)
    service = GuardService(factory, config, metrics=metrics, tune_gc=tune_gc)

    async def chat(scope: Scope, receive: Receive) -> Response:
        return await service.handle(scope, receive, "chat_completions", service.chat)

    async def checks(scope: Scope, receive: Receive) -> Response:
        return await service.handle(scope, receive, "guardrail_checks", service.checks)

    async def chat_route(request: Request) -> Response:  # reached only through _GuardApp's fast path
        return await chat(request.scope, request.receive)

    async def checks_route(request: Request) -> Response:
        return await checks(request.scope, request.receive)

    def refused(request: Request) -> Response | None:
        # The GET routes too: a DNS-rebinding page must not read the policy name or the metrics.
        return service.cross_site_refusal(_RequestHead.of(request.scope))

    async def healthz(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        if service.ready:
            assert service.guard is not None
            return _JSONResponse({"status": "ok", "policy": service.guard.name})
        status = "error" if service.load_error else "loading"
        return _JSONResponse(
            {"status": status}, status_code=503, headers={"Retry-After": str(config.retry_after_s)}
        )

    async def metrics_route(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        if not service.authorized(request.headers.get("authorization", "")):
            return _HTTPError(
                401,
                "missing or invalid API key",
                "invalid_request_error",
                "invalid_api_key",
                {"WWW-Authenticate": "Bearer"},
            ).response()
        data = prometheus_client.generate_latest(service.metrics.registry)
        return Response(data, media_type=prometheus_client.CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = _GuardApp(
        routes=[
            Route("/v1/chat/completions", chat_route, methods=["POST"]),
            Route("/v1/guardrail/checks", checks_route, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_route, methods=["GET"]),
        ],
        lifespan=lifespan,
        fast={"/v1/chat/completions": chat, "/v1/guardrail/checks": checks},
    )
    app.state.service = service
    return app


#: Largest request head (request line and headers) a connection may send: past it h11 answers
#: 431/400 and closes it. Without it the default parser buffers a header of any size.
MAX_HEAD_BYTES = 64 * 1024
#: Seconds a connection has to send each request's head once it opens (or once the previous
#: answer is complete): a client that trickles a header is closed, so idle half-open
#: connections cannot pile up. The request's own deadline covers the body and the rest.
HEAD_TIMEOUT_S = 10.0


def _http_options() -> dict[str, Any]:
    """uvicorn options that bound each request head's size and arrival time (h11 parser)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadBoundedH11(H11Protocol):
        """uvicorn's h11 protocol with a deadline on each request head."""

        _head_timer: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:  # the head is in: the request's deadline takes over
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()

    return {"http": HeadBoundedH11, "h11_max_incomplete_event_size": MAX_HEAD_BYTES}


def serve(
    guard: Guard | Callable[[], Guard],
    config: ServeConfig,
    *,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Serve until SIGINT/SIGTERM; in-flight requests get ``request_timeout_s`` to finish.

    Args:
        guard: The guard or a function building it (see :func:`create_app`).
        config: Host, port, keys, upstream and limits.
        log_level: uvicorn's log level.
        access_log: Log one line per request (method, path, status; never headers).
    """
    app = create_app(guard, config, tune_gc=True)
    upstream = _safe_url(config.upstream_url) if config.upstream_url else "none (checks API only)"
    logger.info(
        "rai guard serve on http://%s:%d, upstream %s, client keys %s",
        config.host,
        config.port,
        upstream,
        "required" if config.api_keys else "off (loopback)",
    )
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        log_level=log_level,
        access_log=access_log,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=int(config.request_timeout_s) + 1,
        **_http_options(),
    )


class BackgroundServer:
    """Run an app with uvicorn on a loopback port in a daemon thread (tests, benchmarks).

    Args:
        app: The ASGI app.
        host: Loopback address to bind.
        port: Port (0: a free one).
        timeout_graceful_shutdown: Seconds in-flight requests get on :meth:`stop`.
    """

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, timeout_graceful_shutdown: float = 5.0
    ) -> None:
        require_serve_deps()
        if not is_loopback(host):
            raise ValueError(f"BackgroundServer binds loopback addresses only, got {host!r}")
        self.app = app
        self.host = host
        self.port = port
        self._graceful = timeout_graceful_shutdown
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        """Start serving; returns once uvicorn listens (the guard may still be loading)."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="on",
            server_header=False,
            timeout_graceful_shutdown=int(self._graceful),
            **_http_options(),
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="rai-guard-serve", daemon=True
        )
        self._thread.start()
        end = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > end:
                self.stop()
                raise RuntimeError("the guard server did not start")
            time.sleep(0.01)
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until ``/healthz`` says ready."""
        end = time.monotonic() + timeout_s
        with httpx.Client(trust_env=False) as client:
            while time.monotonic() < end:
                try:
                    if client.get(self.url + "/healthz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
        raise TimeoutError("the guard server did not become ready")

    def stop(self) -> None:
        """Graceful stop: stop accepting, let in-flight requests finish, run the shutdown."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self._graceful + 10)
        self._server = None
        self._thread = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _iter_keys(raw: str) -> Iterator[str]:
    for part in raw.replace(",", " ").split():
        if part:
            yield part


def keys_from_env(variable: str, environ: Mapping[str, str]) -> tuple[str, ...]:
    """Client API keys from an environment variable (comma- or space-separated)."""
    return tuple(_iter_keys(environ.get(variable, "")))
