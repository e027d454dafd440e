"""What the harness times: TTFT and latency from the request's send, the wait before it apart, no GC stalls."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import openai
import pytest

from rai_harness.providers.base import StreamTimer
from rai_harness.providers.httpio import ResponseLimits, limited_transport, marking_send
from rai_harness.providers.openai_compat import OpenAICompatProvider, OpenAIConfig, http_module
from rai_harness.providers.openai_http import LeanOpenAIProvider
from rai_harness.run.journal import Journal
from rai_harness.run.runner import RetryPolicy, frozen_heap, generate_calls
from rai_harness.types import ChatRequest, Generation, GenerationParams, Usage

#: Seconds the fake connection set-up takes before the request is written.
CONNECT_S = 0.05

_STREAM = (
    'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m","choices":[{"index":0,'
    '"delta":{"role":"assistant","content":"hi"},"finish_reason":null}]}\n\n'
    'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m","choices":[{"index":0,'
    '"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\n'
    "data: [DONE]\n\n"
)


class SlowConnect:
    """An inner transport that spends ``CONNECT_S`` "connecting", then reports the send as httpcore does."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def handle_async_request(self, request: Any) -> Any:
        http = http_module()
        await asyncio.sleep(CONNECT_S)  # the handshakes of a new connection
        trace = request.extensions.get("trace")
        if trace is not None:
            for event in ("http11.send_request_headers.started", "http11.send_request_headers.complete"):
                self.events.append(event)
                await trace(event, {})
        return http.Response(200, headers={"content-type": "text/event-stream"}, content=_STREAM.encode())

    async def aclose(self) -> None:
        pass


def _client(inner: SlowConnect) -> Any:
    http = http_module()
    return http.AsyncClient(transport=limited_transport(http, ResponseLimits(), inner=inner))


def _providers(inner: SlowConnect) -> dict[str, Any]:
    return {
        "httpx": LeanOpenAIProvider(
            base_url="http://127.0.0.1:9/v1", api_key=None, model="m", http_client=_client(inner)
        ),
        "sdk": OpenAICompatProvider(
            openai.AsyncOpenAI(
                api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0, http_client=_client(inner)
            ),
            model="m",
        ),
    }


@pytest.mark.parametrize("path", ["httpx", "sdk"])
async def test_ttft_and_latency_count_from_the_send_and_the_wait_is_connect_s(path: str) -> None:
    inner = SlowConnect()
    provider = _providers(inner)[path]
    request = ChatRequest.from_prompt("s", "hello", params=GenerationParams(max_tokens=4))
    await provider.load()
    started = time.perf_counter()
    gen = await provider.generate(request)
    total = time.perf_counter() - started
    await provider.aclose()
    assert gen.text == "hi" and inner.events  # the transport saw the send
    assert gen.connect_s is not None and gen.connect_s >= CONNECT_S
    assert gen.ttft_s is not None and 0 <= gen.ttft_s <= gen.latency_s
    # The three spans do not overlap: the connect wait is outside TTFT and latency.
    assert gen.connect_s + gen.latency_s <= total
    assert gen.latency_s < total - CONNECT_S


async def test_the_runner_records_connect_s_beside_ttft(fake_server, tmp_path) -> None:
    cfg = OpenAIConfig(
        kind="openai", model="m", base_url=fake_server.base_url, api_key_env=None, concurrency=4
    )
    provider = cfg.build()
    requests = [ChatRequest.from_prompt(f"s{i}", f"prompt {i}") for i in range(8)]
    journal = Journal(tmp_path / "j.sqlite")
    records = await generate_calls(
        provider,
        requests,
        provider_id="p",
        provider_identity=cfg.cache_identity(),
        concurrency=4,
        policy=RetryPolicy(timeout_s=20),
        journal=journal,
    )
    await provider.aclose()
    assert all(r.ok and r.connect_s is not None and r.connect_s >= 0 for r in records)
    stored = journal.get_many([r.key for r in records])
    journal.close()
    assert all(stored[r.key]["connect_s"] == r.connect_s for r in records)


def test_a_timer_without_a_marked_send_counts_from_its_start() -> None:
    timer = StreamTimer()
    timer.mark_first_token()
    assert timer.connect_s is None and timer.ttft_s is not None and timer.ttft_s >= 0
    with marking_send(timer.mark_sent):
        pass
    assert timer.connect_s is None  # marking is the transport's job, not the block's


def test_frozen_heap_nests_and_unfreezes_only_at_the_outermost_exit() -> None:
    base = gc.get_freeze_count()  # 0 unless a block is open elsewhere in the process
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        with frozen_heap():
            assert gc.get_freeze_count() > 0
        # The inner exit leaves the outer block's freeze (the count itself may shrink a little:
        # frozen objects freed by reference counting leave the permanent generation).
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == base


async def test_generate_calls_keeps_the_heap_frozen_while_calls_run() -> None:
    seen: list[int] = []

    class Probe:
        async def generate(self, request: ChatRequest) -> Generation:
            seen.append(gc.get_freeze_count())
            await asyncio.sleep(0)
            return Generation(text="ok", usage=Usage(1, 1), latency_s=0.0)

    requests = [ChatRequest.from_prompt(f"s{i}", f"p{i}") for i in range(5)]
    base = gc.get_freeze_count()
    records = await generate_calls(Probe(), requests, provider_id="p", provider_identity={}, concurrency=2)
    assert len(records) == 5 and len(seen) == 5 and all(count > 0 for count in seen)
    assert gc.get_freeze_count() == base


@pytest.mark.parametrize(
    ("completion_tokens", "latency_s", "ttft_s", "expected"),
    [
        (11, 1.2, 0.2, 10.0),  # streamed: 10 tokens after the first, over 1 s
        (27, 0.2001, 0.2, None),  # one burst: 0.1 ms after the first token is no decode speed
        (27, 0.5, 0.5, None),  # released whole (a guard): no speed, not tokens over latency
        (1, 0.5, 0.2, None),  # one token: nothing decoded after it
        (20, 2.0, None, 10.0),  # not streamed: tokens over end-to-end latency
        (0, 2.0, None, None),
    ],
)
def test_output_tokens_per_s_has_one_definition_per_kind_of_call(
    completion_tokens: int, latency_s: float, ttft_s: float | None, expected: float | None
) -> None:
    gen = Generation(
        text="x",
        usage=Usage(prompt_tokens=3, completion_tokens=completion_tokens),
        latency_s=latency_s,
        ttft_s=ttft_s,
    )
    assert gen.output_tokens_per_s == (pytest.approx(expected) if expected is not None else None)


def test_a_lag_warning_only_when_some_calls_were_timed_here() -> None:
    from rai_harness.run.execute import _timing_quality

    lag = {"p99_ms": 36.7, "samples": 10}
    assert "warning" in _timing_quality(lag, {"engine": "local"})
    # A replay run reads its latencies from the captured log: this loop's lag cannot touch them.
    quiet = _timing_quality(lag, {"engine": "local"}, timed_here=False)
    assert "warning" not in quiet and quiet["event_loop_lag_ms"] == lag
