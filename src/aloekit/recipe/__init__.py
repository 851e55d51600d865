"""The recipe package behind ``aloe run``: one YAML file takes a base model through data, SFT, merge, two DPO
stages, safety and evaluation to a report.

- :mod:`~aloekit.recipe.config`: the pydantic :class:`RecipeConfig` and its sections;
  :mod:`~aloekit.recipe.load`: reading a recipe file (placeholders, data folder, file checks);
- :mod:`~aloekit.recipe.runner`: the stage runner (manifests, skip, resume, ``--from``, ``--only``);
- :mod:`~aloekit.recipe.stages`: one module per stage, typed inputs to typed outputs;
- :mod:`~aloekit.recipe.run`: the stages wired for a recipe; :mod:`~aloekit.recipe.plan`: ``--dry-run``;
- :mod:`~aloekit.recipe.summary`: what the report shows, gathered from the stages' outputs.

Only the config and the loader are imported here, so reading a recipe does not load the stages' libraries.
"""

from aloekit.recipe.config import MODEL_STAGES, EvalSection, RecipeConfig, SafetySection, merge_config
from aloekit.recipe.load import load_recipe, placeholders

__all__ = [
    "MODEL_STAGES",
    "EvalSection",
    "RecipeConfig",
    "SafetySection",
    "load_recipe",
    "merge_config",
    "placeholders",
]
