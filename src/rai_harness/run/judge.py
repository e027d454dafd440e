"""The judge stage: model-graded scoring, between generation and scoring.

A judge is a provider listed under ``judges:`` in the run config and named by a suite's
``judge:``. After generation, every successful output of a judged suite becomes one judge
prompt per rubric (:meth:`~rai_harness.suites.base.Suite.judge_tasks`), sent
``judge_repeats`` times. Judge calls go through the same runner as the audited calls
(:func:`~rai_harness.run.runner.generate_calls`): bounded concurrency, retries, timeouts,
and the same journal, so they are resumed after a crash and reused by key (a judge prompt
that was already graded, for another provider's identical answer or in an earlier run
into the same folder, is not sent again).

Judge calls are kept apart from the audited providers: their records go to
``judge_calls.jsonl`` (not ``samples.jsonl``), their latency, tokens and cost to
``run.json``'s ``judges``, and neither counts in an audited provider's error budget.
A judge's own failed-call share above ``runner.max_error_rate`` marks the run failed.

Decoding: temperature 0 unless the judge's ``params.temperature`` is set, the rubric's
``max_tokens`` unless the judge's ``params.max_tokens`` is set, and the per-request seed
of the run (a hash of the judge's base seed, the judge prompt's id and the judge repeat),
sent to every provider that takes one.

Each reply is parsed by :func:`~rai_harness.suites.judging.parse_verdict`; the verdicts are
folded per output into ``scores["judge"]`` (``labels`` with ``None`` for a reply without a
label or a failed call, ``status``, ``how``, and the first reply, truncated).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rai_harness.errors import ConfigError
from rai_harness.pricing import PriceTable, ResolvedPrice
from rai_harness.providers.base import ProviderConfig, build_provider, describe_provider
from rai_harness.record import CallRecord, JudgeInfo, MetricSpec, ProviderSummary
from rai_harness.run.journal import Journal, call_key
from rai_harness.run.runner import RetryPolicy, generate_calls
from rai_harness.run.score import JudgedSuite, PlannedSuite, item_key, summarize_provider
from rai_harness.stats import Estimate
from rai_harness.suites.base import SuiteOutput
from rai_harness.suites.judging import get_rubric, parse_verdict
from rai_harness.types import ChatRequest, GenerationParams

if TYPE_CHECKING:
    from rai_harness.run.execute import RunPlan

__all__ = [
    "JUDGE_CALLS_FILE",
    "JUDGE_KAPPA_METRIC",
    "JudgePlan",
    "JudgeStage",
    "SuiteJudge",
    "attach_judge",
    "fold_verdicts",
    "judge_info",
    "judge_kappa",
    "judge_params",
    "judge_reproducibility",
    "judge_requests",
    "load_calibration",
    "plan_judges",
    "run_judge_stage",
    "same_judge",
    "self_judged",
]

#: Judge calls (the samples format), apart from the audited providers' samples.jsonl.
JUDGE_CALLS_FILE = "judge_calls.jsonl"
#: Characters of a judge reply kept in the output's scores (the full reply is in judge_calls.jsonl).
REPLY_KEEP_CHARS = 500

#: The judge's calibrated kappa, added to each provider's metrics of a judged suite (gate on it).
JUDGE_KAPPA_METRIC = MetricSpec(
    name="judge_kappa",
    display="Judge agreement (Cohen's kappa)",
    direction="higher",
    unit="score",
    definition="Cohen's kappa of the suite's judge against human labels, from its calibration file "
    "(`rai judge calibrate`); the same for every provider.",
    source="Cohen 1960",
    deviation="Measured on the calibration set, not on this run's items; bootstrap interval.",
    graded_by="judge",
)


@dataclass(frozen=True)
class JudgePlan:
    """A judge provider, resolved at plan time."""

    config: ProviderConfig
    price: ResolvedPrice | None

    @property
    def judge_id(self) -> str:
        """The judge's id."""
        return self.config.provider_id


@dataclass(frozen=True)
class SuiteJudge:
    """Which judge grades a suite, how often, and its calibration (if given)."""

    judge_id: str
    repeats: int = 1
    calibration: Mapping[str, Any] | None = None


