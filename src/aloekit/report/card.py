"""The model card of a recipe's final model: the README.md the Hugging Face Hub shows, from the run's summary.

YAML front matter for the Hub (license, base model, library, tags, datasets, and a ``model-index`` with the final
stage's benchmark accuracies), then what the model is, how the recipe made it, how it scored (with 95% CIs and
sample sizes), how it behaves under attack and on harmless look-alikes, its risks, and a plain statement that it
is not for clinical use. Tables are the HTML report's own (:mod:`aloekit.report.html`), so the card and the report
can never disagree; the YAML helpers are the SFT export's (:mod:`aloekit.train.export`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from aloekit.report import claims
from aloekit.report import html as report
from aloekit.report.risks import risk_markdown
from aloekit.train.export import _cell, _flatten, base_model_id

__all__ = ["card_metadata", "render_model_card"]

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
    from aloekit.evaluation.benchmarks import REGISTRY

    stages = list((summary.get("benchmarks") or {}).items())
    if not stages or not isinstance(stages[-1][1], Mapping):
        return None
    results = []
    for bench, r in (stages[-1][1].get("benchmarks") or {}).items():
        value = report.number(r.get("acc"))
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
        predicted = f"; predicted {report.shares(answers.get('predicted'))}" if isinstance(answers, Mapping) else ""
        results.append(
            {
                "task": {"type": "multiple-choice", "name": "Multiple choice"},
                "dataset": dataset,
                "metrics": [
                    {
                        "type": "accuracy",
                        "value": round(value, 4),
                        "name": f"accuracy ({stages[-1][0]}; 95% CI {report.estimate(lo)}-{report.estimate(hi)}, "
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


def _settings(summary: Mapping[str, Any]) -> report.Table | None:
    """The recipe's settings as written (placeholders and paths included): what was run, not a summary of it."""
    text = (summary.get("recipe") or {}).get("text")
    try:
        recipe = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        return None
    if not isinstance(recipe, Mapping):
        return None
    rows = tuple((key, _setting(value)) for key, value in _flatten(recipe))
    return report.Table(("setting", "value"), rows, "Recipe settings", text_columns=2)


def _setting(value: Any) -> str:
    """A recipe value for a table cell: lists (of sources, of merged models) as compact JSON, not Python reprs."""
    if isinstance(value, list | tuple) and any(isinstance(v, Mapping | list | tuple) for v in value):
        return json.dumps(value, default=str)
    return "(none)" if isinstance(value, list | tuple) and not value else _cell(value)


def _section(title: str, *parts: str) -> str:
    return f"## {title}\n\n" + "\n\n".join(p for p in parts if p)


def _bullets(sentences: list[str]) -> str:
    return "\n".join(f"- {report.md_text(s)}" for s in sentences)


def _blocks(*blocks: report.Block | None) -> str:
    return report.markdown_blocks([b for b in blocks if b is not None])


def _what(summary: Mapping[str, Any]) -> str:
    models = summary.get("models") or {}
    bases = _base_models(models)
    rows = [("base model", f"`{bases[0]}`" if bases else "not recorded")]
    if len(bases) > 1:
        rows.append(("merged with", f"`{bases[1]}`"))
    rows.append(("recipe", str((summary.get("recipe") or {}).get("name") or "not recorded")))
    table = report.Table(("", "model"), tuple(rows), text_columns=2)
    return _section("What it is", WHAT, _blocks(table), _bullets(claims.overview(summary)))


def _how(summary: Mapping[str, Any]) -> str:
    stages = summary.get("stages") or []
    table = None
    if stages:
        rows = tuple((str(s.get("name")), str(s.get("status")), report.duration(s.get("seconds"))) for s in stages)
        table = report.Table(("stage", "status", "time"), rows, "Stages of this run", text_columns=2)
    training = summary.get("training") or {}
    losses = None
    if training:
        losses = report.Table(report.TRAINING_HEADER, report.training_rows(summary), "Training")
    ran = [str(s.get("name")) for s in stages if s.get("status") == "finished"]
    steps = "\n".join(f"{i}. {STAGE_TEXTS[name]}" for i, name in enumerate((n for n in ran if n in STAGE_TEXTS), 1))
    return _section("How it was made", steps, _blocks(table, losses, _settings(summary)))


