"""Adapter for any server that speaks the OpenAI Chat Completions API.

One adapter covers OpenAI itself and the many servers and gateways that copy its wire
format; only ``base_url``, the key's environment variable and sometimes extra headers
change:

==========================  =============================================================  ===========================
Service                     ``base_url``                                                   ``api_key_env``
==========================  =============================================================  ===========================
OpenAI                      (unset: ``https://api.openai.com/v1``)                         ``OPENAI_API_KEY``
Clarifai                    ``https://api.clarifai.com/v2/ext/openai/v1``                  ``CLARIFAI_PAT``
                            (``model`` is the full Clarifai model URL)
vLLM (``vllm serve M``)     ``http://localhost:8000/v1``                                   ``null``, or the variable
                                                                                           holding ``--api-key``
Ollama                      ``http://localhost:11434/v1``                                  ``null``
llama.cpp ``llama-server``  ``http://localhost:8080/v1``                                   ``null``, or ``--api-key``'s
Bedrock, OpenAI-compatible  ``https://bedrock-runtime.REGION.amazonaws.com/openai/v1``     a Bedrock API key, e.g.
                            or ``https://bedrock-mantle.REGION.api.aws/v1``                ``AWS_BEARER_TOKEN_BEDROCK``
                            (open-weight models such as ``openai.gpt-oss-20b-1:0``)
Azure OpenAI                use ``kind: azure-openai`` (:mod:`.azure`)
Vertex AI (Gemini)          use ``kind: vertex`` (:mod:`.vertex`)
Bedrock, any model          use ``kind: bedrock`` (:mod:`.bedrock`, the Converse API)
==========================  =============================================================  ===========================

``api_key_env: null`` means "no authentication" (local servers); the SDK still needs a
key string, so the placeholder ``not-needed`` is sent. Gateways that want more than a
bearer key (a project header, a tenant id) take ``headers`` (literal, non-secret values,
recorded in the run's config snapshot) and ``headers_env`` (header name -> environment
variable holding a secret value, never recorded).

Measurement: with ``stream: true`` (the default) the request asks for
``stream_options.include_usage`` and time to first token is the arrival of the first
chunk whose ``delta.content`` is non-empty. When the server sends no usage, both token
counts are estimated locally (:mod:`.tokens`) and marked so in the record.

:class:`OpenAICompatProvider` holds the request/stream code and takes a ready SDK client,
so the Azure and Vertex adapters only build a differently configured client. ``kind: openai``
uses the lean path by default (``client: httpx``, :mod:`.openai_http`: raw SSE, about a third of
the SDK's CPU per call); ``client: sdk`` selects this SDK path. Both share
:func:`make_http_client`, whose transport bounds every response (:mod:`.httpio`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from rai_harness.errors import ProviderError
from rai_harness.providers.base import (
    BaseProvider,
    Provider,
    ProviderConfig,
    SeedSupport,
    StreamTimer,
    url_without_credentials,
)
from rai_harness.providers.errors_map import map_openai_error, well_formed, without_secrets
from rai_harness.providers.httpio import (
    ACCEPT_ENCODING,
    ResponseLimits,
    find_limit_error,
    limit_error,
    limited_transport,
)
from rai_harness.providers.tokens import checked_usage
from rai_harness.types import ChatRequest, Generation, Usage

if TYPE_CHECKING:
    import openai

__all__ = [
    "NO_AUTH_PLACEHOLDER",
    "OpenAICompatProvider",
    "OpenAIConfig",
    "build_chat_kwargs",
    "check_output_chars",
    "http_module",
    "make_http_client",
    "read_secrets",
    "usage_from_server",
    "warm_up_sdk",
]

log = logging.getLogger(__name__)

#: Key sent when ``api_key_env`` is null: the SDK refuses an empty key, local servers ignore it.
NO_AUTH_PLACEHOLDER = "not-needed"


class OpenAIConfig(ProviderConfig):
    """An OpenAI or OpenAI-compatible Chat Completions endpoint (``kind: openai``)."""

    # `seed` is sent with every request; OpenAI documents its determinism as best effort.
    seed_support: ClassVar[SeedSupport] = "best_effort"
    description: ClassVar[str] = (
        "OpenAI or any OpenAI-compatible server (Clarifai, vLLM, Ollama, llama.cpp, Bedrock's OpenAI endpoint)"
    )

    kind: Literal["openai"] = "openai"
    base_url: str | None = Field(
        None, description="API root ending in /v1; unset means api.openai.com (or OPENAI_BASE_URL)."
    )
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key; null for no auth."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers with literal, non-secret values."
    )
    headers_env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra HTTP headers whose values are read from environment variables (header -> variable).",
    )
    organization: str | None = Field(None, description="OpenAI organization id (OpenAI-Organization header).")
    client: Literal["httpx", "sdk"] = Field(
        "httpx",
        description=(
            "HTTP path: 'httpx' (lean: raw SSE, parses only the fields it needs; less CPU per call, "
            "see benchmarks/RESULTS.md) or 'sdk' (the openai SDK)."
        ),
    )

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https:// (e.g. http://localhost:8000/v1)")
        return url_without_credentials(value, "base_url")

    @field_validator("api_key_env")
    @classmethod
    def _env_name_not_a_key(cls, value: str | None) -> str | None:
        # Pasting the key itself here would write it into the run's config snapshot.
        if value is not None and (value.startswith("sk-") or not value.strip() or " " in value):
            raise ValueError(
                "api_key_env is the NAME of an environment variable holding the key (e.g. OPENAI_API_KEY), "
                "not the key itself"
            )
        return value

    def secret_env_vars(self) -> dict[str, str]:
        """The key's variable (if any) and every ``headers_env`` variable."""
        out: dict[str, str] = {}
        if self.api_key_env:
            out["api_key_env"] = self.api_key_env
        for header, variable in self.headers_env.items():
            out[f"headers_env.{header}"] = variable
        return out

    def cache_identity(self) -> dict[str, Any]:
        """Endpoint, model and literal headers (a gateway may route on them) decide the outputs.

        The key, the names of environment variables and the organization do not.
        """
        base_url = (self.base_url or "https://api.openai.com/v1").rstrip("/")
        return {"kind": self.kind, "model": self.model, "base_url": base_url, "headers": dict(self.headers)}

    def build(self) -> Provider:
        """Create the provider (lean path or SDK client); it makes exactly one attempt per call."""
        api_key, secret_headers = read_secrets(self.api_key_env, self.headers_env)
        limits = self.limits.to_limits()
        if self.client == "httpx":
            from rai_harness.providers.openai_http import LeanOpenAIProvider

            return LeanOpenAIProvider(
                base_url=self.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
                api_key=api_key or NO_AUTH_PLACEHOLDER,
                model=self.model,
                stream=self.stream,
                headers={
                    **self.headers,
                    **secret_headers,
                    **({"OpenAI-Organization": self.organization} if self.organization else {}),
                },
                concurrency=self.concurrency,
                timeout_s=self.timeout_s,
                limits=limits,
                secrets=[api_key, *secret_headers.values()],
                info={"kind": self.kind, "client": "httpx"},
            )
        import openai

        http_client = make_http_client(self.concurrency, self.timeout_s, limits=limits)
        client = openai.AsyncOpenAI(
            api_key=api_key or NO_AUTH_PLACEHOLDER,
            base_url=self.base_url,
            organization=self.organization,
            max_retries=0,
            timeout=self.timeout_s,
            default_headers={**self.headers, **secret_headers} or None,
            http_client=http_client,
        )
        return OpenAICompatProvider(
            client,
            model=self.model,
            stream=self.stream,
            secrets=[api_key, *secret_headers.values()],
            info={"kind": self.kind, "base_url": str(client.base_url), "client": "sdk"},
            limits=limits,
        )


