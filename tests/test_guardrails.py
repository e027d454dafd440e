"""Guard and rails: thresholds, actions, errors, timeouts, redaction, batch/async/streaming, provider."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from rai_harness.classifiers.base import LabelScores, Span
from rai_harness.errors import ConfigError
from rai_harness.guardrails import (
    ClassifierRunner,
    Guard,
    GuardBlocked,
    GuardClosedError,
    GuardedProvider,
    Rail,
    strongest,
)
from rai_harness.guardrails.streaming import SentenceBuffer
from rai_harness.providers.base import BaseProvider
from rai_harness.types import ChatMessage, ChatRequest, Generation, Usage

# -- in-test classifiers -----------------------------------------------------------------------


class PhraseClassifier:
    """Deterministic: a label's score is the highest score of its phrases found in the text.

    Every occurrence of a phrase is also reported as a span, so the same classifier serves
    block rails (scores) and redact rails (spans).
    """

    def __init__(
        self, phrases: Mapping[str, Mapping[str, float]], *, base: float = 0.05, name: str = "phrases"
    ):
        self.name = name
        self.produces_spans = True
        self.phrases = {label: dict(p) for label, p in phrases.items()}
        self.labels = tuple(self.phrases)
        self.base = base
        self.calls: list[int] = []
        self._lock = threading.Lock()

    def _one(self, text: str) -> LabelScores:
        scores: dict[str, float] = {}
        spans: list[Span] = []
        lowered = text.lower()
        for label, phrases in self.phrases.items():
            scores[label] = self.base
            for phrase, score in phrases.items():
                for match in re.finditer(re.escape(phrase.lower()), lowered):
                    scores[label] = max(scores[label], score)
                    spans.append(Span(match.start(), match.end(), label, score))
        return LabelScores(scores=scores, spans=tuple(sorted(spans, key=lambda s: s.start)))

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        with self._lock:
            self.calls.append(len(texts))
        return [self._one(t) for t in texts]

    def info(self) -> dict[str, Any]:
        return {"name": self.name}


class ScoresOnlyClassifier(PhraseClassifier):
    """Like PhraseClassifier but returns no spans (a toxicity-style model)."""

    def _one(self, text: str) -> LabelScores:
        return LabelScores(scores=super()._one(text).scores)


class RaisingClassifier:
    name = "raiser"
    labels = ("toxic",)
    produces_spans = False

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        raise RuntimeError("model exploded")

    def info(self) -> dict[str, Any]:
        return {}


class SleepingClassifier:
    """Sleeps, then scores every text 0.9 on ``toxic``."""

    labels = ("toxic",)
    produces_spans = False

    def __init__(self, delay_s: float, name: str = "sleeper"):
        self.delay_s = delay_s
        self.name = name

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        time.sleep(self.delay_s)
        return [LabelScores(scores={"toxic": 0.9}) for _ in texts]

    def info(self) -> dict[str, Any]:
        return {}


TOX = {"toxic": {"idiot": 0.95, "dumb": 0.6, "kill. yourself": 0.99}}
PII = {"EMAIL": {"jane@example.com": 0.99}, "PHONE": {"555-0100": 0.8}}


@pytest.fixture
def tox():
    return PhraseClassifier(TOX, name="tox")


@pytest.fixture
def pii():
    return PhraseClassifier(PII, name="pii")


@pytest.fixture
def guard(tox, pii):
    g = Guard(
        input_rails=[
            Rail("toxic-in", tox, threshold=0.8, action="block"),
            Rail("pii-in", pii, threshold=0.5, action="redact"),
        ],
        output_rails=[
            Rail("toxic-out", tox, threshold=0.5, action="block"),
            Rail("pii-out", pii, threshold=0.5, action="redact"),
        ],
    )
    yield g
    g.close()


# -- thresholds and actions --------------------------------------------------------------------


def test_threshold_is_inclusive_and_labels_filter(tox):
    at = Rail("r", tox, threshold=0.6, action="flag")
    assert at.check(["so dumb"])[0].triggered  # 0.6 >= 0.6
    above = Rail("r", tox, threshold=0.61, action="flag")
    result = above.check(["so dumb"])[0]
    assert not result.triggered and result.action == "allow"
    assert result.scores == {"toxic": 0.6}
    at.close()
    above.close()


def test_per_label_thresholds_and_watched_labels():
    clf = PhraseClassifier({"toxic": {"idiot": 0.7}, "insult": {"idiot": 0.7}})
    only_insult = Rail("r", clf, threshold=0.5, labels=["insult"], action="block")
    per_label = Rail("p", clf, thresholds={"toxic": 0.9, "insult": 0.6}, action="block")
    strict_both = Rail("s", clf, thresholds={"toxic": 0.9, "insult": 0.9}, action="block")
    assert only_insult.check(["idiot"])[0].triggered
    assert per_label.check(["idiot"])[0].triggered  # insult 0.7 >= 0.6
    assert not strict_both.check(["idiot"])[0].triggered
    for rail in (only_insult, per_label, strict_both):
        rail.close()


def test_rail_config_errors(tox):
    with pytest.raises(ConfigError, match="within"):
        Rail("r", tox, threshold=1.5, action="block")
    with pytest.raises(ConfigError, match="exactly one"):
        Rail("r", tox, action="block")
    with pytest.raises(ConfigError, match="did you mean 'toxic'"):
        Rail("r", tox, threshold=0.5, labels=["toxik"], action="block")
    no_spans = ScoresOnlyClassifier(TOX)
    no_spans.produces_spans = False  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="nothing to redact"):
        Rail("r", no_spans, threshold=0.5, action="redact")


def test_strongest_action_resolution(tox, pii):
    assert strongest([]) == "allow"
    assert strongest(["flag", "allow"]) == "flag"
    assert strongest(["flag", "redact", "allow"]) == "redact"
    assert strongest(["redact", "block", "flag"]) == "block"
    flagger = PhraseClassifier({"spam": {"buy now": 0.9}}, name="spam")
    with Guard(
        input_rails=[
            Rail("spam", flagger, threshold=0.5, action="flag"),
            Rail("pii", pii, threshold=0.5, action="redact"),
            Rail("tox", tox, threshold=0.8, action="block"),
        ]
    ) as g:
        assert g.check_input("buy now").action == "flag"
        both = g.check_input("buy now, mail jane@example.com")
        assert both.action == "redact" and both.allowed and not both.blocked
        worst = g.check_input("buy now, mail jane@example.com, idiot")
        assert worst.action == "block" and worst.blocked
        assert [r.action for r in worst.rails] == ["flag", "redact", "block"]
        clean = g.check_input("hello")
        assert clean.action == "allow" and not clean.flagged and clean.redacted_text == "hello"


# -- errors and timeouts -----------------------------------------------------------------------


def test_on_error_block_fails_closed():
    with Guard(
        input_rails=[Rail("r", RaisingClassifier(), threshold=0.5, action="flag", on_error="block")]
    ) as g:
        result = g.check_input("hello")
    assert result.blocked
    assert result.rails[0].error is not None and "model exploded" in result.rails[0].error
    assert result.errors == result.rails and not result.rails[0].triggered


def test_a_closed_guard_raises_instead_of_applying_on_error(pii):
    """Checking after close() is the caller's bug: with ``on_error: allow`` it once passed every
    text unredacted, silently switching the guard off."""
    g = Guard(input_rails=[Rail("pii", pii, threshold=0.5, action="redact", on_error="allow")])
    with g:
        assert g.check_input("mail jane@example.com").action == "redact"
    with pytest.raises(GuardClosedError, match="closed"):
        g.check_input("mail jane@example.com")
    with pytest.raises(GuardClosedError):
        asyncio.run(g.acheck_input("mail jane@example.com"))
    with pytest.raises(GuardClosedError):
        list(g.stream_output(iter(["mail jane@example.com. ", "bye"])))


def test_a_runner_closed_during_a_check_raises_in_that_check():
    # One worker: the first call holds it, the second is still queued when close() cancels it.
    runner = ClassifierRunner(SleepingClassifier(0.5), micro_batch=False, max_workers=1)
    rail = Rail("slow", runner.classifier, threshold=0.95, action="block", on_error="allow", runner=runner)
    outcome: list[object] = []

    def check() -> None:
        try:
            outcome.append(rail.check(["hello"]))
        except GuardClosedError as exc:
            outcome.append(exc)

    threads = [threading.Thread(target=check) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    runner.close(timeout=2.0)
    for t in threads:
        t.join(5)
    # The running call finishes with its verdict; the cancelled one raises instead of turning
    # into on_error's allow.
    assert len(outcome) == 2
    assert sum(isinstance(o, GuardClosedError) for o in outcome) == 1, outcome
    finished = next(o for o in outcome if not isinstance(o, GuardClosedError))
    assert isinstance(finished, list) and finished[0].error is None


def test_a_guard_without_rails_is_refused():
    with pytest.raises(ConfigError, match="at least one rail"):
        Guard()


def test_rail_scores_list_only_the_watched_labels(pii):
    with Guard(input_rails=[Rail("phones", pii, labels=["PHONE"], threshold=0.5, action="flag")]) as g:
        result = g.check_input("mail jane@example.com")
    (rail,) = result.rails
    # The classifier scored EMAIL 0.99, but this rail does not watch it: listing it next to
    # triggered=false would read as a rail that saw an e-mail and let it go.
    assert dict(rail.scores) == {"PHONE": 0.05} and not rail.triggered
    assert rail.to_dict()["scores"] == {"PHONE": 0.05}


def test_api_mistakes_get_messages_that_name_the_fix(tox):
    with pytest.raises(ConfigError, match=r"must be a number between 0 and 1, got '0.5' \(str\)"):
        Rail("r", tox, threshold="0.5", action="block")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="got True"):
        Rail("r", tox, threshold=True, action="block")
    with pytest.raises(TypeError, match=r"input_rails must be a list of Rail objects"):
        Guard(input_rails=Rail("r", tox, threshold=0.5, action="block"))  # type: ignore[arg-type]
    with Guard(input_rails=[Rail("toxic-in", tox, threshold=0.5, action="block")]) as g:
        result = g.check_input("hello")
    with pytest.raises(KeyError, match="its rails: 'toxic-in'"):
        result.rail("nope")


def test_on_error_allow_fails_open_and_records(tox):
    with Guard(
        input_rails=[
            Rail("broken", RaisingClassifier(), threshold=0.5, action="block", on_error="allow"),
            Rail("tox", tox, threshold=0.8, action="block"),
        ]
    ) as g:
        result = g.check_input("hello")
    assert result.action == "allow" and result.allowed
    assert [r.rail for r in result.errors] == ["broken"]
    assert "RuntimeError" in (result.rail("broken").error or "")
    assert result.rail("tox").error is None


def test_timeout_is_an_error_and_bounds_latency():
    slow = SleepingClassifier(0.5)
    with Guard(
        input_rails=[Rail("slow", slow, threshold=0.5, action="flag", on_error="block", timeout_ms=50)]
    ) as g:
        started = time.perf_counter()
        result = g.check_input("hello")
        waited = time.perf_counter() - started
    assert result.blocked and "timed out" in (result.rails[0].error or "")
    assert waited < 0.4


async def test_async_timeout_fail_open():
    slow = SleepingClassifier(0.5)
    with Guard(
        input_rails=[Rail("slow", slow, threshold=0.5, action="block", on_error="allow", timeout_ms=50)]
    ) as g:
        result = await g.acheck_input("hello")
    assert result.action == "allow" and "timed out" in (result.rails[0].error or "")


def test_rails_run_concurrently():
    a, b = SleepingClassifier(0.25, "a"), SleepingClassifier(0.25, "b")
    with Guard(
        input_rails=[
            Rail("a", a, threshold=0.95, action="block"),
            Rail("b", b, threshold=0.95, action="block"),
        ]
    ) as g:
        g.check_input("warm")  # thread start-up is not what we measure
        started = time.perf_counter()
        result = g.check_input("hello")
        waited = time.perf_counter() - started
    assert result.action == "allow"
    assert waited < 0.45  # the slowest rail (0.25 s), not the sum (0.5 s)


# -- redaction ---------------------------------------------------------------------------------


def test_redaction_replaces_only_spans(guard):
    text = "Hi, I am Jane (jane@example.com), call 555-0100 today."
    result = guard.check_input(text)
    assert result.action == "redact" and result.text == text
    assert result.redacted_text == "Hi, I am Jane (<EMAIL>), call <PHONE> today."
    findings = result.rail("pii-in").spans
    assert [(s.label, text[s.start : s.end]) for s in findings] == [
        ("EMAIL", "jane@example.com"),
        ("PHONE", "555-0100"),
    ]


def test_redaction_spans_of_several_rails_applied_at_once():
    emails = PhraseClassifier({"EMAIL": {"jane@example.com": 0.9}}, name="emails")
    names = PhraseClassifier({"PERSON": {"jane": 0.9}, "PHONE": {"555-0100": 0.9}}, name="names")
    with Guard(
        input_rails=[
            Rail("names", names, threshold=0.5, action="redact"),
            Rail("emails", emails, threshold=0.5, action="redact"),
        ]
    ) as g:
        result = g.check_input("jane: jane@example.com or 555-0100!")
    # "jane" inside the e-mail overlaps the EMAIL span: merged into one replacement.
    assert result.redacted_text == "<PERSON>: <EMAIL> or <PHONE>!"


def test_redaction_below_threshold_keeps_text(pii):
    with Guard(input_rails=[Rail("pii", pii, threshold=0.85, action="redact")]) as g:
        result = g.check_input("call 555-0100 or jane@example.com")
    assert result.redacted_text == "call 555-0100 or <EMAIL>"  # PHONE scored 0.8 < 0.85


def test_redact_rail_without_spans_fails_closed():
    with Guard(input_rails=[Rail("pii", ScoresOnlyClassifier(PII), threshold=0.5, action="redact")]) as g:
        result = g.check_input("mail jane@example.com")
    assert result.blocked and "no span" in (result.rails[0].error or "")


# -- batch, async ------------------------------------------------------------------------------

TEXTS = ["hello there", "you idiot", "mail jane@example.com", "so dumb", "call 555-0100, idiot"]


def _essence(result):
    return (
        result.action,
        result.redacted_text,
        [(r.rail, r.action, dict(r.scores), r.spans, r.error) for r in result.rails],
    )


def test_batch_equals_single_and_calls_once_per_rail(guard, tox, pii):
    singles = [guard.check_input(t) for t in TEXTS]
    tox.calls.clear()
    pii.calls.clear()
    batch = guard.check_inputs(TEXTS)
    assert [_essence(r) for r in batch] == [_essence(r) for r in singles]
    assert tox.calls == [len(TEXTS)] and pii.calls == [len(TEXTS)]
    assert [r.action for r in batch] == ["allow", "block", "redact", "allow", "block"]
    assert guard.check_inputs([]) == []


def test_output_stage_uses_output_rails(guard):
    result = guard.check_output("so dumb", prompt="what do you think?")
    assert result.stage == "output" and result.blocked  # 0.6 >= the output threshold 0.5
    assert guard.check_input("so dumb").action == "allow"  # 0.6 < the input threshold 0.8
    with pytest.raises(ValueError, match="prompts"):
        guard.check_outputs(["a", "b"], prompts=["only one"])


async def test_async_equals_sync(guard):
    sync = guard.check_inputs(TEXTS)
    single = [await guard.acheck_input(t) for t in TEXTS]
    batch = await guard.acheck_inputs(TEXTS)
    outputs = await guard.acheck_outputs(TEXTS)
    assert [_essence(r) for r in single] == [_essence(r) for r in sync]
    assert [_essence(r) for r in batch] == [_essence(r) for r in sync]
    assert (await guard.acheck_output("so dumb")).blocked and all(r.stage == "output" for r in outputs)


async def test_async_errors_follow_on_error():
    with Guard(
        input_rails=[Rail("r", RaisingClassifier(), threshold=0.5, action="flag", on_error="block")]
    ) as g:
        result = await g.acheck_input("x")
    assert result.blocked and "model exploded" in (result.rails[0].error or "")


async def test_concurrent_async_callers_share_batches(tox):
    pytest.importorskip("rai_harness.classifiers.microbatch")
    slow = SleepingClassifier(0.02)
    with Guard(input_rails=[Rail("slow", slow, threshold=0.95, action="block")]) as g:
        calls: list[int] = []
        original = slow.predict

        def counting(texts):
            calls.append(len(texts))
            return original(texts)

        slow.predict = counting  # type: ignore[method-assign]
        results = await asyncio.gather(*(g.acheck_input(f"text {i}") for i in range(32)))
    assert all(r.action == "allow" for r in results)
    assert sum(calls) == 32 and len(calls) < 32  # callers were gathered into shared batches


# -- streaming ---------------------------------------------------------------------------------

FIVE = "First one is fine. Second is fine too! Third, you idiot. Fourth is fine? Fifth too.\n"


def chars(text: str, size: int = 3):
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_sentence_buffer_splits_and_round_trips():
    buf = SentenceBuffer(max_chars=40)
    pieces = []
    for chunk in chars("Pi is 3.14 roughly. Is it?\nYes! " + "x" * 30 + " " + "y" * 30 + " end"):
        pieces.extend(buf.feed(chunk))
    tail = buf.flush()
    assert pieces[:3] == ["Pi is 3.14 roughly. ", "Is it?\n", "Yes! "]
    assert all(len(p) <= 40 for p in pieces)
    assert "".join(pieces) + tail == "Pi is 3.14 roughly. Is it?\nYes! " + "x" * 30 + " " + "y" * 30 + " end"


def test_sentence_buffer_does_not_cut_after_a_one_character_word():
    # An initial or spaced-out text ("e x a m p l e . o r g") is not a sentence end, and a
    # forced cut does not fall inside a run of single characters.
    buf = SentenceBuffer(max_chars=60)
    text = "Ask J. K. Rowling. Mail j a n e @ e x a m p l e . o r g now. Done."
    pieces = [p for chunk in chars(text) for p in buf.feed(chunk)] + [buf.flush()]
    assert pieces == ["Ask J. K. Rowling. ", "Mail j a n e @ e x a m p l e . o r g now. ", "Done."]
    buf = SentenceBuffer(max_chars=40)
    text = "word " * 6 + "j a n e @ e x a m p l e . o r g and more words here"
    pieces = [p for chunk in chars(text) for p in buf.feed(chunk)] + [buf.flush()]
    assert "".join(pieces) == text and all(len(p) <= 40 for p in pieces)
    assert pieces[0] == "word " * 6 and pieces[1].startswith("j a n e @ e x a m p l e . o r g")
    # A run of single characters longer than the limit is still cut, within the limit.
    buf = SentenceBuffer(max_chars=20)
    pieces = [p for chunk in chars("a " * 30) for p in buf.feed(chunk)] + [buf.flush()]
    assert "".join(pieces) == "a " * 30 and all(len(p) <= 20 for p in pieces)


def test_stream_stops_at_blocked_sentence(guard):
    released: list[str] = []
    verdicts = []
    with pytest.raises(GuardBlocked) as info:
        for piece in guard.stream_output(iter(chars(FIVE)), on_result=verdicts.append):
            released.append(piece)
    assert released == ["First one is fine. ", "Second is fine too! "]
    assert info.value.released_text == "".join(released)
    assert info.value.result.blocked and info.value.result.rail("toxic-out").triggered
    assert len(verdicts) == 3  # nothing after the blocked sentence was even checked


def test_stream_clean_text_round_trips_and_redacts(guard):
    text = "Hello. Write to jane@example.com please.\nBye"
    out = "".join(guard.stream_output(chars(text, 4)))
    assert out == "Hello. Write to <EMAIL> please.\nBye"
    assert "".join(guard.stream_output(["Nothing to see. ", "Really."])) == "Nothing to see. Really."


def test_stream_catches_phrase_split_across_sentences(guard):
    with pytest.raises(GuardBlocked) as info:
        list(guard.stream_output(["You should kill. ", "yourself now. ", "Then more."]))
    assert info.value.released_text == "You should kill. "


async def test_async_stream_stops_at_blocked_sentence(guard):
    async def agen():
        for chunk in chars(FIVE, 5):
            await asyncio.sleep(0)
            yield chunk

    released: list[str] = []
    with pytest.raises(GuardBlocked) as info:
        async for piece in guard.stream_output(agen()):
            released.append(piece)
    assert released == ["First one is fine. ", "Second is fine too! "]
    assert info.value.released_text == "".join(released)
    redacted = [p async for p in guard.astream_output(["Mail jane@example.com", " now."])]
    assert "".join(redacted) == "Mail <EMAIL> now."


# -- GuardedProvider ---------------------------------------------------------------------------


class FakeProvider(BaseProvider):
    def __init__(self, reply: str = "Sure, happy to help."):
        self.reply = reply
        self.requests: list[ChatRequest] = []
        self.closed = False

    async def generate(self, request: ChatRequest) -> Generation:
        self.requests.append(request)
        return Generation(
            text=self.reply,
            usage=Usage(5, 7),
            latency_s=0.1,
            ttft_s=0.05,
            finish_reason="stop",
            streamed=True,
        )

    async def aclose(self) -> None:
        self.closed = True


def request(prompt: str, sample_id: str = "s1", repeat: int = 0) -> ChatRequest:
    return ChatRequest.from_prompt(sample_id, prompt, system="be nice", repeat=repeat)


async def test_provider_blocks_input_without_calling_model(guard):
    inner = FakeProvider()
    provider = GuardedProvider(inner, guard, refusal="No.")
    gen = await provider.generate(request("you idiot"))
    assert inner.requests == []
    assert gen.text == "No." and gen.finish_reason == "guard_blocked_input"
    assert gen.usage.total_tokens == 0
    # The verdict travels on the generation; the provider keeps none.
    assert gen.guard is not None and gen.guard["action"] == "block" and gen.guard["output"] is None
    assert gen.guard["inputs"][0]["action"] == "block"
    assert gen.guard["rail_errors"] == gen.guard["rail_timeouts"] == 0 and gen.guard["slow_rails"] == []
    assert not hasattr(provider, "verdicts") and not hasattr(provider, "last_verdict")


async def test_provider_redacts_input_and_output_and_adds_latency(guard):
    inner = FakeProvider(reply="Noted, jane@example.com.")
    provider = GuardedProvider(inner, guard)
    gen = await provider.generate(request("my mail is jane@example.com", sample_id="s2", repeat=1))
    sent = inner.requests[0]
    assert sent.messages == (ChatMessage("system", "be nice"), ChatMessage("user", "my mail is <EMAIL>"))
    assert gen.text == "Noted, <EMAIL>." and gen.finish_reason == "stop"
    verdict = gen.guard
    assert verdict is not None and verdict["action"] == "redact"
    assert gen.latency_s == pytest.approx(0.1 + verdict["guard_latency_s"], abs=1e-5)
    assert gen.ttft_s == gen.latency_s  # the answer is released only once checked
    assert verdict["inputs"][0]["redacted_text"] == "my mail is <EMAIL>"
    await provider.aclose()
    assert inner.closed


async def test_provider_blocks_output(guard):
    inner = FakeProvider(reply="That is dumb.")
    provider = GuardedProvider(inner, guard, refusal="Withheld.")
    gen = await provider.generate(request("hello"))
    assert gen.text == "Withheld." and gen.finish_reason == "guard_blocked_output"
    assert gen.usage.total_tokens == 12  # the tokens were generated (and paid for)
    assert gen.guard is not None and gen.guard["output"]["action"] == "block"


async def test_provider_input_only(guard):
    inner = FakeProvider(reply="That is dumb.")
    provider = GuardedProvider(inner, guard, check_output=False)
    gen = await provider.generate(request("hello"))
    assert gen.text == "That is dumb." and gen.ttft_s is not None and gen.ttft_s >= 0.05
    assert gen.latency_s >= 0.1


async def test_rails_sharing_a_classifier_share_one_call(tox):
    with Guard(
        input_rails=[
            Rail("block", tox, threshold=0.9, action="block"),
            Rail("flag", tox, threshold=0.5, action="flag"),
        ]
    ) as g:
        tox.calls.clear()
        result = g.check_input("so dumb")
        assert [r.action for r in result.rails] == ["allow", "flag"]
        assert tox.calls == [1]
        tox.calls.clear()
        result = await g.acheck_input("idiot")
        assert [r.action for r in result.rails] == ["block", "flag"] and tox.calls == [1]


async def test_short_timeout_does_not_cancel_a_shared_call_for_a_patient_rail():
    slow = SleepingClassifier(0.15)
    with Guard(
        input_rails=[
            Rail("hasty", slow, threshold=0.5, action="flag", on_error="allow", timeout_ms=20),
            Rail("patient", slow, threshold=0.5, action="block", timeout_ms=2000),
        ]
    ) as g:
        for result in (g.check_input("x"), await g.acheck_input("x")):
            assert "timed out" in (result.rail("hasty").error or "")
            patient = result.rail("patient")
            assert patient.error is None and patient.action == "block"


# -- evaluation mode: rail failures are errors, never silent allows --------------------------------


async def test_evaluation_mode_fails_the_call_on_a_failed_rail_instead_of_allowing():
    from rai_harness.guardrails import GuardRailError

    inner = FakeProvider(reply="fine")
    with Guard(
        input_rails=[Rail("tox", RaisingClassifier(), threshold=0.5, action="block", on_error="allow")]
    ) as g:
        # Application mode: on_error=allow lets the prompt through (and says so in the verdict).
        gen = await GuardedProvider(inner, g).generate(request("hello"))
        assert gen.text == "fine" and gen.guard is not None and gen.guard["rail_errors"] == 1
        # Evaluation mode: the same failure is an error on the call; the model is not called.
        inner.requests.clear()
        strict = GuardedProvider(inner, g, fail_on_rail_error=True)
        with pytest.raises(GuardRailError, match="model exploded") as info:
            await strict.generate(request("hello"))
        assert info.value.error_type == "guard_error" and not info.value.retryable
        assert info.value.rails == ("input:tox",) and inner.requests == []


async def test_evaluation_mode_timeout_is_a_guard_timeout_error():
    from rai_harness.guardrails import GuardRailError

    slow = SleepingClassifier(0.2)
    with Guard(
        output_rails=[Rail("tox", slow, threshold=0.5, action="block", on_error="allow", timeout_ms=20)]
    ) as g:
        strict = GuardedProvider(FakeProvider(reply="fine"), g, fail_on_rail_error=True)
        with pytest.raises(GuardRailError) as info:
            await strict.generate(request("hello"))
        assert info.value.error_type == "guard_timeout" and info.value.rails == ("output:tox",)


async def test_slow_rails_are_named_when_timeouts_are_lifted():
    slow = SleepingClassifier(0.1)
    with Guard(output_rails=[Rail("tox", slow, threshold=0.5, action="block", timeout_ms=60_000)]) as g:
        provider = GuardedProvider(
            FakeProvider(reply="fine"), g, fail_on_rail_error=True, policy_timeouts_ms={"output:tox": 20}
        )
        gen = await provider.generate(request("hello"))
        # The classifier's real verdict (0.9 >= 0.5: block), not on_error; the slowness is recorded.
        assert gen.finish_reason == "guard_blocked_output"
        assert gen.guard is not None and gen.guard["slow_rails"] == ["output:tox"]
        assert gen.guard["rail_errors"] == 0 and gen.guard["rail_timeouts"] == 0


async def test_an_owned_guard_is_closed_with_the_provider(guard):
    closed: list[bool] = []
    original = guard.close
    guard.close = lambda: (closed.append(True), original())  # type: ignore[method-assign]
    await GuardedProvider(FakeProvider(), guard).aclose()
    assert closed == []  # a shared guard stays open
    await GuardedProvider(FakeProvider(), guard, owns_guard=True).aclose()
    assert closed == [True]


def test_guards_built_from_the_same_rails_keep_their_own_runners(tox: PhraseClassifier) -> None:
    # One Rail object in two guards: each guard binds a copy to a runner it owns, so the second
    # honours its own micro_batch setting and keeps working after the first is closed. (Binding
    # the shared object made the second guard reuse the first's runner and, once that was
    # closed, fail every check: with on_error=allow, a silent pass.)
    rail = Rail("toxic", tox, threshold=0.5, action="block", on_error="allow")
    first = Guard(input_rails=[rail], micro_batch=False)
    second = Guard(input_rails=[rail], micro_batch=True)
    assert first.input_rails[0].runner is not second.input_rails[0].runner
    assert not first.input_rails[0].runner.micro_batched
    assert second.input_rails[0].runner.micro_batched
    assert not rail.has_runner  # the caller's object is left unbound
    first.close()
    verdict = second.check_input("you idiot")
    assert verdict.action == "block" and not any(r.error for r in verdict.rails)
    assert asyncio.run(second.acheck_input("you idiot")).action == "block"
    second.close()
    # A guard made after both are closed works too.
    with Guard(input_rails=[rail]) as third:
        assert third.check_input("you idiot").action == "block"
