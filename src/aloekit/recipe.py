"""The recipe: one YAML file that takes a base model through data, SFT, merge, two DPO stages, evaluation and
safety to a report (``aloe run RECIPE.yaml``).

Each section reuses the config of the stage it drives (the mixture, preference, SFT, DPO, mergekit and Medprompt
configs), minus what the recipe wires itself: which model a stage starts from, which dataset it reads and where it
writes. A recipe is plain YAML with a few placeholders, replaced before it is read:

``{demo_data}``     the demo corpus shipped inside the package (aloekit/demo_data)
``{data_dir}``      the recipe's ``data_dir`` (or ``aloe run --data-dir``)
``{run}``           the run folder
``{holdout}``       the folder of ``data.holdout``'s files: ``NAME-train.jsonl`` and ``NAME-eval.jsonl``

and, in the ``merge`` section only, ``{base}``, ``{instruct}`` and ``{sft}``: the models being merged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model, field_validator, model_validator

from aloekit.config import EngineConfig, MedpromptSettings, _Config, node_line, read_yaml, validation_message
from aloekit.data.mixture import MixtureConfig, SourceEntry
from aloekit.data.prefs_build import PrefsConfig
from aloekit.errors import UserError
from aloekit.safety.styles import DEFAULT_STYLES
from aloekit.train.dpo import DPORunConfig, DPOStage
from aloekit.train.sft import SFTRunConfig

__all__ = ["MODEL_STAGES", "RecipeConfig", "load_recipe", "placeholders"]

MODEL_STAGES = ("base", "sft", "merged", "dpo_general", "dpo_safety")
"""The recipe's models, in order: the start, after SFT, after the merge, after each DPO stage."""

ModelLabel = Literal["base", "sft", "merged", "dpo_general", "dpo_safety"]


def _without(cls: type[BaseModel], name: str, *dropped: str) -> Any:
    """``cls``'s fields minus ``dropped`` (the ones the recipe wires), as a new strict config class."""
    fields: dict[str, Any] = {n: (f.annotation, f) for n, f in cls.model_fields.items() if n not in dropped}
    return create_model(name, __base__=_Config, __doc__=cls.__doc__, **fields)


SFTSettings = _without(SFTRunConfig, "SFTSettings", "model", "dataset", "out", "allow_pickle", "trust_remote_code")
DPOSettings = _without(DPORunConfig, "DPOSettings", "model", "out", "stages", "allow_pickle", "trust_remote_code")
DPOStageSettings = _without(DPOStage, "DPOStageSettings", "name", "dataset")


class ModelsSettings(_Config):
    base: str = Field(description="The model SFT starts from (alias, folder, .gguf or Hub id).")
    instruct: str | None = Field(
        None, description="The vendor's instruct model, merged with the SFT model (default: the base model)."
    )
    allow_pickle: bool = Field(False, description="Allow pickle (.bin) weights. Off: safetensors only.")
    trust_remote_code: bool = Field(False, description="Run model code from the Hub. Off unless you opt in.")


