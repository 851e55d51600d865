"""Every model card aloekit writes (the README.md the Hugging Face Hub shows), from one module and its templates.

* :func:`render_model_card`: the card of a recipe's final model, from the run's summary. YAML front matter for the
  Hub (license, base model, library, tags, datasets, and a ``model-index`` with the final stage's benchmark
  accuracies), then what the model is, how the recipe made it, how it scored (with 95% CIs and sample sizes),
  how it behaves under attack and on harmless look-alikes, its risks, and a plain statement that it is not for
  clinical use. Its tables are the HTML report's own (:mod:`aloekit.report.tables`), so the card and the report
  can never disagree.
* :func:`sft_card`, :func:`dpo_card`, :func:`merge_card`: the card of one stage's model, written with the model.

The sections are gathered here as typed parts (:mod:`aloekit.report.document`); ``templates/*_card.md.j2``
render them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aloekit.evaluation.benchmarks import REGISTRY
from aloekit.io import atomic_write_text
from aloekit.report import claims
from aloekit.report.document import Bullets, CardPart, Markdown, Paragraph, RiskAssessment, Table, not_run
from aloekit.report.numbers import duration, estimate, number, shares
from aloekit.report.risks import risk_markdown
from aloekit.report.safety_tables import (
    attack_table,
    bbq_table,
    before_after,
    over_refusal_table,
    safety_setup,
    truthfulness_table,
)
from aloekit.report.tables import TRAINING_HEADER, mcqa_table, training_rows
from aloekit.report.templating import markdown_environment
from aloekit.train.export import base_model_id

__all__ = ["card_metadata", "dpo_card", "merge_card", "render_model_card", "sft_card", "write_card"]

CARD = "README.md"
"""A model card's file name in a model folder: where the Hub reads it."""

# Licenses of the base models aloekit ships under an alias (the card must not guess one for any other model).
LICENSES = {"HuggingFaceTB/SmolLM2-135M-Instruct": "apache-2.0"}

NOT_FOR_CLINICAL_USE = (
    "> **Not for clinical use.** This is a research model. It is not a medical device, it has not been validated "
    "for any clinical purpose, and it must not be used to diagnose, treat, triage or advise patients, or to make "
    "any health decision without a qualified professional who checks every answer."
)

# What each stage does, in the recipe's words: procedure, not results (results are the numbers further down).
STAGE_TEXTS = {
    "data": "**Data**: a decontaminated supervised mixture of medical and general instructions, and preference pairs.",
    "sft": "**SFT**: supervised fine-tuning of the base model on the mixture (loss on the assistant's tokens only).",
    "merge": "**Merge**: the SFT model merged with the vendor's instruct model (mergekit-compatible methods).",
    "dpo": "**DPO**: direct preference optimisation on general pairs, then on safety pairs.",
    "eval": "**Evaluation**: the evaluations listed under Evaluation and Safety below.",
    "safety": "**Safety**: red-teaming and over-refusal of the models named in the safety tables.",
}
WHAT = (
    "A language model made with aloekit's implementation of the Aloe recipe from the models in the table below. "
    "Only what the tables and the sentences with numbers below say was measured; anything else is not measured."
)
ACCURACY_METHOD = (
    "Accuracy with its 95% confidence interval (bootstrap; Wilson when every answer is right or every one"
    " wrong), at every stage of the recipe:"
)
STATIC = (NOT_FOR_CLINICAL_USE, WHAT, ACCURACY_METHOD, *STAGE_TEXTS.values())
"""Every fixed sentence of the card: procedure and disclaimers, never a result (a test holds the card to it)."""


def _base_models(models: Mapping[str, Any]) -> list[str]:
    refs = [str(m) for m in (models.get("base"), models.get("instruct")) if m]
    return list(dict.fromkeys(base_model_id(r) for r in refs))


