"""What every text goes through before a rail sees it: type check, repair, bound, normalise.

A guard must fail closed on what is not text and must not be fooled by how text is
encoded. :func:`prepare` turns a caller's value into a :class:`PreparedText`:

1. **Type.** Anything but ``str`` (``None``, ``int``, ``bytes``, a list...) raises
   :class:`TypeError`. A caller's type error must never switch checking off, which is what
   a rail's ``on_error: allow`` would otherwise do with it.
2. **Repair.** Lone surrogates (``"\\ud800"``, what ``surrogateescape`` decoding leaves for
   invalid bytes) cannot be encoded, so no classifier, log or JSON writer can handle them.
   Each is replaced by U+FFFD (one character for one, so offsets do not move) and the
   verdict carries the notice ``invalid_unicode`` (the guard flags it). The repaired text
   is the text the verdict is about (``GuardResult.text``).
3. **Bound.** A text longer than the policy's ``max_chars`` is either not checked at all
   (``over_max_chars: block``) or checked on its first and last ``max_chars / 2``
   characters (``head_tail``, notice ``truncated``); see :class:`OverLimit`.
4. **Normalise for detection.** Invisible characters (zero-width space/joiners, soft
   hyphen, word joiner, BOM, variation selectors, tag characters, every other format
   character of category ``Cf``) and bidirectional controls (U+202A-U+202E,
   U+2066-U+2069, LRM/RLM/ALM) are removed; controls that separate words (VT, FF, NEL...)
   become a space, and a text holding controls that render as nothing (NUL, ESC, DEL...)
   is read both ways, with them removed and as spaces (:func:`normalize_for_detection`);
   the rest is NFKC-normalised (fullwidth ``＠`` becomes ``@``, ligatures and compatibility
   forms fold). The classifiers score this *detection text*; :meth:`PreparedText.to_original` maps every span they report
   back to offsets of the checked text, so a redaction cuts the original in the right
   place, invisible characters inside a finding included.

   HTML character references (``&#64;``, ``&commat;``), percent-encoded ASCII (``%40``) and
   HTML tags without attributes (``<b></b>``) are read as what they render as.

5. **Fold digits and dashes.** Every Unicode decimal digit becomes its ASCII digit (Arabic-Indic
   ``\u0664``, Devanagari ``\u096a``... -> ``4``) and every dash, hyphen and minus sign becomes
   ``-`` (``\u2011``, ``\u2013``, ``\u2212``...), one character for one
   (:func:`~rai_harness.classifiers.pii_shapes.fold_digits_and_dashes`). NFKC maps none of
   them, and a card or IBAN pattern is written in ASCII: ``4111\u20111111\u20111111\u20111111``
   passed the guard while ``4111-1111-1111-1111`` was blocked.

6. **Fold lookalike letters.** In a word that holds ASCII letters, a letter of another
   script that Unicode lists as confusable with a Latin one (TR39 confusables, through
   ``confusable-homoglyphs``: Cyrillic ``с``, Greek ``ο``...) is replaced by that letter, one
   for one, so ``jane@example.\u0441om`` is found as an address. Words of one script are
   left alone (Russian text stays Russian). Latin-script display forms (script ``\u0251``,
   small capitals) fold in every word (``ex\u0251mple.com``); Latin letters of an alphabet in
   use (Turkish ``\u0131``) never do.

NFKC is applied per grapheme-like cluster (a starter and the combining marks after it),
which is what makes an offset map possible; it equals whole-string NFKC except for the
rare compositions across starters (conjoining Hangul jamo), which are then left decomposed.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from confusable_homoglyphs import categories, confusables

from rai_harness.classifiers.base import Span
from rai_harness.classifiers.pii_shapes import fold_digits_and_dashes
from rai_harness.validation import repair_surrogates

__all__ = [
    "DEFAULT_MAX_CHARS",
    "NOTICE_INVALID_UNICODE",
    "NOTICE_OVER_MAX_CHARS",
    "NOTICE_TRUNCATED",
    "OverLimit",
    "PreparedText",
    "check_texts",
    "exact_str",
    "fold_lookalikes",
    "join_detections",
    "normalize_for_detection",
    "prepare",
    "repair_surrogates",
]

#: Longest text a guard checks whole by default, characters (about 5,000 tokens of
#: English). Longer texts are blocked unchecked, or checked on their head and tail
#: (``over_max_chars``): the work per text must be bounded, or one huge text keeps the
#: classifiers busy for minutes and every other caller's check times out behind it.
DEFAULT_MAX_CHARS = 20_000

#: What a guard does with a text longer than ``max_chars``: ``block`` it unchecked, or
#: check only its first and last ``max_chars // 2`` characters and flag it (``head_tail``).
OverLimit = Literal["block", "head_tail"]

#: Notice: lone surrogates were replaced by U+FFFD before checking.
NOTICE_INVALID_UNICODE = "invalid_unicode"
#: Notice: the text was longer than ``max_chars`` and was blocked without being checked.
NOTICE_OVER_MAX_CHARS = "over_max_chars"
#: Notice: the text was longer than ``max_chars``; only its head and tail were checked.
NOTICE_TRUNCATED = "truncated"

# Characters removed before detection besides category Cf (format characters, which covers
# zero-width space/joiners, soft hyphen, word joiner, BOM, bidi embeddings, overrides and
# isolates, LRM/RLM/ALM, invisible math operators and tag characters): invisible marks and
# fillers of other categories that render as nothing.
_INVISIBLE_EXTRA = frozenset(
    "\u034f"  # combining grapheme joiner (Mn)
    "\u115f\u1160\u3164\uffa0"  # Hangul fillers (Lo)
    "\u180b\u180c\u180d\u180f"  # Mongolian free variation selectors (Mn)
    "\ufe00\ufe01\ufe02\ufe03\ufe04\ufe05\ufe06\ufe07"
    "\ufe08\ufe09\ufe0a\ufe0b\ufe0c\ufe0d\ufe0e\ufe0f"  # variation selectors (Mn)
)


# Control characters other than tab, LF and CR. Those Python counts as whitespace (VT, FF,
# the separators U+001C-U+001F, NEL) become a space: they separate words, as presidio's
# patterns already read them. The others (NUL, BEL, BS, ESC, DEL, most C1 controls) render as
# nothing, so either reading can hide a finding: removed, "bob@example.org<NUL>thanks" glues a
# word onto the address; kept as a separator, "jane@exa<NUL>mple.com" splits it. A text holding
# any is checked both ways (see normalize_for_detection).
_ASCII_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TEXT_CONTROLS = frozenset("\t\n\r")


#: Markup that hides a character from a pattern but not from a reader once the text is
#: rendered (model answers are, as HTML or Markdown): an HTML character reference (``&#64;``,
#: ``&#x40;``, ``&commat;``), a percent-encoded printable ASCII character (``%40`` in a
#: ``mailto:`` link) and an inline HTML tag without attributes (``jane<b></b>@example.com``;
#: HTML's own tag names only, so a spelled ``<at>`` or ``<dot>`` stays text). For
#: detection each reference or escape becomes its character and each such tag nothing; a tag
#: with attributes stays, so an address inside ``href="..."`` is still read.
_INLINE_TAGS = [
    "a",
    "abbr",
    "b",
    "bdi",
    "bdo",
    "big",
    "br",
    "cite",
    "code",
    "del",
    "dfn",
    "em",
    "font",
    "i",
    "ins",
    "kbd",
    "mark",
    "p",
    "q",
    "s",
    "samp",
    "small",
    "span",
    "strike",
    "strong",
    "sub",
    "sup",
    "tt",
    "u",
    "var",
    "wbr",
]
_ENCODED = re.compile(
    r"&(?:#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
    r"|%[2-7][0-9A-Fa-f]"
    rf"|</?(?i:{'|'.join(_INLINE_TAGS)})[ \t]{{0,8}}/?>"
)


def _decoded(markup: str) -> str | None:
    """What a match of :data:`_ENCODED` renders as (``""`` for a tag); None: not a known entity."""
    if markup[0] == "<":
        return ""
    if markup[0] == "%":
        return chr(int(markup[1:], 16))
    decoded = html.unescape(markup)
    if decoded == markup:  # an unknown name: text, not a reference
        return None
    # A reference to an invisible or compatibility character reads as what it renders as.
    return "".join(c for c in unicodedata.normalize("NFKC", decoded) if not _is_invisible(c))


#: Full stops that IDNA reads as the dot of a domain name (U+FF0E and U+FF61 are NFKC forms of
#: "." and of U+3002): "example\u3002com" is example.com to a browser.
_IDEOGRAPHIC_FULL_STOP = "\u3002"


def _needs_cluster(char: str) -> bool:
    """Whether ``char`` changes in :func:`_normalized`: invisible, a combining mark, a letter
    with a decomposition (accents, compatibility forms) or an ideographic full stop."""
    if char.isascii():
        return False
    return (
        _is_invisible(char)
        or bool(unicodedata.combining(char))
        or bool(unicodedata.decomposition(char))
        or char == _IDEOGRAPHIC_FULL_STOP
    )


def _is_invisible(char: str) -> bool:
    if char in _INVISIBLE_EXTRA or "\U000e0100" <= char <= "\U000e01ef":  # + variation selectors supplement
        return True
    return unicodedata.category(char) == "Cf"


def _control_kind(char: str) -> Literal["space", "hidden"] | None:
    """``space`` for a control that separates words, ``hidden`` for one that renders as nothing."""
    if char in _TEXT_CONTROLS or unicodedata.category(char) != "Cc":
        return None
    return "space" if char.isspace() else "hidden"


@dataclass(frozen=True, slots=True)
class PreparedText:
    """A text ready for the rails, and how to map findings back to it.

    Attributes:
        text: The text the verdict is about: the caller's text with lone surrogates
            replaced by U+FFFD (same length, same offsets).
        detection: What the classifiers score: the checked part of ``text``, normalised.
        notices: Why the verdict is flagged or blocked regardless of the rails
            (``invalid_unicode``, ``truncated``, ``over_max_chars``).
        skip: The text must not reach the classifiers at all (over ``max_chars`` with
            ``over_max_chars: block``).
        starts: For each character of ``detection``, the offset in ``text`` where its
            source starts; ``None`` when ``detection`` is ``text`` itself.
        ends: Likewise, where its source ends (exclusive).
    """

    text: str
    detection: str
    notices: tuple[str, ...] = ()
    skip: bool = False
    starts: tuple[int, ...] | None = None
    ends: tuple[int, ...] | None = None

    def to_original(self, span: Span) -> Span:
        """``span`` (offsets into ``detection``) as offsets into ``text``."""
        if self.starts is None or self.ends is None:
            return span
        n = len(self.starts)
        if n == 0:
            return Span(0, 0, span.label, span.score)
        start = min(max(span.start, 0), n - 1)
        last = min(max(span.end - 1, start), n - 1)
        return Span(self.starts[start], self.ends[last], span.label, span.score)


def check_texts(texts: object, what: str = "texts") -> list[str]:
    """``texts`` as a list of ``str``, or :class:`TypeError` naming the first bad item.

    A single ``str`` (or ``bytes``) where a sequence is expected is refused too: iterating
    it would check each character on its own.
    """
    if isinstance(texts, str | bytes | bytearray) or not isinstance(texts, Sequence):
        raise TypeError(f"{what} must be a sequence of str, got {type(texts).__name__}")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(
                f"{what}[{i}] is {type(text).__name__}, expected str; decode bytes first "
                "(the guard never guesses an encoding) and pass text, not None"
            )
        out[i] = exact_str(text)
    return out


def exact_str(text: str) -> str:
    """``text`` as a plain ``str``: a subclass's characters, without its methods.

    A ``str`` subclass (``numpy.str_``, a ``StrEnum`` member) is text, but one can override
    ``isascii``, ``__len__`` or slicing, which the normalisation and the redaction rely on:
    ``str.__str__`` copies its characters into a plain ``str`` and calls none of them.
    """
    return text if type(text) is str else str.__str__(text)


#: Latin letters TR39 lists as lookalikes that are display or phonetic forms, not letters of
#: an alphabet in use: beside the small capitals and blackletter forms found by name.
_LATIN_DISPLAY_FORMS = frozenset("\u0251\u0261\u017f\u1e9d\u1d91\ua799\ua798\uab35")


def _is_display_form(char: str) -> bool:
    name = unicodedata.name(char, "")
    return char in _LATIN_DISPLAY_FORMS or "SMALL CAPITAL" in name or "BLACKLETTER" in name


@functools.cache
def _latin_lookalikes() -> tuple[dict[str, str], frozenset[str]]:
    """Every non-ASCII letter Unicode TR39 lists as confusable with one ASCII letter, built once.

    Returns the table and the subset of it that is Latin script itself and in no living
    language's alphabet: small capitals, blackletter and other phonetic forms (``\u1d0f``,
    ``\ua732``...), script a and g (``\u0251``, ``\u0261``), long s (``\u017f``); these fold
    wherever they stand. Latin letters that alphabets use (Turkish dotless ``\u0131``, Ewe
    ``\u0263`` and ``\u028b``, Kabiy\u00e8 ``\u0269``...) are left alone: folding ``s\u0131k``
    would change a Turkish word into another. Accented Latin letters are not in TR39's table.
    An uppercase letter maps through its lowercase form
    (Cyrillic ``\u0406`` -> ``i`` -> ``I``): TR39's prototype for capital I is ``l``, which
    would turn "\u0406DIOT" into "lDlOT".
    """
    table: dict[str, str] = {}
    latin_script: set[str] = set()
    for char, glyphs in confusables.confusables_data.items():
        if len(char) != 1 or char.isascii() or not unicodedata.category(char).startswith("L"):
            continue
        latin = next(
            (g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalpha()), None
        )
        if latin is None:
            continue
        if categories.alias(char) == "LATIN":
            if not _is_display_form(char):
                continue  # a letter of some alphabet: never folded
            latin_script.add(char)
        table[char] = latin
    for char in list(table):
        lower = char.lower()
        if char.isupper() and len(lower) == 1 and lower in table:
            table[char] = table[lower].upper()
    return table, frozenset(latin_script)


_WORD = re.compile(r"\S+")


def fold_lookalikes(text: str) -> str:
    """``text`` with lookalike letters replaced by the ASCII letters they imitate, one for one.

    Letters of other scripts fold only inside whitespace-delimited words that also hold an
    ASCII letter: a word mixing scripts is how a homoglyph hides ("jane@example.\u0441om",
    "\u0456diot"), while a word of one script is ordinary text of that language. Latin-script
    display forms (``\u0251``, small capitals) fold in every word ("ex\u0251mple.com",
    "\u1d04\u1d1c\u1d20"); Latin letters of an alphabet in use (Turkish ``\u0131``) never do.
    Same length, same offsets.
    """
    if text.isascii():
        return text
    lookalikes, latin_script = _latin_lookalikes()
    out: list[str] | None = None
    for word in _WORD.finditer(text):
        token = word.group()
        if token.isascii():
            continue
        mixed = any(c.isascii() and c.isalpha() for c in token)
        for offset, char in enumerate(token, word.start()):
            latin = None if char.isascii() else lookalikes.get(char)
            if latin is not None and (mixed or char in latin_script):
                if out is None:
                    out = list(text)
                out[offset] = latin
    return text if out is None else "".join(out)


def normalize_for_detection(text: str) -> tuple[str, tuple[int, ...] | None, tuple[int, ...] | None]:
    """Remove invisible and bidi-control characters, turn controls into spaces or remove them,
    NFKC-normalise, fold digits of every script to ASCII and dashes to ``-``, and fold lookalike
    letters (:func:`fold_lookalikes`), with an offset map.

    A text holding controls that render as nothing (NUL, ESC...) is returned twice, joined by a
    newline: once with them removed, once with each as a space, so a finding hidden by either
    reading is found (a span found in both maps to the same original offsets).

    Returns:
        ``(detection, starts, ends)``: for each character of ``detection``, the range of
        ``text`` it came from; ``starts`` and ``ends`` are ``None`` when the offsets are the
        identity (nothing removed or recomposed; digits, dashes and lookalikes are folded one
        for one).
    """
    encoded = _ENCODED.search(text) is not None
    if text.isascii() and not encoded and not _ASCII_CONTROLS.search(text):
        return text, None, None
    kinds = {_control_kind(c) for c in text} - {None}
    if (
        not kinds
        and not encoded
        and unicodedata.is_normalized("NFKC", text)
        and not any(map(_needs_cluster, text))
    ):
        return _fold(text), None, None
    if "hidden" not in kinds:
        detection, starts, ends = _normalized(text, hidden_as_space=False)
        return _fold(detection), starts, ends
    removed = _normalized(text, hidden_as_space=False)
    spaced = _normalized(text, hidden_as_space=True)
    detection, starts, ends = join_detections([removed, spaced], joint=len(text) - 1)
    return _fold(detection), starts, ends


def _fold(detection: str) -> str:
    """Digits, dashes and lookalike letters folded, each one for one, so offsets stay put."""
    return fold_lookalikes(fold_digits_and_dashes(detection))


def join_detections(
    parts: Sequence[tuple[str, tuple[int, ...] | None, tuple[int, ...] | None]],
    *,
    joint: int,
    offset: Sequence[int] = (),
) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """Detection texts of parts of one text joined by newlines, with one offset map.

    Args:
        parts: ``(detection, starts, ends)`` of each part (``None`` offsets: the identity).
        joint: Original offset each joining newline maps to (a character of the text, so a
            finding that runs over a joint still maps inside the text).
        offset: Where each part starts in the original text (default: 0 for all).
    """
    text: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for k, (detection, s, e) in enumerate(parts):
        if k:
            text.append("\n")
            starts.append(joint)
            ends.append(joint + 1)
        shift = offset[k] if offset else 0
        text.append(detection)
        starts.extend((x + shift for x in s) if s is not None else range(shift, shift + len(detection)))
        ends.extend((x + shift for x in e) if e is not None else range(shift + 1, shift + len(detection) + 1))
    return "".join(text), tuple(starts), tuple(ends)


def _normalized(text: str, *, hidden_as_space: bool) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """Invisible characters removed, controls replaced or removed, NFKC per cluster; offset map."""
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    n = len(text)
    i = 0
    while i < n:
        char = text[i]
        if char in "&%<" and (markup := _ENCODED.match(text, i)) is not None:
            decoded = _decoded(markup.group())
            if decoded is not None:
                out.append(decoded)
                starts.extend([i] * len(decoded))
                ends.extend([markup.end()] * len(decoded))
                i = markup.end()
                continue
        if _is_invisible(char):
            i += 1
            continue
        kind = _control_kind(char)
        if kind is not None:
            if kind == "space" or hidden_as_space:
                out.append(" ")
                starts.append(i)
                ends.append(i + 1)
            i += 1
            continue
        # A cluster: this starter and the combining marks after it (invisible ones dropped),
        # normalised together so that composition (e + U+0301 -> é) still happens.
        j = i + 1
        end = i + 1  # past the cluster's last visible character
        cluster = [char]
        while j < n and (unicodedata.combining(text[j]) or _is_invisible(text[j])):
            # Invisible characters between a letter and its marks are dropped inside the
            # cluster, so "e<ZWSP><U+0301>" still composes to "é".
            if not _is_invisible(text[j]):
                cluster.append(text[j])
                end = j + 1
            j += 1
        piece = unicodedata.normalize("NFKC", "".join(cluster)).replace(_IDEOGRAPHIC_FULL_STOP, ".")
        if not piece.isascii():
            # Marks over Latin letters read as the letters: "example.co\u0332m" and "c\u022fm"
            # are .com to a reader (the encoder's tokenizer strips accents too). Only where
            # that leaves ASCII: Greek, Devanagari and other scripts keep their marks.
            bare = "".join(c for c in unicodedata.normalize("NFKD", piece) if not unicodedata.combining(c))
            if bare.isascii():
                piece = bare
        out.append(piece)
        starts.extend([i] * len(piece))
        # Invisible characters after the cluster are not part of it: a finding that ends here
        # leaves them in place, as it leaves those before it (a bidi override and its closing
        # pop both stay, so a redaction never unbalances them).
        ends.extend([end] * len(piece))
        i = j
    return "".join(out), tuple(starts), tuple(ends)


def prepare(text: object, *, max_chars: int | None = None, over_limit: OverLimit = "block") -> PreparedText:
    """Type-check, repair, bound and normalise one text (see the module docstring).

    Args:
        text: The caller's value.
        max_chars: Longest text checked whole; ``None``: no limit.
        over_limit: What to do with a longer text (:data:`OverLimit`).

    Raises:
        TypeError: ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(
            f"expected str, got {type(text).__name__}; decode bytes first (the guard never "
            "guesses an encoding) and pass text, not None"
        )
    repaired, had_surrogates = repair_surrogates(exact_str(text))
    notices: list[str] = [NOTICE_INVALID_UNICODE] if had_surrogates else []
    if max_chars is not None and len(repaired) > max_chars:
        if over_limit == "block":
            notices.append(NOTICE_OVER_MAX_CHARS)
            return PreparedText(repaired, "", tuple(notices), skip=True, starts=(), ends=())
        notices.append(NOTICE_TRUNCATED)
        head_n = max_chars - max_chars // 2
        tail_start = len(repaired) - max_chars // 2
        # Head and tail are normalised separately and joined by a newline that maps to the
        # last head character, so a finding never spans the unchecked middle.
        joined = join_detections(
            [normalize_for_detection(repaired[:head_n]), normalize_for_detection(repaired[tail_start:])],
            joint=head_n - 1 if head_n > 0 else 0,
            offset=(0, tail_start),
        )
        return PreparedText(repaired, joined[0], tuple(notices), starts=joined[1], ends=joined[2])
    detection, starts, ends = normalize_for_detection(repaired)
    return PreparedText(repaired, detection, tuple(notices), starts=starts, ends=ends)
