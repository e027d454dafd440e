"""The one JSONL reader and the one pydantic-error translation: every bad file, line or key
becomes a ConfigError naming the file, the line or key path, and the fix."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from rai_harness.errors import ConfigError
from rai_harness.validation import JsonlLine, format_validation_error, iter_jsonl


def test_objects_with_line_numbers_blank_lines_skipped(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"b": [2]}\n', encoding="utf-8")
    assert list(iter_jsonl(path)) == [JsonlLine(1, {"a": 1}), JsonlLine(4, {"b": [2]})]


@pytest.mark.parametrize(
    ("content", "key_path", "words"),
    [
        (b'{"a": 1}\n{"a": \n', "line 2", "not valid JSON (Expecting value at column 7)"),
        (b'{"a": 1}\n[1, 2]\n', "line 2", "each line must be a JSON object"),
        (b'{"a": 1}\n"text"\n', "line 2", "each line must be a JSON object"),
    ],
)
def test_bad_lines_name_the_line(tmp_path, content, key_path, words):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        list(iter_jsonl(path, what="prompt file"))
    assert info.value.key_path == key_path and words in info.value.detail and info.value.file == str(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match=r"prompt file not found; check `prompts\.path`"):
        list(iter_jsonl(tmp_path / "missing.jsonl", what="prompt file", missing_hint="check `prompts.path`"))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"a": "ok"}\n{"a": "caf\xe9"}\n')
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        list(iter_jsonl(latin))
    with pytest.raises(ConfigError, match="cannot read the JSONL file"):
        list(iter_jsonl(tmp_path))  # a folder


def test_streams_lazily(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text('{"i": 0}\nnot json\n', encoding="utf-8")
    lines = iter_jsonl(path)
    assert next(lines).obj == {"i": 0}  # the bad second line is not read yet
    with pytest.raises(ConfigError, match="line 2"):
        next(lines)


class _Guard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: str
    strict: bool = False


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    guard: _Guard
    rate: float = 0.0

    @field_validator("rate")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value < 0:
            raise ValueError("rate must be >= 0; use 0 for no limit")
        return value


def _error(data: dict) -> ConfigError:
    try:
        _Section.model_validate(data)
    except ValidationError as exc:
        return format_validation_error(exc, "cfg.yaml", "providers[1]", _Section)
    raise AssertionError("validation passed")


def test_a_misspelt_required_key_is_reported_as_the_typo_not_as_missing():
    # pydantic lists "policy missing" before "polcy not allowed"; only the latter names the fix.
    err = _error({"guard": {"polcy": "x.yaml"}})
    assert err.key_path == "providers[1].guard.polcy"
    assert "unknown key 'polcy' (did you mean 'policy'?)" in str(err)
    # A key that is only missing is still reported as missing.
    err = _error({"guard": {"strict": True}})
    assert err.key_path == "providers[1].guard.policy" and "required but missing" in str(err)


def test_a_validator_message_is_shown_without_pydantics_prefix():
    err = _error({"guard": {"policy": "p.yaml"}, "rate": -1})
    assert err.key_path == "providers[1].rate"
    assert "rate must be >= 0; use 0 for no limit (got -1)" in str(err)
    assert "Value error" not in str(err)


def test_a_lone_surrogate_escape_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        '{"prompt": "fine \\ud83d\\ude00"}\n{"prompt": "bad \\ud800 here"}\n', encoding="utf-8"
    )  # line 1 is a valid surrogate pair (an emoji); line 2 is a lone high surrogate
    rows = iter_jsonl(path)
    assert next(rows).obj == {"prompt": "fine \U0001f600"}
    with pytest.raises(ConfigError, match="lone surrogate") as info:
        next(rows)
    assert "line 2" in str(info.value) and str(path) in str(info.value)
