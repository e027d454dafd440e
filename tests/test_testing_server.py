"""The fake OpenAI server: wire format, every fault kind, determinism, routes, modes, speed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import httpx
import openai
import pytest

from rai_harness.testing import FakeOpenAIServer, FaultConfig

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "hello there big world"},
]


@contextlib.asynccontextmanager
async def sdk(base_url: str, *, timeout: float = 10.0, **kwargs) -> AsyncIterator[openai.AsyncOpenAI]:
    # trust_env=False: test traffic goes straight to the loopback server, never via a proxy.
    client = openai.AsyncOpenAI(
        base_url=base_url,
        api_key=kwargs.pop("api_key", "x"),
        max_retries=0,
        timeout=timeout,
        http_client=httpx.AsyncClient(trust_env=False),
        **kwargs,
    )
    try:
        yield client
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def raw(timeout: float = 10.0) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=timeout) as client:
        yield client


async def collect(stream) -> list:
    return [chunk async for chunk in stream]


# -- replies ------------------------------------------------------------------------------------


async def test_non_stream_reply_and_usage(fake_server):
    async with sdk(fake_server.base_url) as client:
        result = await client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert result.object == "chat.completion" and result.id.startswith("chatcmpl-")
    assert result.model == "gpt-test"
    (choice,) = result.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "Echo: hello there big world"
    assert choice.finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (
        7,
        5,
        12,
    )
    stats = fake_server.stats()
    assert stats["calls"] == 1 and stats["completed"] == 1 and stats["faults"] == {}
    (record,) = stats["requests"]
    assert record["fault"] is None and record["stream"] is False and record["auth"] is True
    assert record["bearer"] == "x" and isinstance(record["t"], float)


async def test_stream_one_word_per_chunk_and_usage_only_when_asked(fake_server):
    async with sdk(fake_server.base_url) as client:
        plain = await collect(
            await client.chat.completions.create(model="gpt-test", messages=MESSAGES, stream=True)
        )
        with_usage = await collect(
            await client.chat.completions.create(
                model="gpt-test", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
    for chunks in (plain, with_usage):
        assert all(c.object == "chat.completion.chunk" and c.model == "gpt-test" for c in chunks)
        assert chunks[0].choices[0].delta.role == "assistant"
        contents = [
            c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content
        ]
        assert contents == ["Echo:", " hello", " there", " big", " world"]
        finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finals == ["stop"]
    assert all(c.usage is None for c in plain)
    last = with_usage[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (7, 5)
    assert all(c.usage is None for c in with_usage[:-1])
    assert fake_server.stats()["completed"] == 2


async def test_max_tokens_truncates_with_length_finish(fake_server):
    async with sdk(fake_server.base_url) as client:
        short = await client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=2)
        newer = await client.chat.completions.create(model="m", messages=MESSAGES, max_completion_tokens=3)
        chunks = await collect(
            await client.chat.completions.create(
                model="m",
                messages=MESSAGES,
                max_tokens=2,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        fake_server.configure(max_reply_words=1)
        capped = await client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=4)
    assert short.choices[0].message.content == "Echo: hello" and short.choices[0].finish_reason == "length"
    assert short.usage is not None and short.usage.completion_tokens == 2
    assert newer.choices[0].message.content == "Echo: hello there"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: hello"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "length"
    ]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2
    assert capped.choices[0].message.content == "Echo:" and capped.choices[0].finish_reason == "length"


async def test_fixed_reply_script_and_omit_usage(fake_server):
    fake_server.configure(reply="fixed answer", script={"weather": "It is sunny.", "there": "scripted"})
    async with sdk(fake_server.base_url) as client:
        fixed = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        scripted = await client.chat.completions.create(model="m", messages=MESSAGES)
        fake_server.configure(omit_usage=True)
        bare = await client.chat.completions.create(model="m", messages=MESSAGES)
        chunks = await collect(
            await client.chat.completions.create(
                model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
    assert fixed.choices[0].message.content == "fixed answer"
    assert scripted.choices[0].message.content == "scripted"
    assert bare.usage is None
    assert all(c.usage is None for c in chunks) and chunks[-1].choices


# -- faults -------------------------------------------------------------------------------------


async def test_status_faults_have_openai_error_bodies_and_retry_after(fake_server):
    fake_server.configure(fault_rate=1.0, faults={"429": 1}, retry_after_s=2, retry_after_ms=150.5)
    body = {"model": "m", "messages": MESSAGES}
    async with raw() as client:
        r429 = await client.post(fake_server.base_url + "/chat/completions", json=body)
        fake_server.configure(faults={"503": 1})
        r503 = await client.post(fake_server.base_url + "/chat/completions", json=body)
        fake_server.configure(faults={"500": 1})
        r500 = await client.post(fake_server.base_url + "/chat/completions", json=body)
    assert r429.status_code == 429 and r429.headers["retry-after"] == "2"
    assert r429.headers["retry-after-ms"] == "150.5"
    assert r429.json()["error"]["code"] == "rate_limit_exceeded"
    assert set(r429.json()["error"]) >= {"message", "type", "code"}
    assert r503.status_code == 503 and r503.headers["retry-after"] == "2"
    assert r500.status_code == 500 and "retry-after" not in r500.headers
    assert r500.json()["error"]["type"] == "server_error"
    assert fake_server.stats()["faults"] == {"429": 1, "503": 1, "500": 1}

    fake_server.configure(faults={"429": 1}, retry_after_s=None, retry_after_ms=None)
    async with sdk(fake_server.base_url) as client:
        with pytest.raises(openai.RateLimitError) as info:
            await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    assert "retry-after" not in info.value.response.headers


async def test_timeout_fault_hangs_then_answers(fake_server):
    fake_server.configure(fault_rate=1.0, faults={"timeout": 1}, hang_s=0.4)
    async with sdk(fake_server.base_url, timeout=0.1) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="m", messages=MESSAGES)
    async with sdk(fake_server.base_url) as client:
        start = time.perf_counter()
        result = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert time.perf_counter() - start >= 0.4
    assert result.choices[0].message.content == "Echo: hello there big world"
    stats = fake_server.stats()
    assert stats["faults"] == {"timeout": 2}


async def test_drop_closes_connection(fake_server):
    fake_server.configure(fault_rate=1.0, faults={"drop": 1}, inter_token_s=0.001)
    async with sdk(fake_server.base_url) as client:
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(model="m", messages=MESSAGES)
        received = []
        with pytest.raises((openai.APIConnectionError, httpx.HTTPError)):
            stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            async for chunk in stream:
                received.append(chunk)
    # Some chunks arrived before the connection went: role chunk plus half the words.
    assert 1 <= len(received) < 6
    assert all(c.choices[0].finish_reason is None for c in received)
    stats = fake_server.stats()
    assert stats["faults"] == {"drop": 2} and stats["completed"] == 0


async def test_malformed_json_raises(fake_server):
    fake_server.configure(fault_rate=1.0, faults={"malformed": 1})
    async with sdk(fake_server.base_url) as client:
        with pytest.raises(ValueError):  # json.JSONDecodeError from the SDK's response.json()
            await client.chat.completions.create(model="m", messages=MESSAGES)
        with pytest.raises(ValueError):
            await collect(await client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    async with raw() as client:
        response = await client.post(fake_server.base_url + "/chat/completions", json={"messages": MESSAGES})
        stream_text = (
            await client.post(
                fake_server.base_url + "/chat/completions", json={"messages": MESSAGES, "stream": True}
            )
        ).text
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert "data: {not json\n\n" in stream_text


async def _fault_sequence(srv: FakeOpenAIServer, n: int) -> list[str | None]:
    async with raw() as client:
        for i in range(n):
            body = {
                "model": "m",
                "messages": [{"role": "user", "content": f"prompt {i}"}],
                "stream": i % 2 == 0,
            }
            with contextlib.suppress(httpx.HTTPError):
                await client.post(srv.base_url + "/chat/completions", json=body)
    return [r["fault"] for r in srv.stats()["requests"]]


async def test_fault_pattern_is_deterministic_per_seed(fake_server_factory):
    cfg = FaultConfig(
        fault_rate=0.5,
        faults={"429": 1, "500": 1, "503": 1, "timeout": 1, "drop": 1, "malformed": 1},
        hang_s=0.0,
        seed=11,
    )
    first = await _fault_sequence(fake_server_factory(cfg), 60)
    second = await _fault_sequence(fake_server_factory(cfg), 60)
    other = await _fault_sequence(fake_server_factory(cfg.updated(seed=12)), 60)
    assert first == second
    assert first != other
    kinds = [f for f in first if f is not None]
    assert 15 <= len(kinds) <= 45
    assert len(set(kinds)) >= 4


async def test_retry_of_same_body_eventually_succeeds_and_replays_after_reset(fake_server):
    fake_server.configure(fault_rate=0.7, faults={"500": 1}, seed=4)
    body = {"model": "m", "messages": MESSAGES}

    async def attempts_until_ok() -> list[int]:
        codes = []
        async with raw() as client:
            for _ in range(60):
                codes.append(
                    (await client.post(fake_server.base_url + "/chat/completions", json=body)).status_code
                )
                if codes[-1] == 200:
                    break
        return codes

    codes = await attempts_until_ok()
    assert codes[-1] == 200 and set(codes[:-1]) <= {500}
    stats = fake_server.stats()
    assert stats["by_body"] == 1 and stats["calls"] == len(codes) and stats["completed"] == 1
    fake_server.reset()
    assert fake_server.stats()["calls"] == 0
    assert await attempts_until_ok() == codes  # the attempt history was reset too


async def test_require_api_key(fake_server):
    fake_server.configure(require_api_key="sk-right")
    url = fake_server.base_url + "/chat/completions"
    body = {"model": "m", "messages": MESSAGES}
    async with raw() as client:
        none = await client.post(url, json=body)
        wrong = await client.post(url, json=body, headers={"Authorization": "Bearer sk-wrong"})
        bearer = await client.post(url, json=body, headers={"Authorization": "Bearer sk-right"})
        azure = await client.post(url, json=body, headers={"api-key": "sk-right"})
    assert (none.status_code, wrong.status_code, bearer.status_code, azure.status_code) == (
        401,
        401,
        200,
        200,
    )
    assert none.json()["error"]["code"] == "invalid_api_key"
    requests = fake_server.stats()["requests"]
    assert [r["auth"] for r in requests] == [False, True, True, True]
    assert [r["bearer"] for r in requests] == [None, "sk-wrong", "sk-right", None]
    async with sdk(fake_server.base_url, api_key="sk-nope") as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="m", messages=MESSAGES)


# -- routes and control -------------------------------------------------------------------------


async def test_azure_and_vertex_routes(fake_server):
    azure = openai.AsyncAzureOpenAI(
        azure_endpoint=fake_server.root_url,
        azure_deployment="my-deploy",
        api_version="2024-10-21",
        api_key="k",
        max_retries=0,
        http_client=httpx.AsyncClient(trust_env=False),
    )
    try:
        result = await azure.chat.completions.create(model="ignored", messages=MESSAGES)
    finally:
        await azure.close()
    assert result.model == "my-deploy"
    assert result.choices[0].message.content == "Echo: hello there big world"
    vertex_url = fake_server.root_url + "/v1/projects/p1/locations/us-central1/endpoints/openapi"
    async with sdk(vertex_url) as client:
        chunks = await collect(
            await client.chat.completions.create(model="google/gemini-x", messages=MESSAGES, stream=True)
        )
    assert chunks[0].model == "google/gemini-x"
    async with raw() as client:
        models = (await client.get(fake_server.base_url + "/models")).json()
        bad = await client.post(fake_server.base_url + "/chat/completions", content=b"{nope")
    assert models["object"] == "list" and models["data"][0]["id"]
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    requests = fake_server.stats()["requests"]
    assert len(requests) == 3 and requests[0]["auth"] is True and requests[0]["bearer"] is None


def test_configure_validates_and_is_partial(fake_server):
    cfg = fake_server.configure(latency_s=0.01, faults={"drop": 2.0})
    assert cfg.latency_s == 0.01 and cfg.faults == {"drop": 2.0} and cfg.reply == "echo"
    with pytest.raises(ValueError, match="unknown FaultConfig"):
        fake_server.configure(latncy_s=1)
    with pytest.raises(ValueError, match="unknown fault kind"):
        fake_server.configure(faults={"418": 1})
    with pytest.raises(ValueError):
        fake_server.configure(fault_rate=1.5)
    assert fake_server.configure().latency_s == 0.01  # rejected updates changed nothing
    with pytest.raises(ValueError):
        FaultConfig(latency_s=-1)
    with pytest.raises(ValueError, match="loopback"):
        FakeOpenAIServer(host="0.0.0.0")


# -- modes and speed ----------------------------------------------------------------------------


async def test_subprocess_mode_counts_calls_and_stops_cleanly():
    srv = FakeOpenAIServer(FaultConfig(ttft_s=0.01, fault_rate=1.0, faults={"429": 1}), subprocess=True)
    with srv:
        proc = srv._proc
        assert proc is not None and proc.poll() is None
        assert srv.pid == proc.pid  # what benchmarks read the server's CPU time by
        assert srv.base_url.startswith("http://127.0.0.1:") and srv.base_url.endswith("/v1")
        async with sdk(srv.base_url) as client:
            with pytest.raises(openai.RateLimitError):
                await client.chat.completions.create(model="m", messages=MESSAGES)
            srv.configure(fault_rate=0.0)
            chunks = await collect(
                await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            )
        assert chunks[1].choices[0].delta.content == "Echo:"
        stats = srv.stats()
        assert stats["calls"] == 2 and stats["completed"] == 1 and stats["faults"] == {"429": 1}
    assert proc.returncode == 0  # stopped by closing its stdin, not killed
    assert not srv.started


def test_cli_refuses_non_loopback_host():
    result = subprocess.run(
        [sys.executable, "-m", "rai_harness.testing.server", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "loopback" in result.stderr and "READY" not in result.stdout


async def test_64_concurrent_calls_overlap(fake_server):
    fake_server.configure(latency_s=0.05)
    async with sdk(fake_server.base_url) as client:
        results = await asyncio.gather(
            *(
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"q {i}"}])
                for i in range(64)
            )
        )
    assert [r.choices[0].message.content for r in results] == [f"Echo: q {i}" for i in range(64)]
    stats = fake_server.stats()
    # Overlap is proven by the server's own in-flight count, not by wall time (load-dependent).
    assert stats["max_in_flight"] >= 32 and stats["in_flight"] == 0 and stats["completed"] == 64


async def test_stop_does_not_wait_for_hung_requests(fake_server_factory):
    srv = fake_server_factory(FaultConfig(fault_rate=1.0, faults={"timeout": 1}, hang_s=30.0))
    thread = srv._thread
    assert thread is not None and thread.is_alive()
    async with sdk(srv.base_url, timeout=30) as client:
        call = asyncio.ensure_future(client.chat.completions.create(model="m", messages=MESSAGES))
        while srv.stats()["in_flight"] == 0:
            await asyncio.sleep(0.01)
        start = time.perf_counter()
        await asyncio.to_thread(srv.stop)
        assert time.perf_counter() - start < 3
        with pytest.raises(openai.APIError):
            await call
    assert not thread.is_alive()
