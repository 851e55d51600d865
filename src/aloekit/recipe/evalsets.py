"""What the recipe evaluates on, as the data stage's decontamination sees it: whatever the recipe evaluates on
never enters training (the SFT mixture, the preference pairs, Medprompt's database)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from aloekit.data.decontaminate import DecontamConfig, ExtraEvalFile
from aloekit.data.mixture import MixtureConfig
from aloekit.data.prefs_build import PrefsConfig
from aloekit.evaluation.benchmarks import FILE_PREFIX
from aloekit.recipe.config import RecipeConfig

__all__ = ["decontaminated", "eval_files", "evaluation_sets", "registered_evals"]

C = TypeVar("C", MixtureConfig, PrefsConfig)


def _benchmark_names(recipe: RecipeConfig) -> list[str]:
    return list(recipe.eval.benchmarks) + list(recipe.eval.medprompt.benchmarks or ())


def eval_files(recipe: RecipeConfig) -> list[ExtraEvalFile]:
    """Every evaluation set of the recipe given by path, as decontamination's extra files."""
    names = _benchmark_names(recipe)
    mcq = {n.removeprefix(FILE_PREFIX) for n in names if n.startswith(FILE_PREFIX)}
    prompts = {n.removeprefix("file:") for n in recipe.safety.suites if n.startswith("file:")}
    return [ExtraEvalFile(name=f"file:{p}", path=Path(p), format="jsonl", field="question") for p in sorted(mcq)] + [
        ExtraEvalFile(name=f"file:{p}", path=Path(p), format="jsonl", field="prompt") for p in sorted(prompts)
    ]


def registered_evals(recipe: RecipeConfig) -> list[str]:
    """The recipe's benchmarks from the registry (not given by path), each once, in order."""
    return [n for n in dict.fromkeys(_benchmark_names(recipe)) if not n.startswith(FILE_PREFIX)]


def evaluation_sets(recipe: RecipeConfig) -> list[str]:
    """Names of every evaluation set: part of the data stage's input hash (names, not sizes or settings)."""
    return sorted({*registered_evals(recipe), *(e.name for e in eval_files(recipe))})


def decontaminated(config: C, recipe: RecipeConfig) -> C:
    """``config`` (a mixture or preference config) with the recipe's own evaluation sets added to its
    decontamination."""
    decontam: DecontamConfig = config.decontamination
    extra = tuple(decontam.extra) + tuple(
        e for e in eval_files(recipe) if e.name not in {x.name for x in decontam.extra}
    )
    update: dict[str, Any] = {"extra": extra}
    if decontam.benchmarks is not None:  # an explicit list: the recipe's benchmarks join it
        update["benchmarks"] = tuple(dict.fromkeys(decontam.benchmarks + tuple(registered_evals(recipe))))
    return config.model_copy(update={"decontamination": decontam.model_copy(update=update)})
