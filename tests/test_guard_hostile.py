"""The guard on hostile input: non-text, broken Unicode, hidden PII, huge and pathological texts.

Each test covers a class of inputs (every non-str type, every invisible character, every
action), not one quoted example.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rai_harness.classifiers.base import ClassifierSpec, LabelScores
from rai_harness.classifiers.keyword import KeywordClassifier
from rai_harness.classifiers.pii_shapes import OBFUSCATED_EMAIL, SPACED_EMAIL
from rai_harness.cli_guard import guard_app
from rai_harness.guardrails import Guard, Rail
from rai_harness.guardrails.textprep import normalize_for_detection

NON_TEXT: list[Any] = [
    None,
    42,
    3.5,
    True,
    b"my card 4111",
    bytearray(b"x"),
    ["a"],
    ("a",),
    {"text": "a"},
    object(),
]

# Every kind of character the detection text must not see: zero-width and joiners, soft
# hyphen, word joiner, invisible operators, BOM, bidi marks, embeddings, overrides and
# isolates, variation selectors, a tag character, the combining grapheme joiner.
INVISIBLE = [
    "\u200b",
    "\u200c",
    "\u200d",
    "\u00ad",
    "\u2060",
    "\u2061",
    "\u2062",
    "\u2063",
    "\u2064",
    "\ufeff",
    "\u200e",
    "\u200f",
    "\u061c",
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
    "\ufe0f",
    "\U000e0041",
    "\u034f",
]
# Control characters other than tab, LF and CR that render as nothing (NUL, SOH, BEL, BS, ESC,
# DEL, APC) and that separate words (VT, FF, the separators, NEL).
HIDDEN_CONTROLS = ["\x00", "\x01", "\x07", "\x08", "\x1b", "\x7f", "\x9f"]
SPACE_CONTROLS = ["\x0b", "\x0c", "\x1c", "\x1f", "\x85"]


def keyword_guard(**kwargs: Any) -> Guard:
    bad = KeywordClassifier({"insult": ["idiot"]}, name="insults")
    pii = KeywordClassifier({"EMAIL": ["jane@example.com"]}, name="contacts")
    return Guard(
        [
            Rail("insult", bad, action="block", threshold=0.5, on_error="allow"),
            Rail("email", pii, action="redact", threshold=0.5, on_error="allow"),
        ],
        [Rail("insult-out", bad, action="flag", threshold=0.5, on_error="allow")],
        **kwargs,
    )


# -- 1. fail closed on what is not text -------------------------------------------------------


@pytest.mark.parametrize("value", NON_TEXT, ids=lambda v: type(v).__name__)
def test_non_text_raises_everywhere_even_with_on_error_allow(value: Any) -> None:
    with keyword_guard() as guard:
        with pytest.raises(TypeError):
            guard.check_input(value)
        with pytest.raises(TypeError):
            guard.check_output(value)
        with pytest.raises(TypeError):
            guard.check_inputs(["fine", value])
        with pytest.raises(TypeError):
            guard.check_output("fine", prompt=value) if value is not None else guard.check_outputs([value])
        with pytest.raises(TypeError):
            asyncio.run(guard.acheck_input(value))
        with pytest.raises(TypeError):
            asyncio.run(guard.acheck_outputs(["fine", value]))
        with pytest.raises(TypeError):
            list(guard.stream_output(["fine. ", value]))

        async def stream() -> list[str]:
            async def chunks():  # type: ignore[no-untyped-def]
                yield "fine. "
                yield value

            return [c async for c in guard.astream_output(chunks())]

        with pytest.raises(TypeError):
            asyncio.run(stream())


def test_a_str_where_a_list_is_expected_is_refused() -> None:
    with keyword_guard() as guard, pytest.raises(TypeError):
        guard.check_inputs("you idiot")  # type: ignore[arg-type]


# -- surrogates --------------------------------------------------------------------------------


@pytest.mark.parametrize("surrogate", ["\ud800", "\udbff", "\udc00", "\udfff", "\udc80"])
def test_lone_surrogates_are_replaced_and_flagged(surrogate: str) -> None:
    with keyword_guard() as guard:
        for text, action in [
            (f"hello {surrogate} there", "flag"),
            (f"{surrogate}mail jane@example.com{surrogate}", "redact"),
            (f"you idiot{surrogate}", "block"),
        ]:
            result = guard.check_input(text)
            assert result.action == action and "invalid_unicode" in result.notices and result.flagged
            assert result.text == text.replace(surrogate, "\ufffd")
            if result.redacted_text is not None:
                result.redacted_text.encode("utf-8")  # strict: nothing unencodable comes back
                json.dumps(result.to_dict(), ensure_ascii=False).encode("utf-8")
            if action == "redact":
                assert result.redacted_text == "\ufffdmail <EMAIL>\ufffd"


# -- 2. normalisation with an offset map -------------------------------------------------------


def test_offset_map_covers_every_detection_character() -> None:
    rng = random.Random(7)
    alphabet = (
        "ab @.1" + "".join(INVISIBLE) + "\uff20\uff41\uff11\ufb01e\u0301\u00e9\u2460\u3000\u0332\u3002\u03ac"
    )
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        detection, starts, ends = normalize_for_detection(text)
        assert not any(c in detection for c in INVISIBLE)
        assert unicodedata.is_normalized("NFKC", detection)
        if starts is None:
            assert detection == text
            continue
        assert len(starts) == len(ends) == len(detection)
        assert list(starts) == sorted(starts) and all(
            0 <= s < e <= len(text) for s, e in zip(starts, ends, strict=True)
        )
        # Each detection character comes from the original range it maps to.
        for j, char in enumerate(detection):
            source = "".join(c for c in text[starts[j] : ends[j]] if c not in INVISIBLE)
            # NFKC, with the ideographic full stop read as "." and marks over Latin letters dropped.
            read = unicodedata.normalize("NFKC", source).replace("\u3002", ".")
            assert char in read or char in unicodedata.normalize("NFKD", read), (text, j)


def test_controls_are_spaces_or_read_both_ways() -> None:
    assert normalize_for_detection("a\tb\r\nc") == ("a\tb\r\nc", None, None)  # text
    # Word-separating controls become a space, one for one.
    assert normalize_for_detection("a\x0bb\x85c")[0] == "a b c"
    # A control that renders as nothing is read both ways: removed, then as a space.
    detection, starts, ends = normalize_for_detection("jane@exa\x00mple.com")
    assert detection == "jane@example.com\njane@exa mple.com" and starts is not None and ends is not None
    assert len(starts) == len(ends) == len(detection)
    # Both copies map back to the original: the address is offsets 0-17 in each.
    second = detection.index("\n") + 1
    assert (starts[0], ends[15]) == (0, 17) and (starts[second], ends[-1]) == (0, 17)


@pytest.mark.parametrize("control", HIDDEN_CONTROLS + SPACE_CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_a_control_next_to_pii_neither_hides_it_nor_eats_a_word(pii_guard: Guard, control: str) -> None:
    for text, redacted in [
        (f"mail bob@example.org{control}thanks", f"mail <EMAIL_ADDRESS>{control}thanks"),
        (f"call{control}jane@example.com now", f"call{control}<EMAIL_ADDRESS> now"),
        (f"card{control}4111 1111 1111 1111{control}ok", f"card{control}<CREDIT_CARD>{control}ok"),
    ]:
        result = pii_guard.check_input(text)
        assert result.action == "redact" and result.redacted_text is not None, text
        if control in SPACE_CONTROLS:
            assert result.redacted_text == redacted, (text, result.redacted_text)
        else:
            # Rendered as nothing, the control glues the words: "calljane@example.com" is an
            # address too. Its copy with the control removed finds that, so the glued word may
            # go with it: redacting too much, never leaking.
            assert "@" not in result.redacted_text and "4111" not in result.redacted_text, (
                result.redacted_text
            )
            assert result.redacted_text.endswith(redacted[-4:]), result.redacted_text


@pytest.mark.parametrize("glue", ["", "\u200b", "\u00ad", "\u2060", "\x00", "\x1b"], ids=repr)
def test_a_word_glued_onto_pii_does_not_hide_it(pii_guard: Guard, glue: str) -> None:
    # Whatever joins them (nothing, or a character that renders as nothing), a reader sees the
    # address and the card number with a word run on: presidio's patterns wanted a word
    # boundary or a public suffix there ("comthanks" is none).
    for text, gone, kept in [
        (f"Mail jane.doe@example.com{glue}thanks", "@", "thanks"),
        (f"Mail jane.doe@exa{glue}mple.co.uk{glue}thanks", "@", "thanks"),
        (f"Card 4111 1111{glue} 1111 1111{glue}ok", "4111", "ok"),
        (f"Card 5500 0000 0000 0004{glue}expires soon", "5500", "expires"),
    ]:
        result = pii_guard.check_input(text)
        assert result.action == "redact" and result.redacted_text is not None, text
        assert gone not in result.redacted_text and kept in result.redacted_text, (text, result.redacted_text)


def test_a_glued_word_is_cut_at_the_longest_public_suffix_and_plain_text_is_left_alone(
    pii_guard: Guard,
) -> None:
    assert pii_guard.check_input("jane@example.comthanks").redacted_text == "<EMAIL_ADDRESS>thanks"
    # "community" is itself a public suffix: the whole address.
    assert pii_guard.check_input("jane@example.community").redacted_text == "<EMAIL_ADDRESS>"
    # Any start of the last label that is a public suffix ends the address, so an internal
    # address reads as one: "ops@build.internal" is "ops@build.int" + "ernal", contact data all the same.
    assert pii_guard.check_input("ops@build.internal").redacted_text == "<EMAIL_ADDRESS>ernal"
    # No start of the label makes a suffix, digits glued to digits are no card, and a glued
    # number failing the Luhn check is none either: left alone.
    for text in ("user@localhost.xqzzy", "order 4111111111111111234567 shipped", "ref 4111111111111112ok"):
        assert pii_guard.check_input(text).action == "allow", text


@pytest.mark.parametrize(
    "domain",
    [
        "example.co\u0332m",  # combining low line
        "example.c\u0338om",  # combining long solidus overlay
        "example.co\u0307m",  # composes to U+022F
        "example.c\u022fm",  # precomposed
        "\u00e9xample.com",  # an accented letter of the domain
        "example\u3002com",  # ideographic full stop (IDNA reads it as ".")
        "example\uff61com",  # halfwidth ideographic full stop
    ],
)
def test_marks_over_letters_and_ideographic_stops_do_not_hide_an_address(
    pii_guard: Guard, domain: str
) -> None:
    result = pii_guard.check_input(f"Mail jane.doe@{domain} today.")
    assert result.redacted_text == "Mail <EMAIL_ADDRESS> today.", result


def test_marks_are_kept_where_dropping_them_would_not_leave_latin_letters() -> None:
    greek, hindi = "\u03ac\u03bb\u03bb\u03bf", "\u0928\u092e\u0938\u094d\u0924\u0947"
    assert normalize_for_detection(f"{greek} {hindi}")[0] == unicodedata.normalize("NFKC", f"{greek} {hindi}")
    assert normalize_for_detection("Jos\u00e9 Garc\u0131\u0301a")[0] == "Jose Garc\u0131\u0301a"


@pytest.mark.parametrize(
    "around", [("\u202e", "\u202c"), ("\u200b", "\u200b"), ("\u2067", "\u2069")], ids=repr
)
def test_invisible_characters_around_a_finding_stay_on_both_sides(
    pii_guard: Guard, around: tuple[str, str]
) -> None:
    # Redacting one side only would leave a bidi override open: the rest of the line displays
    # reversed. Both stay, as they were.
    opening, closing = around
    result = pii_guard.check_input(f"Mail {opening}jane.doe@example.com{closing} now")
    assert result.redacted_text == f"Mail {opening}<EMAIL_ADDRESS>{closing} now"


@pytest.mark.parametrize("lead", ["Contact ", "word " * 96], ids=["sentence", "at the forced cut"])
def test_a_spaced_out_address_is_redacted_whole_in_a_stream(pii_guard: Guard, lead: str) -> None:
    text = f"{lead}j a n e . d o e @ e x a m p l e . c o . u k today."
    for size in (1, 7, 64):
        out = "".join(pii_guard.stream_output([text[i : i + size] for i in range(0, len(text), size)]))
        assert out == f"{lead}<EMAIL_ADDRESS> today.", (size, out[-60:])


def test_str_subclasses_are_checked_as_their_characters(pii_guard: Guard) -> None:
    class Ascii(str):
        def isascii(self) -> bool:  # would skip the normalisation
            return True

    class Short(str):
        def __len__(self) -> int:  # would cut the redaction
            return 3

    for text in (Ascii("mail jane\u200b@example.com"), Short("mail jane@example.com")):
        result = pii_guard.check_input(text)
        assert result.redacted_text == "mail <EMAIL_ADDRESS>", result
    allowed = pii_guard.check_input(Ascii("hello"))
    assert type(allowed.text) is str and type(allowed.redacted_text) is str
    assert [type(r.text) for r in pii_guard.check_inputs([Short("a"), Ascii("b")])] == [str, str]


def test_lookalike_letters_are_folded_only_in_mixed_script_words() -> None:
    from rai_harness.guardrails.textprep import fold_lookalikes

    russian = "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0421\u043e\u043a \u0438 \u043a\u043e\u0444\u0435."
    greek = "\u039f \u03ba\u03cc\u03c3\u03bc\u03bf\u03c2 \u03b5\u03af\u03bd\u03b1\u03b9 \u03bf\u03bc\u03bf\u03c1\u03c6\u03bf\u03c2."
    for text in (russian, greek, "Caf\u00e9 na\u00efve r\u00e9sum\u00e9", "plain ascii"):
        assert fold_lookalikes(text) == text  # one script per word: ordinary text
    mixed = f"{russian} you \u0456di\u043et, write to jane@ex\u0430mple.\u0441om"
    folded = fold_lookalikes(mixed)
    assert folded == f"{russian} you idiot, write to jane@example.com" and len(folded) == len(mixed)
    # Capitals fold to capitals (TR39's prototype for capital I is "l").
    assert fold_lookalikes("you \u0406DIOT, KI\u0406\u0406") == "you IDIOT, KIII"
    # Letters of living alphabets are never folded: Turkish dotless i, Ewe and Kabiye letters.
    for text in ("Bu s\u0131k s\u0131k olur. I\u015f\u0131k k\u0131sa.", "E\u028be \u0263e \u0269"):
        assert fold_lookalikes(text) == text
    # Latin-script display forms (script a and g, small capitals) fold in every word.
    assert fold_lookalikes("jane@ex\u0251mple.\u0261ov \u1d04\u1d1c\u1d20 caf\u00e9") == (
        "jane@example.gov cuv caf\u00e9"
    )
    detection, starts, ends = normalize_for_detection("mail jane@example.\u0441om")
    assert detection == "mail jane@example.com" and starts is None and ends is None  # offsets unchanged


@pytest.fixture(scope="module")
def pii_guard() -> Guard:
    from rai_harness.classifiers.pool import default_pool

    pii = default_pool().classifier(
        ClassifierSpec(
            backend="presidio", options={"entities": ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD"]}
        )
    )
    guard = Guard(
        [Rail("pii", pii, action="redact", threshold=0.4, on_error="block", timeout_ms=30_000)],
        [Rail("pii-out", pii, action="redact", threshold=0.4, on_error="block", timeout_ms=30_000)],
        max_chars=20_000,
    )
    yield guard
    guard.close()


@pytest.mark.parametrize("hidden", INVISIBLE + HIDDEN_CONTROLS, ids=lambda c: f"U+{ord(c):04X}")
def test_email_hidden_by_invisible_characters_is_redacted_in_the_original(
    pii_guard: Guard, hidden: str
) -> None:
    rng = random.Random(ord(hidden))
    email = "maria.gonzalez@example.org"
    for _ in range(3):
        cut = sorted(rng.sample(range(1, len(email)), 2))
        disguised = email[: cut[0]] + hidden + email[cut[0] : cut[1]] + hidden * 2 + email[cut[1] :]
        before, after = f"Hi{hidden} team, write to ", " before Friday."
        result = pii_guard.check_input(before + disguised + after)
        assert result.action == "redact", (disguised, result)
        # Cut exactly where the address was in the ORIGINAL text; the rest is untouched.
        assert result.redacted_text == before + "<EMAIL_ADDRESS>" + after


@pytest.mark.parametrize(
    "disguised",
    [
        "maria.gonzalez\uff20example.org",  # fullwidth @
        "\uff4d\uff41\uff52\uff49\uff41@example.org",  # fullwidth letters
        "maria.gonzalez@exa\u202emple.org",  # right-to-left override inside the domain
        "maria.gonzalez\ufe6bexample.org",  # small commercial at
        "maria.gonzalez@example.\u043erg",  # Cyrillic o in the top-level domain
        "m\u0430ri\u0430.gonzalez@ex\u0430mple.org",  # Cyrillic a
        "maria.g\u03bfnzalez@example.org",  # Greek omicron
        "maria.gonzalez@ex\u0251mple.org",  # Latin alpha (IPA)
        "m\u0251ria.gonz\u0251lez@e\u0445\u0251mple.\u1d0frg",  # Latin, Cyrillic and a small capital
    ],
)
def test_email_in_lookalike_characters_is_redacted(pii_guard: Guard, disguised: str) -> None:
    result = pii_guard.check_input(f"mail {disguised} now")
    assert result.action == "redact" and result.redacted_text == "mail <EMAIL_ADDRESS> now"


@pytest.mark.parametrize(
    "spelled",
    [
        "maria dot gonzalez at example dot org",
        "maria.gonzalez [at] example [dot] org",
        "maria_gonzalez(at)example(dot)co(dot)uk",
        "MARIA AT EXAMPLE DOT ORG",
        "m a r i a . g o n z a l e z @ e x a m p l e . o r g",
        "(j a n e @ e x a m p l e . c o . u k)",
        "jd @ m a i l . d e",
    ],
)
def test_a_spelled_out_email_is_redacted_as_the_report_masks_it(pii_guard: Guard, spelled: str) -> None:
    from rai_harness.report.redaction import Redactor

    result = pii_guard.check_input(f"Write to {spelled} before Friday.")
    expected = f"Write to {'(' if spelled.startswith('(') else ''}<EMAIL_ADDRESS>{')' if spelled.endswith(')') else ''}"
    assert result.redacted_text == f"{expected} before Friday.", result
    # The same pattern in the report's redactor: the guard is at least as strict as the report.
    assert Redactor("regex").redact_many([spelled.strip("()")]) == ["<EMAIL_ADDRESS>"]


@pytest.mark.parametrize(
    "run", ["a.b" * 6_000, "a dot " * 3_300, "a [dot] " * 2_500, ("ab." * 7 + "ab at ") * 800]
)
def test_the_spelled_out_email_pattern_is_linear_on_dotted_runs(run: str) -> None:
    # Compiled by presidio's `regex` engine, the unbounded pattern took 147 s on 18,000
    # characters of "a.b" (a failed match rescanned the run from every start); bounded, it
    # takes milliseconds. The limit is 5 s, far from both.
    import regex

    for shape in (OBFUSCATED_EMAIL, SPACED_EMAIL):
        pattern = regex.compile(shape.pattern)
        started = time.perf_counter()
        list(pattern.finditer(run))
        assert time.perf_counter() - started < 5.0, shape


@pytest.mark.parametrize("run", ["a" * 100_000, "a@" * 50_000, "a.b@c." * 16_000, "x@y" + ".z" * 50_000])
def test_the_glued_email_pattern_is_linear(run: str) -> None:
    from rai_harness.classifiers.presidio_backend import _GLUED_EMAIL

    started = time.perf_counter()
    list(_GLUED_EMAIL.finditer(run))
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize("run", ["a " * 30_000, "a . " * 15_000, "a @ " * 15_000, "a b @ c . " * 6_000])
def test_the_spaced_out_email_pattern_is_linear_on_spaced_runs(run: str) -> None:
    import regex

    pattern = regex.compile(SPACED_EMAIL.pattern)
    started = time.perf_counter()
    list(pattern.finditer(run))
    assert time.perf_counter() - started < 5.0


def test_at_and_dot_in_prose_without_a_real_suffix_are_not_an_address(pii_guard: Guard) -> None:
    for text in (
        "We meet at noon.",
        "Look at the dot on the map.",
        "Click at the top dot menu.",
        "Spell it out: c a t . d o g",
        "Grades: A B @ C . D",
    ):
        assert pii_guard.check_input(text).action == "allow", text


@pytest.mark.parametrize("surrogate", ["\ud800", "\udfff"])
def test_pii_next_to_a_surrogate_is_still_redacted(pii_guard: Guard, surrogate: str) -> None:
    result = pii_guard.check_input(f"{surrogate}mail maria@example.org{surrogate} or call 212-555-0199")
    assert result.rails[0].error is None and "invalid_unicode" in result.notices
    assert result.redacted_text == "\ufffdmail <EMAIL_ADDRESS>\ufffd or call <PHONE_NUMBER>"


def test_card_in_fullwidth_digits_is_redacted(pii_guard: Guard) -> None:
    card = "4111 1111 1111 1111".translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    result = pii_guard.check_input(f"my card is {card}, thanks")
    assert result.redacted_text == "my card is <CREDIT_CARD>, thanks"


# -- 3. redacted_text per action ---------------------------------------------------------------


def test_redacted_text_per_action() -> None:
    with keyword_guard() as guard:
        blocked = guard.check_input("you idiot, write jane@example.com")
        assert blocked.action == "block" and blocked.redacted_text is None
        assert blocked.to_dict()["redacted_text"] is None and "text" not in blocked.to_dict()
        assert "jane" not in json.dumps(blocked.to_dict())
        redacted = guard.check_input("write jane@example.com")
        assert redacted.action == "redact" and redacted.redacted_text == "write <EMAIL>"
        flagged = guard.check_output("what an idiot")
        assert flagged.action == "flag" and flagged.redacted_text == "what an idiot"
        allowed = guard.check_input("hello there")
        assert allowed.action == "allow" and allowed.redacted_text == "hello there"
        for result in guard.check_inputs(["you idiot", "x jane@example.com", "ok"]):
            assert (result.redacted_text is None) == result.blocked


# -- 4. bounded work ---------------------------------------------------------------------------


class SlowClassifier:
    """Takes time proportional to the text (like a real model), counting what it scored."""

    name = "slow"
    labels = ("toxic",)
    produces_spans = False

    def __init__(self, seconds_per_char: float) -> None:
        self.seconds_per_char = seconds_per_char
        self.chars = 0
        self.lock = threading.Lock()

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        for text in texts:
            time.sleep(len(text) * self.seconds_per_char)
            with self.lock:
                self.chars += len(text)
        return [LabelScores({"toxic": 1.0 if "idiot" in t else 0.0}) for t in texts]

    def info(self) -> dict[str, Any]:
        return {"name": self.name}


def test_over_max_chars_is_blocked_without_reaching_a_classifier() -> None:
    slow = SlowClassifier(0.0)
    with Guard([Rail("tox", slow, action="flag", threshold=0.5, on_error="allow")], max_chars=1000) as guard:
        result = guard.check_input("x" * 1001)
        assert result.action == "block" and result.redacted_text is None and slow.chars == 0
        assert result.notices == ("over_max_chars",) and result.rails[0].error
        assert guard.check_input("x" * 1000).action == "allow" and slow.chars == 1000


def test_head_tail_checks_both_ends_and_maps_findings_back() -> None:
    with keyword_guard(max_chars=400, over_max_chars="head_tail") as guard:
        text = "start " + "filler " * 300 + "mail jane@example.com"
        result = guard.check_input(text)
        assert result.action == "redact" and "truncated" in result.notices
        assert result.redacted_text == text.replace("jane@example.com", "<EMAIL>")
        assert guard.check_input("you idiot " + "filler " * 300).action == "block"
        # The middle is not checked: flagged (truncated), never silently allowed.
        assert guard.check_input("a " * 150 + "idiot " + "b " * 150).action == "flag"


@pytest.mark.parametrize("use_async", [False, True])
def test_a_huge_text_does_not_starve_the_next_call(use_async: bool) -> None:
    # 1 MB at 20 µs/char would hold a worker for 20 s. A text earns one timeout allowance per
    # 2,000 characters, counted up to 40,000 (twice the default max_chars), so the rail gives
    # up after 20 x 50 ms = 1 s.
    slow = SlowClassifier(20e-6)
    rail = Rail("tox", slow, action="block", threshold=0.5, on_error="block", timeout_ms=50)
    assert rail.timeout_s(1, 20_000) == pytest.approx(0.5) and rail.timeout_s(1, 100) == pytest.approx(0.05)
    with Guard([rail], max_chars=None) as guard:
        huge = "word " * 200_000

        def check(text: str) -> Any:
            return asyncio.run(guard.acheck_input(text)) if use_async else guard.check_input(text)

        first = check(huge)
        assert first.blocked and first.rails[0].error == "timed out after 1000 ms"
        started = time.perf_counter()
        second = check("you idiot")
        assert second.rails[0].error is None and second.blocked  # scored, not timed out
        third = check("hello")
        assert third.action == "allow" and third.rails[0].error is None
        assert time.perf_counter() - started < 1.0
        time.sleep(0.3)
        assert slow.chars < len(huge) // 4  # the abandoned text stopped at a piece boundary


def test_a_long_text_within_max_chars_earns_time_for_its_length() -> None:
    # 10,000 characters at 20 µs each: 0.2 s of work, twice one 100 ms allowance. The text
    # earns five (one per 2,000 characters), so it gets a verdict: with `on_error: allow` a
    # timeout here would let a prompt padded to this length pass unchecked.
    slow = SlowClassifier(20e-6)
    rail = Rail("tox", slow, action="block", threshold=0.5, on_error="allow", timeout_ms=100)
    with Guard([rail], max_chars=20_000) as guard:
        result = guard.check_input("word " * 1999 + "idiot")
        assert result.rails[0].error is None and result.action == "block"
    assert rail.timeout_s(1, 9) == pytest.approx(0.1)  # a short text: one allowance, as before


def test_characters_count_up_to_the_guards_max_chars() -> None:
    from rai_harness.guardrails.rails import timed_chars, timeout_allowances

    # A policy may check 60,000 characters whole: they earn their time (a 20,000 cap would
    # time an `on_error: allow` rail out and let the text through).
    assert timed_chars(["x" * 60_000, "y" * 10], 100_000) == 60_010
    assert timed_chars(["x" * 60_000], None) == 40_000  # no max_chars: still a bounded wait
    # A text within max_chars read both ways (a NUL in it) is scored twice over: it earns that.
    assert timed_chars(["x" * 40_001], 20_000) == 40_000
    assert timeout_allowances(1, 60_000) == 30 and timeout_allowances(65, 10) == 2
    slow = SlowClassifier(2e-6)  # 60,000 characters: 0.12 s against 30 x 10 ms = 0.3 s
    rail = Rail("tox", slow, action="block", threshold=0.5, on_error="allow", timeout_ms=10)
    with Guard([rail], max_chars=100_000) as guard:
        result = guard.check_input("word " * 11_999 + "idiot")
        assert result.rails[0].error is None and result.action == "block"


def test_long_texts_are_scored_whole_in_pieces() -> None:
    with keyword_guard(max_chars=None) as guard:
        text = "filler " * 2000 + "jane@example.com " + "filler " * 2000 + "idiot"
        result = guard.check_input(text)
        assert result.blocked and result.rail("email").spans
        (span,) = result.rail("email").spans
        assert text[span.start : span.end] == "jane@example.com"


def test_emoji_and_punctuation_runs_stay_fast_for_presidio(pii_guard: Guard) -> None:
    from rai_harness.classifiers.presidio_backend import tame_long_runs

    # Dotted word runs: the spelled-out e-mail pattern rescanned them from every start (147 s
    # for 18,000 characters of "a.b" under presidio's regex engine) before it was bounded.
    for run in [
        "\U0001f600" * 12_000,
        "(" * 12_000,
        "_+" * 6_000,
        "a-" * 6_000,
        "a.b" * 3_000,
        "a dot " * 1_500,
    ]:
        text = f"{run} mail maria@example.org {run}"
        assert len(tame_long_runs(text)) == len(text)
        result = pii_guard.check_input(text[:19_000] + " maria@example.org")
        # 30 s rail timeout: the quadratic tokenizer took 21 s for 12,000 emoji alone.
        assert result.rails[0].error is None and result.redacted_text is not None
        assert result.redacted_text.endswith(" <EMAIL_ADDRESS>")
    assert tame_long_runs("short (run) :-) maria@example.org") == "short (run) :-) maria@example.org"


# -- the CLI -----------------------------------------------------------------------------------

POLICY = """\
name: kw
classifiers:
  insults: {backend: keyword, options: {insult: [idiot]}}
  contacts: {backend: keyword, options: {EMAIL: [jane@example.com]}}
