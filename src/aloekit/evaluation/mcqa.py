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

This module chooses and loads the questions and writes the files; :mod:`aloekit.evaluation.mcqa_scoring` scores
them through the engine and :mod:`aloekit.evaluation.mcqa_results` turns the scores into results.json, the samples
and the table.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from aloekit.config import MCQAConfig
from aloekit.data.schema import MCQItem
from aloekit.engines.base import Engine
from aloekit.errors import UserError
from aloekit.evaluation import benchmarks
from aloekit.evaluation.cache import RequestCache
from aloekit.evaluation.checked import CheckedScorer
from aloekit.evaluation.mcqa_results import results_record, sample_record
from aloekit.evaluation.mcqa_scoring import (
    BenchmarkRun,
    Loaded,
    medprompt_database,
    score_generate,
    score_loglik,
    score_medprompt,
)
from aloekit.io import atomic_write_text, write_json

__all__ = ["Loaded", "evaluate", "load_benchmarks", "subset_indices", "subset_sizes"]


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
    checker = _checker(engine, config)
    # Checked scores differ from exact ones within the bound: never served to an exact run, nor the reverse.
    fingerprint = str(model["fingerprint"]) + ("" if checker is None else "+checked-bf16")
    database, medprompt_record = medprompt_database(config, loaded)
    runs: list[BenchmarkRun] = []
    sizes = subset_sizes({name: len(loaded[name][0]) for name in names}, groups, config.subset)
    for name in names:
        bench = benchmarks.get(name)
        every, shots = loaded[name]
        indices = subset_indices(len(every), sizes[name], config.seed) if config.subset is not None else None
        items = every if indices is None else [every[i] for i in indices]
        if config.mode == "medprompt":
            run = score_medprompt(engine, bench, items, database, config, cache, fingerprint, progress)
        elif config.mode == "loglik":
            run = score_loglik(engine, bench, items, shots, config, cache, fingerprint, progress, checker)
        else:
            run = score_generate(engine, bench, items, shots, config, cache, fingerprint, progress)
        run.indices, run.of = indices, len(every)
        runs.append(run)

    results = results_record(runs, groups, config, model)
    if checker is not None:
        results["scoring"] = checker.record()
        checker.fast.close()
    if medprompt_record is not None:
        results["medprompt"] = medprompt_record
    samples = "".join(
        json.dumps(sample_record(run.name, i, s), ensure_ascii=False) + "\n"
        for run in runs
        for i, s in zip(run.indices or range(len(run.scored)), run.scored, strict=True)
    )
    atomic_write_text(out_dir / "samples.jsonl", samples)
    write_json(out_dir / "results.json", results, ensure_ascii=False)
    return results


def _checker(engine: Engine, config: MCQAConfig) -> CheckedScorer | None:
    """The checked scorer ``config.scoring`` asks for (None: exact scoring by ``engine`` alone)."""
    if config.scoring == "exact":
        return None
    copy = getattr(engine, "bf16_copy", None)
    if copy is None:
        raise UserError(
            f"scoring {config.scoring} needs the hf engine (it copies the model to bf16), not "
            f"{getattr(engine, 'name', type(engine).__name__)}; use scoring exact"
        )
    return CheckedScorer(fast=copy(), exact=engine)


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