def load_calibration(path: Path, *, file: str | None, key_path: str) -> dict[str, Any]:
    """Read a ``calibration.json`` written by ``rai judge calibrate``.

    Raises:
        ConfigError: Unreadable, not JSON, without an ``agreement`` section, or marked unusable
            (too many of its judge calls failed).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"cannot read judge calibration {path}: {exc}; write one with `rai judge calibrate`",
            file=file,
            key_path=key_path,
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("agreement"), dict):
        raise ConfigError(
            f"{path} is not a calibration file from `rai judge calibrate` (no `agreement`)",
            file=file,
            key_path=key_path,
        )
    if data.get("usable") is False:
        why = "; ".join(str(p) for p in data.get("problems") or ()) or "marked unusable"
        raise ConfigError(
            f"judge calibration {path} is unusable ({why}); calibrate again once the judge answers",
            file=file,
            key_path=key_path,
        )
    return {**data, "file": str(path)}


def plan_judges(
    judges: Sequence[ProviderConfig],
    table: PriceTable,
    resolve: Callable[[ProviderConfig], ProviderConfig],
) -> tuple[JudgePlan, ...]:
    """Resolve each judge's paths and price (plan time, no call is made)."""
    plans = []
    for i, raw in enumerate(judges):
        cfg = resolve(raw)
        raw.check_requirements()
        validate = getattr(cfg, "validate_files", None)
        if callable(validate):
            try:
                validate()
            except ConfigError as exc:
                raise ConfigError(exc.detail, file=exc.file, key_path=exc.key_path or f"judges[{i}]") from exc
        plans.append(JudgePlan(cfg, table.resolve(cfg.kind, cfg.model, cfg.pricing)))
    return tuple(plans)


def attach_judge(
    ps: PlannedSuite,
    *,
    judge: str | None,
    repeats: int,
    calibration: str | None,
    base: Path | None,
    file: str | None,
    where: str,
) -> PlannedSuite:
    """Give a planned suite its judge (or refuse a suite that cannot be judged)."""
    if judge is None:
        return ps
    if not ps.suite.judge_rubrics:
        raise ConfigError(
            f"suite {ps.name!r} has no model-graded metrics, so it takes no `judge`",
            file=file,
            key_path=f"{where}.judge",
        )
    cal = None
    if calibration:
        path = Path(calibration)
        if not path.is_absolute() and base is not None and (base / path).exists():
            path = base / path
        cal = load_calibration(path, file=file, key_path=f"{where}.judge_calibration")
    return dataclasses.replace(ps, judge=SuiteJudge(judge, repeats, cal))


def judge_params(config: ProviderConfig, rubric_max_tokens: int) -> GenerationParams:
    """The judge's decoding: temperature 0 and the rubric's budget unless its config sets them."""
    params = config.params.to_params()
    explicit = config.params.model_fields_set
    return dataclasses.replace(
        params,
        temperature=params.temperature if "temperature" in explicit else 0.0,
        max_tokens=params.max_tokens if "max_tokens" in explicit else rubric_max_tokens,
    )


def judge_requests(
    suites: Sequence[PlannedSuite],
    records: Sequence[CallRecord],
    judges: Mapping[str, JudgePlan],
) -> dict[str, list[ChatRequest]]:
    """Judge id -> the judge calls for every successful output of the suites it grades (unseeded)."""
    out: dict[str, list[ChatRequest]] = defaultdict(list)
    by_suite: dict[str, list[CallRecord]] = defaultdict(list)
    for r in records:
        if r.ok and r.metadata and "suite" in r.metadata:
            by_suite[str(r.metadata["suite"])].append(r)
    for ps in suites:
        if ps.judge is None:
            continue
        plan = judges[ps.judge.judge_id]
        samples = ps.sample_map()
        for r in by_suite.get(ps.name, []):
            sample = samples.get(str(r.metadata.get("item")))
            if sample is None:
                continue
            output = SuiteOutput(r.provider_id, sample, r.repeat, r.output or "")
            for task in ps.suite.judge_tasks(output):
                rubric = get_rubric(task.rubric)
                params = judge_params(plan.config, rubric.max_tokens)
                sample_id = f"{item_key(ps.name, sample.id)}@{r.provider_id}#{r.repeat}:{rubric.name}"
                for j in range(ps.judge.repeats):
                    out[plan.judge_id].append(
                        ChatRequest(
                            sample_id=sample_id,
                            messages=task.messages,
                            params=params,
                            repeat=j,
                            metadata={
                                "judged_suite": ps.name,
                                "item": sample.id,
                                "judged_provider": r.provider_id,
                                "judged_repeat": r.repeat,
                                "rubric": rubric.name,
                                "judge": plan.judge_id,
                            },
                        )
                    )
    return dict(out)


JudgementKey = tuple[str, str, str, int]