def read_secrets(
    api_key_env: str | None, headers_env: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    """Read the API key and secret header values from the environment.

    The planner has already checked that each variable is set; reading again here
    keeps ``build()`` usable on its own, with a clear error when one is missing.

    Returns:
        The key (empty when ``api_key_env`` is None) and the header values.

    Raises:
        MissingSecretError: when a named variable is unset or empty.
    """
    from rai_harness.errors import MissingSecretError

    env = os.environ if environ is None else environ
    api_key = ""
    if api_key_env:
        api_key = env.get(api_key_env, "")
        if not api_key:
            raise MissingSecretError(api_key_env, key_path="api_key_env")
    headers: dict[str, str] = {}
    for header, variable in headers_env.items():
        value = env.get(variable, "")
        if not value:
            raise MissingSecretError(variable, key_path=f"headers_env.{header}")
        headers[header] = value
    return api_key, headers


def http_module(*, sdk: bool = True) -> Any:
    """The HTTP library the installed openai SDK is built on.

    openai 3.x runs on ``httpx2`` (and merely tolerates ``httpx`` clients: in a load test
    an ``httpx`` client had a p99 latency three to four times that of an ``httpx2`` one);
    openai 1.x/2.x accept only ``httpx``. The two share their API.

    Args:
        sdk: ``False`` for a client the SDK never sees (the lean path): then ``httpx2``
            whenever it is installed, decided without importing the SDK, whose import costs
            about a second and 60k objects in every worker process.
    """
    if not sdk:
        try:
            import httpx2
        except ImportError:
            import httpx

            return httpx
        return httpx2
    import openai

    if hasattr(openai, "DefaultAsyncHttpx2Client"):
        import httpx2

        return httpx2
    import httpx

    return httpx


def make_http_client(
    concurrency: int,
    timeout_s: float,
    *,
    on_request: Callable[[Any], Awaitable[None]] | None = None,
    limits: ResponseLimits | None = None,
    sdk: bool = True,
) -> Any:
    """An async HTTP client whose pool allows ``concurrency`` calls in flight, with bounded bodies.

    httpx's default pool (100 connections, 20 kept alive) would either queue calls
    inside the client, hiding the wait from our timings, or churn connections. Every
    response goes through :func:`~rai_harness.providers.httpio.limited_transport`
    (byte caps, bounded decompression, SSE line cap); redirects are never followed.

    Args:
        concurrency: Calls in flight at once (the provider's ``concurrency``).
        timeout_s: Connect/read/write/pool timeout.
        on_request: Optional async hook run on every request before it is sent.
        limits: Response caps (default: :class:`ResponseLimits`'s safe defaults).
        sdk: Whether the openai SDK will use the client (see :func:`http_module`).

    Returns:
        An ``httpx2.AsyncClient`` or ``httpx.AsyncClient`` (see :func:`http_module`);
        typed ``Any`` because the SDK's annotation names only one of them.
    """
    http = http_module(sdk=sdk)
    pool = http.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    hooks: dict[str, list[Callable[..., Any]]] = {"request": [on_request]} if on_request else {}
    return http.AsyncClient(
        transport=limited_transport(http, limits or ResponseLimits(), limits=pool),
        timeout=http.Timeout(timeout_s),
        follow_redirects=False,
        event_hooks=hooks,
        # Only encodings the transport can inflate with a bound.
        headers={"Accept-Encoding": ACCEPT_ENCODING},
    )


def build_chat_kwargs(model: str, request: ChatRequest) -> dict[str, Any]:
    """The ``chat.completions.create`` arguments for ``request`` (without streaming flags).

    ``params.extra`` is sent as extra JSON body fields, so vendor parameters the SDK
    does not know (``top_k``, ``repetition_penalty``) pass through, and it overrides
    the standard ones. When it sets ``max_completion_tokens`` (OpenAI reasoning models
    reject ``max_tokens``), ``max_tokens`` is not sent.
    """
    params = request.params
    extra = dict(params.extra)
    kwargs: dict[str, Any] = {"model": model, "messages": request.messages_as_dicts()}
    if params.max_tokens is not None and "max_completion_tokens" not in extra:
        kwargs["max_tokens"] = params.max_tokens
    if params.temperature is not None:
        kwargs["temperature"] = params.temperature
    if params.top_p is not None:
        kwargs["top_p"] = params.top_p
    if params.seed is not None:
        kwargs["seed"] = params.seed
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


_sdk_warm = False

_WARM_CHUNK = (
    '{"id":"w","object":"chat.completion.chunk","created":0,"model":"w",'
    '"choices":[{"index":0,"delta":{"content":"w"},"finish_reason":"stop"}],'
    '"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)
_WARM_COMPLETION = (
    '{"id":"w","object":"chat.completion","created":0,"model":"w","choices":[{"index":0,'
    '"message":{"role":"assistant","content":"w"},"finish_reason":"stop"}],'
    '"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
)


async def warm_up_sdk() -> None:
    """Run the SDK's one-time work once per process, off the clock.

    The first call in a process imports the chat resources, builds pydantic schemas for
    the request and chunk types and loads anyio's backend: 100-300 ms that would land in
    the first call's TTFT. A throwaway client answers one streamed and one plain request
    from an in-memory transport (no network), so measured calls start warm.
    """
    global _sdk_warm
    if _sdk_warm:
        return
    _sdk_warm = True
    import openai

    http = http_module()

    def answer(request: Any) -> Any:
        if b'"stream":true' in request.content.replace(b" ", b""):
            body = f"data: {_WARM_CHUNK}\n\ndata: [DONE]\n\n"
            return http.Response(200, headers={"content-type": "text/event-stream"}, text=body)
        return http.Response(200, headers={"content-type": "application/json"}, text=_WARM_COMPLETION)

    try:
        import anyio

        anyio.Event()  # httpcore's first connection would load anyio's asyncio backend
        client = openai.AsyncOpenAI(
            api_key="warm-up",
            base_url="http://warm-up.invalid/v1",
            max_retries=0,
            http_client=http.AsyncClient(transport=http.MockTransport(answer)),
        )
        try:
            # Every role: the SDK builds each message type's serializer on first use.
            messages: Any = [
                {"role": "system", "content": "w"},
                {"role": "user", "content": "w"},
                {"role": "assistant", "content": "w"},
                {"role": "user", "content": "w"},
            ]
            stream = await client.chat.completions.create(
                model="w",
                messages=messages,
                max_tokens=1,
                stream=True,
                stream_options={"include_usage": True},
            )
            try:
                async for _chunk in stream:
                    pass
            finally:
                await stream.close()
            await client.chat.completions.create(model="w", messages=messages, max_tokens=1)
        finally:
            await client.close()
    except Exception:  # warming is an optimisation; a real call will surface real problems
        log.debug("SDK warm-up failed", exc_info=True)


class OpenAICompatProvider(BaseProvider):
    """Makes Chat Completions calls through an ``openai.AsyncOpenAI``-like client.

    Args:
        client: A configured ``AsyncOpenAI`` or ``AsyncAzureOpenAI`` with ``max_retries=0``.
        model: Model (or Azure deployment) name to send.
        stream: Stream the response (measures TTFT) or not.
        secrets: Secret values to scrub from error messages.
        secret_source: Called at error time for secrets that change (a refreshed
            bearer token); its values are scrubbed too.
        info: Non-secret facts returned by :meth:`describe` (endpoint, kind).
        limits: Response caps; the byte caps live in the client's transport
            (:func:`make_http_client`), the output-character cap is enforced here.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        model: str,
        stream: bool = True,
        secrets: Sequence[str] = (),
        secret_source: Callable[[], Iterable[str]] | None = None,
        info: Mapping[str, Any] | None = None,
        limits: ResponseLimits | None = None,
    ) -> None:
        self._client = client
        self._limits = limits or ResponseLimits()
        self._model = model
        self._stream = stream
        self._secrets = tuple(s for s in secrets if s)
        self._secret_source = secret_source
        self._info = dict(info or {})

    def _secret_values(self) -> tuple[str, ...]:
        if self._secret_source is None:
            return self._secrets
        try:
            dynamic = tuple(s for s in self._secret_source() if s)
        except Exception:  # scrubbing must never replace the real error
            dynamic = ()
        return self._secrets + dynamic

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The SDK client (for tests and subclasses)."""
        return self._client

    def describe(self) -> dict[str, Any]:
        """Non-secret facts about the endpoint, recorded in the run summary."""
        return {**self._info, "model": self._model, "stream": self._stream}

    async def load(self) -> None:
        """Warm the SDK up before the first call (the runner calls this before a run)."""
        await warm_up_sdk()

    async def aclose(self) -> None:
        """Close the SDK client and its connection pool."""
        await self._client.close()

    async def generate(self, request: ChatRequest) -> Generation:
        """Make one call (no retries) and return the completion with measured timings.

        Raises:
            ProviderError: for every failure, classified by :func:`map_openai_error`.
        """
        kwargs = build_chat_kwargs(self._model, request)
        await warm_up_sdk()  # a no-op after the first call; keeps its cost off the clock
        timer = StreamTimer()
        try:
            with timer.sending():  # TTFT and latency count from the request's send
                if self._stream:
                    generation = await self._generate_stream(kwargs, request, timer)
                else:
                    generation = await self._generate_once(kwargs, request, timer)
        except ProviderError:
            raise
        except Exception as exc:
            # The SDK wraps what the transport raised (a response over a limit) in its own type.
            raise (find_limit_error(exc) or map_openai_error(exc, secrets=self._secret_values())) from None
        return without_secrets(well_formed(generation), self._secret_values())

    async def _generate_once(
        self, kwargs: dict[str, Any], request: ChatRequest, timer: StreamTimer
    ) -> Generation:
        from openai.types.chat import ChatCompletion

        response = await self._client.chat.completions.create(**kwargs)
        latency = timer.elapsed_s()
        # A server that answers with a non-JSON content type gets its body back as a str.
        if not isinstance(response, ChatCompletion) or not response.choices:
            raise ProviderError(
                "the server's reply is not a chat completion with choices",
                retryable=True,
                error_type="bad_response",
            )
        choice = response.choices[0]
        message = choice.message
        # A refusal is an answer for a safety evaluation: keep its text.
        text = message.content if message.content is not None else (getattr(message, "refusal", None) or "")
        check_output_chars(len(text), self._limits)
        usage = self._usage(response.usage, request, text)
        return Generation(
            text=text,
            usage=usage,
            latency_s=latency,
            ttft_s=None,
            connect_s=timer.connect_s,
            finish_reason=choice.finish_reason,
            model=response.model or self._model,
            streamed=False,
        )

    async def _generate_stream(
        self, kwargs: dict[str, Any], request: ChatRequest, timer: StreamTimer
    ) -> Generation:
        stream = await self._client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )
        parts: list[str] = []
        finish_reason: str | None = None
        model: str | None = None
        raw_usage: Any = None
        chunks = 0
        chars = 0
        try:
            async for chunk in stream:
                chunks += 1
                if chunk.model:
                    model = chunk.model
                if chunk.usage is not None:
                    raw_usage = chunk.usage
                for choice in chunk.choices or ():
                    if choice.index != 0:
                        continue
                    delta = choice.delta
                    content = delta.content if delta is not None else None
                    if content:
                        timer.mark_first_token()
                        chars += len(content)
                        check_output_chars(chars, self._limits)
                        parts.append(content)
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        finally:
            # Release the connection on every exit, cancellation by the runner's timeout
            # included; otherwise the socket leaks (a ResourceWarning, a pool slot).
            await stream.close()
        latency = timer.elapsed_s()
        if chunks == 0:
            raise ProviderError(
                "the stream ended without any chunk", retryable=True, error_type="bad_response"
            )
        if finish_reason is None:
            # Every chunk arrived intact but the stream stopped before the model finished:
            # a cut connection that happened to fall on an event boundary. Partial text is
            # not a valid sample. A usage count does not prove the end (servers with
            # continuous usage stats put one on every chunk).
            raise ProviderError(
                f"the stream ended before the model finished ({chunks} chunks, no finish_reason)",
                retryable=True,
                error_type="connection",
            )
        text = "".join(parts)
        return Generation(
            text=text,
            usage=self._usage(raw_usage, request, text),
            latency_s=latency,
            ttft_s=timer.ttft_s,
            connect_s=timer.connect_s,
            finish_reason=finish_reason,
            model=model or self._model,
            streamed=True,
        )

    @staticmethod
    def _usage(raw: Any, request: ChatRequest, text: str) -> Usage:
        """The server's counts when they can be true, else local estimates (flagged)."""
        return usage_from_server(
            getattr(raw, "prompt_tokens", None) if raw is not None else None,
            getattr(raw, "completion_tokens", None) if raw is not None else None,
            request,
            text,
        )


def check_output_chars(chars: int, limits: ResponseLimits) -> None:
    """Fail the call once its completion text passes ``max_output_chars``.

    Raises:
        ProviderError: ``output_too_large``, not retryable.
    """
    if chars > limits.max_output_chars:
        raise limit_error(
            "output_too_large",
            f"the completion exceeded max_output_chars ({limits.max_output_chars} characters)",
        )


def requested_max_tokens(request: ChatRequest) -> int | None:
    """The completion-token limit the request asked for (``max_completion_tokens`` wins)."""
    extra = request.params.extra.get("max_completion_tokens")
    if isinstance(extra, int) and not isinstance(extra, bool):
        return extra
    return request.params.max_tokens


def usage_from_server(prompt: Any, completion: Any, request: ChatRequest, text: str) -> Usage:
    """Validated server usage for ``request`` and its completion ``text`` (see :func:`checked_usage`)."""
    return checked_usage(
        prompt,
        completion,
        prompt_contents=[m.content for m in request.messages],
        completion=text,
        max_completion_tokens=requested_max_tokens(request),
    )
