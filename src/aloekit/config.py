"""Pydantic configs, one per stage, each field documented. YAML recipes and CLI flags both build these, so a
stage behaves the same whichever way it was started, and every run records the config it ran with."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aloekit.errors import UserError
from aloekit.io import undecodable
from aloekit.safety.styles import DEFAULT_STYLES, STYLES


class _Config(BaseModel):
    # Unknown keys are typos in a recipe: refuse them instead of silently ignoring a setting.
    model_config = ConfigDict(extra="forbid", frozen=True)


C = TypeVar("C", bound=BaseModel)


def comma_list(value: object) -> object:
    """A comma-separated string (as typed on the command line) as a tuple of its non-empty, stripped items; any
    other value unchanged (a YAML list, a tuple)."""
    return tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else value


class MedpromptSettings(_Config):
    """Medprompt inference (``aloe eval --mode medprompt``): kNN few-shot from a chain-of-thought database,
    chain-of-thought, choice-shuffle ensemble, optional self-consistency sampling."""

    database: Path | None = Field(
        None, description="Chain-of-thought database folder (aloe medprompt db); needed unless examples is 'none'."
    )
    examples: Literal["knn", "random", "none"] = Field(
        "knn",
        description="How few-shot examples are chosen: the k nearest database items by embedding (most similar "
        "last, next to the question), k random ones, or none.",
    )
    k: int = Field(5, ge=0, description="Few-shot examples per question.")
    cot: bool = Field(
        True,
        description="Ask for step-by-step reasoning ending in 'Answer: X', and show the examples' verified "
        "reasoning; off: examples and the model answer with 'Answer: X' only.",
    )
    runs: int = Field(
        5, ge=1, description="Choice-shuffle ensemble size: run 1 keeps the original order, the others shuffle it."
    )
    samples: int = Field(1, ge=1, description="Self-consistency: sampled answers per run (needs temperature > 0).")
    temperature: float = Field(0.0, ge=0, description="0: greedy decoding; above 0: sampling.")
    max_tokens: int | None = Field(
        None, ge=1, description="Most new tokens per answer (default 384 with cot, 32 without)."
    )
    retries: int = Field(
        1,
        ge=0,
        description="Follow-up requests per unreadable answer asking for the final 'Answer: X' (bounded: at most "
        "this many per answer).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> MedpromptSettings:
        if self.samples > 1 and self.temperature == 0:
            raise ValueError("samples > 1 needs temperature > 0: greedy samples are all the same answer")
        return self

    @property
    def new_tokens(self) -> int:
        return self.max_tokens or (384 if self.cot else 32)

    @property
    def shots(self) -> int:
        return 0 if self.examples == "none" else self.k


class MCQAConfig(_Config):
    """Medical multiple-choice evaluation (``aloe eval``)."""

    benchmarks: tuple[str, ...] = Field(description="Benchmark or group names, e.g. ('mmlu_anatomy', 'multimedqa').")
    mode: Literal["loglik", "generate", "medprompt"] = Field(
        "loglik",
        description="'loglik' scores each option's log-likelihood (lm-eval's prompts and acc/acc_norm); "
        "'generate' lets the model answer in the chat template and extracts 'Answer: X'; 'medprompt' adds kNN "
        "few-shot chain-of-thought and a choice-shuffle ensemble (see medprompt).",
    )
    formulation: Literal["letter", "cloze"] = Field(
        "letter",
        description="loglik mode: 'letter' lists the lettered options in the prompt and scores the letters "
        "(lm-eval's MMLU/MedQA; headline metric acc); 'cloze' asks the question without the option list and scores "
        "each option's text as the continuation (lighteval's / SmolLM2's 'MMLU cloze', fairer to small models; "
        "headline metric acc_norm, the log-likelihood per character). PubMedQA scores yes/no/maybe either way.",
    )
    medprompt: MedpromptSettings = Field(default_factory=MedpromptSettings, description="medprompt mode: its settings.")
    data_dir: Path | None = Field(
        None, description="Folder laid out like shared/data; None loads every benchmark from the Hugging Face Hub."
    )
    limit: int | None = Field(None, ge=1, description="Evaluate only the first N questions of each benchmark.")
    subset: int | None = Field(
        None,
        ge=1,
        description="Evaluate a random subset of N questions per benchmark, drawn with seed (after limit): the same "
        "questions for every model and run with that seed; a benchmark with at most N questions is taken whole.",
    )
    num_fewshot: int = Field(0, ge=0, description="Solved examples before each question (from the few-shot split).")
    cot: bool = Field(False, description="generate mode: ask for step-by-step reasoning before the answer.")
    max_tokens: int | None = Field(
        None, ge=1, description="generate mode: most new tokens per answer (default 32, or 512 with cot)."
    )
    seed: int = Field(0, description="Seed for sampling and for the bootstrap confidence intervals.")
    checkpoint_every: int = Field(
        64, ge=1, description="Questions scored between two cache writes: a killed run loses at most this many."
    )
    scoring: Literal["exact", "checked-bf16"] = Field(
        "exact",
        description="loglik mode: 'exact' scores in the model's own dtype; 'checked-bf16' (hf engine, float32 model, "
        "a GPU or a CPU with native bf16) scores with a bf16 copy and re-scores in float32 every question whose "
        "answer bf16 rounding could change: the same predictions, faster where most answers are clear (SmolLM2-135M "
        "against exact: MedMCQA 1.85x, MMLU anatomy 1.15x, PubMedQA's long prompts 0.8x; bench/RESULTS.md), float32 "
        "alone when most questions need the re-scoring.",
    )

    _split = field_validator("benchmarks", mode="before")(comma_list)

    @model_validator(mode="after")
    def _cloze_is_loglik(self) -> MCQAConfig:
        if self.formulation == "cloze" and self.mode != "loglik":
            raise ValueError(
                f"formulation cloze scores option texts by log-likelihood: use mode loglik, not {self.mode}"
            )
        if self.scoring != "exact" and self.mode != "loglik":
            raise ValueError(f"scoring {self.scoring} checks log-likelihood answers: use mode loglik, not {self.mode}")
        return self

    @model_validator(mode="after")
    def _medprompt_database(self) -> MCQAConfig:
        m = self.medprompt
        if self.mode == "medprompt" and m.shots and m.database is None:
            raise ValueError(
                f"medprompt examples '{m.examples}' need a chain-of-thought database (build one with aloe medprompt "
                "db, then pass --cot-db), or use examples 'none'"
            )
        return self

    @property
    def new_tokens(self) -> int:
        return self.max_tokens or (512 if self.cot else 32)

    @property
    def headline(self) -> Literal["acc", "acc_norm"]:
        """The metric that stands for a benchmark's score: acc_norm for cloze (option texts differ in length,
        so raw log-likelihoods favour short ones), acc otherwise."""
        return "acc_norm" if self.formulation == "cloze" else "acc"


def known_styles(value: tuple[str, ...]) -> tuple[str, ...]:
    """``value`` if every name in it is an attack style; else a ValueError naming the first that is not."""
    unknown = [name for name in value if name not in STYLES]
    if unknown:
        raise ValueError(f"unknown attack style '{unknown[0]}': choose from {', '.join(STYLES)}")
    return value


def known_judge(value: str) -> str:
    """``value`` if it names a safety judge (offline, or llm:REF); else a ValueError saying how to name one."""
    if value != "offline" and not value.startswith("llm:"):
        raise ValueError(f"{value}: use offline or llm:REF (a model reference)")
    return value


class SafetyConfig(_Config):
    """Red-teaming, over-refusal and (optionally) bias and truthfulness of one model (``aloe safety``)."""

    suites: tuple[str, ...] = Field(
        ("advbench", "xstest"),
        description="Comma-separated: advbench, harmbench, medsafetybench, xstest, file:PATH.",
    )
    styles: tuple[str, ...] = Field(
        DEFAULT_STYLES, description="Comma-separated attack styles (aloekit.safety.styles)."
    )
    judge: str = Field(
        "offline", description="offline (rules, no download) or llm:REF (a model judging with the rubric)."
    )
    judge_backend: Literal["hf", "vllm", "llamacpp", "openai"] = Field(
        "hf", description="Engine of an llm: judge: hf, vllm, llamacpp or openai."
    )
    judge_base_url: str | None = Field(None, description="Server URL of an openai judge backend.")
    data_dir: Path | None = Field(None, description="Folder laid out like shared/data; else the Hub.")
    limit: int | None = Field(25, ge=1, description="Prompts sampled per suite (seeded; the same for every model).")
    max_tokens: int = Field(256, ge=1, description="Most new tokens per reply.")
    seed: int = Field(0, description="Seed for the prompt sample and the bootstrap CIs.")
    bias: bool = Field(False, description="Also BBQ (bias; needs --data-dir), by log-likelihood.")
    bbq_limit: int | None = Field(100, ge=1, description="BBQ: questions sampled per category (seeded).")
    truthfulness: bool = Field(False, description="Also TruthfulQA MC1/MC2, by log-likelihood.")
    truthfulqa_limit: int | None = Field(None, ge=1, description="TruthfulQA: only the first N questions.")

    _split = field_validator("suites", "styles", mode="before")(comma_list)

    @field_validator("suites")
    @classmethod
    def _some(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("names no suite: give e.g. advbench,xstest or file:PATH")
        return value

    _known_styles = field_validator("styles")(known_styles)
    _judge = field_validator("judge")(known_judge)

    @model_validator(mode="after")
    def _bias_reads_data_dir(self) -> SafetyConfig:
        # Worded for the command line: this config is aloe safety's (the recipe has its own safety section).
        if self.bias and self.data_dir is None:
            raise ValueError("--bias reads BBQ from the data folder: add --data-dir (a folder with bbq/*.jsonl)")
        return self


# --- YAML files -> configs, with errors that name the file, the line and the fix ------------------------------


def read_config_text(path: Path, what: str) -> str:
    """The text of a config file, or one UserError saying it is missing or unreadable."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise UserError(f"{what} not found: {path}") from e
    except UnicodeDecodeError as e:
        raise undecodable(path) from e
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or e}") from e


