"""The eval stage: every recipe model scored on the benchmarks (letter log-likelihood; cloze and generative for the
models asked), then Medprompt and its ablation ladder on one model.

Layout: ``eval/<model>/`` (letter), ``eval/cloze/<model>/``, ``eval/generative/<model>/``, ``eval/medprompt/``,
``eval/ablation/``; each holds aloe eval's ``results.json`` and ``samples.jsonl``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import Field

from aloekit.config import MCQAConfig
from aloekit.engines import Engine
from aloekit.evaluation.mcqa import Loaded, evaluate, load_benchmarks
from aloekit.prompting.ablation import STEPS, run_ablation, step_dir
from aloekit.recipe.config import RecipeConfig
from aloekit.recipe.runner import StageContext, StageOutputs
from aloekit.recipe.stages.models import load_engine

__all__ = ["EvalInputs", "EvalOutputs", "run"]

Formulation = Literal["loglik", "cloze", "generative"]
FORMULATIONS: tuple[Formulation, ...] = ("loglik", "cloze", "generative")
"""The eval stage's outputs keyed by formulation, each ``{model label: results.json path}``."""


@dataclass(frozen=True)
class EvalInputs:
    recipe: RecipeConfig
    models: dict[str, str]
    """Recipe model label -> model reference or folder (:func:`aloekit.recipe.stages.models.model_paths`)."""
    cot_db: Path | None = None
    """Medprompt's database, from the data stage."""


class EvalOutputs(StageOutputs):
    loglik: dict[str, Path] = Field(default_factory=dict)
    cloze: dict[str, Path] = Field(default_factory=dict)
    generative: dict[str, Path] = Field(default_factory=dict)
    medprompt: Path | None = None
    ablation: Path | None = None

    def formulation(self, name: Formulation) -> dict[str, Path]:
        return {"loglik": self.loglik, "cloze": self.cloze, "generative": self.generative}[name]


class _EvalPart(NamedTuple):
    kind: Formulation
    """The key of the stage's outputs it is listed under."""
    label: str
    out: Path
    config: MCQAConfig
    cache: Path | None = None
    """Request cache shared with another part of the same model (default: the part's own ``cache.jsonl``)."""


def _eval_parts(recipe: RecipeConfig, folder: Path, base: MCQAConfig) -> list[_EvalPart]:
    """Every evaluation of the eval stage, most informative first: letter log-likelihood for the full models
    (base and final), then for the stages between, then cloze, then generative. A run cut short has the headline
    comparison first; consecutive parts of one model share its engine.

    ``base`` is the letter log-likelihood config every part starts from. Letter results go to ``<label>/`` (a
    seeded subset of each benchmark for models outside ``full_models`` when ``subset`` is set), cloze ones to
    ``cloze/<label>/`` (every question), generative ones to ``generative/<label>/`` (``generative.limit``: a
    seeded subset).
    """
    section, generative = recipe.eval, recipe.eval.generative

    def variant(**update: Any) -> MCQAConfig:
        return MCQAConfig.model_validate({**base.model_dump(), **update})

    sampled = variant(subset=section.subset)
    cloze = variant(formulation="cloze")
    answer = variant(mode="generate", max_tokens=generative.max_tokens, subset=generative.limit, num_fewshot=0)
    full = [label for label in section.models if section.subset is None or label in section.full_models]
    parts = [_EvalPart("loglik", label, folder / label, base) for label in full]
    parts += [_EvalPart("loglik", label, folder / label, sampled) for label in section.models if label not in full]
    # A cloze part reads and extends its model's full letter cache: benchmarks whose letter prompt already scores
    # the option texts (PubMedQA's yes / no / maybe) ask the very same requests, scored once instead of twice.
    parts += [
        _EvalPart(
            "cloze", label, folder / "cloze" / label, cloze, folder / label / "cache.jsonl" if label in full else None
        )
        for label in section.cloze_models
    ]
    parts += [_EvalPart("generative", label, folder / "generative" / label, answer) for label in generative.models]
    return parts


def run(inputs: EvalInputs, ctx: StageContext) -> EvalOutputs:
    recipe, paths = inputs.recipe, inputs.models
    section = recipe.eval
    config = MCQAConfig(
        benchmarks=section.benchmarks,
        data_dir=recipe.data_dir,
        limit=section.limit,
        num_fewshot=section.num_fewshot,
        seed=ctx.seed,
    )
    loaded = load_benchmarks(config)  # a missing benchmark file fails before any model loads
    zero_shot: Loaded = {name: (items, []) for name, (items, _) in loaded.items()}
    parts = _eval_parts(recipe, ctx.folder, config)
    # A part is done when its results.json exists; an unfinished one resumes from its cache.jsonl.
    todo = [part for part in parts if not (part.out / "results.json").is_file()]
    engine: Engine | None = None
    loaded_label: str | None = None
    record: dict[str, Any] = {}
    try:
        for part in todo:
            label = part.label
            if label != loaded_label or engine is None:  # consecutive parts of one model share its engine
                if engine is not None:
                    engine.close()
                engine, loaded_label = None, None
                engine, record = load_engine(recipe, paths[label], ctx.seed)
                loaded_label = label
            ctx.log(f"eval: {label} ({paths[label]})" + ("" if part.kind == "loglik" else f", {part.kind}"))
            shots = loaded if part.config.num_fewshot else zero_shot
            evaluate(engine, part.config, part.out, model=record, loaded=shots, cache_path=part.cache)
    finally:
        if engine is not None:
            engine.close()
    results: dict[Formulation, dict[str, Path]] = {kind: {} for kind in FORMULATIONS}
    for part in parts:
        results[part.kind][part.label] = part.out / "results.json"
    medprompt, ablation = _medprompt(inputs, ctx) if section.medprompt.enabled else (None, None)
    return EvalOutputs(**results, medprompt=medprompt, ablation=ablation)


def _medprompt(inputs: EvalInputs, ctx: StageContext) -> tuple[Path, Path | None]:
    """Medprompt on its model, and the ablation ladder when asked: (results.json, ablation.json or None)."""
    recipe = inputs.recipe
    section = recipe.eval.medprompt
    settings = section.settings.model_copy(update={"database": inputs.cot_db})
    config = MCQAConfig(
        benchmarks=section.benchmarks or recipe.eval.benchmarks,
        mode="medprompt",
        medprompt=settings,
        data_dir=recipe.data_dir,
        limit=section.limit or recipe.eval.limit,
        seed=ctx.seed,
    )
    ladder = ctx.folder / "ablation"
    # The ladder's last step is Medprompt itself when the settings are kNN + CoT: its result is the Medprompt
    # result, instead of the same generations a second time.
    last_step = step_dir(ladder, len(STEPS) - 1) / "results.json"
    same = section.ablation and settings.examples == "knn" and settings.cot
    out = ctx.folder / "medprompt"
    need_run = not same and not (out / "results.json").is_file()
    need_ladder = section.ablation and not (ladder / "ablation.json").is_file()
    if need_run or need_ladder:
        engine, record = load_engine(recipe, inputs.models[section.model], ctx.seed, section.generation_engine)
        try:
            if need_run:
                ctx.log(f"eval: Medprompt on {section.model}")
                evaluate(engine, config, out, model=record)
            if need_ladder:
                ctx.log(f"eval: the Medprompt ladder on {section.model}")
                run_ablation(engine, config, ladder, model=record, progress=sys.stderr.isatty(), log=ctx.log)
        finally:
            engine.close()
    return (last_step if same else out / "results.json"), (ladder / "ablation.json" if section.ablation else None)