def _model_index(summary: Mapping[str, Any], name: str) -> list[dict[str, Any]] | None:
    """The Hub's ``model-index``: the final stage's accuracy per benchmark (groups are sums of these)."""
    stages = list((summary.get("benchmarks") or {}).items())
    if not stages or not isinstance(stages[-1][1], Mapping):
        return None
    results = []
    for bench, r in (stages[-1][1].get("benchmarks") or {}).items():
        value = number(r.get("acc"))
        if value is None:
            continue
        hub = REGISTRY[bench].hub if bench in REGISTRY else None
        dataset: dict[str, Any] = {"name": bench, "type": hub.path if hub else bench}
        if hub and hub.name:
            dataset["config"] = hub.name
        if hub:
            dataset["split"] = hub.split
        lo, hi = (r.get("acc_ci95") or [None, None])[:2]
        answers = (((summary.get("answer_distributions") or {}).get("loglik") or {}).get(stages[-1][0]) or {}).get(
            bench
        )
        predicted = f"; predicted {shares(answers.get('predicted'))}" if isinstance(answers, Mapping) else ""
        results.append(
            {
                "task": {"type": "multiple-choice", "name": "Multiple choice"},
                "dataset": dataset,
                "metrics": [
                    {
                        "type": "accuracy",
                        "value": round(value, 4),
                        "name": f"accuracy ({stages[-1][0]}; 95% CI {estimate(lo)}-{estimate(hi)}, "
                        f"n={r.get('n')}{predicted})",
                    }
                ],
            }
        )
    return [{"name": name, "results": results}] if results else None


def _name(summary: Mapping[str, Any]) -> str:
    """The recipe's name (the final model's folder is aloekit's generic ``.../model``), else the folder's."""
    recipe = (summary.get("recipe") or {}).get("name")
    final = (summary.get("models") or {}).get("final")
    return str(recipe or (Path(str(final)).name if final else "") or summary.get("title") or "aloekit model")


