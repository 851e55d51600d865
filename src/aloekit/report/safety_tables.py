"""The tables of the safety, bias and truthfulness evaluations, shared by the report and the model card.

A part of the summary measured on several models (``{"before": ..., "between": [...], "after": ...}``) becomes
labelled *sides*, one column each; a table no side measured is None, and the caller says "not run".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aloekit.report.document import Table
from aloekit.report.numbers import estimate, number, rate_cell

__all__ = [
    "attack_table",
    "bbq_table",
    "before_after",
    "labelled",
    "over_refusal_suites",
    "over_refusal_table",
    "safety_setup",
    "truthfulness_table",
]


def labelled(entry: Any, default: str) -> tuple[str, Mapping[str, Any] | None]:
    """(column label, results) of a before/after entry: ``{"label", "results"}`` (as safety's) or bare results."""
    if isinstance(entry, Mapping) and "results" in entry:
        label = entry.get("label")
        results = entry.get("results")
        return (f"{default} ({label})" if label else default), results if isinstance(results, Mapping) else None
    return default, entry if isinstance(entry, Mapping) and entry else None


def before_after(part: Any) -> list[tuple[str, Mapping[str, Any]]]:
    """The present sides of a ``{"before": ..., "between": [...], "after": ...}`` part, labelled, in that order."""
    if not isinstance(part, Mapping):
        return []
    between = [labelled(entry, "between") for entry in part.get("between") or []]
    sides = [labelled(part.get("before"), "before"), *between, labelled(part.get("after"), "after")]
    present = [(label, results) for label, results in sides if results is not None]
    if len(present) == 2 and present[0][1] == present[1][1]:
        return present[1:]  # one model measured once (a recipe with a single safety model): one column, not two
    return present


def safety_setup(sides: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    r = sides[-1][1]
    styles = ", ".join(str(s) for s in r.get("styles") or []) or "none recorded"
    limit = r.get("limit")
    prompts = f"at most {limit} prompts per suite" if limit else "every prompt of each suite"
    return (
        f"Replies judged by the {r.get('judge') or 'unrecorded'} judge; {prompts}; "
        f"attack styles: {styles}. Rates with 95% Wilson intervals and their sample size."
    )


def attack_table(sides: Sequence[tuple[str, Mapping[str, Any]]]) -> Table | None:
    """Attack success per suite (all styles, then each style), one column per side; None without attack suites."""
    suites: dict[str, None] = {}
    for _, r in sides:
        suites |= {n: None for n, s in (r.get("suites") or {}).items() if s.get("kind") == "attack"}
    rows = []
    for suite in suites:
        found = [(r.get("suites") or {}).get(suite) or {} for _, r in sides]
        rows.append((suite, "all styles", *(rate_cell(s.get("attack_success")) for s in found)))
        styles: dict[str, None] = {}
        for s in found:
            styles |= dict.fromkeys(s.get("by_style") or {})
        rows += [(suite, style, *(rate_cell((s.get("by_style") or {}).get(style)) for s in found)) for style in styles]
    if not rows:
        return None
    return Table(
        ("suite", "attack style", *(label for label, _ in sides)),
        tuple(rows),
        "Attack success rate (lower is safer)",
        2,
    )


def _measured(rates: Sequence[Any]) -> bool:
    """A row worth showing: some side measured it on at least one prompt (an empty row reads "n/a, n=0")."""
    return any(isinstance(r, Mapping) and number(r.get("n")) for r in rates)


def over_refusal_suites(sides: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    suites: dict[str, None] = {}
    for _, r in sides:
        suites |= {n: None for n, s in (r.get("suites") or {}).items() if s.get("kind") == "over-refusal"}
    return list(suites)


def over_refusal_table(sides: Sequence[tuple[str, Mapping[str, Any]]]) -> Table | None:
    """Refusal rate on safe prompts (overall, by prompt type) and compliance on unsafe contrasts, per over-refusal
    suite, named after the suites measured (XSTest or the recipe's own benign set). Rows nobody measured, and a
    by-type row for prompts without a type (the overall row again), are left out."""
    suites = over_refusal_suites(sides)
    rows = []
    for suite in suites:
        found = [(r.get("suites") or {}).get(suite) or {} for _, r in sides]
        measures = [
            ("refused safe prompts (lower is better)", [s.get("refusal_rate_on_safe") for s in found]),
            ("complied with unsafe prompts (lower is safer)", [s.get("compliance_rate_on_unsafe") for s in found]),
        ]
        types: dict[str, None] = {}
        for s in found:
            types |= dict.fromkeys(t for t in s.get("refusal_rate_on_safe_by_type") or {} if t != "None")
        measures += [
            (f"refused safe prompts: {t}", [(s.get("refusal_rate_on_safe_by_type") or {}).get(t) for s in found])
            for t in types
        ]
        rows += [(suite, measure, *(rate_cell(r) for r in rates)) for measure, rates in measures if _measured(rates)]
    if not rows:
        return None
    caption = f"Over-refusal: {', '.join(suites)}"
    return Table(("suite", "measure", *(label for label, _ in sides)), tuple(rows), caption, 2)


BBQ_MEASURES = (
    ("accuracy, all", "acc", "n", False),
    ("accuracy, ambiguous contexts", "acc_ambiguous", "n_ambiguous", False),
    ("accuracy, disambiguated contexts", "acc_disambiguated", "n_disambiguated", False),
    ("bias score, ambiguous (0 = none)", "bias_ambiguous", "n_ambiguous", True),
    ("bias score, disambiguated (0 = none)", "bias_disambiguated", "n_disambiguated", True),
)


def bbq_table(sides: Sequence[tuple[str, Mapping[str, Any]]]) -> Table | None:
    overall = [(label, o) for label, r in sides if isinstance(o := r.get("overall"), Mapping)]
    if not overall:
        return None
    rows = tuple(
        (measure, *(estimate(o.get(key), o.get(f"{key}_ci95"), o.get(n), signed=signed) for _, o in overall))
        for measure, key, n, signed in BBQ_MEASURES
    )
    return Table(("measure", *(label for label, _ in overall)), rows, "BBQ (bootstrap 95% CIs)")


def truthfulness_table(sides: Sequence[tuple[str, Mapping[str, Any]]]) -> Table | None:
    present = [(label, r) for label, r in sides if "mc1" in r or "mc2" in r]
    if not present:
        return None
    rows = tuple(
        (measure, *(estimate(r.get(key), r.get(f"{key}_ci95"), r.get("n")) for _, r in present))
        for measure, key in (("MC1 (higher is better)", "mc1"), ("MC2 (higher is better)", "mc2"))
    )
    return Table(("measure", *(label for label, _ in present)), rows, "TruthfulQA (bootstrap 95% CIs)")
