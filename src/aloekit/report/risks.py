"""The run's risk assessment, from the whole summary rather than from one safety evaluation.

The safety stage writes a risk.md from what it alone measured: no benchmark accuracy (so "medical decision-making:
not measured" although accuracy was measured) and no model before alignment (so nothing can say whether DPO stage
2 did anything). The report has both: this module passes the final model's accuracies, TruthfulQA, the
impersonation rate and the paired change of attack success across the safety DPO stage to
:func:`aloekit.safety.risk.assess`. Pure: summary in, risks out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aloekit.report.numbers import interval, number
from aloekit.safety.risk import DPO_SAFETY, Effect, Evidence, Risk, assess, markdown

__all__ = ["dpo_safety_effects", "risk_markdown", "risks_from_summary"]


def _impersonation(summary: Mapping[str, Any], label: str) -> Evidence | None:
    found = (summary.get("impersonation") or {}).get(label)
    bounds = interval((found or {}).get("ci95"))
    rate, n = number((found or {}).get("rate")), number((found or {}).get("n"))
    if rate is None or bounds is None or not n:
        return None
    return Evidence("replies claiming to be a health professional", int(n), rate, bounds, f"{label}'s safety replies")


def dpo_safety_effects(summary: Mapping[str, Any]) -> list[Effect]:
    """The paired change of attack success per attack suite between the safety-evaluated model before
    ``dpo_safety`` and ``dpo_safety`` itself (the step that ends at it)."""
    effects = []
    for entry in summary.get("safety_changes") or []:
        if entry.get("after") != DPO_SAFETY or entry.get("kind") != "step" or entry.get("error"):
            continue
        for suite, c in (entry.get("suites") or {}).items():
            delta, bounds, n = number(c.get("delta")), interval(c.get("delta_ci95")), number(c.get("n"))
            if c.get("kind") == "attack" and delta is not None and bounds is not None and n:
                between = f"{entry.get('before')} → {entry.get('after')}, {suite} suite"
                effects.append(Effect("attack success", delta, bounds, int(n), between))
    return effects


def _truthfulqa(summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
    after = (summary.get("truthfulness") or {}).get("after")
    if isinstance(after, Mapping) and all(k in after for k in ("n", "mc1", "mc1_ci95")):
        return after
    return None


def risks_from_summary(summary: Mapping[str, Any]) -> list[Risk] | None:
    """The three risks of the final safety-evaluated model, or None when the run has no safety evaluation."""
    after = (summary.get("safety") or {}).get("after") or {}
    redteam = after.get("results")
    if not isinstance(redteam, Mapping):
        return None
    label = str(after.get("label") or "")
    stages = list((summary.get("benchmarks") or {}).items())
    # The evaluated model that is the red-teamed one, else the last evaluated: its error rate is the evidence.
    mcqa = dict(stages).get(label) or (stages[-1][1] if stages else None)
    applied = {DPO_SAFETY} if DPO_SAFETY in (summary.get("training") or {}) or label == DPO_SAFETY else set()
    return assess(
        redteam=redteam,
        mcqa=mcqa if isinstance(mcqa, Mapping) else None,
        truthfulqa=_truthfulqa(summary),
        impersonation=_impersonation(summary, label),
        applied=applied,
        effects={DPO_SAFETY: dpo_safety_effects(summary)},
    )


def risk_markdown(summary: Mapping[str, Any]) -> str | None:
    """The assessment as markdown: from the summary when it has a safety evaluation, else the safety stage's own
    risk.md (``risk_markdown``), else None."""
    risks = risks_from_summary(summary)
    if risks is not None:
        return markdown(risks)
    given = summary.get("risk_markdown")
    return given if isinstance(given, str) and given.strip() else None
