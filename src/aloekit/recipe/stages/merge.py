"""The merge stage: the SFT model merged with the base and instruct models by the recipe's mergekit config
(``merge/merge.yaml``, the model in ``merge/model``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from aloekit.io import atomic_write_text
from aloekit.recipe.config import RecipeConfig, merge_config
from aloekit.recipe.runner import StageContext, StageOutputs
from aloekit.recipe.stages.sft import SFTOutputs

__all__ = ["MergeInputs", "MergeOutputs", "run"]


@dataclass(frozen=True)
class MergeInputs:
    recipe: RecipeConfig
    sft: SFTOutputs


class MergeOutputs(StageOutputs):
    model: Path


def run(inputs: MergeInputs, ctx: StageContext) -> MergeOutputs:
    # Deferred: the merge imports torch, which reading, planning or dry-running a recipe does not need.
    from aloekit.merge.run import merge

    recipe = inputs.recipe
    model = ctx.folder / "model"
    if not (model / "config.json").is_file():
        spec = merge_config(recipe.merge, base=recipe.models.base, instruct=recipe.instruct, sft=str(inputs.sft.model))
        path = ctx.folder / "merge.yaml"
        atomic_write_text(path, yaml.safe_dump(spec, sort_keys=False))
        merge(
            path,
            model,
            seed=ctx.seed,
            overwrite=True,
            allow_pickle=recipe.models.allow_pickle,
            trust_remote_code=recipe.models.trust_remote_code,
        )
    return MergeOutputs(model=model)
