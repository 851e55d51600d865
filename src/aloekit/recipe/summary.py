"""Everything the report shows, gathered from the typed outputs of the recipe's stages into one JSON-able summary
(rendered by :mod:`aloekit.report.html` and :mod:`aloekit.report.card`)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from aloekit import models
from aloekit.data.inspect import dataset_stats
from aloekit.errors import UserError
from aloekit.evaluation.compare import answer_distributions, compare_folders, read_samples
from aloekit.evaluation.safety_compare import compare_verdicts, impersonation
from aloekit.evaluation.weights import relative_change
from aloekit.io import read_jsonl
from aloekit.provenance import package_versions
from aloekit.recipe.config import MODEL_STAGES, RecipeConfig
from aloekit.recipe.stages.data import DataOutputs
from aloekit.recipe.stages.dpo import DPOOutputs
from aloekit.recipe.stages.evaluate import FORMULATIONS, EvalOutputs, Formulation
from aloekit.recipe.stages.merge import MergeOutputs
from aloekit.recipe.stages.models import model_paths
from aloekit.recipe.stages.safety import SafetyOutputs
from aloekit.recipe.stages.sft import SFTOutputs

__all__ = ["RunOutputs", "summary"]


@dataclass(frozen=True)
class RunOutputs:
    """What the report reads: the recipe as written and as run, and every earlier stage's outputs and time."""

    recipe: RecipeConfig
    text: str
    recipe_path: Path
    data: DataOutputs
    sft: SFTOutputs
    merge: MergeOutputs
    dpo: DPOOutputs
    safety: SafetyOutputs
    eval: EvalOutputs
    seconds: dict[str, float | None]
    """Stage name -> its time, in stage order (the stages before the report)."""


def _read(path: str | Path | None) -> Any:
    if path is None or not Path(path).is_file():
        return None
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _short_names(results: Any, key: str) -> Any:
    """``results`` with ``file:/long/path/mcq-eval.jsonl`` entries under ``key`` shown as ``mcq-eval``: the
    report names what was measured, the results files keep the full path."""
    if not isinstance(results, dict) or not isinstance(results.get(key), dict):
        return results
    named = {(Path(k[5:]).stem if k.startswith("file:") else k): v for k, v in results[key].items()}
    return {**results, key: named}


def summary(run: RunOutputs) -> dict[str, Any]:
    """Everything the report shows (see :mod:`aloekit.report.html`)."""
    recipe, data, evals = run.recipe, run.data, run.eval
    paths = model_paths(recipe, run.sft, run.merge, run.dpo)
    general = run.dpo.prefs_general or data.prefs_general  # built by the DPO stage when on-policy
    assert general is not None, "the data stage builds prefs_general unless the DPO stage does"
    result: dict[str, Any] = {
        "title": f"aloekit run: {recipe.name}",
        "recipe": {"name": recipe.name, "path": str(run.recipe_path), "text": run.text},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seed": recipe.seed,
        "models": {"base": recipe.models.base, "instruct": recipe.instruct, "final": paths.get("dpo_safety")},
        "versions": package_versions("aloekit", "torch", "transformers", "trl", "peft", "accelerate", "vllm"),
        # Every stage the report reads finished (the runner runs it only then).
        "stages": [{"name": n, "status": "finished", "seconds": s} for n, s in run.seconds.items()],
        "data": {
            "sft": dataset_stats(data.sft),
            "prefs_general": dataset_stats(general),
            "prefs_safety": dataset_stats(data.prefs_safety),
        },
    }
    if data.letters is not None:
        result["data"]["letters"] = dataset_stats(data.letters)
    if data.cot_db is not None:
        result["data"]["cot_db"] = _read(data.cot_db / "manifest.json")
    training: dict[str, Any] = {}
    for stage, path in (("sft", run.sft.metrics), ("sft_letters", run.sft.letters_metrics)):
        sft_metrics = _read(path) if path is not None else None
        if sft_metrics:
            history = sorted(
                sft_metrics.get("train_losses", []) + sft_metrics.get("eval_losses", []), key=lambda h: h["step"]
            )
            training[stage] = {"log_history": history, "metrics": sft_metrics}
    for stage, path in run.dpo.metrics.items():
        metrics = _read(path)
        if metrics:
            training[f"dpo_{stage}"] = {"log_history": metrics.get("log_history", []), "metrics": metrics}
    result["training"] = training
    result["skipped"] = {"benchmarks": list(recipe.eval.skipped), "suites": list(recipe.safety.skipped)}
    result["benchmarks"] = {
        label: _short_names(_read(evals.loglik[label]), "benchmarks") for label in MODEL_STAGES if label in evals.loglik
    }
    # The other formulations, per model: cloze (option text) and generative (the answer read from a reply, with
    # its unparseable and cut-at-the-limit shares).
    result["formulations"] = {
        formulation: {
            label: _short_names(_read(evals.formulation(formulation)[label]), "benchmarks")
            for label in MODEL_STAGES
            if label in evals.formulation(formulation)
        }
        for formulation in ("cloze", "generative")
        if evals.formulation(formulation)
    }
    result["medprompt"] = {
        "model": recipe.eval.medprompt.model,
        "results": _short_names(_read(evals.medprompt), "benchmarks"),
        "ladder": _short_ladder(_read(evals.ablation)),
    }
    safety = run.safety.results
    labels = [label for label in recipe.safety.models if label in safety]
    if labels:
        result |= _safety(safety, labels, recipe.seed)
    samples = _SamplesMemo()  # each samples.jsonl read once: a model is in up to three comparisons and its answers
    result["comparisons"] = _comparisons(evals, recipe.seed, samples)
    result["answer_distributions"] = _answer_distributions(evals, samples)
    result["weight_change"] = _weight_changes(recipe, paths, evals.loglik)
    return result


