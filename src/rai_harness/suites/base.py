"""The suite interface: what an eval suite builds, how it scores, what it reports.

A suite is Python, registered by name and versioned (:mod:`rai_harness.suites`). YAML only
selects and parameterises it. The run pipeline calls a suite in up to four stages:

1. :meth:`Suite.build` (plan time): the samples to send (messages + metadata) and the
   datasets read, identified by hash. Deterministic for a given seed.
2. :meth:`Suite.judge_tasks` (judge stage, only when the run names a ``judge`` for the
   suite): prompts for a judge model, whose parsed verdicts are added to each output's
   scores under ``"judge"``.
3. :meth:`Suite.score` (score stage): per-output scores for *all* providers' successful
   outputs at once, so classifiers batch across providers.
4. :meth:`Suite.aggregate` (per provider): metric estimates with confidence intervals,
   per-group breakdowns, and per-item values that paired comparisons use.

Failed calls never reach :meth:`Suite.score`; :meth:`Suite.aggregate` sees them with
``ok=False`` and ``scores=None`` and must leave them out of every denominator (the
framework reports how many there were next to each suite's numbers).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from rai_harness.classifiers.base import ClassifierSpec
from rai_harness.classifiers.pool import ClassifierPool
from rai_harness.record import Breakdown, DatasetInfo, MetricSpec
from rai_harness.stats import Estimate
from rai_harness.types import ChatMessage

if TYPE_CHECKING:
    from rai_harness.suites.judging import JudgeTask

__all__ = [
    "Breakdown",
    "Concern",
    "MetricSpec",
    "ScoredOutput",
    "Suite",
    "SuiteAggregate",
    "SuiteData",
    "SuiteOutput",
    "SuiteParams",
    "SuiteSample",
]

Concern = Literal["toxicity", "bias", "pii", "factuality"]


class SuiteParams(BaseModel):
    """Parameters common to every suite; suites subclass it with their own fields.

    ``extra="forbid"``: an unknown key is a config error that names the allowed keys.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str | None = Field(
        None,
        description="Local JSONL/CSV file, or a Hugging Face hub id (needs network); default: the "
        "project's own small set in datasets/.",
    )
    limit: int | None = Field(None, ge=1, description="Use only the first N items (after seeded shuffling).")
    repeats: int | None = Field(None, ge=1, le=1000, description="Completions per prompt (k).")
    max_tokens: int | None = Field(
        None, ge=1, description="Override the provider's max_tokens for this suite."
    )
    temperature: float | None = Field(
        None, ge=0, le=2, description="Override the provider's temperature for this suite."
    )
    top_p: float | None = Field(None, gt=0, le=1, description="Override the provider's top_p for this suite.")
    n_resamples: int = Field(2000, ge=100, le=100_000, description="Bootstrap resamples per interval.")


@dataclass(frozen=True, slots=True)
class SuiteSample:
    """One prompt a suite sends (``repeats`` times, as independent calls)."""

    id: str
    messages: tuple[ChatMessage, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: Items sharing a cluster (template) are resampled together by the bootstrap.
    cluster: str | None = None


@dataclass(frozen=True, slots=True)
class SuiteData:
    """What :meth:`Suite.build` returns."""

    samples: tuple[SuiteSample, ...]
    datasets: tuple[DatasetInfo, ...] = ()
    repeats: int = 1
    #: Generation settings that override the provider's for this suite's calls (``None``: keep).
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None


@dataclass(frozen=True, slots=True)
class SuiteOutput:
    """One successful call's output, as :meth:`Suite.score` receives it."""

    provider_id: str
    sample: SuiteSample
    repeat: int
    text: str


@dataclass(frozen=True, slots=True)
class ScoredOutput:
    """One call of one provider, scored (``scores`` is ``None`` when the call failed)."""

    provider_id: str
    sample: SuiteSample
    repeat: int
    ok: bool
    text: str | None
    scores: Mapping[str, Any] | None
    error: str | None = None


class SuiteAggregate(BaseModel):
    """A suite's results for one provider."""

    model_config = ConfigDict(extra="forbid")

    metrics: dict[str, Estimate]
    breakdowns: list[Breakdown] = Field(default_factory=list)
    #: metric -> item id -> per-item value (mean over repeats), for paired comparisons between
    #: providers and against a baseline run. Only metrics that are means over items.
    items: dict[str, dict[str, float]] = Field(default_factory=dict)
    #: Free-form counts an auditor needs next to the metrics (unparsed answers, refusals...).
    counts: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class Suite(ABC):
    """Base class of eval suites. Subclasses set the class attributes and implement three methods."""

    #: Registry name, e.g. ``"toxicity"`` or ``"bias.bbq"``.
    name: ClassVar[str]
    #: Bumped whenever prompts, scoring or metric definitions change.
    version: ClassVar[str]
    concern: ClassVar[Concern]
    title: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[SuiteParams]] = SuiteParams
    metrics: ClassVar[tuple[MetricSpec, ...]]
    #: Judge rubrics this suite can be graded with (empty: the suite takes no ``judge``).
    judge_rubrics: ClassVar[tuple[str, ...]] = ()
    #: Metrics added to :attr:`metrics` when the run gives the suite a judge.
    judge_metrics: ClassVar[tuple[MetricSpec, ...]] = ()

    def __init__(self, params: SuiteParams, *, seed: int = 0, base_dir: Path | None = None) -> None:
        """Args:
        params: Validated parameters (an instance of ``self.Params``).
        seed: Run seed (sampling of items, bootstrap).
        base_dir: Folder that relative dataset paths resolve against (the config's folder).
        """
        self.params = params
        self.seed = seed
        self.base_dir = base_dir

    @abstractmethod
    def build(self) -> SuiteData:
        """The samples to send, and the datasets read (plan time; must not call a model)."""

    def scorers(self) -> dict[str, ClassifierSpec]:
        """Classifiers this suite scores with, by role (recorded in the run and loaded from the pool)."""
        return {}

    @abstractmethod
    def score(self, outputs: Sequence[SuiteOutput], pool: ClassifierPool) -> list[dict[str, Any]]:
        """Per-output JSON-able scores, one dict per output, in order. Batch the classifier calls."""

    @abstractmethod
    def aggregate(self, scored: Sequence[ScoredOutput]) -> SuiteAggregate:
        """Metrics with intervals for one provider's outputs (failed ones included, ``ok=False``)."""

    def judge_tasks(self, output: SuiteOutput) -> list[JudgeTask]:
        """The judge prompts for one output, one per rubric of :attr:`judge_rubrics`.

        Called after generation when the run gives the suite a judge; the verdicts come back
        in ``scores["judge"]`` (see :mod:`rai_harness.suites.judging`) before
        :meth:`aggregate`. Return ``[]`` for an output that has nothing to judge.
        """
        return []

    def metric(self, name: str) -> MetricSpec:
        """The spec of one of this suite's metrics."""
        for spec in (*self.metrics, *self.judge_metrics):
            if spec.name == name:
                return spec
        raise KeyError(name)

    def describe(self) -> dict[str, Any]:
        """Name, version, parameters and scorers (for the run record and ``rai suites``)."""
        return {
            "name": self.name,
            "version": self.version,
            "concern": self.concern,
            "title": self.title,
            "params": self.params.model_dump(mode="json"),
            "scorers": {role: spec.model_dump(mode="json") for role, spec in self.scorers().items()},
        }