input:
  - {name: insult-in, classifier: insults, threshold: 0.5, action: block}
  - {name: contacts-in, classifier: contacts, threshold: 0.5, action: redact}
"""


def test_cli_bad_lines_get_per_line_errors_and_later_lines_are_kept(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    lines = [
        json.dumps({"text": "hello"}).encode(),
        b'{"text": "caf\xe9 \xff"}',  # not UTF-8
        b'{"text": "half',  # not JSON
        json.dumps({"text": 42}).encode(),  # not a string
        json.dumps({"text": None}).encode(),
        b'{"text": "lone \\ud800 surrogate", "id": "x\\udc00"}',  # valid JSON, invalid Unicode
        json.dumps({"text": "you idiot jane@example.com"}).encode(),
        json.dumps({"text": "mail jane@example.com"}).encode(),
        b'{"text": "a", "id": ' + b"1" * 5000 + b"}",  # past Python's int digit limit
        b"[" * 100_000 + b"]" * 100_000,  # nested past the recursion limit
        b'{"text": "a", "id": NaN}',  # would echo as bare NaN: not JSON
        b'{"text": "b", "id": [1, -Infinity]}',
        json.dumps({"text": "last", "id": 10**30}).encode(),
    ]
    data = tmp_path / "in.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    result = CliRunner().invoke(guard_app, ["check", "-p", str(policy), "-i", str(data), "--batch-size", "3"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    # Strict JSON: a bare NaN or Infinity in a verdict line fails here.
    out = [
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the output"))
        for line in result.stdout.splitlines()
    ]
    assert [o["line"] for o in out] == list(range(1, 14))
    assert [("error" in o) for o in out] == [False, True, True, True, True, False, False, False] + [
        True
    ] * 4 + [False]
    assert [f"line {o['line']}.id" in o["error"] for o in out[8:12]] == [True, False, True, True]
    assert "nested too deep" in out[9]["error"]
    assert out[12]["id"] == 10**30 and out[12]["action"] == "allow"
    assert "UTF-8" in out[1]["error"] and "line 2" in out[1]["error"] and "in.jsonl" in out[1]["error"]
    assert out[5]["notices"] == ["invalid_unicode"] and out[5]["redacted_text"] == "lone \ufffd surrogate"
    assert out[5]["id"] == "x\udc00"  # echoed as a JSON escape, not a crash
    assert out[6]["action"] == "block" and out[6]["redacted_text"] is None
    assert out[7]["redacted_text"] == "mail <EMAIL>"
    assert "line 3" in result.stderr


def test_cli_exits_cleanly_after_rail_timeouts(tmp_path: Path) -> None:
    # Real models with a 1 ms timeout: every call times out while the models are still
    # inside native code (BLAS, spaCy) when the command finishes.
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        """\
name: hurried
classifiers:
  toxicity: {backend: minilm-toxicity}
  pii: {backend: presidio, options: {entities: [EMAIL_ADDRESS, PERSON]}}
