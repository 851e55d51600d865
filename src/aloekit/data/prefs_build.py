"""``aloe data prefs``: preference pairs for the two DPO stages, as a dataset on disk.

Four kinds, each optional: **medical** (chosen = a verified chain-of-thought answer, rejected = the policy
model's own wrong answer, generated), **red-teaming** (harmful requests wrapped in attack styles; chosen = a safe
refusal that still helps, rejected = a compliant reply), **benign** look-alikes (chosen = a helpful answer,
rejected = an unneeded refusal, so alignment does not teach over-refusal), **reference** (chosen = a source's
written answer, rejected = the policy's own reply: general pairs, SPIN's). Pairs from existing preference files
can be added as they are. Every pair is checked against every evaluation set, like SFT data.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from aloekit.config import EngineConfig, _Config
from aloekit.data import dataset
from aloekit.data.clean import CleanConfig, clean_harmful, clean_mcq, clean_pair
from aloekit.data.cot import explanation_cot
from aloekit.data.decontaminate import DecontamConfig
from aloekit.data.dedup import exact_dedup
from aloekit.data.known import apply_option_scan
from aloekit.data.mixture import ReasoningConfig, SourceEntry, balanced, load_entry, teacher_reasoning
from aloekit.data.schema import ChatSample, HarmfulRequest, MCQItem, PreferencePair
from aloekit.data.sources import BenignItem
from aloekit.data.tally import Tally
from aloekit.errors import UserError


class MedicalPrefs(_Config):
    """Medical pairs: the policy answers MCQ items that have verified reasoning; its wrong answers are rejected.
    Or, with ``rejected: wrong_option``, the key's letter is chosen over a wrong option's (no policy needed)."""

    sources: tuple[SourceEntry, ...] = Field(description="Multiple-choice sources.", min_length=1)
    rejected: Literal["policy", "policy_answer", "wrong_option", "reasoning"] = Field(
        "policy",
        description="policy: the policy's own wrong reply is rejected (chosen: verified reasoning; a question it "
        "answers right gives no pair). policy_answer: the policy is asked for the answer alone and 'Answer: <key>' "
        "is chosen over its reply where that reply does not name the key (on-policy: its own favourite wrong letter "
        "and unreadable replies are pushed down; no reasoning needed). wrong_option: 'Answer: <key>' is chosen "
        "over 'Answer: <a wrong option>' for every question (no generation: thousands of pairs fit a CPU budget). "
        "reasoning: asked for the answer alone, 'Answer: <key>' is chosen over a reply that starts reasoning (the "
        "question restated and its expert explanation): instruction following, the same key on both sides.",
    )
    balance_letters: bool = Field(
        False, description="Reorder options so the key's letter is dealt evenly (see the mixture's mcq section)."
    )
    rotations: int = Field(
        1,
        ge=1,
        le=10,
        description="wrong_option, policy_answer and reasoning: ask each question this many times, options "
        "rotated so the key (and the rejected option) move over the letters: every letter is chosen and rejected "
        "equally often, and a letter preference earns nothing (see the mixture's mcq.rotations).",
    )
    option_text: bool = Field(
        False,
        description="wrong_option, policy_answer and reasoning: replies name the option too ('Answer: B. <option>').",
    )
    plain: bool = Field(
        False,
        description="wrong_option only: ask in a log-likelihood benchmark's plain layout (no chat template, "
        "'...Answer:' then ' B' over ' C'), so the preference acts on the letter probabilities those benchmarks "
        "compare. A DPO stage takes plain pairs or chat pairs, not both: use no other kind of pair with it.",
    )
    cot: ReasoningConfig = Field(
        default_factory=ReasoningConfig, description="Where the verified reasoning (chosen) comes from."
    )
    policy: EngineConfig = Field(default_factory=EngineConfig, description="The model being aligned (answers).")
    limit: int | None = Field(None, ge=1, description="Most items put to the policy (seeded sample).")
    max_tokens: int = Field(256, ge=16, description="Most new tokens per policy answer.")
    reasoning_words: int = Field(
        48, ge=3, description="reasoning only: the rejected reply's length in words (cut at a sentence end)."
    )

    @model_validator(mode="after")
    def _cloze_keys_need_no_explanation(self) -> MedicalPrefs:
        keyed = [e.label for e in self.sources if e.cloze_answers is not None]
        if keyed and self.rejected == "policy":
            raise ValueError(
                f"source '{keyed[0]}' has 'cloze_answers', but rejected: policy chooses the source's explanation, "
                "which argues for the source's key: use rejected: wrong_option, policy_answer or reasoning"
            )
        return self


class RedteamPrefs(_Config):
    """Red-teaming pairs from harmful requests (MedSafetyBench train, AdvBench, user files)."""

    sources: tuple[SourceEntry, ...] = Field(description="Harmful-request sources.", min_length=1)
    styles: tuple[str, ...] | None = Field(None, description="Attack styles to wrap requests in (None: all).")
    styles_per_request: int = Field(1, ge=1, description="Distinct styles per request (one pair each).")
    always_styles: tuple[str, ...] = Field(
        (), description="Styles every request gets on top of the drawn ones (e.g. [plain]: the request as written)."
    )
    responder: EngineConfig | None = Field(
        None, description="Model that writes missing safe / compliant replies (checked by the refusal detector)."
    )
    max_tokens: int = Field(256, ge=16, description="Most new tokens per generated reply.")
    refusal_templates: bool = Field(
        False,
        description="A request whose source ships no safe reply (AdvBench) gets a fixed refusal that points to "
        "help as chosen, instead of one the responder writes (no generation for that side).",
    )


class BenignPrefs(_Config):
    """Benign look-alikes: questions that sound dangerous but deserve a helpful answer."""

    sources: tuple[SourceEntry, ...] = Field(description="Benign sources (format: benign, prompt + answer).")
    responder: EngineConfig | None = Field(None, description="Model that answers prompts shipped without answers.")
    max_tokens: int = Field(256, ge=16, description="Most new tokens per generated answer.")


class ReferencePrefs(_Config):
    """Open questions with written answers: the reference (chosen) over the policy's own reply (rejected), the
    pairs of self-play fine-tuning (SPIN). A general preference set a small model can learn from: what tells the
    two replies apart is in their words, not in knowledge it lacks."""

    sources: tuple[SourceEntry, ...] = Field(
        description="Sources of questions with answers (medicationqa, medical_meadow, chatdoctor, or files)."
    )
    policy: EngineConfig = Field(
        default_factory=EngineConfig, description="The model being aligned: its replies are the rejected side."
    )
    max_tokens: int = Field(128, ge=16, description="Most new tokens per policy reply.")
    max_words: int | None = Field(
        96,
        ge=8,
        description="Longer references are cut at a sentence end within this many words, so that length alone "
        "does not separate chosen from rejected (null: keep them whole).",
    )


class PrefsConfig(_Config):
    """Preference pairs for DPO (``aloe data prefs CONFIG --out DIR``)."""

    data_dir: Path | None = Field(None, description="Folder laid out like shared/data, for registered sources.")
    seed: int = Field(0, description="Seed for sampling, styles and the split.")
    strict: bool = Field(False, description="Stop at the first malformed input row instead of counting it.")
    validation: float = Field(0.05, ge=0, lt=1, description="Share of pairs (grouped by request) held out.")
    medical: MedicalPrefs | None = Field(None, description="Medical pairs (needs a policy model).")
    letters: MedicalPrefs | None = Field(
        None,
        description="Plain letter pairs trained in the same DPO stage as the other pairs: after a benchmark's "
        "'...Answer:', ' <key>' over a wrong option's letter (plain: true, rejected: wrong_option; keyed, for a "
        "small model, to its own cloze answers). They keep up the letter probabilities a log-likelihood benchmark "
        "compares, which a stage of chat pairs alone shifts (rd13's DPO safety: one letter up to 50% of the "
        "answers, bench/RESULTS.md). The trainer renders the chat pairs as text beside them.",
    )
    redteam: RedteamPrefs | None = Field(None, description="Red-teaming pairs.")
    benign: BenignPrefs | None = Field(None, description="Benign look-alike pairs.")
    reference: ReferencePrefs | None = Field(
        None, description="General pairs: reference answers over the policy's own replies (SPIN)."
    )
    pairs: tuple[SourceEntry, ...] = Field((), description="Existing preference files (TRL layout), used as is.")
    clean: CleanConfig = Field(default_factory=CleanConfig, description="Cleaning rules.")
    decontamination: DecontamConfig = Field(
        default_factory=DecontamConfig, description="Evaluation sets no pair may overlap."
    )

    @model_validator(mode="after")
    def _something(self) -> PrefsConfig:
        if not (self.medical or self.letters or self.redteam or self.benign or self.reference or self.pairs):
            raise ValueError(
                "nothing to build: add a 'medical', 'letters', 'redteam', 'benign', 'reference' or 'pairs' section"
            )
        if self.letters is not None and not self.letters.plain:
            raise ValueError("letters: set plain: true (the letters section holds plain letter pairs only)")
        for name, section in (("medical", self.medical), ("letters", self.letters)):
            if section is not None and section.plain and (section.rejected != "wrong_option" or section.option_text):
                raise ValueError(f"{name}: plain pairs need rejected: wrong_option and option_text: false")
        return self


def _mcq_items(
    entries: Sequence[SourceEntry], config: PrefsConfig, tally: Tally, log: Callable[[str], None]
) -> list[MCQItem]:
    """The cleaned questions of ``entries`` (those cleaning drops are counted in ``tally``)."""
    return [c for r in _records(entries, MCQItem, config, tally, log) if (c := clean_mcq(r, config.clean, tally))]


def _records(
    entries: Sequence[SourceEntry],
    kind: type | tuple[type, ...],
    config: PrefsConfig,
    tally: Tally,
    log: Callable[[str], None] = lambda _: None,
) -> list[Any]:
    out = []
    for entry in entries:
        records = load_entry(entry, config.data_dir, tally)
        if entry.known is not None or entry.cloze_answers is not None:
            records = _by_scorer(entry, records, config, tally, log)
        if entry.cap is not None and len(records) > entry.cap:
            # A seeded sample across the whole source (the first rows of MedSafetyBench are all one category).
            records = random.Random(f"{config.seed}:{entry.label}").sample(records, entry.cap)
        wrong = {type(r).__name__ for r in records if not isinstance(r, kind)}
        if wrong:
            needed = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise UserError(
                f"source '{entry.label}' holds {', '.join(sorted(wrong))} records where {needed} are needed"
            )
        out.extend(records)
    return out


def _by_scorer(
    entry: SourceEntry, records: list[Any], config: PrefsConfig, tally: Tally, log: Callable[[str], None]
) -> list[Any]:
    """The multiple-choice questions of ``entry`` narrowed by ``known`` to those its scorer (default: the medical
    policy) already answers right by option text, or keyed by ``cloze_answers`` to that scorer's own choice, so the
    pairs prefer the letter the model's reading of the options supports (:mod:`aloekit.data.known`)."""
    if any(not isinstance(r, MCQItem) or len(r.options) < 2 for r in records):
        option = "known" if entry.known is not None else "cloze_answers"
        raise UserError(f"source '{entry.label}' has '{option}', which applies to multiple-choice sources only")
    policy = config.medical.policy if config.medical is not None else None
    return apply_option_scan(
        records,
        known=entry.known,
        cloze=entry.cloze_answers,
        default_scorer=policy,
        label=entry.label,
        tally=tally,
        log=log,
    )


