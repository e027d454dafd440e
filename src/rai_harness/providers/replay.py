"""Replay captured responses (``kind: replay``): score outputs produced elsewhere.

The capture file is JSONL, one call per line::

    {"id": "fact-1", "prompt": "What is the capital of Australia?", "response": "Canberra.",
     "model": "prod-v3", "latency_s": 0.84, "ttft_s": 0.21, "prompt_tokens": 18, "completion_tokens": 3}

Fields: ``prompt`` (string) **or** ``messages`` (list of ``{role, content}``), and
``response`` (string) are required; ``id``, ``model``, ``latency_s``, ``ttft_s``,
``prompt_tokens``, ``completion_tokens``, ``finish_reason`` and ``metadata`` are optional.
Other keys are ignored. The whole file is checked when the run is planned, and the first
bad line is reported with its number, the field and the fix.

Matching a request to captures:

0. repeat 0 of a request whose ``sample_id`` is a capture's ``id`` gets that capture,
   if its conversation matches too (so a file with the same prompt on several lines,
   used as its own prompt source, replays each line once); otherwise
1. by the exact conversation (a ``prompt`` line is the conversation of one user
   message), else
2. by the text of the last user message (so a run that adds a system prompt to every
   prompt still finds captures made without it).

Several lines with the same conversation are the repeats of one prompt, in file order:
``repeat`` *i* of a request gets the *i*-th capture; a repeat with no capture fails with a
non-retryable ``replay_missing`` error (captures are never reused, which would fake
agreement between repeats). :func:`load_replay_prompts` lists each conversation once, so
the same file can serve as the run's prompt source with ``repeats`` up to the number of
captures per prompt.

Recorded ``latency_s``/``ttft_s`` are reported as measured (0 and none when absent);
nothing sleeps. Missing token counts are estimated locally and marked as estimates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from rai_harness.errors import ConfigError, ProviderError, closest
from rai_harness.providers.base import BaseProvider, ProviderConfig, SeedSupport
from rai_harness.providers.tokens import estimate_messages_tokens, estimate_tokens, estimator_name
from rai_harness.types import ChatMessage, ChatRequest, Generation, Usage
from rai_harness.validation import iter_jsonl

__all__ = [
    "ReplayCapture",
    "ReplayConfig",
    "ReplayPrompt",
    "ReplayProvider",
    "load_replay_prompts",
    "read_captures",
]

_KNOWN_FIELDS = (
    "id",
    "prompt",
    "messages",
    "response",
    "model",
    "latency_s",
    "ttft_s",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
    "metadata",
)
_ROLES = ("system", "user", "assistant")

ConversationKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class ReplayCapture:
    """One captured call (one line of the file)."""

    line: int
    id: str
    messages: tuple[ChatMessage, ...]
    response: str
    model: str | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None

    @property
    def key(self) -> ConversationKey:
        """The conversation as a hashable key."""
        return tuple((m.role, m.content) for m in self.messages)

    @property
    def last_user_text(self) -> str | None:
        """Content of the last user message, if any."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return None


@dataclass(frozen=True, slots=True)
class ReplayPrompt:
    """A conversation of the capture file, listed once, usable as a prompt-source row.

    Attributes:
        sample_id: The first capture's ``id``, else ``line-<n>``.
        messages: The conversation.
        captures: How many captured responses it has (the most ``repeats`` can use).
    """

    sample_id: str
    messages: tuple[ChatMessage, ...]
    captures: int


class ReplayConfig(ProviderConfig):
    """Captured responses replayed from a JSONL file (``kind: replay``)."""

    # Recorded outputs: the same every time.
    seed_support: ClassVar[SeedSupport] = "replay"
    description: ClassVar[str] = "Replay captured responses from a JSONL file (score production logs offline)"
    path_fields: ClassVar[tuple[str, ...]] = ("path",)

    kind: Literal["replay"] = "replay"
    path: str = Field(..., min_length=1, description="JSONL capture file (relative to the config file).")
    model: str = Field("replay", min_length=1, description="Model name reported when a line has none.")

    def cache_identity(self) -> dict[str, Any]:
        """The file's content decides the outputs; journaling replays is pointless but harmless."""
        return {"kind": self.kind, "model": self.model, "path": str(Path(self.path).resolve())}

    def validate_files(self) -> None:
        """Check the whole capture file now (the planner calls this before any call).

        Raises:
            ConfigError: naming the file, the line and the field, with the fix.
        """
        read_captures(self.path)

    def build(self) -> ReplayProvider:
        """Read and check the file, and index its captures."""
        return ReplayProvider(read_captures(self.path), model=self.model)


