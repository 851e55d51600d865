"""``aloe data build``: sources -> cleaning -> chain-of-thought -> chat formatting -> exact dedup ->
decontamination -> near dedup -> weighted mixture -> train/validation split -> a dataset on disk.

The order matters: cheap exact dedup first; decontamination before near-dedup so a removed evaluation look-alike
cannot be the "kept" copy of a training item's cluster; weights and caps last, on what survived, so the counts a
user asks for are the counts they get. Every dropped row is counted by stage and reason (:mod:`aloekit.data.tally`).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from aloekit.catalog import guard
from aloekit.data import dataset
from aloekit.data import decontaminate as dc
from aloekit.data.card import mixture_card
from aloekit.data.dedup import exact_dedup, near_dedup
from aloekit.data.known import apply_option_scan
from aloekit.data.mixture.config import MixtureConfig, SourceEntry
from aloekit.data.mixture.records import (
    Record,
    clean_record,
    content_key,
    load_entry,
    styled_requests,
    teacher_reasoning,
    to_chat,
)
from aloekit.data.mixture.split import mix_and_split
from aloekit.data.prefs import benign_pairs
from aloekit.data.schema import ChatSample, HarmfulRequest, MCQItem
from aloekit.data.sources import SOURCES, BenignItem
from aloekit.data.tally import Tally
from aloekit.data.templates import rotated
from aloekit.errors import UserError


def build(
    config: MixtureConfig, out: Path, *, overwrite: bool = False, progress: bool = False, log: Callable[[str], None]
) -> dict[str, Any]:
    """Build the mixture into ``out`` (atomically) and return its stats."""
    dataset.check_out_dir(out, overwrite=overwrite)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    tally = Tally(strict=config.strict)

    def timed(stage: str, t0: float) -> None:
        timings[stage] = round(time.perf_counter() - t0, 2)
        if timings[stage] >= 1.0:  # only steps that took a noticeable time (all are in stats.json's timings)
            log(f"{stage}: {timings[stage]:.1f} s")

    for named in config.sources:  # names first: a typo must not wait for the evaluation index
        if named.source is not None and named.source not in SOURCES:
            known = ", ".join(sorted(SOURCES))
            raise UserError(f"unknown source '{named.source}' in the mixture: use one of {known}, or format + path")
    # Evaluation sets next: a source that IS an evaluation file must fail before minutes of work.
    t0 = time.perf_counter()
    eval_texts, coverage = dc.evaluation_texts(config.data_dir, config.decontamination)
    index = dc.EvalIndex.build(eval_texts, config.decontamination.ngram)
    guard.refuse_checked(((e.label, e.source, e.path) for e in config.sources), config.data_dir, coverage)
    timed("index evaluation sets", t0)

    t0 = time.perf_counter()
    funnel: dict[str, Counter[str]] = defaultdict(Counter)
    entries: list[Entry] = []
    general_labels: set[str] = set()
    teacher = teacher_reasoning(config.cot.teacher)
    styled: dict[str, tuple[str, list[HarmfulRequest]]] = {}
    rotations: dict[str, tuple[str, MCQItem, list[MCQItem]]] = {}
    plain_shares: dict[str, float] = {}  # per source, where it differs from mcq.plain_share
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
        if source.known is not None or source.cloze_answers is not None:
            before_scan = len(cleaned)
            cleaned = _by_scorer(cleaned, source, config, tally, log)
            dropped = "not known by the scorer" if source.known is not None else "beyond the cloze scan"
            funnel[label][dropped] = before_scan - len(cleaned)
        if source.cloze_answers is not None:
            plain_shares[label] = 1.0  # the letter format alone: the keys are the scorer's, not the source's
        elif source.plain_share is not None:
            plain_shares[label] = source.plain_share
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
            sample, origin = to_chat(record, label, config, teacher, tally, plain_share=plain_shares.get(label))
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
                own_share = plain_shares.get(label)
                sample = to_chat(copy, label, config, teacher, tally, original=original, plain_share=own_share)[0]
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


def _by_scorer(
    records: list[Record], source: SourceEntry, config: MixtureConfig, tally: Tally, log: Callable[[str], None]
) -> list[Record]:
    """``records`` with their multiple-choice questions narrowed (``known``) or keyed (``cloze_answers``) by the
    scorer (default: the mixture's responder), :mod:`aloekit.data.known`; other records pass unchanged."""
    out = apply_option_scan(
        records,
        known=source.known,
        cloze=source.cloze_answers,
        default_scorer=config.responder,
        label=source.label,
        tally=tally,
        log=log,
    )
    return cast(list[Record], out)


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
