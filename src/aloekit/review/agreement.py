"""Inter-rater agreement beyond chance: Cohen's kappa for two reviewers, Fleiss' kappa for many. Pure functions.

An *item* is one question with one pair of models; a *rating* is the category a reviewer chose for it, written
independently of how the answers were placed on screen (the winning model's name, ``tie`` or ``both_bad``), so two
reviewers who saw the pair in opposite sides still agree when they prefer the same answer.

kappa = (observed agreement - agreement expected by chance) / (1 - agreement expected by chance): 1 is perfect
agreement, 0 what raters picking at random with the same category frequencies would reach. Undefined (NaN) when
chance agreement is already 1 (every rating the same category).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters' categories for the same items (aligned); NaN for no items."""
    if len(first) != len(second):
        raise ValueError(f"both raters must rate the same items: {len(first)} and {len(second)} ratings")
    n = len(first)
    if not n:
        return math.nan
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    left, right = Counter(first), Counter(second)
    chance = sum(left[c] * right[c] for c in left) / (n * n)
    return math.nan if chance == 1.0 else (observed - chance) / (1.0 - chance)


def fleiss_kappa(items: Sequence[Sequence[Hashable]]) -> float:
    """Fleiss' kappa over items each rated by two or more raters (not necessarily the same raters, nor as many
    per item: each item's agreement is the share of its rater pairs that agree, as in Fleiss 1971 with n_i raters).

    NaN when no item has two ratings."""
    rated = [list(ratings) for ratings in items if len(ratings) >= 2]
    if not rated:
        return math.nan
    per_item = []
    totals: Counter[Hashable] = Counter()
    for ratings in rated:
        counts = Counter(ratings)
        n = len(ratings)
        per_item.append(sum(c * (c - 1) for c in counts.values()) / (n * (n - 1)))
        totals.update(counts)
    observed = sum(per_item) / len(per_item)
    all_ratings = sum(totals.values())
    chance = sum((c / all_ratings) ** 2 for c in totals.values())
    return math.nan if chance == 1.0 else (observed - chance) / (1.0 - chance)


__all__ = ["cohen_kappa", "fleiss_kappa"]
