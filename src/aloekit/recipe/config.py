"""The recipe's config: one YAML file that takes a base model through data, SFT, merge, two DPO stages, evaluation
and safety to a report (``aloe run RECIPE.yaml``).

Each section reuses the config of the stage it drives (the mixture, preference, SFT, DPO, mergekit and Medprompt
configs), minus what the recipe wires itself: which model a stage starts from, which dataset it reads and where it
writes. Reading the file (placeholders, data_dir, file checks) is :mod:`aloekit.recipe.load`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

from pydantic import BaseModel, Field, create_model, field_validator, model_validator

from aloekit.config import EngineConfig, MedpromptSettings, _Config, comma_list, known_judge, known_styles
from aloekit.data.mixture import MixtureConfig, SourceEntry
from aloekit.data.prefs_build import PrefsConfig
from aloekit.safety.styles import DEFAULT_STYLES
from aloekit.train.dpo import DPORunConfig, DPOStage
from aloekit.train.sft import SFTRunConfig

__all__ = ["MERGED", "MODEL_STAGES", "ModelLabel", "RecipeConfig", "merge_config", "with_policy"]

ModelLabel = Literal["base", "sft", "merged", "dpo_general", "dpo_safety"]

MODEL_STAGES: tuple[ModelLabel, ...] = get_args(ModelLabel)
"""The recipe's models, in order: the start, after SFT, after the merge, after each DPO stage."""


def _without(cls: type[BaseModel], name: str, *dropped: str) -> type[_Config]:
    """``cls``'s fields minus ``dropped`` (the ones the recipe wires), as a new strict config class."""
    fields: dict[str, Any] = {n: (f.annotation, f) for n, f in cls.model_fields.items() if n not in dropped}
    return create_model(name, __base__=_Config, __doc__=cls.__doc__, **fields)


if TYPE_CHECKING:  # classes made at run time: to mypy, strict configs (what they are)
    SFTSettings: TypeAlias = _Config
    DPOSettings: TypeAlias = _Config
    DPOStageSettings: TypeAlias = _Config
else:
    SFTSettings = _without(SFTRunConfig, "SFTSettings", "model", "dataset", "out", "allow_pickle", "trust_remote_code")
    DPOSettings = _without(DPORunConfig, "DPOSettings", "model", "out", "stages", "allow_pickle", "trust_remote_code")
    DPOStageSettings = _without(DPOStage, "DPOStageSettings", "name", "dataset")


_GENERATION_ENGINE = (
    "Engine for generation only, when it should differ from the recipe's engine, which then only scores: e.g. "
    "{backend: llamacpp, dtype: bfloat16, batch_size: 32}. Measured here: llamacpp's many sequences at once made the "
    "real-data safety stage's replies 3.6x faster than hf; on prompt-heavy work with few new tokens (generative "
    "MCQA, 6 tokens) hf stays faster. Its model is set per stage."
)
"""The description of the ``generation_engine`` field of the sections that generate (medprompt, safety)."""


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


MERGED = "{merged}"
"""A policy model of ``data.prefs_general`` (its medical or reference section) written as ``{merged}`` is the
recipe's merged model, the model DPO general starts from: the pairs are then built by the DPO stage, from that
model's own answers (on-policy pairs), instead of by the data stage."""


class DataSection(_Config):
    holdout: tuple[HoldoutSettings, ...] = Field((), description="Hold out part of local files for evaluation.")
    mixture: MixtureConfig = Field(description="The SFT mixture (aloe data build's config).")
    prefs_general: PrefsConfig = Field(
        description="Preference pairs of DPO stage 1 (general, medical). A medical or reference policy model "
        "written '{merged}' is the merged model: the pairs are then built by the DPO stage (on-policy)."
    )
    prefs_safety: PrefsConfig = Field(description="Preference pairs of DPO stage 2 (red-teaming safety).")
    cot_db: CoTDatabaseSettings | None = Field(None, description="Medprompt's database (needed by eval.medprompt).")
    letters: MixtureConfig | None = Field(
        None,
        description="The letter phase's mixture (trained by the recipe's letters section after SFT, before the "
        "merge): typically multiple-choice sources with cloze_answers, each question keyed to the option the "
        "scoring model ranks first by its text, taught as plain letters at every rotation.",
    )

    @model_validator(mode="after")
    def _merged_policy(self) -> DataSection:
        if _policies(self.prefs_safety) & {MERGED}:
            raise ValueError(
                f"prefs_safety: a policy of {MERGED} is not allowed (DPO safety starts from DPO general's model, not "
                "the merged one): name a model, or move the section to prefs_general"
            )
        return self

    @property
    def general_on_policy(self) -> bool:
        """Whether DPO general's pairs come from the merged model's answers (built by the DPO stage)."""
        return MERGED in _policies(self.prefs_general)


