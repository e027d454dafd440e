"""Load profiles: when a provider's calls start (fixed concurrency, constant or Poisson rate, sweep).

A floor below the runner (it imports only :mod:`rai_harness.record` and
:mod:`rai_harness.types`), so any engine can schedule calls the same way:

- :mod:`~rai_harness.load.profiles`: the ``load:`` config (:class:`LoadProfile`), its stages
  (:class:`StagePlan`) and arrival schedules (:func:`arrival_offsets`); pure.
- :mod:`~rai_harness.load.dispatch`: :func:`run_stage` starts calls on a stage's schedule on
  the running event loop, with an in-flight cap; :func:`share_stage` splits a stage's
  schedule over processes that share one clock.
- :mod:`~rai_harness.load.summary`: per-stage percentiles and throughput from call records,
  and the sweep's stop rule (:func:`summarize_load`, :func:`stop_reason`).
"""

from __future__ import annotations

from rai_harness.load.dispatch import Dispatch, StageShare, check_shared_clock, run_stage, share_stage
from rai_harness.load.profiles import (
    DEFAULT_MAX_CONCURRENCY,
    LoadProfile,
    StagePlan,
    StopRule,
    Warmup,
    arrival_offsets,
    requests_for,
    stage_offsets,
    stage_seed,
)
from rai_harness.load.summary import (
    WARMUP_EXCLUDED_FROM,
    event_rate,
    is_warmup,
    stop_reason,
    summarize_load,
    summarize_stage,
)

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "WARMUP_EXCLUDED_FROM",
    "Dispatch",
    "LoadProfile",
    "StagePlan",
    "StageShare",
    "StopRule",
    "Warmup",
    "arrival_offsets",
    "check_shared_clock",
    "event_rate",
    "is_warmup",
    "requests_for",
    "run_stage",
    "share_stage",
    "stage_offsets",
    "stage_seed",
    "stop_reason",
    "summarize_load",
    "summarize_stage",
]
