"""The OpenAI-compatible adapter against the local fake server, and the error mapping."""

from __future__ import annotations

import asyncio
import email.utils
import json

import httpx
import openai
import pytest

from rai_harness.errors import MissingSecretError, ProviderError
from rai_harness.providers.errors_map import (
    map_openai_error,
    map_transport_error,
    parse_retry_after,
    provider_error_for_status,
    scrub_secrets,
)
from rai_harness.providers.openai_compat import (
    OpenAICompatProvider,
    OpenAIConfig,
    build_chat_kwargs,
    http_module,
)
from rai_harness.types import ChatRequest, GenerationParams

SECRET = "sk-test-SECRET-123"
KEY_ENV = "RAI_TEST_OPENAI_KEY"


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


def make(srv, *, stream: bool = True, **overrides) -> OpenAICompatProvider:
    fields = {"model": "gpt-test", "base_url": srv.base_url, "api_key_env": KEY_ENV, "stream": stream}
    fields.update(overrides)
    return OpenAIConfig(**fields).build()


def req(prompt: str = "hello there big world", **kwargs) -> ChatRequest:
    return ChatRequest.from_prompt("s1", prompt, **kwargs)


async def generate(srv, request: ChatRequest | None = None, **overrides):
    provider = make(srv, **overrides)
    try:
        return await provider.generate(request or req())
    finally:
        await provider.aclose()


async def failure(srv, **overrides) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await generate(srv, **overrides)
    assert SECRET not in str(info.value)
    return info.value


# -- successful calls ---------------------------------------------------------------------------


async def test_stream_text_usage_and_ttft(fake_server, api_key):
    provider = make(fake_server)
    try:
        await provider.load()  # what the runner does before a run
        await provider.generate(req("connect first"))  # the timing below is of a steady-state call
        fake_server.reset()
        fake_server.configure(ttft_s=0.2)
        gen = await provider.generate(req(system="Be brief."))
    finally:
        await provider.aclose()
    assert gen.text == "Echo: hello there big world"
    assert gen.streamed is True
    assert gen.finish_reason == "stop"
    assert gen.model == "gpt-test"
    # The fake server counts whitespace words: 2 + 4 prompt words, 5 completion words.
    assert (gen.usage.prompt_tokens, gen.usage.completion_tokens, gen.usage.estimated) == (6, 5, False)
    # Order, not closeness to 0.2 s: a loaded machine may add any delay after the first chunk,
    # but TTFT can never precede the server's first-token delay (timings live in benchmarks/).
    assert gen.ttft_s is not None and gen.ttft_s >= 0.2 - 0.005
    assert gen.latency_s >= gen.ttft_s
    (record,) = fake_server.stats()["requests"]
    assert record["stream"] is True and record["bearer"] == SECRET


async def test_non_stream_has_no_ttft(fake_server, api_key):
    fake_server.configure(latency_s=0.05)
    gen = await generate(fake_server, stream=False)
    assert gen.text == "Echo: hello there big world"
    assert gen.streamed is False and gen.ttft_s is None
    assert gen.latency_s >= 0.05
    assert (gen.usage.prompt_tokens, gen.usage.completion_tokens, gen.usage.estimated) == (4, 5, False)
    assert fake_server.stats()["requests"][0]["stream"] is False


@pytest.mark.parametrize("stream", [True, False])
async def test_missing_usage_is_estimated(fake_server, api_key, stream):
    fake_server.configure(omit_usage=True)
    gen = await generate(fake_server, stream=stream)
    assert gen.usage.estimated is True
    assert gen.usage.estimator == "wordpiece:all-MiniLM-L6-v2"
    # WordPiece: "echo", ":", "hello", "there", "big", "world".
    assert gen.usage.completion_tokens == 6
    assert gen.usage.prompt_tokens == 4


async def test_max_tokens_and_extra_reach_the_server(fake_server, api_key):
    gen = await generate(fake_server, req(params=GenerationParams(max_tokens=2)))
    assert gen.finish_reason == "length" and gen.usage.completion_tokens == 2
    # max_completion_tokens in extra replaces max_tokens (reasoning models reject the latter).
    params = GenerationParams(max_tokens=2, extra={"max_completion_tokens": 3})
    gen = await generate(fake_server, req(params=params), stream=False)
    assert gen.finish_reason == "length" and gen.usage.completion_tokens == 3


