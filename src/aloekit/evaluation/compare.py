"""What changed between two evaluations of the same benchmarks: one recipe model against the next.

Both evaluations' ``samples.jsonl`` (one line per question, see :func:`aloekit.evaluation.mcqa.evaluate`) are
aligned by ``(benchmark, id)``. Two models may have been evaluated on different subsets (another ``limit``, a
benchmark added later), so they are compared on the questions both answered, and each comparison says how many
that is. Per benchmark: both accuracies, the change with a paired bootstrap 95% CI, and the share of questions
whose predicted answer changed; per group (``mmlu_medical``...) the same over the members' questions pooled; and
the change in the mean of per-benchmark accuracies, with a bootstrap stratified by benchmark.

A question's score is its evaluation's headline metric (results.json ``headline``): ``acc`` (``correct``: the
option of highest log-likelihood, or the answer read from the reply) or, for cloze, ``acc_norm`` (``pred_norm``:
the highest log-likelihood per character).

Also here: the distribution of predicted answers per benchmark (next to the gold one), and the check that flags
a model stuck on one answer.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aloekit.errors import UserError
from aloekit.evaluation.benchmarks import FILE_PREFIX, GROUPS
from aloekit.evaluation.chance import (
    beyond_chance,
    paired_beyond_chance_diff,
    stratified_paired_beyond_chance_diff,
)
from aloekit.evaluation.stats import (
    UNPARSEABLE,
    distribution,
    paired_bootstrap_diff,
    stratified_paired_bootstrap_diff,
)
from aloekit.io import read_jsonl

__all__ = [
    "DOMINANT_MIN_OPTIONS",
    "DOMINANT_SHARE",
    "METRICS",
    "align",
    "answer_distributions",
    "compare_folders",
    "compare_samples",
    "dominant_answer",
    "headline",
    "read_samples",
    "score",
    "short_name",
]

DOMINANT_SHARE = 0.4
"""A model giving one answer to more than this share of a benchmark's questions is flagged..."""
DOMINANT_MIN_OPTIONS = 4
"""...when the benchmark has at least this many options (with 3, 40% on one answer can be the gold's share)."""

METRICS = {"acc": "pred", "acc_norm": "pred_norm"}
"""Headline metric -> the samples.jsonl field holding the prediction it scores."""

Pair = tuple[Mapping[str, Any], Mapping[str, Any]]


def short_name(benchmark: str) -> str:
    """``file:/long/path/mcq-eval.jsonl`` as ``mcq-eval``; registered names as they are."""
    return Path(benchmark.removeprefix(FILE_PREFIX)).stem if benchmark.startswith(FILE_PREFIX) else benchmark


def read_samples(folder: Path) -> list[dict[str, Any]]:
    """The per-question records of an evaluation folder (its ``samples.jsonl``)."""
    path = Path(folder) / "samples.jsonl"
    if not path.is_file():
        raise UserError(f"no samples.jsonl in {folder}: rerun the evaluation into that folder")
    return [row for _, row in read_jsonl(path, fix="rerun the evaluation")]


def align(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> dict[str, list[Pair]]:
    """Benchmark -> ``(before, after)`` sample pairs of the questions both evaluated, in ``before``'s order.

    Questions match on ``(benchmark, id)`` (the position ``index`` when a sample has no id); an id repeated
    within a benchmark matches its occurrences in order.
    """
    later = _keyed(after)
    pairs: dict[str, list[Pair]] = {}
    for key, sample in _keyed(before).items():
        if key in later:
            pairs.setdefault(key[0], []).append((sample, later[key]))
    return pairs


def _keyed(samples: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, int], Mapping[str, Any]]:
    seen: Counter[tuple[str, str]] = Counter()
    keyed = {}
    for s in samples:
        ident = s.get("id")
        question = (str(s["benchmark"]), f"#{s.get('index')}" if ident is None else str(ident))
        keyed[(*question, seen[question])] = s
        seen[question] += 1
    return keyed