def fold_verdicts(records: Sequence[CallRecord]) -> dict[JudgementKey, dict[str, Any]]:
    """Parse every judge reply; ``(suite, provider, item, repeat)`` -> ``scores["judge"]`` entry."""
    grouped: dict[JudgementKey, dict[str, list[CallRecord]]] = defaultdict(lambda: defaultdict(list))
    judge_of: dict[JudgementKey, str] = {}
    for r in records:
        m = r.metadata
        key = (str(m["judged_suite"]), str(m["judged_provider"]), str(m["item"]), int(m["judged_repeat"]))
        grouped[key][str(m["rubric"])].append(r)
        judge_of[key] = str(m["judge"])
    out: dict[JudgementKey, dict[str, Any]] = {}
    for key, by_rubric in grouped.items():
        rubrics: dict[str, Any] = {}
        for name, calls in by_rubric.items():
            rubric = get_rubric(name)
            labels: list[str | None] = []
            status: list[str] = []
            how: list[str] = []
            for call in sorted(calls, key=lambda c: c.repeat):
                if not call.ok:
                    labels.append(None)
                    status.append("failed")
                    how.append(call.error.type if call.error else "error")
                    continue
                verdict = parse_verdict(rubric, call.output)
                labels.append(verdict.label)
                status.append(verdict.status)
                how.append(verdict.how)
            first = next((c.output for c in sorted(calls, key=lambda c: c.repeat) if c.ok), None)
            rubrics[name] = {
                "labels": labels,
                "status": status,
                "how": how,
                "reply": (first or "")[:REPLY_KEEP_CHARS] if first is not None else None,
            }
        out[key] = {"id": judge_of[key], "rubrics": rubrics}
    return out


def judge_info(ps: PlannedSuite, plan: JudgePlan) -> JudgeInfo:
    """What the run record says about a suite's judge."""
    assert ps.judge is not None
    cal = ps.judge.calibration
    summary = None
    if cal is not None:
        agreement = cal.get("agreement", {})
        summary = {
            "file": cal.get("file"),
            "rubric": cal.get("rubric"),
            "data": cal.get("data"),
            "judge": cal.get("judge"),
            "accuracy": agreement.get("accuracy"),
            "kappa": agreement.get("kappa"),
            "coverage": agreement.get("coverage"),
            "n": agreement.get("n"),
            "labels": agreement.get("labels"),
            "columns": agreement.get("columns"),
            "confusion": agreement.get("confusion"),
            # A calibration of another model or endpoint says nothing about this judge.
            "same_judge": same_judge(cal, plan),
        }
    return JudgeInfo(
        id=plan.judge_id,
        kind=plan.config.kind,
        model=plan.config.model,
        rubrics=list(ps.suite.judge_rubrics),
        repeats=ps.judge.repeats,
        calibration=summary,
    )


def judge_reproducibility(judges: Sequence[JudgePlan]) -> tuple[dict[str, Any], list[str]]:
    """Per judge: how its grades are seeded and what a rerun may change (for ``run.json``)."""
    out: dict[str, Any] = {}
    caveats: list[str] = []
    for jp in judges:
        cfg = jp.config
        support = cfg.seed_support
        explicit = cfg.params.model_fields_set
        temperature = cfg.params.temperature if "temperature" in explicit else 0.0
        if support in ("exact", "replay"):
            note = "same grades for the same config, seed, machine and software"
        else:
            note = (
                f"temperature {temperature:g}"
                + (" and the request seed" if support == "best_effort" else "")
                + ": the server's determinism is best effort, so grades may change between runs "
                "(judge_repeats measures how often)"
            )
            caveats.append(f"judge {jp.judge_id}: {note}")
        out[jp.judge_id] = {
            "kind": cfg.kind,
            "seed_support": support,
            "temperature": temperature,
            "base_seed": cfg.params.seed,
            "note": note,
        }
    return out, caveats


def same_judge(calibration: Mapping[str, Any], plan: JudgePlan) -> bool:
    """Whether a calibration measured this judge (same kind, model, endpoint: its cache identity)."""
    return (calibration.get("judge") or {}).get("identity") == plan.config.cache_identity()


def judge_kappa(ps: PlannedSuite, plan: JudgePlan) -> Estimate:
    """The judge's calibrated kappa as an estimate (empty, with the reason, when it has none).

    A calibration of another judge configuration counts as none: its kappa is another
    model's, and a gate rule on ``judge_kappa`` must report it not computed, not pass on it.
    """
    cal = ps.judge.calibration if ps.judge else None
    kappa = (cal or {}).get("agreement", {}).get("kappa")
    if cal is None or not isinstance(kappa, dict):
        return Estimate.empty("judge not calibrated: set judge_calibration (rai judge calibrate)")
    if not same_judge(cal, plan):
        return Estimate.empty(
            f"judge not calibrated: {cal.get('file')} measured another judge configuration "
            f"({_describe((cal.get('judge') or {}).get('identity'))}, not "
            f"{_describe(plan.config.cache_identity())}); calibrate this judge"
        )
    return Estimate.model_validate(kappa)


