"""Reading prompt files into requests, with errors that name the file, line and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rai_harness.errors import ConfigError
from rai_harness.types import ChatMessage, ChatRequest, GenerationParams, messages_from_dicts
from rai_harness.validation import iter_jsonl

__all__ = ["PromptRow", "expand_requests", "read_prompt_file"]


@dataclass(frozen=True, slots=True)
class PromptRow:
    """One prompt of a dataset: an id, the messages, and free-form metadata."""

    id: str
    messages: tuple[ChatMessage, ...]
    metadata: dict[str, Any]


def read_prompt_file(path: str | Path, *, system: str | None = None) -> list[PromptRow]:
    """Read a JSONL prompt file.

    Each line is an object with ``prompt`` (string) or ``messages`` (list of
    ``{role, content}``), and optionally ``id`` and ``metadata``. Other keys (such as a
    replay file's ``response``) are ignored here.

    Raises:
        ConfigError: naming the file, line and field, for the first bad line.
    """
    p = Path(path)
    rows: list[PromptRow] = []
    seen: set[str] = set()
    for line in iter_jsonl(p, what="prompt file", missing_hint="check `prompts.path`"):
        rows.append(_row(line.obj, line.number, p, system, seen))
    if not rows:
        raise ConfigError("the prompt file has no rows", file=str(p))
    return rows


def _row(obj: dict[str, Any], number: int, p: Path, system: str | None, seen: set[str]) -> PromptRow:
    where = f"line {number}"
    row_id = str(obj.get("id", f"line-{number}"))
    if row_id in seen:
        raise ConfigError(f"duplicate id {row_id!r}; ids must be unique", file=str(p), key_path=f"{where}.id")
    seen.add(row_id)
    if "messages" in obj:
        if not isinstance(obj["messages"], list) or not obj["messages"]:
            raise ConfigError(
                "`messages` must be a non-empty list of {role, content}",
                file=str(p),
                key_path=f"{where}.messages",
            )
        try:
            messages = messages_from_dicts(obj["messages"])
        except ValueError as exc:
            raise ConfigError(str(exc), file=str(p), key_path=f"{where}.messages") from exc
    elif isinstance(obj.get("prompt"), str):
        messages = ((ChatMessage("system", system),) if system else ()) + (
            ChatMessage("user", obj["prompt"]),
        )
    else:
        raise ConfigError(
            "each line needs `prompt` (a string) or `messages` (a list)", file=str(p), key_path=where
        )
    metadata = obj.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ConfigError("`metadata` must be an object", file=str(p), key_path=f"{where}.metadata")
    return PromptRow(row_id, messages, metadata)


def rows_from_items(items: list[str], *, system: str | None = None) -> list[PromptRow]:
    """Prompt rows for an inline list of prompts (ids ``item-0``, ``item-1``...)."""
    head = (ChatMessage("system", system),) if system else ()
    return [PromptRow(f"item-{i}", (*head, ChatMessage("user", text)), {}) for i, text in enumerate(items)]


def expand_requests(rows: list[PromptRow], params: GenerationParams, repeats: int) -> list[ChatRequest]:
    """One request per row and repeat index (k independent completions per prompt)."""
    return [
        ChatRequest(sample_id=row.id, messages=row.messages, params=params, repeat=k, metadata=row.metadata)
        for row in rows
        for k in range(repeats)
    ]
