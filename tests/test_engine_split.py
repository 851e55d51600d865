"""Specification of the split engine: one model, log-likelihoods from one engine and generations from another,
and the recipe sections' ``generation_engine`` that builds it."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import pytest

from aloekit.engines import Generation, GenerationRequest, Loglikelihood, LoglikelihoodRequest, PromptLogprobs
from aloekit.engines.split import SplitEngine
from aloekit.recipe import load_recipe
from support import aloe, assert_one_line_error, without_module

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


class Recorder:
    """An engine that answers with its own name and remembers what it was asked."""

    def __init__(self, name: str, fail_on_close: bool = False) -> None:
        self.name, self.model_id, self.calls, self.closed, self.fail = name, f"model-{name}", [], False, fail_on_close

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False) -> list[Generation]:
        self.calls.append("generate")
        return [Generation([self.name], ["stop"], 1, [1]) for _ in requests]

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False) -> list[Loglikelihood]:
        self.calls.append("loglikelihood")
        return [Loglikelihood(-1.0, True, 1) for _ in requests]

    def prompt_logprobs(self, prompts: Sequence[str], *, top: int = 1) -> list[PromptLogprobs]:
        self.calls.append("prompt_logprobs")
        return [PromptLogprobs([], [], [], []) for _ in prompts]

    def close(self) -> None:
        self.closed = True
        if self.fail:
            raise RuntimeError("close failed")


def test_generation_goes_to_the_generator_and_scoring_to_the_scorer() -> None:
    scorer, generator = Recorder("hf"), Recorder("llamacpp")
    engine = SplitEngine(scorer, generator)

    assert engine.generate([GenerationRequest(prompt="x")])[0].text == "llamacpp"
    engine.loglikelihood([LoglikelihoodRequest("a", " b")])
    engine.prompt_logprobs(["a"])

    assert generator.calls == ["generate"] and scorer.calls == ["loglikelihood", "prompt_logprobs"]
    assert engine.name == "hf+llamacpp" and engine.model_id == "model-hf"


def test_closing_closes_both_even_when_the_generator_fails_to_close() -> None:
    scorer, generator = Recorder("hf"), Recorder("llamacpp", fail_on_close=True)
    with pytest.raises(RuntimeError, match="close failed"):
        SplitEngine(scorer, generator).close()
    assert scorer.closed and generator.closed


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="needs llama-cpp-python (aloekit[llamacpp])")
def test_a_recipe_generation_engine_generates_there_and_keys_its_cache_apart(
    tiny_llama: Path, tmp_path: Path, aloe_home: Path
) -> None:
    from aloekit.recipe.stages.models import load_engine

    recipe, _, _ = load_recipe(RECIPES / "demo.yaml", run=tmp_path / "run")
    plain = recipe.model_copy(update={"engine": recipe.engine.model_copy(update={"batch_size": 2})})
    generation = plain.engine.model_copy(update={"backend": "llamacpp", "threads": 1})
    request = GenerationRequest(prompt="The patient", max_tokens=5)

    engine, record = load_engine(plain, str(tiny_llama), seed=0, generation=generation)
    try:
        assert engine.name == "hf+llamacpp"
        generated = engine.generate([request])[0].text
        assert generated == engine.generator.generate([request])[0].text  # type: ignore[attr-defined]
    finally:
        engine.close()
    alone, plain_record = load_engine(plain, str(tiny_llama), seed=0)
    alone.close()

    assert alone.name == "hf" and record["generation_backend"] == "llamacpp"
    assert (
        record["fingerprint"].startswith(plain_record["fingerprint"])
        and record["fingerprint"] != plain_record["fingerprint"]
    )


def test_a_recipe_whose_generation_engine_is_not_installed_stops_before_training(tmp_path: Path) -> None:
    text = (
        (RECIPES / "demo.yaml")
        .read_text()
        .replace("safety:\n", "safety:\n  generation_engine: {backend: llamacpp, dtype: bfloat16}\n", 1)
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    env = without_module("llama_cpp", tmp_path)

    result = aloe("run", str(recipe), "--out", str(tmp_path / "run"), env=env)

    assert_one_line_error(result, "llama-cpp-python", "pip install 'aloekit[llamacpp]'")
    assert not (tmp_path / "run" / "data").exists()  # nothing trained, nothing built
