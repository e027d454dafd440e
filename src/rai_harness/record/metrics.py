"""Metric metadata and breakdown tables: the parts of a suite's results stored in the run record."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from rai_harness.stats.estimate import Estimate

__all__ = ["Breakdown", "MetricSpec"]


class MetricSpec(BaseModel):
    """Metadata of one metric a suite reports (shown in reports, used by the gate)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., description="Key in the suite's metrics, e.g. 'expected_max_toxicity'.")
    display: str = Field(..., description="Human name for reports.")
    direction: Literal["lower", "higher", "neutral"] = Field(
        ..., description="Which way is better ('neutral': closer to 0 is better, e.g. a bias score)."
    )
    unit: Literal["rate", "probability", "score", "similarity", "count"] = "rate"
    definition: str = Field(..., description="One-line definition.")
    source: str | None = Field(None, description="Paper the definition follows.")
    deviation: str | None = Field(None, description="Where and why we differ from the paper.")
    sample_key: str | None = Field(
        None, description="Per-sample score that evidences this metric (report's worst examples)."
    )
    headline: bool = Field(False, description="Shown on the report's scorecard.")
    graded_by: Literal["judge"] | None = Field(
        None, description="'judge': a model-graded metric (the suite's judge, see SuiteRun.judge)."
    )
    matcher_metric: str | None = Field(
        None, description="Of a model-graded metric: the matcher metric it should be read beside."
    )


class Breakdown(BaseModel):
    """A metric split by a grouping (per demographic group, attack type, category...)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="Identifier, e.g. 'toxicity_by_group'.")
    title: str
    metric: str = Field(..., description="Name of the metric that is broken down.")
    by: str = Field(..., description="What the rows are: 'group', 'attack', 'category'...")
    rows: dict[str, Estimate]
