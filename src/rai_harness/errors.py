"""Exceptions raised by rai-harness.

Every error the package raises on purpose derives from :class:`RaiError`, so an
application can catch one type. The tree::

    RaiError
    ├── ConfigError              a config/policy file or CLI argument is wrong (exit code 2)
    │   ├── MissingSecretError   an environment variable named by a config is unset
    │   └── MissingDependencyError  an optional package is not installed (with the pip hint)
    ├── ProviderError            a call to a model provider failed
    │   └── ProviderTimeoutError the call exceeded its per-request timeout
    └── RunError                 a run could not complete (incomplete journal, too many errors)

``ProviderError`` carries what the runner needs to decide on a retry
(``retryable``, ``status_code``, ``retry_after_s``); adapters translate their SDK's
exceptions into it so the runner never needs to know a vendor's exception types.

:func:`did_you_mean` is the one "did you mean 'x'?" hint every error message for a misspelt
name uses (config keys, suites, backends, labels, gate metrics).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "MissingDependencyError",
    "MissingSecretError",
    "ProviderError",
    "ProviderTimeoutError",
    "RaiError",
    "RunError",
    "close_names",
    "closest",
    "did_you_mean",
]


def _spelling(name: str) -> str:
    # One spelling for comparison, so "Azure_OpenAI" finds "azure-openai" and "TTFT.P95" "ttft_p95".
    return name.strip().lower().replace("_", "-").replace(".", "-")


def close_names(name: str, known: Iterable[str], *, cutoff: float = 0.6) -> list[str]:
    """The known names ``name`` most likely misspells: the best match, or the tied best (at most 3).

    Names are compared case-insensitively with ``_``, ``-`` and ``.`` treated alike, by
    difflib's similarity ratio (at least ``cutoff``). When none is similar enough, a known name
    that contains ``name`` (or that ``name`` contains) is the answer if there is exactly one
    ("cost" finds "cost_usd"). Ties are all returned, so a hint never picks one of two equally
    likely names at random ("latency_p96_s": p95 or p99?).
    """
    by_spelling: dict[str, str] = {}
    for k in known:
        by_spelling.setdefault(_spelling(str(k)), str(k))
    wanted = _spelling(name)
    if not wanted or not by_spelling:
        return []
    matcher = difflib.SequenceMatcher(b=wanted)
    scored: list[tuple[float, str]] = []
    for spelled, original in by_spelling.items():
        matcher.set_seq1(spelled)
        ratio = matcher.ratio()
        if ratio >= cutoff:
            scored.append((ratio, original))
    if scored:
        best = max(r for r, _ in scored)
        return sorted(k for r, k in scored if r == best)[:3]
    containing = [
        k for s, k in by_spelling.items() if min(len(s), len(wanted)) >= 3 and (wanted in s or s in wanted)
    ]
    return containing if len(containing) == 1 else []


def closest(name: str, known: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The one known name ``name`` most likely misspells, or ``None`` (none close, or a tie)."""
    names = close_names(name, known, cutoff=cutoff)
    return names[0] if len(names) == 1 else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` (or ``'x' or 'y'`` for a tie), or ``""`` when no name is close."""
    names = close_names(name, known)
    return f" (did you mean {' or '.join(repr(n) for n in names)}?)" if names else ""


class RaiError(Exception):
    """Base class of every error raised on purpose by rai-harness."""


class ConfigError(RaiError):
    """A configuration value is invalid.

    Args:
        message: What is wrong and how to fix it.
        file: The file that holds the bad value, when there is one.
        key_path: Dotted path of the offending key (``providers[1].base_url``).
    """

    def __init__(self, message: str, *, file: str | None = None, key_path: str | None = None) -> None:
        self.file = file
        self.key_path = key_path
        self.detail = message
        where = ": ".join(part for part in (file, key_path) if part)
        super().__init__(f"{where}: {message}" if where else message)


class MissingSecretError(ConfigError):
    """An environment variable that a config names (an API key, say) is not set."""

    def __init__(self, variable: str, *, key_path: str | None = None, file: str | None = None) -> None:
        self.variable = variable
        super().__init__(
            f"environment variable {variable} is not set; export it (the key is read only from the "
            "environment and never written to any output)",
            file=file,
            key_path=key_path,
        )


class MissingDependencyError(ConfigError):
    """An optional package needed by the chosen feature is not installed."""

    def __init__(self, package: str, *, extra: str | None = None, feature: str = "") -> None:
        self.package = package
        self.extra = extra
        hint = f"pip install 'rai-harness[{extra}]'" if extra else f"pip install {package}"
        what = f" for {feature}" if feature else ""
        super().__init__(f"the package '{package}' is needed{what} but is not installed; run: {hint}")


class ProviderError(RaiError):
    """A provider call failed.

    Args:
        message: Human-readable cause (never contains secrets: adapters scrub it).
        retryable: Whether the runner may try the call again.
        status_code: HTTP status, when the failure came with one.
        retry_after_s: Seconds the server asked us to wait (``Retry-After``), if any.
        error_type: Short stable name of the failure kind (``rate_limit``, ``server_error``,
            ``timeout``, ``connection``, ``bad_response``, ``bad_request``, ``auth``...).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        error_type: str = "provider_error",
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.error_type = error_type


class ProviderTimeoutError(ProviderError):
    """A call exceeded its per-request timeout (retryable)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True, error_type="timeout")


class RunError(RaiError):
    """A run could not be completed as asked."""
