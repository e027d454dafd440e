"""The bottom floor: the versioned run record, its one reader and writer, and metric metadata.

``run``, ``suites``, ``report`` and ``gate`` import from here; this package imports none
of them (nor providers, classifiers or guardrails), so reading a record to report or gate
on it never loads a model or the runner.

Modules:

- :mod:`~rai_harness.record.schema`: ``run.json`` (:class:`RunRecord` and its parts,
  :class:`DatasetInfo`, ``SCHEMA_VERSION``).
- :mod:`~rai_harness.record.calls`: one call's outcome, a line of ``samples.jsonl``
  (:class:`CallRecord`, :class:`CallError`).
- :mod:`~rai_harness.record.metrics`: what a suite declares about its metrics
  (:class:`MetricSpec`, :class:`Breakdown`).
- :mod:`~rai_harness.record.io`: :func:`read_run_record`, :func:`read_samples`,
  :func:`write_samples`, :func:`write_json_atomic`, :func:`file_sha256`.
"""

from __future__ import annotations

from rai_harness.record.calls import CallError, CallRecord
from rai_harness.record.io import (
    file_sha256,
    read_run_record,
    read_samples,
    write_json_atomic,
    write_run,
    write_samples,
)
from rai_harness.record.metrics import Breakdown, MetricSpec
from rai_harness.record.schema import (
    SCHEMA_VERSION,
    Comparison,
    CostSummary,
    DatasetInfo,
    Distribution,
    GuardHealth,
    JudgeInfo,
    LoadStage,
    LoadSummary,
    ProviderSummary,
    Rescore,
    RunRecord,
    RunStatus,
    SuiteEfficiency,
    SuiteResult,
    SuiteRun,
    UsageSummary,
)

__all__ = [
    "SCHEMA_VERSION",
    "Breakdown",
    "CallError",
    "CallRecord",
    "Comparison",
    "CostSummary",
    "DatasetInfo",
    "Distribution",
    "GuardHealth",
    "JudgeInfo",
    "LoadStage",
    "LoadSummary",
    "MetricSpec",
    "ProviderSummary",
    "Rescore",
    "RunRecord",
    "RunStatus",
    "SuiteEfficiency",
    "SuiteResult",
    "SuiteRun",
    "UsageSummary",
    "file_sha256",
    "read_run_record",
    "read_samples",
    "write_json_atomic",
    "write_run",
    "write_samples",
]