def _medical(
    m: MedicalPrefs,
    items: list[MCQItem],
    config: PrefsConfig,
    tally: Tally,
    log: Callable[[str], None],
    progress: bool,
    label: str = "medical",
) -> tuple[list[PreferencePair], dict[str, int]]:
    """The medical pairs of ``items`` (cleaned) in the ``rejected`` mode of ``m``, and their funnel counts; ``label``
    names the section in the log."""
    from aloekit.data import prefs, prefs_answers

    if m.rejected == "policy":
        teacher = teacher_reasoning(m.cot.teacher)
        verified = []
        for item in items:
            reasoning = teacher.get(item.id) or (explanation_cot(item) if m.cot.explanations else None)
            if reasoning is None:
                tally.drop("prefs", "no verified reasoning for the chosen answer", item.id)
                continue
            verified.append(_with_explanation(item, reasoning))
        if m.limit is not None and len(verified) > m.limit:
            verified = random.Random(config.seed).sample(verified, m.limit)
        log(f"{label}: {len(verified)} items with verified reasoning go to the policy")
        engine = m.policy.load()
        try:
            made = prefs.medical_pairs(
                engine, verified, seed=config.seed, max_tokens=m.max_tokens, tally=tally, progress=progress
            )
        finally:
            engine.close()
        return made, {"read": len(items), "asked": len(verified), "pairs": len(made)}
    if m.limit is not None and len(items) > m.limit:
        items = random.Random(config.seed).sample(items, m.limit)
    seed, rotations, option_text = config.seed, m.rotations, m.option_text
    if m.rejected == "wrong_option":
        made = prefs_answers.answer_pairs(
            items, seed=seed, tally=tally, rotations=rotations, option_text=option_text, plain=m.plain
        )
        log(f"{label}: {len(made)} pairs of the key's letter over a wrong option's")
    elif m.rejected == "reasoning":
        made = prefs_answers.format_pairs(
            items, seed=seed, tally=tally, max_words=m.reasoning_words, rotations=rotations, option_text=option_text
        )
        log(f"{label}: {len(made)} pairs of the answer over a reply that reasons when asked for the answer")
    else:  # policy_answer
        log(f"{label}: {len(items)} questions x {rotations} rotation(s) go to the policy, asked for the answer")
        engine = m.policy.load()
        try:
            made = prefs_answers.policy_answer_pairs(
                engine,
                items,
                seed=seed,
                max_tokens=m.max_tokens,
                tally=tally,
                rotations=rotations,
                option_text=option_text,
                progress=progress,
            )
        finally:
            engine.close()
        log(f"{label}: {len(made)} pairs of the key over the policy's own reply")
    return made, {"read": len(items), "pairs": len(made)}


