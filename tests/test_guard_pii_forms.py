"""PII written the many ways people write it: card and IBAN separators, digits of every script,
e-mail "at"/"dot" spellings, and the ordinary numbers and prose that must stay unflagged.

Each test covers a class of inputs (every dash, every separator, every digit script, every
at/dot form) and checks both the finding and that the redacted text keeps every other
character byte for byte, in the guard and in the report's redactor, which share the shapes.
"""

from __future__ import annotations

import sys
import time
import unicodedata
from collections.abc import Iterator

import pytest

from rai_harness.classifiers.base import ClassifierSpec
from rai_harness.classifiers.pii_shapes import (
    DASHES,
    OBFUSCATED_EMAIL,
    SEPARATED_CARD,
    SEPARATED_IBAN,
    fold_digits_and_dashes,
    is_card_number,
)
from rai_harness.classifiers.presidio_backend import DEFAULT_ENTITIES
from rai_harness.guardrails import Guard, Rail
from rai_harness.guardrails.textprep import normalize_for_detection
from rai_harness.report.redaction import Redactor

#: Every separator a card or IBAN is written with: the dashes NFKC leaves alone, ASCII
#: punctuation, tab, doubled spaces, a dash with spaces around it, and the two presidio knew.
SEPARATORS = [
    *"\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d",
    ".",
    "/",
    "_",
    ",",
    "\t",
    "  ",
    " - ",
    "-",
    " ",
]
#: The zero of a sample of Unicode decimal digit scripts (Arabic-Indic, Extended Arabic-Indic,
#: Devanagari, Bengali, Thai, Tibetan, Myanmar, fullwidth, mathematical bold).
ZEROS = [0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0xF20, 0x1040, 0xFF10, 0x1D7CE]
#: Card numbers (test values, Luhn-valid) with their usual grouping.
CARDS = [("4111", "1111", "1111", "1111"), ("5500", "0000", "0000", "0004"), ("3782", "822463", "10005")]
IBANS = ["DE89370400440532013000", "GB82WEST12345698765432"]


def _script(text: str, zero: int) -> str:
    return text.translate({ord(d): zero + int(d) for d in "0123456789"})


def _groups(compact: str, size: int) -> list[str]:
    return [compact[i : i + size] for i in range(0, len(compact), size)]


@pytest.fixture(scope="module")
def guard() -> Iterator[Guard]:
    from rai_harness.classifiers.pool import default_pool

    pii = default_pool().classifier(
        ClassifierSpec(
            backend="presidio",
            options={"entities": [e for e in DEFAULT_ENTITIES if e != "PERSON"]},
        )
    )
    with Guard(
        [Rail("pii", pii, action="redact", threshold=0.4, on_error="block", timeout_ms=60_000)],
        [Rail("pii-out", pii, action="block", threshold=0.4, on_error="block", timeout_ms=60_000)],
        max_chars=20_000,
    ) as g:
        yield g


def _labels(guard: Guard, text: str) -> set[str]:
    return {s.label for rail in guard.check_input(text).rails for s in rail.spans}


# -- the fold ------------------------------------------------------------------------------------


def test_every_unicode_digit_and_dash_folds_to_ascii_one_for_one() -> None:
    digits = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.decimal(chr(c), None) is not None]
    dashes = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Pd"]
    assert len(digits) > 600 and set(dashes) - {"-"} <= set(DASHES)  # a new Pd character: add it
    assert fold_digits_and_dashes("".join(digits)) == "".join(str(unicodedata.decimal(d)) for d in digits)
    assert fold_digits_and_dashes("".join(dashes) + DASHES) == "-" * (len(dashes) + len(DASHES))
    text = "Kartennummer \u0664\u0661\u0661\u0661\u2011\u0661\u0661\u0661\u0661 \u2014 Stra\u00dfe"
    assert len(fold_digits_and_dashes(text)) == len(text)
    detection, starts, ends = normalize_for_detection(text)
    assert detection == "Kartennummer 4111-1111 - Stra\u00dfe"
    assert starts in (None, tuple(range(len(text)))) and ends in (None, tuple(range(1, len(text) + 1)))


# -- cards -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sep", SEPARATORS, ids=lambda s: f"U+{ord(s.strip() or s[0]):04X}x{len(s)}")
@pytest.mark.parametrize("groups", CARDS, ids=lambda g: "".join(g)[:4])
def test_a_card_with_any_separator_is_redacted_and_the_rest_kept(
    guard: Guard, sep: str, groups: tuple[str, ...]
) -> None:
    text = f"Your card: {sep.join(groups)} (expires 12/27)."
    result = guard.check_input(text)
    assert result.redacted_text == "Your card: <CREDIT_CARD> (expires 12/27).", result
    assert guard.check_output(text).action == "block"
    assert Redactor("regex").redact_many([text]) == ["Your card: <CREDIT_CARD> (expires 12/27)."]