input:
  - {name: tox, classifier: toxicity, threshold: 0.5, action: block, timeout_ms: 1}
  - {name: pii, classifier: pii, threshold: 0.5, action: redact, timeout_ms: 1}
"""
    )
    data = tmp_path / "in.jsonl"
    texts = ["\U0001f600" * 12_000, "hello " * 3000, "mail maria@example.org", "(" * 12_000]
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    code = "import sys; from rai_harness.cli import main; sys.argv = ['rai'] + sys.argv[1:]; main()"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "guard",
            "check",
            "-p",
            str(policy),
            "-i",
            str(data),
            "--batch-size",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Its own exit code, not an abort (134) or a segfault (139): 2, since rails timed out.
    assert proc.returncode == 2 and "failed or timed out" in proc.stderr, proc.stderr[-2000:]
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(out) == len(texts)
    assert all(o["action"] == "block" for o in out)  # on_error: block (the default)
    assert any("timed out" in (r["error"] or "") for o in out for r in o["rails"])
    assert "Aborting" not in proc.stderr and "Traceback" not in proc.stderr


class _FixedClassifier:
    """Returns the same scores and spans for every text."""

    name = "fixed"
    labels = ("bad",)
    produces_spans = True

    def __init__(self, scores: dict[str, float], spans: tuple = ()) -> None:
        self.result = LabelScores(scores, spans)

    def predict(self, texts: Sequence[str]) -> list[LabelScores]:
        return [self.result for _ in texts]


@pytest.mark.parametrize("make", [lambda r: (x for x in r), lambda r: map(lambda x: x, r), iter])
def test_rails_given_as_a_generator_are_used(make) -> None:
    # all() over a generator used it up, and the guard was built with no rails (allow everything).
    rail = Rail("r", KeywordClassifier({"insult": ["idiot"]}), threshold=0.5, action="block")
    guard = Guard(input_rails=make([rail]))
    try:
        assert [r.name for r in guard.input_rails] == ["r"]
        assert guard.check_input("you idiot").action == "block"
    finally:
        guard.close()


@pytest.mark.parametrize("on_error", ["block", "allow"])
@pytest.mark.parametrize("score", [float("nan"), float("inf")])
def test_a_score_that_is_not_a_finite_number_is_a_failed_check(on_error, score) -> None:
    from rai_harness.classifiers.base import Span

    for result in (_FixedClassifier({"bad": score}), _FixedClassifier({}, (Span(0, 3, "bad", score),))):
        rail = Rail("r", result, threshold=0.5, action="block", on_error=on_error)
        guard = Guard(output_rails=[rail], micro_batch=False)
        try:
            verdict = guard.check_output("bad text")
        finally:
            guard.close()
        assert verdict.action == on_error and verdict.errors and "finite" in verdict.errors[0].error


@pytest.mark.parametrize("span", [(5, 2), (-4, 3), (20, 30), (3, 3)])
def test_a_redaction_whose_spans_lie_outside_the_text_blocks(span) -> None:
    from rai_harness.classifiers.base import Span

    clf = _FixedClassifier({"bad": 0.9}, (Span(span[0], span[1], "bad", 0.9),))
    guard = Guard(output_rails=[Rail("r", clf, threshold=0.5, action="redact")], micro_batch=False)
    try:
        verdict = guard.check_output("secret text")
    finally:
        guard.close()
    assert verdict.action == "block" and verdict.redacted_text is None
    # One usable span among unusable ones: only it is cut.
    clf.result = LabelScores({"bad": 0.9}, (Span(20, 30, "bad", 0.9), Span(0, 6, "bad", 0.9)))
    guard = Guard(output_rails=[Rail("r", clf, threshold=0.5, action="redact")], micro_batch=False)
    try:
        assert guard.check_output("secret text").redacted_text == "<bad> text"
    finally:
        guard.close()


@pytest.mark.parametrize("use_async", [False, True])
def test_many_short_texts_in_one_call_do_not_starve_another_callers_check(use_async: bool) -> None:
    # A request of 1,000 parts of 900 characters stays under every size limit, and on the
    # micro-batcher it held the classifier for 43 s: every other caller's check timed out (and
    # with on_error: allow, passed). Past a few long texts' worth, such a call takes the long lane.
    slow = SlowClassifier(20e-6)
    rail = Rail("tox", slow, action="block", threshold=0.5, on_error="allow", timeout_ms=300)
    with Guard([rail], max_chars=None) as guard:
        parts = ["word " * 180] * 300  # 270,000 characters: 5 s of work

        def check(texts: list[str]) -> Any:
            return asyncio.run(guard.acheck_inputs(texts)) if use_async else guard.check_inputs(texts)

        done = threading.Event()
        threading.Thread(target=lambda: (check(parts), done.set()), daemon=True).start()
        time.sleep(0.2)  # the bulk call is running
        started = time.perf_counter()
        (other,) = check(["you idiot"])
        assert other.rails[0].error is None and other.blocked  # scored, not timed out
        assert time.perf_counter() - started < 1.0 and not done.is_set()
        assert done.wait(60)  # the bulk call finishes in its own time (it earns allowances per text)
