"""Google Vertex AI (``kind: vertex``) through its OpenAI-compatible endpoint.

Gemini and the Model Garden models on Vertex answer the Chat Completions wire format at
``https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/endpoints/openapi``
(``https://aiplatform.googleapis.com/...`` for ``location: global``), with ``model``
such as ``google/gemini-2.0-flash-001``. The same streaming code as the OpenAI adapter
is used.

Authentication is an OAuth access token from Application Default Credentials
(``gcloud auth application-default login``, a service account key named by
``GOOGLE_APPLICATION_CREDENTIALS``, or the metadata server), via the optional package
``google-auth`` (``pip install 'rai-harness[vertex]'``). Tokens live about an hour; a
token with less than five minutes left is refreshed before the next request, once,
under a lock shared by every concurrent call.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from rai_harness.errors import ProviderError
from rai_harness.providers.base import ProviderConfig, SeedSupport, url_without_credentials
from rai_harness.providers.openai_compat import OpenAICompatProvider, make_http_client

__all__ = ["CLOUD_PLATFORM_SCOPE", "REFRESH_MARGIN_S", "GoogleTokenSource", "VertexConfig"]

log = logging.getLogger(__name__)

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
#: Refresh a token that expires in less than this many seconds.
REFRESH_MARGIN_S = 300.0

#: Returns a google-auth ``Credentials``-like object: ``token``, ``expiry``, ``refresh(request)``.
CredentialsFactory = Callable[[], Any]


class VertexConfig(ProviderConfig):
    """A model on Vertex AI through its OpenAI-compatible endpoint (``kind: vertex``)."""

    # `seed` is sent on the OpenAI-compatible endpoint; determinism is best effort.
    seed_support: ClassVar[SeedSupport] = "best_effort"
    description: ClassVar[str] = "Google Vertex AI (Gemini, Model Garden) via its OpenAI-compatible endpoint"
    requires: ClassVar[tuple[tuple[str, str, str | None], ...]] = (
        ("google.auth", "google-auth", "vertex"),
        ("requests", "requests", "vertex"),
    )

    kind: Literal["vertex"] = "vertex"
    model: str = Field(..., min_length=1, description="publisher/model, e.g. google/gemini-2.0-flash-001.")
    project: str = Field(..., min_length=1, description="Google Cloud project id.")
    location: str = Field("us-central1", min_length=1, description="Region, e.g. us-central1, or global.")
    base_url: str | None = Field(
        None, description="Override of the computed endpoint URL (private endpoints, tests)."
    )

    @field_validator("base_url")
    @classmethod
    def _base_url_has_no_credentials(cls, value: str | None) -> str | None:
        return url_without_credentials(value, "base_url")

    @field_validator("model")
    @classmethod
    def _model_has_publisher(cls, value: str) -> str:
        if "/" not in value:
            raise ValueError(f"Vertex's OpenAI endpoint names models as publisher/model, e.g. google/{value}")
        return value

    @property
    def endpoint_url(self) -> str:
        """The OpenAI-compatible base URL requests go to."""
        if self.base_url:
            return self.base_url.rstrip("/")
        host = (
            "aiplatform.googleapis.com"
            if self.location == "global"
            else f"{self.location}-aiplatform.googleapis.com"
        )
        return f"https://{host}/v1/projects/{self.project}/locations/{self.location}/endpoints/openapi"

    def cache_identity(self) -> dict[str, Any]:
        """Endpoint and model decide the outputs; credentials do not."""
        return {"kind": self.kind, "model": self.model, "base_url": self.endpoint_url}

    def build(self, *, credentials_factory: CredentialsFactory | None = None) -> OpenAICompatProvider:
        """Create the provider.

        Args:
            credentials_factory: Returns google-auth-like credentials (tests inject a
                fake); default ``google.auth.default`` with the cloud-platform scope.
        """
        import openai

        source = GoogleTokenSource(credentials_factory or _default_credentials)
        client = openai.AsyncOpenAI(
            api_key=_api_key_argument(source),
            base_url=self.endpoint_url,
            max_retries=0,
            timeout=self.timeout_s,
            http_client=make_http_client(
                self.concurrency, self.timeout_s, on_request=source.on_request, limits=self.limits.to_limits()
            ),
        )
        return OpenAICompatProvider(
            client,
            model=self.model,
            stream=self.stream,
            secret_source=source.current_tokens,
            info={"kind": self.kind, "endpoint": self.endpoint_url},
            limits=self.limits.to_limits(),
        )


def _default_credentials() -> Any:
    import google.auth

    credentials, _project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    return credentials


def _default_request() -> Any:
    import google.auth.transport.requests

    return google.auth.transport.requests.Request()


def _sdk_takes_key_callable() -> bool:
    """Whether this openai SDK accepts a callable ``api_key`` (asked before every request)."""
    import openai

    try:
        annotation = inspect.signature(openai.AsyncOpenAI.__init__).parameters["api_key"].annotation
    except (KeyError, TypeError, ValueError):
        return False
    return "Callable" in str(annotation)


def _api_key_argument(source: GoogleTokenSource) -> Any:
    """The SDK's ``api_key``: the async token getter where supported, else a placeholder.

    With an older SDK the placeholder is replaced per request by
    :meth:`GoogleTokenSource.on_request`, an httpx request hook.
    """
    if _sdk_takes_key_callable():
        source.use_hook = False
        return source.token
    source.use_hook = True
    return "vertex-token-set-per-request"


class GoogleTokenSource:
    """A google-auth access token, refreshed before it expires; safe across threads and tasks.

    Args:
        credentials_factory: Called once, lazily, to get the credentials object.
        request_factory: Makes the transport request object ``refresh`` needs.
        margin_s: Refresh when fewer seconds than this are left.
    """

    def __init__(
        self,
        credentials_factory: CredentialsFactory,
        *,
        request_factory: Callable[[], Any] = _default_request,
        margin_s: float = REFRESH_MARGIN_S,
    ) -> None:
        self._factory = credentials_factory
        self._request_factory = request_factory
        self._margin = dt.timedelta(seconds=margin_s)
        self._credentials: Any = None
        self._request: Any = None
        self._lock = threading.Lock()
        self.use_hook = False
        self.refreshes = 0

    def _needs_refresh(self) -> bool:
        creds = self._credentials
        if creds is None or not getattr(creds, "token", None):
            return True
        expiry = getattr(creds, "expiry", None)
        if expiry is None:
            return False
        # google-auth keeps expiry as a naive UTC datetime.
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        if expiry.tzinfo is not None:
            expiry = expiry.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return bool(expiry - now < self._margin)

    def token_sync(self) -> str:
        """Return a valid token, refreshing it first if needed (blocking)."""
        with self._lock:
            if self._credentials is None:
                self._credentials = self._factory()
            if self._needs_refresh():
                if self._request is None:
                    self._request = self._request_factory()
                self._credentials.refresh(self._request)
                self.refreshes += 1
                log.debug("refreshed the Google access token")
            token = self._credentials.token
        if not token:
            raise ProviderError(
                "Google credentials returned no access token", retryable=False, error_type="auth"
            )
        return str(token)

    async def token(self) -> str:
        """Return a valid token; a refresh (network I/O) runs in a worker thread."""
        with self._lock:
            fresh = self._credentials is not None and not self._needs_refresh()
            token = self._credentials.token if fresh else None
        if token:
            return str(token)
        try:
            return await asyncio.to_thread(self.token_sync)
        except ProviderError:
            raise
        except Exception as exc:
            # google.auth.exceptions.RefreshError and friends: bad or revoked credentials.
            raise ProviderError(
                f"could not get a Google access token ({type(exc).__name__}: {exc}); "
                "run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS",
                retryable=False,
                error_type="auth",
            ) from None

    def current_tokens(self) -> list[str]:
        """The token now held (for scrubbing error messages)."""
        creds = self._credentials
        token = getattr(creds, "token", None) if creds is not None else None
        return [token] if isinstance(token, str) and token else []

    async def on_request(self, request: Any) -> None:
        """httpx request hook: set the bearer token (only for SDKs without a key callable)."""
        if self.use_hook:
            request.headers["Authorization"] = f"Bearer {await self.token()}"
