"""The provider interface and the settings every provider kind shares.

A provider is a *thin* adapter: it turns a :class:`~rai_harness.types.ChatRequest`
into one call to a vendor API and returns a :class:`~rai_harness.types.Generation`
with the timings it measured while streaming. Everything else (concurrency limits,
retries with backoff, request timeouts, the journal, cost) belongs to the runner in
:mod:`rai_harness.run.runner`, so each adapter stays short and the behaviour is the
same for every vendor (the split Inspect AI makes between ``ModelAPI`` and ``Model``).

Adapters must:

* raise :class:`~rai_harness.errors.ProviderError` (with ``retryable`` and
  ``retry_after_s`` set) for every failure, never a vendor exception;
* disable their SDK's own retries (the runner retries, and counts attempts);
* never put a secret into an exception message, a log line or a returned value.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import time
import urllib.parse
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rai_harness.errors import ConfigError, MissingDependencyError
from rai_harness.markdown import require_printable
from rai_harness.providers.httpio import ResponseLimits, marking_send
from rai_harness.types import ChatRequest, Generation, GenerationParams
from rai_harness.validation import MAX_WAIT_S

__all__ = [
    "BaseProvider",
    "GenerationParamsConfig",
    "GuardRef",
    "PricingOverride",
    "Provider",
    "ProviderConfig",
    "ResponseLimitsConfig",
    "SeedSupport",
    "StreamTimer",
    "build_provider",
    "describe_provider",
    "require_package",
]

log = logging.getLogger(__name__)


#: How far a provider kind honours a per-request seed (see ``ProviderConfig.seed_support``).
SeedSupport = Literal["exact", "best_effort", "replay", "none"]


@runtime_checkable
class Provider(Protocol):
    """What the runner calls. Implementations are created by ``ProviderConfig.build()``.

    Every hook is part of the interface (the runner calls them directly, never probes for
    them); :class:`BaseProvider` gives the no-op defaults, so an adapter writes only what it
    needs.
    """

    async def generate(self, request: ChatRequest) -> Generation:
        """Make one call and return its completion with measured timings.

        Raises:
            ProviderError: on any failure, with ``retryable`` set.
        """
        ...

    async def load(self) -> None:
        """Load weights or open connections before the first call, so no call's timing pays it.

        The runner skips it when the journal already holds every call.
        """
        ...

    def describe(self) -> dict[str, Any]:
        """Facts about the model for ``run.json`` (revision, device, endpoint...); no secrets."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads or models held by the provider."""
        ...


class BaseProvider:
    """Defaults for :class:`Provider`'s hooks: nothing to load, nothing to describe or close.

    Subclass it and write ``generate`` (and whichever hook the adapter needs).
    """

    async def load(self) -> None:
        """Nothing to load."""
        return None

    def describe(self) -> dict[str, Any]:
        """Nothing to describe."""
        return {}

    async def aclose(self) -> None:
        """Nothing to release."""
        return None


def describe_provider(provider: Provider) -> dict[str, Any]:
    """``provider.describe()`` for ``run.json``; a failure is recorded, never raised.

    Describing a model must not fail a run whose calls all succeeded, so the error becomes
    a ``describe_error`` entry instead.
    """
    try:
        return dict(provider.describe())
    except Exception as exc:
        log.warning("could not describe provider: %s", exc)
        return {"describe_error": str(exc)}


def url_without_credentials(value: str | None, field: str) -> str | None:
    """``value`` unchanged, for a pydantic validator; a URL with a user name or password refused.

    The URL is part of the run record (``run.json``), the report and every call key: a password
    written into it (``http://user:pw@host/v1``) would be copied into all of them.

    Raises:
        ValueError: The URL holds credentials (the message names ``field`` and the fix).
    """
    if value is not None:
        parts = urllib.parse.urlsplit(value)
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                f"{field} must not hold a user name or password (it is copied into run.json, the "
                "report and the call keys); send credentials from the environment: api_key_env, or "
                "headers_env for a header such as Authorization"
            )
    return value


