"""dumps_compact: orjson's speed, the standard library's values (NaN, surrogates, big ints, odd types)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from typing import Any

import pytest

from rai_harness import jsoncodec
from rai_harness.jsoncodec import dumps_compact


def _stdlib(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode(
        "utf-8", "surrogatepass"
    )


def _same(a: Any, b: Any) -> bool:
    """Equality that counts NaN equal to NaN and keeps float and int apart."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@dataclasses.dataclass
class _Point:
    x: int


CASES = [
    {
        "plain": "héllo ✓ 😀",
        "n": 3,
        "f": 0.1,
        "tiny": 1e-7,
        "big_f": 1e22,
        "neg": -0.0,
        "none": None,
        "t": True,
    },
    {"messages": [{"role": "user", "content": 'line\nbreak "quoted" \\ back'}], "params": {}},
    {"nan": float("nan")},
    {"deep": [{"x": [float("inf")]}], "other": None},
    {"surrogate": "a\ud800b"},
    {"big": 2**64, "neg_big": -(2**63) - 1},
    {1: "int key", None: "none key", 2.5: "float key"},
    {"when": dt.datetime(2026, 12, 7, 5, 0, 0), "day": dt.date(2026, 12, 7)},
    {"dc": _Point(3)},
    {"tuple": (1, 2), "set_like": frozenset()},
    ["top", "level", 1],
    "just a string",
    float("nan"),
]


@pytest.mark.parametrize("value", CASES, ids=range(len(CASES)))
def test_reads_back_as_the_standard_librarys_value(value: Any) -> None:
    assert _same(json.loads(dumps_compact(value)), json.loads(_stdlib(value)))


def test_plain_records_take_the_orjson_path_and_non_finite_floats_do_not(monkeypatch) -> None:
    calls: list[Any] = []
    real = jsoncodec._stdlib
    monkeypatch.setattr(jsoncodec, "_stdlib", lambda v: calls.append(v) or real(v))
    dumps_compact({"a": 1, "b": None, "c": [0.5]})
    assert calls == []  # a null that is not a NaN stays on the fast path
    dumps_compact({"a": float("nan")})
    dumps_compact({"s": "\udfff"})
    assert len(calls) == 2


def test_without_orjson_the_standard_library_writes_everything(monkeypatch) -> None:
    monkeypatch.setattr(jsoncodec, "orjson", None)
    value = {"x": [1, "é", float("nan")]}
    assert dumps_compact(value) == _stdlib(value)


@pytest.mark.parametrize(
    "text",
    [
        b'{"choices":[{"delta":{"content":"h\\u00e9llo \\ud83d\\ude00"}}],"usage":{"prompt_tokens":3}}',
        b'{"a": NaN, "b": -Infinity}',
        b'"\\ud800 lone"',
        '{"x": [1.5, null, true, "\u00e9"]}',
        b"[1e400]",
        # Past orjson's 64-bit integers: exact, as the standard library reads them.
        b'{"id": 100000000000000000000000000000, "n": -9223372036854775809, "u": 18446744073709551616}',
        '[18446744073709551615, -9223372036854775808, "card 4111111111111111111"]',
    ],
)
def test_loads_returns_the_standard_librarys_value(text: bytes | str) -> None:
    assert _same(jsoncodec.loads(text), json.loads(text))


@pytest.mark.parametrize("text", [b"{bad", b"", b'{"a":1} trailing', b"\xff\xfe"])
def test_loads_raises_the_standard_librarys_errors(text: bytes) -> None:
    with pytest.raises(ValueError) as want:
        json.loads(text)
    with pytest.raises(type(want.value)):
        jsoncodec.loads(text)
