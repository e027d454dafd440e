"""Translate OpenAI-SDK and HTTP transport failures into :class:`ProviderError`.

The runner decides on retries from ``retryable``, ``status_code``, ``retry_after_s`` and
``error_type`` only, so every OpenAI-compatible adapter (OpenAI, Azure, Vertex, local
servers) funnels its exceptions through :func:`map_openai_error`.

Classification:

============================================  ==============  =========
Failure                                       ``error_type``  retryable
============================================  ==============  =========
HTTP 429                                      rate_limit      yes
HTTP 429 with code ``insufficient_quota``     quota           no
HTTP 408 / 504, ``APITimeoutError``           timeout         yes
HTTP 409                                      conflict        yes
HTTP 5xx                                      server_error    yes
HTTP 400 / 413 / 422 (other 4xx)              bad_request     no
HTTP 400 with code ``content_filter``         content_filter  no
HTTP 401 / 403                                auth            no
HTTP 404                                      not_found       no
connection refused/reset, stream dropped      connection      yes
malformed JSON / SSE, unexpected body         bad_response    yes
============================================  ==============  =========

Messages are scrubbed: every secret value the caller passes (API keys, secret header
values) is replaced by ``***``, and so is anything after ``Bearer``.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx

from rai_harness.errors import ProviderError
from rai_harness.jsoncodec import loads as json_loads
from rai_harness.types import Generation

__all__ = [
    "map_openai_error",
    "map_transport_error",
    "parse_retry_after",
    "provider_error_for_body",
    "provider_error_for_status",
    "scrub_and_shorten",
    "scrub_secrets",
    "stream_error_event",
    "well_formed",
    "without_secrets",
]

log = logging.getLogger(__name__)

#: Longest server message kept in an error (bodies can be whole HTML pages).
_MAX_DETAIL = 500

#: Most bytes of an error body read for its message (the transport caps the body anyway).
_MAX_ERROR_BODY = 1024 * 1024

#: Shortest secret hidden in a stored answer: shorter values are placeholders, not keys.
MIN_ANSWER_SECRET_CHARS = 16

#: Shortest end of a text taken for the cut-off start of a secret (shorter ones are too
#: likely to be ordinary text, and reveal little).
_MIN_SECRET_PREFIX = 6

_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")

_STATUS_KINDS: dict[int, tuple[str, bool]] = {
    400: ("bad_request", False),
    401: ("auth", False),
    403: ("auth", False),
    404: ("not_found", False),
    408: ("timeout", True),
    409: ("conflict", True),
    413: ("bad_request", False),
    422: ("bad_request", False),
    429: ("rate_limit", True),
}


def scrub_secrets(text: str, secrets: Iterable[str]) -> str:
    """Replace each secret value, and any bearer token, in ``text`` by ``***``.

    Args:
        text: A message that may quote a request or a server reply.
        secrets: Secret values to hide (empty strings are ignored).
    """
    ordered = _longest_first(secrets)
    text = _hide_values(text, ordered)
    # A text cut short upstream (a capped body) can end in the first part of a secret.
    for secret in ordered:
        for size in range(len(secret) - 1, _MIN_SECRET_PREFIX - 1, -1):
            if text.endswith(secret[:size]):
                text = text[:-size] + "***"
                break
    return _BEARER_RE.sub(r"\1***", text)


def _longest_first(secrets: Iterable[str]) -> list[str]:
    # Longest first, so a secret that contains another is hidden whole.
    return sorted({s for s in secrets if s}, key=len, reverse=True)


def _hide_values(text: str, ordered: Sequence[str]) -> str:
    for secret in ordered:
        if secret in text:
            text = text.replace(secret, "***")
    return text


#: Longest model name and finish reason an answer may report. Both are stored with every
#: call (journal, samples) and counted in ``run.json``; a hostile endpoint sending 14 MiB of
#: either, under the response-size cap, made 12 calls take 1.6 GB and 352 MB of samples.
MAX_MODEL_CHARS = 256
MAX_FINISH_REASON_CHARS = 64


def well_formed(generation: Generation) -> Generation:
    """``generation`` if its model name and finish reason are short strings (or absent).

    Raises:
        ProviderError: ``bad_response`` (retryable, like any malformed answer) naming the field.
    """
    for name, value, limit in (
        ("model", generation.model, MAX_MODEL_CHARS),
        ("finish_reason", generation.finish_reason, MAX_FINISH_REASON_CHARS),
    ):
        if value is None:
            continue
        if not isinstance(value, str):
            raise ProviderError(
                f"the answer's {name} is a {type(value).__name__}, not a string",
                retryable=True,
                error_type="bad_response",
            )
        if len(value) > limit:
            raise ProviderError(
                f"the answer's {name} is {len(value):,} characters long (more than {limit})",
                retryable=True,
                error_type="bad_response",
            )
    return generation


def without_secrets(generation: Generation, secrets: Iterable[str]) -> Generation:
    """``generation`` with each secret value in its text, model name and finish reason
    replaced by ``***``.

    A hostile or compromised endpoint can echo the request's API key into its answer, and
    answers are stored (journal, samples, report). Only the exact values of real keys are
    hidden: unlike an error message, an answer may rightly say ``Bearer`` followed by a
    placeholder, and the placeholder keys local servers take (``ollama``, ``EMPTY``) are words
    an answer may use, so values under :data:`MIN_ANSWER_SECRET_CHARS` characters stay. A
    replacement is logged (without the value): the stored answer is not what the server sent.
    """
    ordered = _longest_first(s for s in secrets if len(s) >= MIN_ANSWER_SECRET_CHARS)
    if not ordered:
        return generation
    text = _hide_values(generation.text, ordered)
    model = _hide_values(generation.model, ordered) if generation.model else generation.model
    finish = generation.finish_reason
    finish = _hide_values(finish, ordered) if finish else finish
    if (text, model, finish) == (generation.text, generation.model, generation.finish_reason):
        return generation
    log.warning("the server echoed the request's API key in its answer; it is stored as ***")
    return dataclasses.replace(generation, text=text, model=model, finish_reason=finish)


def scrub_and_shorten(text: str, secrets: Iterable[str], limit: int = _MAX_DETAIL + 100) -> str:
    """``text`` scrubbed, then shortened to ``limit`` characters: in that order, so a cut never
    leaves part of a secret that the scrub would no longer recognise."""
    text = scrub_secrets(text, secrets)
    return text if len(text) <= limit else text[:limit] + "..."


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """The value of header ``name`` (lowercase), matched case-insensitively, or None."""
    if not headers:
        return None
    for key, value in headers.items():
        if str(key).lower() == name:
            return str(value)
    return None


def parse_retry_after(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``Retry-After``.

    ``retry-after-ms`` (OpenAI and Azure send it) takes precedence because it is
    finer-grained. ``Retry-After`` may be delta-seconds or an HTTP-date.

    Args:
        headers: Response headers (case-insensitive mapping such as ``httpx.Headers``,
            or a plain dict, matched case-insensitively).
        now: Current Unix time (for tests); default ``time.time()``.

    Returns:
        A non-negative number of seconds, or ``None`` when absent or unparsable.
    """
    raw_ms = _header(headers, "retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms.strip())
        except ValueError:
            ms = -1.0
        if ms >= 0 and ms == ms:  # rejects NaN
            return ms / 1000.0
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds == seconds else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _error_code(body: object) -> str | None:
    """The ``code`` of an OpenAI-style error body (``{"error": {"code": ...}}`` or flat)."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            code = inner.get("code")
            return str(code) if code is not None else None
    return None


def _detail(body: object, fallback: str) -> str:
    """The server's own message when it has one, else ``fallback``, on one line.

    Not shortened here: the caller scrubs secrets first and then shortens (:func:`_scrubbed`).
    """
    message: Any = None
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, Mapping) else inner
    if not isinstance(message, str) or not message.strip():
        message = fallback
    return " ".join(message.split())


def provider_error_for_status(
    status: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    code: str | None = None,
    secrets: Iterable[str] = (),
) -> ProviderError:
    """Build the :class:`ProviderError` for an HTTP error status.

    Args:
        status: The HTTP status code.
        message: What the server said (scrubbed here).
        headers: Response headers, for ``Retry-After``.
        code: The vendor error code, when the body had one (``insufficient_quota``...).
        secrets: Values to scrub from the message.
    """
    if status in _STATUS_KINDS:
        error_type, retryable = _STATUS_KINDS[status]
    elif status == 504:
        error_type, retryable = "timeout", True
    elif status >= 500:
        error_type, retryable = "server_error", True
    elif 400 <= status < 500:
        error_type, retryable = "bad_request", False
    elif 300 <= status < 400:
        # Redirects are never followed (the API key would go to whatever host the server
        # names), and asking again gets the same answer.
        error_type, retryable = "redirect", False
        location = _header(headers, "location")
        message = (
            f"the server redirects to {location or 'another URL'}; redirects are not followed, so "
            "the API key is only ever sent to base_url: set base_url to the final URL"
        )
    else:  # a 1xx/2xx that the SDK still called an error: odd, worth one more try
        error_type, retryable = "bad_response", True
    # A 429 for an exhausted quota or billing limit will not clear by waiting.
    if status == 429 and code in ("insufficient_quota", "billing_hard_limit_reached"):
        error_type, retryable = "quota", False
    if code == "content_filter" and status == 400:
        error_type = "content_filter"
    text = scrub_and_shorten(f"HTTP {status} ({error_type}): {message}", secrets)
    return ProviderError(
        text,
        retryable=retryable,
        status_code=status,
        retry_after_s=parse_retry_after(headers) if retryable else None,
        error_type=error_type,
    )


def provider_error_for_body(
    status: int, body: bytes, *, headers: Mapping[str, str] | None = None, secrets: Iterable[str] = ()
) -> ProviderError:
    """The :class:`ProviderError` for an HTTP error response read as raw bytes (lean client path).

    The body is parsed as an OpenAI-style error when it is JSON (``{"error": {"message",
    "code"}}``); otherwise its text, shortened, is the message.
    """
    parsed: object = None
    # The whole (capped) body, not its start: the secret scrub must see every secret whole.
    body = body[:_MAX_ERROR_BODY]
    text = body.decode("utf-8", "replace")
    try:
        parsed = json_loads(body)
    except ValueError:  # JSONDecodeError (also for nesting too deep) and UnicodeDecodeError
        parsed = None
    return provider_error_for_status(
        status,
        _detail(parsed if parsed is not None else text, text or f"HTTP {status}"),
        headers=headers,
        code=_error_code(parsed),
        secrets=secrets,
    )


def stream_error_event(body: object, *, secrets: Iterable[str] = ()) -> ProviderError:
    """An error object sent inside a 200 stream: the server gave up mid-generation (retryable)."""
    return ProviderError(
        scrub_and_shorten(
            f"the server reported an error mid-stream: {_detail(body, 'unknown error')}", secrets
        ),
        retryable=True,
        error_type="server_error",
    )


def _is_transport_error(exc: BaseException) -> bool:
    """Whether ``exc`` is an httpx (or the SDK's httpx2) transport failure."""
    if isinstance(exc, httpx.TransportError):
        return True
    module = type(exc).__module__.split(".")[0]
    # openai 3.x ships its own HTTP stack (httpx2) with the same exception names.
    return module == "httpx2" and any(c.__name__ == "TransportError" for c in type(exc).__mro__)


def _is_timeout(exc: BaseException) -> bool:
    return any(c.__name__ == "TimeoutException" for c in type(exc).__mro__)


def map_transport_error(exc: BaseException, *, secrets: Iterable[str] = ()) -> ProviderError:
    """Map a connection-level failure (httpx/httpx2 ``TransportError``) to a retryable error.

    A stream cut mid-way (``RemoteProtocolError``, ``ReadError``) lands here too:
    the partial text is discarded and the call is retried whole.
    """
    if _is_timeout(exc):
        return ProviderError(
            scrub_secrets(f"request timed out ({type(exc).__name__})", secrets),
            retryable=True,
            error_type="timeout",
        )
    detail = str(exc) or type(exc).__name__
    return ProviderError(
        scrub_and_shorten(f"connection failed ({type(exc).__name__}): {detail}", secrets),
        retryable=True,
        error_type="connection",
    )


def _root_cause(exc: BaseException) -> BaseException | None:
    """The innermost ``__cause__``/``__context__`` (the SDK wraps transport errors)."""
    seen: set[int] = set()
    current: BaseException | None = exc.__cause__ or exc.__context__
    last: BaseException | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        last = current
        current = current.__cause__ or current.__context__
    return last


def map_openai_error(exc: BaseException, *, secrets: Iterable[str] = ()) -> ProviderError:
    """Translate any exception from an OpenAI SDK call into a :class:`ProviderError`.

    Args:
        exc: What the SDK (or the HTTP stack under it) raised.
        secrets: Secret values (API key, secret header values) to scrub.

    Returns:
        The error to raise, with ``retryable``, ``status_code``, ``retry_after_s`` and
        ``error_type`` set. Exceptions that are not recognised become non-retryable
        ``provider_error`` so an adapter bug is not retried forever.
    """
    import openai

    secrets = tuple(secrets)
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APIStatusError):
        body = exc.body
        return provider_error_for_status(
            exc.status_code,
            _detail(body, exc.message),
            headers=exc.response.headers,
            code=_error_code(body) or getattr(exc, "code", None),
            secrets=secrets,
        )
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(
            scrub_secrets("request timed out before the server answered", secrets),
            retryable=True,
            error_type="timeout",
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = _root_cause(exc)
        cause_text = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        return ProviderError(
            scrub_and_shorten(f"connection failed{cause_text}", secrets),
            retryable=True,
            error_type="connection",
        )
    if isinstance(exc, openai.APIResponseValidationError):
        return ProviderError(
            scrub_and_shorten(f"unexpected response body: {_detail(exc.body, exc.message)}", secrets),
            retryable=True,
            status_code=exc.status_code,
            error_type="bad_response",
        )
    if isinstance(exc, openai.APIError):
        # An error object sent inside a 200 stream ({"error": {...}}): the server gave up
        # mid-generation (overload, internal error), which usually passes on a retry.
        return ProviderError(
            scrub_and_shorten(
                f"the server reported an error mid-stream: {_detail(exc.body, exc.message)}", secrets
            ),
            retryable=True,
            error_type="server_error",
        )
    if _is_transport_error(exc):
        return map_transport_error(exc, secrets=secrets)
    if isinstance(exc, RecursionError) or _is_int_digits_error(exc):
        # The SDK's own json.loads on a body nested thousands deep or holding a number of
        # thousands of digits: no chat completion looks like that.
        reason = "nested too deep" if isinstance(exc, RecursionError) else "a number of over 4,300 digits"
        return ProviderError(
            f"malformed response from the server: its JSON is {reason} to read",
            retryable=True,
            error_type="bad_response",
        )
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return ProviderError(
            scrub_and_shorten(f"malformed response from the server ({type(exc).__name__}: {exc})", secrets),
            retryable=True,
            error_type="bad_response",
        )
    if _is_pydantic_validation_error(exc):
        return ProviderError(
            scrub_and_shorten(f"response did not match the chat-completion schema: {exc}", secrets),
            retryable=True,
            error_type="bad_response",
        )
    if isinstance(exc, openai.OpenAIError):
        return ProviderError(
            scrub_and_shorten(f"{type(exc).__name__}: {exc}", secrets),
            retryable=False,
            error_type="client_error",
        )
    return ProviderError(
        scrub_and_shorten(f"{type(exc).__name__}: {exc}", secrets),
        retryable=False,
        error_type="provider_error",
    )


def _is_int_digits_error(exc: BaseException) -> bool:
    """Python's refusal to convert a very long integer (``sys.set_int_max_str_digits``)."""
    return type(exc) is ValueError and "int_max_str_digits" in str(exc)


def _is_pydantic_validation_error(exc: BaseException) -> bool:
    try:
        import pydantic
    except ImportError:  # pragma: no cover - pydantic is a core dependency
        return False
    return isinstance(exc, pydantic.ValidationError)
