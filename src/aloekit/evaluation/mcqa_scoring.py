"""Scoring a benchmark's questions through an engine, resumably (the request cache keeps every answer): by the
log-likelihood of each option, by a generated answer, or by a Medprompt ensemble. Each returns a
:class:`BenchmarkRun` of :class:`Scored` questions; :mod:`aloekit.evaluation.mcqa_results` turns it into numbers."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aloekit.config import MCQAConfig
from aloekit.data.schema import MCQItem
from aloekit.data.sources.mcqa import LETTERS
from aloekit.engines.base import Engine, GenerationRequest, LoglikelihoodRequest
from aloekit.errors import UserError
from aloekit.evaluation import benchmarks, prompts
from aloekit.evaluation.cache import RequestCache, request_key
from aloekit.evaluation.calibration import top1_confidence
from aloekit.evaluation.checked import CheckedScorer
from aloekit.progress import progress_bar
from aloekit.prompting import medprompt
from aloekit.prompting.answers import extract_choice
from aloekit.prompting.index import CoTDatabase


@dataclass
class Scored:
    """One question's outcome."""

    item: MCQItem
    prompt: Any
    choices: list[str]
    pred: int | None
    correct: bool
    loglikelihoods: list[float] | None = None
    pred_norm: int | None = None
    generation: str | None = None
    tokens: int = 0
    detail: dict[str, Any] | None = None
    """Mode-specific record for samples.jsonl (medprompt: examples, every run's answer)."""
    truncated: bool | None = None
    """Generation only: the reply stopped at the new-token limit (None: not known)."""
    agreement: float | None = None
    """medprompt: share of the ensemble's answers that agree with the vote."""
    confidence: float | None = None
    """loglik: the softmax probability of the predicted option over the options' log-likelihoods."""


@dataclass
class BenchmarkRun:
    name: str
    scored: list[Scored] = field(default_factory=list)
    seconds: float = 0.0
    """Time spent in the engine during this run (questions served from the cache cost none)."""
    computed: int = 0
    """Questions scored by the engine during this run (the rest came from the cache)."""
    indices: list[int] | None = None
    """Positions of the scored questions in the benchmark (after ``limit``); None: all of them, in order."""
    of: int = 0
    """Questions the benchmark has (after ``limit``), of which ``indices`` were drawn."""


Loaded = dict[str, tuple[list[MCQItem], list[MCQItem]]]
"""benchmark name -> (evaluation items, few-shot examples)."""


def _in_chunks(
    pending: Sequence[int],
    size: int,
    run: BenchmarkRun,
    work: Callable[[list[int]], None],
    progress: bool,
    total: int,
) -> None:
    """Call ``work`` on ``pending`` question indices, ``size`` at a time, timing the engine and showing progress."""
    with progress_bar(progress, total, f"{run.name}") as advance:
        advance(total - len(pending))
        for start in range(0, len(pending), size):
            chunk = list(pending[start : start + size])
            began = time.perf_counter()
            work(chunk)
            run.seconds += time.perf_counter() - began
            run.computed += len(chunk)
            advance(len(chunk))


def score_loglik(
    engine: Engine,
    bench: benchmarks.Benchmark,
    items: list[MCQItem],
    shots: list[MCQItem],
    config: MCQAConfig,
    cache: RequestCache,
    fingerprint: str,
    progress: bool,
    checker: CheckedScorer | None = None,
) -> BenchmarkRun:
    """Each option's log-likelihood after the question; ``checker``: scored by a fast copy of the model and
    checked (:mod:`aloekit.evaluation.checked`) instead of by ``engine`` alone."""
    run = BenchmarkRun(bench.name)
    contexts = [prompts.loglik_context(bench, item, shots, config.formulation) for item in items]
    options = [prompts.choices(bench, item, config.formulation) for item in items]
    requests = [
        [LoglikelihoodRequest(ctx, prompts.TARGET_DELIMITER + c) for c in opts]
        for ctx, opts in zip(contexts, options, strict=True)
    ]
    keys = [[request_key(fingerprint, "loglikelihood", r) for r in reqs] for reqs in requests]
    pending = [i for i, ks in enumerate(keys) if not all(k in cache for k in ks)]

    # acc_norm's normaliser: the choice's length in characters, as lm-eval (without the delimiter).
    lengths = [[float(len(c)) for c in opts] for opts in options]

    def work(chunk: list[int]) -> None:
        flat_keys = [k for i in chunk for k in keys[i]]
        if checker is None:
            results = engine.loglikelihood([r for i in chunk for r in requests[i]])
        else:
            per_question = checker.score([requests[i] for i in chunk], [lengths[i] for i in chunk])
            results = [res for scores in per_question for res in scores]
        cache.put_many(
            (k, {"logprob": res.logprob, "n_tokens": res.n_tokens}) for k, res in zip(flat_keys, results, strict=True)
        )

    _in_chunks(pending, config.checkpoint_every, run, work, progress, len(items))
    for item, ctx, opts, ks, lens in zip(items, contexts, options, keys, lengths, strict=True):
        values = [cache.get(k) for k in ks]
        lls = np.array([v["logprob"] for v in values])
        per_char = lls / np.array(lens)
        pred, confidence = top1_confidence(lls)
        pred_norm = int(np.argmax(per_char))
        run.scored.append(
            Scored(
                item,
                ctx,
                opts,
                pred,
                pred == item.answer,
                loglikelihoods=[float(x) for x in lls],
                pred_norm=pred_norm,
                tokens=sum(int(v["n_tokens"]) for v in values),
                confidence=confidence,
            )
        )
    return run


