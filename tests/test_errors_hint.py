"""The one "did you mean" hint that every misspelt-name error uses."""

from __future__ import annotations

import pytest

from rai_harness.errors import close_names, closest, did_you_mean

METRICS = [
    "latency_p50_s",
    "latency_p95_s",
    "ttft_p95_s",
    "cost_usd",
    "expected_max_toxicity",
    "toxic_fraction",
]


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("expected_max_toxicty", "expected_max_toxicity"),  # a dropped letter
        ("Expected-Max-Toxicity", "expected_max_toxicity"),  # case and separators do not count
        ("latency.p95_s", "latency_p95_s"),
        ("TTFT_P95_S", "ttft_p95_s"),
        ("max_toxicity", "expected_max_toxicity"),  # a known name contains what was typed
        ("cost", "cost_usd"),
        ("zzzzzz", None),
        ("", None),
        ("p9", None),  # too short to mean anything by containment
    ],
)
def test_closest_finds_the_intended_name(typed: str, expected: str | None) -> None:
    assert closest(typed, METRICS) == expected


def test_ties_are_shown_not_guessed() -> None:
    # p96 is one edit from p95 and from p99: picking one would mislead half the time.
    known = ["latency_p95_s", "latency_p99_s", "cost_usd"]
    assert close_names("latency_p96_s", known) == ["latency_p95_s", "latency_p99_s"]
    assert closest("latency_p96_s", known) is None
    assert did_you_mean("latency_p96_s", known) == " (did you mean 'latency_p95_s' or 'latency_p99_s'?)"
    # "latency" is equally close to both as well.
    assert closest("latency", ["latency_p50_s", "latency_p95_s"]) is None


def test_containment_must_be_unambiguous() -> None:
    assert close_names("toxic", ["toxic_fraction_of_prompts_with_any", "toxicity_rate_per_output"]) == []


def test_did_you_mean_formats_the_hint_or_nothing() -> None:
    assert did_you_mean("polcy", ["policy", "providers"]) == " (did you mean 'policy'?)"
    assert did_you_mean("zzzzzz", ["policy"]) == ""
    assert did_you_mean("x", []) == ""


def test_returns_the_name_as_known_not_as_normalised() -> None:
    assert closest("azure_openai", ["openai", "azure-openai"]) == "azure-openai"
    assert closest("azure-openai", ["Azure_OpenAI"]) == "Azure_OpenAI"