def test_build_chat_kwargs_maps_every_param():
    params = GenerationParams(
        max_tokens=9, temperature=0.5, top_p=0.9, seed=7, stop=("\n",), extra={"top_k": 4}
    )
    kwargs = build_chat_kwargs("m", req(params=params))
    assert kwargs == {
        "model": "m",
        "messages": [{"role": "user", "content": "hello there big world"}],
        "max_tokens": 9,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["\n"],
        "extra_body": {"top_k": 4},
    }
    bare = build_chat_kwargs("m", req(params=GenerationParams(max_tokens=None)))
    assert set(bare) == {"model", "messages"}


async def test_no_auth_sends_placeholder(fake_server):
    gen = await generate(fake_server, api_key_env=None)
    assert gen.text.startswith("Echo:")
    assert fake_server.stats()["requests"][0]["bearer"] == "not-needed"


async def test_headers_env_are_sent(fake_server, monkeypatch):
    # The fake server accepts its key from an `api-key` header too: only the header
    # taken from the environment can satisfy it (the bearer is the placeholder).
    monkeypatch.setenv("RAI_TEST_GATEWAY_KEY", "gw-SECRET-456")
    fake_server.configure(require_api_key="gw-SECRET-456")
    gen = await generate(
        fake_server,
        api_key_env=None,
        headers={"X-Team": "rai"},
        headers_env={"api-key": "RAI_TEST_GATEWAY_KEY"},
    )
    assert gen.text.startswith("Echo:")
    monkeypatch.setenv("RAI_TEST_GATEWAY_KEY", "wrong")
    err = await failure(fake_server, api_key_env=None, headers_env={"api-key": "RAI_TEST_GATEWAY_KEY"})
    assert err.status_code == 401


async def test_missing_key_variable_is_a_config_error(fake_server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(MissingSecretError) as info:
        make(fake_server)
    assert KEY_ENV in str(info.value)


def test_secret_env_vars_and_cache_identity():
    cfg = OpenAIConfig(
        model="m",
        base_url="http://localhost:8000/v1/",
        api_key_env="MY_KEY",
        headers_env={"X-Key": "HDR_VAR"},
        organization="org-1",
    )
    assert cfg.secret_env_vars() == {"api_key_env": "MY_KEY", "headers_env.X-Key": "HDR_VAR"}
    identity = cfg.cache_identity()
    assert identity["base_url"] == "http://localhost:8000/v1" and identity["model"] == "m"
    assert "MY_KEY" not in str(identity) and "HDR_VAR" not in str(identity)
    assert OpenAIConfig(model="m").cache_identity()["base_url"] == "https://api.openai.com/v1"
    assert OpenAIConfig(model="m", api_key_env=None).secret_env_vars() == {}


def test_config_rejects_a_key_pasted_as_env_name():
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        OpenAIConfig(model="m", api_key_env="sk-live-abc")


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    ("fault", "status", "error_type", "retry_after"),
    [
        ("429", 429, "rate_limit", 1.5),  # retry-after-ms wins over Retry-After
        ("503", 503, "server_error", 1.5),
        ("500", 500, "server_error", None),  # the fake server sends Retry-After only on 429/503
        ("drop", None, "connection", None),
        ("malformed", None, "bad_response", None),
    ],
)
async def test_fault_kinds_map_to_retryable_errors(
    fake_server, api_key, stream, fault, status, error_type, retry_after
):
    fake_server.configure(fault_rate=1.0, faults={fault: 1}, retry_after_s=7, retry_after_ms=1500)
    err = await failure(fake_server, stream=stream)
    assert err.retryable is True
    assert err.error_type == error_type
    assert err.status_code == status
    assert err.retry_after_s == retry_after


async def test_retry_after_seconds_alone(fake_server, api_key):
    fake_server.configure(fault_rate=1.0, faults={"429": 1}, retry_after_s=2)
    err = await failure(fake_server)
    assert err.retry_after_s == 2.0


