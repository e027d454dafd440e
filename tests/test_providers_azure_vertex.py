"""Azure OpenAI and Vertex AI adapters: their routes on the fake server, auth, token refresh."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from rai_harness.errors import MissingDependencyError, ProviderError
from rai_harness.providers import vertex as vertex_module
from rai_harness.providers.azure import AzureOpenAIConfig
from rai_harness.providers.vertex import GoogleTokenSource, VertexConfig
from rai_harness.types import ChatRequest

SECRET = "azure-SECRET-789"


def req(prompt: str = "hello there") -> ChatRequest:
    return ChatRequest.from_prompt("s1", prompt)


async def run_once(provider, request: ChatRequest | None = None):
    try:
        return await provider.generate(request or req())
    finally:
        await provider.aclose()


# -- Azure --------------------------------------------------------------------------------------


@pytest.fixture
def azure_key(monkeypatch):
    monkeypatch.setenv("RAI_TEST_AZURE_KEY", SECRET)
    return SECRET


def azure(srv, **overrides) -> AzureOpenAIConfig:
    fields = {"endpoint": srv.root_url, "model": "my-deployment", "api_key_env": "RAI_TEST_AZURE_KEY"}
    fields.update(overrides)
    return AzureOpenAIConfig(**fields)


@pytest.mark.parametrize("stream", [True, False])
async def test_azure_deployment_route_with_api_key(fake_server, azure_key, stream):
    fake_server.configure(require_api_key=SECRET)
    gen = await run_once(azure(fake_server, stream=stream).build())
    assert gen.text == "Echo: hello there"
    # The fake server reports the deployment from the /openai/deployments/{d}/ path.
    assert gen.model == "my-deployment"
    assert gen.usage.completion_tokens == 3 and not gen.usage.estimated
    (record,) = fake_server.stats()["requests"]
    assert record["auth"] is True and record["bearer"] is None  # key sent as `api-key`, not bearer


async def test_azure_wrong_key_is_auth_error_without_the_key(fake_server, azure_key):
    fake_server.configure(require_api_key="something-else")
    with pytest.raises(ProviderError) as info:
        await run_once(azure(fake_server).build())
    assert info.value.status_code == 401 and info.value.retryable is False
    assert SECRET not in str(info.value)


async def test_azure_entra_sends_bearer_from_token_provider(fake_server):
    calls = []

    def token_provider() -> str:
        calls.append(1)
        return f"entra-token-{len(calls)}"

    cfg = azure(fake_server, auth="entra")
    assert cfg.secret_env_vars() == {}
    provider = cfg.build(token_provider=token_provider)
    try:
        await provider.generate(req())
        await provider.generate(req())
    finally:
        await provider.aclose()
    bearers = [r["bearer"] for r in fake_server.stats()["requests"]]
    assert bearers == ["entra-token-1", "entra-token-2"]  # asked before every request


async def test_azure_entra_async_token_provider(fake_server):
    async def token_provider() -> str:
        return "async-entra"

    await run_once(azure(fake_server, auth="entra").build(token_provider=token_provider))
    assert fake_server.stats()["requests"][0]["bearer"] == "async-entra"


async def test_azure_entra_failure_is_a_non_retryable_auth_error(fake_server):
    def broken() -> str:
        raise RuntimeError("DefaultAzureCredential failed to retrieve a token")

    with pytest.raises(ProviderError) as info:
        await run_once(azure(fake_server, auth="entra").build(token_provider=broken))
    assert info.value.error_type == "auth" and info.value.retryable is False
    assert fake_server.stats()["calls"] == 0


def test_azure_v1_route_and_config_checks(azure_key):
    cfg = AzureOpenAIConfig(endpoint="https://res.openai.azure.com/", model="dep", api_version=None)
    assert cfg.endpoint == "https://res.openai.azure.com"
    assert cfg.base_url == "https://res.openai.azure.com/openai/v1/"
    provider = cfg.model_copy(update={"api_key_env": "RAI_TEST_AZURE_KEY"}).build()
    assert str(provider.client.base_url) == "https://res.openai.azure.com/openai/v1/"
    classic = AzureOpenAIConfig(endpoint="https://res.openai.azure.com", model="dep")
    assert classic.api_version == "2024-10-21"
    assert classic.base_url == "https://res.openai.azure.com/openai/deployments/dep"
    assert classic.secret_env_vars() == {"api_key_env": "AZURE_OPENAI_API_KEY"}
    assert "AZURE_OPENAI_API_KEY" not in str(classic.cache_identity())
    with pytest.raises(ValueError, match="resource root"):
        AzureOpenAIConfig(endpoint="https://res.openai.azure.com/openai/deployments/dep", model="dep")


def test_azure_entra_needs_azure_identity(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("azure") else real(name, *a)
    )
    AzureOpenAIConfig(endpoint="https://r.openai.azure.com", model="d").check_requirements()  # key: fine
    with pytest.raises(MissingDependencyError) as info:
        AzureOpenAIConfig(endpoint="https://r.openai.azure.com", model="d", auth="entra").check_requirements()
    assert "rai-harness[azure]" in str(info.value)


# -- Vertex -------------------------------------------------------------------------------------


class FakeCredentials:
    """google-auth-like credentials whose tokens live ``lifetime_s`` and are counted."""

    def __init__(self, lifetime_s: float = 3600.0) -> None:
        self.token: str | None = None
        self.expiry: dt.datetime | None = None
        self.lifetime_s = lifetime_s
        self.refreshes = 0

    def refresh(self, request) -> None:
        self.refreshes += 1
        self.token = f"ya29.fake-{self.refreshes}"
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        self.expiry = now + dt.timedelta(seconds=self.lifetime_s)


def vertex(srv, **overrides) -> VertexConfig:
    fields = {
        "project": "proj-1",
        "location": "us-central1",
        "model": "google/gemini-2.0-flash-001",
        "base_url": f"{srv.root_url}/v1/projects/proj-1/locations/us-central1/endpoints/openapi",
    }
    fields.update(overrides)
    return VertexConfig(**fields)


def bearers(srv) -> list[str]:
    return [r["bearer"] for r in srv.stats()["requests"]]


@pytest.mark.parametrize("stream", [True, False])
async def test_vertex_route_and_bearer(fake_server, stream):
    creds = FakeCredentials()
    gen = await run_once(vertex(fake_server, stream=stream).build(credentials_factory=lambda: creds))
    assert gen.text == "Echo: hello there"
    assert gen.model == "google/gemini-2.0-flash-001"
    assert bearers(fake_server) == ["ya29.fake-1"]


async def test_vertex_refreshes_a_token_about_to_expire(fake_server):
    creds = FakeCredentials()
    provider = vertex(fake_server).build(credentials_factory=lambda: creds)
    try:
        await provider.generate(req())
        await provider.generate(req())
        assert creds.refreshes == 1  # a fresh token is reused
        # Four minutes left: under the five-minute margin, so the next call refreshes first.
        creds.expiry = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(minutes=4)
        await provider.generate(req())
        # Already expired.
        creds.expiry = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(seconds=1)
        await provider.generate(req())
    finally:
        await provider.aclose()
    assert creds.refreshes == 3
    assert bearers(fake_server) == ["ya29.fake-1", "ya29.fake-1", "ya29.fake-2", "ya29.fake-3"]


async def test_vertex_concurrent_calls_refresh_once(fake_server):
    creds = FakeCredentials()
    provider = vertex(fake_server, concurrency=8).build(credentials_factory=lambda: creds)
    try:
        await asyncio.gather(*(provider.generate(req(f"q{i}")) for i in range(8)))
    finally:
        await provider.aclose()
    assert creds.refreshes == 1
    assert set(bearers(fake_server)) == {"ya29.fake-1"}


async def test_vertex_hook_path_for_sdks_without_a_key_callable(fake_server, monkeypatch):
    monkeypatch.setattr(vertex_module, "_sdk_takes_key_callable", lambda: False)
    creds = FakeCredentials()
    await run_once(vertex(fake_server).build(credentials_factory=lambda: creds))
    assert bearers(fake_server) == ["ya29.fake-1"]


async def test_vertex_credential_failure_is_a_non_retryable_auth_error(fake_server):
    class Broken(FakeCredentials):
        def refresh(self, request) -> None:
            raise RuntimeError("invalid_grant: Token has been expired or revoked.")

    with pytest.raises(ProviderError) as info:
        await run_once(vertex(fake_server).build(credentials_factory=Broken))
    assert info.value.error_type == "auth" and info.value.retryable is False
    assert "application-default login" in str(info.value)


def test_vertex_endpoint_urls():
    cfg = VertexConfig(project="p", model="google/gemini-2.0-flash-001")
    assert cfg.endpoint_url == (
        "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/endpoints/openapi"
    )
    glob = VertexConfig(project="p", location="global", model="google/gemini-2.0-flash-001")
    assert glob.endpoint_url.startswith("https://aiplatform.googleapis.com/v1/projects/p/locations/global/")
    assert cfg.cache_identity()["base_url"] == cfg.endpoint_url
    assert cfg.secret_env_vars() == {}
    with pytest.raises(ValueError, match="publisher/model"):
        VertexConfig(project="p", model="gemini-2.0-flash-001")


def test_token_source_is_thread_safe_and_lazy():
    creds = FakeCredentials()
    made = []

    def factory():
        made.append(1)
        return creds

    source = GoogleTokenSource(factory, request_factory=object)
    assert made == []  # nothing happens until a token is needed
    assert source.current_tokens() == []
    assert source.token_sync() == "ya29.fake-1"
    assert source.token_sync() == "ya29.fake-1"
    assert made == [1] and creds.refreshes == 1 and source.current_tokens() == ["ya29.fake-1"]