def _safety(safety: dict[str, Path], labels: Sequence[str], seed: int) -> dict[str, Any]:
    """The summary's safety parts: the first and last red-teamed models (and those between), BBQ and TruthfulQA
    before and after, the risk assessment, and the changes from model to model."""
    before, after = labels[0], labels[-1]
    res_before = _short_names(_read(safety[before]), "suites")
    res_after = _short_names(_read(safety[after]), "suites")
    result: dict[str, Any] = {
        "safety": {
            "before": {"label": before, "results": res_before},
            # Models red-teamed between the first and the last (merged, when base comes first), in stage order.
            "between": [
                {"label": label, "results": _short_names(_read(safety[label]), "suites")} for label in labels[1:-1]
            ],
            "after": {"label": after, "results": res_after},
        }
    }
    for key, name in (("bbq", "bias"), ("truthfulqa", "truthfulness")):
        if res_after and key in res_after:
            result[name] = {"before": (res_before or {}).get(key), "after": res_after[key]}
    risk = safety[after].with_name("risk.md")
    if risk.is_file():
        result["risk_markdown"] = risk.read_text(encoding="utf-8")
    result["safety_changes"] = _safety_changes({label: safety[label].parent for label in labels}, seed)
    result["impersonation"] = _impersonation({label: safety[label].parent for label in labels})
    return result


def _evaluated(evals: EvalOutputs, formulation: Formulation) -> dict[str, Path]:
    """Model label -> evaluation folder (results.json and samples.jsonl), in recipe order."""
    results = evals.formulation(formulation)
    return {label: results[label].parent for label in MODEL_STAGES if label in results}


class _SamplesMemo:
    """:func:`read_samples`, reading each folder once; a folder that failed fails the same way again."""

    def __init__(self) -> None:
        self._read: dict[Path, list[dict[str, Any]] | UserError] = {}

    def __call__(self, folder: Path) -> list[dict[str, Any]]:
        if folder not in self._read:
            try:
                self._read[folder] = read_samples(folder)
            except UserError as e:
                self._read[folder] = e
        found = self._read[folder]
        if isinstance(found, UserError):
            raise found
        return found


def _comparisons(evals: EvalOutputs, seed: int, samples: _SamplesMemo) -> dict[str, list[dict[str, Any]]]:
    """Per formulation: each evaluated model against the one before it (``kind: "step"``), then the last against
    the first (``kind: "overall"``), each ``{"before", "after", "kind"}`` plus :func:`compare_samples`'s result
    (or ``"error"``)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for formulation in FORMULATIONS:
        folders = _evaluated(evals, formulation)
        labels = [label for label, folder in folders.items() if (folder / "samples.jsonl").is_file()]
        entries = []
        for before, after, kind in _stage_pairs(labels):
            entry: dict[str, Any] = {"before": before, "after": after, "kind": kind}
            try:
                entry |= compare_folders(folders[before], folders[after], seed=seed, read=samples)
            except UserError as e:
                entry["error"] = e.message
            except (KeyError, TypeError, ValueError) as e:  # a malformed samples file: say so, go on
                entry["error"] = f"malformed samples in {folders[before]} or {folders[after]}: {type(e).__name__}: {e}"
            entries.append(entry)
        if entries:
            out[formulation] = entries
    return out


def _stage_pairs(labels: list[str]) -> list[tuple[str, str, str]]:
    """Each model against the one before it ("step"), then the last against the first ("overall") when there
    are more than two."""
    pairs = [(a, b, "step") for a, b in pairwise(labels)]
    if len(labels) > 2:
        pairs.append((labels[0], labels[-1], "overall"))
    return pairs


def _safety_samples(folder: Path) -> list[dict[str, Any]] | None:
    """A safety evaluation's per-prompt verdicts (samples.jsonl), or None when missing or malformed."""
    path = folder / "samples.jsonl"
    try:
        return [row for _, row in read_jsonl(path)]
    except (OSError, UserError):
        return None


