"""The one JSONL reader: every bad file or line becomes a ConfigError naming the file and line."""

from __future__ import annotations

import pytest

from rai_harness.errors import ConfigError
from rai_harness.validation import JsonlLine, iter_jsonl


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
