"""Plan and execute a run: config -> frozen plan -> concurrent generation -> run record.

Phases, each leaving a file so that a run can resume and be re-scored or re-rendered
without calling a model again:

1. :func:`plan_run` validates everything that can be checked before a request is sent
   (secrets set, optional packages installed, files readable, prices resolved) and
   freezes the requests.
2. :func:`execute_run` generates with every provider concurrently, journaling each call
   (``journal.sqlite``), summarizes the calls, scores and aggregates the suites, then writes
   ``samples.jsonl`` and ``run.json``.
3. :func:`~rai_harness.run.rescore.score_run` (``rai score``) repeats only the scoring and
   aggregation of a finished run, from its ``run.json`` and ``samples.jsonl``.

Reproducibility: every request carries its own seed, :func:`request_seed` of the provider's
``params.seed`` (or the run's ``seed``), the sample id and the repeat index, so a call's
seed does not depend on the order, batch or concurrency it runs in. ``hf-local`` samples
each call from a generator seeded with it; OpenAI-compatible providers receive it as
``seed``. ``run.json`` states per provider what that buys (``reproducibility``).

Guarded providers run in evaluation mode (see :func:`_build`): rails have no wall-clock
timeout shorter than the call's own, and a failed rail fails its call (an error on the
sample) instead of allowing or blocking it, so the safety numbers do not depend on how
busy the machine was. Each guard is built for its provider and closed with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import logging
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from rai_harness.config import RunConfig, check_secrets, secret_values
from rai_harness.errors import ConfigError
from rai_harness.load import requests_for
from rai_harness.pricing import PriceTable, ResolvedPrice, hourly_costs, token_cost
from rai_harness.providers.base import Provider, ProviderConfig, build_provider, describe_provider
from rai_harness.record import (
    CallRecord,
    DatasetInfo,
    ProviderSummary,
    RunRecord,
    file_sha256,
    write_run,
)
from rai_harness.run.journal import Journal, call_key
from rai_harness.run.judge import (
    JUDGE_CALLS_FILE,
    JudgePlan,
    attach_judge,
    judge_reproducibility,
    plan_judges,
    run_judge_stage,
)
from rai_harness.run.prompts import PromptRow, expand_requests, read_prompt_file, rows_from_items
from rai_harness.run.runner import LoopLagMonitor, RetryPolicy, generate_calls
from rai_harness.run.score import (
    PlannedSuite,
    error_budget_problems,
    item_key,
    run_status,
    score_suites,
    summarize_provider,
)
from rai_harness.run.sizing import auto_workers
from rai_harness.types import ChatRequest, GenerationParams, stable_hash

if TYPE_CHECKING:
    from rai_harness.guardrails.policy import GuardPolicy
    from rai_harness.run.ray_engine import RaySession
    from rai_harness.suites.base import Suite, SuiteData

__all__ = [
    "BuiltSuite",
    "CallSummary",
    "Generated",
    "ProviderPlan",
    "RunPlan",
    "build_suite",
    "execute_run",
    "plan_run",
    "request_seed",
    "run_sync",
    "summarize_calls",
]

log = logging.getLogger(__name__)

#: Event-loop lag (p99, ms) above which the run record warns that timings are inflated.
LAG_WARN_MS = 10.0
#: Seconds a rail may wait beyond its call's ``timeout_s`` in a run: the call's own deadline
#: always ends a stuck check first, and is recorded as a timeout error on the sample.
_RAIL_DEADLINE_MARGIN_S = 60.0
#: Per-request seeds fit in 31 bits: every server that takes a ``seed`` accepts them.
_SEED_MASK = (1 << 31) - 1


def request_seed(base_seed: int, sample_id: str, repeat: int) -> int:
    """The seed of one call: a hash of the base seed, the sample id and the repeat index.

    It does not depend on the call's order, batch or concurrency; each repeat of a sample
    gets its own stream; and providers given the same base seed get the same seed for the
    same sample (common random numbers, which sharpen paired comparisons).
    """
    digest = stable_hash({"seed": int(base_seed), "sample_id": sample_id, "repeat": int(repeat)})
    return int(digest[:16], 16) & _SEED_MASK


def _seed_requests(requests: Sequence[ChatRequest], run_seed: int) -> list[ChatRequest]:
    """Give every request its :func:`request_seed` (base: its ``params.seed``, else the run seed)."""
    out = []
    for request in requests:
        base = request.params.seed if request.params.seed is not None else run_seed
        seed = request_seed(base, request.sample_id, request.repeat)
        out.append(dataclasses.replace(request, params=dataclasses.replace(request.params, seed=seed)))
    return out


class BuiltSuite(NamedTuple):
    """A suite and the samples it built."""

    suite: Suite
    data: SuiteData


@dataclass(frozen=True)
class ProviderPlan:
    """One provider's part of a plan.

    Attributes:
        config: The provider's settings (relative paths resolved).
        price: Its resolved price, if any.
        requests: Every call it makes, seeded.
        guard_policy: Its guard policy, read and validated once at plan time (``None``
            without a guard); the run builds the guard from this, never from the file again.
    """

    config: ProviderConfig
    price: ResolvedPrice | None
    requests: tuple[ChatRequest, ...]
    guard_policy: GuardPolicy | None = None

    @functools.cached_property
    def identity(self) -> dict[str, Any]:
        """The identity in its call keys (:meth:`ProviderConfig.call_identity`, with the
        sha256 of the policy read at plan time, not read again, and the fingerprints of the
        weights its classifiers load: a retrained head under the same policy is another guard)."""
        from rai_harness.classifiers.pool import weights_fingerprint

        if self.guard_policy is None:
            return self.config.call_identity()
        weights = {name: weights_fingerprint(spec) for name, spec in self.guard_policy.classifiers.items()}
        return self.config.call_identity(
            guard_sha256=self.guard_policy.sha256,
            guard_weights={name: digest for name, digest in weights.items() if digest is not None},
        )

    @property
    def provider_id(self) -> str:
        """Id used in records."""
        return self.config.provider_id


@dataclass(frozen=True)
class RunPlan:
    """Everything :func:`execute_run` needs, validated."""

    config: RunConfig
    out_dir: Path
    providers: tuple[ProviderPlan, ...]
    datasets: tuple[DatasetInfo, ...]
    suites: tuple[PlannedSuite, ...] = ()
    judges: tuple[JudgePlan, ...] = ()
    config_path: str | None = None
    config_sha256: str | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def total_calls(self) -> int:
        """Calls across all providers."""
        return sum(len(p.requests) for p in self.providers)


def _resolve_paths(cfg: ProviderConfig, base: Path | None) -> ProviderConfig:
    """Resolve a provider's relative file paths against the config file's folder."""
    if base is None:
        return cfg
    updates: dict[str, Any] = {}
    if (
        cfg.guard is not None
        and not Path(cfg.guard.policy).is_absolute()
        and (base / cfg.guard.policy).exists()
    ):
        updates["guard"] = cfg.guard.model_copy(update={"policy": str(base / cfg.guard.policy)})
    for name in cfg.path_fields:
        value = getattr(cfg, name, None)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            candidate = base / value
            if candidate.exists() or not Path(value).exists():
                updates[name] = str(candidate)
    return cfg.model_copy(update=updates) if updates else cfg


def _load_rows(
    config: RunConfig, base: Path | None, file: str | None
) -> tuple[list[PromptRow], list[DatasetInfo]]:
    source = config.prompts
    if source is None:
        if config.suites:
            return [], []
        raise ConfigError(
            "nothing to run: give `suites` (eval suites, see `rai suites`) and/or `prompts` "
            "(`prompts.path`, a JSONL file, or `prompts.items`)",
            file=file,
            key_path="suites",
        )
    if source.items is not None:
        rows = rows_from_items(source.items, system=source.system)
        digest = stable_hash(source.items)
        info = DatasetInfo(name="inline", path=None, sha256=digest, rows=len(rows))
    else:
        assert source.path is not None
        path = Path(source.path)
        if not path.is_absolute() and base is not None and (base / path).exists():
            path = base / path
        try:
            rows = read_prompt_file(path, system=source.system)
        except ConfigError as exc:
            raise ConfigError(
                f"{exc.detail} (from `prompts.path` in {file})" if file else exc.detail,
                file=exc.file,
                key_path=exc.key_path,
            ) from exc
        info = DatasetInfo(name=path.stem, path=str(source.path), sha256=file_sha256(path), rows=len(rows))
    if source.limit is not None:
        rows = rows[: source.limit]
    return rows, [info]


def plan_run(
    config: RunConfig,
    *,
    config_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    limit: int | None = None,
    provider_ids: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> RunPlan:
    """Validate a config and freeze the requests of a run.

    Args:
        config: A validated run config.
        config_path: The file it came from (relative paths resolve against its folder).
        out_dir: Output folder (default ``config.output_dir`` or ``reports/<name>``).
        limit: Use only the first N prompts (applied after the config's own limit).
        provider_ids: Run only these providers (default: all).
        environ: Environment to read secrets from (default ``os.environ``).

    Raises:
        ConfigError: for anything that would make the run fail before or during calls.
    """
    file = str(config_path) if config_path else None
    base = Path(config_path).resolve().parent if config_path else None
    config = _select_providers(config, provider_ids, file)
    check_secrets(config, file=file, environ=environ)
    for p in config.providers:
        p.check_requirements()
    _check_engine(config, file)
    table = (
        PriceTable.from_file(_abs(config.price_table, base)) if config.price_table else PriceTable.default()
    )
    table = table.extended(config.pricing)
    rows, datasets = _load_rows(config, base, file)
    if limit is not None:
        rows = rows[:limit]
    suites = _plan_suites(config, base, file, limit)
    for ps in suites:
        datasets.extend(d for d in ps.data.datasets if d not in datasets)
    plans = [
        _plan_provider(config, i, raw, rows=rows, suites=suites, table=table, base=base, file=file)
        for i, raw in enumerate(config.providers)
    ]
    # Output folders are relative to the working directory, like every other CLI path.
    judges = plan_judges(config.judges, table, lambda c: _resolve_paths(c, base))
    out = Path(out_dir or config.output_dir or Path("reports") / config.name)
    return RunPlan(
        config=config,
        out_dir=Path(out),
        providers=tuple(plans),
        datasets=tuple(datasets),
        suites=tuple(suites),
        judges=judges,
        config_path=file,
        config_sha256=file_sha256(config_path) if config_path else None,
        secrets=tuple(secret_values(config, environ)),
    )


def _select_providers(config: RunConfig, provider_ids: Sequence[str], file: str | None) -> RunConfig:
    """The config narrowed to ``--provider`` ids (all providers when none are given)."""
    if not provider_ids:
        return config
    known = {p.provider_id for p in config.providers}
    for pid in provider_ids:
        if pid not in known:
            raise ConfigError(
                f"--provider {pid!r} is not in the config; its providers are: {', '.join(sorted(known))}",
                file=file,
            )
    return config.model_copy(
        update={"providers": [p for p in config.providers if p.provider_id in provider_ids]}
    )


def _check_engine(config: RunConfig, file: str | None) -> None:
    """Refuse, at plan time, an engine that is not installed or cannot run this config."""
    if config.runner.engine != "ray":
        return
    from rai_harness.run.ray_engine import check_ray

    check_ray(file=file)
    if config.load is not None:
        # A load profile schedules each call's start from one clock; the Ray engine's
        # workers each run their own share, so the schedule would not hold.
        raise ConfigError(
            "a load profile runs in one process: use runner.engine local with `load`, or drop `load`",
            file=file,
            key_path="load",
        )


def _plan_provider(
    config: RunConfig,
    index: int,
    raw: ProviderConfig,
    *,
    rows: list[PromptRow],
    suites: Sequence[PlannedSuite],
    table: PriceTable,
    base: Path | None,
    file: str | None,
) -> ProviderPlan:
    """One provider's frozen plan: files checked, guard policy resolved, price, seeded requests."""
    cfg = _resolve_paths(raw, base)
    try:
        cfg.validate_files()
    except ConfigError as exc:
        raise ConfigError(
            exc.detail, file=exc.file or file, key_path=exc.key_path or f"providers[{index}]"
        ) from exc
    policy = _guard_policy(cfg, index, file)
    price = table.resolve(cfg.kind, cfg.model, cfg.pricing)
    params = cfg.params.to_params()
    repeats = config.prompts.repeats if config.prompts else 1
    requests = expand_requests(rows, params, repeats)
    for ps in suites:
        if cfg.provider_id in ps.providers:
            requests.extend(_suite_requests(ps, params))
    if config.load is not None:
        try:
            requests = requests_for(config.load, requests)
        except ValueError as exc:
            raise ConfigError(f"{exc} (provider {cfg.provider_id!r})", file=file, key_path="load") from exc
    return ProviderPlan(cfg, price, tuple(_seed_requests(requests, config.seed)), guard_policy=policy)


def _guard_policy(cfg: ProviderConfig, index: int, file: str | None) -> GuardPolicy | None:
    """Read and validate a provider's guard policy: the one read of it in a run."""
    if cfg.guard is None:
        return None
    from rai_harness.guardrails.policy import load_policy

    try:
        return load_policy(cfg.guard.policy)
    except ConfigError as exc:
        raise ConfigError(
            f"{exc.detail} (the guard policy of providers[{index}])",
            file=exc.file or file,
            key_path=exc.key_path or f"providers[{index}].guard.policy",
        ) from exc


def _plan_suites(
    config: RunConfig, base: Path | None, file: str | None, limit: int | None
) -> list[PlannedSuite]:
    """Build every selected suite and its samples (plan time: no model is called)."""
    all_ids = tuple(p.provider_id for p in config.providers)
    planned: list[PlannedSuite] = []
    for i, sel in enumerate(config.suites):
        where = f"suites[{i}]"
        params = dict(sel.params)
        if limit is not None:
            params["limit"] = min(limit, params.get("limit") or limit)
        try:
            suite, data = build_suite(
                sel.name, params, seed=config.seed, base_dir=base, key_path=f"{where}.params"
            )
        except ConfigError as exc:
            # Parameter errors name their full path already; a suite's own errors are relative.
            if not exc.key_path:
                key = where
            elif exc.key_path.startswith(where):
                key = exc.key_path
            else:
                key = f"{where}.{exc.key_path}"
            raise ConfigError(exc.detail, file=exc.file or file, key_path=key) from exc
        providers = tuple(sel.providers) if sel.providers else all_ids
        planned.append(
            attach_judge(
                PlannedSuite(suite, data, providers),
                judge=sel.judge,
                repeats=sel.judge_repeats,
                calibration=sel.judge_calibration,
                base=base,
                file=file,
                where=where,
            )
        )
    return planned


def build_suite(
    name: str, params: Mapping[str, Any], *, seed: int, base_dir: Path | None, key_path: str = "params"
) -> BuiltSuite:
    """Make a suite, build its samples and check its scorers can load (no model is called).

    ``key_path``: where ``params`` sits in the config file, for error messages.

    Raises:
        ConfigError: Unknown suite, bad parameters or scorer, unreadable dataset, or no samples.
    """
    from rai_harness.classifiers.pool import validate_spec
    from rai_harness.suites import make_suite

    suite = make_suite(name, dict(params), seed=seed, base_dir=base_dir, key_path=key_path)
    data = suite.build()
    for spec in suite.scorers().values():
        validate_spec(spec)
    if not data.samples:
        raise ConfigError("the suite built no samples; check its dataset and limit")
    return BuiltSuite(suite, data)


def _suite_requests(ps: PlannedSuite, params: GenerationParams) -> tuple[ChatRequest, ...]:
    """One request per suite sample and repeat, tagged with the suite and item id."""
    overrides = {
        name: getattr(ps.data, name)
        for name in ("max_tokens", "temperature", "top_p")
        if getattr(ps.data, name) is not None
    }
    if overrides:
        params = dataclasses.replace(params, **overrides)
    return tuple(
        ChatRequest(
            sample_id=item_key(ps.name, sample.id),
            messages=sample.messages,
            params=params,
            repeat=k,
            metadata={"suite": ps.name, "item": sample.id, **sample.metadata},
        )
        for sample in ps.data.samples
        for k in range(ps.data.repeats)
    )


def _abs(path: str, base: Path | None) -> Path:
    p = Path(path)
    return p if p.is_absolute() or base is None else base / p


def environment_info() -> dict[str, Any]:
    """Versions and hardware facts for the run record (no host names, no user names)."""
    packages = {}
    for name in (
        "rai-harness",
        "openai",
        "pydantic",
        "numpy",
        "torch",
        "transformers",
        "tokenizers",
        "httpx",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": packages,
    }
    torch = sys.modules.get("torch")  # only if a provider already loaded it: importing torch costs seconds
    if torch is not None:
        cuda = torch.cuda.is_available()
        info["cuda"] = cuda
        if cuda:
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _apply_prices(records: list[CallRecord], price: ResolvedPrice | None) -> list[CallRecord]:
    """Every successful call's cost at this run's price.

    Per-token prices are applied again to each call's token counts: pricing is not part of a
    call's identity (a new price must not re-send the calls), so a call reused from the journal
    of a run under another price carries that price's cost, and a gate on cost would read the
    old price under the new one's name. Hourly prices need all calls' times.
    """
    if price is not None and price.per_token:
        out = list(records)
        for i, record in enumerate(records):
            if record.ok and record.prompt_tokens is not None and record.completion_tokens is not None:
                cost = token_cost(price, record.prompt_tokens, record.completion_tokens)
                if cost != record.cost_usd:
                    out[i] = _replace(record, cost_usd=cost)
        return out
    if price is None or not price.hourly or price.usd_per_hour is None:
        return records
    ok_idx = [i for i, r in enumerate(records) if r.ok]
    intervals = [
        (records[i].finished_at - (records[i].latency_s or 0.0), records[i].finished_at) for i in ok_idx
    ]
    costs = hourly_costs(price.usd_per_hour, intervals, [records[i].completion_tokens or 0 for i in ok_idx])
    out = list(records)
    for i, cost in zip(ok_idx, costs, strict=True):
        out[i] = _replace(records[i], cost_usd=cost)
    return out


def _build(pp: ProviderPlan) -> Provider:
    """Build a provider, wrapped in its guard when the config names one.

    The guard is built from the policy resolved at plan time (``pp.guard_policy``), in
    evaluation mode: every rail's ``timeout_ms`` raised above the call's ``timeout_s`` (the
    call's deadline, recorded as a timeout error on the sample, ends a stuck check; a busy
    machine never turns a slow check into the rail's ``on_error``), each check scored on its
    own (no micro-batching, so no score depends on which calls arrived together), and a
    failed rail fails the call. Rails slower than the policy's own timeouts are named in the verdicts. The
    guard belongs to this provider and is closed with it.
    """
    cfg = pp.config
    if cfg.guard is None:
        return build_provider(cfg)
    from rai_harness.guardrails import Guard, GuardedProvider

    policy = pp.guard_policy
    assert policy is not None, "plan_run resolves the guard policy of every guarded provider"
    policy_timeouts = {
        f"{stage}:{rail.name}": rail.timeout_ms
        for stage in ("input", "output")
        for rail in getattr(policy, stage)
    }
    # No micro-batching: which concurrent calls share a batch depends on when they arrive, i.e.
    # on machine load, and a batch's shape moves scores in their last digits (and one crashing
    # text would fail its batch-mates). Each check scored alone gives the same record however
    # busy the machine was.
    guard = Guard.from_policy(
        policy.with_rail_timeouts((cfg.timeout_s + _RAIL_DEADLINE_MARGIN_S) * 1000.0), micro_batch=False
    )
    try:
        provider = build_provider(cfg)
    except BaseException:
        guard.close()
        raise
    return GuardedProvider(
        provider,
        guard,
        check_input=cfg.guard.input,
        check_output=cfg.guard.output,
        fail_on_rail_error=True,
        policy_timeouts_ms=policy_timeouts,
        owns_guard=True,
    )


def _samples(kind: str, params: GenerationParams) -> bool:
    """Whether a request samples (hf-local decodes greedily without a temperature; APIs sample by default)."""
    if params.temperature == 0:
        return False
    return params.temperature is not None or kind != "hf-local"


def _reproducibility(plan: RunPlan) -> dict[str, Any]:
    """What this run seeded, and what a rerun of it cannot reproduce (for ``run.json``)."""
    providers: dict[str, Any] = {}
    caveats: list[str] = []
    for pp in plan.providers:
        cfg = pp.config
        sampled = any(_samples(cfg.kind, r.params) for r in pp.requests)
        support = cfg.seed_support
        if support == "replay":
            verdict, note = "yes", "replays recorded outputs"
        elif support == "exact" and sampled and getattr(cfg, "batch_sampled", False):
            verdict = "best effort"
            note = (
                "sampled calls share batches (batch_sampled): each draws from its own seeded generator, "
                "but another batch composition can flip a token, so a rerun may differ"
            )
        elif support == "exact":
            verdict = "yes"
            note = (
                "every sampled call draws from its own generator seeded with its request seed and "
                "generates alone: same outputs for the same config, seed, machine and software, at any "
                "concurrency"
                if sampled
                else "greedy decoding: same outputs for the same config, machine and software"
            )
        elif support == "best_effort":
            verdict = "best effort"
            note = (
                "the request seed is sent as `seed`; the server's determinism is best effort (a "
                "backend or model update changes outputs)"
            )
        else:
            verdict = "no" if sampled else "best effort"
            note = f"provider kind {cfg.kind!r} takes no seed: sampled outputs differ between runs"
        if verdict != "yes":
            caveats.append(f"{pp.provider_id}: {note}")
        entry: dict[str, Any] = {
            "kind": cfg.kind,
            "seed_support": support,
            "base_seed": cfg.params.seed if cfg.params.seed is not None else plan.config.seed,
            "sampled": sampled,
            "reproducible": verdict,
            "note": note,
        }
        if cfg.guard is not None:
            entry["guard"] = (
                "deterministic classifiers, each check scored on its own (no micro-batching); rails "
                "wait for their classifier up to the call's timeout_s (no policy timeout in a run), and "
                "a failed rail is an error on the sample: guard verdicts and scores do not depend on "
                "machine load"
            )
        providers[pp.provider_id] = entry
    judges, judge_caveats = judge_reproducibility(plan.judges)
    return {
        "run_seed": plan.config.seed,
        "request_seeds": "per call: sha256(base seed, sample id, repeat index), 31 bits; base seed = the "
        "provider's params.seed, else the run seed (samples.jsonl params.seed holds each)",
        "also_seeded": ["suite sample selection", "bootstrap intervals", "retry backoff jitter"],
        "not_reproducible": [
            *caveats,
            *judge_caveats,
            "timings (latency, TTFT, throughput) and costs derived from them vary with machine load",
        ],
        "providers": providers,
        **({"judges": judges} if judges else {}),
    }


def _pending_calls(pp: ProviderPlan, journal: Journal, retry_failed: bool) -> int:
    """How many of a provider's calls are not yet usable from the journal."""
    identity = pp.identity
    pending = 0
    for request in pp.requests:
        stored = journal.get(call_key(identity, request))
        if stored is None or (retry_failed and stored.get("status") != "ok"):
            pending += 1
    return pending


def _replace(record: CallRecord, **changes: Any) -> CallRecord:
    return dataclasses.replace(record, **changes)


OnRecord = Callable[[CallRecord], None]


@dataclass(frozen=True)
class Generated:
    """What the generate phase hands on: each provider's records and model details, and the loop lag."""

    outcomes: tuple[list[CallRecord], ...]
    model_infos: tuple[dict[str, Any], ...]
    loop_lag: dict[str, float | int]
    #: Where the calls ran, for ``run.json`` ``timing_quality``: ``{"engine": "local"}``, or Ray's
    #: workers, nodes and the CPU seconds the workers spent (the loop lag is then the workers').
    engine: dict[str, Any] = field(default_factory=lambda: {"engine": "local"})


@dataclass(frozen=True)
class CallSummary:
    """Every call record (hourly costs filled in), per-provider summaries and error-budget problems."""

    records: list[CallRecord]
    providers: dict[str, ProviderSummary]
    problems: list[str]


async def execute_run(
    plan: RunPlan,
    *,
    on_record: OnRecord | None = None,
    on_start: Callable[[RunPlan, int], None] | None = None,
) -> RunRecord:
    """Run a plan; write ``journal.sqlite``, ``samples.jsonl`` and ``run.json`` in ``plan.out_dir``.

    Phases: generate (journaled, resumable) -> summarize calls -> score and aggregate the
    suites (:func:`~rai_harness.run.score.score_suites`, shared with ``rai score``) -> record.

    Args:
        plan: From :func:`plan_run`.
        on_record: Called for every final call record (progress display).
        on_start: Called once with the plan and the number of journaled calls found.

    Returns:
        The run record (also written to ``run.json``).
    """
    out = plan.out_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission, a read-only filesystem
        raise ConfigError(
            f"cannot use {out} as the output folder ({exc.strerror or type(exc).__name__}); "
            "pass a writable folder with --out"
        ) from exc
    journal = Journal(out / "journal.sqlite")
    session = _ray_session(plan)
    try:
        run_id = _run_id(journal, plan)
        started_iso = _now_iso()
        t0 = time.perf_counter()
        generated = _with_recorded_model_infos(
            plan,
            journal,
            await _generate(plan, journal, on_record=on_record, on_start=on_start, session=session),
        )
        calls = summarize_calls(plan, generated)
        # Judge phase: judges grade the outputs of the suites that name one (their own budget).
        judged = await run_judge_stage(
            plan, calls.records, journal, seed_requests=_seed_requests, price_records=_apply_prices
        )
        scored = score_suites(
            plan.suites,
            calls.records,
            seed=plan.config.seed,
            pool=session.scoring_pool() if session is not None else None,
            judgements=judged.judgements,
            judged=judged.judged,
        )
        budget_problems = [*calls.problems, *judged.problems]
        record = RunRecord(
            run_id=run_id,
            name=plan.config.name,
            status=run_status(budget_problems, scored.problems),
            problems=[*budget_problems, *scored.problems],
            started_at=journal.get_meta("first_started_at") or started_iso,
            finished_at=_now_iso(),
            duration_s=time.perf_counter() - t0,
            seed=plan.config.seed,
            config_path=plan.config_path,
            config_sha256=plan.config_sha256,
            config=plan.config.snapshot(),
            environment=environment_info(),
            datasets=list(plan.datasets),
            providers=calls.providers,
            judges=judged.summaries,
            judge_calls_file=JUDGE_CALLS_FILE if judged.records else None,
            timing_quality=_timing_quality(
                generated.loop_lag,
                generated.engine,
                # A replayed log carries the timings it recorded: this loop's lag cannot touch them.
                timed_here=any(p.config.kind != "replay" for p in plan.providers),
            ),
            suites=scored.suites,
            reproducibility=_reproducibility(plan),
        )
        write_run(out, record, scored.records, judge_calls=judged.records)
        # Finished: the next run into this folder is a new run (it still reuses these calls).
        journal.set_meta("finished_run_id", run_id)
        return record
    finally:
        if session is not None:
            session.close()
        journal.close()


def _ray_session(plan: RunPlan) -> RaySession | None:
    """The run's Ray session with ``runner.engine: ray`` (it connects only when first needed)."""
    settings = plan.config.runner
    if settings.engine != "ray":
        return None
    from rai_harness.run.ray_engine import RaySession

    return RaySession(
        settings.ray_address, workers=settings.ray_workers, score_min_texts=settings.ray_score_min_texts
    )


def _run_id(journal: Journal, plan: RunPlan) -> str:
    """The run's id: kept by a resumed run, new for any other run into the same folder.

    A run resumes (same id and start time) only while it is unfinished and plans the same
    calls. The journal outlives runs (it is the call cache of every rerun into the folder),
    and once kept its first id for all of them: two different runs, or a finished run and its
    rerun, shared one identity, and the gate refused the previous run as their baseline
    ("the baseline is the run itself").
    """
    run_id = journal.get_meta("run_id")
    fingerprint = _plan_fingerprint(plan)
    resumable = (
        run_id is not None
        and journal.get_meta("finished_run_id") != run_id
        and journal.get_meta("plan_fingerprint") == fingerprint
    )
    if not resumable:
        run_id = uuid.uuid4().hex
        journal.set_meta("run_id", run_id)
        journal.set_meta("plan_fingerprint", fingerprint)
        journal.set_meta("first_started_at", _now_iso())
    return str(run_id)


def _plan_fingerprint(plan: RunPlan) -> str:
    """sha256 of what a run is: its config and the key of every call it plans (which cover
    datasets, prompt limits, seeds, providers and guard policies)."""
    calls = {
        p.provider_id: [call_key(identity, r) for identity in (p.identity,) for r in p.requests]
        for p in plan.providers
    }
    return stable_hash({"config": plan.config.snapshot(), "calls": calls})


def _model_info_key(provider_id: str) -> str:
    return f"model_info:{provider_id}"


def _remember_model_info(journal: Journal, provider_id: str, info: Mapping[str, Any]) -> None:
    """Keep a loaded model's details (weights, hashes, device) in the journal, for a resume."""
    if info.get("loaded"):
        journal.set_meta(_model_info_key(provider_id), dict(info))


def _with_recorded_model_info(journal: Journal, provider_id: str, info: dict[str, Any]) -> dict[str, Any]:
    """``info``, or the details journaled when the model was loaded, if it was not loaded now.

    A resumed run that reuses every call of a local model never loads it, so its own
    description lacks what produced the reused outputs (weights file, sha256, device, dtype).
    The description an earlier session of the same run recorded at load time stands in, with
    this session's call statistics.
    """
    if info.get("loaded") is not False:
        _remember_model_info(journal, provider_id, info)
        return info
    recorded = journal.get_meta(_model_info_key(provider_id))
    if not isinstance(recorded, dict):
        return info
    return {
        **recorded,
        "stats": info.get("stats", recorded.get("stats")),
        "loaded": False,
        "loaded_in": "an earlier session of this run (every call was reused from the journal)",
    }


def _with_recorded_model_infos(plan: RunPlan, journal: Journal, generated: Generated) -> Generated:
    """``generated`` with each provider's model details completed from the journal (a resume)."""
    infos = tuple(
        _with_recorded_model_info(journal, pp.provider_id, dict(info))
        for pp, info in zip(plan.providers, generated.model_infos, strict=True)
    )
    return dataclasses.replace(generated, model_infos=infos)


async def _generate(
    plan: RunPlan,
    journal: Journal,
    *,
    on_record: OnRecord | None,
    on_start: Callable[[RunPlan, int], None] | None,
    session: RaySession | None = None,
) -> Generated:
    """The generate phase: build and load the providers, call them all concurrently, close them.

    With ``runner.engine: ray`` the calls are made by Ray actors instead
    (:func:`~rai_harness.run.ray_engine.generate_on_ray`); this process still journals them.
    """
    if plan.config.runner.engine == "ray":
        from rai_harness.run.ray_engine import generate_on_ray

        on_ray = await generate_on_ray(plan, journal, on_record=on_record, on_start=on_start, session=session)
        engine = {
            "engine": "ray",
            "workers": on_ray.workers,
            "workers_started": on_ray.workers_started,
            "worker_restarts": on_ray.worker_restarts,
            "hosts": len(on_ray.hosts),
            "worker_cpu_s": round(on_ray.worker_cpu_s, 3),
        }
        return Generated(on_ray.outcomes, on_ray.model_infos, on_ray.loop_lag, engine)
    providers: list[Provider] = []
    monitor = LoopLagMonitor()
    try:
        for pp in plan.providers:
            providers.append(_build(pp))
        await _load_pending(plan, providers, journal)
        # Before the clocks start and before any other call runs: the calibration of
        # `workers: auto` measures this process's CPU per call, alone.
        workers = await _size_workers(plan, providers, journal)
        # Start the clocks after loading so progress rates and loop lag describe the calls.
        if on_start:
            on_start(plan, journal.count("ok"))
        monitor.start()
        outcomes = await asyncio.gather(
            *(
                _generate_one(plan, pp, provider, journal, on_record, workers.get(pp.provider_id, {}))
                for provider, pp in zip(providers, plan.providers, strict=True)
            )
        )
        infos = [describe_provider(p) for p in providers]
    finally:
        await monitor.stop()
        for provider in providers:
            with contextlib.suppress(Exception):
                await provider.aclose()
    local: dict[str, Any] = {"engine": "local"}
    if workers:
        local["worker_processes"] = workers
    return Generated(tuple(outcomes), tuple(infos), monitor.summary(), local)


async def _size_workers(
    plan: RunPlan, providers: Sequence[Provider], journal: Journal
) -> dict[str, dict[str, Any]]:
    """Worker processes per sharded provider, and why (``run.json`` ``timing_quality.worker_processes``).

    A number in the config is taken as is; ``auto`` is sized by
    :func:`~rai_harness.run.sizing.auto_workers` (a few calibration calls) when calls remain.
    """
    out: dict[str, dict[str, Any]] = {}
    retry_failed = plan.config.runner.retry_failed_on_resume
    for pp, provider in zip(plan.providers, providers, strict=True):
        chosen = pp.config.workers
        if chosen == 1:
            continue
        if chosen != "auto":
            out[pp.provider_id] = {"workers": chosen, "source": "config"}
            continue
        calls = _pending_calls(pp, journal, retry_failed)
        if calls == 0:
            out[pp.provider_id] = {"workers": 1, "source": "auto", "reason": "no calls to make"}
            continue
        sizing = await auto_workers(
            provider,
            pp.requests,
            calls=calls,
            concurrency=pp.config.concurrency,
            load=plan.config.load,
            policy=RetryPolicy.for_provider(plan.config.runner, pp.config),
            rpm=pp.config.rpm,
        )
        log.info("%s: workers auto -> %d (%s)", pp.provider_id, sizing.workers, sizing.reason)
        out[pp.provider_id] = {**sizing.to_dict(), "source": "auto"}
    return out


async def _load_pending(plan: RunPlan, providers: Sequence[Provider], journal: Journal) -> None:
    """Load the providers that still have calls to make.

    Loading a local model takes seconds to minutes: skip it when the journal already holds
    every call (re-recording a finished run calls no model).
    """
    retry_failed = plan.config.runner.retry_failed_on_resume
    for pp, provider in zip(plan.providers, providers, strict=True):
        if _pending_calls(pp, journal, retry_failed) == 0:
            continue
        await provider.load()
        # Now, not at the end: a session killed mid-run must not take the details with it.
        _remember_model_info(journal, pp.provider_id, describe_provider(provider))


async def _generate_one(
    plan: RunPlan,
    pp: ProviderPlan,
    provider: Provider,
    journal: Journal,
    on_record: OnRecord | None,
    sizing: Mapping[str, Any],
) -> list[CallRecord]:
    """One provider's calls, with its limits and the run's retry settings.

    More than one worker process (``sizing["workers"]``, from :func:`_size_workers`) shards
    the calls over them (:mod:`rai_harness.run.shards`), under the run's load profile too.
    """
    settings = plan.config.runner
    common: dict[str, Any] = {
        "provider_id": pp.provider_id,
        "provider_identity": pp.identity,
        "concurrency": pp.config.concurrency,
        "rpm": pp.config.rpm,
        "policy": RetryPolicy.for_provider(plan.config.runner, pp.config),
        "journal": journal,
        "price": pp.price,
        "secrets": plan.secrets,
        "retry_failed": settings.retry_failed_on_resume,
        "on_record": on_record,
        "seed": plan.config.seed,
        "load": plan.config.load,
    }
    workers = int(sizing.get("workers", 1))
    if workers > 1:
        from rai_harness.run.shards import generate_calls_sharded

        return await generate_calls_sharded(pp.config, pp.requests, workers=workers, **common)
    return await generate_calls(provider, pp.requests, **common)


def summarize_calls(plan: RunPlan, generated: Generated) -> CallSummary:
    """Fill hourly costs, summarize each provider and check the error budget."""
    records: list[CallRecord] = []
    summaries: dict[str, ProviderSummary] = {}
    for pp, outcome, info in zip(plan.providers, generated.outcomes, generated.model_infos, strict=True):
        priced = _apply_prices(list(outcome), pp.price)
        records.extend(priced)
        summaries[pp.provider_id] = summarize_provider(
            pp.config.kind, pp.config.model, priced, pp.price, info, load=plan.config.load
        )
    return CallSummary(
        records, summaries, error_budget_problems(summaries, plan.config.runner.max_error_rate)
    )


def _timing_quality(
    lag: dict[str, float | int], engine: Mapping[str, Any], *, timed_here: bool = True
) -> dict[str, Any]:
    """Event-loop lag during the calls and where they ran, with a warning when lag may have
    inflated the timings (only when some provider's calls were timed here)."""
    quality: dict[str, Any] = {"event_loop_lag_ms": lag, **engine}
    if timed_here and lag.get("p99_ms", 0.0) > LAG_WARN_MS:
        quality["warning"] = (
            f"the event loop lagged {lag['p99_ms']:.1f} ms at p99: recorded TTFT and latency may be "
            "late by up to that much (lower concurrency or move scoring out of the process)"
        )
    return quality


def run_sync(plan: RunPlan, **kwargs: Any) -> RunRecord:
    """Blocking wrapper around :func:`execute_run`."""
    return asyncio.run(execute_run(plan, **kwargs))


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
