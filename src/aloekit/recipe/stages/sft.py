"""The SFT stage: the base model fine-tuned on the data stage's mixture (``aloe train sft``'s folder in
``sft/train``, the model in ``sft/train/model``), then, when the recipe has a letter phase, that model fine-tuned on
the letters mixture (``sft/letters``, the stage's model in ``sft/letters/model``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aloekit.errors import UserError
from aloekit.recipe.config import RecipeConfig
from aloekit.recipe.runner import StageContext, StageOutputs
from aloekit.recipe.stages.data import DataOutputs
from aloekit.recipe.stages.launch import train
from aloekit.train.runfolder import read_json
from aloekit.train.sft import SFTRunConfig, train_sft

__all__ = ["SFTInputs", "SFTOutputs", "letters_config", "run", "sft_config"]


@dataclass(frozen=True)
class SFTInputs:
    recipe: RecipeConfig
    data: DataOutputs


class SFTOutputs(StageOutputs):
    model: Path
    """The stage's model: the letter phase's when the recipe has one, else SFT's."""
    metrics: Path
    letters_metrics: Path | None = None
    """The letter phase's metrics.json, when the recipe has one."""


def _run_config(recipe: RecipeConfig, settings: Any, model: str, dataset: str, out: Path) -> SFTRunConfig:
    """``aloe train sft``'s config: recipe ``settings`` plus what the recipe wires (model, dataset, folder)."""
    return SFTRunConfig(
        **settings.model_dump(),
        model=model,
        dataset=dataset,
        out=out,
        allow_pickle=recipe.models.allow_pickle,
        trust_remote_code=recipe.models.trust_remote_code,
    )


def sft_config(recipe: RecipeConfig, dataset: str, out: Path) -> SFTRunConfig:
    """SFT's config: the recipe's sft settings, from the base model."""
    return _run_config(recipe, recipe.sft, recipe.models.base, dataset, out)


def letters_config(recipe: RecipeConfig, dataset: str, sft_model: Path, out: Path) -> SFTRunConfig:
    """The letter phase's config: the recipe's letters settings, from the SFT model."""
    assert recipe.letters is not None
    return _run_config(recipe, recipe.letters, str(sft_model), dataset, out)


def run(inputs: SFTInputs, ctx: StageContext) -> SFTOutputs:
    out = ctx.folder / "train"
    config = sft_config(inputs.recipe, str(inputs.data.sft), out)
    progress = sys.stderr.isatty()
    # A finished phase is not trained again when a killed stage resumes in its letter phase.
    if (read_json(out / "metrics.json") or {}).get("status") != "finished":
        train(
            inputs.recipe,
            ctx,
            "sft",
            config,
            lambda resume: train_sft(config, resume=resume, progress=progress, log=ctx.log),
        )
    outputs = SFTOutputs(model=out / "model", metrics=out / "metrics.json")
    if inputs.recipe.letters is None:
        return outputs
    if inputs.data.letters is None:
        raise UserError("the recipe has a letter phase but its data stage built no letters mixture: rerun from data")
    letters = ctx.folder / "letters"
    phase = letters_config(inputs.recipe, str(inputs.data.letters), outputs.model, letters)
    ctx.log("sft: letter phase")
    train(
        inputs.recipe,
        ctx,
        "sft",
        phase,
        lambda resume: train_sft(phase, resume=resume, progress=progress, log=ctx.log),
        name="letters",
    )
    return SFTOutputs(model=letters / "model", metrics=outputs.metrics, letters_metrics=letters / "metrics.json")
