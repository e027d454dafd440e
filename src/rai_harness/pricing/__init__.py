"""Cost of calls: a versioned price table, per-token pricing and hourly (self-hosted) pricing.

Two pricing models, because the two kinds of deployment are billed differently:

* **Per token** (hosted APIs): ``cost = prompt_tokens * input_per_1m / 1e6 +
  completion_tokens * output_per_1m / 1e6``, per call.
* **Per hour** (self-hosted vLLM, Ollama, a GPU box): the machine costs ``usd_per_hour``
  whether busy or idle, so the run's cost is the hourly price times the time the provider
  was busy (the union of its calls' [start, end] intervals, so gaps between a killed run
  and its resume are not billed). That cost is spread over calls in proportion to their
  completion tokens, i.e. each output token costs ``usd_per_hour / 3600 / throughput``
  where throughput is the measured completion tokens per busy second.

A provider with no matching price is *not priced*: its cost is ``None`` and reports show
"n/a", never a silent zero.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rai_harness.errors import ConfigError
from rai_harness.validation import parse_yaml_text

__all__ = [
    "PriceEntry",
    "PriceTable",
    "ResolvedPrice",
    "busy_seconds",
    "hourly_costs",
    "token_cost",
]


class PriceEntry(BaseModel):
    """One row of the price table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(..., description="Provider kind (openai, azure-openai, vertex, bedrock...).")
    model: str = Field(..., description="Model name or fnmatch pattern.")
    input_per_1m: float | None = Field(None, ge=0)
    output_per_1m: float | None = Field(None, ge=0)
    usd_per_hour: float | None = Field(None, ge=0)
    source: str | None = None
    as_of: str | None = None


class _PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str
    currency: str = "USD"
    entries: list[PriceEntry]


@dataclass(frozen=True, slots=True)
class ResolvedPrice:
    """The price that applies to one provider in a run, and where it came from."""

    input_per_1m: float | None
    output_per_1m: float | None
    usd_per_hour: float | None
    source: str
    table_version: str | None

    @property
    def hourly(self) -> bool:
        """True when the provider is billed by the hour (self-hosted)."""
        return self.usd_per_hour is not None

    @property
    def per_token(self) -> bool:
        """True when token prices are known."""
        return self.input_per_1m is not None or self.output_per_1m is not None


class PriceTable:
    """Ordered price entries; later-added (user) entries take precedence."""

    def __init__(self, entries: Sequence[PriceEntry], version: str | None = None) -> None:
        self.entries = list(entries)
        self.version = version

    @classmethod
    def default(cls) -> PriceTable:
        """The table shipped in the package (``rai_harness/pricing/prices.yaml``)."""
        text = resources.files(__package__).joinpath("prices.yaml").read_text(encoding="utf-8")
        return cls._parse(text, "rai_harness/pricing/prices.yaml")

    @classmethod
    def from_file(cls, path: str | Path) -> PriceTable:
        """Load a price table YAML file with the same format as the shipped one."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read price table: {exc.strerror}", file=str(p)) from exc
        return cls._parse(text, str(p))

    @classmethod
    def _parse(cls, text: str, where: str) -> PriceTable:
        try:
            parsed = _PriceFile.model_validate(parse_yaml_text(text, file=where))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(part) for part in first["loc"])
            raise ConfigError(first["msg"], file=where, key_path=loc) from exc
        return cls(parsed.entries, parsed.version)

    def extended(self, extra: Iterable[PriceEntry]) -> PriceTable:
        """Return a table where ``extra`` entries are consulted before this table's."""
        return PriceTable([*extra, *self.entries], self.version)

    def lookup(self, provider_kind: str, model: str) -> PriceEntry | None:
        """First entry whose provider equals ``provider_kind`` and whose pattern matches ``model``."""
        for entry in self.entries:
            if entry.provider == provider_kind and fnmatch.fnmatchcase(model, entry.model):
                return entry
        return None

    def resolve(self, provider_kind: str, model: str, override: Any | None = None) -> ResolvedPrice | None:
        """The price for a provider: its own ``pricing:`` override first, then the table.

        Args:
            provider_kind: Registry kind of the provider.
            model: Model name the config asked for.
            override: A ``PricingOverride`` (or anything with the same three attributes).
        """
        if override is not None and any(
            getattr(override, name) is not None for name in ("input_per_1m", "output_per_1m", "usd_per_hour")
        ):
            return ResolvedPrice(
                override.input_per_1m, override.output_per_1m, override.usd_per_hour, "config", None
            )
        entry = self.lookup(provider_kind, model)
        if entry is None:
            return None
        source = entry.source or "price table"
        if entry.as_of:
            source = f"{source} (as of {entry.as_of})"
        return ResolvedPrice(
            entry.input_per_1m, entry.output_per_1m, entry.usd_per_hour, source, self.version
        )


def token_cost(price: ResolvedPrice, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD cost of one call under per-token pricing; ``None`` if the price is hourly or unknown."""
    if not price.per_token:
        return None
    return (
        prompt_tokens * (price.input_per_1m or 0.0) + completion_tokens * (price.output_per_1m or 0.0)
    ) / 1e6


def busy_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals, in seconds.

    Overlapping calls count once (the machine was busy once), and idle gaps (a
    killed run and its later resume) count not at all.
    """
    total = 0.0
    cur_start: float | None = None
    cur_end = 0.0
    for start, end in sorted(intervals):
        if end < start:
            start, end = end, start
        if cur_start is None:
            cur_start, cur_end = start, end
        elif start <= cur_end:
            cur_end = max(cur_end, end)
        else:
            total += cur_end - cur_start
            cur_start, cur_end = start, end
    if cur_start is not None:
        total += cur_end - cur_start
    return total


def hourly_costs(
    usd_per_hour: float, intervals: Sequence[tuple[float, float]], completion_tokens: Sequence[int]
) -> list[float]:
    """Spread an hourly price over calls by completion tokens.

    Args:
        usd_per_hour: Price of the serving machine(s).
        intervals: (start, end) wall-clock times of the successful calls, seconds.
        completion_tokens: Completion tokens of the same calls, in the same order.

    Returns:
        Per-call USD cost; the list sums to ``usd_per_hour * busy_seconds / 3600``.
        Calls share equally when no call produced a token.
    """
    if len(intervals) != len(completion_tokens):
        raise ValueError("intervals and completion_tokens must have the same length")
    if not intervals:
        return []
    total_usd = usd_per_hour * busy_seconds(intervals) / 3600.0
    total_tokens = sum(completion_tokens)
    if total_tokens <= 0:
        return [total_usd / len(intervals)] * len(intervals)
    return [total_usd * tokens / total_tokens for tokens in completion_tokens]
