"""What ``aloe eval`` reports from scored questions: results.json (accuracy with its interval, answer
distributions, calibration, per benchmark and group), the samples.jsonl lines, and the table for people."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
from rich.console import JustifyMethod
from rich.table import Table

from aloekit.config import MCQAConfig
from aloekit.evaluation.breakdown import by_subject
from aloekit.evaluation.calibration import calibration_record
from aloekit.evaluation.mcqa_scoring import BenchmarkRun, Scored
from aloekit.evaluation.stats import accuracy_ci, distribution, weighted_mean
from aloekit.provenance import package_versions


def _label(run_choices: list[str], index: int | None) -> str | None:
    return None if index is None else run_choices[index]


def benchmark_result(run: BenchmarkRun, mode: str, seed: int, max_tokens: int | None = None) -> dict[str, Any]:
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


def results_record(
    runs: list[BenchmarkRun], groups: dict[str, tuple[str, ...]], config: MCQAConfig, model: dict[str, Any]
) -> dict[str, Any]:
    per = {run.name: benchmark_result(run, config.mode, config.seed, config.new_tokens) for run in runs}
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


def sample_record(name: str, index: int, s: Scored) -> dict[str, Any]:
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


def table(results: dict[str, Any]) -> Table:
    """A rich table of the results, for people; results.json is for machines."""
    mode = results["config"]["mode"]
    how = f"{mode}, {results['formulation']}, headline {results['headline']}" if results.get("formulation") else mode
    t = Table(title=f"aloe eval ({how}): {results['model'].get('reference', '')}")
    columns: list[tuple[str, JustifyMethod]] = [
        ("benchmark", "left"),
        ("n", "right"),
        ("acc", "right"),
        ("95% CI", "right"),
    ]
    for name, justify in columns:
        t.add_column(name, justify=justify)
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
