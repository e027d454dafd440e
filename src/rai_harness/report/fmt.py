"""Number formatting shared by the HTML, Markdown and JSON reports.

One set of rules so a number reads the same everywhere:

* rates and probabilities as percentages with one decimal, the 95% interval in brackets
  without repeating the sign: ``12.3% [9.1, 16.0]``; a nonzero value under 0.05% is ``<0.1%``
  rather than a misleading ``0.0%``;
* scores and similarities with three decimals (signed when 0 is the ideal): ``+0.123 [0.080, 0.170]``;
* differences of rates in percentage points: ``−3.2 pp [−5.1, −1.0]``;
* seconds as ``340 ms`` / ``1.24 s`` / ``12.4 s``; money as ``$0.00423`` / ``$1.24`` / ``$1,234``;
* anything missing as ``n/a`` followed by the reason, never as a blank or a made-up zero;
* every interval with what it is over, in plain sight (not only on hover): ``37/300`` for a
  rate, ``n = 80, 8 clusters`` otherwise, and the interval's method. A zero-width interval
  (``[0.0, 0.0]``, a bootstrap of identical values) is never shown as certainty: a rate with
  its count is shown with its exact (Clopper-Pearson) interval instead
  (``0.0% [0.0, 45.9] (0/6; 95% Clopper-Pearson (exact) ...)``),
  anything else is flagged as having no spread in the data.

Minus signs are the typographic U+2212, so columns of signed numbers line up.
"""

from __future__ import annotations

import math

from rai_harness.record import MetricSpec
from rai_harness.stats import Estimate, clopper_pearson

__all__ = [
    "MINUS",
    "NA",
    "WIDER_BY_DESIGN",
    "fmt_bound",
    "fmt_count",
    "fmt_diff",
    "fmt_duration",
    "fmt_estimate",
    "fmt_n",
    "fmt_p",
    "fmt_pct",
    "fmt_rate_per_s",
    "fmt_seconds",
    "fmt_usd",
    "fmt_value",
    "interval_label",
    "is_degenerate",
    "is_percent",
    "method_name",
    "na",
]

NA = "n/a"
MINUS = "\u2212"
_PERCENT_UNITS = frozenset({"rate", "probability"})


def na(reason: str | None) -> str:
    """``"n/a (reason)"``, or plain ``"n/a"`` without a reason."""
    return f"{NA} ({reason})" if reason else NA


def is_percent(unit: str) -> bool:
    """Whether numbers of this unit are shown as percentages."""
    return unit in _PERCENT_UNITS


def _signed(text: str, value: float, signed: bool) -> str:
    if value < 0 or text.startswith("-"):
        return MINUS + text.lstrip("-")
    return ("+" + text) if signed and value > 0 else text


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def fmt_bound(value: float, unit: str, *, signed: bool = False) -> str:
    """A number in a metric's unit without a ``%`` sign (interval bounds, axis ticks)."""
    if is_percent(unit):
        pct = value * 100
        if 0 < abs(pct) < 0.05:
            return ("<" if pct > 0 else ">" + MINUS) + "0.1"
        return _signed(f"{abs(pct):.1f}", pct, signed) if pct else "0.0"
    if unit == "count":
        return _signed(f"{abs(value):,.0f}", value, signed)
    return _signed(f"{abs(value):.3f}", value, signed) if value else "0.000"


def fmt_value(value: float | None, unit: str, *, signed: bool = False, reason: str | None = None) -> str:
    """A point value in a metric's unit: ``12.3%``, ``0.123``, ``1,234``; ``n/a`` when missing."""
    if not _finite(value):
        return na(reason)
    assert value is not None
    text = fmt_bound(value, unit, signed=signed)
    return text + "%" if is_percent(unit) else text


_METHODS = {
    "clopper-pearson": "Clopper-Pearson (exact)",
    "wilson": "Wilson",
    "bootstrap": "bootstrap",
    "cluster-bootstrap": "cluster bootstrap",
    "expanded-bootstrap": "expanded percentile bootstrap",
    "expanded-cluster-bootstrap": "expanded cluster bootstrap",
    "bootstrap-se-t": "bootstrap-SE t",
    "cluster-bootstrap-se-t": "cluster bootstrap-SE t",
    "studentized-bootstrap": "studentized bootstrap (bootstrap-t)",
    "studentized-cluster-bootstrap": "studentized cluster bootstrap (bootstrap-t)",
    "symmetric-studentized-bootstrap": "symmetric studentized bootstrap (bootstrap-t)",
    "symmetric-studentized-cluster-bootstrap": "symmetric studentized cluster bootstrap (bootstrap-t)",
    "sidak-t": "\u0160id\u00e1k t (simultaneous)",
    "exact": "exact (Clopper-Pearson)",
    "none": "no interval",
}


