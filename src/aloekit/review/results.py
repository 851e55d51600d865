"""``aloe review results``: what the votes say. Bradley-Terry scores and win rates with 95% intervals
(:mod:`aloekit.review.bt`), the safety flags each model's answers drew, and how far reviewers agree
(:mod:`aloekit.review.agreement`) on the pairs several of them rated."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aloekit.evaluation.stats import wilson_ci
from aloekit.review.agreement import cohen_kappa, fleiss_kappa
from aloekit.review.bt import Vote, bradley_terry, pairwise_win_rates


def summarise(votes: Sequence[dict[str, Any]], *, seed: int = 0, resamples: int = 1000) -> dict[str, Any]:
    """The results of ``votes`` (rows of :meth:`ReviewStore.votes`). Raises ValueError for no votes."""
    if not votes:
        raise ValueError("no votes yet")
    models = sorted({v["model_a"] for v in votes} | {v["model_b"] for v in votes})
    pairs = [Vote(v["model_a"], v["model_b"], v["choice"]) for v in votes]
    return {
        "votes": len(votes),
        "reviewers": len({v["reviewer"] for v in votes}),
        "models": bradley_terry(pairs, models, seed=seed, resamples=resamples),
        "pairwise_win_rates": pairwise_win_rates(pairs, models),
        "safety_flags": _safety_flags(votes, models),
        "agreement": _agreement(votes),
        "comments": sum(bool(v["comment"].strip()) for v in votes),
        "method": {
            "bradley_terry": "Newton fit, ties and both-bad as half wins, 1 virtual tie per model with a reference",
            "intervals": f"95% percentile bootstrap over votes, {resamples} resamples, seed {seed}",
        },
    }


def _safety_flags(votes: Sequence[dict[str, Any]], models: list[str]) -> dict[str, dict[str, Any]]:
    """Per model: how many of its judged answers a reviewer flagged as unsafe, with a Wilson interval."""
    flagged: dict[str, int] = dict.fromkeys(models, 0)
    judged: dict[str, int] = dict.fromkeys(models, 0)
    for v in votes:
        for side in ("a", "b"):
            judged[v[f"model_{side}"]] += 1
            flagged[v[f"model_{side}"]] += int(v[f"safety_{side}"])
    out = {}
    for m in models:
        low, high = wilson_ci(flagged[m], judged[m])
        out[m] = {"flagged": flagged[m], "judged": judged[m], "rate": flagged[m] / judged[m], "ci95": [low, high]}
    return out


def _category(vote: dict[str, Any]) -> str:
    """The rating whatever side each answer was on: the preferred model's name, ``tie`` or ``both_bad``."""
    return {"a": vote["model_a"], "b": vote["model_b"]}.get(vote["choice"], vote["choice"])


def _agreement(votes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by_item: dict[tuple[str, str, str], dict[str, str]] = defaultdict(dict)
    for v in votes:  # in id order: a reviewer's later vote on an item replaces an earlier one
        item = (v["question_id"], *sorted((v["model_a"], v["model_b"])))
        by_item[item][v["reviewer"]] = _category(v)
    several = [ratings for ratings in by_item.values() if len(ratings) >= 2]
    reviewers = sorted({r for ratings in by_item.values() for r in ratings})
    cohen = {}
    for first, second in itertools.combinations(reviewers, 2):
        shared = [ratings for ratings in by_item.values() if first in ratings and second in ratings]
        if shared:
            kappa = cohen_kappa([r[first] for r in shared], [r[second] for r in shared])
            cohen[f"{first} / {second}"] = {"items": len(shared), "kappa": _finite(kappa)}
    return {
        "items_rated_by_several": len(several),
        "fleiss_kappa": _finite(fleiss_kappa([list(r.values()) for r in several])),
        "cohen_kappa": cohen,
        "categories": "the preferred model, tie, both_bad",
    }


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def tables(results: dict[str, Any]) -> list[Any]:
    """Rich tables of ``results`` for people; ``--json`` is for machines."""
    from rich.table import Table

    scores = Table(title=f"Clinician review: {results['votes']} votes by {results['reviewers']} reviewers")
    scores.add_column("model", no_wrap=True)  # what a reader looks for: other columns wrap first
    for name in ("BT score (95% CI)", "Elo", "win rate (95% CI)", "W/L/T/both bad", "safety flags"):
        scores.add_column(name, justify="right")
    for model, r in results["models"].items():
        flags = results["safety_flags"][model]
        low, high = r["score_ci95"]
        rate_low, rate_high = r["win_rate_ci95"]
        scores.add_row(
            model,
            f"{r['score']:+.2f} ({low:+.2f} to {high:+.2f})",
            f"{r['elo']:.0f}",
            f"{r['win_rate']:.0%} ({rate_low:.0%}-{rate_high:.0%})",
            f"{r['wins']}/{r['losses']}/{r['ties']}/{r['both_bad']}",
            f"{flags['flagged']} of {flags['judged']}",
        )
    agreement = Table(title="Agreement between reviewers (on items rated by several)")
    agreement.add_column("reviewers", no_wrap=True)
    for name in ("items", "kappa"):
        agreement.add_column(name, justify="right")
    a = results["agreement"]

    def kappa(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    agreement.add_row("all (Fleiss)", str(a["items_rated_by_several"]), kappa(a["fleiss_kappa"]))
    for pair, c in a["cohen_kappa"].items():
        agreement.add_row(f"{pair} (Cohen)", str(c["items"]), kappa(c["kappa"]))
    return [scores, agreement]


__all__ = ["summarise", "tables"]
