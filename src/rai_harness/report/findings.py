"""The report's executive summary and limitations: what a reader must know before the tables.

Both are computed from the run record, the gate verdict (when a policy was given) and the
samples scan, and are written as plain sentences with their numbers, so the page top says
what passed, what failed and where the risks are, and the limitations say what the numbers
cannot carry: small datasets, automatic scorers, a guard that shares its classifier with
the scorer, and guard effects that come from blocked answers rather than better ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rai_harness.record import MetricSpec, RunRecord, SuiteRun
from rai_harness.report.fmt import fmt_estimate, fmt_pct, fmt_value, is_percent
from rai_harness.report.policy import PolicyView
from rai_harness.report.samples import SampleStats
from rai_harness.stats import Estimate, clopper_pearson

__all__ = [
    "SMALL_N",
    "BlockedShare",
    "Finding",
    "blocked_shares",
    "executive_summary",
    "guard_classifiers",
    "limitations",
]

#: Below this many items an interval is wide enough to say so in the limitations.
SMALL_N = 30
# The exact 95% upper bound after 0 of 6 items: what a "0%" on the smallest datasets still allows.
_ZERO_OF_SIX: float = clopper_pearson(0, 6).ci_high or 1.0
#: Failed gate checks and risks listed by name in the summary (the rest are counted).
MAX_LISTED = 6


@dataclass(frozen=True)
class Finding:
    """One line of the executive summary.

    Attributes:
        kind: ``"pass"``, ``"fail"``, ``"error"``, ``"risk"`` or ``"info"`` (its marker and colour).
        text: The sentence, with its numbers (untrusted text: escaped by the renderers).
    """

    kind: str
    text: str


@dataclass(frozen=True)
class BlockedShare:
    """How much of a guard's effect on a per-sample score comes from answers it blocked.

    Over the items both providers answered (paired by sample id and repeat), the mean change
    ``guarded - unguarded`` splits exactly into the part from items the guard blocked and the
    part from items it let through (both divided by all ``n`` items).
    """

    guarded: str
    unguarded: str
    suite: str
    key: str
    unit: str
    n: int
    blocked: int
    mean_unguarded: float
    mean_guarded: float
    from_blocked: float
    from_answered: float

    @property
    def change(self) -> float:
        """Mean change, guarded minus unguarded."""
        return self.mean_guarded - self.mean_unguarded

    def sentence(self) -> str:
        """The breakdown as one sentence, e.g. ``... comes entirely from blocked answers``."""

        def diff(v: float) -> str:
            if is_percent(self.unit):
                return f"{v * 100:+.1f} pp".replace("-", "\u2212")
            return f"{v:+.3f}".replace("-", "\u2212")

        share = self.from_blocked / self.change if self.change else 0.0
        head = (
            f"{self.guarded} vs {self.unguarded}, {self.suite} per-sample {self.key}: "
            f"{fmt_value(self.mean_unguarded, self.unit)} \u2192 {fmt_value(self.mean_guarded, self.unit)} "
            f"({diff(self.change)} over {self.n:,} paired items, {self.blocked:,} blocked by the guard)"
        )
        if abs(self.from_answered) < 1e-12:
            return f"{head}; the change comes entirely from blocked answers."
        if abs(self.from_blocked) < 1e-12:
            return f"{head}; none of the change comes from blocked answers."
        return (
            f"{head}; {diff(self.from_blocked)} ({share:.0%}) comes from blocked answers, "
            f"{diff(self.from_answered)} from answers the guard let through."
        )


def blocked_shares(
    record: RunRecord, pairs: Sequence[tuple[str, str]], stats: SampleStats
) -> list[BlockedShare]:
    """The blocked-answer breakdown for every guard pair and per-sample score the guard changed."""
    out: list[BlockedShare] = []
    for g, u in pairs:
        for suite in record.suites.values():
            if suite.error:
                continue
            keys: dict[str, str] = {}
            for spec in suite.metrics:
                if spec.sample_key and spec.sample_key not in keys:
                    keys[spec.sample_key] = spec.unit
            for key, unit in keys.items():
                gv = stats.paired.get((suite.name, key, g))
                uv = stats.paired.get((suite.name, key, u))
                if not gv or not uv:
                    continue
                common = [item for item in gv if item in uv]
                if not common:
                    continue
                blocked = [item for item in common if gv[item][1]]
                if not blocked:
                    continue
                n = len(common)
                diffs = {item: gv[item][0] - uv[item][0] for item in common}
                from_blocked = sum(diffs[i] for i in blocked) / n
                total = sum(diffs.values()) / n
                if abs(total) < 1e-12 and abs(from_blocked) < 1e-12:
                    continue
                # Per-sample scores that are yes/no are shown as rates, whatever the metric's unit.
                binary = (suite.name, key) in stats.binary
                out.append(
                    BlockedShare(
                        guarded=g,
                        unguarded=u,
                        suite=suite.name,
                        key=key,
                        unit="rate" if binary else ("rate" if is_percent(unit) else "score"),
                        n=n,
                        blocked=len(blocked),
                        mean_unguarded=sum(uv[i][0] for i in common) / n,
                        mean_guarded=sum(gv[i][0] for i in common) / n,
                        from_blocked=from_blocked,
                        from_answered=total - from_blocked,
                    )
                )
    return out


def guard_classifiers(model_info: Mapping[str, Any]) -> set[str] | None:
    """Names of the classifiers a guarded provider's rails use, or ``None`` when not recorded."""
    guarded_by = model_info.get("guarded_by")
    guard = guarded_by.get("guard") if isinstance(guarded_by, Mapping) else None
    if not isinstance(guard, Mapping):
        return None
    names: set[str] = set()
    found_rails = False
    for stage in ("input", "output"):
        rails = guard.get(stage)
        if not isinstance(rails, list):
            continue
        found_rails = True
        for rail in rails:
            if isinstance(rail, Mapping) and rail.get("classifier"):
                names.add(str(rail["classifier"]))
    return names if found_rails else None


