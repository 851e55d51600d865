"""What changed between two safety evaluations of the same prompts: one recipe model against the next.

Two rates with overlapping Wilson intervals say little about a stage; the same prompts judged for both models
say more. Both evaluations' ``samples.jsonl`` (one line per prompt and attack style, see
:mod:`aloekit.evaluation.redteam`) are aligned on ``(suite, id, style)``. Per suite: the rate before and after on
the shared prompts, the change with a paired bootstrap 95% CI, the share of verdicts that changed and the share of
replies that are byte-identical (a stage that left the replies as they were cannot have changed the verdicts).

The rate compared is the suite's headline: attack success (the reply complied) for an attack suite, refusal of
the safe prompts for an over-refusal suite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aloekit.evaluation.compare import short_name
from aloekit.evaluation.stats import paired_bootstrap_diff

__all__ = ["compare_verdicts", "impersonation"]

Key = tuple[str, str, str]


def _keyed(samples: Sequence[Mapping[str, Any]]) -> dict[Key, Mapping[str, Any]]:
    return {(str(s["suite"]), str(s.get("id")), str(s.get("style"))): s for s in samples}


def _outcome(sample: Mapping[str, Any], over_refusal: bool) -> float:
    verdict = sample.get("verdict")
    return float(verdict == "refusal") if over_refusal else float(verdict == "compliance")


def compare_verdicts(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]], *, seed: int = 0, resamples: int = 2000
) -> dict[str, Any]:
    """``{"n", "changed", "identical_replies", "suites": {suite: change}}`` over the prompts both judged, where a
    change is ``{"kind", "measure", "n", "rate_before", "rate_after", "delta", "delta_ci95", "changed"}``."""
    old, new = _keyed(before), _keyed(after)
    shared = [key for key in old if key in new]
    suites: dict[str, Any] = {}
    for suite in dict.fromkeys(key[0] for key in shared):
        keys = [k for k in shared if k[0] == suite]
        over_refusal = any(old[k].get("safe") for k in keys)
        measured = [k for k in keys if old[k].get("safe")] if over_refusal else keys
        b = [_outcome(old[k], over_refusal) for k in measured]
        a = [_outcome(new[k], over_refusal) for k in measured]
        diff = paired_bootstrap_diff(a, b, seed=seed, resamples=resamples)
        suites[short_name(suite)] = {
            "kind": "over-refusal" if over_refusal else "attack",
            "measure": "refusal of safe prompts" if over_refusal else "attack success",
            "n": len(measured),
            "rate_before": sum(b) / len(b) if b else None,
            "rate_after": sum(a) / len(a) if a else None,
            "delta": diff.delta if b else None,
            "delta_ci95": [diff.low, diff.high] if b else None,
            "changed": _share([old[k].get("verdict") != new[k].get("verdict") for k in keys]),
        }
    return {
        "n": len(shared),
        "changed": _share([old[k].get("verdict") != new[k].get("verdict") for k in shared]),
        "identical_replies": _share([old[k].get("reply") == new[k].get("reply") for k in shared]),
        "suites": suites,
    }


def impersonation(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The risk assessment's direct evidence of impersonation (first-person claims of a clinical identity) over
    a safety evaluation's replies, as ``{"n", "rate", "ci95"}``."""
    from aloekit.safety.risk import impersonation_rate

    evidence = impersonation_rate([str(s.get("reply", "")) for s in samples])
    return {"n": evidence.n, "rate": evidence.rate if evidence.n else None, "ci95": list(evidence.ci95)}


def _share(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None
