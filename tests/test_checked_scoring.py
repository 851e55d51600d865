"""Specification of checked bf16 scoring: a fast copy scores every option, and every question whose answer the
fast copy's rounding could change is scored again exactly, so the predictions are the exact model's."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from aloekit.config import MCQAConfig
from aloekit.engines import Loglikelihood, LoglikelihoodRequest
from aloekit.errors import UserError
from aloekit.evaluation.checked import CheckedScorer, decided
from aloekit.evaluation.mcqa import evaluate
from aloekit.hardware import cpu_supports_bf16
from test_mcqa import MODEL, ScriptedEngine, data_dir  # noqa: F401  (data_dir is a fixture)


def test_a_lead_wider_than_the_bound_on_the_difference_is_decided() -> None:
    # One-token options: a difference's error is at most 0.3 x sqrt(2) = 0.42.
    assert decided([-1.0, -1.5, -3.0], [1, 1, 1], [1, 1, 1], error=0.9, difference=0.3)


def test_a_lead_within_the_bound_on_the_difference_is_not_decided() -> None:
    assert not decided([-1.0, -1.4, -3.0], [1, 1, 1], [1, 1, 1], error=0.9, difference=0.3)


def test_the_bound_grows_with_the_options_tokens() -> None:
    # A 1-nat lead: enough for one-token options (0.5 x sqrt 2), not when the runner-up has 3 tokens (0.5 x 2).
    assert decided([-1.0, -2.0], [5, 5], [1, 1], error=0.9, difference=0.5)
    assert not decided([-1.0, -2.0], [5, 5], [1, 3], error=0.9, difference=0.5)


def test_the_per_character_answer_must_be_decided_too() -> None:
    # Raw: option 0 leads by 1 nat. Per character: -0.5 vs -0.4, a lead of 0.1 for option 1, inside its slack
    # 0.3 x sqrt 2 / 10 + 0.9 x |1/10 - 1/6|.
    assert not decided([-3.0, -4.0], [6, 10], [1, 1], error=0.9, difference=0.3)
    assert decided([-3.0, -4.0], [6, 10], [1, 1], error=0.01, difference=0.01)


def test_options_of_one_length_need_no_bound_on_their_own_errors() -> None:
    # Letters: every option one character long, so an error they all share cancels per character too.
    assert decided([-1.0, -2.0], [1, 1], [1, 1], error=100.0, difference=0.5)


def test_a_tie_is_never_decided() -> None:
    assert not decided([-1.0, -1.0], [1, 1], [1, 1], error=0.0, difference=0.0)


class Offset(ScriptedEngine):
    """The exact engine's scores, each moved by a fixed amount: a stand-in for bf16 rounding."""

    def __init__(self, logprobs: dict[str, float], shift: dict[str, float]) -> None:
        super().__init__(logprobs)
        self.shift = shift
        self.scored: list[str] = []

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False) -> list[Loglikelihood]:
        self.scored += [r.context for r in requests]
        return [
            Loglikelihood(x.logprob + self.shift.get(r.continuation, 0.0), False, 1)
            for x, r in zip(super().loglikelihood(requests), requests, strict=True)
        ]


def test_questions_the_fast_scores_leave_open_are_scored_again_exactly() -> None:
    exact = Offset({" A": -1.0, " B": -1.2}, {})
    fast = Offset({" A": -1.0, " B": -1.2}, {" B": +0.3})  # the rounding flips the answer to B
    scorer = CheckedScorer(fast=fast, exact=exact, error=0.9, difference=0.5)
    questions = [[LoglikelihoodRequest("q1", " A"), LoglikelihoodRequest("q1", " B")]]
    (scores,) = scorer.score(questions, [[1.0, 1.0]])
    assert [s.logprob for s in scores] == [-1.0, -1.2]  # the exact scores: A, as the exact model answers
    assert exact.scored == ["q1", "q1"] and (scorer.questions, scorer.rescored) == (1, 1)


def test_decided_questions_keep_their_fast_scores_and_cost_no_exact_pass() -> None:
    exact = Offset({" A": -1.0, " B": -4.0}, {})
    fast = Offset({" A": -1.0, " B": -4.0}, {" B": +0.2})
    scorer = CheckedScorer(fast=fast, exact=exact, error=0.9, difference=0.5)
    (scores,) = scorer.score([[LoglikelihoodRequest("q", " A"), LoglikelihoodRequest("q", " B")]], [[1.0, 1.0]])
    assert [s.logprob for s in scores] == [-1.0, pytest.approx(-3.8)]
    assert exact.scored == [] and scorer.record()["rescored_in_fp32"] == 0


def test_an_engine_without_a_bf16_copy_is_refused_in_one_line(data_dir, tmp_path: Path) -> None:  # noqa: F811
    config = MCQAConfig(benchmarks=("medqa_4options",), data_dir=data_dir, scoring="checked-bf16")
    with pytest.raises(UserError, match="needs the hf engine"):
        evaluate(ScriptedEngine(), config, tmp_path / "out", model=MODEL, progress=False)


