"""Gathering: the run's summary in, the typed :class:`~aloekit.report.document.Report` out.

The input is the run's ``summary`` dict (``aloe run`` gathers it from the stages' outputs; every key but ``title``
is optional). Each section is a function of it; a section whose data is malformed becomes a note naming the
error instead of losing the whole report after hours of training. Nothing here writes HTML or markdown: the
templates (:mod:`aloekit.report.html`, :mod:`aloekit.report.markdown`) render what this module gathers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from aloekit.report import stage_sections
from aloekit.report.card import render_model_card
from aloekit.report.document import (
    Block,
    Code,
    Facts,
    Findings,
    Note,
    Paragraph,
    Report,
    RiskAssessment,
    Section,
    Table,
    not_run,
)
from aloekit.report.findings import RULES, Finding, findings
from aloekit.report.numbers import acc_cell, duration, estimate, rate_cell
from aloekit.report.risks import risk_markdown, risks_from_summary
from aloekit.report.safety_tables import labelled

__all__ = ["MALFORMED", "SECTIONS", "build", "sections"]

MALFORMED = (AttributeError, LookupError, TypeError, ValueError, ArithmeticError)
"""What reading a malformed summary raises (a string where a record was expected, a missing key, a null where a
number was): shown as a note in its section. Anything else is a bug and is raised."""


FINDING_GROUPS = (
    ("warning", "Read these results with care"),
    ("supported", "Supported by the numbers"),
    ("unsupported", "Not supported by the numbers (do not conclude these)"),
)


def _shows(summary: Mapping[str, Any]) -> list[Block]:
    """The findings box first: what a reader must know before reading any table."""
    found: list[Finding] = findings(summary)
    if not found:
        return [Note("No finding could be computed: no answer distribution, paired comparison or generation result.")]
    groups = tuple(
        (level, title, tuple(f.text for f in found if f.level == level))
        for level, title in FINDING_GROUPS
        if any(f.level == level for f in found)
    )
    return [Findings(groups), Paragraph("Rules: " + " ".join(RULES))]


def _headline(summary: Mapping[str, Any]) -> list[Block]:
    given = summary.get("headline")
    if isinstance(given, Mapping) and given:
        return [Facts(tuple((str(k), str(v)) for k, v in given.items()))]
    derived = _derived_headline(summary)
    if not derived:
        return [Note("No headline numbers: no benchmark or safety evaluation was run in this recipe.")]
    return [Facts(tuple(derived))]


def _derived_headline(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Key numbers when the pipeline gave none: the final stage's accuracies (groups before single benchmarks)
    against the first stage's, Medprompt's, attack success and over-refusal after alignment."""
    items: list[tuple[str, str]] = []
    stages = list((summary.get("benchmarks") or {}).items())
    if stages:
        first_stage, first = stages[0]
        stage, final = stages[-1]
        for name, r in _top_results(final):
            before = (first.get("groups") or {}).get(name) or (first.get("benchmarks") or {}).get(name)
            vs = f" (vs {estimate(before.get('acc'))} for {first_stage})" if before and first_stage != stage else ""
            items.append((f"{name} accuracy, {stage}", acc_cell(r) + vs))
    medprompt = (summary.get("medprompt") or {}).get("results")
    if isinstance(medprompt, Mapping):
        items += [(f"{name} accuracy, Medprompt", acc_cell(r)) for name, r in _top_results(medprompt)[:2]]
    after_label, after = labelled((summary.get("safety") or {}).get("after"), "after")
    _, before = labelled((summary.get("safety") or {}).get("before"), "before")
    for suite, s in ((after or {}).get("suites") or {}).items():
        was = ((before or {}).get("suites") or {}).get(suite) or {}
        key, measure = {
            "attack": ("attack_success", "attack success"),
            "over-refusal": ("refusal_rate_on_safe", "refusal of safe prompts"),
        }.get(str(s.get("kind")), ("", ""))
        if key:
            vs = f" (before: {estimate(was[key].get('rate'))})" if isinstance(was.get(key), Mapping) else ""
            items.append((f"{suite} {measure}, {after_label}", rate_cell(s.get(key)) + vs))
    return items


