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
  :func:`write_samples`, :func:`write_json_atomic`, :func:`file_sha256`,
  :func:`retire_run_outputs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rai_harness.lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
    from rai_harness.record.calls import CallError, CallRecord
    from rai_harness.record.io import (
        file_sha256,
        read_run_record,
        read_samples,
        retire_run_outputs,
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

#: Public name -> the module that defines it, imported on first use (PEP 562). So a worker process,
#: which needs only :class:`CallRecord`, does not import the run record's schema and stats (scipy).
_LAZY: dict[str, str] = {
    "Breakdown": "rai_harness.record.metrics",
    "CallError": "rai_harness.record.calls",
    "CallRecord": "rai_harness.record.calls",
    "Comparison": "rai_harness.record.schema",
    "CostSummary": "rai_harness.record.schema",
    "DatasetInfo": "rai_harness.record.schema",
    "Distribution": "rai_harness.record.schema",
    "GuardHealth": "rai_harness.record.schema",
    "JudgeInfo": "rai_harness.record.schema",
    "LoadStage": "rai_harness.record.schema",
    "LoadSummary": "rai_harness.record.schema",
    "MetricSpec": "rai_harness.record.metrics",
    "ProviderSummary": "rai_harness.record.schema",
    "Rescore": "rai_harness.record.schema",
    "RunRecord": "rai_harness.record.schema",
    "RunStatus": "rai_harness.record.schema",
    "SCHEMA_VERSION": "rai_harness.record.schema",
    "SuiteEfficiency": "rai_harness.record.schema",
    "SuiteResult": "rai_harness.record.schema",
    "SuiteRun": "rai_harness.record.schema",
    "UsageSummary": "rai_harness.record.schema",
    "file_sha256": "rai_harness.record.io",
    "read_run_record": "rai_harness.record.io",
    "read_samples": "rai_harness.record.io",
    "retire_run_outputs": "rai_harness.record.io",
    "write_json_atomic": "rai_harness.record.io",
    "write_run": "rai_harness.record.io",
    "write_samples": "rai_harness.record.io",
}

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
    "retire_run_outputs",
    "write_json_atomic",
    "write_run",
    "write_samples",
]


__getattr__, __dir__ = _lazy_exports(globals(), _LAZY)