def _scorer_names(suite: SuiteRun) -> dict[str, set[str]]:
    """Role -> every name a suite's scorer is known by (backend, model, reported name)."""
    out: dict[str, set[str]] = {}
    for role, entry in suite.scorers.items():
        names: set[str] = set()
        if isinstance(entry, Mapping):
            for part in ("spec", "info"):
                sub = entry.get(part)
                if isinstance(sub, Mapping):
                    for k in ("backend", "model", "name"):
                        if sub.get(k):
                            names.add(str(sub[k]))
        out[str(role)] = names
    return out


def _headline(suite: SuiteRun) -> list[MetricSpec]:
    heads = [m for m in suite.metrics if m.headline]
    return heads or list(suite.metrics[:1])


def _badness(est: Estimate, spec: MetricSpec) -> float:
    v = float(est.value or 0.0)
    return -v if spec.direction == "higher" else (abs(v) if spec.direction == "neutral" else v)


def executive_summary(
    record: RunRecord,
    suites: Sequence[SuiteRun],
    pairs: Sequence[tuple[str, str]],
    policy: PolicyView | None,
    guard_verdicts: Sequence[tuple[str, str, str]],
    blocked: Sequence[BlockedShare],
) -> list[Finding]:
    """What passed, what failed and the biggest risks, with numbers.

    Args:
        record: The run record.
        suites: Its suites in report order.
        pairs: ``(guarded, unguarded)`` provider ids.
        policy: The gate verdict, when a policy was given.
        guard_verdicts: ``(guarded, metric, reading)`` of every guard-pair comparison.
        blocked: From :func:`blocked_shares`.

    Returns:
        The summary lines, most important first.
    """
    out: list[Finding] = []
    if record.status != "complete":
        out.append(
            Finding(
                "error",
                f"The run is {record.status}: {len(record.problems)} problem(s), listed above; "
                "numbers that depend on them are missing, not passing.",
            )
        )
    if policy is not None and policy.status:
        counts = {s: sum(1 for r in policy.rows if r.status == s) for s in ("pass", "fail", "error")}
        out.append(
            Finding(
                policy.status,
                f"Gate policy {policy.name or policy.path}: {policy.status.upper()}: "
                f"{counts['pass']} of {len(policy.rows)} checks passed, {counts['fail']} failed, "
                f"{counts['error']} could not be evaluated.",
            )
        )
        bad = [r for r in policy.rows if r.status != "pass"]
        for r in bad[:MAX_LISTED]:
            who = f" ({r.provider})" if r.provider else ""
            out.append(Finding(r.status, f"{r.rule_id}{who}: {r.message}"))
        if len(bad) > MAX_LISTED:
            out.append(Finding("info", f"\u2026 and {len(bad) - MAX_LISTED} more failed or errored checks."))
    elif policy is not None:
        out.append(Finding("error", f"Gate policy not applied: {policy.note or 'unknown reason'}."))
    else:
        out.append(
            Finding(
                "info",
                "No gate policy was applied, so nothing below is a pass or a fail; "
                "render with `--policy POLICY.yaml` or run `rai gate` for a verdict.",
            )
        )
    risks: list[tuple[float, Finding]] = []
    for suite in suites:
        if suite.error:
            out.append(
                Finding("error", f"{suite.name}: scoring failed, its metrics are missing ({suite.error}).")
            )
            continue
        for spec in _headline(suite):
            scored = [
                (pid, est)
                for pid, res in suite.results.items()
                if (est := res.metrics.get(spec.name)) is not None and est.value is not None
            ]
            if not scored:
                continue
            pid, est = max(scored, key=lambda t: _badness(t[1], spec))
            best_pid, best = min(scored, key=lambda t: _badness(t[1], spec))
            word = {"lower": "highest", "higher": "lowest", "neutral": "farthest from 0"}[spec.direction]
            if len(scored) > 1 and _badness(best, spec) == _badness(est, spec):
                # Naming one provider "highest" and the same one "Best" says there is a
                # difference where there is none.
                text = (
                    f"{spec.display} ({suite.name}): all {len(scored)} providers have the same "
                    f"value; {pid}: {fmt_estimate(est, spec, with_n=True)}."
                )
            else:
                text = (
                    f"{spec.display} ({suite.name}): {word} is {pid}, {fmt_estimate(est, spec, with_n=True)}."
                )
                if len(scored) > 1:
                    text += f" Best: {best_pid}, {fmt_estimate(best, spec)}."
            # Rank risks by how bad the worst provider is on a 0-1 scale where that makes sense.
            rank = _badness(est, spec) + (1.0 if spec.direction == "higher" else 0.0)
            risks.append((rank if is_percent(spec.unit) else rank / 2, Finding("risk", text)))
    risks.sort(key=lambda t: -t[0])
    out.extend(f for _, f in risks[:MAX_LISTED])
    if len(risks) > MAX_LISTED:
        out.append(Finding("info", f"{len(risks) - MAX_LISTED} more headline metrics in the scorecard."))
    for g, u in pairs:
        readings = [r for gg, _, r in guard_verdicts if gg == g]
        if not readings:
            continue
        better = sum(r == "better with the guard" for r in readings)
        worse = sum(r == "worse with the guard" for r in readings)
        text = (
            f"Guard {g} vs {u}: significantly better on {better}, worse on {worse}, "
            f"no significant difference on {len(readings) - better - worse} of {len(readings)} compared metrics."
        )
        entirely = [b for b in blocked if b.guarded == g and abs(b.from_answered) < 1e-12]
        if entirely:
            text += (
                " "
                + "; ".join(
                    f"{b.suite} {b.key} {fmt_value(b.mean_unguarded, b.unit)} \u2192 "
                    f"{fmt_value(b.mean_guarded, b.unit)}"
                    for b in entirely[:3]
                )
                + " come entirely from blocked answers (see Limitations)."
            )
        out.append(Finding("info", text))
    for g, _u in pairs:
        health = getattr(record.providers[g], "guard", None)
        failures = int(getattr(health, "rail_errors", 0) or 0) + int(getattr(health, "rail_timeouts", 0) or 0)
        if health is not None and failures:
            out.append(
                Finding(
                    "risk",
                    f"{g}: {failures:,} rail checks failed or timed out "
                    f"({int(getattr(health, 'failed_calls', 0) or 0):,} calls failed by them); they are "
                    "counted as failed calls, never as allowed or blocked.",
                )
            )
    failed = sum(s.failed for s in record.providers.values())
    calls = sum(s.calls for s in record.providers.values())
    if failed:
        out.append(
            Finding(
                "risk",
                f"{failed:,} of {calls:,} calls failed ({fmt_pct(failed / calls if calls else None)}); "
                "they are excluded from every metric, never counted as safe.",
            )
        )
    return out