def build_prefs(
    config: PrefsConfig, out: Path, *, overwrite: bool = False, progress: bool = False, log: Callable[[str], None]
) -> dict[str, Any]:
    from aloekit.data import decontaminate as dc
    from aloekit.data import prefs

    dataset.check_out_dir(out, overwrite=overwrite)
    started = time.perf_counter()
    tally = Tally(strict=config.strict)
    eval_texts, coverage = dc.evaluation_texts(config.data_dir, config.decontamination)
    index = dc.EvalIndex.build(eval_texts, config.decontamination.ngram)
    pairs: list[PreferencePair] = []
    funnel: dict[str, Counter[str]] = defaultdict(Counter)

    if config.medical is not None:
        m = config.medical
        items = _mcq_items(m.sources, config, tally, log)
        if m.balance_letters:
            items = [balanced(item, config.seed) for item in items]
        made, counts = _medical(m, items, config, tally, log, progress)
        funnel["medical"].update(counts)
        pairs += made

    if config.letters is not None:
        m = config.letters
        made, counts = _medical(
            m, _mcq_items(m.sources, config, tally, log), config, tally, log, progress, label="letters"
        )
        funnel["letters"].update(counts)
        pairs += [replace(p, category="letters") for p in made]

    if config.redteam is not None:
        r = config.redteam
        requests = [
            h
            for q in _records(r.sources, HarmfulRequest, config, tally)
            if (h := clean_harmful(q, config.clean, tally))
        ]
        from aloekit.safety.styles import STYLES

        styles = r.styles or tuple(STYLES)
        engine = r.responder.load() if r.responder else None
        try:
            made = prefs.redteam_pairs(
                requests,
                styles=styles,
                seed=config.seed,
                tally=tally,
                responder=engine,
                styles_per_request=r.styles_per_request,
                always_styles=r.always_styles,
                max_tokens=r.max_tokens,
                progress=progress,
                refusal_templates=r.refusal_templates,
            )
        finally:
            if engine is not None:
                engine.close()
        funnel["redteam"].update({"read": len(requests), "pairs": len(made)})
        pairs += made

    if config.benign is not None:
        b = config.benign
        items_b = [_benign(r) for r in _records(b.sources, (BenignItem, ChatSample), config, tally)]
        engine = b.responder.load() if b.responder else None
        try:
            made = prefs.benign_pairs(
                [(i.id, i.prompt, i.answer) for i in items_b],
                seed=config.seed,
                tally=tally,
                source=",".join(e.label for e in b.sources),
                responder=engine,
                max_tokens=b.max_tokens,
            )
        finally:
            if engine is not None:
                engine.close()
        funnel["benign"].update({"read": len(items_b), "pairs": len(made)})
        pairs += made

    if config.reference is not None:
        g = config.reference
        items_r = [_benign(r) for r in _records(g.sources, (BenignItem, ChatSample), config, tally)]
        engine = g.policy.load()
        try:
            made = prefs.reference_pairs(
                [(i.id, i.prompt, i.answer) for i in items_r],
                policy=engine,
                seed=config.seed,
                tally=tally,
                source=",".join(e.label for e in g.sources),
                max_tokens=g.max_tokens,
                max_words=g.max_words,
            )
        finally:
            engine.close()
        funnel["general"].update({"read": len(items_r), "pairs": len(made)})
        pairs += made

    if config.pairs:
        given = _records(config.pairs, PreferencePair, config, tally)
        funnel["pairs"].update({"read": len(given), "pairs": len(given)})
        pairs += given

    cleaned = [cp for p in pairs if (cp := clean_pair(p, config.clean, tally))]
    deduped = exact_dedup(cleaned, _pair_key, tally, _where)
    kept, removed = dc.decontaminate(deduped, _pair_text, index, tally, _where)
    splits = _split(kept, config)
    if not splits["train"]:  # DPO on zero pairs would fail later, far from the cause
        fix = "fix the sources (--strict stops at the first malformed row)"
        raise UserError(tally.why_empty("the preference build has no training pairs", fix))
    remaining = sum(dc.check_clean(splits[s], _pair_text, index) for s in dataset.SPLITS)
    report = dc.report(coverage, removed, config.decontamination, remaining)
    for name, rows in splits.items():
        for category, n in Counter(p.category for p in rows).items():
            funnel[category][name] = n
    stats = {
        "train": len(splits["train"]),
        "validation": len(splits["validation"]),
        "sources": {k: dict(v) for k, v in funnel.items()},
        "categories": dict(Counter(p.category for p in kept)),
        "attack_styles": dict(Counter(p.attack_style for p in kept if p.attack_style)),
        "dropped": tally.to_json(),
        "decontamination": {"removed": len(removed), "remaining_overlaps": remaining},
        "seed": config.seed,
        "timings_s": {"total": round(time.perf_counter() - started, 2)},
    }
    from aloekit.data.card import prefs_card

    dataset.publish_dataset(
        out,
        stage="prefs",
        splits=splits,
        stats=stats,
        report=report,
        card=prefs_card(stats, report, config),
        config=config,
        seed=config.seed,
        overwrite=overwrite,
    )
    return stats


