"""Accuracy against the chance a model's own answer shares give it.

Chance is usually 1 / the number of options. That is the accuracy of a model answering uniformly at random; a
model that answers "D" to 67% of the questions of a test set whose gold answer is "D" 37% of the time gets
more than that without knowing anything. Its *shares-matched chance* is what a model with the same answer shares
and no relation to the questions would get: the sum over answers of (predicted share x gold share), which is also
the expected accuracy when the gold answers are shuffled among the questions (a permutation test's null mean).

``beyond_chance`` is the accuracy minus that chance, with a bootstrap 95% CI that resamples the questions and
recomputes both terms. A CI that includes 0 is no evidence that the answers depend on the questions at all,
whatever the accuracy; a gain between two models that is matched by the gain in their chance came from the
answer shares meeting the gold imbalance, and would not hold on a test set with another balance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from aloekit.evaluation.stats import check_bootstrap_settings, percentile_interval, resampled_by_counts

__all__ = [
    "BeyondChance",
    "beyond_chance",
    "paired_beyond_chance_diff",
    "shares_chance",
    "stratified_paired_beyond_chance_diff",
]


class BeyondChance(NamedTuple):
    """Accuracy, the chance matched to the answer shares, their difference and its bootstrap interval."""

    accuracy: float
    chance: float
    beyond: float
    low: float
    high: float


def shares_chance(predicted: Mapping[str, float], gold: Mapping[str, float]) -> float:
    """Sum over answers of predicted share x gold share (answers missing from either side count 0)."""
    return float(sum(float(share) * float(gold.get(label, 0.0)) for label, share in predicted.items()))


def beyond_chance(
    predicted: Sequence[Hashable | None],
    gold: Sequence[Hashable],
    *,
    seed: int = 0,
    resamples: int = 2000,
    confidence: float = 0.95,
) -> BeyondChance:
    """Accuracy minus shares-matched chance over aligned per-question answers, with a percentile-bootstrap CI.

    ``predicted`` may hold ``None`` (an unparseable reply): it is an answer of its own that is never right. Each
    resample draws questions with replacement and recomputes the accuracy and both answer distributions, so the
    interval covers the uncertainty of the shares as well as of the accuracy. No questions give NaNs.
    """
    _check(len(predicted), len(gold), confidence, resamples)
    if not gold:
        return BeyondChance(math.nan, math.nan, math.nan, math.nan, math.nan)
    model = _OneHot(predicted, gold)
    whole = np.ones((1, len(gold)))
    accuracy = float(model.accuracy(whole)[0])
    beyond = float(model.beyond(whole)[0])
    low, high = _interval(model.beyond, len(gold), confidence, resamples, seed)
    return BeyondChance(accuracy, accuracy - beyond, beyond, low, high)


def paired_beyond_chance_diff(
    after: Sequence[Hashable | None],
    before: Sequence[Hashable | None],
    gold: Sequence[Hashable],
    *,
    seed: int = 0,
    resamples: int = 2000,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """The change in accuracy-beyond-shares'-chance from ``before`` to ``after`` (both models' answers to the same
    questions, aligned with ``gold``) and its paired bootstrap interval ``(delta, low, high)``: the part of an
    accuracy change that the change in answer shares does not explain. The one-benchmark case of
    :func:`stratified_paired_beyond_chance_diff` (the same draws for a seed)."""
    return stratified_paired_beyond_chance_diff(
        [(after, before, gold)], seed=seed, resamples=resamples, confidence=confidence
    )


def stratified_paired_beyond_chance_diff(
    strata: Sequence[tuple[Sequence[Hashable | None], Sequence[Hashable | None], Sequence[Hashable]]],
    *,
    seed: int = 0,
    resamples: int = 2000,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """:func:`paired_beyond_chance_diff` for the mean over benchmarks: one ``(after, before, gold)`` per benchmark,
    each resampled within itself and weighing the same in the mean (as the mean of per-benchmark accuracies).
    Empty benchmarks are left out; none at all give NaNs."""
    changes = []
    for after, before, gold in strata:
        _check(len(after), len(gold), confidence, resamples)
        _check(len(before), len(gold), confidence, resamples)
        if gold:
            new, old = _OneHot(after, gold), _OneHot(before, gold)
            changes.append((len(gold), lambda w, new=new, old=old: new.beyond(w) - old.beyond(w)))
    if not changes:
        return math.nan, math.nan, math.nan
    delta = float(np.mean([change(np.ones((1, n)))[0] for n, change in changes]))
    rng = np.random.default_rng(seed)
    total = sum(resampled_by_counts(change, n, resamples, rng) for n, change in changes)
    low, high = percentile_interval(np.asarray(total) / len(changes), confidence)
    return delta, low, high


def _check(predicted: int, gold: int, confidence: float, resamples: int) -> None:
    if predicted != gold:
        raise ValueError(f"predictions and gold answers must align: {predicted} and {gold}")
    check_bootstrap_settings(confidence, resamples)


class _OneHot:
    """One model's answers and the gold ones as one-hot rows, scored under any question weights."""

    def __init__(self, predicted: Sequence[Hashable | None], gold: Sequence[Hashable]) -> None:
        labels = list(dict.fromkeys([*gold, *(p for p in predicted if p is not None)]))
        index = {label: i for i, label in enumerate(labels)}
        none = len(labels)  # the unparseable column: never a gold answer
        pred = np.array([none if p is None else index[p] for p in predicted])
        true = np.array([index[g] for g in gold])
        self.correct = (pred == true).astype(np.float64)
        self.pred = np.eye(none + 1)[pred]
        self.gold = np.eye(none + 1)[true]

    def accuracy(self, weights: np.ndarray) -> np.ndarray:
        """Accuracy for each row of question weights (counts summing to the number of questions)."""
        return np.asarray(weights @ self.correct / weights.sum(axis=1))

    def beyond(self, weights: np.ndarray) -> np.ndarray:
        """Accuracy minus shares' chance for each row of question weights."""
        total = weights.sum(axis=1, keepdims=True)
        chance = np.einsum("rk,rk->r", weights @ self.pred / total, weights @ self.gold / total)
        return np.asarray(self.accuracy(weights) - chance)


def _interval(
    stat: Callable[[np.ndarray], np.ndarray], n: int, confidence: float, resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile interval of ``stat`` over bootstrap resamples of ``n`` questions, given as count weights."""
    return percentile_interval(resampled_by_counts(stat, n, resamples, np.random.default_rng(seed)), confidence)
