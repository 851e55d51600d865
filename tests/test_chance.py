"""Specification: accuracy against the chance a model's own answer shares give it (aloekit.evaluation.chance), and
the report's warnings when a gain is only the favoured answer meeting the gold imbalance."""

from __future__ import annotations

import random
from typing import Any

import pytest

from aloekit.evaluation.chance import (
    beyond_chance,
    paired_beyond_chance_diff,
    shares_chance,
    stratified_paired_beyond_chance_diff,
)
from aloekit.evaluation.compare import answer_distributions, compare_samples
from aloekit.report import findings

# A test set whose gold answer is "D" on 40% of the questions, as MedExQA and MMLU professional medicine lean.
GOLD = ["D"] * 40 + ["A"] * 20 + ["B"] * 20 + ["C"] * 20


def test_shares_chance_is_the_sum_of_predicted_share_times_gold_share() -> None:
    assert shares_chance({"A": 0.5, "D": 0.5}, {"A": 0.2, "D": 0.4, "B": 0.4}) == pytest.approx(0.3)
    assert shares_chance({"E": 1.0}, {"A": 1.0}) == 0.0


def test_a_model_answering_one_letter_gets_that_letters_gold_share_and_nothing_beyond_it() -> None:
    found = beyond_chance(["D"] * len(GOLD), GOLD)
    assert found.accuracy == pytest.approx(0.40)  # well above 1 / 4 ...
    assert found.chance == pytest.approx(0.40)  # ... and all of it is the shares' chance
    assert (found.beyond, found.low, found.high) == (pytest.approx(0.0), pytest.approx(0.0), pytest.approx(0.0))


def test_a_model_that_knows_every_answer_is_far_beyond_its_shares_chance() -> None:
    found = beyond_chance(GOLD, GOLD)
    assert found.accuracy == 1.0
    assert found.chance == pytest.approx(0.4**2 + 3 * 0.2**2)
    assert found.low > 0.6


def test_answers_unrelated_to_the_questions_have_a_ci_that_includes_zero() -> None:
    rng = random.Random(0)
    gold = [rng.choice("AABCDD") for _ in range(600)]
    predicted = [rng.choice("ABCDDD") for _ in range(600)]
    found = beyond_chance(predicted, gold)
    assert found.low < 0 < found.high
    assert found.accuracy > 0.25  # above 1 / 4 by the favoured "D" alone


def test_an_unparseable_reply_is_an_answer_that_is_never_right() -> None:
    found = beyond_chance([None, "A", None, "B"], ["A", "A", "B", "B"])
    assert found.accuracy == 0.5
    assert found.chance == pytest.approx(0.25 * 0.5 + 0.25 * 0.5)


def test_predictions_and_gold_must_align_and_no_questions_give_nans() -> None:
    with pytest.raises(ValueError, match="must align: 2 and 3"):
        beyond_chance(["A", "B"], ["A", "B", "C"])
    assert all(v != v for v in beyond_chance([], []))


def test_switching_the_favoured_letter_to_the_gold_heavy_one_gains_accuracy_and_nothing_beyond_chance() -> None:
    before, after = ["A"] * len(GOLD), ["D"] * len(GOLD)
    delta, low, high = paired_beyond_chance_diff(after, before, GOLD)
    assert (delta, low, high) == (pytest.approx(0.0), pytest.approx(0.0), pytest.approx(0.0))
    change = compare_samples(_samples(before), _samples(after))["benchmarks"]["medexqa"]
    assert change["delta"] == pytest.approx(0.20)  # 20% "A" -> 40% "D": +20 points ...
    assert change["delta_ci95"][0] > 0  # ... measurable ...
    assert change["beyond_chance_delta_ci95"] == [pytest.approx(0.0), pytest.approx(0.0)]  # ... and all letter


def test_the_mean_over_benchmarks_weighs_each_benchmark_the_same() -> None:
    letter_switch = (["D"] * len(GOLD), ["A"] * len(GOLD), GOLD)
    learned = (GOLD[::5], ["A"] * 20, GOLD[::5])
    delta, low, high = stratified_paired_beyond_chance_diff([letter_switch, learned])
    learned_alone = paired_beyond_chance_diff(*learned)[0]
    assert delta == pytest.approx(learned_alone / 2)  # 0 for the letter switch, averaged with the learned one
    assert low < delta < high
    assert all(v != v for v in stratified_paired_beyond_chance_diff([([], [], [])]))


def test_learning_the_answers_is_a_change_beyond_chance() -> None:
    before = ["A"] * len(GOLD)
    delta, low, _ = paired_beyond_chance_diff(GOLD, before, GOLD)
    assert delta > 0.6 and low > 0.5


def _samples(predicted: list[str]) -> list[dict[str, Any]]:
    letters = "ABCD"
    return [
        {
            "benchmark": "medexqa",
            "id": f"q{i}",
            "choices": list(letters),
            "gold": letters.index(g),
            "pred": letters.index(p),
            "correct": p == g,
        }
        for i, (p, g) in enumerate(zip(predicted, GOLD, strict=True))
    ]


def _summary(models: dict[str, list[str]]) -> dict[str, Any]:
    """A run summary with log-likelihood answer distributions and the first-to-last comparison."""
    distributions = {m: answer_distributions({"benchmarks": {}}, _samples(p)) for m, p in models.items()}
    names = list(models)
    comparison = compare_samples(_samples(models[names[0]]), _samples(models[names[-1]]))
    entry = {"before": names[0], "after": names[-1], "kind": "overall"} | comparison
    return {"answer_distributions": {"loglik": distributions}, "comparisons": {"loglik": [entry]}}


def test_every_answer_distribution_carries_its_accuracy_against_the_shares_chance() -> None:
    chance = answer_distributions({"benchmarks": {}}, _samples(["D"] * len(GOLD)))["medexqa"]["chance"]
    assert chance["accuracy"] == pytest.approx(0.4)
    assert chance["shares_chance"] == pytest.approx(0.4)
    assert chance["beyond_ci95"] == [pytest.approx(0.0), pytest.approx(0.0)]


def test_the_report_warns_when_a_gain_is_the_favoured_letter_meeting_the_gold_imbalance() -> None:
    # 40 of 100 is measurably above 1 / 4 (Wilson 95% CI [31%, 50%]), and it is all the "D" share
    summary = _summary({"base": ["A"] * len(GOLD), "final": ["D"] * len(GOLD)})
    texts = [f.text for f in findings.findings(summary) if f.level == "warning"]
    assert any("base → final" in t and "change in answer shares" in t and "medexqa +20.0 points" in t for t in texts)
    assert any(t.startswith("final on medexqa: accuracy 40.0%") and "shares' chance 40.0%" in t for t in texts)
    assert not any(f.level == "supported" and f.topic == "accuracy" for f in findings.findings(summary))


def test_no_such_warning_when_the_final_model_answers_the_questions() -> None:
    summary = _summary({"base": ["A"] * len(GOLD), "final": GOLD})
    texts = [f.text for f in findings.findings(summary)]
    assert not any("answer shares" in t for t in texts)
