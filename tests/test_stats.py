"""Specification of the evaluation statistics: bootstrap CIs, means, answer distributions, group weighting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aloekit.evaluation import stats
from aloekit.evaluation.stats import bootstrap_ci, distribution, mean, weighted_mean


def bernoulli(p: float, n: int, seed: int) -> list[float]:
    return (np.random.default_rng(seed).random(n) < p).astype(float).tolist()


# --- bootstrap_ci ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_the_interval_contains_the_sample_mean(seed: int) -> None:
    values = bernoulli(0.7, 150, seed)
    low, high = bootstrap_ci(values, seed=seed)
    assert low < mean(values) < high


def test_the_interval_is_a_sensible_width_for_a_known_case() -> None:
    # 60% of 200 questions: the normal-approximation 95% half-width is 1.96 * sqrt(.6 * .4 / 200) ≈ 0.068.
    values = [1.0] * 120 + [0.0] * 80
    low, high = bootstrap_ci(values, seed=1)
    assert 0.11 < high - low < 0.16
    assert low == pytest.approx(0.6 - 0.068, abs=0.015)
    assert high == pytest.approx(0.6 + 0.068, abs=0.015)


def test_the_interval_narrows_as_the_number_of_questions_grows() -> None:
    widths = []
    for n in (50, 200, 800, 3200):
        low, high = bootstrap_ci(bernoulli(0.5, n, seed=n), seed=0)
        widths.append(high - low)
    assert widths == sorted(widths, reverse=True)
    # Width shrinks like 1/sqrt(n): 64x the questions, about 1/8 the width.
    assert widths[-1] / widths[0] == pytest.approx(1 / 8, rel=0.3)


def test_a_higher_confidence_gives_a_wider_interval() -> None:
    values = bernoulli(0.5, 300, seed=3)
    low90, high90 = bootstrap_ci(values, confidence=0.90)
    low99, high99 = bootstrap_ci(values, confidence=0.99)
    assert low99 < low90 and high90 < high99


def test_the_95_percent_interval_covers_the_true_accuracy_about_95_percent_of_the_time() -> None:
    covered = 0
    runs = 200
    for seed in range(runs):
        low, high = bootstrap_ci(bernoulli(0.6, 200, seed=10_000 + seed), resamples=1000, seed=seed)
        covered += low <= 0.6 <= high
    assert 0.90 * runs <= covered <= 0.99 * runs


def test_the_same_seed_gives_the_same_interval_and_a_different_seed_a_different_one() -> None:
    values = np.random.default_rng(7).random(120).tolist()
    assert bootstrap_ci(values, seed=42) == bootstrap_ci(values, seed=42)
    assert bootstrap_ci(values, seed=42) != bootstrap_ci(values, seed=43)


def test_chunked_resampling_gives_an_interval_as_good_as_one_big_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    values = bernoulli(0.6, 400, seed=5)
    whole = bootstrap_ci(values, resamples=4000, seed=0)
    # Force a chunk of 3 resamples: many draws, bounded memory, the same statistics.
    monkeypatch.setattr(stats, "CHUNK_ELEMENTS", 3 * len(values))
    chunked = bootstrap_ci(values, resamples=4000, seed=0)
    assert chunked == bootstrap_ci(values, resamples=4000, seed=0)
    assert chunked == pytest.approx(whole, abs=0.01)


def test_no_values_give_a_nan_interval() -> None:
    low, high = bootstrap_ci([])
    assert math.isnan(low) and math.isnan(high)


@pytest.mark.parametrize("value", [0.0, 1.0, 0.1, 0.37])
def test_a_constant_input_gives_a_zero_width_interval_at_exactly_that_value(value: float) -> None:
    assert bootstrap_ci([value] * 7) == (value, value)


def test_one_value_gives_that_value_for_both_bounds() -> None:
    assert bootstrap_ci([0.25]) == (0.25, 0.25)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5])
def test_a_confidence_outside_the_open_unit_interval_is_refused(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci([0.0, 1.0], confidence=confidence)


@pytest.mark.parametrize("resamples", [0, -1])
def test_fewer_than_one_resample_is_refused(resamples: int) -> None:
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci([0.0, 1.0], resamples=resamples)


def test_a_nan_score_is_refused_rather_than_silently_spreading() -> None:
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci([1.0, math.nan, 0.0])


@settings(max_examples=60)  # no deadline: the suite profile (conftest.py)
@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=60), st.integers(0, 2**32 - 1))
def test_the_interval_is_ordered_and_lies_within_the_data_range(values: list[float], seed: int) -> None:
    low, high = bootstrap_ci(values, resamples=200, seed=seed)
    assert min(values) - 1e-12 <= low <= high <= max(values) + 1e-12


# --- mean ----------------------------------------------------------------------------------------------------------


def test_mean_of_scores_is_their_average() -> None:
    assert mean([1.0, 0.0, 1.0, 1.0]) == 0.75


def test_mean_of_no_scores_is_nan_not_zero() -> None:
    assert math.isnan(mean([]))


# --- distribution --------------------------------------------------------------------------------------------------


def test_distribution_gives_each_labels_share_with_unparseable_last_in_label_order() -> None:
    shares = distribution(["B", "A", None, "B"], ["A", "B", "C", "D"])
    assert list(shares) == ["A", "B", "C", "D", "unparseable"]
    assert shares == {"A": 0.25, "B": 0.5, "C": 0.0, "D": 0.0, "unparseable": 0.25}


def test_distribution_works_for_word_labels() -> None:
    shares = distribution(["yes", "yes", "maybe"], ("yes", "no", "maybe"))
    assert shares == pytest.approx({"yes": 2 / 3, "no": 0.0, "maybe": 1 / 3, "unparseable": 0.0})


def test_distribution_of_no_answers_is_all_zeros() -> None:
    assert distribution([], ["A", "B"]) == {"A": 0.0, "B": 0.0, "unparseable": 0.0}


def test_an_answer_outside_the_labels_is_a_bug_and_is_refused() -> None:
    with pytest.raises(ValueError, match="'E'"):
        distribution(["A", "E"], ["A", "B", "C", "D"])


def test_a_label_named_unparseable_is_refused_because_it_would_collide() -> None:
    with pytest.raises(ValueError, match="reserved"):
        distribution(["unparseable"], ["unparseable", "other"])


@given(st.lists(st.sampled_from(["A", "B", "C", None]), min_size=1, max_size=80))
def test_distribution_shares_sum_to_one(chosen: list[str | None]) -> None:
    shares = distribution(chosen, ["A", "B", "C"])
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["unparseable"] == pytest.approx(chosen.count(None) / len(chosen))


# --- weighted_mean -------------------------------------------------------------------------------------------------


def test_weighted_mean_weights_each_benchmark_by_its_number_of_questions() -> None:
    assert weighted_mean([(1.0, 300), (0.0, 100)]) == 0.75


def test_weighted_mean_with_no_questions_is_nan() -> None:
    assert math.isnan(weighted_mean([]))
    assert math.isnan(weighted_mean([(0.5, 0), (0.7, 0)]))


def test_an_empty_member_with_a_nan_score_does_not_poison_the_group() -> None:
    assert weighted_mean([(math.nan, 0), (0.5, 10)]) == 0.5


def test_a_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        weighted_mean([(0.5, -1)])


def test_the_group_accuracy_is_the_mean_over_pooled_questions_so_its_ci_is_a_bootstrap_over_them() -> None:
    members = [bernoulli(0.4, 120, seed=1), bernoulli(0.7, 500, seed=2), bernoulli(0.55, 37, seed=3)]
    pooled = [v for member in members for v in member]
    assert mean(pooled) == pytest.approx(weighted_mean([(mean(m), len(m)) for m in members]), abs=1e-12)
    low, high = bootstrap_ci(pooled)
    assert low < weighted_mean([(mean(m), len(m)) for m in members]) < high


def test_wilson_interval_does_not_collapse_at_zero_and_matches_the_textbook_values():
    from aloekit.evaluation.stats import wilson_ci

    lo, hi = wilson_ci(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson_ci(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_ci(10, 10)[1] == 1.0 and wilson_ci(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)


# --- accuracy_ci --------------------------------------------------------------------------------------------------


def test_an_accuracy_of_none_right_out_of_8_is_not_reported_as_certainly_zero() -> None:
    """The bootstrap would say [0, 0]; the Wilson interval allows up to about 32% on 8 questions."""
    from aloekit.evaluation.stats import accuracy_ci

    lo, hi = accuracy_ci([0.0] * 8)
    assert lo == 0.0 and hi == pytest.approx(0.3244, abs=1e-4)


def test_an_accuracy_of_all_right_gets_the_mirror_interval() -> None:
    from aloekit.evaluation.stats import accuracy_ci

    lo, hi = accuracy_ci([1.0] * 8)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.3244, abs=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_a_mixed_accuracy_keeps_the_seeded_bootstrap_interval(seed: int) -> None:
    from aloekit.evaluation.stats import accuracy_ci

    values = bernoulli(0.3, 40, seed)
    assert accuracy_ci(values, seed=seed) == bootstrap_ci(values, seed=seed)


def test_no_answers_give_a_nan_accuracy_interval() -> None:
    from aloekit.evaluation.stats import accuracy_ci

    assert all(math.isnan(bound) for bound in accuracy_ci([]))
