"""One compact JSON encoder for the hot paths (the run journal, request bodies).

:func:`dumps_compact` gives the bytes of ``json.dumps(value, ensure_ascii=False,
separators=(",", ":"), default=str)`` encoded as UTF-8 with ``surrogatepass``, or bytes that
decode to the same value. It uses orjson, which encodes a call record about ten times faster
than the standard library (the journal blob was a quarter of the runner's own CPU per call in
``benchmarks/runner_overhead.py``), and falls back to the standard library for whatever orjson
would write differently or refuses:

* ``NaN`` and ``±Infinity``: orjson writes ``null``, which would come back as ``None``; the
  standard library writes ``NaN``/``Infinity``, which :func:`json.loads` reads back as floats.
* lone surrogates (``"\\ud800"``, e.g. from a ``\\ud800`` escape in a provider's JSON),
  integers beyond 64 bits, non-``str`` keys, and every type outside JSON's own
  (dataclasses, datetimes, numpy scalars...): those go through ``default=str`` as before.

The one difference left: an :class:`enum.Enum` member is written by value (the standard
library writes ``str(member)``); no record the project writes holds one.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["dumps_compact"]

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; kept for partial installs
    orjson = None  # type: ignore[assignment]

if orjson is not None:
    # Dataclasses, datetimes and subclasses of str/int/dict/list go to ``default`` (which
    # refuses, so the standard library writes them with ``str`` exactly as before) instead of
    # orjson's own encodings of them.
    _OPTIONS = (
        orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
    )


class _Unsupported(Exception):
    """Raised by the orjson ``default`` hook: the standard library writes this value."""


def _refuse(_value: Any) -> Any:
    raise _Unsupported


def _has_non_finite(value: Any) -> bool:
    """True when ``value`` holds a float NaN or infinity anywhere (dicts and lists walked)."""
    kind = type(value)
    if kind is float:
        return not math.isfinite(value)
    if kind is dict:
        return any(_has_non_finite(v) for v in value.values())
    if kind is list or kind is tuple:
        return any(_has_non_finite(v) for v in value)
    return False


def _stdlib(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode(
        "utf-8", "surrogatepass"
    )


def dumps_compact(value: Any) -> bytes:
    """Compact UTF-8 JSON of ``value``; :func:`json.loads` of it equals the standard library's.

    See the module docstring for when the standard library writes it.
    """
    if orjson is None:
        return _stdlib(value)
    try:
        out: bytes = orjson.dumps(value, default=_refuse, option=_OPTIONS)
    except (orjson.JSONEncodeError, _Unsupported, TypeError):
        return _stdlib(value)
    # orjson writes NaN/inf as null: only a text with a null can have lost one.
    if b"null" in out and _has_non_finite(value):
        return _stdlib(value)
    return out
