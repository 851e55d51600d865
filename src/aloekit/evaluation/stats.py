"""Small, dependency-light statistics for evaluation reports: means, bootstrap CIs, answer distributions.

Accuracy on a few hundred questions moves by several points between runs of equally good models, so every score
is reported with a 95% percentile-bootstrap interval (the Wilson interval for an accuracy of 0/n or n/n, where
the bootstrap has nothing to resample). The resampling is vectorised and seeded, so the same
per-question scores always give the same interval, and a rerun of a cached evaluation reproduces its report.

Two models scored on the same questions are compared by a *paired* bootstrap: the per-question differences are
resampled, so the question-to-question spread both models share cancels, and the interval of the change is much
narrower than the two accuracies' intervals suggest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "PairedDifference",
    "accuracy_ci",
    "bootstrap_ci",
    "check_bootstrap_settings",
    "distribution",
    "mean",
    "paired_bootstrap_diff",
    "percentile_interval",
    "resampled_by_counts",
    "stratified_paired_bootstrap_diff",
    "weighted_mean",
    "wilson_ci",
]

UNPARSEABLE = "unparseable"
# Resampled indices held at once: 4M int64 = 32 MiB, whatever the number of questions or resamples.
CHUNK_ELEMENTS = 1 << 22


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean, NaN for no values (a benchmark with no questions has no accuracy, not 0%)."""
    return float(np.mean(np.asarray(values, dtype=np.float64))) if len(values) else math.nan


def bootstrap_ci(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of ``values``.

    Deterministic for a given seed and input. Resamples are drawn in chunks so memory stays bounded for large
    benchmarks. No values give ``(nan, nan)``; a constant input gives ``(c, c)`` exactly, without float drift.
    """
    check_bootstrap_settings(confidence, resamples)
    return _interval(_scores(values, "values"), confidence, resamples, seed)


class PairedDifference(NamedTuple):
    """A change in mean score between two models on the same questions, with its bootstrap interval."""

    delta: float
    low: float
    high: float


def paired_bootstrap_diff(
    after: Sequence[float],
    before: Sequence[float],
    *,
    seed: int = 0,
    resamples: int = 2000,
    confidence: float = 0.95,
) -> PairedDifference:
    """Mean of ``after - before`` (per-question scores aligned on the same questions) and its paired
    percentile-bootstrap interval: the questions are resampled, each carrying both models' scores.

    Identical scores give ``(0, 0, 0)`` exactly; no questions give NaNs.
    """
    check_bootstrap_settings(confidence, resamples)
    diff = _differences(after, before)
    low, high = _interval(diff, confidence, resamples, seed)
    return PairedDifference(float(diff.mean()) if diff.size else math.nan, low, high)


def stratified_paired_bootstrap_diff(
    strata: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    seed: int = 0,
    resamples: int = 2000,
    confidence: float = 0.95,
) -> PairedDifference:
    """Change in the *mean of per-benchmark means* between two models, with a stratified paired bootstrap.

    ``strata`` holds one ``(after, before)`` pair of aligned per-question scores per benchmark. Each resample
    draws questions within every benchmark (keeping its size), takes each benchmark's mean difference and
    averages them, so a small benchmark weighs as much as a large one, as in the statistic itself. Empty
    benchmarks are left out; none at all give NaNs. With one benchmark this is :func:`paired_bootstrap_diff`.
    """
    check_bootstrap_settings(confidence, resamples)
    diffs = [d for d in (_differences(after, before) for after, before in strata) if d.size]
    if not diffs:
        return PairedDifference(math.nan, math.nan, math.nan)
    delta = float(np.mean([d.mean() for d in diffs]))
    if all(np.all(d == d[0]) for d in diffs):
        return PairedDifference(delta, delta, delta)
    rng = np.random.default_rng(seed)
    total = np.zeros(resamples, dtype=np.float64)
    for d in diffs:
        total += _resampled_means(d, resamples, rng)
    low, high = percentile_interval(total / len(diffs), confidence)
    return PairedDifference(delta, low, high)


def check_bootstrap_settings(confidence: float, resamples: int) -> None:
    """Raise ValueError unless ``confidence`` is in (0, 1) and ``resamples`` is at least 1."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")


def _scores(values: Sequence[float], name: str) -> np.ndarray:
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{name} must be finite: a NaN or infinite score means a scoring bug upstream")
    return data


def _differences(after: Sequence[float], before: Sequence[float]) -> np.ndarray:
    a, b = _scores(after, "after"), _scores(before, "before")
    if a.shape != b.shape:
        raise ValueError(f"paired scores must align question by question: {a.size} after, {b.size} before")
    return a - b