class HoldoutSettings(_Config):
    """Carve an evaluation set out of a local file before anything trains on it (the demo corpus has no official
    test split). The data stage writes ``{holdout}/<name>-train.jsonl`` and ``{holdout}/<name>-eval.jsonl``;
    recipe evaluation sets given by path are added to every decontamination check automatically."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Name of the two files ({holdout}/NAME-eval.jsonl).")
    path: Path = Field(description="A JSON-lines or CSV (with header) file (MCQ items, requests...).")
    fraction: float = Field(0.25, gt=0, lt=1, description="Share of the rows held out for evaluation.")
    seed: int = Field(0, description="Seed of the split (stratified by subject or category when rows have one).")
    label: str | None = Field(
        None,
        description="Written as 'label' on the held-out rows, e.g. 'safe' for harmless look-alikes, which makes "
        "them an over-refusal suite for the safety stage.",
    )
    rename: dict[str, str] = Field(
        {},
        description="Columns renamed in both files, e.g. {goal: prompt, target: harmful_response} for AdvBench's "
        "CSV, so the held-out rows read as a safety suite (request in 'prompt') and the rest as training requests.",
    )


class CoTDatabaseSettings(_Config):
    """The Medprompt chain-of-thought database (``aloe medprompt db``): verified reasoning only."""

    sources: tuple[SourceEntry, ...] = Field(
        (), description="MCQ sources whose expert explanations agree with the key (the explanation is the CoT)."
    )
    cot: tuple[Path, ...] = Field((), description="Verified chain-of-thought files from aloe data cot.")
    embedder: str | None = Field(None, description="sentence-transformers model (default: all-MiniLM-L6-v2).")
    exclude: tuple[str, ...] = Field((), description="Evaluation sets deliberately not checked for overlap.")

    @model_validator(mode="after")
    def _something(self) -> CoTDatabaseSettings:
        if not self.sources and not self.cot:
            raise ValueError("give sources (MCQ with explanations) and/or cot (verified chain-of-thought files)")
        return self


class DataSection(_Config):
    holdout: tuple[HoldoutSettings, ...] = Field((), description="Hold out part of local files for evaluation.")
    mixture: MixtureConfig = Field(description="The SFT mixture (aloe data build's config).")
    prefs_general: PrefsConfig = Field(description="Preference pairs of DPO stage 1 (general, medical).")
    prefs_safety: PrefsConfig = Field(description="Preference pairs of DPO stage 2 (red-teaming safety).")
    cot_db: CoTDatabaseSettings | None = Field(None, description="Medprompt's database (needed by eval.medprompt).")


class Launcher(_Config):
    """How the training stages run: in this process, or under ``accelerate launch`` (multi-GPU, DeepSpeed/FSDP)."""

    accelerate_config: Path | None = Field(
        None, description="An accelerate config (recipes/accelerate/*.yaml); None trains in this process."
    )
    num_processes: int | None = Field(None, ge=1, description="Processes (GPUs) for accelerate launch.")


class DPOSection(_Config):
    settings: DPOSettings = Field(default_factory=dict, description="Shared DPO settings (aloe train dpo's config).")  # type: ignore[valid-type]
    general: DPOStageSettings = Field(default_factory=dict, description="Stage 1: general preference data.")  # type: ignore[valid-type]
    safety: DPOStageSettings = Field(default_factory=dict, description="Stage 2: red-teaming safety data.")  # type: ignore[valid-type]


class MedpromptSection(_Config):
    enabled: bool = Field(True, description="Evaluate the final model with Medprompt.")
    model: ModelLabel = Field("dpo_safety", description="Which recipe model Medprompt runs on.")
    benchmarks: tuple[str, ...] | None = Field(None, description="Default: the eval benchmarks.")
    limit: int | None = Field(None, ge=1, description="First N questions of each benchmark (default: eval.limit).")
    settings: MedpromptSettings = Field(
        default_factory=MedpromptSettings, description="Medprompt settings; the database is the data stage's."
    )
    ablation: bool = Field(False, description="Also run the ladder zero-shot -> ... -> ensemble on the same model.")

    @field_validator("benchmarks")
    @classmethod
    def _known(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else _known_benchmarks(value)


def _known_benchmarks(names: tuple[str, ...]) -> tuple[str, ...]:
    """The names, each a registered benchmark, a group or file:PATH: checked here so that a typo fails when the
    recipe is read (and in --dry-run), not when the eval stage starts after hours of training."""
    # Deferred: the benchmark registry imports the data package, which is not needed to define the recipe.
    from aloekit.evaluation.benchmarks import FILE_PREFIX, GROUPS, REGISTRY

    for name in names:
        if not name.startswith(FILE_PREFIX) and name not in REGISTRY and name not in GROUPS:
            known = ", ".join([*REGISTRY, *GROUPS])
            raise ValueError(f"unknown benchmark '{name}': choose from {known}, or file:PATH")
    return names


class GenerativeSection(_Config):
    """Generative scoring (``aloe eval --mode generate``): the model answers in its chat template, asked to reply
    'Answer: X'; the letter is read from its text, and unreadable answers are counted wrong and reported."""

    models: tuple[ModelLabel, ...] = Field((), description="Recipe models also scored generatively (none: off).")
    max_tokens: int = Field(16, ge=1, description="Most new tokens per answer.")
    limit: int | None = Field(
        None,
        ge=1,
        description="A seeded random subset of N questions per benchmark (drawn with the recipe seed, the same for "
        "every model; after eval.limit); None: every question.",
    )


class EvalSection(_Config):
    benchmarks: tuple[str, ...] = Field(description="Benchmarks or groups (file:PATH for a file of one's own).")
    if_present: tuple[str, ...] = Field(
        (),
        description="Benchmarks evaluated only when their files are in data_dir (held-out test sets kept "
        "elsewhere, e.g. MedQA's test split); a missing one is listed in skipped and in the report.",
    )
    skipped: tuple[str, ...] = Field((), description="Set by aloe run: if_present benchmarks whose files are absent.")
    models: tuple[ModelLabel, ...] = Field(
        MODEL_STAGES, description="Recipe models scored by log-likelihood, letter formulation (eval/<model>/)."
    )
    limit: int | None = Field(None, ge=1, description="First N questions of each benchmark.")
    subset: int | None = Field(
        None,
        ge=1,
        description="models not in full_models answer a random subset of N questions per benchmark, drawn with the "
        "recipe seed (the same questions for each of them; after limit; a smaller benchmark is taken whole); "
        "None: every model answers every question.",
    )
    full_models: tuple[ModelLabel, ...] = Field(
        ("base", "dpo_safety"), description="Models that answer every question even when subset is set."
    )
    cloze_models: tuple[ModelLabel, ...] = Field(
        (),
        description="Models also scored in the cloze formulation (option texts, headline acc_norm; every question "
        "up to limit) into eval/cloze/<model>/.",
    )
    generative: GenerativeSection = Field(
        default_factory=GenerativeSection,
        description="Models also scored generatively ('Answer: X' read from the reply) into eval/generative/<model>/.",
    )
    num_fewshot: int = Field(0, ge=0, description="Solved examples before each question (log-likelihood).")
    medprompt: MedpromptSection = Field(default_factory=MedpromptSection, description="Medprompt on one model.")

    @field_validator("benchmarks", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else value

    @field_validator("benchmarks")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known_benchmarks(value)


class SafetySection(_Config):
    models: tuple[ModelLabel, ...] = Field(
        ("merged", "dpo_safety"), description="Models red-teamed: before and after alignment."
    )
    suites: tuple[str, ...] = Field(("advbench", "xstest"), description="Suites (aloe safety --suites).")
    if_present: tuple[str, ...] = Field(
        (), description="Suites used only when their files are in data_dir (e.g. HarmBench's test split)."
    )
    skipped: tuple[str, ...] = Field((), description="Set by aloe run: if_present suites whose files are absent.")
    styles: tuple[str, ...] = Field(DEFAULT_STYLES, description="Attack styles (aloekit.safety.styles).")
    limit: int | None = Field(25, ge=1, description="Prompts sampled per suite (seeded, the same for every model).")
    full_models: tuple[ModelLabel, ...] | None = Field(
        None,
        description="When set, only these models get every prompt of ``limit``; the others get the fixed seeded "
        "sample of ``subset`` prompts per suite (the same for each of them), and no BBQ or TruthfulQA, to save "
        "time on intermediate models.",
    )
    subset: int | None = Field(None, ge=1, description="Prompts per suite for models outside full_models.")
    max_tokens: int = Field(256, ge=1, description="Most new tokens per reply.")
    judge: str = Field("offline", description="offline (rules) or llm:REF (a model judging with the rubric).")
    bias: bool = Field(False, description="Also BBQ (needs data_dir).")
    bbq_limit: int | None = Field(100, ge=1, description="BBQ questions sampled per category.")
    truthfulness: bool = Field(False, description="Also TruthfulQA MC1/MC2.")
    truthfulqa_limit: int | None = Field(None, ge=1, description="TruthfulQA: only the first N questions.")

    @field_validator("suites")
    @classmethod
    def _known_suites(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from aloekit.evaluation.redteam import SUITES  # deferred, as in _known_benchmarks

        for name in value:
            if not name.startswith("file:") and name not in SUITES:
                raise ValueError(f"unknown suite '{name}': choose from {', '.join(SUITES)}, or file:PATH")
        return value

    @field_validator("styles")
    @classmethod
    def _known_styles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from aloekit.safety.styles import STYLES

        for name in value:
            if name not in STYLES:
                raise ValueError(f"unknown attack style '{name}': choose from {', '.join(STYLES)}")
        return value

    @field_validator("judge")
    @classmethod
    def _judge(cls, value: str) -> str:
        if value != "offline" and not value.startswith("llm:"):
            raise ValueError(f"judge {value}: use offline or llm:REF (a model reference)")
        return value


class RecipeConfig(_Config):
    """An ``aloe run`` recipe: every stage of the Aloe recipe, from one file."""

    name: str = Field(description="The recipe's name (report title, model card).")
    seed: int = Field(0, description="Seed of every stage (data order, DARE, sampling, bootstrap).")
    data_dir: Path | None = Field(None, description="Folder laid out like shared/data; None: the Hub.")
    models: ModelsSettings
    engine: EngineConfig = Field(
        default_factory=EngineConfig,
        description="Engine for generation and scoring in eval and safety (its model is set per stage): hf, vllm or "
        "llamacpp.",
    )
    launcher: Launcher = Field(default_factory=Launcher, description="How SFT and DPO run (in process / accelerate).")
    data: DataSection
    sft: SFTSettings = Field(description="SFT settings (aloe train sft's config without model, dataset, out).")  # type: ignore[valid-type]
    merge: dict[str, Any] = Field(
        description="A mergekit config (DARE-TIES in the Aloe paper) over {base}, {instruct} and {sft}."
    )
    dpo: DPOSection = Field(default_factory=DPOSection)
    eval: EvalSection
    safety: SafetySection = Field(default_factory=SafetySection)

    @model_validator(mode="after")
    def _consistent(self) -> RecipeConfig:
        from aloekit.merge.config import MergeConfig

        try:
            MergeConfig.model_validate(merge_config(self.merge, base="b", instruct="i", sft="s"))
        except ValueError as e:
            raise ValueError(f"merge: {str(e).splitlines()[0]}") from e
        if self.eval.medprompt.enabled and self.eval.medprompt.settings.shots and self.data.cot_db is None:
            raise ValueError("eval.medprompt needs data.cot_db (its few-shot examples), or settings.examples: none")
        if self.safety.bias and self.data_dir is None:
            raise ValueError("safety.bias reads BBQ from the data folder: set data_dir")
        return self

    @property
    def instruct(self) -> str:
        return self.models.instruct or self.models.base


def merge_config(template: dict[str, Any], *, base: str, instruct: str, sft: str) -> dict[str, Any]:
    """The recipe's merge section with its model placeholders filled in."""
    names = {"{base}": base, "{instruct}": instruct, "{sft}": sft}

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            for key, replacement in names.items():
                value = value.replace(key, replacement)
            return value
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return fill(template)


