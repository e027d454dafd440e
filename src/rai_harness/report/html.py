"""The HTML report: one self-contained file rendered with jinja2, autoescape on.

Templates and the stylesheet are package data (``report/templates/``). The page loads
nothing: CSS is inlined, charts are inline SVG, there is no script and no web font, and a
Content-Security-Policy meta tag (``default-src 'none'``) makes the browser refuse any
request or script even if some text were to slip through unescaped.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import jinja2
from markupsafe import Markup

from rai_harness.report.safe import esc
from rai_harness.report.viewmodel import ReportView

__all__ = ["render_html"]

_TEMPLATE = "report.html.jinja"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    # autoescape=True for every template, not select_autoescape by extension: the template
    # is named .jinja, which select_autoescape would leave unescaped.
    # finalize runs on every {{ }} value before autoescaping: esc() also encodes "=", and
    # returns Markup, which autoescape then leaves alone (so nothing is escaped twice).
    return jinja2.Environment(
        loader=jinja2.PackageLoader("rai_harness.report", "templates"),
        autoescape=True,
        finalize=esc,
        undefined=jinja2.StrictUndefined,
    )


@lru_cache(maxsize=1)
def _css() -> Markup:
    # The stylesheet is our own package file, not data: it goes into <style> unescaped
    # (escaping would turn its quotes into entities, which CSS does not decode).
    return Markup(
        resources.files("rai_harness.report").joinpath("templates", "report.css").read_text("utf-8")
    )


def render_html(view: ReportView) -> str:
    """Render the report page.

    Args:
        view: From :func:`~rai_harness.report.view.build_view`.

    Returns:
        The HTML document.
    """
    return _environment().get_template(_TEMPLATE).render(v=view, css=_css())