def score_generate(
    engine: Engine,
    bench: benchmarks.Benchmark,
    items: list[MCQItem],
    shots: list[MCQItem],
    config: MCQAConfig,
    cache: RequestCache,
    fingerprint: str,
    progress: bool,
) -> BenchmarkRun:
    run = BenchmarkRun(bench.name)
    requests = [
        GenerationRequest(
            messages=tuple(prompts.chat_messages(item, shots, cot=config.cot)),
            max_tokens=config.new_tokens,
            temperature=0.0,
            seed=config.seed,
        )
        for item in items
    ]
    keys = [request_key(fingerprint, "generate", r) for r in requests]
    pending = [i for i, k in enumerate(keys) if k not in cache]

    def work(chunk: list[int]) -> None:
        results = engine.generate([requests[i] for i in chunk])
        cache.put_many(
            (
                keys[i],
                {"text": g.text, "tokens": g.prompt_tokens + sum(g.completion_tokens), "finish": g.finish_reasons[0]},
            )
            for i, g in zip(chunk, results, strict=True)
        )

    _in_chunks(pending, config.checkpoint_every, run, work, progress, len(items))
    for item, request, key in zip(items, requests, keys, strict=True):
        value = cache.get(key)
        labels = LETTERS[: len(item.options)]
        chosen = extract_choice(value["text"], tuple(labels), item.options)
        pred = None if chosen is None else labels.index(chosen)
        run.scored.append(
            Scored(
                item,
                [dict(m) for m in request.messages or ()],
                list(labels),
                pred,
                pred == item.answer,
                generation=value["text"],
                tokens=int(value["tokens"]),
                # Cached before finish reasons were kept: unknown, not "not truncated".
                truncated=value["finish"] == "length" if "finish" in value else None,
            )
        )
    return run


def medprompt_database(config: MCQAConfig, loaded: Loaded) -> tuple[CoTDatabase | None, dict[str, Any] | None]:
    """The chain-of-thought database a medprompt run retrieves from, with every item that overlaps a question
    being evaluated excluded from retrieval (and listed in results.json)."""
    if config.mode != "medprompt":
        return None, None
    settings = config.medprompt
    if not settings.shots or settings.database is None:
        return None, {"database": None}
    database = CoTDatabase.open(settings.database)
    excluded = database.exclude_overlaps([(name, item) for name, (items, _) in loaded.items() for item in items])
    if database.available < settings.shots:
        raise UserError(
            f"{settings.database} has {database.available} usable items, fewer than the {settings.shots} examples "
            "asked for: build a larger database or lower k"
        )
    record = {
        "database": str(database.folder),
        "items": len(database),
        "embedder": database.manifest.get("embedder"),
        "excluded_overlapping_evaluation": excluded,
    }
    return database, record


def score_medprompt(
    engine: Engine,
    bench: benchmarks.Benchmark,
    items: list[MCQItem],
    database: CoTDatabase | None,
    config: MCQAConfig,
    cache: RequestCache,
    fingerprint: str,
    progress: bool,
) -> BenchmarkRun:
    settings = config.medprompt
    run = BenchmarkRun(bench.name)
    plans = medprompt.plan_questions(items, settings, database, config.seed)
    pending = [
        i for i, plan in enumerate(plans) if medprompt.resolve(plan, cache, fingerprint, settings.retries).missing
    ]
    # A chunk holds every run of its questions: the engine batches (or, served, sends concurrently) all of them.
    size = max(1, config.checkpoint_every // settings.runs)

    def work(chunk: list[int]) -> None:
        medprompt.complete(engine, [plans[i] for i in chunk], cache, fingerprint, settings.retries)

    _in_chunks(pending, size, run, work, progress, len(items))
    for plan in plans:
        resolved = medprompt.resolve(plan, cache, fingerprint, settings.retries)
        pred = resolved.pred
        first = plan.requests[0]
        run.scored.append(
            Scored(
                plan.item,
                [dict(m) for m in first.messages or ()],
                list(plan.item.letters),
                pred,
                pred == plan.item.answer,
                generation=resolved.answers[0].text if resolved.answers else None,
                tokens=resolved.tokens,
                detail=medprompt.sample_record(plan, resolved),
                agreement=medprompt.agreement(resolved),
            )
        )
    return run
