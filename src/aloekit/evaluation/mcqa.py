"""Medical multiple-choice evaluation: build requests from declared benchmarks, score them through any engine
(resumably, through the request cache), and report accuracy with honest uncertainty.

Two modes:

* ``loglik``: every option is scored as a continuation of lm-eval's prompt; the prediction is the argmax of the
  log-likelihoods (``acc``) or of the log-likelihoods per character (``acc_norm``), exactly as lm-eval computes
  them. The hf engine runs one forward per question when options are single tokens (letters).
* ``generate``: the model answers in its chat template and the chosen letter is extracted from its text; an
  answer that cannot be read is counted as wrong *and* reported as unparseable, never replaced by a guess.

``loglik`` asks a question in one of two formulations (:mod:`aloekit.evaluation.prompts`): ``letter`` (lettered
options, letters scored; headline ``acc``) or ``cloze`` (no option list, option texts scored; headline
``acc_norm``). results.json names both the formulation and its headline metric.

Questions: every one of a benchmark, or its first ``limit`` (lm-eval's ``--limit``), or a seeded random
``subset`` of those (:func:`subset_indices`: the same questions for every model), recorded as ``sampled``.

Outputs, in ``out_dir``: ``results.json`` (per benchmark and group: n, accuracy with a 95% CI (bootstrap;
Wilson at 0/n and n/n), the distribution of predicted answers next to the gold one, unparseable rate, tokens,
seconds; accuracy per subject where the questions name one (:mod:`aloekit.evaluation.breakdown`); in ``loglik``
mode the calibration of the answers (ECE with its interval and the reliability bins,
:mod:`aloekit.evaluation.calibration`) per benchmark, per group and over every question; plus the config, the
model's fingerprint, package versions and seed), ``samples.jsonl`` (one line per question, with its subject and,
in ``loglik`` mode, its top-1 confidence) and ``cache.jsonl`` (what makes a killed run resumable).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aloekit.config import MCQAConfig
from aloekit.data.schema import MCQItem
from aloekit.data.sources.mcqa import LETTERS
from aloekit.engines.base import Engine, GenerationRequest, LoglikelihoodRequest
from aloekit.errors import UserError
from aloekit.evaluation import benchmarks, prompts
from aloekit.evaluation.breakdown import by_subject
from aloekit.evaluation.cache import RequestCache, request_key
from aloekit.evaluation.calibration import calibration_record, top1_confidence
from aloekit.evaluation.stats import accuracy_ci, distribution, weighted_mean
from aloekit.models import atomic_write_text
from aloekit.progress import progress_bar
from aloekit.prompting.answers import extract_choice
from aloekit.provenance import package_versions


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
    truncated: bool | None = None
    """Generation only: the reply stopped at the new-token limit (None: not known)."""
    """Mode-specific record for samples.jsonl (medprompt: examples, every run's answer)."""
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


def evaluate(
    engine: Engine,
    config: MCQAConfig,
    out_dir: Path,
    *,
    model: dict[str, Any],
    progress: bool = True,
    loaded: Loaded | None = None,
    cache_path: Path | None = None,
) -> dict[str, Any]:
    """Run every benchmark of ``config`` on ``engine``; write results.json and samples.jsonl; return the results.

    ``model`` describes the model for the record; its ``fingerprint`` keys the cache (a different model never
    reuses another's scores). ``loaded`` is :func:`load_benchmarks`'s result when the caller already has it.
    ``cache_path`` (default ``out_dir/cache.jsonl``) lets several runs share one request cache.
    """
    names, groups = benchmarks.expand(list(config.benchmarks))
    loaded = loaded if loaded is not None else load_benchmarks(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = RequestCache(cache_path or out_dir / "cache.jsonl")
    fingerprint = str(model["fingerprint"])
    database, medprompt_record = _medprompt_database(config, loaded)
    runs: list[BenchmarkRun] = []
    sizes = subset_sizes({name: len(loaded[name][0]) for name in names}, groups, config.subset)
    for name in names:
        bench = benchmarks.get(name)
        every, shots = loaded[name]
        indices = subset_indices(len(every), sizes[name], config.seed) if config.subset is not None else None
        items = every if indices is None else [every[i] for i in indices]
        if config.mode == "medprompt":
            run = _score_medprompt(engine, bench, items, database, config, cache, fingerprint, progress)
        else:
            score = _score_loglik if config.mode == "loglik" else _score_generate
            run = score(engine, bench, items, shots, config, cache, fingerprint, progress)
        run.indices, run.of = indices, len(every)
        runs.append(run)

    results = _results(runs, groups, config, model)
    if medprompt_record is not None:
        results["medprompt"] = medprompt_record
    samples = "".join(
        json.dumps(_sample(run.name, i, s), ensure_ascii=False) + "\n"
        for run in runs
        for i, s in zip(run.indices or range(len(run.scored)), run.scored, strict=True)
    )
    atomic_write_text(out_dir / "samples.jsonl", samples)
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return results


Loaded = dict[str, tuple[list[MCQItem], list[MCQItem]]]
"""benchmark name -> (evaluation items, few-shot examples)."""


def subset_sizes(
    totals: dict[str, int], groups: dict[str, tuple[str, ...]], subset: int | None
) -> dict[str, int | None]:
    """Questions to sample per benchmark for ``subset``: a benchmark asked for alone gets ``subset``; the members
    of a group asked for (MMLU medical's six subjects) share ``subset`` in proportion to their sizes, so the group,
    which the report pools, is sampled like one benchmark (at least one question per member)."""
    sizes: dict[str, int | None] = dict.fromkeys(totals, subset)
    if subset is None:
        return sizes
    for members in groups.values():
        present = [m for m in members if m in totals]
        total = sum(totals[m] for m in present)
        if total > subset:
            for m in present:
                sizes[m] = max(1, round(subset * totals[m] / total))
    return sizes


def subset_indices(n_total: int, n: int | None, seed: int) -> list[int]:
    """The positions of a seeded random subset of ``n`` of ``n_total`` questions, in ascending order.

    A pure function of its arguments (never of the model), so every model evaluated with one seed answers the
    same questions; ``n`` of None or at least ``n_total`` takes every question.
    """
    if n is None or n >= n_total:
        return list(range(n_total))
    return sorted(random.Random(seed).sample(range(n_total), n))


def load_benchmarks(config: MCQAConfig) -> Loaded:
    """Read every benchmark of ``config``. Call it before loading a model: a malformed file then fails in
    seconds, not after the model has loaded (or an hour of scoring)."""
    names, _ = benchmarks.expand(list(config.benchmarks))
    return {name: _load(name, config) for name in names}


def _load(name: str, config: MCQAConfig) -> tuple[list[MCQItem], list[MCQItem]]:
    bench = benchmarks.get(name)
    items = benchmarks.load(bench, config.data_dir)
    if not items:
        raise UserError(f"benchmark {name} has no questions in its file")
    if config.limit is not None:
        items = items[: config.limit]  # the first N, as lm-eval's --limit, so runs stay comparable
    shots: list[MCQItem] = []
    if config.num_fewshot:
        pool = benchmarks.load(bench, config.data_dir, fewshot=True)
        if len(pool) < config.num_fewshot:
            raise UserError(
                f"benchmark {name} has {len(pool)} few-shot examples, fewer than --num-fewshot {config.num_fewshot}"
            )
        shots = pool[: config.num_fewshot]  # lm-eval's first_n sampler
    return items, shots


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


def _score_loglik(
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
    contexts = [prompts.loglik_context(bench, item, shots, config.formulation) for item in items]
    options = [prompts.choices(bench, item, config.formulation) for item in items]
    requests = [
        [LoglikelihoodRequest(ctx, prompts.TARGET_DELIMITER + c) for c in opts]
        for ctx, opts in zip(contexts, options, strict=True)
    ]
    keys = [[request_key(fingerprint, "loglikelihood", r) for r in reqs] for reqs in requests]
    pending = [i for i, ks in enumerate(keys) if not all(k in cache for k in ks)]

    def work(chunk: list[int]) -> None:
        flat = [(k, r) for i in chunk for k, r in zip(keys[i], requests[i], strict=True)]
        results = engine.loglikelihood([r for _, r in flat])
        cache.put_many(
            (k, {"logprob": res.logprob, "n_tokens": res.n_tokens}) for (k, _), res in zip(flat, results, strict=True)
        )

    _in_chunks(pending, config.checkpoint_every, run, work, progress, len(items))
    for item, ctx, opts, ks in zip(items, contexts, options, keys, strict=True):
        values = [cache.get(k) for k in ks]
        lls = np.array([v["logprob"] for v in values])
        # lm-eval's acc_norm divides by the choice's length in characters (without the delimiter).
        per_char = lls / np.array([float(len(c)) for c in opts])
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


def _score_generate(
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


def _medprompt_database(config: MCQAConfig, loaded: Loaded) -> tuple[Any, dict[str, Any] | None]:
    """The chain-of-thought database a medprompt run retrieves from, with every item that overlaps a question
    being evaluated excluded from retrieval (and listed in results.json)."""
    if config.mode != "medprompt":
        return None, None
    settings = config.medprompt
    if not settings.shots or settings.database is None:
        return None, {"database": None}
    from aloekit.prompting.index import CoTDatabase

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


def _score_medprompt(
    engine: Engine,
    bench: benchmarks.Benchmark,
    items: list[MCQItem],
    database: Any,
    config: MCQAConfig,
    cache: RequestCache,
    fingerprint: str,
    progress: bool,
) -> BenchmarkRun:
    from aloekit.prompting import medprompt

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


# --- reporting --------------------------------------------------------------------------------------------------


def _label(run_choices: list[str], index: int | None) -> str | None:
    return None if index is None else run_choices[index]


def _benchmark_result(run: BenchmarkRun, mode: str, seed: int, max_tokens: int | None = None) -> dict[str, Any]:
    correct = [float(s.correct) for s in run.scored]
    labels = run.scored[0].choices if run.scored else []
    lo, hi = accuracy_ci(correct, seed=seed)
    result: dict[str, Any] = {
        "n": len(correct),
        "acc": float(np.mean(correct)) if correct else float("nan"),
        "acc_ci95": [lo, hi],
    }
    if run.indices is not None:
        result["sampled"] = {"of": run.of, "n": len(run.indices)}
    subjects = by_subject([s.item.subject for s in run.scored], [s.correct for s in run.scored], seed=seed)
    if subjects:
        result["subjects"] = subjects
    if mode == "medprompt" and run.scored:
        result["agreement"] = float(np.mean([s.agreement or 0.0 for s in run.scored]))
        result["retries"] = sum(len(a["retries"]) for s in run.scored for a in (s.detail or {}).get("answers", []))
    if mode == "loglik":
        norm = [float(s.pred_norm == s.item.answer) for s in run.scored]
        lo_n, hi_n = accuracy_ci(norm, seed=seed)
        result["acc_norm"] = float(np.mean(norm)) if norm else float("nan")
        result["acc_norm_ci95"] = [lo_n, hi_n]
        result["calibration"] = _calibration(run.scored, seed)
    else:
        result["unparseable_rate"] = float(np.mean([s.pred is None for s in run.scored])) if run.scored else 0.0
        known = [s.truncated for s in run.scored if s.truncated is not None]
        if known:  # the cause of most unparseable replies: the answer did not fit in the new-token limit
            result["truncated_rate"] = float(np.mean(known))
            result["max_tokens"] = max_tokens
    # Label distributions only make sense when every question shares the same labels (letters, yes/no/maybe).
    if all(s.choices == labels for s in run.scored):
        result["predicted"] = distribution([_label(s.choices, s.pred) for s in run.scored], labels)
        result["gold"] = distribution([s.choices[s.item.answer] for s in run.scored], labels)
    result["tokens"] = sum(s.tokens for s in run.scored)
    result["computed"] = run.computed
    result["from_cache"] = len(run.scored) - run.computed
    result["seconds"] = round(run.seconds, 3)
    result["questions_per_s"] = round(run.computed / run.seconds, 3) if run.seconds > 0 else None
    return result


def _results(
    runs: list[BenchmarkRun], groups: dict[str, tuple[str, ...]], config: MCQAConfig, model: dict[str, Any]
) -> dict[str, Any]:
    per = {run.name: _benchmark_result(run, config.mode, config.seed, config.new_tokens) for run in runs}
    by_name = {run.name: run for run in runs}
    group_results = {}
    for group, members in groups.items():
        correct = [float(s.correct) for m in members for s in by_name[m].scored]
        lo, hi = accuracy_ci(correct, seed=config.seed)
        group_results[group] = {
            "n": len(correct),
            # Size-weighted, as lm-eval's multimedqa: equal to the mean over all questions of the members.
            "acc": weighted_mean([(per[m]["acc"], per[m]["n"]) for m in members]),
            "acc_ci95": [lo, hi],
            "members": list(members),
        }
        if config.mode == "loglik":
            norm = [float(s.pred_norm == s.item.answer) for m in members for s in by_name[m].scored]
            group_results[group]["acc_norm"] = weighted_mean([(per[m]["acc_norm"], per[m]["n"]) for m in members])
            group_results[group]["acc_norm_ci95"] = list(accuracy_ci(norm, seed=config.seed))
            group_results[group]["calibration"] = _calibration(
                [s for m in members for s in by_name[m].scored], config.seed
            )
    overall = {}
    if config.mode == "loglik":
        # Every question of the run pooled: the model's reliability diagram.
        overall["calibration"] = _calibration([s for run in runs for s in run.scored], config.seed)
    return {
        "formulation": config.formulation if config.mode == "loglik" else None,
        "headline": config.headline,
        "benchmarks": per,
        "groups": group_results,
        **overall,
        "config": json.loads(config.model_dump_json()),
        "model": model,
        "seed": config.seed,
        "versions": package_versions("torch", "transformers", "datasets", "vllm"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _calibration(scored: list[Scored], seed: int) -> dict[str, Any]:
    """Calibration of the ``acc`` prediction (the argmax of the raw log-likelihoods, whose softmax it is)."""
    return calibration_record([s.confidence or 0.0 for s in scored], [s.correct for s in scored], seed=seed)


def _sample(name: str, index: int, s: Scored) -> dict[str, Any]:
    record: dict[str, Any] = {
        "benchmark": name,
        "index": index,
        "id": s.item.id,
        "subject": s.item.subject,
        "prompt": s.prompt,
        "options": list(s.item.options),
        "choices": s.choices,
        "gold": s.item.answer,
        "pred": s.pred,
        "correct": s.correct,
    }
    if s.loglikelihoods is not None:
        record["loglikelihoods"] = s.loglikelihoods
        record["pred_norm"] = s.pred_norm
        record["confidence"] = s.confidence
    if s.generation is not None:
        record["generation"] = s.generation
        record["extracted"] = _label(s.choices, s.pred)
    if s.detail is not None:
        record.update(s.detail)
    return record


def table(results: dict[str, Any]) -> Any:
    """A rich table of the results, for people; results.json is for machines."""
    from rich.table import Table

    mode = results["config"]["mode"]
    how = f"{mode}, {results['formulation']}, headline {results['headline']}" if results.get("formulation") else mode
    t = Table(title=f"aloe eval ({how}): {results['model'].get('reference', '')}")
    for name, justify in [("benchmark", "left"), ("n", "right"), ("acc", "right"), ("95% CI", "right")]:
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    t.add_column("acc_norm" if mode == "loglik" else "unparseable", justify="right")
    t.add_column("top answer (gold)", justify="right")
    t.add_column("q/s", justify="right")

    def ci(r: dict[str, Any]) -> str:
        return f"{r['acc_ci95'][0]:.3f}-{r['acc_ci95'][1]:.3f}"

    for name, r in results["benchmarks"].items():
        extra = f"{r['acc_norm']:.3f}" if mode == "loglik" else f"{r['unparseable_rate']:.1%}"
        top = ""
        if r.get("predicted"):
            # The most chosen answer and how often it is right: a model that always says "A" shows at a glance.
            label, share = max(((k, v) for k, v in r["predicted"].items() if k != "unparseable"), key=lambda kv: kv[1])
            top = f"{label} {share:.0%} ({r['gold'][label]:.0%})"
        qps = "cached" if r["questions_per_s"] is None else f"{r['questions_per_s']:.2f}"
        n = f"{r['n']} of {r['sampled']['of']}" if "sampled" in r else str(r["n"])
        t.add_row(name, n, f"{r['acc']:.3f}", ci(r), extra, top, qps)
    for name, g in results["groups"].items():
        t.add_row(f"[bold]{name}[/bold]", str(g["n"]), f"{g['acc']:.3f}", ci(g), "", "", "")
    return t