def card_metadata(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The card's YAML front matter, as a dict."""
    bases = _base_models(summary.get("models") or {})
    license_ = summary.get("license") or next((LICENSES[b] for b in bases if b in LICENSES), "other")
    meta: dict[str, Any] = {"license": license_}
    if bases:
        meta["base_model"] = bases[0] if len(bases) == 1 else bases
    meta |= {
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["medical", "healthcare", "aloekit", "sft", "merge", "dpo", "trl"],
        "language": ["en"],
    }
    datasets = summary.get("datasets")
    if isinstance(datasets, Sequence) and not isinstance(datasets, str) and datasets:
        meta["datasets"] = [str(d) for d in datasets]
    index = _model_index(summary, _name(summary))
    if index:
        meta["model-index"] = index
    return meta


@dataclass(frozen=True)
class CardSection:
    title: str
    parts: tuple[CardPart, ...]


def _settings(summary: Mapping[str, Any]) -> Table | None:
    """The recipe's settings as written (placeholders and paths included): what was run, not a summary of it."""
    text = (summary.get("recipe") or {}).get("text")
    try:
        recipe = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        return None
    if not isinstance(recipe, Mapping):
        return None
    rows = tuple((key, _setting(value)) for key, value in _flatten(recipe))
    return Table(("setting", "value"), rows, "Recipe settings", text_columns=2)


def _setting(value: Any) -> str:
    """A recipe value for a table cell: lists (of sources, of merged models) as compact JSON, not Python reprs."""
    if isinstance(value, list | tuple) and any(isinstance(v, Mapping | list | tuple) for v in value):
        return json.dumps(value, default=str)
    return "(none)" if isinstance(value, list | tuple) and not value else _cell(value)


def _flatten(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested settings as ``(dotted.key, value)`` rows."""
    rows: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, Mapping):
            rows.extend(_flatten(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value).replace("|", "\\|")


def _metric(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


_ENV = markdown_environment(cell=_cell, metric=_metric, json=_json)


def _parts(*parts: CardPart | None) -> tuple[CardPart, ...]:
    """The parts present: a table that could not be made, or an empty list of sentences, is left out."""
    return tuple(p for p in parts if p is not None and not (isinstance(p, Bullets) and not p.items))


def _what(summary: Mapping[str, Any]) -> CardSection:
    models = summary.get("models") or {}
    bases = _base_models(models)
    rows = [("base model", f"`{bases[0]}`" if bases else "not recorded")]
    if len(bases) > 1:
        rows.append(("merged with", f"`{bases[1]}`"))
    rows.append(("recipe", str((summary.get("recipe") or {}).get("name") or "not recorded")))
    table = Table(("", "model"), tuple(rows), text_columns=2)
    return CardSection("What it is", _parts(Markdown(WHAT), table, Bullets(tuple(claims.overview(summary)))))


def _how(summary: Mapping[str, Any]) -> CardSection:
    stages = summary.get("stages") or []
    table = None
    if stages:
        rows = tuple((str(s.get("name")), str(s.get("status")), duration(s.get("seconds"))) for s in stages)
        table = Table(("stage", "status", "time"), rows, "Stages of this run", text_columns=2)
    losses = Table(TRAINING_HEADER, training_rows(summary), "Training") if summary.get("training") else None
    ran = [str(s.get("name")) for s in stages if s.get("status") == "finished"]
    steps = "\n".join(f"{i}. {STAGE_TEXTS[name]}" for i, name in enumerate((n for n in ran if n in STAGE_TEXTS), 1))
    return CardSection("How it was made", _parts(Markdown(steps) if steps else None, table, losses, _settings(summary)))


def _evaluation(summary: Mapping[str, Any]) -> CardSection:
    results = {k: v for k, v in (summary.get("benchmarks") or {}).items() if isinstance(v, Mapping)}
    parts: list[CardPart | None] = []
    if results:
        parts += [Markdown(ACCURACY_METHOD), mcqa_table(results, caption="Medical benchmarks")]
        parts.append(claims.final_answers(summary))
    else:
        parts.append(not_run("Benchmark evaluation"))
    medprompt = summary.get("medprompt") or {}
    if isinstance(medprompt.get("results"), Mapping) and medprompt["results"].get("benchmarks"):
        parts.append(mcqa_table({"Medprompt": medprompt["results"]}, caption="With Medprompt (kNN CoT ensemble)"))
    parts.append(Bullets(tuple(claims.findings_for_card(summary))))
    return CardSection("Evaluation", _parts(*parts))


def _safety(summary: Mapping[str, Any]) -> CardSection:
    sides = before_after(summary.get("safety"))
    parts: list[CardPart | None] = []
    if sides:
        parts.append(Paragraph(safety_setup(sides)))
        for table, what in ((attack_table(sides), "Red-teaming"), (over_refusal_table(sides), "Over-refusal")):
            parts.append(table or not_run(what))
    else:
        parts.append(not_run("Safety evaluation"))
    bbq = bbq_table(before_after(summary.get("bias")))
    tqa = truthfulness_table(before_after(summary.get("truthfulness")))
    parts.append(bbq or not_run("Bias (BBQ)"))
    parts.append(tqa or not_run("Truthfulness (TruthfulQA)"))
    return CardSection("Safety, bias and truthfulness", _parts(*parts))


def _risks(summary: Mapping[str, Any]) -> CardSection:
    risk = risk_markdown(summary)
    assessment = RiskAssessment(risk) if risk is not None else not_run("Risk assessment")
    limits = Bullets(tuple(claims.limitations(summary)))
    return CardSection("Risks and limitations", _parts(Markdown(NOT_FOR_CLINICAL_USE), limits, assessment))


def _provenance(summary: Mapping[str, Any]) -> Table | None:
    facts = [("created", summary.get("created")), ("seed", summary.get("seed"))]
    facts += [(f"{k} version", v) for k, v in (summary.get("versions") or {}).items()]
    rows = tuple((k, str(v)) for k, v in facts if v is not None)
    return Table(("item", "value"), rows, text_columns=2) if rows else None


def _front(meta: Mapping[str, Any], *, allow_unicode: bool = False) -> str:
    return yaml.safe_dump(dict(meta), sort_keys=False, allow_unicode=allow_unicode)


def render_model_card(summary: Mapping[str, Any]) -> str:
    """The final model's README.md: Hub metadata as YAML front matter, then the card's sections."""
    sections = [_what(summary), _how(summary), _evaluation(summary), _safety(summary), _risks(summary)]
    return _ENV.get_template("model_card.md.j2").render(
        front=_front(card_metadata(summary), allow_unicode=True),
        name=_name(summary),
        not_for_clinical_use=NOT_FOR_CLINICAL_USE,
        sections=sections,
        provenance=_provenance(summary),
    )


def _hub_meta(base_model: str, kind: str, lora: bool) -> dict[str, Any]:
    """The front matter of a stage's model."""
    return {
        "base_model": base_model,
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["medical", "aloekit", "trl", kind, *(["lora"] if lora else [])],
    }


def sft_card(
    *,
    title: str,
    base_model: str,
    datasets: Sequence[str],
    config: Mapping[str, Any],
    results: Mapping[str, Any],
    lora: bool,
    description: str,
) -> str:
    """README.md of an SFT stage's model: Hub metadata, what was trained, how, and how it scored."""
    meta = _hub_meta(base_model, "sft", lora)
    if datasets:
        meta["datasets"] = list(datasets)
    return _ENV.get_template("sft_card.md.j2").render(
        front=_front(meta),
        title=title,
        description=description,
        base_model=base_model,
        lora=lora,
        results=list(results.items()),
        config=_flatten(config),
    )


def dpo_card(
    *,
    base_model: str,
    stage: str,
    number: int,
    stages: int,
    start_model: str | None,
    start_stage: str | None,
    lora: bool,
    settings: Mapping[str, Any],
    results: Mapping[str, Any],
) -> str:
    """README.md of a DPO stage's model: Hub metadata, what was trained and how, the last logged metrics.
    ``number`` counts stages from 1; the stage was trained from ``start_stage``'s model, else from
    ``start_model``."""
    return _ENV.get_template("dpo_card.md.j2").render(
        front=_front(_hub_meta(base_model, "dpo", lora)),
        stage=stage,
        number=number,
        stages=stages,
        start_model=start_model,
        start_stage=start_stage,
        lora=lora,
        settings=list(settings.items()),
        results=list(results.items()),
    )


def merge_card(
    *,
    name: str,
    version: str,
    method: str,
    base: str | None,
    models: Sequence[tuple[str, Mapping[str, Any] | None]],
    parameters: Mapping[str, Any],
    out_dtype: str,
    seed: int | None,
    date: str,
    config_yaml: str,
) -> str:
    """README.md of a merged model: the models merged (each with its parameters), the method's, the settings.
    ``seed`` only for a method that draws random numbers."""
    refs = [ref for ref, _ in models]
    front: dict[str, Any] = {"base_model": ([base] if base else []) + [r for r in dict.fromkeys(refs) if r != base]}
    front |= {"library_name": "transformers", "tags": ["merge", "aloekit", method]}
    return _ENV.get_template("merge_card.md.j2").render(
        front=_front(front),
        name=name,
        version=version,
        method=method,
        base=base,
        models=list(models),
        parameters=parameters,
        out_dtype=out_dtype,
        seed=seed,
        date=date,
        config_yaml=config_yaml,
    )


def write_card(folder: Path, card: str) -> Path:
    """Write ``card`` as ``folder``/README.md (atomically: a reader never sees half a card)."""
    path = folder / CARD
    atomic_write_text(path, card)
    return path