def load_yaml(path: Path, cls: type[C], *, what: str) -> C:
    """Read ``path`` (YAML) into ``cls``; any problem is one UserError naming the file, the line and the key."""
    return parse_yaml(read_config_text(path, what), cls, source=str(path), what=what)


def read_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """The parsed YAML and its node tree (for line numbers), or one UserError naming the line of a syntax error."""
    try:
        return yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{source}{line}: invalid YAML ({getattr(e, 'problem', None) or e}): fix the syntax") from e


def parse_yaml(text: str, cls: type[C], *, source: str, what: str) -> C:
    data, root = read_yaml(text, source)
    if not isinstance(data, dict):
        raise UserError(f"{source}: a {what} is a mapping of keys ({', '.join(cls.model_fields)}), not {data!r:.40}")
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise UserError(validation_message(e, cls, source, root)) from e


def validation_message(error: ValidationError, cls: type[BaseModel], source: str, root: yaml.Node | None) -> str:
    """The first validation error as one line: file, line, dotted key, what is wrong and (for typos) the known keys."""
    first = error.errors()[0]
    loc = [p for p in first["loc"] if isinstance(p, int | str)]
    line = node_line(root, loc)
    at = f"{source} line {line}" if line else source
    dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    if first["type"] == "extra_forbidden":
        known = _fields_at(cls, loc[:-1])
        hint = f" (known keys: {', '.join(known)})" if known else ""
        return f"{at}: unknown key '{loc[-1]}'{hint}: remove or fix it"
    if first["type"] == "missing":
        return f"{at}: '{dotted}' is missing: add it"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{at}: {dotted}: {message}"