def _policies(prefs: PrefsConfig) -> set[str]:
    """The policy models the pairs of ``prefs`` are generated with (a medical mode without generation has none)."""
    medical = prefs.medical if prefs.medical and prefs.medical.rejected in ("policy", "policy_answer") else None
    return {s.policy.model for s in (medical, prefs.reference) if s is not None}


def with_policy(prefs: PrefsConfig, model: str) -> PrefsConfig:
    """``prefs`` with every ``{merged}`` policy model replaced by ``model``."""
    update: dict[str, Any] = {}
    for key in ("medical", "reference"):
        section = getattr(prefs, key)
        if section is not None and section.policy.model == MERGED:
            update[key] = section.model_copy(update={"policy": section.policy.model_copy(update={"model": model})})
    return prefs.model_copy(update=update)


class Launcher(_Config):
    """How the training stages run: in this process, or under ``accelerate launch`` (multi-GPU, DeepSpeed/FSDP)."""

    accelerate_config: Path | None = Field(
        None, description="An accelerate config (recipes/accelerate/*.yaml); None trains in this process."
    )
    num_processes: int | None = Field(None, ge=1, description="Processes (GPUs) for accelerate launch.")


class DPOSection(_Config):
    settings: DPOSettings = Field(
        default_factory=DPOSettings, description="Shared DPO settings (aloe train dpo's config)."
    )
    general: DPOStageSettings = Field(default_factory=DPOStageSettings, description="Stage 1: general preference data.")
    safety: DPOStageSettings = Field(default_factory=DPOStageSettings, description="Stage 2: red-teaming safety data.")


class MedpromptSection(_Config):
    enabled: bool = Field(True, description="Evaluate the final model with Medprompt.")
    model: ModelLabel = Field("dpo_safety", description="Which recipe model Medprompt runs on.")
    benchmarks: tuple[str, ...] | None = Field(None, description="Default: the eval benchmarks.")
    limit: int | None = Field(None, ge=1, description="First N questions of each benchmark (default: eval.limit).")
    settings: MedpromptSettings = Field(
        default_factory=MedpromptSettings, description="Medprompt settings; the database is the data stage's."
    )
    ablation: bool = Field(False, description="Also run the ladder zero-shot -> ... -> ensemble on the same model.")
    generation_engine: EngineConfig | None = Field(None, description=_GENERATION_ENGINE)

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

    _split = field_validator("benchmarks", mode="before")(comma_list)

    @field_validator("benchmarks")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known_benchmarks(value)


class SafetySection(_Config):
    models: tuple[ModelLabel, ...] = Field(
        ("merged", "dpo_safety"), description="Models red-teamed: before and after alignment."
    )
    suites: tuple[str, ...] = Field(("advbench", "xstest"), description="Suites (aloe safety --suites).")
    generation_engine: EngineConfig | None = Field(None, description=_GENERATION_ENGINE)
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

    _known_styles = field_validator("styles")(known_styles)
    _judge = field_validator("judge")(known_judge)


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
    sft: SFTSettings = Field(description="SFT settings (aloe train sft's config without model, dataset, out).")
    letters: SFTSettings | None = Field(
        None,
        description="A letter phase after SFT (aloe train sft's settings), on data.letters, from the SFT model; its "
        "model is the sft stage's model, the one merged. Why: a small model taught gold letters it cannot reach "
        "learns a letter prior; taught the letter of its own cloze answer, its letter follows its reading of the "
        "options (bench/RESULTS.md, 'Letter binding').",
    )
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
        if (self.letters is None) != (self.data.letters is None):
            raise ValueError(
                "letters and data.letters go together: the letter phase trains on data.letters; set both or neither"
            )
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
