"""AWS Bedrock (``kind: bedrock``) through the Converse / ConverseStream API.

Converse gives one request shape for every Bedrock text model (Anthropic, Meta, Mistral,
Amazon Nova...). ``model`` is a model id (``amazon.nova-micro-v1:0``) or an inference
profile id/ARN (``us.anthropic.claude-3-5-haiku-20241022-v1:0``). Credentials and, when
``region`` is unset, the region come from boto3's usual chain (environment variables,
``~/.aws``, SSO, an instance or task role); ``profile`` picks a named profile. This
module never reads, logs or stores the credentials themselves.

boto3 is synchronous, so each call runs in a worker thread of a pool sized to the
provider's ``concurrency`` (the default executor of ``asyncio.to_thread`` has only a
handful of threads and is shared with everything else). Timings are taken in that
thread, right where the events arrive.

Measurements: TTFT is the first ``contentBlockDelta`` carrying text; usage comes from
the final ``metadata`` event (``inputTokens``/``outputTokens``), whose server-side
``metrics.latencyMs`` is collected and summarised by :meth:`BedrockProvider.describe`.

Bedrock also has an OpenAI-compatible Chat Completions endpoint
(``https://bedrock-runtime.REGION.amazonaws.com/openai/v1`` with a Bedrock API key);
use ``kind: openai`` for that.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import statistics
import threading
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from rai_harness.errors import ProviderError
from rai_harness.providers.base import BaseProvider, ProviderConfig, StreamTimer, url_without_credentials
from rai_harness.providers.errors_map import parse_retry_after, scrub_and_shorten, scrub_secrets
from rai_harness.providers.tokens import estimate_usage
from rai_harness.types import ChatRequest, Generation, Usage

__all__ = ["BedrockConfig", "BedrockProvider", "build_converse_kwargs", "map_bedrock_error"]

log = logging.getLogger(__name__)

# Error codes Bedrock returns, by (error_type, retryable).
_RETRYABLE_CODES: dict[str, str] = {
    "ThrottlingException": "rate_limit",
    "TooManyRequestsException": "rate_limit",
    "ServiceUnavailableException": "server_error",
    "InternalServerException": "server_error",
    "ModelNotReadyException": "model_not_ready",
    "ModelTimeoutException": "timeout",
    "ModelStreamErrorException": "server_error",
    "RequestTimeout": "timeout",
    "RequestTimeoutException": "timeout",
}
_FATAL_CODES: dict[str, str] = {
    "ValidationException": "bad_request",
    "AccessDeniedException": "auth",
    "UnrecognizedClientException": "auth",
    "ExpiredTokenException": "auth",
    "InvalidSignatureException": "auth",
    "ResourceNotFoundException": "not_found",
    "ServiceQuotaExceededException": "quota",
    "ModelErrorException": "model_error",
}


class BedrockConfig(ProviderConfig):
    """A Bedrock model through Converse / ConverseStream (``kind: bedrock``)."""

    description: ClassVar[str] = "AWS Bedrock via the Converse API (any text model or inference profile)"
    requires: ClassVar[tuple[tuple[str, str, str | None], ...]] = (("boto3", "boto3", "bedrock"),)

    kind: Literal["bedrock"] = "bedrock"
    model: str = Field(
        ..., min_length=1, description="Model id (amazon.nova-micro-v1:0) or inference profile id/ARN."
    )
    region: str | None = Field(None, description="AWS region, e.g. us-east-1 (unset: boto3's default).")
    profile: str | None = Field(None, description="Named AWS profile (unset: the default chain).")
    endpoint_url: str | None = Field(
        None, description="Override of the bedrock-runtime endpoint (VPC endpoints, tests)."
    )

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_has_no_credentials(cls, value: str | None) -> str | None:
        return url_without_credentials(value, "endpoint_url")

    def cache_identity(self) -> dict[str, Any]:
        """Model and region decide the outputs; the profile (credentials) does not."""
        return {
            "kind": self.kind,
            "model": self.model,
            "region": self.region,
            "endpoint_url": self.endpoint_url,
        }

    def build(self, *, client: Any | None = None) -> BedrockProvider:
        """Create the provider.

        Args:
            client: A ready ``bedrock-runtime`` client or a test double with
                ``converse``/``converse_stream``; default one made by boto3 with a
                single attempt (``total_max_attempts=1``) and ``read_timeout = timeout_s``.
        """
        if client is None:
            import boto3
            from botocore.config import Config

            session = boto3.Session(profile_name=self.profile, region_name=self.region)
            client = session.client(
                "bedrock-runtime",
                endpoint_url=self.endpoint_url,
                config=Config(
                    # One attempt: the runner retries. (botocore's `max_attempts` counts
                    # retries, so {"max_attempts": 1} would still retry once.)
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    read_timeout=self.timeout_s,
                    connect_timeout=min(self.timeout_s, 10.0),
                    max_pool_connections=self.concurrency,
                ),
            )
        return BedrockProvider(client, model=self.model, stream=self.stream, max_workers=self.concurrency)


def build_converse_kwargs(model: str, request: ChatRequest) -> dict[str, Any]:
    """The ``converse``/``converse_stream`` arguments for ``request``.

    System messages go to ``system``; ``params.extra`` goes to
    ``additionalModelRequestFields`` (model-specific fields such as ``top_k``).
    """
    system = [{"text": m.content} for m in request.messages if m.role == "system"]
    messages = [
        {"role": m.role, "content": [{"text": m.content}]} for m in request.messages if m.role != "system"
    ]
    params = request.params
    inference: dict[str, Any] = {}
    if params.max_tokens is not None:
        inference["maxTokens"] = params.max_tokens
    if params.temperature is not None:
        inference["temperature"] = params.temperature
    if params.top_p is not None:
        inference["topP"] = params.top_p
    if params.stop:
        inference["stopSequences"] = list(params.stop)
    kwargs: dict[str, Any] = {"modelId": model, "messages": messages}
    if system:
        kwargs["system"] = system
    if inference:
        kwargs["inferenceConfig"] = inference
    if params.extra:
        kwargs["additionalModelRequestFields"] = dict(params.extra)
    # Converse has no seed parameter; models that take one get it via params.extra.
    return kwargs


def map_bedrock_error(exc: BaseException, *, secrets: Iterable[str] = ()) -> ProviderError:
    """Translate a botocore exception into a :class:`ProviderError`.

    Args:
        exc: What boto3 raised (``ClientError``, ``EventStreamError``, connection errors...).
        secrets: Values to scrub from the message.
    """
    if isinstance(exc, ProviderError):
        return exc
    bex: Any
    try:
        import botocore.exceptions

        bex = botocore.exceptions
    except ImportError:  # pragma: no cover - build() already needed boto3
        bex = None
    if bex is not None and isinstance(exc, bex.ClientError):
        response: Mapping[str, Any] = getattr(exc, "response", None) or {}
        error = response.get("Error") or {}
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or exc)
        meta = response.get("ResponseMetadata") or {}
        status = meta.get("HTTPStatusCode")
        status = status if isinstance(status, int) else None
        if code in _RETRYABLE_CODES:
            error_type, retryable = _RETRYABLE_CODES[code], True
        elif code in _FATAL_CODES:
            error_type, retryable = _FATAL_CODES[code], False
        elif status is not None and (status >= 500 or status in (408, 429)):
            error_type, retryable = ("rate_limit" if status == 429 else "server_error"), True
        else:
            error_type, retryable = "bad_request", False
        headers = meta.get("HTTPHeaders") if isinstance(meta.get("HTTPHeaders"), Mapping) else None
        return ProviderError(
            scrub_and_shorten(f"Bedrock {code}: {message}", secrets, 600),
            retryable=retryable,
            status_code=status,
            retry_after_s=parse_retry_after(headers) if retryable else None,
            error_type=error_type,
        )
    if bex is not None:
        timeouts = (bex.ReadTimeoutError, bex.ConnectTimeoutError)
        if isinstance(exc, timeouts):
            return ProviderError(
                scrub_secrets(f"Bedrock request timed out ({type(exc).__name__})", secrets),
                retryable=True,
                error_type="timeout",
            )
        if isinstance(exc, (bex.EndpointConnectionError, bex.HTTPClientError, bex.ConnectionError)):
            return ProviderError(
                scrub_and_shorten(f"could not reach Bedrock ({type(exc).__name__}: {exc})", secrets, 600),
                retryable=True,
                error_type="connection",
            )
        if isinstance(exc, (bex.NoCredentialsError, bex.PartialCredentialsError, bex.ProfileNotFound)):
            return ProviderError(
                f"AWS credentials are missing or incomplete ({type(exc).__name__}); configure them as for "
                "the AWS CLI (environment variables, ~/.aws, SSO or an instance role)",
                retryable=False,
                error_type="auth",
            )
        if isinstance(exc, bex.ParamValidationError):
            return ProviderError(
                scrub_and_shorten(f"Bedrock rejected the request parameters: {exc}", secrets, 600),
                retryable=False,
                error_type="bad_request",
            )
        if isinstance(exc, bex.NoRegionError):
            return ProviderError(
                "no AWS region: set `region` in the provider config or AWS_REGION",
                retryable=False,
                error_type="bad_request",
            )
    if isinstance(exc, OSError):  # a socket error that escaped botocore's wrapping (stream cut)
        return ProviderError(
            scrub_and_shorten(f"connection to Bedrock failed ({type(exc).__name__}: {exc})", secrets, 600),
            retryable=True,
            error_type="connection",
        )
    return ProviderError(
        scrub_and_shorten(f"{type(exc).__name__}: {exc}", secrets, 600),
        retryable=False,
        error_type="provider_error",
    )


class _StreamHandle:
    """Lets the event loop close a stream that a worker thread is reading (on cancel)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stream: Any = None
        self.cancelled = False

    def attach(self, stream: Any) -> None:
        with self._lock:
            self._stream = stream
            cancelled = self.cancelled
        if cancelled:
            self.close()

    def close(self) -> None:
        with self._lock:
            self.cancelled = True
            stream, self._stream = self._stream, None
        close = getattr(stream, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # closing a half-read socket may itself fail; nothing to do
                log.debug("closing the Bedrock event stream failed", exc_info=True)


class BedrockProvider(BaseProvider):
    """Calls Bedrock's Converse API in worker threads.

    Args:
        client: A ``bedrock-runtime`` client (or a double with the same two methods).
        model: Model id or inference profile id/ARN.
        stream: Use ``converse_stream`` (measures TTFT) or ``converse``.
        max_workers: Threads in the pool (the provider's concurrency).
    """

    def __init__(self, client: Any, *, model: str, stream: bool = True, max_workers: int = 8) -> None:
        self._client = client
        self._model = model
        self._stream = stream
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="rai-bedrock"
        )
        self._server_latency_ms: list[float] = []

    def describe(self) -> dict[str, Any]:
        """Model, mode and a summary of Bedrock's own ``metrics.latencyMs`` over the run."""
        info: dict[str, Any] = {"kind": "bedrock", "model": self._model, "stream": self._stream}
        samples = list(self._server_latency_ms)
        if samples:
            info["server_latency_ms"] = {
                "calls": len(samples),
                "mean": statistics.fmean(samples),
                "p50": statistics.median(samples),
                "max": max(samples),
            }
        return info

    async def aclose(self) -> None:
        """Shut the thread pool down and close the boto3 client's connections."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        close = getattr(self._client, "close", None)
        if callable(close):
            await asyncio.get_running_loop().run_in_executor(None, close)

    async def generate(self, request: ChatRequest) -> Generation:
        """Make one Converse call (no retries) and return the completion with timings.

        Raises:
            ProviderError: for every failure, classified by :func:`map_bedrock_error`.
        """
        kwargs = build_converse_kwargs(self._model, request)
        loop = asyncio.get_running_loop()
        timer = StreamTimer()
        handle = _StreamHandle()
        work = self._call_stream if self._stream else self._call_once
        future = loop.run_in_executor(self._pool, work, kwargs, request, timer, handle)
        try:
            return await future
        except asyncio.CancelledError:
            # The runner's timeout: cut the socket so the worker thread stops reading.
            handle.close()
            raise
        except Exception as exc:
            raise map_bedrock_error(exc) from None

    def _call_once(
        self, kwargs: dict[str, Any], request: ChatRequest, timer: StreamTimer, _: Any
    ) -> Generation:
        response = self._client.converse(**kwargs)
        latency = timer.elapsed_s()
        blocks = ((response.get("output") or {}).get("message") or {}).get("content") or []
        text = "".join(b.get("text", "") for b in blocks if isinstance(b, Mapping))
        self._record_metrics(response.get("metrics"))
        return Generation(
            text=text,
            usage=_usage(response.get("usage"), request, text),
            latency_s=latency,
            ttft_s=None,
            finish_reason=response.get("stopReason"),
            model=self._model,
            streamed=False,
        )

    def _call_stream(
        self, kwargs: dict[str, Any], request: ChatRequest, timer: StreamTimer, handle: _StreamHandle
    ) -> Generation:
        response = self._client.converse_stream(**kwargs)
        stream = response.get("stream")
        if stream is None:
            raise ProviderError(
                "ConverseStream returned no event stream", retryable=True, error_type="bad_response"
            )
        handle.attach(stream)
        parts: list[str] = []
        stop_reason: str | None = None
        usage: Mapping[str, Any] | None = None
        try:
            for event in stream:
                if handle.cancelled:
                    break
                if "contentBlockDelta" in event:
                    text = ((event["contentBlockDelta"] or {}).get("delta") or {}).get("text")
                    if text:
                        timer.mark_first_token()
                        parts.append(text)
                elif "messageStop" in event:
                    stop_reason = (event["messageStop"] or {}).get("stopReason")
                elif "metadata" in event:
                    meta = event["metadata"] or {}
                    usage = meta.get("usage")
                    self._record_metrics(meta.get("metrics"))
                else:
                    _raise_stream_exception(event)
        finally:
            handle.close()
        latency = timer.elapsed_s()
        if stop_reason is None:  # metadata (usage) alone does not end a message: messageStop does
            raise ProviderError(
                "the Bedrock event stream ended before messageStop", retryable=True, error_type="connection"
            )
        text = "".join(parts)
        return Generation(
            text=text,
            usage=_usage(usage, request, text),
            latency_s=latency,
            ttft_s=timer.ttft_s,
            finish_reason=stop_reason,
            model=self._model,
            streamed=True,
        )

    def _record_metrics(self, metrics: Any) -> None:
        if isinstance(metrics, Mapping):
            value = metrics.get("latencyMs")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                # list.append is atomic under the GIL; workers share this list.
                self._server_latency_ms.append(float(value))


# Exception events a ConverseStream can carry instead of content (botocore normally raises
# these as EventStreamError; a test double or an older botocore may yield them as dicts).
_STREAM_EXCEPTIONS = {
    "internalServerException": "InternalServerException",
    "modelStreamErrorException": "ModelStreamErrorException",
    "validationException": "ValidationException",
    "throttlingException": "ThrottlingException",
    "serviceUnavailableException": "ServiceUnavailableException",
}


def _raise_stream_exception(event: Mapping[str, Any]) -> None:
    for key, code in _STREAM_EXCEPTIONS.items():
        if key in event:
            detail = event[key] or {}
            message = detail.get("message", "") if isinstance(detail, Mapping) else str(detail)
            if code in _RETRYABLE_CODES:
                raise ProviderError(
                    f"Bedrock {code} mid-stream: {message}", retryable=True, error_type=_RETRYABLE_CODES[code]
                )
            raise ProviderError(
                f"Bedrock {code} mid-stream: {message}", retryable=False, error_type=_FATAL_CODES[code]
            )


def _usage(raw: Mapping[str, Any] | None, request: ChatRequest, text: str) -> Usage:
    if isinstance(raw, Mapping):
        prompt = raw.get("inputTokens")
        completion = raw.get("outputTokens")
        if isinstance(prompt, int) and isinstance(completion, int):
            return Usage(prompt_tokens=prompt, completion_tokens=completion)
    return estimate_usage([m.content for m in request.messages], text)
