"""Bedrock adapter: Converse request shape, scripted event streams, botocore error mapping."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    EventStreamError,
    NoCredentialsError,
    ReadTimeoutError,
)

from rai_harness.errors import ProviderError
from rai_harness.providers.bedrock import BedrockConfig, build_converse_kwargs, map_bedrock_error
from rai_harness.types import ChatMessage, ChatRequest, GenerationParams

MODEL = "amazon.nova-micro-v1:0"


def client_error(
    code: str, status: int, message: str = "details", headers: dict | None = None
) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    return ClientError(response, "ConverseStream")


def stream_events(text_pieces, *, stop="end_turn", usage=(12, 3), latency_ms=321, delay_s=0.0):
    events = [{"messageStart": {"role": "assistant"}}]
    for piece in text_pieces:
        events.append({"contentBlockDelta": {"delta": {"text": piece}, "contentBlockIndex": 0}})
    events.append({"contentBlockStop": {"contentBlockIndex": 0}})
    if stop is not None:
        events.append({"messageStop": {"stopReason": stop}})
    if usage is not None:
        events.append(
            {
                "metadata": {
                    "usage": {"inputTokens": usage[0], "outputTokens": usage[1], "totalTokens": sum(usage)},
                    "metrics": {"latencyMs": latency_ms},
                }
            }
        )
    return events


class ScriptedStream:
    """An EventStream double: iterates events (optionally slowly) and records close()."""

    def __init__(self, events, *, first_delay_s: float = 0.0, delay_s: float = 0.0, fail_with=None) -> None:
        self.events = events
        self.first_delay_s = first_delay_s
        self.delay_s = delay_s
        self.fail_with = fail_with
        self.closed = threading.Event()

    def __iter__(self):
        for i, event in enumerate(self.events):
            if self.closed.is_set():
                raise ConnectionError("stream closed")
            time.sleep(self.first_delay_s if "contentBlockDelta" in event and i <= 1 else 0.0)
            if "contentBlockDelta" in event:
                time.sleep(self.delay_s)
            yield event
        if self.fail_with is not None:
            raise self.fail_with

    def close(self) -> None:
        self.closed.set()


class FakeBedrockClient:
    """Scripted bedrock-runtime double recording the requests it got."""

    def __init__(self, *, stream=None, response=None, error=None) -> None:
        self.stream = stream
        self.response = response
        self.error = error
        self.calls: list[tuple[str, dict]] = []

    def converse_stream(self, **kwargs):
        self.calls.append(("converse_stream", kwargs))
        if self.error is not None:
            raise self.error
        return {"stream": self.stream}

    def converse(self, **kwargs):
        self.calls.append(("converse", kwargs))
        if self.error is not None:
            raise self.error
        return self.response


def req(**kwargs) -> ChatRequest:
    return ChatRequest.from_prompt("s1", "Say hi.", system="You are terse.", **kwargs)


async def run(client, *, stream=True, request=None, **overrides):
    provider = BedrockConfig(model=MODEL, region="us-east-1", stream=stream, **overrides).build(client=client)
    try:
        return await provider.generate(request or req()), provider.describe()
    finally:
        await provider.aclose()


def test_converse_kwargs():
    params = GenerationParams(max_tokens=50, temperature=0.2, top_p=0.9, stop=("END",), extra={"top_k": 5})
    request = ChatRequest(
        "s",
        (
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Q1"),
            ChatMessage("assistant", "A1"),
            ChatMessage("user", "Q2"),
        ),
        params=params,
    )
    assert build_converse_kwargs(MODEL, request) == {
        "modelId": MODEL,
        "system": [{"text": "Be brief."}],
        "messages": [
            {"role": "user", "content": [{"text": "Q1"}]},
            {"role": "assistant", "content": [{"text": "A1"}]},
            {"role": "user", "content": [{"text": "Q2"}]},
        ],
        "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        "additionalModelRequestFields": {"top_k": 5},
    }


async def test_stream_text_ttft_usage_and_server_latency():
    stream = ScriptedStream(stream_events(["Hi", " there", "!"]), first_delay_s=0.15, delay_s=0.01)
    client = FakeBedrockClient(stream=stream)
    gen, info = await run(client)
    assert gen.text == "Hi there!"
    assert gen.streamed is True and gen.finish_reason == "end_turn" and gen.model == MODEL
    assert (gen.usage.prompt_tokens, gen.usage.completion_tokens, gen.usage.estimated) == (12, 3, False)
    # Order, not wall-clock closeness: a loaded CI machine may add any delay after the first
    # chunk, but TTFT can never precede it and the two later chunks (10 ms apart) follow it.
    assert gen.ttft_s is not None and gen.ttft_s >= 0.15 - 0.005
    assert gen.latency_s >= gen.ttft_s + 0.02
    assert info["server_latency_ms"]["calls"] == 1 and info["server_latency_ms"]["p50"] == 321
    ((method, kwargs),) = client.calls
    assert method == "converse_stream" and kwargs["system"] == [{"text": "You are terse."}]
    assert kwargs["inferenceConfig"] == {"maxTokens": 256}
    assert stream.closed.is_set()


async def test_stream_without_metadata_estimates_usage():
    client = FakeBedrockClient(stream=ScriptedStream(stream_events(["hello world"], usage=None)))
    gen, _ = await run(client)
    assert gen.usage.estimated is True and gen.usage.completion_tokens == 2


@pytest.mark.parametrize("usage", [None, (12, 1)])
async def test_stream_cut_before_message_stop_is_retryable(usage):
    # A metadata event with usage but no messageStop is still a cut message.
    client = FakeBedrockClient(stream=ScriptedStream(stream_events(["partial"], stop=None, usage=usage)))
    with pytest.raises(ProviderError) as info:
        await run(client)
    assert info.value.retryable is True and info.value.error_type == "connection"


async def test_non_stream_converse():
    response = {
        "output": {"message": {"role": "assistant", "content": [{"text": "Hello"}, {"text": " you"}]}},
        "stopReason": "max_tokens",
        "usage": {"inputTokens": 7, "outputTokens": 2, "totalTokens": 9},
        "metrics": {"latencyMs": 88},
    }
    client = FakeBedrockClient(response=response)
    gen, info = await run(client, stream=False)
    assert gen.text == "Hello you" and gen.ttft_s is None and gen.streamed is False
    assert gen.finish_reason == "max_tokens"
    assert (gen.usage.prompt_tokens, gen.usage.completion_tokens) == (7, 2)
    assert info["server_latency_ms"]["max"] == 88
    assert client.calls[0][0] == "converse"


@pytest.mark.parametrize(
    ("code", "status", "error_type", "retryable"),
    [
        ("ThrottlingException", 429, "rate_limit", True),
        ("ServiceUnavailableException", 503, "server_error", True),
        ("InternalServerException", 500, "server_error", True),
        ("ModelNotReadyException", 429, "model_not_ready", True),
        ("ModelTimeoutException", 408, "timeout", True),
        ("ValidationException", 400, "bad_request", False),
        ("AccessDeniedException", 403, "auth", False),
        ("ResourceNotFoundException", 404, "not_found", False),
        ("ServiceQuotaExceededException", 400, "quota", False),
        ("SomethingNew", 502, "server_error", True),
        ("SomethingElse", 400, "bad_request", False),
    ],
)
async def test_client_errors_map(code, status, error_type, retryable):
    client = FakeBedrockClient(error=client_error(code, status, headers={"retry-after": "2"}))
    with pytest.raises(ProviderError) as info:
        await run(client)
    err = info.value
    assert (err.error_type, err.retryable, err.status_code) == (error_type, retryable, status)
    assert code in str(err)
    assert err.retry_after_s == (2.0 if retryable else None)


def test_connection_errors_map():
    conn = map_bedrock_error(
        EndpointConnectionError(endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com")
    )
    assert (conn.error_type, conn.retryable) == ("connection", True)
    slow = map_bedrock_error(ReadTimeoutError(endpoint_url="https://x"))
    assert (slow.error_type, slow.retryable) == ("timeout", True)
    creds = map_bedrock_error(NoCredentialsError())
    assert (creds.error_type, creds.retryable) == ("auth", False)
    event = EventStreamError(
        {"Error": {"Code": "ModelStreamErrorException", "Message": "stream broke"}}, "ConverseStream"
    )
    mid = map_bedrock_error(event)
    assert (mid.error_type, mid.retryable) == ("server_error", True)
    other = map_bedrock_error(ValueError("odd"))
    assert (other.error_type, other.retryable) == ("provider_error", False)


async def test_error_raised_mid_stream_is_mapped():
    event_error = EventStreamError(
        {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "ConverseStream"
    )
    stream = ScriptedStream(stream_events(["a"], stop=None, usage=None), fail_with=event_error)
    with pytest.raises(ProviderError) as info:
        await run(FakeBedrockClient(stream=stream))
    assert info.value.error_type == "rate_limit" and info.value.retryable is True


async def test_exception_event_dict_is_mapped():
    events = [*stream_events(["a"], stop=None, usage=None), {"validationException": {"message": "too long"}}]
    with pytest.raises(ProviderError) as info:
        await run(FakeBedrockClient(stream=ScriptedStream(events)))
    assert info.value.error_type == "bad_request" and info.value.retryable is False


async def test_cancel_closes_the_stream():
    stream = ScriptedStream(stream_events(["x"] * 50), delay_s=0.02)
    provider = BedrockConfig(model=MODEL, region="us-east-1").build(client=FakeBedrockClient(stream=stream))
    try:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(provider.generate(req()), timeout=0.1)
        assert stream.closed.wait(1.0)
    finally:
        await provider.aclose()


def test_real_boto3_client_is_single_attempt():
    cfg = BedrockConfig(model=MODEL, region="eu-west-1", timeout_s=42, concurrency=5)
    provider = cfg.build()
    try:
        client = provider._client
        assert client.meta.region_name == "eu-west-1"
        config = client.meta.config
        assert config.retries == {"mode": "standard", "total_max_attempts": 1}
        assert config.read_timeout == 42 and config.max_pool_connections == 5
    finally:
        asyncio.run(provider.aclose())
    assert cfg.cache_identity() == {
        "kind": "bedrock",
        "model": MODEL,
        "region": "eu-west-1",
        "endpoint_url": None,
    }
    assert cfg.secret_env_vars() == {}