def _evaluation(summary: Mapping[str, Any]) -> str:
    results = {k: v for k, v in (summary.get("benchmarks") or {}).items() if isinstance(v, Mapping)}
    parts = []
    if results:
        parts.append(ACCURACY_METHOD)
        parts.append(_blocks(report.mcqa_table(results, caption="Medical benchmarks")))
        answers = claims.final_answers(summary)
        if answers is not None:
            parts.append(_blocks(answers))
    else:
        parts.append(f"> Benchmark evaluation: {report.NOT_RUN}.")
    medprompt = summary.get("medprompt") or {}
    if isinstance(medprompt.get("results"), Mapping) and medprompt["results"].get("benchmarks"):
        table = report.mcqa_table({"Medprompt": medprompt["results"]}, caption="With Medprompt (kNN CoT ensemble)")
        parts.append(_blocks(table))
    parts.append(_bullets(claims.findings_for_card(summary)))
    return _section("Evaluation", *parts)


def _safety(summary: Mapping[str, Any]) -> str:
    sides = report.before_after(summary.get("safety"))
    parts = []
    if sides:
        parts.append(report.md_text(report.safety_setup(sides)))
        for table, what in (
            (report.attack_table(sides), "Red-teaming"),
            (report.over_refusal_table(sides), "Over-refusal"),
        ):
            parts.append(_blocks(table) if table else f"> {what}: {report.NOT_RUN}.")
    else:
        parts.append(f"> Safety evaluation: {report.NOT_RUN}.")
    bbq = report.bbq_table(report.before_after(summary.get("bias")))
    tqa = report.truthfulness_table(report.before_after(summary.get("truthfulness")))
    parts.append(_blocks(bbq) if bbq else f"> Bias (BBQ): {report.NOT_RUN}.")
    parts.append(_blocks(tqa) if tqa else f"> Truthfulness (TruthfulQA): {report.NOT_RUN}.")
    return _section("Safety, bias and truthfulness", *parts)


def _risks(summary: Mapping[str, Any]) -> str:
    risk = risk_markdown(summary)
    assessment = (
        report.md_text(report.shift_headings(risk, 1)) if risk is not None else f"> Risk assessment: {report.NOT_RUN}."
    )
    limits = _bullets(claims.limitations(summary))
    return _section("Risks and limitations", NOT_FOR_CLINICAL_USE, limits, assessment)


def _use() -> str:
    code = (
        "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        'model = AutoModelForCausalLM.from_pretrained("PATH")\ntokenizer = AutoTokenizer.from_pretrained("PATH")\n'
        'messages = [{"role": "user", "content": "What are the symptoms of anaemia?"}]\n'
        "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors='pt', "
        "return_dict=True)\n"
        "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=128)[0]))\n```"
    )
    return _section("Use (research only)", code)


def _provenance(summary: Mapping[str, Any]) -> str:
    facts = [("created", summary.get("created")), ("seed", summary.get("seed"))]
    facts += [(f"{k} version", v) for k, v in (summary.get("versions") or {}).items()]
    rows = tuple((k, str(v)) for k, v in facts if v is not None)
    return _section("Provenance", _blocks(report.Table(("item", "value"), rows, text_columns=2))) if rows else ""


def render_model_card(summary: Mapping[str, Any]) -> str:
    """The final model's README.md: Hub metadata as YAML front matter, then the card's sections."""
    body = [
        f"# {report.md_text(_name(summary))}",
        NOT_FOR_CLINICAL_USE,
        _what(summary),
        _how(summary),
        _evaluation(summary),
        _safety(summary),
        _risks(summary),
        _use(),
        _provenance(summary),
    ]
    front = yaml.safe_dump(card_metadata(summary), sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n" + "\n\n".join(p for p in body if p) + "\n"