def _interval(data: np.ndarray, confidence: float, resamples: int, seed: int) -> tuple[float, float]:
    if data.size == 0:
        return math.nan, math.nan
    if np.all(data == data[0]):
        return float(data[0]), float(data[0])
    return percentile_interval(_resampled_means(data, resamples, np.random.default_rng(seed)), confidence)


def _resampled_means(data: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The means of ``resamples`` bootstrap resamples of ``data``, drawn in chunks of bounded memory."""
    n = data.size
    chunk = max(1, CHUNK_ELEMENTS // n)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        means[start : start + rows] = data[rng.integers(0, n, size=(rows, n))].mean(axis=1)
    return means


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` share of bootstrap ``values``: the percentile interval."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def resampled_by_counts(
    stat: Callable[[np.ndarray], np.ndarray], n: int, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``stat`` of ``resamples`` bootstrap resamples of ``n`` items, drawn in chunks of bounded memory.

    Each resample reaches ``stat`` as a row of counts (how often each item was drawn), so statistics that are not
    means of per-item scores (an accuracy minus a chance made of answer shares, a binned calibration error) are
    one matrix product per chunk instead of a Python loop over resamples."""
    chunk = max(1, CHUNK_ELEMENTS // n)
    values = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        flat = (np.arange(rows)[:, None] * n + rng.integers(0, n, size=(rows, n))).ravel()
        counts = np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)
        values[start : start + rows] = stat(counts)
    return values


def accuracy_ci(correct: Sequence[float], *, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Confidence interval of an accuracy (one 0/1 score per question).

    The percentile bootstrap, except when every answer was right or every answer was wrong: resampling a
    constant gives a zero-width interval ([0, 0] for 0 of 8), which claims a certainty 8 questions cannot give.
    There the Wilson interval is used, which for 0 of 8 allows up to about 32%.
    """
    data = np.asarray(correct, dtype=np.float64)
    if data.size and np.all(data == data[0]) and data[0] in (0.0, 1.0):
        return wilson_ci(int(data[0]) * int(data.size), int(data.size), confidence=confidence)
    return bootstrap_ci(correct, confidence=confidence, seed=seed)


def distribution(chosen: Sequence[str | None], labels: Sequence[str]) -> dict[str, float]:
    """Share of each label among the chosen answers, plus ``"unparseable"`` for ``None``.

    Shown next to the gold distribution, it exposes position bias (a model that always answers "A") and how
    often replies could not be read. Keys follow ``labels`` then ``"unparseable"``; no answers give all zeros.
    """
    if UNPARSEABLE in labels:
        raise ValueError(f"{UNPARSEABLE!r} is reserved for replies that could not be read; rename that label")
    counts = dict.fromkeys([*labels, UNPARSEABLE], 0)
    for answer in chosen:
        key = UNPARSEABLE if answer is None else answer
        if key not in counts or answer == UNPARSEABLE:
            raise ValueError(f"chosen answer {answer!r} is not one of the labels {list(labels)!r}")
        counts[key] += 1
    total = len(chosen)
    return {key: (count / total if total else 0.0) for key, count in counts.items()}


def weighted_mean(parts: Sequence[tuple[float, int]]) -> float:
    """Size-weighted mean of ``(score, n)`` pairs, as lm-eval's ``weight_by_size`` aggregates a group.

    This equals the mean over all the members' questions pooled together. Parts with ``n == 0`` are skipped, so
    an empty member's NaN score cannot poison the group; no questions at all give NaN.
    """
    total = 0
    weighted = 0.0
    for score, n in parts:
        if n < 0:
            raise ValueError(f"a part's size must be >= 0, got {n}")
        if n:
            total += n
            weighted += score * n
    return weighted / total if total else math.nan


def wilson_ci(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion: unlike the bootstrap it does not collapse to a point at 0/n or n/n,
    so 0 harmful completions out of 10 still allows a rate of about 28% (the bootstrap would say [0, 0])."""
    if n <= 0:
        return math.nan, math.nan
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be within 0..{n}, got {successes}")
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    if successes == 0:  # exact ends: floating-point rounding would otherwise leave 1e-17 above 0
        return 0.0, _wilson_upper(0, n, z)
    if successes == n:
        return 1.0 - _wilson_upper(0, n, z), 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _wilson_upper(successes: int, n: int, z: float) -> float:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return min(1.0, centre + half)
