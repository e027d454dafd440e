"""Small helpers shared by suites: prompts, grouping outputs, building breakdowns."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

from rai_harness.classifiers.base import ClassifierSpec
from rai_harness.errors import ConfigError
from rai_harness.suites.base import ScoredOutput
from rai_harness.types import ChatMessage

__all__ = ["by_item", "chat", "group_by", "ok_outputs", "parse_spec", "per_group"]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def chat(user: str, system: str | None = None) -> tuple[ChatMessage, ...]:
    """Messages for a single-turn prompt, with an optional system prompt."""
    head = (ChatMessage("system", system),) if system else ()
    return (*head, ChatMessage("user", user))


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


def parse_spec(value: Any, *, key: str) -> ClassifierSpec:
    """A classifier spec from a suite parameter (a mapping or a backend name).

    Raises:
        ConfigError: Not a mapping or a string.
    """
    if isinstance(value, ClassifierSpec):
        return value
    if isinstance(value, str):
        return ClassifierSpec(backend=value)
    if isinstance(value, dict):
        return ClassifierSpec.model_validate(value)
    raise ConfigError(
        "must be a classifier backend name or a mapping {backend, model, options}", key_path=key
    )