def _fields_at(cls: type[BaseModel], loc: list[int | str]) -> list[str] | None:
    """Field names of the nested model at ``loc`` (list indices skipped), found through the annotations."""
    current = cls
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return None
        nested = _model_in(field.annotation)
        if nested is None:
            return None
        current = nested
    return list(current.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def node_line(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """1-based line of the YAML node at ``loc`` (the key's line for a mapping entry), or the nearest parent's."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                return line
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


class EngineConfig(_Config):
    """A model to generate with, on one of the engines (a teacher, a policy, a responder...)."""

    model: str = Field(
        "smollm2-135m-instruct",
        description="Model reference (alias, folder, .gguf, Hub id) for hf/vllm/llamacpp; the served model's name for "
        "openai.",
    )
    backend: Literal["hf", "vllm", "llamacpp", "openai"] = Field(
        "hf",
        description="Engine that runs the model. llamacpp (CPU, needs pip install 'aloekit[llamacpp]') runs a .gguf "
        "as is and exports a folder to an f16 GGUF once.",
    )
    base_url: str | None = Field(None, description="openai backend: the server's URL ending in /v1.")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="openai backend: the environment variable holding the bearer token."
    )
    batch_size: int = Field(
        8, ge=1, description="hf backend: sequences per forward pass; llamacpp: sequences generated at once."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="hf/vllm backends: weights' dtype. auto: bf16 (or fp16) on a GPU, fp32 on a CPU. bfloat16 on a "
        "CPU with AVX512-BF16 scores ~1.8x faster than fp32, with log-likelihoods that differ in the last digits; "
        "compare models measured in the same dtype. llamacpp: the GGUF a folder is exported to (bfloat16: bf16, "
        "else f16).",
    )
    max_concurrency: int = Field(16, ge=1, description="openai backend: requests in flight at once.")
    threads: int | None = Field(
        None, ge=1, description="llamacpp backend: CPU threads (default: every CPU this process may use)."
    )
    seed: int = Field(0, description="Engine seed for sampling.")

    def load(self, *, allow_pickle: bool = False, trust_remote_code: bool = False) -> Any:
        """The engine (an :class:`aloekit.engines.Engine`); the caller closes it."""
        import os

        from aloekit.engines import load_engine

        if self.backend == "openai":
            return load_engine(
                "openai",
                self.model,
                base_url=self.base_url,
                api_key=os.environ.get(self.api_key_env),
                max_concurrency=self.max_concurrency,
                seed=self.seed,
            )
        options: dict[str, Any] = {
            "seed": self.seed,
            "allow_pickle": allow_pickle,
            "trust_remote_code": trust_remote_code,
        }
        if self.backend in ("hf", "vllm", "llamacpp"):
            options["dtype"] = self.dtype
        if self.backend in ("hf", "llamacpp"):
            options["batch_size"] = self.batch_size
        if self.backend == "llamacpp":
            options["threads"] = self.threads
        return load_engine(self.backend, self.model, **options)


class OpenEndedConfig(_Config):
    """Open-ended medical question answering (``aloe eval --open-ended``): free-text answers scored against
    reference answers (ROUGE-L, embedding similarity) and, optionally, by an LLM judge with a rubric."""

    benchmarks: tuple[str, ...] = Field(
        description="Question sets: training sources with reference answers read from data_dir (medicationqa, "
        "medical_meadow, chatdoctor) or file:PATH (JSON lines: id (optional), question, reference)."
    )
    data_dir: Path | None = Field(None, description="Folder laid out like shared/data, for the training sources.")
    part: tuple[float, float] | None = Field(
        None,
        description="Training sources: keep only the items whose id hashes into [start, end), as a mixture's part "
        "does, e.g. [0.8, 1] when the SFT mixture took [0, 0.8] (the same hash, so the parts are disjoint).",
    )
    exclude: tuple[Path, ...] = Field(
        (),
        description="Dataset folders or JSON-lines files (e.g. a run's data/sft) whose items are left out: a "
        "question whose id, or whose text as a user turn, appears there is never scored.",
    )
    limit: int | None = Field(
        None, ge=1, description="A seeded random sample of N questions per benchmark (the same for every model)."
    )
    max_tokens: int = Field(256, ge=1, description="Most new tokens per answer (greedy decoding).")
    system: str | None = Field(None, description="System prompt before each question (None: none).")
    embedding: bool = Field(True, description="Score the cosine similarity of answer and reference embeddings.")
    embedder: str | None = Field(
        None, description="sentence-transformers model name or folder; None: the embedded all-MiniLM-L6-v2."
    )
    judge: EngineConfig | None = Field(None, description="An LLM judge scoring each answer with the rubric.")
    judge_max_tokens: int = Field(64, ge=1, description="Most new tokens per judge reply (the four score lines).")
    seed: int = Field(0, description="Seed for the question sample, generation and the bootstrap CIs.")
    checkpoint_every: int = Field(
        16, ge=1, description="Questions answered (or judged) between two cache writes: a kill loses at most this many."
    )

    _split = field_validator("benchmarks", mode="before")(comma_list)

    @field_validator("benchmarks")
    @classmethod
    def _some(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one question set, e.g. medicationqa or file:PATH")
        return value

    @field_validator("part")
    @classmethod
    def _part(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0 <= value[0] < value[1] <= 1:
            raise ValueError(f"part {list(value)}: give start,end with 0 <= start < end <= 1")
        return value


class PairwiseConfig(_Config):
    """Pairwise comparison of two models' answers by an LLM judge (``aloe eval --pairwise``), asked in both
    orders so that a preference for a position cancels out."""

    answers_a: Path = Field(description="Model A's answers: an open-ended run folder (its answers.jsonl) or a file.")
    answers_b: Path = Field(description="Model B's answers, to the same questions.")
    judge: EngineConfig = Field(description="The judge model.")
    judge_max_tokens: int = Field(16, ge=1, description="Most new tokens per judge reply (one verdict line).")
    limit: int | None = Field(None, ge=1, description="A seeded random sample of N of the questions.")
    seed: int = Field(0, description="Seed for the sample and the bootstrap CIs.")
    checkpoint_every: int = Field(16, ge=1, description="Questions judged between two cache writes.")