def compare_samples(
    before: Sequence[Mapping[str, Any]],
    after: Sequence[Mapping[str, Any]],
    *,
    seed: int = 0,
    resamples: int = 2000,
    groups: Mapping[str, Sequence[str]] = GROUPS,
    metric: str = "acc",
) -> dict[str, Any]:
    """The paired comparison of two evaluations' samples (see the module docstring for what it holds).

    Returns ``{"metric", "n", "benchmarks": {name: change}, "groups": {name: change + "members"}, "mean": change
    of the mean of benchmarks + "benchmarks" (how many), "not_compared": [names without shared questions]}``,
    where a change is ``{"n", "acc_before", "acc_after", "delta", "delta_ci95": [lo, hi], "beyond_chance_delta",
    "beyond_chance_delta_ci95", "changed"}`` (``acc_*`` in ``metric``; ``beyond_chance_*``: the change in accuracy
    minus the chance the answer shares give, :mod:`aloekit.evaluation.chance`)
    and ``n`` counts the shared questions. A group is shown only when every member was compared.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    pairs = align(before, after)
    sizes = {
        "before": Counter(str(s["benchmark"]) for s in before),
        "after": Counter(str(s["benchmark"]) for s in after),
    }
    names = list(dict.fromkeys([*sizes["before"], *sizes["after"]]))
    shown = _display_names(names)
    result: dict[str, Any] = {"metric": metric, "n": sum(len(p) for p in pairs.values()), "benchmarks": {}}
    result["groups"] = {}
    for name in names:
        if name in pairs:
            change = _change(pairs[name], metric, seed, resamples)
            change |= {"n_before": sizes["before"][name], "n_after": sizes["after"][name]}
            result["benchmarks"][shown[name]] = change
    for group, members in groups.items():
        if all(m in pairs for m in members):
            pooled = [p for m in members for p in pairs[m]]
            result["groups"][group] = _change(pooled, metric, seed, resamples) | {
                "members": [shown[m] for m in members]
            }
    # The mean counts a complete group once, pooled (MMLU medical is one benchmark of six subjects), and every
    # other benchmark once: the unit a reader means by "the mean of the per-benchmark accuracies".
    grouped = {m for g in result["groups"] for m in groups[g]}
    units = {g: [p for m in groups[g] for p in pairs[m]] for g in result["groups"]}
    units |= {shown[name]: pairs[name] for name in names if name in pairs and name not in grouped}
    scores = [_scores(rows, metric) for rows in units.values()]
    overall = stratified_paired_bootstrap_diff(scores, seed=seed, resamples=resamples)
    field = METRICS[metric]
    beyond = stratified_paired_beyond_chance_diff(
        [
            ([a.get(field) for _, a in rows], [b.get(field) for b, _ in rows], [a.get("gold") for _, a in rows])
            for rows in units.values()
        ],
        seed=seed,
        resamples=resamples,
    )
    result["mean"] = {
        "benchmarks": len(scores),
        "over": list(units),
        "acc_before": _mean([float(np.mean(b)) for _, b in scores]),
        "acc_after": _mean([float(np.mean(a)) for a, _ in scores]),
        "delta": overall.delta,
        "delta_ci95": [overall.low, overall.high],
        "beyond_chance_delta": beyond[0],
        "beyond_chance_delta_ci95": [beyond[1], beyond[2]],
    }
    result["not_compared"] = [shown[name] for name in names if name not in pairs]
    return result


def compare_folders(
    before: Path,
    after: Path,
    *,
    seed: int = 0,
    resamples: int = 2000,
    read: Callable[[Path], list[dict[str, Any]]] = read_samples,
) -> dict[str, Any]:
    """:func:`compare_samples` of two evaluation folders (each with its ``samples.jsonl``), scored by the
    headline metric their results.json names (``acc`` when it names none). ``read`` reads a folder's samples
    (:func:`read_samples`; a caller comparing one folder several times passes a memo of it)."""
    metric = headline(before)
    if headline(after) != metric:
        raise UserError(f"{before} is scored by {metric} and {after} by {headline(after)}: compare like with like")
    return compare_samples(read(before), read(after), seed=seed, resamples=resamples, metric=metric)


def headline(folder: Path) -> str:
    """The headline metric an evaluation folder's results.json names (``acc`` if none, or no results.json)."""
    path = Path(folder) / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not JSON ({e.msg}); rerun the evaluation") from e
    return str(results.get("headline") or "acc")


def score(sample: Mapping[str, Any], metric: str = "acc") -> float:
    """A question's score under ``metric``: 1 right, 0 wrong (or the float score a sample carries)."""
    if metric == "acc":
        return float(sample["correct"])
    return float(sample.get(METRICS[metric]) == sample["gold"])


def _scores(pairs: Sequence[Pair], metric: str) -> tuple[list[float], list[float]]:
    """(after, before) per-question scores."""
    return [score(a, metric) for _, a in pairs], [score(b, metric) for b, _ in pairs]


