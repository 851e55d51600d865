"""The run report of ``aloe run`` as one self-contained HTML page, and both report files on disk.

The page is rendered from the gathered :class:`~aloekit.report.document.Report` by ``templates/report.html.j2``:
charts embedded as ``data:`` PNGs, inline CSS, no network, readable offline and by a clinician-facing team. Its
markdown twin is :mod:`aloekit.report.markdown`'s.

Everything shown is escaped: benchmark names, dataset labels and model replies are untrusted text. The page
also carries a Content-Security-Policy that allows only its own inline script (which counts the charts that
loaded, for the browser test) and ``data:`` images, so a slip in escaping still cannot run code or reach out.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup

from aloekit.io import atomic_write_text
from aloekit.report.document import Chart, Report
from aloekit.report.markdown import markdown_page
from aloekit.report.numbers import estimate
from aloekit.report.sections import MALFORMED, build
from aloekit.report.templating import html_environment, static_text
from aloekit.safety.risk import LIKELIHOOD_RULE

# `estimate` is the report's number format; bench/ scripts import it from here.
__all__ = ["estimate", "html_page", "render_html", "write_report"]

_SCRIPT = (
    "window.addEventListener('load',function(){var c=document.querySelectorAll('img.chart'),n=0;"
    "c.forEach(function(i){if(i.complete&&i.naturalWidth>0){n++;}});"
    "document.body.setAttribute('data-charts-loaded',String(n));"
    "document.body.setAttribute('data-charts-found',String(c.length));});"
)
# The page may run only this script and show only data: images; nothing is fetched (CSP by hash, not nonce, so
# the file is the same on every render).
_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    f"script-src 'sha256-{base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()}'"
)
CHART_ERRORS = (*MALFORMED, RuntimeError, OSError)
"""What drawing a chart can raise: malformed results, and matplotlib's own failures (a backend or figure error,
an unwritable font cache). A chart that cannot be drawn says so in its place and must not cost the report."""


@dataclass(frozen=True)
class _Figure:
    """A chart as drawn: its PNG as base64, or the error that stopped it."""

    data: str = ""
    error: str = ""


def _draw(chart: Chart) -> _Figure:
    try:
        png = chart.draw()
    except CHART_ERRORS as e:
        return _Figure(error=f"{type(e).__name__}: {e}")
    return _Figure(data=base64.b64encode(png).decode("ascii"))


_ENV = html_environment(percent1=lambda v: f"{v:.1%}", points1=lambda v: f"{100 * v:+.1f}")
_ENV.globals["likelihood_rule"] = LIKELIHOOD_RULE


def html_page(report: Report) -> str:
    """The page of a gathered report. Charts are drawn here, once each, before the template runs, so the page
    can say how many it holds (``data-charts-total``, which the browser test compares with those that load)."""
    figures = {b: _draw(b) for s in report.sections for b in s.blocks if isinstance(b, Chart)}
    return _ENV.get_template("report.html.j2").render(
        report=report,
        figures=figures,
        charts_total=sum(1 for f in figures.values() if f.data),
        csp=Markup(_CSP),
        css=Markup(static_text("report.css")),
        script=Markup(_SCRIPT),
        newline=Markup("\n"),
    )


def render_html(summary: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page (charts inline as PNG ``data:`` URIs, no external resource)."""
    return html_page(build(summary))


def write_report(summary: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    """Write ``report.html`` and ``report.md`` into ``folder`` (each atomically), from one gathering; return
    their paths."""
    report = build(summary)
    paths = {"html": folder / "report.html", "markdown": folder / "report.md"}
    atomic_write_text(paths["html"], html_page(report))
    atomic_write_text(paths["markdown"], markdown_page(report))
    return paths
