"""The recipe's models by label (base, sft, merged, dpo_general, dpo_safety) as the stages made them, and the
engine that serves one of them to the evaluation stages."""

from __future__ import annotations

from typing import Any

from aloekit import models
from aloekit.config import EngineConfig
from aloekit.engines import Engine
from aloekit.engines.split import SplitEngine
from aloekit.recipe.config import RecipeConfig
from aloekit.recipe.stages.dpo import DPOOutputs
from aloekit.recipe.stages.merge import MergeOutputs
from aloekit.recipe.stages.sft import SFTOutputs

__all__ = ["load_engine", "model_paths"]


def model_paths(
    recipe: RecipeConfig,
    sft: SFTOutputs | None = None,
    merge: MergeOutputs | None = None,
    dpo: DPOOutputs | None = None,
) -> dict[str, str]:
    """Every recipe model by label, as far as the run has them: the base as the recipe names it (an alias, a Hub
    id or a folder), the others as their stage's folder."""
    paths = {"base": recipe.models.base}
    if sft is not None:
        paths["sft"] = str(sft.model)
    if merge is not None:
        paths["merged"] = str(merge.model)
    if dpo is not None:
        paths["dpo_general"] = str(dpo.dpo_general)
        paths["dpo_safety"] = str(dpo.dpo_safety)
    return paths


def load_engine(
    recipe: RecipeConfig, model: str, seed: int, generation: EngineConfig | None = None
) -> tuple[Engine, dict[str, Any]]:
    """The recipe's engine on ``model`` (the caller closes it), and the model's record for results.json.

    With ``generation`` (a section's ``generation_engine``) set, generation runs there and scoring on the recipe's
    engine; the record's fingerprint then names the generator too, so cached generations of one engine are never
    served as another's."""
    update = {"model": model, "seed": seed}
    config = recipe.engine.model_copy(update=update)
    options = {"allow_pickle": recipe.models.allow_pickle, "trust_remote_code": recipe.models.trust_remote_code}
    engine: Engine = config.load(**options)
    record = models.record(model, config.backend, **options)
    if generation is not None:
        generation = generation.model_copy(update=update)
        try:
            engine = SplitEngine(engine, generation.load(**options))
        except BaseException:
            engine.close()
            raise
        record["generation_backend"] = generation.backend
        record["fingerprint"] += f"+generation:{generation.backend}:{generation.dtype}"
    return engine, record