class GenerationParamsConfig(BaseModel):
    """Sampling parameters in a config file (``params:`` of a provider)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int | None = Field(256, ge=1, description="Maximum completion tokens.")
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: tuple[str, ...] = ()
    extra: dict[str, Any] = Field(
        default_factory=dict, description="Vendor-specific parameters passed through unchanged."
    )

    def to_params(self) -> GenerationParams:
        """Return the runtime value type."""
        return GenerationParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=tuple(self.stop),
            extra=dict(self.extra),
        )


class PricingOverride(BaseModel):
    """Price for one provider, overriding the shipped price table.

    Either token prices (USD per 1M tokens) or, for self-hosted endpoints, an hourly
    price that is spread over the measured throughput of the run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_1m: float | None = Field(None, ge=0.0, description="USD per 1M prompt tokens.")
    output_per_1m: float | None = Field(None, ge=0.0, description="USD per 1M completion tokens.")
    usd_per_hour: float | None = Field(None, ge=0.0, description="USD per hour of the serving machine(s).")


class GuardRef(BaseModel):
    """A guard policy wrapped around a provider (``guard:`` of a provider).

    The guarded provider checks prompts before they reach the model and answers before
    they reach the user, so a run can compare a model with and without its guard (list the
    same model twice, once with ``guard:``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: str = Field(..., description="Guard policy YAML (e.g. guardrails/default.yaml).")
    input: bool = Field(True, description="Check prompts (input rails).")
    output: bool = Field(True, description="Check answers (output rails).")


class ResponseLimitsConfig(BaseModel):
    """Caps on what one endpoint may send back (``limits:`` of a provider).

    An endpoint is untrusted: a gzip bomb, an endless reply or an endless SSE line must
    fail one call, fast and with bounded memory, not the run. Each cap exceeded fails
    the call (not retried) with its own ``error_type``: ``response_too_large``,
    ``output_too_large``, ``sse_line_too_long``. The defaults are far above any real
    reply (a 1M-character answer is about 250k tokens).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_response_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        le=1024**3,
        description="Most bytes of one response body, counted on the wire and again after decompression.",
    )
    max_output_chars: int = Field(
        1_000_000, ge=1, le=100_000_000, description="Most characters of completion text kept from one call."
    )
    max_sse_line_bytes: int = Field(
        1024 * 1024, ge=1024, le=256 * 1024 * 1024, description="Longest line of a streamed (SSE) response."
    )

    def to_limits(self) -> ResponseLimits:
        """The runtime value type."""
        return ResponseLimits(
            max_response_bytes=self.max_response_bytes,
            max_output_chars=self.max_output_chars,
            max_sse_line_bytes=self.max_sse_line_bytes,
        )


