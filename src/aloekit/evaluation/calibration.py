"""Calibration of log-likelihood answers: does a model that is 80% sure get 80% of those questions right?

A multiple-choice model scored by log-likelihood gives, for every question, a probability over its options: the
softmax over the options' log-likelihoods (the same scores whose argmax is ``acc``'s prediction). Its *top-1
confidence* is the largest of those probabilities. The expected calibration error (ECE, Guo et al. 2017) bins the
questions by that confidence into equal-width bins ``(0, 0.1], (0.1, 0.2], ..., (0.9, 1.0]`` and averages, weighted
by the bins' sizes, the gap between each bin's mean confidence and its accuracy:

    ECE = sum over bins b of  |b| / n * | mean confidence in b - accuracy in b |

0 is perfect calibration; a model that is always sure and always wrong has an ECE of 1. The ECE of a few hundred
questions is noisy (and biased upwards), so it comes with a percentile-bootstrap interval over questions, seeded
like every interval of :mod:`aloekit.evaluation.stats`. Pure functions of their arguments.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from aloekit.evaluation.stats import check_bootstrap_settings, percentile_interval, resampled_by_counts

__all__ = [
    "Bin",
    "calibration_record",
    "ece_ci",
    "expected_calibration_error",
    "reliability_bins",
    "top1_confidence",
]

BINS = 10


@dataclass(frozen=True)
class Bin:
    """One confidence bin of a reliability diagram: ``(low, high]`` (the first bin also holds 0)."""

    low: float
    high: float
    n: int
    confidence: float
    """Mean top-1 confidence of the bin's questions (NaN when empty)."""
    accuracy: float
    """Share of the bin's questions answered right (NaN when empty)."""


def top1_confidence(loglikelihoods: Sequence[float] | np.ndarray) -> tuple[int, float]:
    """(argmax option, its softmax probability) from one question's option log-likelihoods.

    The softmax is taken after subtracting the maximum, so log-likelihoods of -3000 do not underflow to 0/0.
    """
    lls = np.asarray(loglikelihoods, dtype=np.float64)
    if lls.ndim != 1 or lls.size < 2:
        raise ValueError(f"need one log-likelihood per option (at least 2), got shape {lls.shape}")
    if not np.all(np.isfinite(lls)):
        raise ValueError("log-likelihoods must be finite: a NaN or infinite score means a scoring bug upstream")
    shifted = np.exp(lls - lls.max())
    best = int(np.argmax(lls))
    return best, float(shifted[best] / shifted.sum())


def _bin_index(confidences: np.ndarray, bins: int) -> np.ndarray:
    # (k/bins, (k+1)/bins] -> k: ceil, then 0 (a confidence of exactly 0) joins the first bin.
    return np.clip(np.ceil(confidences * bins).astype(np.int64) - 1, 0, bins - 1)


def _checked(confidences: Sequence[float], correct: Sequence[float], bins: int) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidences, dtype=np.float64)
    right = np.asarray(correct, dtype=np.float64)
    if conf.ndim != 1 or conf.shape != right.shape:
        raise ValueError(f"one confidence per answer: {conf.shape} confidences, {right.shape} answers")
    if conf.size and (not np.all(np.isfinite(conf)) or conf.min() < 0.0 or conf.max() > 1.0):
        raise ValueError("confidences must be probabilities in [0, 1]")
    if not np.all((right == 0.0) | (right == 1.0)):
        raise ValueError("correct must hold 0/1 (or False/True) per answer")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    return conf, right


def reliability_bins(confidences: Sequence[float], correct: Sequence[float], *, bins: int = BINS) -> list[Bin]:
    """The equal-width bins of a reliability diagram, empty ones included (n = 0, NaN means)."""
    conf, right = _checked(confidences, correct, bins)
    index = _bin_index(conf, bins)
    out = []
    for k in range(bins):
        inside = index == k
        n = int(inside.sum())
        out.append(
            Bin(
                low=k / bins,
                high=(k + 1) / bins,
                n=n,
                confidence=float(conf[inside].mean()) if n else math.nan,
                accuracy=float(right[inside].mean()) if n else math.nan,
            )
        )
    return out


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[float], *, bins: int = BINS) -> float:
    """ECE over ``bins`` equal-width confidence bins; NaN for no answers."""
    conf, right = _checked(confidences, correct, bins)
    if not conf.size:
        return math.nan
    return float(_ece_of_counts(np.ones((1, conf.size)), conf, right, bins)[0])


def _ece_of_counts(counts: np.ndarray, conf: np.ndarray, right: np.ndarray, bins: int) -> np.ndarray:
    """ECE of each row of ``counts`` (how many times each question is drawn into that resample).

    Per bin, |sum of (confidence - correct)| / n: the bin's weight |b|/n times its gap |mean conf - acc|."""
    one_hot = np.zeros((conf.size, bins))
    one_hot[np.arange(conf.size), _bin_index(conf, bins)] = conf - right
    return np.abs(counts @ one_hot).sum(axis=1) / counts.sum(axis=1)


def ece_ci(
    confidences: Sequence[float],
    correct: Sequence[float],
    *,
    bins: int = BINS,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the ECE: questions resampled with replacement, ECE of each resample.

    Deterministic for a seed; no answers give NaNs. The ECE is biased upwards on small samples (random gaps do not
    cancel within a bin), so the interval may sit above the point estimate of a well-calibrated model."""
    check_bootstrap_settings(confidence, resamples)
    conf, right = _checked(confidences, correct, bins)
    n = conf.size
    if not n:
        return math.nan, math.nan
    # Each resample as how many times each question was drawn: the ECE then is a matrix product.
    values = resampled_by_counts(
        lambda counts: _ece_of_counts(counts, conf, right, bins), n, resamples, np.random.default_rng(seed)
    )
    return percentile_interval(values, confidence)


def calibration_record(
    confidences: Sequence[float], correct: Sequence[float], *, seed: int = 0, bins: int = BINS
) -> dict[str, Any]:
    """What results.json records: n, ECE with its 95% interval, and the reliability bins (empty ones as n = 0)."""
    low, high = ece_ci(confidences, correct, bins=bins, seed=seed)
    return {
        "n": len(confidences),
        "bins": bins,
        "ece": expected_calibration_error(confidences, correct, bins=bins),
        "ece_ci95": [low, high],
        "mean_confidence": float(np.mean(confidences)) if len(confidences) else math.nan,
        "accuracy": float(np.mean(correct)) if len(correct) else math.nan,
        "reliability": [_jsonable(asdict(b)) for b in reliability_bins(confidences, correct, bins=bins)],
    }


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    # An empty bin has no mean: null in JSON (json.dumps would write NaN, which strict readers reject).
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