def _fail(path: str, line: int, field: str | None, message: str) -> ConfigError:
    key_path = f"line {line}.{field}" if field else f"line {line}"
    return ConfigError(message, file=path, key_path=key_path)


def _number(obj: Mapping[str, Any], name: str, path: str, line: int) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise _fail(path, line, name, f"must be a number of seconds >= 0 (e.g. 0.42), got {value!r}")
    return float(value)


def _count(obj: Mapping[str, Any], name: str, path: str, line: int) -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(
            path, line, name, f"must be a whole number >= 0, got {value!r}; or leave it out to estimate"
        )
    return value


def _messages(obj: Mapping[str, Any], path: str, line: int) -> tuple[ChatMessage, ...]:
    has_prompt = "prompt" in obj
    has_messages = "messages" in obj
    if has_prompt and has_messages:
        raise _fail(path, line, "messages", "give either `prompt` or `messages`, not both")
    if has_prompt:
        prompt = obj["prompt"]
        if not isinstance(prompt, str) or not prompt:
            raise _fail(path, line, "prompt", f"must be a non-empty string, got {prompt!r}")
        return (ChatMessage("user", prompt),)
    if not has_messages:
        raise _fail(
            path,
            line,
            "prompt",
            'is missing: add "prompt": "<the user prompt>" or "messages": [{"role": "user", "content": "..."}]',
        )
    raw = obj["messages"]
    if not isinstance(raw, list) or not raw:
        raise _fail(path, line, "messages", "must be a non-empty list of {role, content} objects")
    out: list[ChatMessage] = []
    for i, item in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(item, Mapping):
            raise _fail(path, line, where, 'must be an object like {"role": "user", "content": "..."}')
        role = item.get("role")
        if role not in _ROLES:
            raise _fail(path, line, f"{where}.role", f"must be one of system, user, assistant; got {role!r}")
        content = item.get("content")
        if not isinstance(content, str):
            raise _fail(path, line, f"{where}.content", f"must be a string, got {type(content).__name__}")
        out.append(ChatMessage(role, content))
    return tuple(out)


def _capture(obj: Mapping[str, Any], path: str, line: int) -> ReplayCapture:
    messages = _messages(obj, path, line)
    if "response" not in obj:
        near = closest("response", [str(k) for k in obj], cutoff=0.7)
        hint = f" (found {near!r}: a typo?)" if near is not None else ""
        raise _fail(path, line, "response", f'is missing{hint}: add "response": "<the captured completion>"')
    response = obj["response"]
    if not isinstance(response, str):
        raise _fail(
            path, line, "response", f"must be a string (the completion text), got {type(response).__name__}"
        )
    model = obj.get("model")
    if model is not None and not isinstance(model, str):
        raise _fail(path, line, "model", f"must be a string, got {model!r}")
    finish = obj.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise _fail(path, line, "finish_reason", f"must be a string such as 'stop', got {finish!r}")
    latency = _number(obj, "latency_s", path, line)
    ttft = _number(obj, "ttft_s", path, line)
    if latency is not None and ttft is not None and ttft > latency:
        raise _fail(path, line, "ttft_s", f"({ttft}) must not exceed latency_s ({latency}): check the units")
    raw_id = obj.get("id", f"line-{line}")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id) == "":
        raise _fail(path, line, "id", f"must be a non-empty string or integer, got {raw_id!r}")
    return ReplayCapture(
        line=line,
        id=str(raw_id),
        messages=messages,
        response=response,
        model=model,
        latency_s=latency,
        ttft_s=ttft,
        prompt_tokens=_count(obj, "prompt_tokens", path, line),
        completion_tokens=_count(obj, "completion_tokens", path, line),
        finish_reason=finish,
    )


def read_captures(path: str | Path) -> list[ReplayCapture]:
    """Read and check a capture file.

    Args:
        path: The JSONL file.

    Returns:
        The captures in file order (blank lines skipped).

    Raises:
        ConfigError: for a missing file, an empty file, or the first bad line (with its
            number, the field and the fix).
    """
    name = str(path)
    captures: list[ReplayCapture] = []
    ids: dict[str, int] = {}
    lines = iter_jsonl(
        path,
        what="replay file",
        missing_hint="check the provider's `path` (relative paths are resolved against the config file's folder)",
    )
    for number, obj in lines:
        capture = _capture(obj, name, number)
        if capture.id in ids and "id" in obj:
            raise _fail(
                name,
                number,
                "id",
                f"duplicate id {capture.id!r} (first on line {ids[capture.id]}); ids must be unique",
            )
        ids.setdefault(capture.id, number)
        captures.append(capture)
    if not captures:
        raise ConfigError("replay file has no captures; add one JSON object per line", file=name)
    return captures