def test_checked_scoring_is_for_log_likelihood_answers() -> None:
    with pytest.raises(ValueError, match="use mode loglik"):
        MCQAConfig(benchmarks=("medqa_4options",), mode="generate", scoring="checked-bf16")


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bf16")
def test_a_checked_run_predicts_what_the_exact_run_predicts_and_records_how(
    tiny_llama: Path,
    data_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    from aloekit.engines.hf import HFEngine

    engine = HFEngine.from_reference(str(tiny_llama), dtype="float32")
    runs = {}
    for scoring in ("exact", "checked-bf16"):
        config = MCQAConfig(benchmarks=("medqa_4options",), data_dir=data_dir, scoring=scoring)
        runs[scoring] = evaluate(engine, config, tmp_path / scoring, model=MODEL, progress=False)
    preds = {s: [json.loads(line)["pred"] for line in (tmp_path / s / "samples.jsonl").open()] for s in runs}
    assert preds["exact"] == preds["checked-bf16"]
    record = runs["checked-bf16"]["scoring"]
    assert record["scoring"] == "checked-bf16" and record["questions_scored"] == 12
    assert 0 <= record["rescored_in_fp32"] <= 12 and "scoring" not in runs["exact"]


def test_the_open_questions_of_one_call_are_scored_again_in_one_exact_pass() -> None:
    logprobs = {" A": -1.0, " B": -1.1, " C": -1.0, " D": -4.0}
    exact, fast = Offset(logprobs, {}), Offset(logprobs, {})
    scorer = CheckedScorer(fast=fast, exact=exact, error=0.9, difference=0.5)
    close = [LoglikelihoodRequest("close", " A"), LoglikelihoodRequest("close", " B")]
    clear = [LoglikelihoodRequest("clear", " C"), LoglikelihoodRequest("clear", " D")]
    questions = [close if i % 10 == 0 else clear for i in range(100)]  # open ones before and after question 64
    scores = scorer.score(questions, [[1.0, 1.0]] * 100)
    # The fast pass runs in two parts (the first 64 decide whether to go on), the exact one once, over all ten.
    assert (fast.calls, exact.calls) == (2, 1) and exact.scored == ["close"] * 20
    assert [s.logprob for s in scores[0]] == [-1.0, -1.1] and (scorer.rescored, scorer.questions) == (10, 100)


def test_when_most_questions_need_the_exact_pass_the_rest_is_scored_exactly_alone() -> None:
    exact = Offset({" A": -1.0, " B": -1.1}, {})
    fast = Offset({" A": -1.0, " B": -1.1}, {})  # every lead of 0.1 is within the bound: all re-scored
    scorer = CheckedScorer(fast=fast, exact=exact, error=0.9, difference=0.5)
    question = [LoglikelihoodRequest("q", " A"), LoglikelihoodRequest("q", " B")]
    scorer.score([question] * 64, [[1.0, 1.0]] * 64)
    assert scorer.rescored == 64 and scorer.exact_only_after is None
    fast.scored.clear()
    scorer.score([question] * 10, [[1.0, 1.0]] * 10)
    assert fast.scored == [] and scorer.record()["exact_only_after"] == 64 and scorer.questions == 74


def test_a_single_long_call_is_checked_on_its_first_questions_before_the_rest() -> None:
    exact = Offset({" A": -1.0, " B": -1.1}, {})
    fast = Offset({" A": -1.0, " B": -1.1}, {})
    scorer = CheckedScorer(fast=fast, exact=exact, error=0.9, difference=0.5)
    question = [LoglikelihoodRequest("q", " A"), LoglikelihoodRequest("q", " B")]
    scores = scorer.score([question] * 100, [[1.0, 1.0]] * 100)
    assert len(scores) == 100 and len(fast.scored) == 64 * 2
    assert (scorer.rescored, scorer.exact_only_after, scorer.questions) == (64, 64, 100)


def pairs() -> list[LoglikelihoodRequest]:
    contexts = ("Question: is aspirin an anticoagulant?\nAnswer:", "The first line treatment of sepsis is")
    options = (" yes", " no", " maybe", " fluids and antibiotics given early", " rest")
    return [LoglikelihoodRequest(c, o) for c in contexts for o in options]


@pytest.mark.skipif(not cpu_supports_bf16(), reason="this CPU has no native bf16")
@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_the_fast_copy_runs_attention_and_mlp_in_bf16_and_leaves_the_exact_model_as_it_was(
    tiny_models: dict[str, Path], family: str
) -> None:
    import torch

    from aloekit.engines.hf import HFEngine

    exact = HFEngine.from_reference(str(tiny_models[family]), dtype="float32")
    before = {name: p.clone() for name, p in exact.model.named_parameters()}
    fast = exact.bf16_copy()
    layer = fast.model.model.layers[0]
    assert layer.self_attn.inner.q_proj.weight.dtype == layer.mlp.inner.up_proj.weight.dtype == torch.bfloat16
    # The residual stream's norms, the embeddings and the head stay float32, shared with the exact model.
    assert layer.input_layernorm.weight is exact.model.model.layers[0].input_layernorm.weight
    assert fast.model.get_input_embeddings().weight is exact.model.get_input_embeddings().weight
    assert all(p.dtype == torch.float32 and torch.equal(p, before[n]) for n, p in exact.model.named_parameters())
    ours, reference = fast.loglikelihood(pairs()), exact.loglikelihood(pairs())
    errors = [abs(a.logprob - b.logprob) for a, b in zip(ours, reference, strict=True)]
    # bf16 rounding (8 bits of mantissa) moves the scores a little, never by nothing and never far.
    assert 0 < max(errors) < 0.1
    assert [a.n_tokens for a in ours] == [b.n_tokens for b in reference]


def test_a_model_without_attention_and_mlp_blocks_is_refused_in_one_line() -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from aloekit.engines.hf_model import bf16_blocks

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=32, n_positions=16))
    with pytest.raises(UserError, match="use scoring exact") as caught:
        bf16_blocks(model)
    assert "\n" not in str(caught.value)
    assert all(p.dtype == torch.float32 for p in model.parameters())
