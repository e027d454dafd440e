"""Plain value types shared by providers, the runner and the record.

Values are frozen dataclasses (cheap, hashable where it matters, picklable so a
distributed engine can ship them between processes); pydantic is used only at the
file and CLI boundary (see :mod:`rai_harness.config` and :mod:`rai_harness.record`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "Generation",
    "GenerationParams",
    "Usage",
    "cache_root",
    "stable_hash",
]

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat turn."""

    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        """Return the OpenAI-style ``{"role", "content"}`` mapping."""
        return {"role": self.role, "content": self.content}


#: Shortest span after the first token from which a decode speed is read, seconds: below it
#: the answer came in one burst (see :attr:`Generation.output_tokens_per_s`).
MIN_DECODE_SPAN_S = 0.01


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Sampling parameters sent with a request; ``None`` means the provider's default.

    ``extra`` carries vendor-specific parameters verbatim (``{"top_k": 40}``).
    """

    max_tokens: int | None = 256
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters that are set, as a JSON-able dict (used in cache keys)."""
        out: dict[str, Any] = {
            k: v
            for k, v in (
                ("max_tokens", self.max_tokens),
                ("temperature", self.temperature),
                ("top_p", self.top_p),
                ("seed", self.seed),
            )
            if v is not None
        }
        if self.stop:
            out["stop"] = list(self.stop)
        if self.extra:
            out["extra"] = dict(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What the runner asks a provider for: one completion of ``messages``.

    Attributes:
        sample_id: Stable id of the sample this request belongs to (a dataset row).
        messages: The conversation to complete.
        params: Sampling parameters.
        repeat: Index of this completion among the k independent completions of the
            same prompt (0-based). Repeats are separate calls with separate cache keys.
        metadata: Free-form data the caller wants carried into the record (suite, group...).
    """

    sample_id: str
    messages: tuple[ChatMessage, ...]
    params: GenerationParams = field(default_factory=GenerationParams)
    repeat: int = 0
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_prompt(
        cls,
        sample_id: str,
        prompt: str,
        *,
        system: str | None = None,
        params: GenerationParams | None = None,
        repeat: int = 0,
        metadata: Mapping[str, Any] | None = None,
    ) -> ChatRequest:
        """Build a request from a single user prompt (and an optional system prompt)."""
        messages: list[ChatMessage] = []
        if system:
            messages.append(ChatMessage("system", system))
        messages.append(ChatMessage("user", prompt))
        return cls(
            sample_id=sample_id,
            messages=tuple(messages),
            params=params or GenerationParams(),
            repeat=repeat,
            metadata=dict(metadata or {}),
        )

    def messages_as_dicts(self) -> list[dict[str, str]]:
        """Return the messages in OpenAI wire format."""
        return [m.to_dict() for m in self.messages]

    @property
    def prompt_text(self) -> str:
        """The last user message (what most reports show as "the prompt")."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call.

    ``estimated`` is true when the provider reported no usage and the counts come
    from a local tokenizer (``estimator`` names it), which can differ from the
    provider's own count by a few percent.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False
    estimator: str | None = None

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Generation:
    """One successful completion, as measured by the adapter.

    Attributes:
        text: The completion text (untrusted model output).
        usage: Token counts.
        latency_s: Wall time from sending the request to the last byte, seconds.
        ttft_s: Time from sending the request to the first content token, seconds;
            ``None`` when the call was not streamed (then only end-to-end latency is known).
        connect_s: Time from the call's start to its request being sent, seconds: taking
            a pooled connection or opening one (TCP/TLS handshakes) and the client's own
            queue; ``None`` where the adapter cannot see the send (then ``latency_s`` and
            ``ttft_s`` count from the call's start).
        finish_reason: ``stop``, ``length``, ``content_filter``... as the provider said.
        model: The model name the provider reported (may differ from the one asked for).
        streamed: Whether the call was streamed.
        guard: When a guard wrapped the provider, its verdict summary (actions, per-rail
            scores and findings; never the original text).
    """

    text: str
    usage: Usage
    latency_s: float
    ttft_s: float | None = None
    finish_reason: str | None = None
    model: str | None = None
    streamed: bool = False
    guard: Mapping[str, Any] | None = None
    connect_s: float | None = None

    @property
    def output_tokens_per_s(self) -> float | None:
        """Output speed, one definition per kind of call.

        * Streamed (a TTFT was taken): decode speed, the tokens after the first over the time
          after the first token. ``None`` when that span is under ``MIN_DECODE_SPAN_S``: the
          answer arrived in one burst (a buffering proxy, a guard that releases the answer
          whole, a cache), so no decode speed can be read from it (27 tokens 0.1 ms apart
          read as 270,000 tokens/s), and falling back to end-to-end latency would put a
          second definition in the same column.
        * Not streamed: tokens over end-to-end latency (the only clock there is).

        ``None`` also when there are no tokens or no time.
        """
        tokens = self.usage.completion_tokens
        if tokens <= 0:
            return None
        if self.ttft_s is not None:
            span = self.latency_s - self.ttft_s
            if tokens < 2 or span < MIN_DECODE_SPAN_S:
                return None
            return (tokens - 1) / span
        return tokens / self.latency_s if self.latency_s > 0 else None


def stable_hash(payload: Any) -> str:
    """SHA-256 of a JSON-able payload with sorted keys (stable across runs and machines)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def cache_root() -> Path:
    """The project's one cache folder: ``$RAI_HARNESS_CACHE``, else ``$XDG_CACHE_HOME/rai-harness``.

    (``~/.cache/rai-harness`` when neither is set.) Converted models, embeddings and
    exported ONNX graphs each live in a sub-folder of it.
    """
    root = os.environ.get("RAI_HARNESS_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "rai-harness"


def messages_from_dicts(items: Sequence[Mapping[str, Any]]) -> tuple[ChatMessage, ...]:
    """Parse OpenAI-style message dicts, raising ``ValueError`` on a bad role or content."""
    out: list[ChatMessage] = []
    for i, item in enumerate(items):
        role = item.get("role")
        content = item.get("content")
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{i}].role must be system, user or assistant, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string")
        out.append(ChatMessage(role, content))
    return tuple(out)
