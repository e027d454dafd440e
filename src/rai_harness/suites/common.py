"""Small helpers shared by suites: prompts, grouping outputs, building breakdowns."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from rai_harness.suites.base import ScoredOutput
from rai_harness.types import ChatMessage

__all__ = [
    "Coverage",
    "by_item",
    "chat",
    "coverage",
    "fill_template",
    "group_by",
    "ok_outputs",
    "per_group",
]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def chat(user: str, system: str | None = None) -> tuple[ChatMessage, ...]:
    """Messages for a single-turn prompt, with an optional system prompt."""
    head = (ChatMessage("system", system),) if system else ()
    return (*head, ChatMessage("user", user))


def fill_template(template: str, values: Mapping[str, str]) -> str:
    """Replace ``{name}`` placeholders in one pass (other braces, and braces inside the values, are left alone)."""
    pattern = re.compile(r"\{(" + "|".join(re.escape(k) for k in values) + r")\}")
    return pattern.sub(lambda m: values[m.group(1)], template)


def ok_outputs(scored: Iterable[ScoredOutput]) -> list[ScoredOutput]:
    """The successful, scored outputs (failed calls are counted separately, never scored)."""
    return [s for s in scored if s.ok and s.scores is not None]


def group_by(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    """Group items by key, keeping first-seen key order."""
    out: dict[K, list[T]] = defaultdict(list)
    for item in items:
        out[key(item)].append(item)
    return dict(out)


def by_item(scored: Iterable[ScoredOutput]) -> dict[str, list[ScoredOutput]]:
    """Successful outputs grouped by sample id (the k repeats of one prompt together)."""
    return group_by(ok_outputs(scored), lambda s: s.sample.id)


def per_group(values: Sequence[tuple[str, T]]) -> dict[str, list[T]]:
    """``[(group, value), ...]`` -> group -> values, groups sorted by name."""
    grouped: dict[str, list[T]] = defaultdict(list)
    for group, value in values:
        grouped[group].append(value)
    return {g: grouped[g] for g in sorted(grouped)}


@dataclass(frozen=True, slots=True)
class Coverage:
    """How many prompts and outputs a suite's numbers rest on, for ``SuiteAggregate.counts``/``notes``."""

    counts: dict[str, int]
    notes: list[str]


def coverage(scored: Sequence[ScoredOutput], items: dict[str, list[ScoredOutput]], k: int) -> Coverage:
    """Prompt and output counts, and a note when failed calls left prompts with fewer than ``k`` outputs.

    Args:
        scored: One provider's outputs, failed ones included.
        items: :func:`by_item` of ``scored``.
        k: Outputs asked for per prompt.
    """
    short = sum(1 for outs in items.values() if len(outs) < k)
    return Coverage(
        counts={
            "prompts": len({s.sample.id for s in scored}),
            "prompts_scored": len(items),
            "outputs_scored": len(ok_outputs(scored)),
            "prompts_with_fewer_than_k": short,
            "k": k,
        },
        notes=[f"{short} prompt(s) have fewer than k={k} scored outputs (failed calls)."] if short else [],
    )