@pytest.mark.parametrize("sep", [" ", "\u2011", ".", "\t"], ids=repr)
@pytest.mark.parametrize("zero", ZEROS, ids=lambda z: f"U+{z:04X}")
def test_a_card_in_any_digit_script_is_redacted_in_the_original(guard: Guard, zero: int, sep: str) -> None:
    card = _script(sep.join(CARDS[0]), zero)
    result = guard.check_input(f"\u0628\u0637\u0627\u0642\u0629: {card} \u0634\u0643\u0631\u0627")
    assert result.redacted_text == "\u0628\u0637\u0627\u0642\u0629: <CREDIT_CARD> \u0634\u0643\u0631\u0627"
    assert Redactor("regex").redact_many([f"card {card} ok"]) == ["card <CREDIT_CARD> ok"]


def test_card_shapes_need_luhn_one_separator_and_no_run_on() -> None:
    assert is_card_number("4111.1111.1111.1111") and not is_card_number("4111.1111.1111.1112")
    assert not is_card_number("1234567890123")  # 13 digits from 1: a time in milliseconds
    for text in (
        "4111.1111/1111.1111",
        "1.2.4111.1111.1111.1111",
        "4111.1111.1111.1111.5",
        "411.1111.1111.1111",
    ):
        assert not any(is_card_number(m.group()) for m in SEPARATED_CARD.finditer(text)), text


# -- IBANs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sep", SEPARATORS, ids=lambda s: f"U+{ord(s.strip() or s[0]):04X}x{len(s)}")
@pytest.mark.parametrize("size", [4, 2])
@pytest.mark.parametrize("iban", IBANS, ids=lambda i: i[:2])
def test_an_iban_in_any_grouping_and_separator_is_redacted_and_the_rest_kept(
    guard: Guard, iban: str, size: int, sep: str
) -> None:
    text = f"IBAN {sep.join(_groups(iban, size))} 2 days, thanks."
    result = guard.check_input(text)
    assert result.redacted_text == "IBAN <IBAN_CODE> 2 days, thanks.", result


@pytest.mark.parametrize("zero", ZEROS[:3], ids=lambda z: f"U+{z:04X}")
def test_an_iban_in_another_digit_script_is_redacted(guard: Guard, zero: int) -> None:
    iban = _script(" ".join(_groups(IBANS[0], 4)), zero)
    assert guard.check_input(f"IBAN {iban}.").redacted_text == "IBAN <IBAN_CODE>."


# -- ordinary numbers stay unflagged -------------------------------------------------------------

ORDINARY_NUMBERS = [
    "Released 2024-01-02 (v1.2.3.4), 2024/01/02 and 02.01.2024 at 12:30:45.",
    "It cost 1,234.56 EUR, or 12,345,678.90 over 1,234,567,890,123 units.",
    "Build 2024.0101.1200.3456, serial 1234/5678/9012/3456, part 4111.1111.1111.1112.",
    "Range 10\u201311 am\u2014then 3\u22122 = 1; ISBN 978\u20113\u201116\u2011148410\u20110.",
    "Tabs\t1\t22\t333\t4444 and spaces 12  34  56  78.",
    "\u0627\u0644\u0633\u0639\u0631 \u0661\u066c\u0662\u0663\u0664 \u0648\u0627\u0644\u062a\u0627\u0631\u064a\u062e \u0662\u0660\u0662\u0664-\u0660\u0661-\u0660\u0662",
    "Order DE12 ABCD, code GB00 1234 5678 and AB12.3456.7890.1234.",
]


@pytest.mark.parametrize("text", ORDINARY_NUMBERS)
def test_dates_versions_amounts_and_times_are_not_cards_or_ibans(guard: Guard, text: str) -> None:
    assert not {"CREDIT_CARD", "IBAN_CODE"} & _labels(guard, text), text
    # The report's shape for other separators (its older 13-19 digit shape for " " and "-" is
    # unchecked on purpose, and masks ISBN-13s and Luhn-invalid numbers as it always did).
    assert not [m for m in SEPARATED_CARD.finditer(fold_digits_and_dashes(text)) if is_card_number(m.group())]


@pytest.mark.parametrize(
    "run", ["1.2." * 20_000, "4111 " * 20_000, "1234/" * 20_000, "DE89 " * 20_000, "AB12/CD" * 15_000]
)
def test_the_card_and_iban_shapes_are_linear(run: str) -> None:
    import regex

    for shape in (SEPARATED_CARD, SEPARATED_IBAN):
        pattern = regex.compile(shape.pattern)
        started = time.perf_counter()
        list(pattern.finditer(run))
        list(shape.finditer(run))
        assert time.perf_counter() - started < 5.0, shape


