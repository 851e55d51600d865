"""The safety stage: red-teaming (attack success and over-refusal, per suite and attack style) of the recipe's
models before and after alignment, with BBQ and TruthfulQA on the full models when asked (``safety/<model>/``)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from aloekit.config import EngineConfig
from aloekit.engines import Engine
from aloekit.recipe.config import RecipeConfig, SafetySection
from aloekit.recipe.runner import JSONDict, StageContext, StageOutputs
from aloekit.recipe.stages.models import load_engine
from aloekit.safety.evaluate import evaluate_safety
from aloekit.safety.judge import Judge, OfflineJudge
from aloekit.safety.llm_judge import LLMJudge

__all__ = ["SafetyInputs", "SafetyOutputs", "run", "safety_limit"]


@dataclass(frozen=True)
class SafetyInputs:
    recipe: RecipeConfig
    models: dict[str, str]
    """Recipe model label -> model reference or folder (:func:`aloekit.recipe.stages.models.model_paths`)."""


class SafetyOutputs(StageOutputs):
    results: dict[str, Path]
    """Red-teamed model label -> its results.json (risk.md and samples.jsonl beside it)."""

    def to_manifest(self) -> JSONDict:
        return {label: str(path) for label, path in self.results.items()}  # recorded flat: {label: path}

    @classmethod
    def from_manifest(cls, outputs: Mapping[str, Any]) -> Self:
        return cls(results=dict(outputs))


def _full_model(section: SafetySection, label: str) -> bool:
    return section.full_models is None or label in section.full_models


def safety_limit(section: SafetySection, label: str) -> int | None:
    """Prompts per suite for ``label``: every one of ``limit`` for full models, the ``subset`` sample for others."""
    if section.full_models is None or label in section.full_models or section.subset is None:
        return section.limit
    return section.subset if section.limit is None else min(section.limit, section.subset)


def run(inputs: SafetyInputs, ctx: StageContext) -> SafetyOutputs:
    recipe, paths = inputs.recipe, inputs.models
    section = recipe.safety
    results: dict[str, Path] = {}
    judge_engine: Engine | None = None
    judge: Judge = OfflineJudge()
    try:
        for label in section.models:
            out = ctx.folder / label
            if not (out / "risk.md").is_file():  # risk.md is written last
                if judge_engine is None and section.judge.startswith("llm:"):
                    reference = section.judge.removeprefix("llm:")
                    judge_engine = EngineConfig(model=reference, backend=recipe.engine.backend).load()
                    judge = LLMJudge(judge_engine)
                ctx.log(f"safety: {label} ({paths[label]})")
                engine, record = load_engine(recipe, paths[label], ctx.seed, section.generation_engine)
                try:
                    evaluate_safety(
                        engine,
                        judge,
                        out,
                        suites=section.suites,
                        styles=section.styles,
                        data_dir=recipe.data_dir,
                        limit=safety_limit(section, label),
                        max_tokens=section.max_tokens,
                        seed=ctx.seed,
                        model=record,
                        # BBQ and TruthfulQA measure what the issue compares before and after (base and final):
                        # intermediate models outside full_models skip them (~7 min each here).
                        bias=section.bias and _full_model(section, label),
                        bbq_limit=section.bbq_limit,
                        truthfulness=section.truthfulness and _full_model(section, label),
                        truthfulqa_limit=section.truthfulqa_limit,
                        progress=sys.stderr.isatty(),
                        log=ctx.log,
                    )
                finally:
                    engine.close()
            results[label] = out / "results.json"
    finally:
        if judge_engine is not None:
            judge_engine.close()
    return SafetyOutputs(results=results)
