"""Markdown escaping: the one escaper of untrusted text for Markdown output.

Used by the report's Markdown summary and by the gate's Markdown verdict, so it lives on the
bottom floor (it imports nothing from rai_harness): ``import rai_harness.gate`` must not load
the report package to escape a table cell.

Every value is escaped for Markdown *and* inline HTML: GitHub renders ``<b>`` and
``[text](url)`` inside table cells, so a provider id or a problem message could otherwise
inject a link or markup into a comment.
"""

from __future__ import annotations

import re

__all__ = ["md_escape"]

# Brackets are escaped, so parentheses can never complete a link; the rest are emphasis, code,
# table and strike-through markers. Block markers matter only at the start of a line.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_LINE_START = re.compile(r"^(?:([#+\-=])(?=\s)|(>))")
_ORDERED = re.compile(r"^(\d+)([.)])(?=\s)")


def md_escape(text: str) -> str:
    """Escape text for a Markdown paragraph or table cell (no markup, links or HTML survive)."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _LINE_START.sub(lambda m: "\\" + (m.group(1) or m.group(2)), text.strip())
    text = _ORDERED.sub(r"\1\\\2", text)
    # A line break would end a table row; a colon after "javascript" cannot make a link once
    # brackets and parentheses are escaped, but GitHub autolinks bare schemes it knows, so the
    # colon of any scheme-looking word is broken up too.
    text = re.sub(r"(?i)\b(javascript|data|vbscript):", r"\1&#58;", text)
    return " ".join(text.split())