# -- e-mail addresses ----------------------------------------------------------------------------

EMAIL_FORMS = [
    "jane [@] example [.] com",
    "jane@example[.]com",
    "jane @ example dot com",
    "jane at example . com",
    "jane{at}example{dot}com",
    "jane<at>example<dot>com",
    "jane (at) example (.) com",
    "jane -at- example -dot- com",
    "jane [at] example {dot} co [.] uk",
    *(f"jane@example{d}com" for d in "\u00b7\u22c5\u2027\u0387\u2219\u30fb"),
    "jane.doe @ example \u00b7 org",
    '"john doe"@example.com',
    "\u7528\u6237@\u4f8b\u5b50.\u4e2d\u56fd",
    "\u7528\u6237 at \u4f8b\u5b50 dot \u516c\u53f8",
    "jane@example dot com",
    "jane[at]example.com",
]


@pytest.mark.parametrize("form", EMAIL_FORMS)
def test_every_at_and_dot_spelling_is_an_address_in_the_guard_and_the_report(guard: Guard, form: str) -> None:
    text = f"Write to {form} before Friday."
    assert guard.check_input(text).redacted_text == "Write to <EMAIL_ADDRESS> before Friday."
    assert guard.check_output(text).action == "block"
    assert Redactor("regex").redact_many([text]) == ["Write to <EMAIL_ADDRESS> before Friday."]


PROSE = [
    "Meet me at the station. Then we walk.",
    "Meet me at the station . Then we walk.",
    "We arrive at noon (at the latest) [dot] matrix printers.",
    "Look at this -dot- pattern, at home \u00b7 tonight.",
    'She said "hello" at school. Then left.',
    "Pay 5 @ 3.50 each, at 12.30 sharp.",
    "\u6211\u4eec\u5728\u5317\u4eac\u89c1\u3002",
]


@pytest.mark.parametrize("text", PROSE)
def test_at_and_dot_in_ordinary_prose_are_not_addresses(guard: Guard, text: str) -> None:
    assert "EMAIL_ADDRESS" not in _labels(guard, text), text


@pytest.mark.parametrize(
    "run",
    [
        "a [.] " * 10_000,
        "a -dot- " * 8_000,
        "a \u00b7 " * 15_000,
        "a @ " * 15_000,
        '"a" ' * 15_000,
        '"' * 60_000,
        "a{at}" * 12_000,
        ("ab\u00b7" * 7 + "ab [at] ") * 800,
    ],
)
def test_the_spelled_out_email_pattern_is_linear_on_the_new_forms(run: str) -> None:
    import regex

    for compiled in (regex.compile(OBFUSCATED_EMAIL.pattern), OBFUSCATED_EMAIL):
        started = time.perf_counter()
        list(compiled.finditer(run))
        assert time.perf_counter() - started < 5.0


MARKUP_FORMS = [
    ("jane&#64;example.com", "jane&#64;example.com"),
    ("jane&#x40;example.com", "jane&#x40;example.com"),
    ("jane&commat;example&#46;com", "jane&commat;example&#46;com"),
    ("jane%40example.com", "jane%40example.com"),
    ("jane<b></b>@example.com", "jane<b></b>@example.com"),
    ("jane@<span>example</span>.com", "jane@<span>example</span>.com"),
]


@pytest.mark.parametrize(("form", "cut"), MARKUP_FORMS)
def test_an_address_hidden_by_html_references_escapes_or_empty_tags_is_redacted(
    guard: Guard, form: str, cut: str
) -> None:
    # Rendered as HTML or Markdown (model answers are), each shows a working address.
    text = f"Reach me at {form} today."
    assert guard.check_input(text).redacted_text == text.replace(cut, "<EMAIL_ADDRESS>")
    assert guard.check_output(text).action == "block"


@pytest.mark.parametrize(
    "text",
    ["AT&T and R&D; 50% off", "fish &amp; chips at 3&nbsp;pm", "if a<b and c>d", "use <b>bold</b> here"],
)
def test_markup_in_ordinary_text_finds_nothing_new(guard: Guard, text: str) -> None:
    assert not _labels(guard, text), text


@pytest.mark.parametrize("sep", [" - ", "/", "_", " / ", "  ", ".", "-"])
def test_a_us_ssn_with_any_one_separator_is_redacted(guard: Guard, sep: str) -> None:
    text = f"My SSN is 536{sep}22{sep}1234, thanks."
    assert guard.check_input(text).redacted_text == "My SSN is <US_SSN>, thanks."


@pytest.mark.parametrize("text", ["SSN 666/22/1234", "SSN 536/00/1234", "12/05/2024", "536/22/1234/5"])
def test_an_ssn_shape_that_cannot_be_one_is_left_alone(guard: Guard, text: str) -> None:
    assert "US_SSN" not in _labels(guard, text), text