def _top_results(results: Mapping[str, Any], limit: int = 4) -> list[tuple[str, Mapping[str, Any]]]:
    groups = list((results.get("groups") or {}).items())
    return (groups or list((results.get("benchmarks") or {}).items()))[:limit]


def _overview(summary: Mapping[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    recipe = summary.get("recipe") or {}
    name, path = recipe.get("name"), recipe.get("path")
    facts = [
        ("recipe", f"{name} ({path})" if name and path else str(name or path or "")),
        ("created", str(summary.get("created", ""))),
        ("seed", str(summary.get("seed", ""))),
    ]
    blocks.append(Table(("setting", "value"), tuple((k, v) for k, v in facts if v), caption="Run", text_columns=2))
    models = summary.get("models") or {}
    if models:
        blocks.append(Table(("role", "model"), tuple((k, str(v)) for k, v in models.items()), "Models", 2))
    stages = summary.get("stages") or []
    if stages:
        rows = tuple((str(s.get("name", "?")), str(s.get("status", "?")), duration(s.get("seconds"))) for s in stages)
        blocks.append(Table(("stage", "status", "time"), rows, "Stages", text_columns=2))
    else:
        blocks.append(Note("No stage records were passed to the report."))
    versions = summary.get("versions") or {}
    if versions:
        blocks.append(Table(("package", "version"), tuple((k, str(v)) for k, v in versions.items()), "Versions", 2))
    return blocks


def _risk(summary: Mapping[str, Any]) -> list[Block]:
    text = risk_markdown(summary)
    if text is None:
        return [not_run("The risk assessment")]
    # The assessment opens with its own "Risk assessment" heading: the section already has one.
    text = re.sub(r"^\s*#+\s*risk assessment\s*\n", "", text, count=1, flags=re.IGNORECASE)
    risks = risks_from_summary(summary)
    return [RiskAssessment(text, tuple(risks) if risks is not None else None)]


def _card(summary: Mapping[str, Any]) -> list[Block]:
    return [Code("Model card (README.md of the final model)", render_model_card(summary))]


def _recipe(summary: Mapping[str, Any]) -> list[Block]:
    recipe = summary.get("recipe") or {}
    if not recipe.get("text"):
        return [Note("The recipe text was not passed to the report.")]
    return [Code(f"Recipe {recipe.get('path') or recipe.get('name') or ''}".strip(), str(recipe["text"]))]


SECTIONS: tuple[tuple[str, str, Callable[[Mapping[str, Any]], list[Block]]], ...] = (
    ("findings", "What this run shows", _shows),
    ("headline", "Headline numbers", _headline),
    ("overview", "Run overview", _overview),
    ("data", "Data", stage_sections.data),
    ("training", "Training", stage_sections.training),
    ("weights", "Weight change per stage", stage_sections.weights),
    ("benchmarks", "Benchmarks by stage", stage_sections.benchmarks),
    ("changes", "Change per stage (paired)", stage_sections.changes),
    ("answers", "Predicted answers", stage_sections.answers),
    ("medprompt", "Medprompt", stage_sections.medprompt),
    ("safety", "Safety", stage_sections.safety),
    ("bias", "Bias and truthfulness", stage_sections.bias_truthfulness),
    ("risk", "Risk assessment", _risk),
    ("model-card", "Model card", _card),
    ("recipe", "Recipe", _recipe),
)


def sections(summary: Mapping[str, Any]) -> list[Section]:
    """The report's sections in order. A section whose data is malformed becomes a note naming the error: a long
    run's report must not be lost to one odd field, and the note shows what to fix."""
    out = []
    for key, title, build in SECTIONS:
        try:
            blocks = build(summary)
        except MALFORMED as e:  # shown, never hidden
            blocks = [Note(f"This section could not be rendered: {type(e).__name__}: {e}")]
        out.append(Section(key, title, tuple(blocks)))
    return out


def build(summary: Mapping[str, Any]) -> Report:
    """The whole report: title, the line under it, the sections."""
    meta = [f"created {summary['created']}" if summary.get("created") else "", _final_model(summary)]
    return Report(str(summary.get("title") or "aloekit run"), tuple(x for x in meta if x), tuple(sections(summary)))


def _final_model(summary: Mapping[str, Any]) -> str:
    final = (summary.get("models") or {}).get("final")
    return f"final model {final}" if final else ""
