"""The report stage: the summary of the run (:mod:`aloekit.recipe.summary`) rendered as ``report/report.html``
and ``report/report.md`` (``summary.json`` beside them), and the model card next to the final model."""

from __future__ import annotations

from pathlib import Path

from aloekit.io import write_json
from aloekit.recipe.runner import StageContext, StageOutputs
from aloekit.recipe.summary import RunOutputs, summary
from aloekit.report.card import render_model_card, write_card
from aloekit.report.html import write_report

__all__ = ["ReportOutputs", "run"]


class ReportOutputs(StageOutputs):
    model_card: Path | None = None
    """The final model's README.md; None when there is no final model folder."""
    html: Path
    markdown: Path


def run(inputs: RunOutputs, ctx: StageContext) -> ReportOutputs:
    data = summary(inputs)
    card = render_model_card(data)
    final = data["models"].get("final")
    model_card = None
    if final and Path(final).is_dir():
        # The card belongs next to the model it describes, where the Hub reads it.
        model_card = write_card(Path(final), card)
    written = write_report(data, ctx.folder)
    write_json(ctx.folder / "summary.json", data, default=str)
    return ReportOutputs(html=written["html"], markdown=written["markdown"], model_card=model_card)
