"""Specification of calibration (ECE with a bootstrap interval, reliability bins), per-subject accuracy, and how
``aloe eval`` records both."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from aloekit.config import MCQAConfig
from aloekit.data.sources.mcqa import medqa_row
from aloekit.evaluation.breakdown import by_subject
from aloekit.evaluation.calibration import (
    calibration_record,
    ece_ci,
    expected_calibration_error,
    reliability_bins,
    top1_confidence,
)
from aloekit.evaluation.mcqa import evaluate
from support import aloe
from test_mcqa import MODEL, ScriptedEngine, needs_shared

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def two_options(p: float) -> list[float]:
    """Log-likelihoods of two options whose softmax is (p, 1 - p)."""
    return [math.log(p), math.log(1 - p)]


# The hand-computed case: six answers, three occupied bins.
#   (0.9, 1.0]: 0.95 right, 0.95 wrong       -> mean conf 0.95, acc 1/2, gap 0.45,  weight 2/6
#   (0.6, 0.7]: 0.65 right, 0.62, 0.68 wrong -> mean conf 0.65, acc 1/3, gap 0.95/3, weight 3/6
#   (0.5, 0.6]: 0.55 right                   -> mean conf 0.55, acc 1,   gap 0.45,  weight 1/6
#   ECE = (2 * 0.45 + 3 * 0.95 / 3 + 1 * 0.45) / 6 = 2.3 / 6
HAND_LLS = [two_options(0.95), two_options(0.05), two_options(0.65), two_options(0.62), two_options(0.32)]
HAND_LLS.append([math.log(0.55), math.log(0.15), math.log(0.2), math.log(0.1)])  # four options, top-1 0.55
HAND_GOLD = [0, 0, 0, 1, 0, 0]  # right, wrong (picked B at .95), right, wrong, wrong (picked A at .68), right


def hand_case() -> tuple[list[float], list[bool]]:
    confidences, correct = [], []
    for lls, gold in zip(HAND_LLS, HAND_GOLD, strict=True):
        pred, confidence = top1_confidence(lls)
        confidences.append(confidence)
        correct.append(pred == gold)
    return confidences, correct


def test_ece_matches_the_hand_computed_case():
    confidences, correct = hand_case()
    assert confidences == pytest.approx([0.95, 0.95, 0.65, 0.62, 0.68, 0.55])
    assert correct == [True, False, True, False, False, True]
    assert expected_calibration_error(confidences, correct) == pytest.approx(2.3 / 6)


def test_reliability_bins_hold_each_bins_mean_confidence_and_accuracy():
    bins = reliability_bins(*hand_case())
    assert [b.n for b in bins] == [0, 0, 0, 0, 0, 1, 3, 0, 0, 2]
    assert (bins[6].low, bins[6].high) == pytest.approx((0.6, 0.7))
    assert bins[6].confidence == pytest.approx(0.65) and bins[6].accuracy == pytest.approx(1 / 3)
    assert bins[9].confidence == pytest.approx(0.95) and bins[9].accuracy == 0.5
    assert math.isnan(bins[0].confidence) and math.isnan(bins[0].accuracy)


def test_bins_are_closed_on_the_right_and_zero_joins_the_first():
    bins = reliability_bins([0.0, 0.5, 1.0], [1, 1, 1])
    assert bins[0].n == 1 and bins[4].n == 1 and bins[9].n == 1  # 0.5 is in (0.4, 0.5], 1.0 in (0.9, 1.0]


def test_a_calibrated_model_has_no_error_and_a_sure_wrong_one_the_largest():
    # Within each bin accuracy equals confidence: 0.75 right 3 times in 4, 0.5 right once in 2.
    assert expected_calibration_error([0.75] * 4 + [0.5, 0.5], [1, 1, 1, 0, 1, 0]) == pytest.approx(0.0)
    assert expected_calibration_error([1.0] * 5, [0] * 5) == 1.0


def test_softmax_is_stable_for_very_negative_log_likelihoods():
    pred, confidence = top1_confidence([-3000.0, -3000.0 + math.log(3)])
    assert pred == 1 and confidence == pytest.approx(0.75)


def test_the_bootstrap_interval_is_seeded_and_brackets_the_ece_of_a_noisy_sample():
    rng = np.random.default_rng(3)
    confidences = rng.uniform(0.3, 1.0, size=400)
    correct = rng.uniform(size=400) < confidences - 0.15  # overconfident by about 0.15
    ece = expected_calibration_error(confidences, correct)
    low, high = ece_ci(confidences, correct, seed=1)
    assert low < ece < high and 0.05 < ece < 0.3
    assert (low, high) == ece_ci(confidences, correct, seed=1)
    assert (low, high) != ece_ci(confidences, correct, seed=2)


def test_the_record_is_strict_json_and_empty_input_is_nan():
    record = calibration_record(*hand_case())
    text = json.dumps(record, allow_nan=False)  # empty bins are null, not NaN
    assert json.loads(text)["reliability"][0] == {"low": 0.0, "high": 0.1, "n": 0, "confidence": None, "accuracy": None}
    assert math.isnan(expected_calibration_error([], []))
    assert all(math.isnan(x) for x in ece_ci([], []))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="one confidence per answer"):
        expected_calibration_error([0.5], [1, 0])
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error([1.5], [1])
    with pytest.raises(ValueError, match="0/1"):
        expected_calibration_error([0.5], [0.5])
    with pytest.raises(ValueError, match="at least 2"):
        top1_confidence([-1.0])


# --- per subject ------------------------------------------------------------------------------------------------


def test_accuracy_by_subject_with_intervals_and_questions_without_one_apart():
    result = by_subject(["Anatomy", "Anatomy", "Dental", None, "Dental", "Dental"], [1, 0, 1, 1, 1, 1])
    assert list(result) == ["(none)", "Anatomy", "Dental"]
    assert result["Anatomy"]["n"] == 2 and result["Anatomy"]["acc"] == 0.5
    assert result["Dental"]["acc"] == 1.0 and result["Dental"]["acc_ci95"][0] < 1.0  # Wilson at 3/3, not [1, 1]
    assert by_subject(["step1", "step1", None], [1, 0, 1]) == {}  # one subject: the benchmark's own accuracy


def test_medqa_rows_carry_their_step_and_medexqa_rows_their_specialty():
    options = {"A": "x", "B": "y"}
    medqa = medqa_row({"question": "q", "options": options, "answer_idx": "A", "meta_info": "step2&3"}, "f:1")
    medexqa_line = {"realidx": "12_speech_pathologist", "question": "q", "options": options, "answer_idx": "B"}
    medexqa = medqa_row(medexqa_line, "f:2")
    assert medqa.subject == "step2&3" and medexqa.subject == "speech_pathologist"


@needs_shared
def test_the_local_medexqa_and_medmcqa_files_name_a_subject_for_every_question():
    from aloekit.evaluation import benchmarks

    medexqa = benchmarks.load(benchmarks.get("medexqa"), SHARED)
    assert {q.subject for q in medexqa} == {
        "biomedical_engineer",
        "clinical_laboratory_scientist",
        "clinical_psychologist",
        "occupational_therapist",
        "speech_pathologist",
    }
    assert all(q.subject for q in benchmarks.load(benchmarks.get("medmcqa"), SHARED))


# --- in aloe eval's results -------------------------------------------------------------------------------------


def test_eval_records_subjects_and_calibration_per_benchmark_and_overall(tmp_path):
    root = tmp_path / "data"
    (root / "medqa").mkdir(parents=True)
    rows = [
        {
            "question": f"Question {i}?",
            "options": {"A": "a", "B": "b", "C": "c", "D": "d"},
            "answer_idx": "AB"[i % 2],
            "meta_info": "step1" if i < 6 else "step2&3",
        }
        for i in range(10)
    ]
    (root / "medqa/test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # " A" always wins with softmax probability e^0 / (e^0 + 3 e^-2) = 0.711: right on the 5 "A" questions.
    engine = ScriptedEngine({" A": 0.0, " B": -2.0, " C": -2.0, " D": -2.0})
    config = MCQAConfig(benchmarks=("medqa_4options",), data_dir=root)
    results = evaluate(engine, config, tmp_path / "out", model=MODEL, progress=False)
    r = results["benchmarks"]["medqa_4options"]
    assert r["subjects"]["step1"]["n"] == 6 and r["subjects"]["step1"]["acc"] == 0.5
    assert r["subjects"]["step2&3"]["acc"] == 0.5
    top = 1 / (1 + 3 * math.exp(-2))
    assert r["calibration"]["ece"] == pytest.approx(top - 0.5)
    assert r["calibration"]["reliability"][7]["n"] == 10  # 0.711 is in (0.7, 0.8]
    assert results["calibration"]["ece"] == pytest.approx(top - 0.5)
    sample = json.loads((tmp_path / "out/samples.jsonl").read_text().splitlines()[0])
    assert sample["subject"] == "step1" and sample["confidence"] == pytest.approx(top)


def test_the_printed_tables_show_subjects_and_the_ece(tmp_path):
    from rich.console import Console

    from aloekit.evaluation.breakdown import calibration_table, subject_table

    calibration = calibration_record(*hand_case())
    results = {
        "benchmarks": {"medmcqa": {"subjects": by_subject(["Anatomy", "Dental"], [1, 0]), "calibration": calibration}},
        "groups": {},
        "calibration": calibration,
    }
    console = Console(record=True, width=120)
    console.print(subject_table(results))
    console.print(calibration_table(results))
    text = console.export_text()
    assert "Anatomy" in text and "Dental" in text
    assert f"{2.3 / 6:.3f}" in text and "all questions" in text
    assert subject_table({"benchmarks": {"pubmedqa": {}}, "groups": {}}) is None


def test_the_reliability_diagram_draws_each_models_bins(tmp_path):
    from aloekit.report.charts import reliability_diagram
    from test_report_charts import png_size

    rng = np.random.default_rng(0)
    confidences = rng.uniform(0.25, 1.0, size=200)
    over = calibration_record(confidences, rng.uniform(size=200) < confidences - 0.2)
    calibrated = calibration_record(confidences, rng.uniform(size=200) < confidences)
    png = reliability_diagram({"base": over, "final": calibrated})
    width, height = png_size(png)
    assert width > 500 and height > 500
    if keep := os.environ.get("ALOE_SCREENSHOT_DIR"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / "reliability-diagram.png").write_bytes(png)
    with pytest.raises(ValueError, match="no calibration record"):
        reliability_diagram({"empty": calibration_record([], [])})


@needs_shared
def test_aloe_eval_prints_and_records_medexqa_specialties_and_calibration(tiny_llama, tmp_path):
    out = tmp_path / "o"
    result = aloe(
        "eval", "--model", str(tiny_llama), "--benchmarks", "medexqa", "--data-dir", str(SHARED), "--subset", "40",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "accuracy by subject" in result.stdout and "calibration of the answers" in result.stdout
    r = json.loads((out / "results.json").read_text())["benchmarks"]["medexqa"]
    assert sum(s["n"] for s in r["subjects"].values()) == 40 and len(r["subjects"]) >= 3
    assert 0.0 <= r["calibration"]["ece"] <= 1.0 and r["calibration"]["n"] == 40
