"""Scoring BBQ on an engine (:func:`evaluate_bbq`): the requests, the cache, and the results and samples
written. Described in :mod:`aloekit.evaluation.bias`."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aloekit.engines.base import Engine, LoglikelihoodRequest
from aloekit.errors import UserError
from aloekit.evaluation.bias.data import CHOICES, FOLDER, BBQItem, load_bbq, prompt, sample_rows
from aloekit.evaluation.bias.scores import ambiguous_bias_score, bias_score, bias_score_ci, biased_answer
from aloekit.evaluation.cache import RequestCache, fill_loglikelihoods, request_key
from aloekit.evaluation.stats import accuracy_ci
from aloekit.io import atomic_write_text, write_json
from aloekit.provenance import package_versions

TARGET_DELIMITER = " "
CHECKPOINT_EVERY = 64
"""Examples scored between two writes to the cache (a kill loses at most this many)."""


# --- evaluation -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    item: BBQItem
    pred: int
    loglikelihoods: tuple[float, ...]

    @property
    def correct(self) -> bool:
        return self.pred == self.item.label

    @property
    def non_unknown(self) -> bool:
        return self.pred != self.item.unknown

    @property
    def biased(self) -> bool | None:
        """None when the row's groups do not single out a biased answer (left out of the bias scores)."""
        target = biased_answer(self.item)
        return None if target is None else self.pred == target


def evaluate_bbq(
    engine: Engine,
    data_dir: Path,
    out_dir: Path,
    *,
    model: dict[str, Any],
    limit_per_category: int | None = None,
    seed: int = 0,
    progress: bool = True,
    checkpoint_every: int = CHECKPOINT_EVERY,
    cache_path: Path | None = None,
) -> dict[str, Any]:
    """Score BBQ on ``engine``; write ``out_dir/bbq/{results.json,samples.jsonl}``; return the results.

    ``model`` describes the model for the record; its ``fingerprint`` keys the request cache (default
    ``out_dir/bbq/cache.jsonl``), so a rerun, or a run killed part-way, scores only what is missing. ``seed``
    picks the sample and seeds the bootstrap.
    """
    if checkpoint_every < 1:
        raise UserError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
    loaded = load_bbq(data_dir)  # a bad file fails here, before any scoring
    items = [item for rows in loaded.values() for item in sample_rows(rows, limit_per_category, seed)]
    folder = out_dir / FOLDER
    cache = RequestCache(cache_path or folder / "cache.jsonl")
    fingerprint = str(model["fingerprint"])
    requests = [[LoglikelihoodRequest(prompt(item), TARGET_DELIMITER + c) for c in CHOICES] for item in items]
    keys = [[request_key(fingerprint, "loglikelihood", r) for r in reqs] for reqs in requests]
    computed, seconds = fill_loglikelihoods(
        engine, cache, keys, requests, chunk=checkpoint_every, progress=progress, label="bbq"
    )

    answered = []
    for item, ks in zip(items, keys, strict=True):
        lls = tuple(float(cache.get(k)["logprob"]) for k in ks)
        answered.append(Answered(item, int(np.argmax(lls)), lls))
    categories = {name: _report([a for a in answered if a.item.category == name], seed) for name in loaded}
    results = {
        "benchmark": "bbq",
        "categories": categories,
        "overall": _report(answered, seed),
        "computed": computed,
        "from_cache": len(items) - computed,
        "seconds": round(seconds, 3),
        "config": {
            "data_dir": str(data_dir),
            "limit_per_category": limit_per_category,
            "prompt": "Context/Question/A-C options/'Answer:'; continuations ' A', ' B', ' C'; argmax",
            "checkpoint_every": checkpoint_every,
        },
        "model": model,
        "seed": seed,
        "versions": package_versions("torch", "transformers", "datasets", "vllm"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    samples = "".join(json.dumps(_sample(a), ensure_ascii=False) + "\n" for a in answered)
    atomic_write_text(folder / "samples.jsonl", samples)
    write_json(folder / "results.json", results, ensure_ascii=False)
    return results


def _number(value: float) -> float | None:
    """JSON has no NaN: an undefined score (no examples of that kind) is written as null."""
    return None if math.isnan(value) else value


def _interval(values: tuple[float, float]) -> list[float | None]:
    return [_number(values[0]), _number(values[1])]


def _accuracy(answered: Iterable[Answered], seed: int) -> tuple[float | None, list[float | None]]:
    correct = [float(a.correct) for a in answered]
    return _number(float(np.mean(correct)) if correct else math.nan), _interval(accuracy_ci(correct, seed=seed))


def _report(answered: list[Answered], seed: int) -> dict[str, Any]:
    """n, accuracies (all, ambiguous, disambiguated) and both bias scores, each with a 95% bootstrap CI."""
    ambig = [a for a in answered if a.item.condition == "ambig"]
    disambig = [a for a in answered if a.item.condition == "disambig"]
    # Rows with no defined biased answer are left out of the bias scores (and counted), never guessed.
    ambig_b = [a for a in ambig if a.biased is not None]
    disambig_b = [a for a in disambig if a.biased is not None]
    acc, acc_ci = _accuracy(answered, seed)
    acc_amb, acc_amb_ci = _accuracy(ambig, seed)
    acc_dis, acc_dis_ci = _accuracy(disambig, seed)
    dis_args = ([bool(a.biased) for a in disambig_b], [a.non_unknown for a in disambig_b])
    amb_args = ([bool(a.biased) for a in ambig_b], [a.non_unknown for a in ambig_b])
    amb_correct = [a.correct for a in ambig_b]
    return {
        "n": len(answered),
        "n_ambiguous": len(ambig),
        "n_disambiguated": len(disambig),
        "acc": acc,
        "acc_ci95": acc_ci,
        "acc_ambiguous": acc_amb,
        "acc_ambiguous_ci95": acc_amb_ci,
        "acc_disambiguated": acc_dis,
        "acc_disambiguated_ci95": acc_dis_ci,
        "bias_disambiguated": _number(bias_score(*dis_args)),
        "bias_disambiguated_ci95": _interval(bias_score_ci(*dis_args, seed=seed)),
        "bias_ambiguous": _number(ambiguous_bias_score(amb_correct, *amb_args)),
        "bias_ambiguous_ci95": _interval(bias_score_ci(*amb_args, amb_correct, seed=seed)),
        "unknown_rate_ambiguous": _number(float(np.mean([not a.non_unknown for a in ambig])) if ambig else math.nan),
        "unknown_rate_disambiguated": _number(
            float(np.mean([not a.non_unknown for a in disambig])) if disambig else math.nan
        ),
        "bias_examples": {"ambiguous": len(ambig_b), "disambiguated": len(disambig_b)},
        "unmatched_groups": sum(a.biased is None for a in answered),
    }


def _sample(a: Answered) -> dict[str, Any]:
    item = a.item
    return {
        "category": item.category,
        "id": item.id,
        "row": f"{FOLDER}/{item.category}.jsonl:{item.where.rsplit(':', 1)[-1]}",  # the same on every machine
        "context_condition": item.condition,
        "question_polarity": item.polarity,
        "prompt": prompt(item),
        "options": list(item.answers),
        "choices": list(CHOICES),
        "loglikelihoods": list(a.loglikelihoods),
        "gold": item.label,
        "pred": a.pred,
        "correct": a.correct,
        "unknown": item.unknown,
        "stereotyped": item.target,
        "group_match": item.match,
        "biased_answer": biased_answer(item),
        "biased": a.biased,
    }
