"""``aloe data build``: sources -> cleaning -> chain-of-thought -> chat formatting -> exact dedup ->
decontamination -> near dedup -> weighted mixture -> train/validation split -> a dataset on disk.

The order matters: cheap exact dedup first; decontamination before near-dedup so a removed evaluation look-alike
cannot be the "kept" copy of a training item's cluster; weights and caps last, on what survived, so the counts a
user asks for are the counts they get. Every dropped row is counted by stage and reason (:mod:`aloekit.data.tally`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from aloekit.config import EngineConfig, _Config
from aloekit.data import dataset
from aloekit.data.clean import CleanConfig, clean_chat, clean_harmful, clean_mcq
from aloekit.data.cot import explanation_cot, load_verified
from aloekit.data.decontaminate import DecontamConfig
from aloekit.data.dedup import DedupConfig, exact_dedup, near_dedup
from aloekit.data.prefs import benign_pairs, check_styles, pick_styles, template_refusal
from aloekit.data.schema import ChatSample, HarmfulRequest, MCQItem, PreferencePair
from aloekit.data.sources import SOURCES, BenignItem, load_source
from aloekit.data.tally import Tally
from aloekit.data.templates import (
    is_yes_no_maybe,
    mcq_to_chat,
    mcq_to_plain,
    rotated,
    with_system,
)
from aloekit.errors import MalformedRow, UserError
from aloekit.safety.styles import STYLES, apply_style


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

    @model_validator(mode="after")
    def _one_way_in(self) -> SourceEntry:
        if self.source is None and self.format is None:
            raise ValueError("give 'source' (a registered name) or 'format' with 'path' or 'hub'")
        if self.source is None and self.path is None and self.hub is None:
            raise ValueError(f"format '{self.format}' needs 'path' (a local file) or 'hub' (a dataset id)")
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


# --- loading --------------------------------------------------------------------------------------------------


Record = MCQItem | ChatSample | HarmfulRequest | PreferencePair | BenignItem


def load_entry(entry: SourceEntry, data_dir: Path | None, tally: Tally) -> list[Record]:
    """Read one mixture entry into schema records (malformed rows counted in ``tally``)."""
    if entry.source is not None and entry.source not in SOURCES:
        known = ", ".join(sorted(SOURCES))
        raise UserError(f"unknown source '{entry.source}' in the mixture: use one of {known}, or 'format' + 'path'")
    records = load_source(
        entry.source,
        format=entry.format,
        path=entry.path,
        hub=entry.hub,
        data_dir=data_dir,
        tally=tally,
        limit=entry.limit,
    )
    if entry.part is None:
        return records
    start, end = entry.part
    return [r for r in records if start <= _hash_share("part", str(getattr(r, "id", r)), 0) < end]


def styled_requests(request: HarmfulRequest, config: SafetyFormat, seed: int) -> list[HarmfulRequest]:
    """``request`` as SFT wants it: wrapped in its seeded attack styles (ids ``<id>:<style>``), with a templated
    refusal where the source ships none and ``refusal_templates`` is on."""
    safe = request.safe_response or template_refusal(request.id, seed, config.refusal_templates)
    if not config.styles:
        return [dataclasses.replace(request, safe_response=safe)]
    return [
        dataclasses.replace(
            request, id=f"{request.id}:{style}", prompt=apply_style(style, request.prompt), safe_response=safe
        )
        for style in pick_styles(
            request.id, list(dict.fromkeys(config.styles)), config.styles_per_request, seed, config.always_styles
        )
    ]


def to_chat(
    record: Record,
    label: str,
    config: MixtureConfig,
    teacher: dict[str, str],
    tally: Tally,
    *,
    original: MCQItem | None = None,
) -> tuple[ChatSample | None, str]:
    """A chat sample for SFT (or None, counted), and where an MCQ's reasoning came from: teacher, explanation or
    none (answer only); "n/a" for other records. ``original``: the question a rotated copy was made from (its
    id picks the format, so all copies of one question share it, and keys its teacher reasoning)."""
    if isinstance(record, MCQItem):
        source = original or record
        if original is not None:
            item = record  # already rotated
        else:
            item = balanced(record, config.seed) if config.mcq.balance_letters else record
        if config.mcq.plain_share and _hash_share("plain", source.id, config.seed) < config.mcq.plain_share:
            return _relabel(mcq_to_plain(item, seed=config.seed), label), "plain"
        reasoning, origin = teacher.get(source.id), "teacher"
        if reasoning is None and config.cot.explanations:
            reasoning, origin = explanation_cot(source), "explanation"
        if reasoning is None:
            origin = "none"
        elif item.options != source.options:
            # Reasoning was written for the original order: its closing "Answer: X" is dropped (the right letter
            # is added back), and reasoning that still names an option by its old letter is not used.
            reasoning = _ANSWER_LINE.sub("", reasoning).rstrip()
        try:
            sample = mcq_to_chat(item, seed=config.seed, reasoning=reasoning, system=config.system_prompt)
        except MalformedRow:
            if item.options == source.options:
                raise
            tally.drop("format", "reasoning names an option by its letter before reordering (answer kept)", record.id)
            sample, origin = mcq_to_chat(item, seed=config.seed, system=config.system_prompt), "none"
        return _relabel(sample, label), origin
    if isinstance(record, ChatSample):
        return _relabel(with_system(record, config.system_prompt), label), "n/a"
    if isinstance(record, HarmfulRequest):
        if not record.safe_response:
            tally.drop("format", "harmful request without a safe response (use it in `aloe data prefs`)", record.id)
            return None, "n/a"
        messages = [{"role": "user", "content": record.prompt}, {"role": "assistant", "content": record.safe_response}]
        sample = ChatSample(id=record.id, messages=tuple(messages), source=label, task="safety")
        return with_system(sample, config.system_prompt), "n/a"
    if isinstance(record, BenignItem):
        if not record.answer:
            tally.drop("format", "benign prompt without an answer", record.id)
            return None, "n/a"
        # Asked as written, like the harmful requests it must be told apart from (a question template around
        # it would teach the difference on the template's words).
        messages = [{"role": "user", "content": record.prompt}, {"role": "assistant", "content": record.answer}]
        sample = ChatSample(id=record.id, messages=tuple(messages), source=label, task="open_qa")
        return with_system(sample, config.system_prompt), "n/a"
    raise UserError(f"source '{label}' holds preference pairs: list it in a preference config (`aloe data prefs`)")


_ANSWER_LINE = re.compile(r"\n*Answer: [A-J]\s*$")


def _answer_benign(
    records: list[Record], label: str, config: MixtureConfig, tally: Tally, log: Callable[[str], None]
) -> list[Record]:
    """``records`` with the benign prompts that ship no answer answered by the responder (helpful answers only;
    refusals are dropped and counted); unchanged without a responder or without such prompts."""
    asked = [r for r in records if isinstance(r, BenignItem) and not (r.answer and r.answer.strip())]
    if not asked or config.responder is None:
        return records
    log(f"{label}: the responder answers {len(asked)} prompts")
    engine = config.responder.load()
    try:
        pairs = benign_pairs(
            [(r.id, r.prompt, None) for r in asked],
            seed=config.seed,
            tally=tally,
            source=label,
            responder=engine,
            max_tokens=config.responder_max_tokens,
            progress=True,
        )
    finally:
        engine.close()
    answers = {p.id.rsplit(":", 1)[0]: p.chosen for p in pairs}
    asked_ids = {r.id for r in asked}
    out: list[Record] = []
    for r in records:
        if isinstance(r, BenignItem) and r.id in asked_ids:
            if r.id in answers:
                out.append(dataclasses.replace(r, answer=answers[r.id]))
            continue
        out.append(r)
    return out


def _hash_share(purpose: str, key: str, seed: int) -> float:
    """A number in [0, 1) fixed by (purpose, seed, key): per-item choices that do not depend on order."""
    digest = hashlib.blake2b(f"{purpose}\x00{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def balanced(item: MCQItem, seed: int) -> MCQItem:
    """``item`` with its options reordered so the right one sits at a letter dealt by a hash of (seed, id):
    over many items every letter is the key about equally often. The wrong options keep their relative order.
    Yes/no/maybe items (PubMedQA, scored by word) are returned unchanged."""
    if is_yes_no_maybe(item.options):
        return item
    n = len(item.options)
    target = int(_hash_share("letter", item.id, seed) * n)
    if target == item.answer:
        return item
    wrong = [o for i, o in enumerate(item.options) if i != item.answer]
    options = (*wrong[:target], item.options[item.answer], *wrong[target:])
    return dataclasses.replace(item, options=options, answer=target)


def _relabel(sample: ChatSample, label: str) -> ChatSample:
    return sample if sample.source == label else dataclasses.replace(sample, source=label)


def clean_record(record: Record, config: CleanConfig, tally: Tally) -> Record | None:
    if isinstance(record, MCQItem):
        return clean_mcq(record, config, tally)
    if isinstance(record, ChatSample):
        return clean_chat(record, config, tally)
    if isinstance(record, HarmfulRequest):
        return clean_harmful(record, config, tally)
    return record


def teacher_reasoning(files: Sequence[Path]) -> dict[str, str]:
    """id -> verified reasoning from `aloe data cot` outputs (later files win)."""
    out: dict[str, str] = {}
    for path in files:
        if not path.is_file():
            raise UserError(f"cot.teacher: {path} not found; run `aloe data cot` first or fix the path")
        for item in load_verified(path):
            if item.explanation:
                out[item.id] = item.explanation
    return out


# --- the build ------------------------------------------------------------------------------------------------


def build(
    config: MixtureConfig, out: Path, *, overwrite: bool = False, progress: bool = False, log: Callable[[str], None]
) -> dict[str, Any]:
    """Build the mixture into ``out`` (atomically) and return its stats."""
    from aloekit.data import decontaminate as dc

    dataset.check_out_dir(out, overwrite=overwrite)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    tally = Tally(strict=config.strict)

    def timed(stage: str, t0: float) -> None:
        timings[stage] = round(time.perf_counter() - t0, 2)
        if timings[stage] >= 1.0:  # only steps that took a noticeable time (all are in stats.json's timings)
            log(f"{stage}: {timings[stage]:.1f} s")

    for entry in config.sources:  # names first: a typo must not wait for the evaluation index
        if entry.source is not None and entry.source not in SOURCES:
            known = ", ".join(sorted(SOURCES))
            raise UserError(f"unknown source '{entry.source}' in the mixture: use one of {known}, or format + path")
    # Evaluation sets next: a source that IS an evaluation file must fail before minutes of work.
    t0 = time.perf_counter()
    eval_texts, coverage = dc.evaluation_texts(config.data_dir, config.decontamination)
    index = dc.EvalIndex.build(eval_texts, config.decontamination.ngram)
    _refuse_evaluation_files(config, coverage)
    timed("index evaluation sets", t0)

    t0 = time.perf_counter()
    funnel: dict[str, Counter[str]] = defaultdict(Counter)
    entries: list[Entry] = []
    general_labels: set[str] = set()
    teacher = teacher_reasoning(config.cot.teacher)
    styled: dict[str, tuple[str, list[HarmfulRequest]]] = {}
    rotations: dict[str, tuple[str, MCQItem, list[MCQItem]]] = {}
    for source in config.sources:
        label = source.label
        spec = SOURCES.get(source.source or "")
        if source.general if source.general is not None else (spec is not None and spec.general):
            general_labels.add(label)
        before = tally.total()
        records = load_entry(source, config.data_dir, tally)
        funnel[label]["read"] = len(records) + tally.total() - before
        funnel[label]["malformed"] = tally.total() - before
        cleaned = [r for r in (clean_record(r, config.clean, tally) for r in records) if r is not None]
        cleaned = _answer_benign(cleaned, label, config, tally, log)
        funnel[label]["cleaned out"] = len(records) - len(cleaned)
        for record in cleaned:
            key = content_key(record)
            if isinstance(record, HarmfulRequest):
                # Deduplicated and decontaminated as the request itself (keyed without a templated refusal, the
                # same text for every request); its styled variants replace it after near-dedup, because their
                # shared wrapper and refusal would make near-dedup take them for copies of one another.
                variants = styled_requests(record, config.safety, config.seed)
                record = dataclasses.replace(record, safe_response=variants[0].safe_response)
                if config.safety.styles:
                    styled[f"{label}:{record.id}"] = (label, variants)
            elif isinstance(record, MCQItem) and config.mcq.rotations > 1:
                copies = rotated(record, config.mcq.rotations, config.seed)
                if len(copies) > 1:
                    rotations[f"{label}:{record.id}"] = (label, record, copies)
            sample, origin = to_chat(record, label, config, teacher, tally)
            if sample is None:
                funnel[label]["unusable"] += 1
                continue
            entries.append(Entry(sample, key, origin))
        log(f"{label}: {funnel[label]['read']} rows read, {len(cleaned)} kept after cleaning")
    timed("read, clean and format", t0)

    def count_by_source(stage: str, before: list[Entry], after: list[Entry]) -> None:
        kept = Counter(e.sample.source for e in after)
        for label, n in Counter(e.sample.source for e in before).items():
            funnel[label][stage] = n - kept[label]

    t0 = time.perf_counter()
    deduped = exact_dedup(entries, Entry.get_key, tally, Entry.where)
    count_by_source("exact duplicates", entries, deduped)
    timed("exact dedup", t0)

    t0 = time.perf_counter()
    clean_entries, removed = dc.decontaminate(deduped, Entry.text, index, tally, Entry.where)
    if config.decontamination.embedding:
        clean_entries, more = dc.embedding_pass(
            clean_entries,
            Entry.text,
            eval_texts,
            config.decontamination.embedding_threshold,
            config.decontamination.embedder,
            tally,
            Entry.where,
        )
        removed += more
    count_by_source("contaminated", deduped, clean_entries)
    timed("decontaminate", t0)

    t0 = time.perf_counter()
    if config.near_dedup:
        unique_entries = near_dedup(clean_entries, Entry.get_key, config.dedup, tally, Entry.where)
    else:
        unique_entries = clean_entries
    count_by_source("near duplicates", clean_entries, unique_entries)
    unique = []
    for entry in unique_entries:
        rotation = rotations.get(entry.where())
        if rotation is not None:
            label, original, copies = rotation
            for copy in copies:
                sample = to_chat(copy, label, config, teacher, tally, original=original)[0]
                if sample is not None:
                    unique.append(sample)
            continue
        label_variants = styled.get(entry.where())
        if label_variants is None:
            unique.append(entry.sample)
            continue
        label, variants = label_variants
        unique += [sample for v in variants if (sample := to_chat(v, label, config, teacher, tally)[0]) is not None]
    timed("near dedup", t0)

    t0 = time.perf_counter()
    splits, share = mix_and_split(unique, config, general_labels, funnel)
    timed("mix and split", t0)
    if not splits["train"]:  # an empty dataset would only fail later, in training, far from the cause
        fix = "fix the sources (--strict stops at the first malformed row)"
        raise UserError(tally.why_empty("the mixture has no training rows", fix))

    # Verification, not trust: re-scan what is about to be written for any overlap left.
    t0 = time.perf_counter()
    remaining = sum(dc.check_clean(splits[name], _sample_text, index) for name in dataset.SPLITS)
    timed("verify", t0)
    decon_report = dc.report(coverage, removed, config.decontamination, remaining)

    origins = Counter(e.origin for e in unique_entries if e.origin != "n/a")
    stats = _stats(config, splits, funnel, tally, decon_report, share, origins, timings, started)
    from aloekit.data.card import mixture_card

    dataset.publish_dataset(
        out,
        stage="data",
        splits=splits,
        stats=stats,
        report=decon_report,
        card=mixture_card(stats, decon_report, config),
        config=config,
        seed=config.seed,
        overwrite=overwrite,
    )
    return stats


def _sample_text(sample: ChatSample) -> str:
    return sample.text


@dataclass(frozen=True)
class Entry:
    """A formatted sample with what dedup compares (its content, not the template around it) and where its
    chain-of-thought came from."""

    sample: ChatSample
    key: str
    origin: str

    def get_key(self) -> str:
        return self.key

    def text(self) -> str:
        return self.sample.text

    def where(self) -> str:
        return f"{self.sample.source}:{self.sample.id}"


def content_key(record: Record) -> str:
    """What makes two records the same item: an MCQ's question, options and context (two copies of a question
    get different templates, so the formatted prompts differ); a chat's turns without the system prompt, answers
    included: "What are the symptoms of X?" for two different X is the same question shape, not a duplicate."""
    if isinstance(record, MCQItem):
        return "\n".join([record.context or "", record.question, *record.options])
    if isinstance(record, ChatSample):
        return "\n".join(m["content"] for m in record.messages if m["role"] != "system")
    if isinstance(record, HarmfulRequest):
        return "\n".join([record.prompt, record.safe_response or ""])
    if isinstance(record, BenignItem):
        return "\n".join([record.prompt, record.answer or ""])
    return str(record)


# Files that hold an evaluation split *and* a training pool, which the source reads apart (PubMedQA PQA-L: the
# source drops the 500 official test PMIDs), so reading them is not training on the evaluation set.
_SPLIT_BY_SOURCE = {"pubmedqa"}


def _refuse_evaluation_files(config: MixtureConfig, coverage: dict[str, dict[str, Any]]) -> None:
    """A source reading a checked evaluation file would be removed row by row anyway; say so up front, and how."""
    checked = {
        Path(c["path"]).resolve(): name
        for name, c in coverage.items()
        if c.get("status") == "checked" and c.get("path") and name not in _SPLIT_BY_SOURCE
    }
    for entry in config.sources:
        path = entry.path
        if path is None and entry.source in SOURCES and config.data_dir is not None:
            local = SOURCES[entry.source].local
            path = config.data_dir / local if local and "*" not in local else None
        if path is not None and path.resolve() in checked:
            bench = checked[path.resolve()]
            raise UserError(
                f"source '{entry.label}' reads {path}, the evaluation file of benchmark '{bench}': drop the source, "
                f"or add '{bench}' to decontamination.exclude (and never report {bench} results for this model)"
            )


def mix_and_split(
    samples: Sequence[ChatSample], config: MixtureConfig, general: set[str], funnel: dict[str, Counter[str]]
) -> tuple[dict[str, list[ChatSample]], dict[str, Any]]:
    """Apply caps and weights per source, split train/validation per source, then the general share.

    The split is drawn from distinct items *before* weights repeat any, so a repeated item never sits on both
    sides of the split (validation loss would then measure memorisation).
    """
    rng = random.Random(config.seed)
    by_source: dict[str, list[ChatSample]] = defaultdict(list)
    for s in samples:
        by_source[s.source].append(s)
    train: dict[str, list[ChatSample]] = {}
    validation: list[ChatSample] = []
    for entry in config.sources:
        pool = by_source.get(entry.label, [])
        funnel[entry.label]["available"] = len(pool)
        distinct = min(len(pool), entry.cap or len(pool))
        target = round(distinct * entry.weight)
        # Copies of one item (its rotations, its attack styles) are drawn and split together: a cap then keeps
        # whole questions (every letter once), and no question sits on both sides of the split.
        groups = _item_groups(pool)
        per_group = len(pool) / len(groups) if groups else 1.0
        picked = rng.sample(groups, min(len(groups), round(min(distinct, target) / per_group)))
        n_val = round(len(picked) * config.validation)
        val = [s for group in picked[:n_val] for s in group]
        tr = [s for group in picked[n_val:] for s in group]
        chosen = val + tr
        repeats = target - len(chosen)
        if repeats > 0 and tr:
            tr = tr + [_repeat(s, i) for i, s in enumerate(rng.choices(tr, k=repeats))]
        train[entry.label], funnel[entry.label]["validation"] = tr, len(val)
        validation.extend(val)
    share = _general_share(train, general, config.general_share, rng)
    for label, rows in train.items():
        funnel[label]["train"] = len(rows)
    train_rows = [s for rows in train.values() for s in rows]
    rng.shuffle(train_rows)
    rng.shuffle(validation)
    return {"train": train_rows, "validation": validation}, share


_COPY_SUFFIX = re.compile(r":(?:rot\d+|" + "|".join(map(re.escape, STYLES)) + r")$")


def item_key(sample_id: str) -> str:
    """The item a sample was made from: its id without a copy suffix (``:rot<k>`` or ``:<attack style>``)."""
    return _COPY_SUFFIX.sub("", sample_id)


def _item_groups(samples: Sequence[ChatSample]) -> list[list[ChatSample]]:
    """``samples`` grouped by the item they were made from (ids ``<item>:rot<k>`` or ``<item>:<style>``), in
    first-seen order; a sample of its own is a group of one."""
    groups: dict[str, list[ChatSample]] = {}
    for s in samples:
        groups.setdefault(item_key(s.id), []).append(s)
    return list(groups.values())


def _repeat(sample: ChatSample, i: int) -> ChatSample:
    return dataclasses.replace(sample, id=f"{sample.id}#repeat{i}")


def _general_share(
    train: dict[str, list[ChatSample]], general: set[str], wanted: float | None, rng: random.Random
) -> dict[str, Any]:
    """Downsample general sources (never medical ones) to reach ``wanted``; report what was reached, honestly."""
    n_general = sum(len(rows) for label, rows in train.items() if label in general)
    n_total = sum(len(rows) for rows in train.values())
    if wanted is None or n_total == 0:
        return {"asked": wanted, "reached": round(n_general / n_total, 4) if n_total else 0.0}
    n_medical = n_total - n_general
    target = round(wanted * n_medical / (1 - wanted))
    if target < n_general:
        for label in [lab for lab in train if lab in general]:
            keep = round(len(train[label]) * target / n_general)
            train[label] = rng.sample(train[label], keep)
    n_general = sum(len(rows) for label, rows in train.items() if label in general)
    n_total = sum(len(rows) for rows in train.values())
    reached = round(n_general / n_total, 4) if n_total else 0.0
    note = None if abs(reached - wanted) < 0.01 else "not enough general data to reach the share asked for"
    return {"asked": wanted, "reached": reached, "note": note}


def _stats(
    config: MixtureConfig,
    splits: dict[str, list[ChatSample]],
    funnel: dict[str, Counter[str]],
    tally: Tally,
    decon: dict[str, Any],
    share: dict[str, Any],
    origins: Counter[str],
    timings: dict[str, float],
    started: float,
) -> dict[str, Any]:
    def words(s: ChatSample) -> int:
        return len(s.text.split())

    return {
        "train": len(splits["train"]),
        "validation": len(splits["validation"]),
        "sources": {label: dict(counts) for label, counts in funnel.items()},
        "tasks": {name: dict(Counter(s.task for s in rows).most_common()) for name, rows in splits.items() if rows},
        "words": {name: dataset.length_stats([words(s) for s in rows]) for name, rows in splits.items()},
        "chain_of_thought": dict(origins),
        "general_share": share,
        "dropped": tally.to_json(),
        "decontamination": {
            "removed": decon.get("removed_total", len(decon.get("removed", []))),
            "remaining_overlaps": decon.get("remaining_overlaps"),
        },
        "seed": config.seed,
        "timings_s": {**timings, "total": round(time.perf_counter() - started, 2)},
    }