def placeholders(run: Path, data_dir: Path | None) -> dict[str, str]:
    """The path placeholders of a recipe run in folder ``run``."""
    demo = Path(__file__).parent / "demo_data"
    values = {
        "demo_data": str(demo),
        "run": str(run),
        "holdout": str(run / "data" / "holdout"),
    }
    if data_dir is not None:
        values["data_dir"] = str(data_dir)
    return values


_PLACEHOLDER = re.compile(r"\{(demo_data|data_dir|run|holdout)\}")


def load_recipe(path: Path, *, run: Path | None = None, data_dir: Path | None = None) -> tuple[RecipeConfig, str, Path]:
    """Read a recipe; return it (placeholders filled), its text as written, and the run folder.

    The run folder is ``run`` if given, else ``runs/<name>`` next to the current directory. ``data_dir``
    overrides the recipe's (and every section's) data folder. Any problem is one UserError naming the file, the
    line and the key.
    """
    from aloekit.config import read_config_text

    text = read_config_text(path, "recipe")
    data, _ = read_yaml(text, str(path))
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe is a mapping of keys ({', '.join(RecipeConfig.model_fields)})")
    name = str(data.get("name") or path.stem)
    folder = (run or Path("runs") / name).expanduser().absolute()
    if data_dir is not None and not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a folder")
    recipe_dir = data.get("data_dir")
    if data_dir is None and isinstance(recipe_dir, str) and "{" not in recipe_dir:
        # A relative data_dir is relative to the recipe file, so a recipe runs the same from any directory.
        data_dir = (path.parent / recipe_dir).resolve() if not Path(recipe_dir).is_absolute() else Path(recipe_dir)
    values = placeholders(folder, data_dir)

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise UserError(f"{path}: {{{key}}} is used but no data_dir is set: add data_dir or pass --data-dir")
        return values[key]

    filled_text = _PLACEHOLDER.sub(fill, text)
    filled, root = read_yaml(filled_text, str(path))
    filled["data_dir"] = str(data_dir) if data_dir is not None else None
    launcher = filled.get("launcher")
    if isinstance(launcher, dict) and isinstance(launcher.get("accelerate_config"), str):
        # Relative to the recipe file, like data_dir: recipes/aloe-8b.yaml names accelerate/deepspeed_zero3.yaml.
        launcher["accelerate_config"] = str((path.parent / launcher["accelerate_config"]).resolve())
    data_section = filled.get("data")
    if data_dir is not None and isinstance(data_section, dict):
        for key in ("mixture", "prefs_general", "prefs_safety"):
            if isinstance(data_section.get(key), dict):
                data_section[key]["data_dir"] = str(data_dir)
    from pydantic import ValidationError

    try:
        recipe = RecipeConfig.model_validate(filled)
    except ValidationError as e:
        raise UserError(validation_message(e, RecipeConfig, str(path), root)) from e
    _check_files(recipe, path, root, folder)
    return _with_present(recipe), text, folder


