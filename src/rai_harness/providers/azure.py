"""Azure OpenAI (``kind: azure-openai``): the OpenAI wire format on an Azure resource.

``model`` is the **deployment name** you chose in Azure AI Foundry (it often equals the
model name, but need not). Two URL schemes are supported:

* ``api_version: "2024-10-21"`` (default, a GA version): the classic route
  ``{endpoint}/openai/deployments/{model}/chat/completions?api-version=...`` through
  ``openai.AsyncAzureOpenAI``.
* ``api_version: null``: the version-less v1 API, ``{endpoint}/openai/v1/chat/completions``
  with the deployment in the body, through plain ``openai.AsyncOpenAI``.

Authentication is an API key (``auth: key``, read from ``api_key_env``) or Microsoft
Entra ID (``auth: entra``): ``DefaultAzureCredential`` from the optional package
``azure-identity`` (``pip install 'rai-harness[azure]'``), which finds a managed
identity, environment credentials or an ``az login`` session.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Literal, cast

from pydantic import Field, field_validator

from rai_harness.errors import ProviderError
from rai_harness.providers.base import ProviderConfig, SeedSupport, require_package, url_without_credentials
from rai_harness.providers.openai_compat import OpenAICompatProvider, make_http_client, read_secrets

__all__ = ["ENTRA_SCOPE", "AzureOpenAIConfig"]

#: OAuth scope of Azure OpenAI / Azure AI Foundry for Entra ID tokens.
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"

#: A callable returning a bearer token, sync or async (what ``get_bearer_token_provider`` makes).
TokenProvider = Callable[[], "str | Awaitable[str]"]


class AzureOpenAIConfig(ProviderConfig):
    """An Azure OpenAI deployment (``kind: azure-openai``). ``model`` is the deployment name."""

    # `seed` is sent (shared OpenAI request builder); determinism is best effort.
    seed_support: ClassVar[SeedSupport] = "best_effort"
    description: ClassVar[str] = "Azure OpenAI deployment (API key or Entra ID); model = deployment name"

    kind: Literal["azure-openai"] = "azure-openai"
    model: str = Field(
        ..., min_length=1, description="Deployment name (chosen in Azure; often the model name)."
    )
    endpoint: str = Field(..., description="Resource endpoint, e.g. https://NAME.openai.azure.com")
    api_version: str | None = Field(
        "2024-10-21", description="API version (GA); null uses the version-less /openai/v1/ API."
    )
    auth: Literal["key", "entra"] = Field(
        "key", description="key: API key from api_key_env; entra: Entra ID."
    )
    api_key_env: str = Field(
        "AZURE_OPENAI_API_KEY", description="Environment variable holding the API key (auth: key)."
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_root(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("endpoint must be a URL like https://NAME.openai.azure.com")
        value = cast(str, url_without_credentials(value.rstrip("/"), "endpoint"))
        # A common paste: the full deployment URL. The deployment belongs in `model`.
        if "/openai/" in value + "/":
            raise ValueError(
                "endpoint must be the resource root (https://NAME.openai.azure.com), without /openai/...; "
                "put the deployment name in `model`"
            )
        return value

    def check_requirements(self) -> None:
        """Entra ID needs ``azure-identity``; key auth needs nothing beyond the core."""
        if self.auth == "entra":
            require_package(
                "azure.identity", "azure-identity", extra="azure", feature="azure-openai with auth: entra"
            )

    def secret_env_vars(self) -> dict[str, str]:
        """The key's variable with key auth; nothing with Entra ID."""
        return {"api_key_env": self.api_key_env} if self.auth == "key" else {}

    def cache_identity(self) -> dict[str, Any]:
        """Endpoint, deployment and API version decide the outputs; auth does not."""
        return {
            "kind": self.kind,
            "endpoint": self.endpoint,
            "model": self.model,
            "api_version": self.api_version,
        }

    @property
    def base_url(self) -> str:
        """The URL prefix requests go to (for display and tests)."""
        if self.api_version is None:
            return f"{self.endpoint}/openai/v1/"
        return f"{self.endpoint}/openai/deployments/{self.model}"

    def build(self, *, token_provider: TokenProvider | None = None) -> OpenAICompatProvider:
        """Create the provider.

        Args:
            token_provider: For ``auth: entra``, a callable returning a bearer token
                (tests inject one); default ``DefaultAzureCredential``.
        """
        import openai

        http_client = make_http_client(self.concurrency, self.timeout_s, limits=self.limits.to_limits())
        api_key = ""
        async_token: Callable[[], Awaitable[str]] | None = None
        if self.auth == "key":
            api_key, _ = read_secrets(self.api_key_env, {})
        else:
            async_token = _async_token_provider(token_provider or _default_entra_provider())

        client: openai.AsyncOpenAI
        if self.api_version is None:
            client = openai.AsyncOpenAI(
                # The v1 API takes the key or the Entra token as a bearer token; the SDK
                # calls an async key provider before each request.
                api_key=api_key or async_token,
                base_url=self.base_url,
                max_retries=0,
                timeout=self.timeout_s,
                http_client=http_client,
            )
        else:
            client = openai.AsyncAzureOpenAI(
                azure_endpoint=self.endpoint,
                azure_deployment=self.model,
                api_version=self.api_version,
                api_key=api_key or None,
                azure_ad_token_provider=async_token,
                max_retries=0,
                timeout=self.timeout_s,
                http_client=http_client,
            )
        return OpenAICompatProvider(
            client,
            model=self.model,
            stream=self.stream,
            secrets=[api_key],
            info={
                "kind": self.kind,
                "endpoint": self.endpoint,
                "api_version": self.api_version,
                "auth": self.auth,
            },
            limits=self.limits.to_limits(),
        )


def _default_entra_provider() -> TokenProvider:
    """``DefaultAzureCredential`` wrapped as a token callable (imported only for entra)."""
    from azure.identity import DefaultAzureCredential, get_bearer_token_provider

    provider: TokenProvider = get_bearer_token_provider(DefaultAzureCredential(), ENTRA_SCOPE)
    return provider


def _async_token_provider(provider: TokenProvider) -> Callable[[], Awaitable[str]]:
    """Wrap a token callable: run it off the event loop and turn failures into auth errors.

    The sync credential caches its token, but a refresh can shell out to ``az`` or call
    the metadata service for seconds; on the loop that would stall every call in flight
    and distort their timings.
    """
    is_async = inspect.iscoroutinefunction(provider)

    async def token() -> str:
        try:
            value = provider() if is_async else await asyncio.to_thread(provider)
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:
            # CredentialUnavailableError, ClientAuthenticationError...: retrying will not help.
            raise ProviderError(
                f"could not get an Entra ID token ({type(exc).__name__}: {exc}); run `az login` or "
                "configure a managed identity / AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET",
                retryable=False,
                error_type="auth",
            ) from None
        if not isinstance(value, str) or not value:
            raise ProviderError(
                "the Entra ID token provider returned no token", retryable=False, error_type="auth"
            )
        return value

    return token
