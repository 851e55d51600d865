"""``aloe run``: the recipe's stages wired to the runner.

data -> sft -> merge -> dpo (general, then safety) -> safety (before and after alignment) -> eval (log-likelihood
on every model, Medprompt on one) -> report. :mod:`aloekit.recipe.runner` skips finished stages whose inputs did not
change and resumes a killed one; inside a stage, every step resumes too (finished parts are kept, training
continues from its last checkpoint, evaluations from their caches).

Layout of the run folder::

    recipe.yaml                 the recipe as written; recipe.resolved.json: as run (placeholders, defaults)
    data/     holdout/ sft/ letters/ prefs_general/ prefs_safety/ cot_db/
    sft/      train/            aloe train sft's folder (train/model: the SFT model)
              letters/          the letter phase's, when the recipe has one (letters/model: the stage's model)
    merge/    merge.yaml model/
    dpo/      train/            aloe train dpo's folder (train/general/model, train/safety/model); prefs_general/
                                when its pairs come from the merged model's answers (on-policy)
    eval/     <model>/          aloe eval's results per model (letter); cloze/<model>/, generative/<model>/,
              medprompt/, ablation/
    safety/   <model>/          aloe safety's results per model
    report/   report.html report.md summary.json
    <stage>/manifest.json       status, input and output hashes, versions, seed, times
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aloekit.config import MCQAConfig
from aloekit.evaluation.mcqa import load_benchmarks
from aloekit.evaluation.redteam import load_suite
from aloekit.io import atomic_write_text, write_json
from aloekit.recipe.config import RecipeConfig
from aloekit.recipe.evalsets import evaluation_sets, registered_evals
from aloekit.recipe.runner import JSONDict, Stage, StageContext, run_stages
from aloekit.recipe.stages import data, dpo, evaluate, merge, report, safety, sft
from aloekit.recipe.stages.models import model_paths
from aloekit.recipe.summary import RunOutputs

__all__ = ["STAGES", "build_stages", "run_recipe"]

# Safety runs before the benchmarks: it is the release gate, and the shorter of the two, so a run cut short (or
# killed and resumed later) has the alignment verdict first.
STAGES = ("data", "sft", "merge", "dpo", "safety", "eval", "report")


def build_stages(recipe: RecipeConfig, text: str, recipe_path: Path) -> list[Stage[Any]]:
    """The recipe's stages, each with its own config section (its input hash), the stages it reads, and how its
    typed inputs are made from the recipe and their outputs."""
    dump = recipe.model_dump(mode="json")
    common = {"seed": recipe.seed, "models": dump["models"], "data_dir": dump["data_dir"]}
    engine = {"engine": dump["engine"]}

    def data_out(ctx: StageContext) -> data.DataOutputs:
        return ctx.outputs("data", data.DataOutputs)

    def paths(ctx: StageContext) -> dict[str, str]:
        def get(name: str, kind: type[Any]) -> Any:
            return ctx.outputs(name, kind) if name in ctx.upstream else None

        return model_paths(
            recipe, get("sft", sft.SFTOutputs), get("merge", merge.MergeOutputs), get("dpo", dpo.DPOOutputs)
        )

    def report_inputs(ctx: StageContext) -> RunOutputs:
        return RunOutputs(
            recipe=recipe,
            text=text,
            recipe_path=recipe_path,
            data=data_out(ctx),
            sft=ctx.outputs("sft", sft.SFTOutputs),
            merge=ctx.outputs("merge", merge.MergeOutputs),
            dpo=ctx.outputs("dpo", dpo.DPOOutputs),
            safety=ctx.outputs("safety", safety.SafetyOutputs),
            eval=ctx.outputs("eval", evaluate.EvalOutputs),
            seconds={name: finished.seconds for name, finished in ctx.upstream.items()},
        )

    # The config of each stage is what enters its input hash: kept as it was, so run folders made before stay
    # up to date. Decontamination depends on what is evaluated (the names, not how many questions or settings).
    return [
        Stage(
            "data",
            lambda ctx: data.run(data.DataInputs(recipe), ctx),
            data.DataOutputs,
            {**common, "data": dump["data"], "evaluated": evaluation_sets(recipe)},
        ),
        Stage(
            "sft",
            lambda ctx: sft.run(sft.SFTInputs(recipe, data_out(ctx)), ctx),
            sft.SFTOutputs,
            # The letter phase enters the hash only when there is one: run folders made before stay up to date.
            {**common, "sft": dump["sft"], "launcher": dump["launcher"]}
            | ({"letters": dump["letters"]} if recipe.letters is not None else {}),
            ("data",),
        ),
        Stage(
            "merge",
            lambda ctx: merge.run(merge.MergeInputs(recipe, ctx.outputs("sft", sft.SFTOutputs)), ctx),
            merge.MergeOutputs,
            {**common, "merge": dump["merge"]},
            ("sft",),
        ),
        Stage(
            "dpo",
            lambda ctx: dpo.run(dpo.DPOInputs(recipe, data_out(ctx), ctx.outputs("merge", merge.MergeOutputs)), ctx),
            dpo.DPOOutputs,
            # On-policy pairs are built here, so their config enters this stage's hash (only then: other run
            # folders stay up to date).
            {**common, "dpo": dump["dpo"], "launcher": dump["launcher"]}
            | ({"prefs_general": dump["data"]["prefs_general"]} if recipe.data.general_on_policy else {}),
            ("data", "merge"),
        ),
        Stage(
            "safety",
            lambda ctx: safety.run(safety.SafetyInputs(recipe, paths(ctx)), ctx),
            safety.SafetyOutputs,
            {**common, **engine, "safety": dump["safety"]},
            ("merge", "dpo"),
        ),
        Stage(
            "eval",
            lambda ctx: evaluate.run(evaluate.EvalInputs(recipe, paths(ctx), data_out(ctx).cot_db), ctx),
            evaluate.EvalOutputs,
            {**common, **engine, "eval": dump["eval"]},
            ("data", "sft", "merge", "dpo"),
        ),
        Stage(
            "report",
            lambda ctx: report.run(report_inputs(ctx), ctx),
            report.ReportOutputs,
            {"recipe": dump},
            ("data", "sft", "merge", "dpo", "safety", "eval"),
        ),
    ]


def run_recipe(
    recipe: RecipeConfig,
    text: str,
    recipe_path: Path,
    folder: Path,
    *,
    from_stage: str | None = None,
    only: str | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, JSONDict]:
    """Run (or resume) the recipe in ``folder``; return the manifest of every stage run or found finished."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "recipe.yaml", text)
    write_json(folder / "recipe.resolved.json", recipe.model_dump(mode="json"))
    _preflight(recipe)
    stages = build_stages(recipe, text, recipe_path)
    return run_stages(stages, folder, seed=recipe.seed, from_stage=from_stage, only=only, log=log)


def _preflight(recipe: RecipeConfig) -> None:
    """Check now what would otherwise fail after the training stages: an engine whose library is missing, and the
    recipe's registered benchmarks and safety suites in the data folder (read now: a missing or malformed file
    fails in seconds; from the Hub they are read when evaluated)."""
    engines = [recipe.engine, recipe.safety.generation_engine]
    if recipe.eval.medprompt.enabled:
        engines.append(recipe.eval.medprompt.generation_engine)
    if any(e is not None and e.backend == "llamacpp" for e in engines):
        from aloekit.engines.llamacpp import import_llama_cpp

        import_llama_cpp()  # the one-line install hint, before an hour of training
    if recipe.data_dir is None:
        return
    registered = registered_evals(recipe)
    if registered:
        load_benchmarks(MCQAConfig(benchmarks=tuple(registered), data_dir=recipe.data_dir))
    for suite in recipe.safety.suites:
        if not suite.startswith("file:"):
            load_suite(suite, recipe.data_dir)
