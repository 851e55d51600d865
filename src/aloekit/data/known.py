"""Keep the multiple-choice questions a model already answers right when it scores the option texts.

Why: a small model scored in the letter formulation (lettered options in the prompt, the letters scored) sits near
uniform over the letters after SFT on the gold answers of questions it cannot answer, and a residual letter prior,
not the question, picks its answer (bench/RESULTS.md, sweep-grouped-plain notes). The same model ranks the option
*texts* above chance (cloze: each option's log-likelihood per character after ``Question: ...\\nAnswer:``, as
lm-eval's ``acc_norm``). Trained at every letter on the questions whose key it already ranks first as text, the
model is taught the letter format as a skill it can learn (name the letter of the option it finds most likely),
with answers that are all right, instead of facts it cannot learn from a few hundred steps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from pydantic import Field

from aloekit.config import EngineConfig, _Config
from aloekit.data.schema import MCQItem
from aloekit.data.tally import Tally
from aloekit.engines.base import Engine, LoglikelihoodRequest
from aloekit.errors import UserError
from aloekit.evaluation import prompts

__all__ = [
    "ClozeAnswers",
    "KnownFilter",
    "answer_by_cloze",
    "apply_option_scan",
    "cloze_choice",
    "cloze_requests",
    "keep_known",
    "known_by_cloze",
    "narrow_to_known",
    "relabel_by_cloze",
    "scan_order",
]


class _OptionScan(_Config):
    """Which of a source's questions a model scores by option text, and which model."""

    scan: int | None = Field(
        None,
        ge=1,
        description="Score at most this many of the source's questions, taken in a fixed order (a hash of the id), "
        "and drop the rest: scoring costs 0.1-0.2 s a question on 2 CPU cores. None scores every question.",
    )
    scorer: EngineConfig | None = Field(
        None, description="The model that scores the options (default: the mixture's responder)."
    )


class KnownFilter(_OptionScan):
    """Train only on the questions of a source that a scoring model already answers right by option text."""


class ClozeAnswers(_OptionScan):
    """Teach a source's multiple-choice questions as the letter format alone: each question's key becomes the option
    the scoring model ranks first by option text (its own cloze answer), so the letter it is taught is the one its
    own reading of the options supports (bench/binding_probe.py)."""


def scan_order(items: Sequence[MCQItem]) -> list[MCQItem]:
    """``items`` in a fixed order that depends on the ids only (not on file order, seed or other settings)."""
    return sorted(items, key=lambda i: hashlib.sha256(i.id.encode()).hexdigest())


def cloze_requests(item: MCQItem) -> list[LoglikelihoodRequest]:
    """One request per option: the option text after the question (the evaluation's cloze prompt)."""
    context = prompts.cloze_question(item)
    return [LoglikelihoodRequest(context, prompts.TARGET_DELIMITER + option) for option in item.options]


def cloze_choice(item: MCQItem, logprobs: Sequence[float]) -> int:
    """The option with the highest log-likelihood per character (lm-eval's acc_norm choice); the first on a tie."""
    per_char = np.asarray(logprobs, dtype=float) / np.array([float(max(len(o), 1)) for o in item.options])
    return int(np.argmax(per_char))


def known_by_cloze(item: MCQItem, logprobs: Sequence[float]) -> bool:
    """Whether the key has the highest log-likelihood per character among the options (lm-eval's acc_norm)."""
    return cloze_choice(item, logprobs) == item.answer


def _scan(
    items: Sequence[MCQItem], engine: Engine, scan: int | None, tally: Tally, stage: str
) -> list[tuple[MCQItem, int]]:
    """The first ``scan`` of ``items`` in :func:`scan_order`, each with its cloze choice under ``engine``; the
    others are counted in ``tally`` as dropped at ``stage``."""
    ordered = scan_order(items)
    scanned = ordered[:scan]  # every question when scan is None
    for item in ordered[len(scanned) :]:
        tally.drop(stage, f"beyond the questions scanned ({stage}.scan)", item.id)
    requests = [cloze_requests(item) for item in scanned]
    flat = engine.loglikelihood([r for rs in requests for r in rs], progress=True)
    out, at = [], 0
    for item, rs in zip(scanned, requests, strict=True):
        out.append((item, cloze_choice(item, [x.logprob for x in flat[at : at + len(rs)]])))
        at += len(rs)
    return out