_LONG_TAIL = (
    "long-tail end at the small-sample level and a count floor: above 95% by design at n <= 10 "
    "(up to ~99% on sparse counts)"
)

_SYMMETRIC = (
    "paired difference of unbounded values, symmetric bootstrap-t: conservative (above 95%) on skewed "
    "values at n <= 10"
)

#: Methods whose coverage is above nominal on purpose, and why (the report says so beside them).
WIDER_BY_DESIGN = {
    "clopper-pearson": "at least 95% for every true rate: wider than 95% by design",
    "exact": "at least 95% for every true rate: wider than 95% by design",
    "sidak-t": "simultaneous over all pairs of groups: wider than 95% by design",
    "studentized-bootstrap": _LONG_TAIL,
    "studentized-cluster-bootstrap": _LONG_TAIL,
    "symmetric-studentized-bootstrap": _SYMMETRIC,
    "symmetric-studentized-cluster-bootstrap": _SYMMETRIC,
}


def method_name(method: str) -> str:
    """The interval method as a reader names it (``cluster-bootstrap`` -> ``cluster bootstrap``).

    Methods this module does not know (the stats package may add some) are shown with their
    dashes and underscores turned into spaces, never dropped.
    """
    return _METHODS.get(method, method.replace("-", " ").replace("_", " "))


def is_degenerate(est: Estimate) -> bool:
    """A zero-width interval over some items: a bootstrap of identical values, not certainty."""
    return (
        est.n > 0
        and _finite(est.value)
        and _finite(est.ci_low)
        and _finite(est.ci_high)
        and est.ci_low == est.ci_high
    )


#: Interval methods for a proportion of n items: only their value * n is a count of successes.
_PROPORTION_METHODS = frozenset({"wilson", "exact", "clopper-pearson", "jeffreys", "agresti-coull"})


def _successes(est: Estimate, unit: str) -> int | None:
    """The numerator of a rate: recorded, or recovered for a proportion interval (exact, Wilson).

    Not recovered for bootstrap estimates: a gap or a mean of rates is a "rate" too, but
    ``value * n`` of it counts nothing.
    """
    if est.successes is not None:
        return est.successes
    if not is_percent(unit) or est.value is None or est.n <= 0 or est.method not in _PROPORTION_METHODS:
        return None
    k = round(est.value * est.n)
    return k if abs(est.value * est.n - k) < 1e-6 else None


def fmt_n(est: Estimate, unit: str = "score") -> str:
    """What an estimate is over: ``37/300`` for a rate, ``n = 80, 8 clusters`` otherwise."""
    k = _successes(est, unit) if is_percent(unit) else None
    text = f"{k:,}/{est.n:,}" if k is not None else f"n = {est.n:,}"
    if est.n_clusters is not None:
        text += f", {est.n_clusters:,} cluster{'s' if est.n_clusters != 1 else ''}"
    return text


def interval_label(est: Estimate, unit: str = "score") -> str:
    """The line shown beside an interval: n (or k/n), the method, and a degenerate interval's caveat."""
    parts = [fmt_n(est, unit)]
    if not _finite(est.ci_low):
        parts.append("no interval")
    elif is_degenerate(est):
        k = _successes(est, unit)
        if k is not None:
            parts.append(
                f"{est.confidence:.0%} {method_name('clopper-pearson')}; the recorded "
                f"{method_name(est.method)} interval has zero width"
            )
        else:
            parts.append(
                f"{method_name(est.method)} interval has zero width: no spread in {est.n:,} items, not certainty"
            )
            if is_percent(unit) and est.value in (0.0, 1.0):
                # What the same result would allow on yes/no items: 0 of 6 still allows up to 39%.
                w = clopper_pearson(0 if est.value == 0.0 else est.n, est.n, est.confidence)
                bound = w.ci_high if est.value == 0.0 else w.ci_low
                if bound is not None:
                    word = "up to" if est.value == 0.0 else "as low as"
                    parts.append(
                        f"as {int(est.value * est.n)}/{est.n:,} yes/no items it would allow {word} "
                        f"{fmt_bound(bound, unit)}%"
                    )
    else:
        parts.append(f"{est.confidence:.0%} {method_name(est.method)}")
    return "; ".join(parts)


