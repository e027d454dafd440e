"""The value every eval metric is reported as: a point estimate with its confidence interval.

An :class:`Estimate` carries the point value, the interval bounds, how many units it is
over (and how many clusters were resampled, for a cluster bootstrap), the numerator for
rates, the interval method and a free-text note for anything a reader must know (no items,
an interval that could not be computed, templates that were dropped).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

__all__ = ["STRICT_RECORD", "Estimate", "EstimateMethod", "strict_number", "strict_whole_number"]

#: Validation-context key the run-record reader sets: an estimate read from a file must also
#: be possible (see :meth:`Estimate._check_possible`). Statistics computed in this process are
#: not re-checked that way: a percentile interval of a biased statistic can, rarely, miss its
#: own point value, and a run must not crash on that after every call was paid for.
STRICT_RECORD = "rai_strict_record"

EstimateMethod = Literal[
    "clopper-pearson",
    "wilson",
    "expanded-bootstrap",
    "expanded-cluster-bootstrap",
    "bootstrap-se-t",
    "cluster-bootstrap-se-t",
    "studentized-bootstrap",
    "studentized-cluster-bootstrap",
    "sidak-t",
    "bootstrap",
    "cluster-bootstrap",
    "exact",
    "none",
]

_BOUNDS = ("value", "ci_low", "ci_high")


def _not_a_number(value: Any, what: str) -> ValueError:
    if isinstance(value, bool):
        return ValueError(f"must be {what}, not the boolean {str(value).lower()}")
    if isinstance(value, str):
        return ValueError(f"must be {what}, not the string {value!r}: write it without quotes")
    return ValueError(f"must be {what}, not a {type(value).__name__}")


def strict_number(value: Any) -> Any:
    """``value`` unchanged when it is a real number (or ``None``); a ValueError otherwise.

    A pydantic ``before`` validator for numbers read from files: pydantic's lax mode would
    take ``"0.1"`` as 0.1 and ``true`` as 1.0, so a quoted threshold or a corrupted record
    would pass for a number. Ints are numbers (``max: 1``); bools are not.
    """
    if value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
        return value
    raise _not_a_number(value, "a number")


def strict_whole_number(value: Any) -> Any:
    """Like :func:`strict_number`, for counts: an integer (or ``None``), never a bool or a string."""
    if value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
        return value
    raise _not_a_number(value, "a whole number")


class Estimate(BaseModel):
    """A point estimate with an optional confidence interval.

    Attributes:
        value: The point estimate; ``None`` when it cannot be computed (no items, or the
            statistic is undefined on the data).
        ci_low: Lower bound of the confidence interval, or ``None`` when there is none.
        ci_high: Upper bound of the confidence interval, or ``None`` when there is none.
        n: How many units (items, prompts, calls, templates) the estimate is over.
        n_clusters: How many clusters (templates) were resampled, for a clustered interval.
        successes: For a rate, the numerator count.
        method: How the interval was computed: ``"clopper-pearson"`` (exact binomial, for
            rates), ``"wilson"`` (Wilson score, in older run records),
            ``"expanded-bootstrap"`` / ``"expanded-cluster-bootstrap"`` (expanded percentile
            bootstrap, over items / clusters), ``"bootstrap-se-t"`` /
            ``"cluster-bootstrap-se-t"`` (t interval with the bootstrap standard error, for
            very few units), ``"studentized-bootstrap"`` /
            ``"studentized-cluster-bootstrap"`` (bootstrap-t over items / clusters, for
            means of unbounded values such as counts), ``"symmetric-studentized-bootstrap"`` /
            ``"symmetric-studentized-cluster-bootstrap"`` (symmetric bootstrap-t, for paired
            differences of unbounded values), ``"sidak-t"`` (simultaneous t intervals, for the largest group
            gap), ``"exact"`` or ``"none"`` (no interval). ``"bootstrap"`` and
            ``"cluster-bootstrap"`` (plain percentile) appear in older run records.
        confidence: The nominal coverage of the interval, in (0, 1).
        note: Anything a reader must know, e.g. ``"no items"`` or
            ``"interval undefined: one cluster"``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    n_clusters: int | None = None
    successes: int | None = None
    method: str = "none"
    confidence: float = 0.95
    note: str | None = None

    # Pydantic would coerce "0.1" to 0.1 and false to 0.0: in a run record those are
    # corruption (or tampering), never a number a statistic produced.
    _real_fields = field_validator("value", "ci_low", "ci_high", "confidence", mode="before")(strict_number)
    _count_fields = field_validator("n", "n_clusters", "successes", mode="before")(strict_whole_number)

    @model_validator(mode="after")
    def _check_possible(self, info: ValidationInfo) -> Estimate:
        """In a record read from a file: no NaN value, a value inside its interval, no interval over nothing."""
        if not (info.context or {}).get(STRICT_RECORD):
            return self
        if self.value is not None and math.isnan(self.value):
            raise ValueError("value is NaN: an estimate that could not be computed has `value: null`")
        if self.ci_low is not None and self.ci_high is not None:
            if self.n == 0:
                raise ValueError(
                    f"an interval [{self.ci_low}, {self.ci_high}] over n = 0 units: an estimate of "
                    "nothing has no interval"
                )
            # A small tolerance: bounds and value went through JSON separately.
            slack = 1e-9 * max(1.0, abs(self.ci_low), abs(self.ci_high))
            if self.value is not None and not self.ci_low - slack <= self.value <= self.ci_high + slack:
                raise ValueError(
                    f"value {self.value} lies outside its own interval [{self.ci_low}, {self.ci_high}]"
                )
        return self

    @model_validator(mode="after")
    def _check(self) -> Estimate:
        if (self.ci_low is None) != (self.ci_high is None):
            raise ValueError("ci_low and ci_high must both be set or both be None")
        if self.ci_low is not None and self.ci_high is not None:
            if math.isnan(self.ci_low) or math.isnan(self.ci_high):
                raise ValueError("interval bounds must not be NaN")
            if self.ci_low > self.ci_high:
                raise ValueError(f"ci_low ({self.ci_low}) is above ci_high ({self.ci_high})")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        if self.n_clusters is not None and self.n_clusters < 0:
            raise ValueError(f"n_clusters must be >= 0, got {self.n_clusters}")
        return self

    @classmethod
    def empty(cls, note: str = "no items") -> Estimate:
        """Return the estimate of nothing: no value, no interval, ``n == 0``.

        Args:
            note: Why there is no estimate.

        Returns:
            An :class:`Estimate` with ``value=None``, ``method="none"`` and the note.
        """
        return cls(value=None, n=0, method="none", note=note)

    def bound(self, which: Literal["value", "ci_low", "ci_high"]) -> float | None:
        """Return the point value or one interval bound, by name.

        A gate that must not pass by luck on a small sample decides on the conservative
        bound, e.g. ``est.bound("ci_high") <= max_rate`` for a failure rate.

        Args:
            which: ``"value"``, ``"ci_low"`` or ``"ci_high"``.

        Returns:
            That number, or ``None`` when it is not available.

        Raises:
            ValueError: ``which`` is not one of the three names.
        """
        if which not in _BOUNDS:
            raise ValueError(f"which must be one of {_BOUNDS}, got {which!r}")
        result: float | None = getattr(self, which)
        return result