def _describe(identity: Any) -> str:
    """``kind:model @ base_url`` of a cache identity (for messages)."""
    if not isinstance(identity, Mapping):
        return "unknown"
    where = f" @ {identity['base_url']}" if identity.get("base_url") else ""
    return f"{identity.get('kind')}:{identity.get('model')}{where}"


def self_judged(judge: ProviderConfig, providers: Sequence[ProviderConfig]) -> list[str]:
    """The audited providers that are the judge's own model (same kind, model and endpoint).

    A model grading its own answers favours them (self-preference bias: Panickssery et al.
    2024, "LLM Evaluators Recognize and Favor Their Own Generations"), so the record says so.
    """
    mine = judge.cache_identity()
    keys = ("kind", "model", "base_url")

    def same(other: dict[str, Any]) -> bool:
        if other == mine:
            return True
        return all(k in mine for k in keys) and all(other.get(k) == mine[k] for k in keys)

    return sorted(p.provider_id for p in providers if same(p.cache_identity()))


@dataclass(frozen=True)
class JudgeStage:
    """What the judge stage hands to scoring and to the run record."""

    judgements: dict[JudgementKey, dict[str, Any]]
    records: list[CallRecord]
    summaries: dict[str, ProviderSummary]
    judged: dict[str, JudgedSuite]
    problems: list[str]


async def run_judge_stage(
    plan: RunPlan,
    records: Sequence[CallRecord],
    journal: Journal,
    *,
    seed_requests: Callable[[Sequence[ChatRequest], int], list[ChatRequest]],
    price_records: Callable[[list[CallRecord], ResolvedPrice | None], list[CallRecord]],
) -> JudgeStage:
    """Send every judged output to its judge through the runner; parse and fold the verdicts.

    Args:
        plan: The run plan (its suites with a judge, and the judges).
        records: The run's generation records.
        journal: The run's journal (judge calls are journaled and reused like any call).
        seed_requests: Gives each request its per-call seed (the run's recipe).
        price_records: Applies the run's prices once all of a provider's calls are known.
    """
    judges = {j.judge_id: j for j in plan.judges}
    judged_suites = [ps for ps in plan.suites if ps.judge is not None]
    if not judged_suites:
        return JudgeStage({}, [], {}, {}, [])
    wanted = judge_requests(judged_suites, records, judges)
    settings = plan.config.runner
    all_records: list[CallRecord] = []
    summaries: dict[str, ProviderSummary] = {}
    problems: list[str] = []
    for judge_id, requests in wanted.items():
        jp = judges[judge_id]
        seeded = seed_requests(requests, plan.config.seed)
        provider = build_provider(jp.config)
        try:
            identity = jp.config.cache_identity()
            # A judge whose verdicts are all journaled loads no model.
            if any(journal.get(call_key(identity, r)) is None for r in seeded):
                await provider.load()
            got = await generate_calls(
                provider,
                seeded,
                provider_id=judge_id,
                provider_identity=identity,
                concurrency=jp.config.concurrency,
                rpm=jp.config.rpm,
                policy=RetryPolicy.for_provider(settings, jp.config),
                journal=journal,
                price=jp.price,
                secrets=plan.secrets,
                retry_failed=settings.retry_failed_on_resume,
                seed=plan.config.seed,
            )
            info = describe_provider(provider)
            own = self_judged(jp.config, [pp.config for pp in plan.providers])
            if own:
                # Recorded in run.json's judges (the report notes it beside the judged metrics).
                info = {**info, "self_judging": own}
        finally:
            with contextlib.suppress(Exception):
                await provider.aclose()
        priced = price_records(list(got), jp.price)
        all_records.extend(priced)
        summary = summarize_provider(jp.config.kind, jp.config.model, priced, jp.price, info)
        summaries[judge_id] = summary
        if summary.error_rate > settings.max_error_rate:
            problems.append(
                f"judge {judge_id}: {summary.failed} of {summary.calls} judge calls failed "
                f"({summary.error_rate:.1%} > max_error_rate {settings.max_error_rate:.1%})"
            )
    judged = {
        ps.name: JudgedSuite(
            info=judge_info(ps, judges[ps.judge.judge_id]),
            metrics=(*ps.suite.judge_metrics, JUDGE_KAPPA_METRIC),
            constants={"judge_kappa": judge_kappa(ps, judges[ps.judge.judge_id])},
        )
        for ps in judged_suites
    }
    return JudgeStage(fold_verdicts(all_records), all_records, summaries, judged, problems)