def _paths(value: Any, loc: list[int | str]) -> Iterator[tuple[list[int | str], str]]:
    """(location, value) of every ``path`` key in a dumped config (data sources, preference pairs...)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "path" and isinstance(item, (str, Path)):
                yield [*loc, key], str(item)
            else:
                yield from _paths(item, [*loc, key])
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _paths(item, [*loc, index])


def _with_present(recipe: RecipeConfig) -> RecipeConfig:
    """The recipe with its ``if_present`` benchmarks and suites added where the data folder holds their files
    (all of them when the data comes from the Hub), and the others listed as skipped."""
    from aloekit.evaluation import benchmarks
    from aloekit.evaluation.redteam import SUITES

    data_dir = recipe.data_dir

    def bench_present(name: str) -> bool:
        if name not in benchmarks.REGISTRY:
            raise UserError(
                f"eval.if_present: unknown benchmark '{name}': choose from {', '.join(benchmarks.REGISTRY)}"
            )
        local = benchmarks.REGISTRY[name].local
        return data_dir is None or (local is not None and (data_dir / local).is_file())

    def suite_present(name: str) -> bool:
        if name not in SUITES:
            raise UserError(f"safety.if_present: unknown suite '{name}': choose from {', '.join(SUITES)}")
        return data_dir is None or any(any(data_dir.glob(pattern)) for pattern in SUITES[name].files)

    ev, sa = recipe.eval, recipe.safety
    eval_present = [n for n in ev.if_present if bench_present(n)]
    suites_present = [n for n in sa.if_present if suite_present(n)]
    return recipe.model_copy(
        update={
            "eval": ev.model_copy(
                update={
                    "benchmarks": tuple(dict.fromkeys([*ev.benchmarks, *eval_present])),
                    "skipped": tuple(n for n in ev.if_present if n not in eval_present),
                }
            ),
            "safety": sa.model_copy(
                update={
                    "suites": tuple(dict.fromkeys([*sa.suites, *suites_present])),
                    "skipped": tuple(n for n in sa.if_present if n not in suites_present),
                }
            ),
        }
    )


def _check_files(recipe: RecipeConfig, path: Path, root: Any, run: Path) -> None:
    """Files a recipe names that must exist before the run starts (and not an hour into it). Files inside the
    run folder are made by the data stage ({holdout}/...), so only the others are checked."""
    made_by_the_run = run.resolve()

    def check(loc: list[int | str], file: Path) -> None:
        if not file.expanduser().resolve().is_relative_to(made_by_the_run) and not file.expanduser().exists():
            where = ".".join(str(k) if isinstance(k, str) else f"[{k}]" for k in loc).replace(".[", "[")
            raise UserError(f"{path} line {node_line(root, loc)}: {where} {file} not found: fix the path")

    named: list[tuple[list[int | str], tuple[str, ...]]] = [
        (["eval", "benchmarks"], recipe.eval.benchmarks),
        (["eval", "medprompt", "benchmarks"], recipe.eval.medprompt.benchmarks or ()),
        (["safety", "suites"], recipe.safety.suites),
    ]
    for loc, names in named:
        for index, name in enumerate(names):
            if name.startswith("file:"):
                check([*loc, index], Path(name.removeprefix("file:")))
    for where, value in _paths(recipe.data.model_dump(exclude={"holdout"}), ["data"]):
        check(where, Path(value))
    launcher = recipe.launcher.accelerate_config
    if launcher is not None and not launcher.is_file():
        line = node_line(root, ["launcher", "accelerate_config"])
        raise UserError(f"{path} line {line}: launcher.accelerate_config {launcher} not found: fix the path")
    for index, holdout in enumerate(recipe.data.holdout):
        if not holdout.path.is_file():
            line = node_line(root, ["data", "holdout", index, "path"])
            raise UserError(f"{path} line {line}: data.holdout[{index}].path {holdout.path} not found: fix the path")