@pytest.mark.parametrize("stream", [True, False])
async def test_hang_times_out_retryable(fake_server, api_key, stream):
    fake_server.configure(fault_rate=1.0, faults={"timeout": 1}, hang_s=2.0)
    err = await failure(fake_server, stream=stream, timeout_s=0.2)
    assert err.retryable is True and err.error_type == "timeout"


async def test_401_is_not_retryable_and_never_shows_the_key(fake_server, api_key):
    fake_server.configure(require_api_key="some-other-key")
    err = await failure(fake_server)
    assert err.retryable is False
    assert err.status_code == 401 and err.error_type == "auth"


async def test_connection_refused_is_retryable(api_key):
    # Port 9 (discard) on loopback: nothing listens there in the test environment.
    provider = OpenAIConfig(model="m", base_url="http://127.0.0.1:9/v1", api_key_env=KEY_ENV).build()
    try:
        with pytest.raises(ProviderError) as info:
            await provider.generate(req())
    finally:
        await provider.aclose()
    assert info.value.retryable is True and info.value.error_type == "connection"


async def test_cancelled_stream_releases_its_connection(fake_server, api_key):
    # One connection in the pool: if the cancelled stream kept it, the next call would
    # wait for the pool until its timeout.
    fake_server.configure(inter_token_s=0.2)
    provider = make(fake_server, concurrency=1, timeout_s=2.0)
    try:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(provider.generate(req()), timeout=0.1)
        fake_server.configure(inter_token_s=0.0)
        gen = await asyncio.wait_for(provider.generate(req("second call")), timeout=1.5)
        assert gen.text == "Echo: second call"
    finally:
        await provider.aclose()


async def test_describe_has_no_secret(fake_server, api_key):
    provider = make(fake_server)
    try:
        info = provider.describe()
    finally:
        await provider.aclose()
    assert info["base_url"].startswith(fake_server.base_url) and SECRET not in str(info)


# -- the error mapping, unit by unit ------------------------------------------------------------


def _status_error(status: int, body: object, headers: dict[str, str] | None = None) -> openai.APIStatusError:
    request = httpx.Request("POST", "https://api.example/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, json=body, request=request)
    client = openai.AsyncOpenAI(api_key="x", base_url="https://api.example/v1")
    return client._make_status_error_from_response(response)  # what the SDK raises


@pytest.mark.parametrize(
    ("status", "error_type", "retryable"),
    [
        (400, "bad_request", False),
        (401, "auth", False),
        (403, "auth", False),
        (404, "not_found", False),
        (408, "timeout", True),
        (409, "conflict", True),
        (422, "bad_request", False),
        (429, "rate_limit", True),
        (500, "server_error", True),
        (502, "server_error", True),
        (503, "server_error", True),
        (504, "timeout", True),
        (418, "bad_request", False),
    ],
)
def test_status_table(status, error_type, retryable):
    err = map_openai_error(_status_error(status, {"error": {"message": "nope"}}))
    assert (err.status_code, err.error_type, err.retryable) == (status, error_type, retryable)
    assert "nope" in str(err)


def test_quota_429_and_content_filter_are_not_retryable():
    quota = map_openai_error(
        _status_error(429, {"error": {"message": "quota", "code": "insufficient_quota"}})
    )
    assert (quota.error_type, quota.retryable) == ("quota", False)
    blocked = map_openai_error(_status_error(400, {"error": {"message": "x", "code": "content_filter"}}))
    assert (blocked.error_type, blocked.retryable) == ("content_filter", False)


def test_secrets_are_scrubbed_from_every_message():
    body = {"error": {"message": f"Incorrect API key provided: {SECRET}. Header was Bearer {SECRET}"}}
    err = map_openai_error(_status_error(401, body), secrets=[SECRET])
    assert SECRET not in str(err) and "***" in str(err)
    # Even an unexpected exception type is scrubbed.
    err = map_openai_error(RuntimeError(f"boom {SECRET}"), secrets=[SECRET])
    assert SECRET not in str(err) and err.retryable is False
    # A bearer token is hidden even when the caller did not list it.
    assert scrub_secrets("Authorization: Bearer ya29.abc-DEF_123", []) == "Authorization: Bearer ***"
    assert scrub_secrets("k=abcdef", ["abc", "abcdef"]) == "k=***"


def test_parse_retry_after_variants():
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after(httpx.Headers({"RETRY-AFTER": "1.5"})) == 1.5
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=now) == pytest.approx(30, abs=1)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after({"Retry-After": past}, now=now) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({"retry-after-ms": "x", "Retry-After": "2"}) == 2.0
    assert parse_retry_after({"Retry-After": "-4"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


def test_non_retryable_status_drops_retry_after():
    err = provider_error_for_status(400, "bad", headers={"Retry-After": "5"})
    assert err.retry_after_s is None


def test_transport_and_sdk_errors():
    request = httpx.Request("POST", "http://x/v1/chat/completions")
    dropped = map_transport_error(httpx.RemoteProtocolError("peer closed connection", request=request))
    assert (dropped.error_type, dropped.retryable) == ("connection", True)
    assert map_openai_error(httpx.ReadError("reset", request=request)).error_type == "connection"
    assert map_openai_error(httpx.ReadTimeout("slow", request=request)).error_type == "timeout"
    httpx2 = pytest.importorskip("httpx2")  # openai 3.x's own HTTP stack
    request2 = httpx2.Request("POST", "http://x/v1/chat/completions")
    assert map_openai_error(httpx2.RemoteProtocolError("cut", request=request2)).error_type == "connection"
    assert map_openai_error(httpx2.ReadTimeout("slow", request=request2)).error_type == "timeout"
    assert map_openai_error(openai.APITimeoutError(request=request)).error_type == "timeout"
    conn = map_openai_error(openai.APIConnectionError(request=request))
    assert (conn.error_type, conn.retryable) == ("connection", True)
    mid = map_openai_error(openai.APIError("overloaded", request, body={"message": "overloaded"}))
    assert (mid.error_type, mid.retryable) == ("server_error", True)
    bad = map_openai_error(json.JSONDecodeError("Expecting value", "{x", 1))
    assert (bad.error_type, bad.retryable) == ("bad_response", True)
    own = ProviderError("x", retryable=False, error_type="auth")
    assert map_openai_error(own) is own


# -- odd replies, from an in-memory transport ---------------------------------------------------


def _chunk(content: str | None = None, finish: str | None = None) -> str:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]}
    return "data: " + json.dumps(body) + "\n\n"


