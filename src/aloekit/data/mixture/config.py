"""The mixture's configuration: which sources, with what weights and caps, and how each kind of record becomes
a training sample (``aloe data build CONFIG``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from aloekit.config import EngineConfig, _Config
from aloekit.data.clean import CleanConfig
from aloekit.data.decontaminate import DecontamConfig
from aloekit.data.dedup import DedupConfig
from aloekit.data.known import ClozeAnswers, KnownFilter
from aloekit.data.prefs import check_styles


class SourceEntry(_Config):
    """One source of a mixture: a registered source by name, or a file/Hub dataset in a generic format."""

    source: str | None = Field(None, description="A registered source (`aloe data sources` lists them).")
    format: str | None = Field(None, description="Generic format of `path`/`hub`: alpaca, sharegpt, messages, mcq...")
    path: Path | None = Field(None, description="Local file (or folder/glob) to read instead of the default.")
    hub: str | None = Field(None, description="Hugging Face dataset id to read instead of the default.")
    name: str | None = Field(None, description="Label in stats and the data card (default: source or file stem).")
    weight: float = Field(
        1.0,
        ge=0,
        description="Sampling multiplier after dedup: 0.5 keeps half (seeded), 2 repeats every training item twice.",
    )
    cap: int | None = Field(None, ge=1, description="Most distinct items taken from this source (seeded sample).")
    limit: int | None = Field(None, ge=1, description="Read only the first N rows (quick runs).")
    part: tuple[float, float] | None = Field(
        None,
        description="Keep only the items whose id hashes into [start, end) of [0, 1), e.g. [0, 0.8] for SFT and "
        "[0.8, 1] for DPO: disjoint parts of one source for different stages, the same items whatever the order "
        "or the other settings (the hash includes no seed).",
    )
    general: bool | None = Field(
        None, description="Counts toward the general (non-medical) share; default: the registered source's flag."
    )
    known: KnownFilter | None = Field(
        None,
        description="Keep only the multiple-choice questions a model already answers right by option text "
        "(aloekit.data.known): {scan: N} scores the first N in a fixed order with the mixture's responder.",
    )
    plain_share: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Share of this source's multiple-choice questions taught as plain letter-format samples "
        "(default: mcq.plain_share; always 1 with cloze_answers).",
    )
    cloze_answers: ClozeAnswers | None = Field(
        None,
        description="Teach the letter format, not the source's facts: each multiple-choice question is keyed to the "
        "option the scorer ranks first by option text (its own cloze answer) and taught only as a plain "
        "letter-format sample (never with its explanation, which argues for the source's key), so no letter prior "
        "and no answer it cannot reach is taught "
        "(bench/RESULTS.md, 'Letter binding'). {scan: N} scores the first N in a fixed order.",
    )

    @model_validator(mode="after")
    def _one_way_in(self) -> SourceEntry:
        if self.source is None and self.format is None:
            raise ValueError("give 'source' (a registered name) or 'format' with 'path' or 'hub'")
        if self.source is None and self.path is None and self.hub is None:
            raise ValueError(f"format '{self.format}' needs 'path' (a local file) or 'hub' (a dataset id)")
        if self.known is not None and self.cloze_answers is not None:
            raise ValueError(
                "give 'known' or 'cloze_answers', not both (a known question's key already is its cloze answer)"
            )
        if self.cloze_answers is not None and self.plain_share not in (None, 1):
            raise ValueError(
                f"plain_share {self.plain_share} with cloze_answers: their keys are the scorer's, taught as plain "
                "letters only; remove plain_share"
            )
        if self.part is not None and not 0 <= self.part[0] < self.part[1] <= 1:
            raise ValueError(f"part {list(self.part)}: give [start, end] with 0 <= start < end <= 1")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.source:
            return self.source
        return self.path.stem if self.path is not None else str(self.hub)


class ReasoningConfig(_Config):
    """Where chain-of-thought for multiple-choice items comes from (verified teacher output beats explanations)."""

    teacher: tuple[Path, ...] = Field(
        (), description="Files written by `aloe data cot`: verified reasoning, used for the items with those ids."
    )
    explanations: bool = Field(
        True,
        description="Template expert explanations shipped with a set (MedMCQA exp, PubMedQA long answer) into "
        "chain-of-thought, skipping those that contradict the answer key.",
    )
    share: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of the chat items that have reasoning taught with it (asked to reason, answering after "
        "the reasoning); the rest are asked for the answer only and answer 'Answer: X'. Chosen per item by a hash. "
        "Below 1 the model learns to follow the instruction (reason when asked to, answer at once when asked to) "
        "instead of always reasoning, which a generative evaluation with a few answer tokens cannot read.",
    )


class MCQFormat(_Config):
    """How multiple-choice items are turned into training samples."""

    balance_letters: bool = Field(
        False,
        description="Reorder each question's options so the right answer's letter is dealt evenly over the letters "
        "(by a hash of the item and the seed): a model then cannot lower its loss by preferring a letter, as it "
        "can on sources whose keys lean to one. PubMedQA's yes/no/maybe order is kept (it is scored by word).",
    )
    plain_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of MCQ items taught as plain prompt/completion text ('...Answer:' then ' B', no chat "
        "template: the layout of log-likelihood benchmarks) instead of as a chat; the rest stay chats (with "
        "chain-of-thought where there is one). Chosen per item by a hash, so an item keeps its format.",
    )
    rotations: int = Field(
        1,
        ge=1,
        le=10,
        description="Copies of each question, its options rotated so the key sits at that many different letters "
        "(4 on 4-option items: at every letter once). Every question then carries each letter equally, so a "
        "letter prior lowers no loss at all, even on the part of the data a short run sees; only reading the "
        "options can. Copies are made after dedup (they would be near-duplicates of each other); with rotations "
        "> 1, balance_letters is implied. PubMedQA's yes/no/maybe items are not rotated.",
    )


class SafetyFormat(_Config):
    """How harmful requests (MedSafetyBench, AdvBench, user files) become refusal samples for SFT."""

    refusal_templates: bool = Field(
        False,
        description="A request whose source ships no safe reply (AdvBench ships only the compliance) is taught "
        "with a fixed refusal that points to help (picked by a hash of seed and request); otherwise it is dropped.",
    )
    styles: tuple[str, ...] = Field(
        (),
        description="Attack styles each request is wrapped in (`aloe safety styles` lists them), so the model "
        "learns to refuse the disguised request too; empty: the request as written.",
    )
    styles_per_request: int = Field(
        1, ge=1, description="Distinct styles per request (one sample each), drawn by a hash of seed and request."
    )
    always_styles: tuple[str, ...] = Field(
        (),
        description="Styles every request gets on top of the drawn ones, e.g. [plain]: each request is also taught "
        "as written, so refusing is tied to the harm and not only to the wrapper.",
    )

    @model_validator(mode="after")
    def _known_styles(self) -> SafetyFormat:
        if self.styles or self.always_styles:
            problem = check_styles(self.styles, self.styles_per_request, self.always_styles)
            if problem:
                raise ValueError(problem)
        return self


class MixtureConfig(_Config):
    """A training mixture (``aloe data build CONFIG --out DIR``)."""

    data_dir: Path | None = Field(None, description="Folder laid out like shared/data, for registered sources.")
    sources: tuple[SourceEntry, ...] = Field(description="The sources to mix, with weights and caps.", min_length=1)
    seed: int = Field(0, description="Seed for sampling, template choice and the split.")
    strict: bool = Field(False, description="Stop at the first malformed input row instead of counting it.")
    validation: float = Field(0.05, ge=0, lt=1, description="Share of each source's items held out for validation.")
    general_share: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Share of general (non-medical) samples in the training split; None: as weights and caps give.",
    )
    system_prompt: str | None = Field(None, description="System turn added to every sample (None: no system turn).")
    cot: ReasoningConfig = Field(
        default_factory=ReasoningConfig, description="Chain-of-thought for multiple-choice items."
    )
    mcq: MCQFormat = Field(default_factory=MCQFormat, description="Formats of multiple-choice training samples.")
    safety: SafetyFormat = Field(
        default_factory=SafetyFormat, description="Refusal samples from harmful-request sources."
    )
    responder: EngineConfig | None = Field(
        None,
        description="Model that answers benign prompts shipped without an answer (the 'lookalike' source); an "
        "answer that reads as a refusal is dropped and counted. None: such prompts are dropped.",
    )
    responder_max_tokens: int = Field(128, ge=16, description="Most new tokens per answer the responder writes.")
    clean: CleanConfig = Field(default_factory=CleanConfig, description="Cleaning rules.")
    dedup: DedupConfig = Field(default_factory=DedupConfig, description="Near-duplicate removal (MinHash-LSH).")
    near_dedup: bool = Field(True, description="Run MinHash-LSH near-duplicate removal after exact dedup.")
    decontamination: DecontamConfig = Field(
        default_factory=DecontamConfig, description="Evaluation sets no training sample may overlap."
    )

    @field_validator("sources")
    @classmethod
    def _unique_labels(cls, sources: tuple[SourceEntry, ...]) -> tuple[SourceEntry, ...]:
        seen = Counter(s.label for s in sources)
        twice = [label for label, n in seen.items() if n > 1]
        if twice:
            raise ValueError(f"source '{twice[0]}' is listed twice: give one of them a distinct 'name'")
        return sources

    @model_validator(mode="after")
    def _known_has_a_scorer(self) -> MixtureConfig:
        for source in self.sources:
            for name, option in (("known", source.known), ("cloze_answers", source.cloze_answers)):
                if option is not None and option.scorer is None and self.responder is None:
                    raise ValueError(
                        f"source '{source.label}' has '{name}' but nothing scores its questions: set {name}.scorer, "
                        "or the mixture's responder (e.g. responder: {model: smollm2-135m-instruct})"
                    )
        return self