class ProviderConfig(BaseModel):
    """Settings every provider kind has. Subclasses add their own and set ``kind``.

    Runner knobs (``concurrency``, ``workers``, ``rpm``, ``timeout_s``, ``max_retries``, ``limits``,
    ``client``) and ``pricing`` do not change what a model answers, so they are left out of the
    cache identity: changing them never invalidates journaled generations.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Registry name of the kind; subclasses narrow it to a Literal.
    kind: str
    #: Python modules the kind needs, as (import name, pip package, extra) triples.
    requires: ClassVar[tuple[tuple[str, str, str | None], ...]] = ()
    #: One-line description shown by ``rai providers``.
    description: ClassVar[str] = ""
    #: Fields holding file paths; the planner resolves relative ones against the config file's folder.
    path_fields: ClassVar[tuple[str, ...]] = ()
    #: What ``params.seed`` buys (stated in run.json): ``exact`` (same machine and software,
    #: same outputs), ``best_effort`` (sent to the server, which may still vary), ``replay``
    #: (recorded outputs, reproducible by construction) or ``none`` (no seed parameter).
    seed_support: ClassVar[SeedSupport] = "none"

    id: str | None = Field(
        None, description="Name of this provider in the run (default: '<kind>:<model>'); must be unique."
    )
    model: str = Field(..., min_length=1, description="Model name, deployment or path.")
    params: GenerationParamsConfig = Field(default_factory=GenerationParamsConfig)
    stream: bool = Field(True, description="Stream responses to measure time to first token.")
    concurrency: int = Field(8, ge=1, le=4096, description="Calls in flight at once for this provider.")
    workers: int | Literal["auto"] = Field(
        1,
        description="Worker processes sharing the calls (each its own event loop and HTTP client); "
        "`auto`: sized from the demanded rate and the CPU per call measured by a few calibration calls.",
    )
    rpm: float | None = Field(None, gt=0, description="Requests-per-minute cap (none: unlimited).")
    timeout_s: float = Field(120.0, gt=0, le=MAX_WAIT_S, description="Per-attempt timeout in seconds.")
    max_retries: int = Field(4, ge=0, le=20, description="Retries after the first attempt.")
    pricing: PricingOverride | None = None
    guard: GuardRef | None = Field(None, description="Wrap the provider in a guard policy.")
    limits: ResponseLimitsConfig = Field(
        default_factory=ResponseLimitsConfig, description="Caps on response size (hostile endpoints)."
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _workers_value(cls, value: Any) -> Any:
        # One message for both forms (a union's default error lists each branch's failure).
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 64):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(
                f"`workers` must be greater than or equal to 1 and at most 64 (got {value}), or `auto`"
            )
        raise ValueError("`workers` is a number of processes (1-64) or `auto`")

    @model_validator(mode="after")
    def _workers_supported(self) -> ProviderConfig:
        if self.workers != 1 and self.guard is not None:
            raise ValueError("`workers` does not support a guard yet; remove `workers` or `guard`")
        if self.workers != 1 and self.kind == "hf-local":
            raise ValueError(
                "`workers` would load the local model once per process; use `max_batch_size` instead"
            )
        return self

    @field_validator("id")
    @classmethod
    def _id_is_simple(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(c in value for c in "\n\r\t")):
            raise ValueError("id must be a non-empty single-line name")
        # Any other control character (ESC, NUL, C1) would reach terminals, Markdown and HTML.
        return value if value is None else require_printable(value)

    @property
    def provider_id(self) -> str:
        """The id used in records and reports."""
        return self.id or f"{self.kind}:{self.model}"

    def secret_env_vars(self) -> dict[str, str]:
        """Map key path -> environment variable this config needs at run time.

        The planner checks each is set before any call is sent.
        """
        return {}

    def cache_identity(self) -> dict[str, Any]:
        """What determines this provider's own outputs (no secrets, no runner knobs, no guard).

        Kinds override it; the guard wrapped around any kind is added by
        :meth:`call_identity`, which is what call keys use.
        """
        return self.model_dump(
            mode="json",
            exclude={
                "id",
                "concurrency",
                "workers",
                "rpm",
                "timeout_s",
                "max_retries",
                "pricing",
                "stream",
                "params",
                "guard",
                "limits",
                "client",
            },
        )

    def call_identity(
        self, *, guard_sha256: str | None = None, guard_weights: Mapping[str, str | None] | None = None
    ) -> dict[str, Any]:
        """The identity in every call key: :meth:`cache_identity`, plus ``stream: false`` for a
        provider that does not stream and the guard when there is one.

        The guard's policy counts by content (sha256), not by path (paths differ between
        clones), for every provider kind, and so do the weights its classifiers load.

        Args:
            guard_sha256: The policy's sha256 as resolved at plan time (the run reads the
                policy once). Without it the policy file is read and hashed here.
            guard_weights: Fingerprint of each of the policy's classifiers' local weights
                (:func:`~rai_harness.classifiers.pool.weights_fingerprint`), as resolved at
                plan time: a retrained head under the same policy gives other verdicts.

        Raises:
            ConfigError: The policy file cannot be read: an identity must never fall back to
                hashing the path, or a changed policy would reuse stale guarded outputs.
        """
        identity = self.cache_identity()
        if not self.stream:
            # A call not streamed measures no time to first token: reusing streamed records
            # (or the reverse) would report timings the config no longer takes. Only the
            # non-default case is named, so streamed calls keep the keys they always had.
            identity["stream"] = False
        if self.guard is not None:
            digest = guard_sha256 if guard_sha256 is not None else _policy_sha256(self.guard.policy)
            identity["guard"] = {
                "policy_sha256": digest,
                "input": self.guard.input,
                "output": self.guard.output,
            }
            if guard_weights:
                identity["guard"]["weights"] = dict(sorted(guard_weights.items()))
        return identity

    def validate_files(self) -> None:
        """Check, at plan time, the files this config names (exist, readable, well-formed).

        Default: nothing to check. Kinds that read files (``replay``) override it and raise
        :class:`~rai_harness.errors.ConfigError` naming the file and line.
        """
        return None

    def check_requirements(self) -> None:
        """Raise :class:`MissingDependencyError` if an optional package is missing."""
        for module, package, extra in self.requires:
            require_package(module, package, extra=extra, feature=f"provider kind '{self.kind}'")

    def build(self) -> Provider:
        """Create the provider. Heavy imports happen here, not at module import."""
        raise NotImplementedError


def build_provider(cfg: ProviderConfig) -> Provider:
    """``cfg.build()``, checked to have every hook the runner calls (a plugin kind may not).

    Every caller builds through here, so the hooks are called directly afterwards, never
    probed for with ``getattr``.

    Raises:
        ConfigError: The built object lacks a hook of :class:`Provider`.
    """
    provider = cfg.build()
    if not isinstance(provider, Provider):
        missing = [
            h for h in ("generate", "load", "describe", "aclose") if not callable(getattr(provider, h, None))
        ]
        raise ConfigError(
            f"provider kind {cfg.kind!r} built a {type(provider).__name__}, which lacks {', '.join(missing)}; "
            "subclass rai_harness.providers.base.BaseProvider for the default hooks",
            key_path="kind",
        )
    return provider


def _policy_sha256(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the guard policy to identify its calls: {exc.strerror or exc}; check the path",
            file=path,
            key_path="guard.policy",
        ) from exc


def require_package(module: str, package: str, *, extra: str | None = None, feature: str = "") -> None:
    """Raise :class:`MissingDependencyError` when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(package, extra=extra, feature=feature)


