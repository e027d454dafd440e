"""Plan -> generate -> record: the run pipeline."""

from __future__ import annotations

from rai_harness.record import CallRecord, RunRecord, read_run_record, read_samples
from rai_harness.run.execute import RunPlan, execute_run, plan_run, run_sync
from rai_harness.run.journal import Journal, call_key
from rai_harness.run.runner import RetryPolicy, generate_calls

__all__ = [
    "CallRecord",
    "Journal",
    "RetryPolicy",
    "RunPlan",
    "RunRecord",
    "call_key",
    "execute_run",
    "generate_calls",
    "plan_run",
    "read_run_record",
    "read_samples",
    "run_sync",
]
