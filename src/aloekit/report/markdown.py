"""The run report as markdown, for reviews and diffs: the gathered :class:`~aloekit.report.document.Report`
rendered by ``templates/report.md.j2`` (the same sections and tables as the HTML page; charts are named and left
to the HTML)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aloekit.report.document import Report
from aloekit.report.sections import build
from aloekit.report.templating import MARKDOWN

__all__ = ["markdown_page", "render_markdown"]


def markdown_page(report: Report) -> str:
    return MARKDOWN.get_template("report.md.j2").render(report=report)


def render_markdown(summary: Mapping[str, Any]) -> str:
    """The report as markdown: the same sections and tables as the HTML, charts named but left to the HTML."""
    return markdown_page(build(summary))
