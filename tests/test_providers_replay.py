"""Replay provider: file checks with line/field/fix, matching rules, repeats, prompt listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rai_harness.errors import ConfigError, ProviderError
from rai_harness.providers.replay import ReplayConfig, load_replay_prompts, read_captures
from rai_harness.types import ChatMessage, ChatRequest

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, rows, name: str = "cap.jsonl") -> Path:
    path = tmp_path / name
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build(path: Path, **kwargs):
    return ReplayConfig(path=str(path), **kwargs).build()


ROWS = [
    {
        "id": "a",
        "prompt": "What is 2+2?",
        "response": "4",
        "model": "prod-v1",
        "latency_s": 0.8,
        "ttft_s": 0.2,
        "prompt_tokens": 6,
        "completion_tokens": 1,
        "finish_reason": "stop",
    },
    {"id": "b", "prompt": "Name a color.", "response": "Blue."},
    {"id": "c", "prompt": "Name a color.", "response": "Red."},
    {
        "id": "d",
        "messages": [{"role": "system", "content": "Be formal."}, {"role": "user", "content": "Hi"}],
        "response": "Good day.",
    },
]


async def test_replays_recorded_values(tmp_path):
    provider = build(write(tmp_path, ROWS))
    gen = await provider.generate(ChatRequest.from_prompt("a", "What is 2+2?"))
    assert gen.text == "4" and gen.model == "prod-v1" and gen.finish_reason == "stop"
    assert (gen.latency_s, gen.ttft_s) == (0.8, 0.2)
    assert (gen.usage.prompt_tokens, gen.usage.completion_tokens, gen.usage.estimated) == (6, 1, False)


async def test_missing_values_default_or_are_estimated(tmp_path):
    provider = build(write(tmp_path, ROWS), model="captured")
    gen = await provider.generate(ChatRequest.from_prompt("x", "Name a color."))
    assert gen.text == "Blue." and gen.model == "captured"
    assert gen.latency_s == 0.0 and gen.ttft_s is None and gen.streamed is False
    assert gen.usage.estimated is True and gen.usage.estimator
    assert gen.usage.completion_tokens == 2  # "blue", "."


async def test_repeats_take_captures_in_order_and_never_reuse(tmp_path):
    provider = build(write(tmp_path, ROWS))
    texts = [
        (await provider.generate(ChatRequest.from_prompt("x", "Name a color.", repeat=i))).text
        for i in range(2)
    ]
    assert texts == ["Blue.", "Red."]
    with pytest.raises(ProviderError) as info:
        await provider.generate(ChatRequest.from_prompt("x", "Name a color.", repeat=2))
    err = info.value
    assert err.error_type == "replay_missing" and err.retryable is False
    assert "no captured response" in str(err) and "only 2" in str(err)


async def test_unknown_prompt_is_replay_missing(tmp_path):
    provider = build(write(tmp_path, ROWS))
    with pytest.raises(ProviderError) as info:
        await provider.generate(ChatRequest.from_prompt("x", "Something never asked"))
    assert info.value.error_type == "replay_missing" and "no captured response" in str(info.value)


async def test_matching_exact_conversation_then_last_user_message(tmp_path):
    provider = build(write(tmp_path, ROWS))
    exact = ChatRequest.from_prompt("x", "Hi", system="Be formal.")
    assert (await provider.generate(exact)).text == "Good day."
    # Another system prompt: falls back to the last user message.
    other_system = ChatRequest.from_prompt("x", "Hi", system="Be casual.")
    assert (await provider.generate(other_system)).text == "Good day."
    # A run that adds a system prompt still finds a `prompt` line.
    with_system = ChatRequest.from_prompt("x", "What is 2+2?", system="Answer briefly.")
    assert (await provider.generate(with_system)).text == "4"


async def test_sample_id_picks_its_own_line_for_duplicate_prompts(tmp_path):
    # The file as its own prompt source: rows b and c ask the same thing; each replays its line.
    provider = build(write(tmp_path, ROWS))
    assert (await provider.generate(ChatRequest.from_prompt("c", "Name a color."))).text == "Red."
    assert (await provider.generate(ChatRequest.from_prompt("b", "Name a color."))).text == "Blue."


def test_load_replay_prompts_lists_each_conversation_once(tmp_path):
    path = write(tmp_path, [*ROWS, {"prompt": "No id here", "response": "ok"}])
    prompts = load_replay_prompts(path)
    assert [(p.sample_id, p.captures) for p in prompts] == [("a", 1), ("b", 2), ("d", 1), ("line-5", 1)]
    assert prompts[2].messages == (ChatMessage("system", "Be formal."), ChatMessage("user", "Hi"))
    assert prompts[0].messages == (ChatMessage("user", "What is 2+2?"),)


@pytest.mark.parametrize(
    ("line", "key_path", "words"),
    [
        ("{not json", "line 2", "not valid JSON"),
        ('["a list"]', "line 2", "JSON object"),
        ('{"response": "r"}', "line 2.prompt", '"prompt"'),
        ('{"prompt": "p"}', "line 2.response", '"response"'),
        ('{"prompt": "p", "respone": "r"}', "line 2.response", "typo"),
        ('{"prompt": "p", "response": 3}', "line 2.response", "must be a string"),
        ('{"prompt": "", "response": "r"}', "line 2.prompt", "non-empty"),
        ('{"prompt": "p", "messages": [], "response": "r"}', "line 2.messages", "not both"),
        ('{"messages": [], "response": "r"}', "line 2.messages", "non-empty list"),
        (
            '{"messages": [{"role": "bot", "content": "x"}], "response": "r"}',
            "line 2.messages[0].role",
            "system, user",
        ),
        (
            '{"messages": [{"role": "user", "content": 1}], "response": "r"}',
            "line 2.messages[0].content",
            "string",
        ),
        ('{"prompt": "p", "response": "r", "latency_s": "fast"}', "line 2.latency_s", "seconds"),
        ('{"prompt": "p", "response": "r", "latency_s": -1}', "line 2.latency_s", ">= 0"),
        (
            '{"prompt": "p", "response": "r", "latency_s": 0.1, "ttft_s": 0.5}',
            "line 2.ttft_s",
            "must not exceed",
        ),
        ('{"prompt": "p", "response": "r", "prompt_tokens": 1.5}', "line 2.prompt_tokens", "whole number"),
        (
            '{"prompt": "p", "response": "r", "completion_tokens": true}',
            "line 2.completion_tokens",
            "whole number",
        ),
        ('{"prompt": "p", "response": "r", "model": 5}', "line 2.model", "string"),
        ('{"id": "a", "prompt": "p", "response": "r"}', "line 2.id", "duplicate id"),
    ],
)
def test_bad_lines_name_file_line_field_and_fix(tmp_path, line, key_path, words):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "a", "prompt": "ok", "response": "ok"}) + "\n" + line + "\n")
    cfg = ReplayConfig(path=str(path))
    with pytest.raises(ConfigError) as info:
        cfg.validate_files()
    err = info.value
    assert err.file == str(path) and err.key_path == key_path
    assert words in str(err) and "bad.jsonl" in str(err)
    with pytest.raises(ConfigError):
        cfg.build()


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_captures(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ConfigError, match="no captures"):
        read_captures(empty)


def test_shipped_example_file_is_valid():
    example = ROOT / "datasets" / "smoke" / "replay_example.jsonl"
    captures = read_captures(example)
    assert captures and all(c.response for c in captures)
    assert ReplayConfig(path=str(example)).path_fields == ("path",)


async def test_describe_and_aclose(tmp_path):
    provider = build(write(tmp_path, ROWS))
    assert provider.describe() == {"kind": "replay", "captures": 4, "conversations": 3}
    await provider.aclose()
