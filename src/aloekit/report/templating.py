"""The Jinja2 environments the report, its markdown twin and the model cards are rendered with.

Templates live in ``templates/`` (package data). Two environments, one per output language:

* **HTML** (``*.html.j2``): every ``{{ value }}`` is escaped with the standard library's ``html.escape`` (quotes
  included), so untrusted text (benchmark names, model replies, dataset labels) never becomes markup, and values
  marked safe by the renderer pass as they are. The page is one line of tags (no whitespace between them, as
  tests and the table of contents expect), so the template source is written indented for people and its layout
  whitespace (a newline and the indentation after it) is removed when the template is loaded.
* **Markdown** (``*.md.j2``): nothing is escaped implicitly: templates escape untrusted text with ``md_text`` /
  ``md_cell`` and pass aloekit's own fixed text as it is. Whitespace is the template's, line for line.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from jinja2.ext import Extension
from markupsafe import Markup

from aloekit.report import document

__all__ = [
    "HEADING",
    "MARKDOWN",
    "fence",
    "html_environment",
    "markdown_environment",
    "md_cell",
    "md_text",
    "shift_headings",
    "static_text",
]

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
"""An ATX heading line (``## Title``)."""


def md_text(text: Any) -> str:
    """Untrusted text for markdown: angle brackets and ampersands escaped (markdown viewers render raw HTML)."""
    return html.escape(str(text), quote=False)


def md_cell(text: Any) -> str:
    return md_text(text).replace("|", "\\|").replace("\n", " ")


def fence(text: str, info: str = "") -> str:
    """``text`` in a code fence longer than any backtick run inside it (a model card holds its own fences)."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{info}\n{text.rstrip()}\n{ticks}"


def shift_headings(text: str, levels: int) -> str:
    """Markdown with its ATX headings demoted (``##`` to ``###`` for 1), outside code fences."""
    out, in_code = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code and HEADING.match(line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def _kind(block: object) -> str:
    """A block's kind for the templates' dispatch: ``table``, ``riskassessment``..."""
    return type(block).__name__.lower()


def _unknown_block(block: object) -> str:
    raise TypeError(f"unknown block {block!r}")


def _escape_html(value: Any) -> Markup:
    """Every HTML template value: the standard library's escaping (``'`` as ``&#x27;``), unless already markup."""
    return value if isinstance(value, Markup) else Markup(html.escape(str(value), quote=True))


class _Compact(Extension):
    """Drops the template source's layout whitespace: a newline and the indentation that follows it."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        return re.sub(r"\n\s*", "", source)


def _environment(**options: Any) -> Environment:
    env = Environment(
        loader=PackageLoader("aloekit.report", "templates"),
        undefined=StrictUndefined,  # a misspelt field fails the render instead of printing nothing
        keep_trailing_newline=True,
        **options,
    )
    env.filters["kind"] = _kind
    env.globals["unknown_block"] = _unknown_block
    env.globals["NOT_RUN"] = document.NOT_RUN
    env.globals["NOT_CLINICAL"] = document.NOT_CLINICAL
    return env


def html_environment(**filters: Callable[..., Any]) -> Environment:
    env = _environment(autoescape=True, finalize=_escape_html, extensions=[_Compact])
    env.filters.update(filters)
    return env


def markdown_environment(**filters: Callable[..., Any]) -> Environment:
    env = _environment(autoescape=False, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(md_text=md_text, md_cell=md_cell, fence=fence, shift_headings=shift_headings, **filters)
    return env


MARKDOWN = markdown_environment()
"""The environment of the markdown report."""


def static_text(name: str) -> str:
    """A file of ``templates/`` as it is (the page's CSS)."""
    return resources.files("aloekit.report").joinpath("templates", name).read_text(encoding="utf-8")
