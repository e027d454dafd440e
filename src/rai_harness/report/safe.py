"""Escaping of untrusted text for the HTML report, one function for templates and charts.

:func:`esc` is markupsafe's escaping (``& < > " '``) plus ``=`` as ``&#61;``. The extra
character costs nothing where it is decoded (text and quoted attribute values) and means
that no model output, dataset label or config value can ever spell an attribute
assignment such as ``onerror=`` in the page source, even if a future template put it in
an unquoted attribute. Scanners and reviewers can then grep a report for ``onerror=`` or
``<script`` and expect nothing. Control characters (other than tab and line breaks) become
U+FFFD: a NUL or an ESC has no place in a page and hides what a reader should see.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from rai_harness.markdown import neutralise_controls

__all__ = ["esc"]


def esc(value: Any) -> Markup:
    """Escape ``value`` for HTML or SVG text and attribute values; :class:`Markup` passes through."""
    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        value = neutralise_controls(value, keep="\t\n\r")
    return Markup(str(escape(value)).replace("=", "&#61;"))