def _shown_bounds(est: Estimate, unit: str) -> tuple[float, float] | None:
    """The interval to print: the recorded one, or the exact one for a rate whose interval has zero width."""
    if not (_finite(est.ci_low) and _finite(est.ci_high)):
        return None
    assert est.ci_low is not None and est.ci_high is not None
    if is_degenerate(est):
        k = _successes(est, unit)
        if k is not None:
            # A clustered rate's trials are its clusters, not its outputs: the repeats of one
            # prompt are alike (a greedy model, a temperature-0 judge), so counting each
            # output as a trial printed [0, 7.4] % for 12 prompts instead of [0, 26.5] %.
            trials = est.n_clusters or est.n
            w = clopper_pearson(round(k * trials / est.n) if est.n else 0, trials, est.confidence)
            if w.ci_low is not None and w.ci_high is not None:
                return w.ci_low, w.ci_high
    return est.ci_low, est.ci_high


def fmt_estimate(
    est: Estimate | None, spec: MetricSpec | None = None, *, unit: str | None = None, with_n: bool = False
) -> str:
    """``12.3% [9.1, 16.0]``; the value alone when there is no interval; ``n/a (why)`` when missing.

    Args:
        est: The estimate.
        spec: Its metric (unit and direction); default unit ``score``.
        unit: Overrides the spec's unit.
        with_n: Append :func:`interval_label` in parentheses: ``12.3% [9.1, 16.0] (37/300; 95% Clopper-Pearson (exact))``.
            Tables that show the label in a separate line (the scorecard) leave it off.
    """
    if est is None:
        return na("not computed")
    u = unit or (spec.unit if spec is not None else "score")
    signed = spec is not None and spec.direction == "neutral" and not is_percent(u)
    if not _finite(est.value):
        return na(est.note or ("no items" if est.n == 0 else "not computed"))
    text = fmt_value(est.value, u, signed=signed)
    bounds = _shown_bounds(est, u)
    if bounds is not None:
        text += f" [{fmt_bound(bounds[0], u, signed=signed)}, {fmt_bound(bounds[1], u, signed=signed)}]"
    if with_n:
        text += f" ({interval_label(est, u)})"
    return text


def fmt_diff(est: Estimate, unit: str) -> str:
    """A difference between providers: percentage points for rates, signed numbers otherwise."""
    if not _finite(est.value):
        return na(est.note or "not computed")
    assert est.value is not None

    def one(v: float) -> str:
        if is_percent(unit):
            return _signed(f"{abs(v) * 100:.1f}", v, True) if round(v * 100, 1) else "0.0"
        return _signed(f"{abs(v):.3f}", v, True) if round(v, 3) else "0.000"

    suffix = " pp" if is_percent(unit) else ""
    text = one(est.value) + suffix
    if _finite(est.ci_low) and _finite(est.ci_high):
        assert est.ci_low is not None and est.ci_high is not None
        text += f" [{one(est.ci_low)}, {one(est.ci_high)}]"
    return text


def fmt_p(p: float | None) -> str:
    """A p-value: ``< 0.001``, ``0.034``; ``n/a`` when there is none."""
    if not _finite(p):
        return NA
    assert p is not None
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def fmt_seconds(s: float | None, reason: str | None = None) -> str:
    """Seconds, with a unit that fits: ``340 ms``, ``1.24 s``, ``12.4 s``, ``312 s``."""
    if not _finite(s):
        return na(reason)
    assert s is not None
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 10:
        return f"{s:.2f} s"
    if s < 100:
        return f"{s:.1f} s"
    return f"{s:,.0f} s"


def fmt_duration(s: float | None) -> str:
    """A run's duration: ``42 s``, ``3 min 05 s``, ``2 h 04 min``."""
    if not _finite(s):
        return NA
    assert s is not None
    total = round(s)
    if total < 60:
        return f"{s:.1f} s" if s < 10 else f"{total} s"
    minutes, seconds = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def fmt_usd(v: float | None, reason: str | None = None) -> str:
    """Dollars with three significant digits below $1: ``$0.00423``, ``$1.24``, ``$1,234``."""
    if not _finite(v):
        return na(reason)
    assert v is not None
    if v == 0:
        return "$0"
    if abs(v) >= 100:
        return f"${v:,.0f}"
    if abs(v) >= 1:
        return f"${v:,.2f}"
    decimals = min(8, 2 - math.floor(math.log10(abs(v))))
    return f"${v:.{decimals}f}"


def fmt_pct(v: float | None, reason: str | None = None) -> str:
    """A plain share as a percentage: ``2.4%``."""
    return fmt_value(v, "rate", reason=reason)


def fmt_count(n: int | float | None) -> str:
    """An integer with thousands separators."""
    if n is None:
        return NA
    return f"{n:,.0f}"


def fmt_rate_per_s(v: float | None, reason: str | None = None) -> str:
    """Output tokens per second: ``42.1 tok/s``."""
    if not _finite(v):
        return na(reason)
    assert v is not None
    return f"{v:,.1f} tok/s"
