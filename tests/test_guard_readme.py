"""guardrails/README.md's Python examples run as written, and print what their comments say.

An application developer copies these blocks first; a block that needs names it never defines
(or a top-level ``await``) fails on the first try. Each block runs in a fresh namespace from the
repository root (the policy paths are relative to it), with the shipped default policy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # loads the toxicity model and presidio

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "guardrails" / "README.md").read_text(), re.S)


def _run(block: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    exec(compile(block, "guardrails/README.md", "exec"), {"__name__": "__readme__"})
    return capsys.readouterr().out.splitlines()


def test_there_are_three_examples():
    assert len(BLOCKS) == 3, "update the tests below when an example is added or removed"


def test_guard_example(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    out = _run(BLOCKS[0], capsys)
    assert out[0] == "redact"
    assert out[1] == "Mail me at <EMAIL_ADDRESS>"
    assert out[2].startswith("{'toxic': ")
    assert out[3] == "['allow', 'redact'] allow"
    assert out[4] == "['allow', 'redact']"
    # The story's first sentence is released; the insult stops the stream before it is sent.
    assert out[5] == "send: Once upon a time a fox lived in the woods. "
    assert out[6] == "blocked after: Once upon a time a fox lived in the woods. "
    assert len(out) == 7


def test_hand_built_rails_example(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert _run(BLOCKS[1], capsys) == ["block", "Mail <EMAIL_ADDRESS>"]


def test_guarded_provider_example(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert _run(BLOCKS[2], capsys) == ["stop", "You wrote: Mail <EMAIL_ADDRESS>", "redact"]
