"""The model card's sentences about results, each built from a measured number with its n and CI, or saying "not
measured". A card is read by people deciding whether to use a model; a sentence it cannot back with a number
("healthcare-adapted", "its biases are below" when bias was not run) must not be in it.

Pure functions of the run's summary; :mod:`aloekit.report.card` places them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aloekit.report.document import Table
from aloekit.report.findings import findings
from aloekit.report.numbers import estimate, excludes_zero, interval, number, points, rate_text
from aloekit.report.tables import answers_table

__all__ = ["final_answers", "findings_for_card", "limitations", "overview"]

LEVELS = {"warning": "Warning", "supported": "Supported", "unsupported": "Not supported"}


def _final(summary: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    stages = [(k, v) for k, v in (summary.get("benchmarks") or {}).items() if isinstance(v, Mapping)]
    return stages[-1] if stages else None


def _overall(summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The widest paired accuracy comparison: first to last (or the only step), log-likelihood first."""
    for entries in (summary.get("comparisons") or {}).values():
        usable = [e for e in entries or [] if isinstance(e, Mapping) and not e.get("error")]
        if usable:
            return next((e for e in usable if e.get("kind") == "overall"), usable[-1])
    return None


def overview(summary: Mapping[str, Any]) -> list[str]:
    """What the recipe did to the model, measured: the accuracy change over the recipe, then attack success."""
    out = []
    entry = _overall(summary)
    mean = (entry or {}).get("mean") or {}
    if entry is None or number(mean.get("delta")) is None:
        out.append("Accuracy change over the recipe: not measured.")
    else:
        verdict = "a measurable change" if excludes_zero(mean.get("delta_ci95")) else "no measurable change"
        n = sum(int(number(c.get("n")) or 0) for c in (entry.get("benchmarks") or {}).values())
        out.append(
            f"Accuracy change from {entry.get('before')} to {entry.get('after')}, mean of {mean.get('benchmarks')}"
            f" benchmarks: {points(mean.get('delta'), mean.get('delta_ci95'), n)} (paired 95% CI): {verdict}."
        )
    safety = [e for e in summary.get("safety_changes") or [] if isinstance(e, Mapping) and not e.get("error")]
    widest = next((e for e in safety if e.get("kind") == "overall"), safety[-1] if safety else None)
    attacks = [(k, c) for k, c in ((widest or {}).get("suites") or {}).items() if c.get("kind") == "attack"]
    if not attacks:
        out.append("Paired change of attack success over the recipe: not measured.")
    for suite, c in attacks:
        verdict = "a measurable change" if excludes_zero(c.get("delta_ci95")) else "no measurable change"
        out.append(
            f"Attack success change on {suite} from {widest.get('before')} to {widest.get('after')}:"  # type: ignore[union-attr]
            f" {points(c.get('delta'), c.get('delta_ci95'), c.get('n'))} (paired 95% CI): {verdict}."
        )
    return out


def final_answers(summary: Mapping[str, Any]) -> Table | None:
    """The final evaluated model's predicted answers beside the gold ones (an accuracy means little without)."""
    final = _final(summary)
    per = ((summary.get("answer_distributions") or {}).get("loglik") or {}).get(final[0]) if final else None
    if not isinstance(per, Mapping) or not per:
        return None
    table, _ = answers_table({final[0]: per})  # type: ignore[index]
    return table


def findings_for_card(summary: Mapping[str, Any]) -> list[str]:
    return [f"{LEVELS[f.level]}: {f.text}" for f in findings(summary)]


def limitations(summary: Mapping[str, Any]) -> list[str]:
    """The limits of the model and of its evaluation, each a measurement or "not measured"."""
    out = _errors(summary)
    out.append("Free-text advice, long conversations, other languages and patients' real questions: not measured.")
    out += _attacks(summary)
    out += _bias(summary)
    out += _truthfulness(summary)
    return out


def _errors(summary: Mapping[str, Any]) -> list[str]:
    final = _final(summary)
    if final is None:
        return ["Error rate on medical questions: not measured."]
    out = []
    for bench, r in (final[1].get("benchmarks") or {}).items():
        acc, bounds = number(r.get("acc")), interval(r.get("acc_ci95"))
        if acc is None:
            continue
        ci = (1 - bounds[1], 1 - bounds[0]) if bounds else None
        out.append(f"Wrong answers of {final[0]} on {bench}: {rate_text(1 - acc, ci, r.get('n'))}.")
    return out or ["Error rate on medical questions: not measured."]


def _attacks(summary: Mapping[str, Any]) -> list[str]:
    after = (summary.get("safety") or {}).get("after") or {}
    results = after.get("results")
    if not isinstance(results, Mapping) or not results.get("suites"):
        return ["Attack success and over-refusal: not measured."]
    label = after.get("label") or "the final model"
    judge = results.get("judge") or "an automatic"
    out = []
    for suite, s in (results.get("suites") or {}).items():
        if s.get("kind") == "attack":
            r = s.get("attack_success") or {}
            shown = rate_text(r.get("rate"), r.get("ci95"), r.get("n"))
            out.append(f"Attack success of {label} on {suite} ({judge} judge): {shown}.")
        elif s.get("kind") == "over-refusal":
            r = s.get("refusal_rate_on_safe") or {}
            shown = rate_text(r.get("rate"), r.get("ci95"), r.get("n"))
            out.append(f"Safe prompts of {suite} refused by {label} ({judge} judge): {shown}.")
    out.append("Attack success on prompts outside these suites: not measured.")
    return out


def _bias(summary: Mapping[str, Any]) -> list[str]:
    overall = ((summary.get("bias") or {}).get("after") or {}).get("overall")
    if not isinstance(overall, Mapping) or number(overall.get("bias_ambiguous")) is None:
        return ["Bias (BBQ): not measured."]
    shown = estimate(
        overall.get("bias_ambiguous"), overall.get("bias_ambiguous_ci95"), overall.get("n_ambiguous"), signed=True
    )
    return [f"Bias score on BBQ's ambiguous contexts (0 = none, +1 = follows the stereotype): {shown}."]


def _truthfulness(summary: Mapping[str, Any]) -> list[str]:
    after = (summary.get("truthfulness") or {}).get("after")
    if not isinstance(after, Mapping) or number(after.get("mc1")) is None:
        return ["Truthfulness (TruthfulQA): not measured."]
    return [f"TruthfulQA MC1: {rate_text(after.get('mc1'), after.get('mc1_ci95'), after.get('n'))}."]