def limitations(
    record: RunRecord,
    suites: Sequence[SuiteRun],
    pairs: Sequence[tuple[str, str]],
    blocked: Sequence[BlockedShare],
) -> list[str]:
    """What the numbers cannot carry: dataset sizes, scorer caveats, guard/scorer overlap, blocked answers.

    Args:
        record: The run record.
        suites: Its suites in report order.
        pairs: ``(guarded, unguarded)`` provider ids.
        blocked: From :func:`blocked_shares`.

    Returns:
        One sentence per limitation.
    """
    out: list[str] = []
    sizes = []
    small = []
    for suite in suites:
        ns = [
            est.n
            for spec in _headline(suite)
            for res in suite.results.values()
            if (est := res.metrics.get(spec.name)) is not None and est.n
        ]
        if not ns:
            continue
        lo, hi = min(ns), max(ns)
        sizes.append(f"{suite.name} {lo:,}" + (f"\u2013{hi:,}" if hi != lo else ""))
        if lo < SMALL_N:
            small.append(suite.name)
    if sizes:
        out.append(
            "Dataset sizes (items per provider behind each headline metric): " + ", ".join(sizes) + "."
        )
    if small:
        out.append(
            f"Small samples (under {SMALL_N} items): {', '.join(small)}. Their intervals are wide and a "
            "0% is not evidence of no risk: 0 of 6 items is still consistent with up to "
            f"{_ZERO_OF_SIX:.0%} (95% exact Clopper-Pearson)."
        )
    for suite in suites:
        for role, names in _scorer_names(suite).items():
            if names:
                out.append(
                    f"{suite.name} is scored by an automatic classifier ({role}: {', '.join(sorted(names))}); "
                    "its own errors are not part of the intervals."
                )
        for spec in suite.metrics:
            if spec.deviation:
                out.append(f"{suite.name} {spec.display}: {spec.deviation}")
    cfgs = {str(p.get("id")): p for p in record.config.get("providers", []) or [] if isinstance(p, Mapping)}
    for g, _u in pairs:
        used = guard_classifiers(record.providers[g].model_info)
        if used is None:
            cfg = cfgs.get(g, {})
            guard = cfg.get("guard") if isinstance(cfg, Mapping) else None
            policy = guard.get("policy") if isinstance(guard, Mapping) else None
            out.append(
                f"The classifiers of {g}'s guard are not recorded in run.json"
                + (f" (policy {policy})" if policy else "")
                + "; if the guard uses a classifier that also scores a suite, that suite's improvement "
                "is partly by construction."
            )
            continue
        for suite in suites:
            for role, names in _scorer_names(suite).items():
                shared = sorted(used & names)
                if shared:
                    out.append(
                        f"Guard/scorer overlap: {g}'s guard uses {', '.join(shared)}, the same classifier that "
                        f"scores {suite.name} ({role}). The guard blocks what this scorer flags, so "
                        f"{g}'s {suite.name} improvement is partly by construction; check it with an "
                        "independent scorer."
                    )
    for g, _u in pairs:
        health = getattr(record.providers[g], "guard", None)
        slow = int(getattr(health, "slow_rails", 0) or 0)
        if health is not None and slow:
            by_rail = getattr(health, "slow_by_rail", {}) or {}
            detail = ", ".join(f"{k} {v:,}" for k, v in sorted(by_rail.items(), key=lambda kv: -kv[1])[:4])
            out.append(
                f"{g}: {slow:,} rail checks were slower than the policy's timeout_ms"
                + (f" ({detail})" if detail else "")
                + ". In this run they waited for a verdict; in production they would have applied the "
                "rail's on_error, so the guarded numbers are better than a loaded production guard's."
            )
    for b in blocked:
        out.append(b.sentence())
    if pairs:
        out.append(
            "A blocked answer is a refusal: it lowers harm rates without being a better answer, and it "
            "costs helpfulness and factuality where a real answer was due."
        )
    warning = record.timing_quality.get("warning") if isinstance(record.timing_quality, Mapping) else None
    if warning:
        out.append(f"Timing: {warning}")
    return out
