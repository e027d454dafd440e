"""Shapes of personal data as people write them to get past a filter, shared by the guard's PII
rail and the report's redactor.

* **Spelled-out e-mail addresses.** A model that half-refuses, or a user who dodges a filter,
  writes ``jane dot doe at example dot com``, ``jane [at] example [dot] com``, ``jane{at}example{dot}com``,
  ``jane -at- example -dot- com``, ``jane @ example . com`` or ``jane@example\u00b7com``. presidio's
  e-mail recognizer wants the ``@`` and the dots, so without this the guard let such an address
  through while ``rai report --redact`` masked it.
* **Card numbers with any common separator** (``4111.1111.1111.1111``, ``4111/1111/...``, tabs,
  doubled spaces): presidio's card pattern accepts only ``-`` and a single space between groups.
* **Digits and dashes of every script** (:func:`fold_digits_and_dashes`): ``\u0664\u0661\u0661\u0661``
  (Arabic-Indic) and ``4111\u20111111`` (non-breaking hyphen) are ``4111`` and ``4111-1111`` to a
  reader, but to no ASCII pattern; NFKC folds neither.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "DASHES",
    "OBFUSCATED_EMAIL",
    "SEPARATED_CARD",
    "SEPARATED_IBAN",
    "SEPARATED_SSN",
    "SPACED_EMAIL",
    "fold_digits_and_dashes",
    "iban_prefixes",
    "is_card_number",
    "spelled_out_email",
]

#: Every dash, hyphen and minus sign that is not ASCII ``-``: Unicode's dash punctuation
#: (category Pd: hyphen, non-breaking hyphen, figure/en/em dashes, horizontal bar, small and
#: fullwidth hyphen-minus, Armenian, Hebrew, Mongolian and Canadian hyphens, wave dashes...)
#: and the minus signs of other categories (U+2212 minus, U+2796 heavy minus, U+02D7 modifier
#: minus, U+2052 commercial minus, U+2043 hyphen bullet). Listed, not computed, so no startup
#: scan of the code space; a test checks that every Pd character of the running Python is here.
DASHES = (
    "\u058a\u05be\u1400\u1806\u2010\u2011\u2012\u2013\u2014\u2015\u2e17\u2e1a\u2e3a\u2e3b"
    "\u2e40\u2e5d\u301c\u3030\u30a0\ufe31\ufe32\ufe58\ufe63\uff0d\U00010ead"
    "\u2212\u2796\u02d7\u2052\u2043"
)
_DASH_SET = frozenset(DASHES)
#: A non-ASCII decimal digit (Python's ``\d`` is Unicode category Nd) or a dash of :data:`DASHES`.
_FOLDABLE = re.compile(rf"(?![0-9])\d|[{DASHES}]")


def _folded(match: re.Match[str]) -> str:
    char = match.group()
    return "-" if char in _DASH_SET else str(unicodedata.decimal(char))


def fold_digits_and_dashes(text: str) -> str:
    """``text`` with every Unicode decimal digit as its ASCII digit and every dash as ``-``.

    One character for one, so offsets into the result index ``text``: a finding in the folded
    text is cut from the original at the same place. ``\u0664\u0661\u0661\u0661\u20111111`` ->
    ``4111-1111``.
    """
    if text.isascii():
        return text
    return _FOLDABLE.sub(_folded, text)


#: A card number in groups with one kind of separator: runs of up to three spaces or tabs, or
#: one of ``- . / _ ,`` (a space either side allowed), the same one between every group. Four
#: digits first (a thousands-grouped amount, ``1,234,567,890,123``, starts with one to three),
#: then two to four groups of three to six (4-4-4-4, Amex 4-6-5, 4-4-4-4-3). Not inside a longer
#: run of digits and separators (an IP address, a version), so ``1.2.4111.1111.1111.1111`` is not
#: one. A match is a card only if :func:`is_card_number` says so (length, issuer digit, Luhn).
SEPARATED_CARD = re.compile(
    r"(?<!\d)(?<!\d[-./_,])\d{4}"
    r"(?:(?:[ \t]{1,3}\d{3,6}){2,4}|(?P<sep> ?[-./_,] ?)\d{3,6}(?:(?P=sep)\d{3,6}){1,3})"
    r"(?!\d)(?![-./_,]\d)"
)

#: A US social security number (3-2-4 digits) with one separator used throughout: runs of up to
#: three spaces, or one of ``- . / _`` with up to three spaces either side (``536 - 22 - 1234``,
#: ``536/22/1234``). presidio's pattern accepts one ``-``, ``.`` or space only. Not inside a longer
#: run of digits and separators. presidio's own checks (area, group and serial numbers, sample
#: numbers) still decide whether a match is one.
SEPARATED_SSN = re.compile(
    r"(?<!\d)(?<!\d[-./_])\d{3}(?P<sep>[ \t]{0,3}[-./_][ \t]{0,3}|[ \t]{1,3})\d{2}(?P=sep)\d{4}(?!\d)(?![-./_]\d)"
)

#: An IBAN in groups: country letters and check digits (apart or together), then groups of one
#: to four letters or digits (``DE89 3704 ...``, ``DE89 37 04 00 ...``, ``DE.89.37.04...``)
#: separated as in :data:`SEPARATED_CARD`.
#: Only a checksummed prefix ending at a group boundary is an IBAN (:func:`iban_prefixes`), so a
#: word or number written after it (``... 00 2 days``) does not hide it.
SEPARATED_IBAN = re.compile(
    r"(?<![^\W_])[A-Z]{2}(?:"
    r"(?:[ \t]{1,3})?\d{2}(?:[ \t]{1,3}[A-Z0-9]{1,4}){2,16}"
    r"|\d{2}(?P<sep> ?[-./_,] ?)[A-Z0-9]{1,4}(?:(?P=sep)[A-Z0-9]{1,4}){1,15}"
    r"|(?P<sep2> ?[-./_,] ?)\d{2}(?:(?P=sep2)[A-Z0-9]{1,4}){2,16}"
    r")(?![^\W_])"
)
#: Shortest and longest IBAN, characters without separators (Norway 15, Russia 33, ISO 13616 34).
_IBAN_CHARS = (15, 34)
_GROUP = re.compile(r"[A-Z0-9]+")


def iban_prefixes(match: str) -> list[tuple[int, str]]:
    """``(end, compact)`` for each start of a :data:`SEPARATED_IBAN` match that ends at a group
    boundary and is as long as an IBAN can be, longest first: what to checksum."""
    out: list[tuple[int, str]] = []
    compact = ""
    for group in _GROUP.finditer(match):
        compact += group.group()
        if _IBAN_CHARS[0] <= len(compact) <= _IBAN_CHARS[1]:
            out.append((group.end(), compact))
    return out[::-1]


def is_card_number(text: str) -> bool:
    """Whether the ASCII digits of ``text`` make a payment card number.

    13 to 19 digits, starting as presidio's card pattern requires (1, 3, 4, 5 then 0-5, or 6;
    not 13 digits starting with 1, which is a Unix time in milliseconds), and Luhn-valid.
    """
    digits = [ord(c) - 48 for c in text if "0" <= c <= "9"]
    n = len(digits)
    if not 13 <= n <= 19 or (n == 13 and digits[0] == 1):
        return False
    if digits[0] not in (1, 3, 4, 5, 6) or (digits[0] == 5 and digits[1] > 5):
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:  # every second digit from the right is doubled, its digits summed
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


# -- e-mail addresses, spelled out -------------------------------------------------------------

#: Characters a reader takes for the dot of an address: middle dot (U+00B7, and Greek ano
#: teleia U+0387), hyphenation point U+2027, bullet operator U+2219, dot operator U+22C5,
#: katakana middle dot U+30FB (halfwidth U+FF65 folds to it under NFKC).
_DOTS = ".\u00b7\u0387\u2027\u2219\u22c5\u30fb"
#: Brackets around a spelled ``at`` or ``dot``: any opening one with any closing one.
_OPEN, _CLOSE = r"[\[({<]", r"[\])}>]"

#: "@" as written out: ``@`` (spaces around it allowed), `` at ``, ``-at-``, and ``at`` or ``@``
#: in brackets (``[at]``, ``(at)``, ``{at}``, ``<at>``, ``[@]``). Whitespace runs are bounded (at
#: most three characters) so a failed match costs a fixed amount of work per start.
_AT = rf"(?:\s{{0,3}}@\s{{0,3}}|\s{{0,3}}{_OPEN}\s{{0,3}}(?:at|@)\s{{0,3}}{_CLOSE}\s{{0,3}}|\s{{0,3}}-at-\s{{0,3}}|\s{{1,3}}at\s{{1,3}})"
#: "." as written out: ``.`` or a middle-dot-like character, one with whitespace on both sides
#: (`` . ``: never "station. Then", whose dot ends a sentence), `` dot ``, ``-dot-``, and ``dot``
#: or a dot in brackets (``[dot]``, ``{dot}``, ``[.]``, ``(.)``).
_DOT = (
    rf"(?:[{_DOTS}]|\s{{1,3}}[{_DOTS}]\s{{1,3}}|\s{{0,3}}{_OPEN}\s{{0,3}}(?:dot|[{_DOTS}])\s{{0,3}}{_CLOSE}\s{{0,3}}"
    rf"|\s{{0,3}}-dot-\s{{0,3}}|\s{{1,3}}dot\s{{1,3}})"
)

#: A local part (words joined by dots, or a quoted string: ``"john doe"``), an "at", a domain and
#: a top-level domain of letters (any script: ``\u7528\u6237@\u4f8b\u5b50.\u4e2d\u56fd``), any of
#: them spelled out. Every repetition is bounded (labels of at most 64 characters, at most 7 of
#: them a side) and the local part possessive: with open-ended ``+`` and ``*``, a failed match
#: rescanned the whole run of dotted words from every start, and 18,000 characters of ``a.b``
#: took 8.6 s here and 147 s under presidio's ``regex`` engine. Now it is linear in the text.
OBFUSCATED_EMAIL = re.compile(
    rf"(?i)(?:(?<![\w+-])[\w+-]{{1,64}}+(?:{_DOT}[\w+-]{{1,64}}+){{0,6}}+|(?<![\w\"])\"[^\"\n]{{1,64}}+\"){_AT}"
    rf"[\w-]{{1,63}}+(?:{_DOT}[\w-]{{1,63}}+){{0,6}}{_DOT}[^\W\d_]{{2,24}}\b"
)


#: An address with its characters spaced out (``j a n e @ e x a m p l e . o r g``, or only the
#: domain: ``jd @ m a i l . d e``), which no word-based pattern sees. One character, then single
#: spaces and one character, at most 64 of them in the local part and 63 per domain label:
#: bounded, so a long run of spaced letters with no "@" costs a fixed amount of work per start,
#: and linear in the text.
SPACED_EMAIL = re.compile(
    r"(?<![\w.+-])(?:[\w+-](?: [\w.+-]){0,63}|[\w.+-]{1,64}+) ?@ ?[\w-](?: [\w-]){0,62}(?: ?\. ?[\w-](?: [\w-]){0,62}){1,6}(?!\w)"
)


def spelled_out_email(match: str) -> str:
    """The address a :data:`OBFUSCATED_EMAIL` or :data:`SPACED_EMAIL` match spells.

    ``jane dot doe at x dot org`` and ``j a n e . d o e @ x . o r g`` -> ``jane.doe@x.org``.
    """
    text = re.sub(rf"(?i){_AT}", "@", match, count=1)
    # An address has no whitespace: what is left after the words are replaced is spacing.
    return re.sub(r"\s+", "", re.sub(rf"(?i){_DOT}", ".", text))
