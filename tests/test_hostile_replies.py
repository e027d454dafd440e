"""Replies a hostile endpoint scripts byte by byte: the answer survives, the key never shows.

Each case is a small aiohttp handler on 127.0.0.1 that sends what a broken or malicious
OpenAI-compatible server can: a stream held open after ``[DONE]``, the API key echoed into an
error message, a usage count or the answer, JSON nested 200,000 deep, a 5,000-digit number,
a redirect. Both client paths (``httpx``, the default, and ``sdk``) are checked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from rai_harness.errors import ProviderError
from rai_harness.providers.openai_compat import OpenAIConfig
from rai_harness.types import ChatRequest

KEY = "sk-proj-HOSTILEtest0123456789abcdefghijklmnopqrstuv"
CLIENTS = ("httpx", "sdk")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _completion(text: str, usage: dict[str, object] | None = None) -> dict[str, object]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage or {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


async def _sse(request: web.Request, events: list[str], *, hang: bool = False) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in events:
        await response.write(f"data: {event}\n\n".encode())
    if hang:
        await asyncio.sleep(3600)  # the body never ends; the client must not wait for it
    return response


def _chunk(content: str | None = None, finish: str | None = None, usage: object = None) -> str:
    delta = {"content": content} if content is not None else {}
    body: dict[str, object] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return json.dumps(body)


@pytest.fixture
async def endpoint(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Serve one handler on 127.0.0.1 and return the base URL; every request is counted."""
    monkeypatch.setenv("HOSTILE_TEST_KEY", KEY)
    runners: list[web.AppRunner] = []

    async def serve(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/v1"

    yield serve
    for runner in runners:
        await runner.cleanup()


async def _call(
    base_url: str, client: str, *, stream: bool = False, timeout_s: float = 10.0
) -> tuple[object, float]:
    """``(Generation or ProviderError, seconds)`` of one call."""
    provider = OpenAIConfig(
        model="m",
        base_url=base_url,
        api_key_env="HOSTILE_TEST_KEY",
        client=client,
        stream=stream,
        timeout_s=timeout_s,
    ).build()
    start = time.perf_counter()
    try:
        result: object = await asyncio.wait_for(provider.generate(ChatRequest.from_prompt("s", "hi")), 30)
    except ProviderError as exc:
        result = exc
    finally:
        await provider.aclose()
    return result, time.perf_counter() - start


def _no_key_in(text: str) -> None:
    # Not the key, nor any 6-character piece of its secret part.
    secret = KEY[len("sk-proj-") :]
    pieces = [secret[i : i + 6] for i in range(len(secret) - 5)]
    assert KEY not in text and not [p for p in pieces if p in text], text


@pytest.mark.parametrize("client", CLIENTS)
async def test_an_answer_is_kept_when_the_stream_stays_open_after_done(endpoint, client: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        events = [
            _chunk("Hello"),
            _chunk(" there", "stop"),
            _chunk(usage={"prompt_tokens": 5, "completion_tokens": 2}),
            "[DONE]",
        ]
        return await _sse(request, events, hang=True)

    result, seconds = await _call(await endpoint(handler), client, stream=True, timeout_s=20)
    assert not isinstance(result, ProviderError), result
    assert result.text == "Hello there" and result.finish_reason == "stop"  # type: ignore[attr-defined]
    assert seconds < 5, seconds  # a short grace after [DONE], not the 20 s timeout


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_stream_cut_after_usage_chunks_is_a_retryable_cut_not_a_sample(endpoint, client: str) -> None:
    # Continuous usage stats (vLLM) put a usage count on every chunk: the count is no sign
    # that the model finished, and the partial text must not be scored.
    usage = {"prompt_tokens": 5, "completion_tokens": 1}

    async def handler(request: web.Request) -> web.StreamResponse:
        return await _sse(request, [_chunk("alpha", usage=usage), _chunk(" bravo", usage=usage)])

    result, _ = await _call(await endpoint(handler), client, stream=True)
    assert isinstance(result, ProviderError), result
    assert (result.error_type, result.retryable) == ("connection", True)


@pytest.mark.parametrize("client", CLIENTS)
async def test_done_without_a_finish_reason_is_a_cut_on_both_clients(endpoint, client: str) -> None:
    # The SDK cannot tell whether [DONE] came, so neither client takes it as the end: the
    # same server gets the same result whichever client a config picks.
    async def handler(request: web.Request) -> web.StreamResponse:
        return await _sse(request, [_chunk("alpha"), _chunk(" bravo"), "[DONE]"])

    result, _ = await _call(await endpoint(handler), client, stream=True)
    assert isinstance(result, ProviderError), result
    assert (result.error_type, result.retryable) == ("connection", True)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("pad", [0, 480, 495, 2000])
async def test_a_key_echoed_into_an_error_message_is_hidden_wherever_it_falls(
    endpoint, client: str, pad: int
) -> None:
    # Where the message is cut (500 characters) once took the key's first half with it.
    async def handler(request: web.Request) -> web.StreamResponse:
        echoed = request.headers.get("Authorization", "").removeprefix("Bearer ")
        message = "x" * pad + " " + echoed + " was refused"
        return web.json_response({"error": {"message": message, "code": "bad"}}, status=400)

    result, _ = await _call(await endpoint(handler), client)
    assert isinstance(result, ProviderError) and result.error_type == "bad_request", result
    _no_key_in(str(result))


def test_a_secret_cut_off_at_the_end_of_a_capped_text_is_hidden() -> None:
    from rai_harness.providers.errors_map import scrub_secrets

    assert scrub_secrets("error: " + KEY[:20], [KEY]) == "error: ***"
    assert scrub_secrets("error: sk-pr", [KEY]) == "error: sk-pr"  # too short to tell
    assert scrub_secrets("nothing here", [KEY]) == "nothing here"


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_key_echoed_into_the_answer_is_not_stored(endpoint, client: str, stream: bool) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        echoed = request.headers.get("Authorization", "").removeprefix("Bearer ")
        text = f"Your key is {echoed}."
        if stream:
            return await _sse(request, [_chunk(text[:20]), _chunk(text[20:], "stop"), "[DONE]"])
        return web.json_response(_completion(text) | {"model": echoed})

    result, _ = await _call(await endpoint(handler), client, stream=stream)
    assert not isinstance(result, ProviderError), result
    assert result.text == "Your key is ***."  # type: ignore[attr-defined]
    _no_key_in(repr(result))


def test_a_placeholder_key_is_not_scrubbed_from_answers() -> None:
    from rai_harness.providers.errors_map import without_secrets
    from rai_harness.types import Generation, Usage

    answer = Generation(text="Run ollama pull llama3, then ollama serve.", usage=Usage(1, 1), latency_s=0.1)
    assert without_secrets(answer, ["ollama", "EMPTY"]) is answer  # local servers' placeholder keys
    assert without_secrets(answer, [KEY]) is answer


async def test_a_key_in_a_usage_count_is_not_logged(endpoint, caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        echoed = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return web.json_response(_completion("ok", {"prompt_tokens": echoed, "completion_tokens": 1}))

    with caplog.at_level(logging.WARNING):
        result, _ = await _call(await endpoint(handler), "httpx")
    assert result.usage.estimated  # type: ignore[attr-defined]
    assert "server usage rejected" in caplog.text and "<str of length" in caplog.text
    _no_key_in(caplog.text)


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_429_with_a_deeply_nested_body_is_still_a_rate_limit(endpoint, client: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=429, body=b"[" * 200_000, headers={"Retry-After": "1"})

    result, _ = await _call(await endpoint(handler), client)
    assert isinstance(result, ProviderError), result
    assert (result.error_type, result.retryable, result.status_code) == ("rate_limit", True, 429)
    assert result.retry_after_s == 1.0


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_deeply_nested_reply_is_a_malformed_response(endpoint, client: str, stream: bool) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if stream:
            return await _sse(request, ["[" * 200_000])
        return web.Response(body=b"[" * 200_000, content_type="application/json")

    result, _ = await _call(await endpoint(handler), client, stream=stream)
    assert isinstance(result, ProviderError) and result.error_type == "bad_response", result
    assert result.retryable and "RecursionError" not in str(result)
    assert "malformed" in str(result) or "JSON object" in str(result) or "nested" in str(result)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_5000_digit_usage_count_keeps_the_answer(endpoint, stream: bool) -> None:
    huge = "9" * 5000

    async def handler(request: web.Request) -> web.StreamResponse:
        usage = '{"prompt_tokens": ' + huge + ', "completion_tokens": 1}'
        if stream:
            events = [
                _chunk("fine", "stop"),
                _chunk(usage={"x": 0})[:-1] + ', "usage": ' + usage + "}",
                "[DONE]",
            ]
            return await _sse(request, events)
        text = json.dumps(_completion("fine"))
        return web.Response(
            body=text.replace('"prompt_tokens": 5', '"prompt_tokens": ' + huge),
            content_type="application/json",
        )

    result, _ = await _call(await endpoint(handler), "httpx", stream=stream)
    assert not isinstance(result, ProviderError), result
    assert result.text == "fine" and result.usage.estimated  # type: ignore[attr-defined]


async def test_the_sdk_path_names_a_5000_digit_number(endpoint) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        text = json.dumps(_completion("fine")).replace('"prompt_tokens": 5', '"prompt_tokens": ' + "9" * 5000)
        return web.Response(body=text, content_type="application/json")

    result, _ = await _call(await endpoint(handler), "sdk")
    # The SDK parses the body itself; the error says what was wrong instead of Python's advice.
    assert isinstance(result, ProviderError) and result.error_type == "bad_response", result
    assert "4,300 digits" in str(result) and "set_int_max_str_digits" not in str(result)


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_redirect_is_not_followed_or_retried_and_names_the_fix(endpoint, client: str) -> None:
    calls: list[str] = []

    async def target(request: web.Request) -> web.StreamResponse:
        calls.append(request.path)
        return web.json_response(_completion("redirected"))

    target_url = await endpoint(target)

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=307, headers={"Location": target_url + "/chat/completions"})

    result, _ = await _call(await endpoint(handler), client)
    assert isinstance(result, ProviderError), result
    assert (result.error_type, result.retryable) == ("redirect", False)
    assert target_url in str(result) and "base_url" in str(result)
    assert calls == []  # the key never went to the other address
