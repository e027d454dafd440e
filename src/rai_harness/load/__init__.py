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

from typing import TYPE_CHECKING

from rai_harness.lazy import lazy_exports as _lazy_exports

if TYPE_CHECKING:
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

#: Public name -> the module that defines it, imported on first use (PEP 562). So the runner and
#: its worker processes import the schedule without the summaries (record schema, stats, scipy).
_LAZY: dict[str, str] = {
    "DEFAULT_MAX_CONCURRENCY": "rai_harness.load.profiles",
    "Dispatch": "rai_harness.load.dispatch",
    "LoadProfile": "rai_harness.load.profiles",
    "StagePlan": "rai_harness.load.profiles",
    "StageShare": "rai_harness.load.dispatch",
    "StopRule": "rai_harness.load.profiles",
    "WARMUP_EXCLUDED_FROM": "rai_harness.load.summary",
    "Warmup": "rai_harness.load.profiles",
    "arrival_offsets": "rai_harness.load.profiles",
    "check_shared_clock": "rai_harness.load.dispatch",
    "event_rate": "rai_harness.load.summary",
    "is_warmup": "rai_harness.load.summary",
    "requests_for": "rai_harness.load.profiles",
    "run_stage": "rai_harness.load.dispatch",
    "share_stage": "rai_harness.load.dispatch",
    "stage_offsets": "rai_harness.load.profiles",
    "stage_seed": "rai_harness.load.profiles",
    "stop_reason": "rai_harness.load.summary",
    "summarize_load": "rai_harness.load.summary",
    "summarize_stage": "rai_harness.load.summary",
}

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


__getattr__, __dir__ = _lazy_exports(globals(), _LAZY)