class StreamTimer:
    """Measures one call on ``time.perf_counter``: start, request sent, first content token, end.

    TTFT and latency count from the moment the request starts being written to its
    connection (:meth:`mark_sent`), so they time the server and the network, not the
    client's wait before it: taking a pooled connection or opening one (TCP and TLS
    handshakes, which only the first calls on a fresh pool pay) and the event loop's queue.
    That wait is reported on its own as :attr:`connect_s`. The HTTP transport of the
    OpenAI-compatible paths marks the send (use :meth:`sending` around the HTTP call);
    adapters whose SDK owns its HTTP stack (Bedrock) never mark it, and then every time
    counts from the start and :attr:`connect_s` is ``None``.
    """

    __slots__ = ("_first", "_sent", "_start")

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._sent: float | None = None
        self._first: float | None = None

    def mark_sent(self) -> None:
        """Record that the request is being written to its connection (first call wins)."""
        if self._sent is None:
            self._sent = time.perf_counter()

    def sending(self) -> AbstractContextManager[None]:
        """Context in which the HTTP transport marks this timer's send (see :func:`.httpio.marking_send`)."""
        return marking_send(self.mark_sent)

    def mark_first_token(self) -> None:
        """Record the arrival of the first content token (idempotent)."""
        if self._first is None:
            self._first = time.perf_counter()

    @property
    def _origin(self) -> float:
        return self._start if self._sent is None else self._sent

    @property
    def ttft_s(self) -> float | None:
        """Seconds from sending the request to the first content token, if one arrived."""
        return None if self._first is None else self._first - self._origin

    @property
    def connect_s(self) -> float | None:
        """Seconds from the call's start to its request being sent; ``None`` when not marked."""
        return None if self._sent is None else self._sent - self._start

    def elapsed_s(self) -> float:
        """Seconds since the request was sent (since the start when the send was not marked)."""
        return time.perf_counter() - self._origin


def merged_headers(
    static: Mapping[str, str], from_env: Mapping[str, str], environ: Mapping[str, str]
) -> dict[str, str]:
    """Combine literal headers with headers whose values come from environment variables."""
    headers = dict(static)
    for name, variable in from_env.items():
        headers[name] = environ[variable]
    return headers
