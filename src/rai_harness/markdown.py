"""Escaping of untrusted text for Markdown and the console: the one place it is done.

Used by the report's Markdown summary and by the gate's Markdown verdict, so it lives on the
bottom floor (it imports nothing from rai_harness): ``import rai_harness.gate`` must not load
the report package to escape a table cell.

Every value is escaped for Markdown *and* inline HTML: GitHub renders ``<b>`` and
``[text](url)`` inside table cells, so a provider id or a problem message could otherwise
inject a link or markup into a comment.

Control characters (C0 such as ESC and NUL, DEL, C1 such as U+0085, and the bidirectional
overrides) are never written raw anywhere: an ESC starts a terminal escape sequence in a CI
log, a CR overwrites the line it is on, and a bidi override reorders what a reviewer reads.
:func:`require_printable` lets config and policy loaders refuse them in names;
:func:`neutralise_controls` makes them visible (U+FFFD) in text that still gets through.
"""

from __future__ import annotations

import re

__all__ = ["console_escape", "md_escape", "neutralise_controls", "require_printable"]

# Brackets are escaped, so parentheses can never complete a link; the rest are emphasis, code,
# table and strike-through markers. Block markers matter only at the start of a line.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_LINE_START = re.compile(r"^(?:([#+\-=])(?=\s)|(>))")
_ORDERED = re.compile(r"^(\d+)([.)])(?=\s)")
#: C0 controls, DEL, C1 controls, and the bidi embedding/override/isolate characters
#: (U+202A-U+202E, U+2066-U+2069: "Trojan source"); line/paragraph separators end a line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: "@name" notifies that GitHub user (or team) from a PR comment or step summary.
_MENTION = re.compile(r"@(?=[A-Za-z0-9])")


def require_printable(value: str) -> str:
    """``value`` unchanged, or a ValueError naming its first control character.

    A pydantic validator for names that are shown in terminals, Markdown and HTML (provider
    ids, run and policy names, rule ids): refusing them at load time is what keeps a name
    from rewriting a CI log or a PR comment.
    """
    match = _CONTROL.search(value)
    if match is not None:
        raise ValueError(
            f"contains the control character {match.group()!a} at position {match.start()}; "
            "names are shown in terminals, Markdown and HTML: use printable characters only"
        )
    return value


def neutralise_controls(text: str, *, keep: str = "") -> str:
    """``text`` with every control character except those in ``keep`` replaced by U+FFFD.

    Args:
        text: Untrusted text.
        keep: Control characters that stay (``"\\n\\t"`` for a multi-line message).
    """
    if text.isascii() and text.isprintable():
        return text  # the common case costs one scan
    return _CONTROL.sub(lambda m: m.group() if m.group() in keep else "\ufffd", text)


def console_escape(text: str) -> str:
    """Escape untrusted text for rich console markup: no markup tags and no control characters.

    Rich strips only a few controls (BEL, BS, VT, FF, CR) itself, so an ESC in a provider id
    would otherwise reach the terminal as an escape sequence. Line breaks and tabs stay.
    """
    # Imported here: the gate imports this module and must not load rich to escape Markdown.
    from rich.markup import escape

    # A CR alone returns the cursor and lets the rest of a line overwrite what came before.
    return escape(neutralise_controls(text.replace("\r\n", "\n"), keep="\n\t"))


def md_escape(text: str) -> str:
    """Escape text for a Markdown paragraph or table cell (no markup, links, HTML, controls or mentions)."""
    # Whitespace controls first become spaces (joined below); the rest become visible.
    text = neutralise_controls(text, keep="\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _LINE_START.sub(lambda m: "\\" + (m.group(1) or m.group(2)), text.strip())
    text = _ORDERED.sub(r"\1\\\2", text)
    # A line break would end a table row; a colon after "javascript" cannot make a link once
    # brackets and parentheses are escaped, but GitHub autolinks bare schemes it knows, so the
    # colon of any scheme-looking word is broken up too.
    text = re.sub(r"(?i)\b(javascript|data|vbscript):", r"\1&#58;", text)
    # A zero-width space after "@" keeps the text readable and notifies nobody (as Renovate does).
    text = _MENTION.sub("@&#8203;", text)
    return " ".join(text.split())