def keep_known(
    items: Sequence[MCQItem],
    engine: Engine,
    *,
    scan: int | None,
    label: str,
    tally: Tally,
    log: Callable[[str], None],
) -> list[MCQItem]:
    """The questions among ``items`` (the first ``scan`` in :func:`scan_order`) whose key ``engine`` ranks first by
    option text, in their original order; every other question is dropped and counted in ``tally``."""
    scanned = _scan(items, engine, scan, tally, "known")
    known: set[str] = set()
    for item, choice in scanned:
        if choice == item.answer:
            known.add(item.id)
        else:
            tally.drop("known", "the scorer does not rank the key first by option text", item.id)
    log(f"{label}: {len(known)} of {len(scanned)} questions scanned are answered right by option text")
    return [item for item in items if item.id in known]


def narrow_to_known(
    questions: Sequence[MCQItem],
    known: KnownFilter,
    default_scorer: EngineConfig | None,
    *,
    label: str,
    tally: Tally,
    log: Callable[[str], None],
) -> list[MCQItem]:
    """:func:`keep_known` with the source's scorer (``known.scorer``, else ``default_scorer``) loaded for the scan
    and closed after it; a source with no questions, or no scorer, is a :class:`UserError`."""
    log(f"{label}: scoring {len(questions)} questions by option text to keep those the model answers right")
    return _with_scorer(
        questions,
        "known",
        known.scorer or default_scorer,
        label,
        lambda engine: keep_known(questions, engine, scan=known.scan, label=label, tally=tally, log=log),
    )


def _with_scorer(
    questions: Sequence[MCQItem],
    option: str,
    scorer: EngineConfig | None,
    label: str,
    run: Callable[[Engine], list[MCQItem]],
) -> list[MCQItem]:
    """``run`` with ``scorer`` loaded, closed after it; a source's ``option`` with no questions to score, or nothing
    to score them, is a :class:`UserError`."""
    if not questions:
        raise UserError(f"source '{label}' has '{option}' but no multiple-choice questions: remove '{option}' from it")
    if scorer is None:
        raise UserError(f"source '{label}': {option} needs a scorer: set {option}.scorer")
    engine = scorer.load()
    try:
        return run(engine)
    finally:
        engine.close()


def relabel_by_cloze(
    items: Sequence[MCQItem],
    engine: Engine,
    *,
    scan: int | None,
    label: str,
    tally: Tally,
    log: Callable[[str], None],
) -> list[MCQItem]:
    """The first ``scan`` of ``items`` in :func:`scan_order`, in their original order, each keyed to ``engine``'s
    cloze choice; every other question is counted in ``tally``. The explanation is kept for what only restates
    the question from it (answer-format pairs' rejected start); it argues for the source's key, so nothing may
    teach it as the reasoning behind the new key (the mixture teaches these questions as plain letters only)."""
    scanned = _scan(items, engine, scan, tally, "cloze_answers")
    choice = {item.id: c for item, c in scanned}
    changed = sum(c != item.answer for item, c in scanned)
    log(
        f"{label}: {len(scanned)} questions keyed to the scorer's cloze answer ({changed} differ from the source's key)"
    )
    return [replace(item, answer=choice[item.id]) for item in items if item.id in choice]


def answer_by_cloze(
    questions: Sequence[MCQItem],
    cloze: ClozeAnswers,
    default_scorer: EngineConfig | None,
    *,
    label: str,
    tally: Tally,
    log: Callable[[str], None],
) -> list[MCQItem]:
    """:func:`relabel_by_cloze` with the source's scorer (``cloze.scorer``, else ``default_scorer``) loaded for the
    scan and closed after it; a source with no questions, or no scorer, is a :class:`UserError`."""
    count = len(questions) if cloze.scan is None else min(cloze.scan, len(questions))
    log(f"{label}: scoring {count} of {len(questions)} questions by option text to key each to the model's own choice")
    return _with_scorer(
        questions,
        "cloze_answers",
        cloze.scorer or default_scorer,
        label,
        lambda engine: relabel_by_cloze(questions, engine, scan=cloze.scan, label=label, tally=tally, log=log),
    )


def apply_option_scan(
    records: Sequence[object],
    *,
    known: KnownFilter | None,
    cloze: ClozeAnswers | None,
    default_scorer: EngineConfig | None,
    label: str,
    tally: Tally,
    log: Callable[[str], None],
) -> list[object]:
    """``records`` with their multiple-choice questions narrowed by ``known`` or keyed by ``cloze`` (at most one is
    set), in their order; every other record passes unchanged."""
    questions = [r for r in records if isinstance(r, MCQItem) and len(r.options) > 1]
    if known is not None:
        found = narrow_to_known(questions, known, default_scorer, label=label, tally=tally, log=log)
    else:
        assert cloze is not None
        found = answer_by_cloze(questions, cloze, default_scorer, label=label, tally=tally, log=log)
    by_id = {q.id: q for q in found}
    return [
        by_id.get(r.id, r) if isinstance(r, MCQItem) else r
        for r in records
        if not isinstance(r, MCQItem) or len(r.options) < 2 or r.id in by_id
    ]
