"""Accuracy per subject (or specialty) within a benchmark, for the questions whose source names one.

MedMCQA names a subject per question (Anatomy, Dental, ...), MedExQA a specialty (speech pathologist, clinical
psychologist, ...), MedQA its USMLE step (``meta_info``); MMLU's medical subjects are benchmarks of their own and
so already reported apart. A benchmark-wide accuracy can hide a specialty where the model is at chance; each
subject's accuracy comes with its own 95% interval, which on a subject of 17 questions is wide, and says so.

Also the tables ``aloe eval`` prints below its main one: accuracy by subject, and the calibration (ECE) of
log-likelihood answers (:mod:`aloekit.evaluation.calibration`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from aloekit.evaluation.stats import accuracy_ci

NO_SUBJECT = "(none)"
"""The key for questions whose source names no subject, next to those that do."""


def by_subject(subjects: Sequence[str | None], correct: Sequence[bool], *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Subject -> {n, acc, acc_ci95}, subjects in alphabetical order (questions without one under ``(none)``).

    Empty when fewer than two subjects are named: one subject's accuracy is the benchmark's own."""
    if len(subjects) != len(correct):
        raise ValueError(f"one subject per answer: {len(subjects)} subjects, {len(correct)} answers")
    groups: dict[str, list[float]] = defaultdict(list)
    for subject, right in zip(subjects, correct, strict=True):
        groups[subject or NO_SUBJECT].append(float(right))
    if len([s for s in groups if s != NO_SUBJECT]) < 2:
        return {}
    out = {}
    for subject in sorted(groups):
        scores = groups[subject]
        low, high = accuracy_ci(scores, seed=seed)
        out[subject] = {"n": len(scores), "acc": float(np.mean(scores)), "acc_ci95": [low, high]}
    return out


def subject_table(results: dict[str, Any]) -> Any:
    """A rich table of every benchmark's per-subject accuracy, or None when no benchmark has subjects."""
    from rich.table import Table

    rows = [(name, s, r) for name, b in results["benchmarks"].items() for s, r in b.get("subjects", {}).items()]
    if not rows:
        return None
    t = Table(title="accuracy by subject / specialty")
    for name, justify in [("benchmark", "left"), ("subject", "left"), ("n", "right"), ("acc", "right")]:
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    t.add_column("95% CI", justify="right")
    for name, subject, r in rows:
        t.add_row(name, subject, str(r["n"]), f"{r['acc']:.3f}", f"{r['acc_ci95'][0]:.3f}-{r['acc_ci95'][1]:.3f}")
    return t


def calibration_table(results: dict[str, Any]) -> Any:
    """A rich table of the ECE of every benchmark, group and all questions (loglik runs), or None without any."""
    from rich.table import Table

    rows = [(name, b["calibration"]) for name, b in results["benchmarks"].items() if "calibration" in b]
    rows += [(f"[bold]{name}[/bold]", g["calibration"]) for name, g in results["groups"].items() if "calibration" in g]
    if "calibration" in results:
        rows.append(("[bold]all questions[/bold]", results["calibration"]))
    if not rows:
        return None
    t = Table(title="calibration of the answers (top-1 softmax confidence, 10 bins)")
    t.add_column("benchmark")
    for name in ("n", "ECE", "95% CI", "confidence", "accuracy"):
        t.add_column(name, justify="right")
    for name, c in rows:
        low, high = c["ece_ci95"]
        t.add_row(
            name, str(c["n"]), f"{c['ece']:.3f}", f"{low:.3f}-{high:.3f}", f"{c['mean_confidence']:.3f}",
            f"{c['accuracy']:.3f}",
        )  # fmt: skip
    return t


__all__ = ["NO_SUBJECT", "by_subject", "calibration_table", "subject_table"]
