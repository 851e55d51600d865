"""The DPO stage: the merged model aligned in two stages, general preferences then red-teaming safety
(``aloe train dpo``'s folder in ``dpo/train``: ``general/model``, ``safety/model``)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from aloekit.recipe.config import RecipeConfig, with_policy
from aloekit.recipe.runner import StageContext, StageOutputs
from aloekit.recipe.stages.data import DataOutputs, build_prefs_once
from aloekit.recipe.stages.launch import train
from aloekit.recipe.stages.merge import MergeOutputs
from aloekit.train.dpo import DPORunConfig, DPOStage, train_dpo

__all__ = ["DPOInputs", "DPOOutputs", "dpo_config", "run"]

PARTS = ("general", "safety")


@dataclass(frozen=True)
class DPOInputs:
    recipe: RecipeConfig
    data: DataOutputs
    merge: MergeOutputs


class DPOOutputs(StageOutputs):
    dpo_general: Path
    dpo_safety: Path
    metrics: dict[str, Path]
    """general and safety -> their metrics.json."""
    prefs_general: Path | None = None
    """DPO general's pairs when this stage built them from the merged model's answers (on-policy)."""


def dpo_config(recipe: RecipeConfig, model: str, general: str, safety: str, out: Path) -> DPORunConfig:
    """``aloe train dpo``'s config: the recipe's settings plus what the recipe wires (model, datasets, folder)."""
    return DPORunConfig(
        **recipe.dpo.settings.model_dump(),
        model=model,
        out=out,
        stages=(
            DPOStage(name="general", dataset=Path(general), **recipe.dpo.general.model_dump()),
            DPOStage(name="safety", dataset=Path(safety), **recipe.dpo.safety.model_dump()),
        ),
        allow_pickle=recipe.models.allow_pickle,
        trust_remote_code=recipe.models.trust_remote_code,
    )


def run(inputs: DPOInputs, ctx: StageContext) -> DPOOutputs:
    out = ctx.folder / "train"
    data, recipe = inputs.data, inputs.recipe
    progress = sys.stderr.isatty()
    if recipe.data.general_on_policy:  # the merged model answers; its own wrong replies are rejected
        prefs = with_policy(recipe.data.prefs_general, str(inputs.merge.model))
        general = build_prefs_once(ctx.folder / "prefs_general", prefs, recipe, ctx, progress)
    else:
        assert data.prefs_general is not None, "the data stage builds prefs_general unless it is on-policy"
        general = data.prefs_general
    config = dpo_config(recipe, str(inputs.merge.model), str(general), str(data.prefs_safety), out)
    train(recipe, ctx, "dpo", config, lambda resume: train_dpo(config, resume=resume, progress=progress))
    return DPOOutputs(
        dpo_general=out / "general" / "model",
        dpo_safety=out / "safety" / "model",
        metrics={part: out / part / "metrics.json" for part in PARTS},
        prefs_general=general if recipe.data.general_on_policy else None,
    )