def _safety_changes(folders: dict[str, Path], seed: int) -> list[dict[str, Any]]:
    """Each red-teamed model against the one before it, then the last against the first (as :func:`_comparisons`),
    on the prompts both were judged on (:func:`compare_verdicts`), or ``"error"``."""
    out = []
    for before, after, kind in _stage_pairs(list(folders)):
        entry: dict[str, Any] = {"before": before, "after": after, "kind": kind}
        old, new = _safety_samples(folders[before]), _safety_samples(folders[after])
        if old is None or new is None:
            entry["error"] = f"no readable samples.jsonl in {folders[before]} or {folders[after]}"
        else:
            try:
                entry |= compare_verdicts(old, new, seed=seed)
            except (KeyError, TypeError, ValueError) as e:
                entry["error"] = f"malformed safety samples: {type(e).__name__}: {e}"
        out.append(entry)
    return out


def _impersonation(folders: dict[str, Path]) -> dict[str, Any]:
    """Per red-teamed model: the share of its replies claiming a clinical identity (the risk assessment's direct
    evidence of impersonation), so the report can assess risks from the summary alone."""
    out = {}
    for label, folder in folders.items():
        samples = _safety_samples(folder)
        if samples:
            out[label] = impersonation(samples)
    return out


def _answer_distributions(evals: EvalOutputs, read: _SamplesMemo) -> dict[str, dict[str, Any]]:
    """Per formulation, model and benchmark: predicted and gold answer distributions (:func:`answer_distributions`)."""
    out: dict[str, dict[str, Any]] = {}
    for formulation in FORMULATIONS:
        per_model = {}
        for label, folder in _evaluated(evals, formulation).items():
            results = _read(folder / "results.json")
            if not isinstance(results, dict):
                continue
            # samples.jsonl: distributions of benchmarks whose results.json has none (mixed option labels), and
            # every benchmark's accuracy against the chance its answer shares give.
            samples: list[dict[str, Any]] = []
            with contextlib.suppress(UserError):  # no or malformed samples: those benchmarks go without
                samples = read(folder)
            per_model[label] = answer_distributions(results, samples)
        if per_model:
            out[formulation] = per_model
    return out


def _weight_changes(recipe: RecipeConfig, paths: dict[str, str], loglik: dict[str, Path]) -> list[dict[str, Any]]:
    """Each recipe model's weights against the previous model's that exists (``{"before", "after"}`` plus
    :func:`relative_change`'s result, or ``"error"``)."""
    folders = []
    for label in MODEL_STAGES:
        folder = _model_folder(recipe, label, paths[label], loglik) if label in paths else None
        if folder is not None:
            folders.append((label, folder))
    out = []
    for (before, old), (after, new) in pairwise(folders):
        entry: dict[str, Any] = {"before": before, "after": after}
        try:
            entry |= relative_change(old, new)
        except (UserError, OSError) as e:
            entry["error"] = e.message if isinstance(e, UserError) else f"cannot read the weights: {e}"
        out.append(entry)
    return out


def _model_folder(recipe: RecipeConfig, label: str, reference: str, loglik: dict[str, Path]) -> Path | None:
    """The local folder of a recipe model: the stage's folder, or for a base given as an alias or Hub id, the
    folder its evaluation loaded (else the one :func:`aloekit.models.resolve` finds). None when there is none."""
    if Path(reference).is_dir():
        return Path(reference)
    if label != "base":
        return None
    recorded = ((_read(loglik.get(label)) or {}).get("model") or {}).get("path")
    if recorded and Path(recorded).is_dir():
        return Path(recorded)
    try:
        resolved = models.resolve(
            reference, allow_pickle=recipe.models.allow_pickle, trust_remote_code=recipe.models.trust_remote_code
        )
        return resolved.path
    except UserError:
        return None


def _short_ladder(ladder: Any) -> Any:
    if not isinstance(ladder, dict):
        return ladder
    steps = [_short_names(step, "benchmarks") for step in ladder.get("steps", [])]
    names = [Path(b[5:]).stem if b.startswith("file:") else b for b in ladder.get("benchmarks", [])]
    return {**ladder, "steps": steps, "benchmarks": names}