def _benign(record: BenignItem | ChatSample) -> BenignItem:
    """A benign item, or a single-question chat (a consumer medication question and its answer) read as one."""
    if isinstance(record, BenignItem):
        return record
    user = next(m["content"] for m in record.messages if m["role"] == "user")
    return BenignItem(id=record.id, prompt=user, answer=record.messages[-1]["content"], source=record.source)


def _with_explanation(item: MCQItem, reasoning: str) -> MCQItem:
    return replace(item, explanation=reasoning)


def _pair_key(p: PreferencePair) -> str:
    return p.prompt_text + "\n" + p.chosen


def _pair_text(p: PreferencePair) -> str:
    return "\n".join((p.prompt_text, p.chosen, p.rejected))


def _where(p: PreferencePair) -> str:
    return f"{p.source}:{p.id}"


def _group(p: PreferencePair) -> str:
    """Pairs made from one request (several attack styles) share a group, so they stay on one side of the split."""
    # Pair ids are "<request id>:<style>" (or ":medical", ":benign"): the request id is all before the last colon.
    return f"{p.source}:{p.id.rsplit(':', 1)[0]}"


def _split(pairs: Sequence[PreferencePair], config: PrefsConfig) -> dict[str, list[PreferencePair]]:
    rng = random.Random(config.seed)
    groups = sorted({_group(p) for p in pairs})
    rng.shuffle(groups)
    held = set(groups[: round(len(groups) * config.validation)])
    members: dict[str, list[PreferencePair]] = defaultdict(list)
    for p in pairs:
        members[_group(p)].append(p)
    # Groups in random order, each group's pairs together: the trainer shuffles pairs anyway, and a DPO stage
    # that stops early takes a prefix of whole groups (aloekit.train.dpo.pairs_used).
    train = [p for g in groups if g not in held for p in members[g]]
    validation = [p for p in pairs if _group(p) in held]
    return {"train": train, "validation": validation}
