"""Specification of the stage-to-stage comparison: paired bootstrap CIs of accuracy changes (one benchmark, and the
mean of benchmarks stratified by benchmark), the alignment of two evaluations on the questions both answered, the
answer distributions and the flag for a model stuck on one answer, and the relative change of the weights."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from aloekit.errors import UserError
from aloekit.evaluation import weights
from aloekit.evaluation.compare import (
    align,
    answer_distributions,
    compare_folders,
    compare_samples,
    dominant_answer,
)
from aloekit.evaluation.stats import bootstrap_ci, paired_bootstrap_diff, stratified_paired_bootstrap_diff
from aloekit.evaluation.weights import relative_change

# --- the paired bootstrap ---------------------------------------------------------------------------------------


def test_a_model_right_on_many_more_questions_has_a_change_whose_ci_excludes_zero() -> None:
    before = [1.0] * 40 + [0.0] * 60
    after = [1.0] * 40 + [1.0] * 25 + [0.0] * 35  # 25 more right, none lost
    change = paired_bootstrap_diff(after, before)
    assert change.delta == pytest.approx(0.25)
    assert 0 < change.low < 0.25 < change.high


def test_identical_models_have_a_change_of_exactly_zero() -> None:
    scores = [1.0, 0.0, 1.0, 1.0, 0.0] * 20
    assert paired_bootstrap_diff(scores, scores) == (0.0, 0.0, 0.0)


def test_models_that_differ_on_few_questions_have_a_ci_that_includes_zero() -> None:
    before = [1.0] * 50 + [0.0] * 50
    after = list(before)
    after[50], after[51], after[0] = 1.0, 1.0, 0.0  # two gained, one lost
    change = paired_bootstrap_diff(after, before)
    assert change.delta == pytest.approx(0.01)
    assert change.low < 0 < change.high


def test_pairing_gives_a_narrower_interval_than_the_difference_of_two_independent_accuracies() -> None:
    rng = np.random.default_rng(1)
    before = (rng.random(300) < 0.5).astype(float)
    after = before.copy()
    after[rng.choice(np.flatnonzero(before == 0), 15, replace=False)] = 1.0
    change = paired_bootstrap_diff(after.tolist(), before.tolist())
    lo_a, hi_a = bootstrap_ci(after.tolist())
    lo_b, hi_b = bootstrap_ci(before.tolist())
    assert change.high - change.low < 0.5 * ((hi_a - lo_a) + (hi_b - lo_b)) / 2


def test_the_paired_change_is_the_bootstrap_of_the_per_question_differences() -> None:
    rng = np.random.default_rng(3)
    before, after = rng.random(80), rng.random(80)  # float scores work as well as 0/1
    change = paired_bootstrap_diff(after.tolist(), before.tolist(), seed=7)
    assert change.delta == pytest.approx(float(np.mean(after - before)))
    assert (change.low, change.high) == bootstrap_ci((after - before).tolist(), seed=7)


def test_paired_scores_must_align() -> None:
    with pytest.raises(ValueError, match="3 after, 2 before"):
        paired_bootstrap_diff([1.0, 0.0, 1.0], [1.0, 0.0])
    assert all(math.isnan(v) for v in paired_bootstrap_diff([], []))


# --- the stratified mean of benchmarks --------------------------------------------------------------------------


def test_the_mean_of_benchmarks_weighs_each_benchmark_equally_whatever_its_size() -> None:
    small = ([1.0] * 10, [0.0] * 10)  # +1.0 on 10 questions
    large = ([0.0] * 1000, [0.0] * 1000)  # no change on 1000
    change = stratified_paired_bootstrap_diff([small, large])
    assert change.delta == pytest.approx(0.5)  # not 10/1010
    assert change == (0.5, 0.5, 0.5)  # every difference constant within its benchmark: nothing to resample


def test_with_one_benchmark_the_stratified_change_is_the_paired_change() -> None:
    rng = np.random.default_rng(5)
    after, before = (rng.random(120) < 0.6).astype(float).tolist(), (rng.random(120) < 0.5).astype(float).tolist()
    assert stratified_paired_bootstrap_diff([(after, before)], seed=2) == paired_bootstrap_diff(after, before, seed=2)


def test_the_stratified_ci_resamples_within_each_benchmark() -> None:
    rng = np.random.default_rng(11)
    strata = []
    for n, gain in ((60, 0.2), (200, 0.0), (90, 0.1)):
        before = (rng.random(n) < 0.5).astype(float)
        after = np.where(rng.random(n) < gain, 1.0, before)
        strata.append((after.tolist(), before.tolist()))
    change = stratified_paired_bootstrap_diff(strata, seed=0)
    expected = np.mean([np.mean(np.subtract(a, b)) for a, b in strata])
    assert change.delta == pytest.approx(expected)
    assert change.low < change.delta < change.high
    assert change.low > 0  # gains on two benchmarks, no losses anywhere
    # Empty benchmarks are left out; none at all is NaN.
    assert stratified_paired_bootstrap_diff([*strata, ([], [])], seed=0) == change
    assert all(math.isnan(v) for v in stratified_paired_bootstrap_diff([([], [])]))


# --- aligning two evaluations -----------------------------------------------------------------------------------


def sample(bench: str, qid: str | None, correct: bool, pred: int = 0, gold: int = 0, index: int = 0) -> dict[str, Any]:
    """A samples.jsonl line (mcqa_results.sample_record's fields that the comparison reads)."""
    return {
        "benchmark": bench,
        "index": index,
        "id": qid,
        "choices": ["A", "B", "C", "D"],
        "options": ["w", "x", "y", "z"],
        "gold": gold,
        "pred": pred,
        "correct": correct,
    }


def test_questions_align_on_benchmark_and_id_whatever_their_order() -> None:
    before = [sample("medqa", "q1", True), sample("medqa", "q2", False), sample("pubmedqa", "q1", False)]
    after = [sample("pubmedqa", "q1", True), sample("medqa", "q2", True), sample("medqa", "q1", True)]
    pairs = align(before, after)
    assert [(b["id"], a["id"], a["benchmark"]) for b, a in pairs["medqa"]] == [
        ("q1", "q1", "medqa"),
        ("q2", "q2", "medqa"),
    ]
    assert [(b["correct"], a["correct"]) for b, a in pairs["pubmedqa"]] == [(False, True)]


def test_two_subsets_are_compared_on_their_intersection_and_say_its_size() -> None:
    before = [sample("medqa", f"q{i}", i % 2 == 0, pred=0) for i in range(0, 10)]  # q0..q9
    after = [sample("medqa", f"q{i}", True, pred=1 if i < 8 else 0) for i in range(5, 20)]  # q5..q19
    result = compare_samples(before, after)
    medqa = result["benchmarks"]["medqa"]
    assert (medqa["n"], medqa["n_before"], medqa["n_after"]) == (5, 10, 15)
    assert medqa["acc_before"] == pytest.approx(2 / 5)  # q6, q8 of q5..q9
    assert medqa["acc_after"] == 1.0
    assert medqa["delta"] == pytest.approx(0.6)
    assert medqa["changed"] == pytest.approx(3 / 5)  # q5, q6, q7 changed their answer
    assert result["n"] == 5


def test_a_benchmark_only_one_model_answered_is_named_not_compared() -> None:
    before = [sample("medqa", "q1", True), sample("pubmedqa", "q1", True)]
    after = [sample("medqa", "q1", True)]
    result = compare_samples(before, after)
    assert list(result["benchmarks"]) == ["medqa"] and result["not_compared"] == ["pubmedqa"]


def test_questions_without_id_align_by_position_and_repeated_ids_by_occurrence() -> None:
    before = [sample("b", None, False, index=0), sample("b", None, True, index=1), sample("b", "x", False, index=2)]
    before.append(sample("b", "x", True, index=3))
    after = [sample("b", None, True, index=1), sample("b", None, True, index=0), sample("b", "x", True, index=2)]
    after.append(sample("b", "x", False, index=3))
    pairs = align(before, after)["b"]
    assert [(b["index"], a["index"]) for b, a in pairs] == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_file_benchmarks_are_shown_by_their_stem_and_groups_pool_their_members() -> None:
    groups = {"mmlu_medical": ("mmlu_anatomy", "mmlu_virology")}
    before = [sample("file:/data/eval/mcq-eval.jsonl", f"q{i}", False) for i in range(4)]
    before += [sample("mmlu_anatomy", f"a{i}", False) for i in range(10)]
    before += [sample("mmlu_virology", f"v{i}", False) for i in range(30)]
    after = [sample("file:/data/eval/mcq-eval.jsonl", f"q{i}", True) for i in range(4)]
    after += [sample("mmlu_anatomy", f"a{i}", i < 10) for i in range(10)]  # +100% on 10
    after += [sample("mmlu_virology", f"v{i}", False) for i in range(30)]  # +0% on 30
    result = compare_samples(before, after, groups=groups)
    assert list(result["benchmarks"]) == ["mcq-eval", "mmlu_anatomy", "mmlu_virology"]
    group = result["groups"]["mmlu_medical"]
    assert group["n"] == 40 and group["delta"] == pytest.approx(10 / 40)  # pooled: weighted by size
    assert group["members"] == ["mmlu_anatomy", "mmlu_virology"]
    mean = result["mean"]
    # A complete group counts once, pooled (as "MMLU medical, pooled" does in the recipe's criterion).
    assert mean["benchmarks"] == 2 and mean["over"] == ["mmlu_medical", "mcq-eval"]
    assert mean["delta"] == pytest.approx((10 / 40 + 1.0) / 2)
    assert (mean["acc_before"], mean["acc_after"]) == (0.0, pytest.approx((10 / 40 + 1.0) / 2))


def test_a_group_with_a_member_missing_is_not_shown() -> None:
    groups = {"mmlu_medical": ("mmlu_anatomy", "mmlu_virology")}
    result = compare_samples([sample("mmlu_anatomy", "a", True)], [sample("mmlu_anatomy", "a", True)], groups=groups)
    assert result["groups"] == {}


def write_eval(folder: Path, samples: list[dict[str, Any]], results: dict[str, Any] | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (folder / "results.json").write_text(json.dumps(results or {"benchmarks": {}}))
    return folder


def test_compare_folders_reads_two_evaluation_folders(tmp_path: Path) -> None:
    base = write_eval(tmp_path / "base", [sample("medqa", f"q{i}", i < 30) for i in range(100)])
    sft = write_eval(tmp_path / "sft", [sample("medqa", f"q{i}", i < 70) for i in range(100)])
    medqa = compare_folders(base, sft)["benchmarks"]["medqa"]
    assert medqa["delta"] == pytest.approx(0.4) and medqa["delta_ci95"][0] > 0.25
    with pytest.raises(UserError, match=r"no samples\.jsonl"):
        compare_folders(base, tmp_path / "missing")


def test_a_cloze_evaluation_is_compared_on_its_headline_metric_acc_norm(tmp_path: Path) -> None:
    def cloze(i: int, right_norm: bool) -> dict[str, Any]:
        # acc (raw log-likelihood) always wrong; acc_norm (per character) right when asked
        return sample("mmlu_anatomy", f"q{i}", False, pred=1) | {"pred_norm": 0 if right_norm else 2}

    base = write_eval(tmp_path / "base", [cloze(i, i < 10) for i in range(40)], {"headline": "acc_norm"})
    sft = write_eval(tmp_path / "sft", [cloze(i, i < 30) for i in range(40)], {"headline": "acc_norm"})
    result = compare_folders(base, sft)
    anatomy = result["benchmarks"]["mmlu_anatomy"]
    assert result["metric"] == "acc_norm"
    assert (anatomy["acc_before"], anatomy["acc_after"], anatomy["delta"]) == (0.25, 0.75, 0.5)
    assert anatomy["changed"] == 0.5  # pred_norm moved on 20 of 40; pred never did
    letters = write_eval(tmp_path / "letters", [cloze(i, True) for i in range(40)], {"headline": "acc"})
    with pytest.raises(UserError, match=r"scored by acc_norm .* by acc: compare like with like"):
        compare_folders(base, letters)


# --- answer distributions ---------------------------------------------------------------------------------------


def test_distributions_come_from_results_json_where_it_has_them_else_by_position() -> None:
    predicted = {"A": 0.7, "B": 0.1, "C": 0.1, "D": 0.1, "unparseable": 0.0}
    gold = {"A": 0.25, "B": 0.25, "C": 0.25, "D": 0.25, "unparseable": 0.0}
    results = {"benchmarks": {"medqa": {"n": 10, "predicted": predicted, "gold": gold}, "file:/x/mixed.jsonl": {}}}
    mixed = [sample("file:/x/mixed.jsonl", "1", True, pred=0, gold=0), sample("file:/x/mixed.jsonl", "2", False)]
    mixed[1] |= {"options": ["a", "b", "c", "d", "e"], "pred": None, "gold": 4}
    out = answer_distributions(results, mixed)
    assert out["medqa"] == {"n": 10, "predicted": predicted, "gold": gold, "by": "label"}
    assert out["mixed"]["by"] == "position" and out["mixed"]["n"] == 2
    assert out["mixed"]["predicted"] == {"A": 0.5, "B": 0, "C": 0, "D": 0, "E": 0, "unparseable": 0.5}
    assert out["mixed"]["gold"]["A"] == 0.5 and out["mixed"]["gold"]["E"] == 0.5


def test_one_answer_over_40_percent_of_a_four_option_benchmark_is_flagged() -> None:
    assert dominant_answer({"A": 0.41, "B": 0.2, "C": 0.2, "D": 0.19, "unparseable": 0.0}) == ("A", 0.41)
    assert dominant_answer({"A": 0.4, "B": 0.2, "C": 0.2, "D": 0.2}) is None
    assert dominant_answer({"yes": 0.6, "no": 0.3, "maybe": 0.1}) is None  # three options: not flagged


# --- weight change ----------------------------------------------------------------------------------------------


def model(folder: Path, tensors: dict[str, torch.Tensor], shards: int = 1) -> Path:
    folder.mkdir(parents=True)
    names = list(tensors)
    for i in range(shards):
        part = {n: tensors[n].contiguous() for n in names[i::shards]}
        save_file(part, folder / f"model-{i + 1:05d}-of-{shards:05d}.safetensors", metadata={"format": "pt"})
    return folder


def tensors() -> dict[str, torch.Tensor]:
    return {
        "model.embed_tokens.weight": torch.ones(6, 4),  # norm² 24
        "model.layers.0.mlp.weight": torch.full((3, 4), 2.0),  # norm² 48
        "model.norm.weight": torch.full((4,), 3.0),  # norm² 36
    }


def test_identical_folders_have_no_weight_change(tmp_path: Path) -> None:
    a, b = model(tmp_path / "a", tensors()), model(tmp_path / "b", tensors(), shards=2)
    change = relative_change(a, b)
    assert change["relative_l2"] == 0.0
    assert change["tensors"] == 3 and change["parameters"] == 24 + 12 + 4
    assert change["largest"] == {"name": "model.embed_tokens.weight", "relative_l2": 0.0}


def test_one_tensor_scaled_gives_the_hand_computed_change(tmp_path: Path) -> None:
    scaled = tensors()
    scaled["model.layers.0.mlp.weight"] *= 1.5  # ||ΔW||² = 0.25 * 48 = 12 of ||W||² = 24 + 48 + 36 = 108
    change = relative_change(model(tmp_path / "a", tensors()), model(tmp_path / "b", scaled))
    assert change["relative_l2"] == pytest.approx(math.sqrt(12 / 108))
    assert change["largest"]["name"] == "model.layers.0.mlp.weight"
    assert change["largest"]["relative_l2"] == pytest.approx(0.5)


def test_large_tensors_are_streamed_in_blocks_of_rows_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = torch.Generator().manual_seed(0)
    old = {"w": torch.randn(37, 5, generator=rng), "bf16": torch.randn(9, 3, generator=rng).to(torch.bfloat16)}
    new = {k: v + 0.1 * torch.randn(v.shape, generator=rng).to(v.dtype) for k, v in old.items()}
    a, b = model(tmp_path / "a", old), model(tmp_path / "b", new)
    whole = relative_change(a, b)
    monkeypatch.setattr(weights, "_BLOCK_ELEMENTS", 10)  # two rows at a time
    assert relative_change(a, b)["relative_l2"] == pytest.approx(whole["relative_l2"], rel=1e-12)
    diff = sum(float((new[k].double() - old[k].double()).square().sum()) for k in old)
    norm = sum(float(old[k].double().square().sum()) for k in old)
    assert whole["relative_l2"] == pytest.approx(math.sqrt(diff / norm), rel=1e-7)


def test_an_output_layer_left_out_for_tied_embeddings_is_read_from_the_embedding(tmp_path: Path) -> None:
    untied = {**tensors(), "lm_head.weight": torch.ones(6, 4) * 2}  # ||ΔW||² = 24 against the tied embedding
    change = relative_change(model(tmp_path / "tied", tensors()), model(tmp_path / "untied", untied))
    assert change["tensors"] == 4
    assert change["relative_l2"] == pytest.approx(math.sqrt(24 / (108 + 24)))
    assert change["largest"]["name"] == "lm_head.weight"


def test_different_architectures_are_a_user_error_naming_the_tensor(tmp_path: Path) -> None:
    base = model(tmp_path / "base", tensors())
    extra = model(tmp_path / "extra", {**tensors(), "model.layers.1.mlp.weight": torch.ones(3, 4)})
    with pytest.raises(UserError, match=r"tensor model\.layers\.1\.mlp\.weight is only in .*extra"):
        relative_change(base, extra)
    wider = model(tmp_path / "wider", {**tensors(), "model.norm.weight": torch.ones(5)})
    with pytest.raises(UserError, match=r"tensor model\.norm\.weight is \[5\] against \[4\]") as error:
        relative_change(base, wider)
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match=r"no \*\.safetensors files"):
        relative_change(base, (tmp_path / "empty").mkdir() or tmp_path / "empty")
