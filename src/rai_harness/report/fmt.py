"""Number formatting shared by the HTML, Markdown and JSON reports.

One set of rules so a number reads the same everywhere:

* rates and probabilities as percentages with one decimal, the 95% interval in brackets
  without repeating the sign: ``12.3% [9.1, 16.0]``; a nonzero value under 0.05% is ``<0.1%``
  rather than a misleading ``0.0%``;
* scores and similarities with three decimals (signed when 0 is the ideal): ``+0.123 [0.080, 0.170]``;
* differences of rates in percentage points: ``−3.2 pp [−5.1, −1.0]``;
* seconds as ``340 ms`` / ``1.24 s`` / ``12.4 s``; money as ``$0.00423`` / ``$1.24`` / ``$1,234``;
* anything missing as ``n/a`` followed by the reason, never as a blank or a made-up zero.

Minus signs are the typographic U+2212, so columns of signed numbers line up.
"""

from __future__ import annotations

import math

from rai_harness.record import MetricSpec
from rai_harness.stats import Estimate

__all__ = [
    "MINUS",
    "NA",
    "fmt_bound",
    "fmt_count",
    "fmt_diff",
    "fmt_duration",
    "fmt_estimate",
    "fmt_p",
    "fmt_pct",
    "fmt_rate_per_s",
    "fmt_seconds",
    "fmt_usd",
    "fmt_value",
    "is_percent",
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


def fmt_estimate(est: Estimate | None, spec: MetricSpec | None = None, *, unit: str | None = None) -> str:
    """``12.3% [9.1, 16.0]``; the value alone when there is no interval; ``n/a (why)`` when missing."""
    if est is None:
        return na("not computed")
    u = unit or (spec.unit if spec is not None else "score")
    signed = spec is not None and spec.direction == "neutral" and not is_percent(u)
    if not _finite(est.value):
        return na(est.note or ("no items" if est.n == 0 else "not computed"))
    text = fmt_value(est.value, u, signed=signed)
    if _finite(est.ci_low) and _finite(est.ci_high):
        assert est.ci_low is not None and est.ci_high is not None
        text += f" [{fmt_bound(est.ci_low, u, signed=signed)}, {fmt_bound(est.ci_high, u, signed=signed)}]"
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
