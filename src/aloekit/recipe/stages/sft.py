"""The SFT stage: the base model fine-tuned on the data stage's mixture (``aloe train sft``'s folder in
``sft/train``, the model in ``sft/train/model``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from aloekit.recipe.config import RecipeConfig
from aloekit.recipe.runner import StageContext, StageOutputs
from aloekit.recipe.stages.data import DataOutputs
from aloekit.recipe.stages.launch import train
from aloekit.train.sft import SFTRunConfig, train_sft

__all__ = ["SFTInputs", "SFTOutputs", "run", "sft_config"]


@dataclass(frozen=True)
class SFTInputs:
    recipe: RecipeConfig
    data: DataOutputs


class SFTOutputs(StageOutputs):
    model: Path
    metrics: Path


def sft_config(recipe: RecipeConfig, dataset: str, out: Path) -> SFTRunConfig:
    """``aloe train sft``'s config: the recipe's settings plus what the recipe wires (model, dataset, folder)."""
    return SFTRunConfig(
        **recipe.sft.model_dump(),
        model=recipe.models.base,
        dataset=dataset,
        out=out,
        allow_pickle=recipe.models.allow_pickle,
        trust_remote_code=recipe.models.trust_remote_code,
    )


def run(inputs: SFTInputs, ctx: StageContext) -> SFTOutputs:
    out = ctx.folder / "train"
    config = sft_config(inputs.recipe, str(inputs.data.sft), out)
    progress = sys.stderr.isatty()
    train(
        inputs.recipe,
        ctx,
        "sft",
        config,
        lambda resume: train_sft(config, resume=resume, progress=progress, log=ctx.log),
    )
    return SFTOutputs(model=out / "model", metrics=out / "metrics.json")