async def _with_reply(body: str, *, content_type: str = "text/event-stream", stream: bool = True):
    http = http_module()

    def answer(request):
        return http.Response(200, headers={"content-type": content_type}, text=body)

    client = openai.AsyncOpenAI(
        api_key=SECRET,
        base_url="http://mock.invalid/v1",
        max_retries=0,
        http_client=http.AsyncClient(transport=http.MockTransport(answer)),
    )
    provider = OpenAICompatProvider(client, model="m", stream=stream, secrets=[SECRET])
    try:
        return await provider.generate(req())
    finally:
        await provider.aclose()


async def test_stream_without_finish_reason_is_a_retryable_cut():
    with pytest.raises(ProviderError) as info:
        await _with_reply(_chunk("Hel") + _chunk("lo"))
    assert (info.value.error_type, info.value.retryable) == ("connection", True)


async def test_empty_stream_is_a_bad_response():
    with pytest.raises(ProviderError) as info:
        await _with_reply("data: [DONE]\n\n")
    assert (info.value.error_type, info.value.retryable) == ("bad_response", True)


async def test_error_object_mid_stream_is_retryable():
    error = 'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n'
    with pytest.raises(ProviderError) as info:
        await _with_reply(_chunk("Hel") + error)
    assert (info.value.error_type, info.value.retryable) == ("server_error", True)
    assert "overloaded" in str(info.value)


async def test_non_json_body_is_a_bad_response():
    with pytest.raises(ProviderError) as info:
        await _with_reply("<html>gateway error</html>", content_type="text/html", stream=False)
    assert (info.value.error_type, info.value.retryable) == ("bad_response", True)


async def test_finish_without_usage_is_estimated_not_an_error():
    gen = await _with_reply(_chunk("Hi there") + _chunk(finish="stop") + "data: [DONE]\n\n")
    assert gen.text == "Hi there" and gen.finish_reason == "stop" and gen.usage.estimated