def load_replay_prompts(path: str | Path) -> list[ReplayPrompt]:
    """The distinct conversations of a capture file, in order of first appearance.

    Use it to make the capture file the run's prompt source: each conversation once,
    with ``captures`` telling how many repeats it can serve.

    Raises:
        ConfigError: as :func:`read_captures`.
    """
    order: list[ConversationKey] = []
    first: dict[ConversationKey, ReplayCapture] = {}
    counts: dict[ConversationKey, int] = {}
    for capture in read_captures(path):
        key = capture.key
        if key not in first:
            first[key] = capture
            order.append(key)
        counts[key] = counts.get(key, 0) + 1
    return [ReplayPrompt(first[k].id, first[k].messages, counts[k]) for k in order]


class ReplayProvider(BaseProvider):
    """Serves captured responses for requests (no network, no sleeping).

    Args:
        captures: The checked captures, in file order.
        model: Model name reported for captures that have none.
    """

    def __init__(self, captures: Sequence[ReplayCapture], *, model: str = "replay") -> None:
        self._model = model
        self._by_conversation: dict[ConversationKey, list[ReplayCapture]] = {}
        self._by_last_user: dict[str, list[ReplayCapture]] = {}
        self._by_id: dict[str, ReplayCapture] = {}
        for capture in captures:
            self._by_id.setdefault(capture.id, capture)
            self._by_conversation.setdefault(capture.key, []).append(capture)
            text = capture.last_user_text
            if text is not None:
                self._by_last_user.setdefault(text, []).append(capture)
        self._count = len(captures)

    def describe(self) -> dict[str, Any]:
        """How many captures and distinct conversations were loaded."""
        return {"kind": "replay", "captures": self._count, "conversations": len(self._by_conversation)}

    async def aclose(self) -> None:
        """Nothing to release."""

    def find(self, request: ChatRequest) -> ReplayCapture:
        """The capture for ``request`` (its conversation, then its ``repeat`` index).

        Raises:
            ProviderError: ``replay_missing`` (not retryable) when there is none.
        """
        key = tuple((m.role, m.content) for m in request.messages)
        named = self._by_id.get(request.sample_id)
        if (
            request.repeat == 0
            and named is not None
            and (named.key == key or named.last_user_text == request.prompt_text)
        ):
            return named
        candidates = self._by_conversation.get(key)
        how = "conversation"
        if candidates is None:
            candidates = self._by_last_user.get(request.prompt_text, [])
            how = "last user message"
        if request.repeat < len(candidates):
            return candidates[request.repeat]
        preview = request.prompt_text[:80] + ("..." if len(request.prompt_text) > 80 else "")
        if candidates:
            detail = (
                f"only {len(candidates)} captured response(s) match by {how}, but repeat index "
                f"{request.repeat} was asked; lower `repeats` or capture more responses"
            )
        else:
            detail = "no line of the replay file has this prompt"
        raise ProviderError(
            f"no captured response for sample {request.sample_id!r} ({preview!r}): {detail}",
            retryable=False,
            error_type="replay_missing",
        )

    async def generate(self, request: ChatRequest) -> Generation:
        """Return the captured response with its recorded timings and token counts."""
        capture = self.find(request)
        text = capture.response
        prompt_tokens = capture.prompt_tokens
        completion_tokens = capture.completion_tokens
        if prompt_tokens is not None and completion_tokens is not None:
            usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        else:
            # Estimate only what is missing; any estimate marks the whole usage estimated.
            usage = Usage(
                prompt_tokens=prompt_tokens
                if prompt_tokens is not None
                else estimate_messages_tokens([m.content for m in capture.messages]),
                completion_tokens=completion_tokens
                if completion_tokens is not None
                else estimate_tokens(text),
                estimated=True,
                estimator=estimator_name(),
            )
        return Generation(
            text=text,
            usage=usage,
            latency_s=capture.latency_s if capture.latency_s is not None else 0.0,
            ttft_s=capture.ttft_s,
            finish_reason=capture.finish_reason,
            model=capture.model or self._model,
            streamed=capture.ttft_s is not None,
        )