def _change(pairs: Sequence[Pair], metric: str, seed: int, resamples: int) -> dict[str, Any]:
    after, before = _scores(pairs, metric)
    diff = paired_bootstrap_diff(after, before, seed=seed, resamples=resamples)
    field = METRICS[metric]
    beyond = paired_beyond_chance_diff(
        [a.get(field) for _, a in pairs],
        [b.get(field) for b, _ in pairs],
        [a.get("gold") for _, a in pairs],
        seed=seed,
        resamples=resamples,
    )
    return {
        "n": len(pairs),
        "acc_before": _mean(before),
        "acc_after": _mean(after),
        "delta": diff.delta,
        "delta_ci95": [diff.low, diff.high],
        # The change that the answer shares do not explain (aloekit.evaluation.chance): a gain from a favoured
        # letter meeting the gold imbalance has a large delta and a beyond_chance_delta near 0.
        "beyond_chance_delta": beyond[0],
        "beyond_chance_delta_ci95": [beyond[1], beyond[2]],
        "changed": _mean([float(b.get(field) != a.get(field)) for b, a in pairs]),
    }


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _display_names(names: Sequence[str]) -> dict[str, str]:
    """Short names, except where two files share a stem (then both keep their full names)."""
    short = Counter(short_name(n) for n in names)
    return {n: short_name(n) if short[short_name(n)] == 1 else n for n in names}


# --- answer distributions ---------------------------------------------------------------------------------------


def answer_distributions(
    results: Mapping[str, Any], samples: Sequence[Mapping[str, Any]] = ()
) -> dict[str, dict[str, Any]]:
    """Per benchmark: ``{"n", "predicted": {label: share}, "gold": {label: share}, "by": "label" | "position"}``,
    plus, where ``samples`` has the benchmark's questions, ``"chance"``: its accuracy against the chance its answer
    shares give (``accuracy``, ``shares_chance``, ``beyond`` and ``beyond_ci95``; :mod:`aloekit.evaluation.chance`).

    results.json's distributions are used where it has them (every question with the same labels: letters,
    yes/no/maybe). A benchmark whose questions have different labels (a file with 4 or 5 options, cloze's option
    texts) is counted from ``samples`` by option position (A = the first option), which still shows a position
    bias; the prediction counted is the one results.json's ``headline`` metric scores.
    """
    field = METRICS.get(str(results.get("headline") or "acc"), "pred")
    per = results.get("benchmarks") or {}
    by_bench: dict[str, list[Mapping[str, Any]]] = {}
    for s in samples:
        by_bench.setdefault(str(s["benchmark"]), []).append(s)
    names = list(dict.fromkeys([*per, *by_bench]))
    shown = _display_names(names)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        r = per.get(name) or {}
        if r.get("predicted") and r.get("gold"):
            out[shown[name]] = {"n": r.get("n"), "predicted": r["predicted"], "gold": r["gold"], "by": "label"}
        elif by_bench.get(name):
            out[shown[name]] = _by_position(by_bench[name], field)
        if by_bench.get(name):
            out[shown[name]]["chance"] = _chance(by_bench[name], field)
    return out


def _chance(samples: Sequence[Mapping[str, Any]], field: str) -> dict[str, Any]:
    """The accuracy against the chance the answer shares give (:func:`aloekit.evaluation.chance.beyond_chance`)."""
    found = beyond_chance([s.get(field) for s in samples], [s.get("gold") for s in samples])
    return {
        "accuracy": found.accuracy,
        "shares_chance": found.chance,
        "beyond": found.beyond,
        "beyond_ci95": [found.low, found.high],
    }


def _by_position(samples: Sequence[Mapping[str, Any]], field: str) -> dict[str, Any]:
    width = max(len(s.get("options") or s.get("choices") or ()) for s in samples)
    labels = list(string.ascii_uppercase[: max(width, 1)])

    def letter(index: Any) -> str | None:
        return labels[index] if isinstance(index, int) and 0 <= index < len(labels) else None

    return {
        "n": len(samples),
        "predicted": distribution([letter(s.get(field)) for s in samples], labels),
        "gold": distribution([letter(s.get("gold")) for s in samples], labels),
        "by": "position",
    }


def dominant_answer(
    predicted: Mapping[str, float], *, share: float = DOMINANT_SHARE, min_options: int = DOMINANT_MIN_OPTIONS
) -> tuple[str, float] | None:
    """The answer a model gives to more than ``share`` of the questions of a benchmark with ``min_options`` or
    more options (a position or label bias), or None."""
    answers = {k: float(v) for k, v in predicted.items() if k != UNPARSEABLE}
    if len(answers) < min_options:
        return None
    label, top = max(answers.items(), key=lambda kv: kv[1])
    return (label, top) if top > share else None
