"""Specification of the review's statistics: Bradley-Terry scores with bootstrap intervals, win rates, and
inter-rater agreement (Cohen's and Fleiss' kappa), against hand-checked cases and a simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aloekit.review.agreement import cohen_kappa, fleiss_kappa
from aloekit.review.bt import Vote, bradley_terry, fit, pairwise_win_rates, win_matrix


def votes(a: str, b: str, outcome: str, times: int) -> list[Vote]:
    return [Vote(a, b, outcome)] * times  # type: ignore[arg-type]


# A chain A - B - C (A and C never met): each edge's likelihood is its own, so the maximum-likelihood scores are
# the log odds of each pair: A over B won 2, lost 1, tied 1 -> 2.5 : 1.5; B over C won 3, lost 1 -> 3 : 1.
CHAIN = [
    *votes("A", "B", "a", 2),
    *votes("A", "B", "b", 1),
    *votes("B", "A", "tie", 1),
    *votes("B", "C", "a", 3),
    *votes("C", "B", "a", 1),
]


def test_ties_count_half_a_win_to_each_side():
    w = win_matrix(CHAIN, ["A", "B", "C"])
    assert w.tolist() == [[0, 2.5, 0], [1.5, 0, 3], [0, 1, 0]]


def test_the_maximum_likelihood_fit_of_a_chain_is_each_pairs_log_odds():
    scores = fit(win_matrix(CHAIN, ["A", "B", "C"]), prior=0)
    assert scores[0] - scores[1] == pytest.approx(math.log(2.5 / 1.5), abs=1e-9)
    assert scores[1] - scores[2] == pytest.approx(math.log(3), abs=1e-9)
    assert scores.sum() == pytest.approx(0, abs=1e-12)  # centred


def test_the_fit_solves_the_likelihood_equations_when_every_pair_met():
    # At the maximum, every model's expected wins equal its observed wins.
    rng = np.random.default_rng(0)
    wins = rng.integers(1, 9, size=(4, 4)).astype(float)
    np.fill_diagonal(wins, 0)
    s = fit(wins, prior=0)
    p = 1 / (1 + np.exp(-(s[:, None] - s[None, :])))
    assert ((wins + wins.T) * p).sum(axis=1) == pytest.approx(wins.sum(axis=1), abs=1e-8)


def test_the_fit_runs_on_a_batch_of_win_matrices_as_on_each():
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 6, size=(3, 4, 4)).astype(float)
    together = fit(batch, prior=1.0)
    assert together == pytest.approx(np.stack([fit(w, prior=1.0) for w in batch]), abs=1e-9)


def test_the_prior_keeps_an_unbeaten_model_finite_and_plain_mle_refuses_it():
    unbeaten = votes("A", "B", "a", 5) + votes("B", "C", "a", 3) + votes("C", "B", "a", 2)
    with pytest.raises(ValueError, match="prior > 0"):
        fit(win_matrix(unbeaten, ["A", "B", "C"]), prior=0)
    scores = fit(win_matrix(unbeaten, ["A", "B", "C"]), prior=1.0)
    assert np.all(np.isfinite(scores)) and scores[0] > scores[1] > scores[2]


def test_results_per_model_best_first_with_counts_win_rates_and_intervals():
    result = bradley_terry(CHAIN + votes("A", "C", "both_bad", 2), ["C", "B", "A"], seed=1, resamples=300)
    assert list(result) == ["A", "B", "C"]
    a = result["A"]
    assert (a["games"], a["wins"], a["losses"], a["ties"], a["both_bad"]) == (6, 2, 1, 1, 2)
    assert a["win_rate"] == pytest.approx((2 + 0.5 + 1) / 6)
    for r in result.values():
        assert r["score_ci95"][0] <= r["score"] <= r["score_ci95"][1]
        assert r["elo"] == pytest.approx(1000 + 400 / math.log(10) * r["score"])
    assert result == bradley_terry(CHAIN + votes("A", "C", "both_bad", 2), ["C", "B", "A"], seed=1, resamples=300)


def test_pairwise_win_rates_and_pairs_that_never_met():
    rates = pairwise_win_rates(CHAIN, ["A", "B", "C"])
    assert rates["A"]["B"] == pytest.approx(2.5 / 4) and rates["B"]["A"] == pytest.approx(1.5 / 4)
    assert rates["A"]["C"] is None


def test_bad_votes_are_refused():
    with pytest.raises(ValueError, match="among"):
        win_matrix([Vote("A", "Z", "a")], ["A", "B"])
    with pytest.raises(ValueError, match="two different models"):
        win_matrix([Vote("A", "A", "a")], ["A", "B"])
    with pytest.raises(ValueError, match="no votes involve C"):
        bradley_terry(votes("A", "B", "a", 3), ["A", "B", "C"])


def simulate(strengths: dict[str, float], n_votes: int, seed: int) -> list[Vote]:
    """Votes between random pairs, each won with the Bradley-Terry probability of the true strengths."""
    rng = np.random.default_rng(seed)
    names = list(strengths)
    out = []
    for _ in range(n_votes):
        i, j = rng.choice(len(names), size=2, replace=False)
        p = 1 / (1 + math.exp(-(strengths[names[i]] - strengths[names[j]])))
        out.append(Vote(names[i], names[j], "a" if rng.uniform() < p else "b"))
    return out


TRUE = {"m1": 1.2, "m2": 0.5, "m3": 0.0, "m4": -0.4, "m5": -1.3}  # centred: sums to 0


def test_known_strengths_are_recovered_within_their_intervals():
    result = bradley_terry(simulate(TRUE, 3000, seed=7), list(TRUE), seed=0)
    assert list(result) == list(TRUE)  # the true order
    for name, truth in TRUE.items():
        low, high = result[name]["score_ci95"]
        assert low < truth < high, (name, truth, result[name])
        assert high - low < 0.35  # 3,000 votes pin a score to about +-0.15


def test_the_intervals_cover_the_truth_about_95_percent_of_the_time():
    covered = total = 0
    for seed in range(20):
        result = bradley_terry(simulate(TRUE, 400, seed=100 + seed), list(TRUE), seed=seed, resamples=400)
        for name, truth in TRUE.items():
            low, high = result[name]["score_ci95"]
            covered += low < truth < high
            total += 1
    assert 0.85 <= covered / total <= 1.0, covered / total


# --- agreement --------------------------------------------------------------------------------------------------


def test_cohen_kappa_of_the_textbook_two_by_two_table():
    # 50 items: both yes 20, yes/no 5, no/yes 10, both no 15 -> observed 0.7, chance 0.5, kappa 0.4.
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    assert cohen_kappa(["a", "b"], ["a", "b"]) == 1.0
    assert math.isnan(cohen_kappa(["tie", "tie"], ["tie", "tie"]))  # chance agreement is already 1


def test_fleiss_kappa_of_fleiss_worked_example():
    # The worked example of Fleiss' kappa (10 items, 14 raters, 5 categories): kappa = 0.210.
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    items = [[c for c, n in enumerate(row) for _ in range(n)] for row in table]
    assert fleiss_kappa(items) == pytest.approx(0.2099, abs=1e-4)


def test_fleiss_kappa_with_two_raters_per_item_and_items_rated_once_left_out():
    assert fleiss_kappa([["A", "A"], ["B", "B"], ["tie", "tie"], ["A"]]) == pytest.approx(1.0)
    assert fleiss_kappa([["A", "B"], ["B", "A"]]) == pytest.approx(-1.0)
    assert math.isnan(fleiss_kappa([["A"], ["B"]]))
