"""Specification of the evaluation's formulations and question sets: multiple-choice questions asked in the cloze
formulation (option texts scored after the bare question, headline acc_norm) besides the letter one; a seeded
random subset of each benchmark, the same for every model; and the recipe's eval stage, which scores some models
on every question, the others on the subset, some in cloze and some generatively, each into its own folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from aloekit.config import MCQAConfig
from aloekit.data.schema import MCQItem
from aloekit.engines import Generation, GenerationRequest, Loglikelihood, LoglikelihoodRequest
from aloekit.errors import UserError
from aloekit.evaluation import benchmarks, prompts
from aloekit.evaluation.mcqa import evaluate, subset_indices

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
MODEL = {"reference": "scripted", "fingerprint": "scripted-v1"}
OPTIONS = ("Angina", "Myocardial infarction", "Costochondritis", "Reflux")


def _item(i: int = 0, answer: int = 1) -> MCQItem:
    return MCQItem(
        id=f"q{i}", question=f"A {30 + i}-year-old has chest pain. Diagnosis?", options=OPTIONS, answer=answer
    )


def _mcq_file(path: Path, n: int) -> Path:
    """A file: benchmark of ``n`` questions whose answer cycles through the options."""
    rows = [
        {"id": f"q{i}", "question": f"Question {i}: chest pain?", "options": list(OPTIONS), "answer": i % 4}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class FakeEngine:
    """Log-likelihoods chosen by the test (by continuation); every request is recorded; generation replies with
    ``reply``."""

    name = "fake"
    model_id = "fake"

    def __init__(self, logprobs: dict[str, float] | None = None, reply: str = "Answer: B") -> None:
        self.logprobs = logprobs or {}
        self.reply = reply
        self.requests: list[Any] = []

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False) -> list[Loglikelihood]:
        self.requests += requests
        return [Loglikelihood(self.logprobs.get(r.continuation, -50.0), False, 1) for r in requests]

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False) -> list[Generation]:
        self.requests += requests
        return [Generation([self.reply], ["stop"], 10, [3]) for _ in requests]

    def prompt_logprobs(self, prompts: Sequence[str], *, top: int = 1) -> list[object]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _samples(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]


# --- the cloze formulation -----------------------------------------------------------------------------------


def test_cloze_scores_each_option_text_after_the_question_without_its_lettered_list():
    bench = benchmarks.REGISTRY["medqa_4options"]
    context = prompts.loglik_context(bench, _item(), formulation="cloze")
    assert context == "Question: A 30-year-old has chest pain. Diagnosis?\nAnswer:"
    assert prompts.choices(bench, _item(), "cloze") == list(OPTIONS)
    # The letter formulation is lm-eval's, unchanged.
    assert "\nA. Angina\nB. Myocardial infarction\n" in prompts.loglik_context(bench, _item())
    assert prompts.choices(bench, _item()) == ["A", "B", "C", "D"]


def test_cloze_mmlu_has_lightevals_one_line_description_and_text_answers_in_its_examples():
    bench = benchmarks.REGISTRY["mmlu_anatomy"]
    shot = _item(1, answer=2)
    context = prompts.loglik_context(bench, _item(), [shot], "cloze")
    assert context == (
        "The following are questions about anatomy.\n"
        "Question: A 31-year-old has chest pain. Diagnosis?\nAnswer: Costochondritis\n\n"
        "Question: A 30-year-old has chest pain. Diagnosis?\nAnswer:"
    )


def test_pubmedqa_and_headqa_already_score_texts_so_their_cloze_prompt_is_the_letter_one():
    item = MCQItem(id="p", question="Does it work?", options=("yes", "no", "maybe"), answer=0, context="Abstract.")
    for name in ("pubmedqa", "headqa"):
        bench = benchmarks.REGISTRY[name]
        assert prompts.loglik_context(bench, item, formulation="cloze") == prompts.loglik_context(bench, item)
        assert prompts.choices(bench, item, "cloze") == prompts.choices(bench, item) == ["yes", "no", "maybe"]


def test_cloze_sends_option_texts_and_its_headline_acc_norm_picks_by_log_likelihood_per_character(tmp_path):
    bench = f"file:{_mcq_file(tmp_path / 'q.jsonl', 8)}"
    # Raw log-likelihood favours the short "Angina" (-6.0 > -10.5); per character the long answer wins
    # (-10.5/21 = -0.5 > -6/6 = -1.0). Gold cycles A, B, C, D over 8 questions: A twice, B twice.
    engine = FakeEngine({" Angina": -6.0, " Myocardial infarction": -10.5})
    config = MCQAConfig(benchmarks=(bench,), formulation="cloze")
    results = evaluate(engine, config, tmp_path / "out", model=MODEL, progress=False)
    assert {r.continuation for r in engine.requests} == {f" {o}" for o in OPTIONS}
    assert all(r.context == f"Question: Question {i // 4}: chest pain?\nAnswer:" for i, r in enumerate(engine.requests))
    r = results["benchmarks"][bench]
    assert r["acc"] == pytest.approx(2 / 8) and r["acc_norm"] == pytest.approx(2 / 8)
    assert [s["pred"] for s in _samples(tmp_path / "out")] == [0] * 8
    assert [s["pred_norm"] for s in _samples(tmp_path / "out")] == [1] * 8
    assert results["formulation"] == "cloze" and results["headline"] == "acc_norm"
    assert json.loads((tmp_path / "out/results.json").read_text())["config"]["formulation"] == "cloze"


def test_the_letter_formulation_stays_the_default_with_acc_as_its_headline(tmp_path):
    bench = f"file:{_mcq_file(tmp_path / 'q.jsonl', 4)}"
    results = evaluate(FakeEngine({" B": -1.0}), MCQAConfig(benchmarks=(bench,)), tmp_path / "out", model=MODEL)
    assert results["formulation"] == "letter" and results["headline"] == "acc"
    assert results["benchmarks"][bench]["acc"] == pytest.approx(1 / 4)


def test_cloze_is_a_log_likelihood_formulation_only():
    with pytest.raises(ValueError, match=r"formulation cloze .* use mode loglik"):
        MCQAConfig(benchmarks=("medqa_4options",), mode="generate", formulation="cloze")


# --- question sets: limit (first N) and a seeded subset ------------------------------------------------------


def test_a_subset_is_sorted_distinct_and_of_the_size_asked():
    chosen = subset_indices(100, 10, seed=0)
    assert len(chosen) == 10 and chosen == sorted(set(chosen)) and all(0 <= i < 100 for i in chosen)


def test_a_subset_is_fixed_by_its_seed_and_changes_with_it():
    assert subset_indices(100, 10, seed=3) == subset_indices(100, 10, seed=3)
    assert subset_indices(100, 10, seed=3) != subset_indices(100, 10, seed=4)


def test_a_subset_at_least_as_large_as_the_benchmark_takes_every_question():
    assert subset_indices(7, 7, seed=0) == subset_indices(7, 50, seed=1) == subset_indices(7, None, 2) == list(range(7))


def test_a_group_shares_its_subset_over_its_members_by_size_and_a_lone_benchmark_gets_it_whole():
    from aloekit.evaluation.mcqa import subset_sizes

    totals = {"pubmedqa": 500, "mmlu_anatomy": 135, "mmlu_clinical_knowledge": 265, "mmlu_medical_genetics": 100}
    groups = {"mmlu_medical": ("mmlu_anatomy", "mmlu_clinical_knowledge", "mmlu_medical_genetics", "mmlu_virology")}
    sizes = subset_sizes(totals, groups, 300)
    assert sizes == {"pubmedqa": 300, "mmlu_anatomy": 81, "mmlu_clinical_knowledge": 159, "mmlu_medical_genetics": 60}
    assert subset_sizes(totals, groups, 600)["mmlu_anatomy"] == 600  # the group is smaller: every question
    assert subset_sizes(totals, groups, None) == dict.fromkeys(totals)


def test_two_models_answer_the_same_subset_and_results_say_how_it_was_drawn(tmp_path):
    bench = f"file:{_mcq_file(tmp_path / 'q.jsonl', 12)}"
    config = MCQAConfig(benchmarks=(bench,), subset=5, seed=7)
    first = evaluate(FakeEngine({" A": -1.0}), config, tmp_path / "a", model=MODEL, progress=False)
    second = evaluate(FakeEngine({" B": -1.0}), config, tmp_path / "b", model={**MODEL, "fingerprint": "other"})
    picked = [s["id"] for s in _samples(tmp_path / "a")]
    assert picked == [s["id"] for s in _samples(tmp_path / "b")] == [f"q{i}" for i in subset_indices(12, 5, 7)]
    # samples.jsonl's index is the question's place in the benchmark, so subsets line up with full runs.
    assert [s["index"] for s in _samples(tmp_path / "a")] == subset_indices(12, 5, 7)
    for results in (first, second):
        assert results["benchmarks"][bench]["sampled"] == {"of": 12, "n": 5}
        assert results["benchmarks"][bench]["n"] == 5


def test_limit_still_takes_the_first_n_questions_and_a_subset_is_drawn_from_them(tmp_path):
    bench = f"file:{_mcq_file(tmp_path / 'q.jsonl', 12)}"
    limited = evaluate(FakeEngine(), MCQAConfig(benchmarks=(bench,), limit=4), tmp_path / "l", model=MODEL)
    assert [s["id"] for s in _samples(tmp_path / "l")] == ["q0", "q1", "q2", "q3"]
    assert "sampled" not in limited["benchmarks"][bench]
    both = evaluate(FakeEngine(), MCQAConfig(benchmarks=(bench,), limit=8, subset=3), tmp_path / "s", model=MODEL)
    assert both["benchmarks"][bench]["sampled"] == {"of": 8, "n": 3}
    assert all(int(s["id"][1:]) < 8 for s in _samples(tmp_path / "s"))


# --- the recipe's eval stage ---------------------------------------------------------------------------------


def _demo_with(tmp_path: Path, eval_lines: str) -> Path:
    text = (RECIPES / "demo.yaml").read_text()
    anchor = '  benchmarks: ["file:{holdout}/mcq-eval.jsonl"]\n'
    assert text.count(anchor) == 1
    path = tmp_path / "recipe.yaml"
    path.write_text(text.replace(anchor, anchor + eval_lines))
    return path


@pytest.mark.parametrize(
    "lines, key",
    [
        ("  cloze_models: [final]\n", "eval.cloze_models[0]"),
        ("  full_models: [base, tuned]\n", "eval.full_models[1]"),
        ("  generative: {models: [instruct]}\n", "eval.generative.models[0]"),
    ],
)
def test_a_model_label_that_is_not_a_recipe_model_is_a_config_error_naming_the_key(tmp_path, lines, key):
    from aloekit.recipe import load_recipe

    with pytest.raises(UserError) as error:
        load_recipe(_demo_with(tmp_path, lines), run=tmp_path / "run")
    message = str(error.value)
    assert "recipe.yaml line" in message and key in message and "'dpo_safety'" in message


def test_the_recipe_eval_section_defaults_keep_todays_behaviour(tmp_path):
    from aloekit.recipe import load_recipe

    recipe, _, _ = load_recipe(_demo_with(tmp_path, ""), run=tmp_path / "run")
    section = recipe.eval
    assert section.subset is None and section.full_models == ("base", "dpo_safety")
    assert section.cloze_models == () and section.generative.models == ()
    assert (section.generative.max_tokens, section.generative.limit) == (16, None)


def test_the_eval_stage_writes_full_subset_cloze_and_generative_results_and_resumes(tmp_path, tiny_llama, monkeypatch):
    from aloekit.config import EngineConfig
    from aloekit.recipe import EvalSection, load_recipe
    from aloekit.recipe.runner import StageContext
    from aloekit.recipe.stages import evaluate as eval_stage

    demo, _, _ = load_recipe(RECIPES / "demo.yaml", run=tmp_path / "run")
    bench = f"file:{_mcq_file(tmp_path / 'q.jsonl', 6)}"
    section = EvalSection(
        benchmarks=(bench,),
        models=("base", "sft"),
        subset=3,
        full_models=("base",),
        cloze_models=("sft",),
        generative={"models": ["base"], "max_tokens": 4, "limit": 2},
        medprompt={"enabled": False},
    )
    models = demo.models.model_copy(update={"base": str(tiny_llama)})
    recipe = demo.model_copy(
        update={"eval": section, "models": models, "engine": EngineConfig(backend="hf", batch_size=4)}
    )
    loads: list[str] = []
    real_engine = eval_stage.load_engine
    monkeypatch.setattr(
        eval_stage, "load_engine", lambda r, model, seed: loads.append(model) or real_engine(r, model, seed)
    )
    folder = tmp_path / "eval"
    folder.mkdir()
    ctx = StageContext(folder)
    inputs = eval_stage.EvalInputs(recipe, {"base": str(tiny_llama), "sft": str(tiny_llama)})

    outputs = eval_stage.run(inputs, ctx).to_manifest()

    assert outputs["loglik"] == {"base": str(folder / "base/results.json"), "sft": str(folder / "sft/results.json")}
    assert outputs["cloze"] == {"sft": str(folder / "cloze/sft/results.json")}
    assert outputs["generative"] == {"base": str(folder / "generative/base/results.json")}
    # Letter results first (full models, then the others), then cloze, then generative: a run cut short has the
    # headline comparison; consecutive parts of one model share its engine (sft: letter then cloze).
    assert loads == [str(tiny_llama), str(tiny_llama), str(tiny_llama)]
    read = {path: json.loads(Path(path).read_text()) for kind in outputs.values() for path in kind.values()}
    for path in read:
        assert Path(path).with_name("samples.jsonl").is_file()
    base, sft = read[outputs["loglik"]["base"]], read[outputs["loglik"]["sft"]]
    assert base["benchmarks"][bench]["n"] == 6 and "sampled" not in base["benchmarks"][bench]  # a full model
    assert sft["benchmarks"][bench]["sampled"] == {"of": 6, "n": 3}
    assert [s["index"] for s in _samples(folder / "sft")] == subset_indices(6, 3, 0)
    cloze = read[outputs["cloze"]["sft"]]
    assert cloze["formulation"] == "cloze" and cloze["headline"] == "acc_norm" and cloze["benchmarks"][bench]["n"] == 6
    generative = read[outputs["generative"]["base"]]["benchmarks"][bench]
    assert generative["sampled"] == {"of": 6, "n": 2} and "unparseable_rate" in generative

    # Rerun after a kill: finished parts are skipped, a half-done one is finished from its request cache.
    (folder / "cloze/sft/results.json").unlink()
    loads.clear()
    assert eval_stage.run(inputs, ctx).to_manifest() == outputs
    assert loads == [str(tiny_llama)]
    resumed = json.loads((folder / "cloze/sft/results.json").read_text())["benchmarks"][bench]
    assert (resumed["computed"], resumed["from_cache"]) == (0, 6)


def test_aloe_eval_formulation_cloze_and_subset_flags(tmp_path, tiny_llama):
    from support import aloe, assert_one_line_error

    bench = f"file:{_mcq_file(tmp_path / 'q.jsonl', 6)}"
    common = ["eval", "--benchmarks", bench, "--out", str(tmp_path / "out"), "--model", str(tiny_llama)]
    result = aloe(*common, "--formulation", "cloze", "--subset", "4", "--json")
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    assert (results["formulation"], results["headline"]) == ("cloze", "acc_norm")
    assert results["benchmarks"][bench]["sampled"] == {"of": 6, "n": 4}
    assert_one_line_error(aloe(*common, "--formulation", "cloze", "--mode", "generate"), "cloze", "loglik")


def test_generated_answers_record_the_share_cut_at_the_new_token_limit(tmp_path):
    from support import ScriptedEngine

    bench = f"file:{_mcq_file(tmp_path / 'q.jsonl', 6)}"
    config = MCQAConfig(benchmarks=(bench,), mode="generate", max_tokens=6, num_fewshot=0)
    cut = ScriptedEngine(lambda r: "Let me think about", finish="length")
    (result,) = evaluate(cut, config, tmp_path / "cut", model=MODEL, progress=False)["benchmarks"].values()
    assert result["unparseable_rate"] == 1.0 and result["truncated_rate"] == 1.0 and result["max_tokens"] == 6
    done = ScriptedEngine(lambda r: "Answer: A", finish="stop")
    result = evaluate(done, config, tmp_path / "done", model={**MODEL, "fingerprint": "f2"}, progress=False)
    assert next(iter(result["benchmarks"].values()))["truncated_rate"] == 0.0


def test_a_full_models_cloze_part_shares_its_letter_cache_so_identical_requests_are_scored_once(tmp_path):
    from aloekit.config import MCQAConfig
    from aloekit.recipe import EvalSection, load_recipe
    from aloekit.recipe.stages import evaluate as eval_stage

    demo, _, _ = load_recipe(RECIPES / "demo.yaml", run=tmp_path / "run")
    section = EvalSection(
        benchmarks=("pubmedqa",),
        models=("base", "sft", "dpo_safety"),
        subset=300,
        full_models=("base", "dpo_safety"),
        cloze_models=("base", "sft"),
        medprompt={"enabled": False},
    )
    recipe = demo.model_copy(update={"eval": section})
    folder = tmp_path / "eval"
    parts = eval_stage._eval_parts(recipe, folder, MCQAConfig(benchmarks=("pubmedqa",)))
    cloze = {p.label: p for p in parts if p.kind == "cloze"}
    # PubMedQA's letter prompt already scores " yes" / " no" / " maybe" after the abstract: the cloze part of a
    # model scored in full asks the same requests, so it reads them from that model's letter cache.
    assert cloze["base"].cache == folder / "base" / "cache.jsonl"
    # A model whose letter part is a subset keeps its own cache (most of its cloze requests are not in it).
    assert cloze["sft"].cache is None
    assert all(p.cache is None for p in parts if p.kind != "cloze")
