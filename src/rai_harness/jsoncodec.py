"""The JSON codec of the hot paths: the run journal, request bodies, provider responses.

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

:func:`loads` reads with orjson and falls back to :func:`json.loads` for whatever orjson refuses
(``NaN`` tokens, lone-surrogate escapes, malformed text) or would read differently (orjson turns
an integer beyond 64 bits into a float, so text with a run of 19 or more digits goes to the
standard library, which keeps it exact: an ``id`` echoed back must not change). It returns the
standard library's value or raises the standard library's error, with two exceptions: an
integer of more digits than Python converts (4,300) comes back as a float, infinity (the
standard library refuses it), and text nested too deep raises :class:`json.JSONDecodeError`
(the standard library: ``RecursionError``). Provider replies are read with it, and every count
they carry is accepted only as an ``int`` in range, so such a number is refused either way.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

__all__ = ["dumps_compact", "loads"]

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
    """True when ``value`` holds a float NaN or infinity anywhere (dicts, lists and tuples walked).

    A loop over an explicit stack, not recursion: it runs once per journaled call, and a call
    record's 30-odd values cost about 3 us this way against 8 us recursing.
    """
    stack = [value]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is float:
            # x - x is 0.0 for every finite float, NaN for NaN and for both infinities.
            if item - item != 0.0:
                return True
        elif kind is dict:
            extend(item.values())
        elif kind is list or kind is tuple:
            extend(item)
        elif kind is not str and isinstance(item, float):  # float subclasses (numpy.float64)
            push(float(item))
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


#: 19 digits and more: where orjson's integers end (-2**63 has 19, 2**64 - 1 has 20). Digits in
#: a string match too; such text just takes the standard library's slower path.
_LONG_DIGITS = re.compile(r"\d{19}")
_LONG_DIGITS_BYTES = re.compile(rb"\d{19}")


def _parse_int(digits: str) -> int | float:
    # Python refuses to convert integers over sys.get_int_max_str_digits() digits (4300 by
    # default; a ValueError naming sys.set_int_max_str_digits); such a number is out of every
    # range a reader accepts, so it becomes a float like orjson's, infinity here.
    limit = sys.get_int_max_str_digits()
    return float(digits) if limit and len(digits.lstrip("-")) > limit else int(digits)


def loads(data: bytes | str) -> Any:
    """``json.loads(data)``, through orjson when it reads ``data`` (see the module docstring).

    Raises:
        json.JSONDecodeError: ``data`` is not JSON, or nests too deep for the standard
            library's reader (which raises RecursionError, an error no caller expects).
    """
    long_digits = _LONG_DIGITS_BYTES.search(data) if isinstance(data, bytes) else _LONG_DIGITS.search(data)
    if orjson is not None and long_digits is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the standard library's value, or its error
    try:
        return json.loads(data, parse_int=_parse_int)
    except RecursionError:
        raise json.JSONDecodeError("nested too deep to read", "", 0) from None
