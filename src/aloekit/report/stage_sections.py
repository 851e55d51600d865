"""The sections of the report about what each stage did and measured: data, training, weights, benchmarks,
paired changes, predicted answers, Medprompt, safety, bias and truthfulness.

Each is a function from the run's summary to blocks (:mod:`aloekit.report.document`); a part the recipe did not run
becomes a "not run" note instead of vanishing. :mod:`aloekit.report.sections` puts them in order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aloekit.report import charts
from aloekit.report.document import Block, Chart, Heading, Note, Paragraph, Table, not_run
from aloekit.report.findings import RULES
from aloekit.report.numbers import acc_cell, count_cell, estimate
from aloekit.report.safety_tables import (
    attack_table,
    bbq_table,
    before_after,
    over_refusal_table,
    safety_setup,
    truthfulness_table,
)
from aloekit.report.tables import (
    TRAINING_HEADER,
    answers_table,
    chance_levels,
    change_tables,
    formulation_label,
    generation_table,
    ladder_table,
    mcqa_table,
    source_table,
    training_rows,
    weight_change_table,
)

__all__ = [
    "answers",
    "benchmarks",
    "bias_truthfulness",
    "changes",
    "data",
    "medprompt",
    "safety",
    "training",
    "weights",
]


DATA_LABELS = {
    "sft": "SFT mixture",
    "prefs_general": "Preference pairs, general (DPO stage 1)",
    "prefs_safety": "Preference pairs, safety (DPO stage 2)",
    "letters": "Letter phase mixture (SFT's second phase)",
}


def data(summary: Mapping[str, Any]) -> list[Block]:
    data = summary.get("data") or {}
    if not data:
        return [not_run("Data building")]
    blocks: list[Block] = []
    for key, stats in data.items():
        if key == "cot_db":
            continue
        blocks.append(Heading(DATA_LABELS.get(key, key)))
        blocks += _dataset_blocks(stats) if isinstance(stats, Mapping) else [not_run(DATA_LABELS.get(key, key))]
    cot = data.get("cot_db")
    blocks.append(Heading("Medprompt chain-of-thought database"))
    if isinstance(cot, Mapping):
        blocks.append(Paragraph(_cot_db(cot)))
    else:
        blocks.append(not_run("The chain-of-thought database"))
    return blocks


def _cot_db(cot: Mapping[str, Any]) -> str:
    """The database's manifest (``aloe medprompt db``) in a sentence."""
    text = f"{count_cell(cot.get('items'))} verified worked examples"
    if cot.get("read") is not None:
        duplicates = count_cell(cot.get("duplicate_questions", 0))
        text += f" (of {count_cell(cot.get('read'))} read; {duplicates} duplicate questions)"
    removed = (cot.get("decontamination") or {}).get("removed")
    if removed is not None:
        removed = count_cell(len(removed) if isinstance(removed, list) else removed)
        text += f", {removed} removed as overlapping evaluation sets"
    return text + f"; embedded with {cot.get('embedder') or 'n/a'}."


def _dataset_blocks(stats: Mapping[str, Any]) -> list[Block]:
    """One built dataset, as ``aloe data stats`` shows it: rows per source and stage, rows dropped by reason,
    lengths."""
    blocks: list[Block] = [
        Paragraph(
            f"{count_cell(stats.get('train'))} training and {count_cell(stats.get('validation'))} validation rows."
        )
    ]
    if stats.get("warning"):
        blocks.append(Note(str(stats["warning"])))
    sources = stats.get("sources") or {}
    if sources:
        blocks.append(source_table(sources))
    dropped = stats.get("dropped") or {}
    rows = tuple(
        (stage, reason, count_cell(d.get("count") if isinstance(d, Mapping) else d))
        for stage, by_reason in dropped.items()
        for reason, d in by_reason.items()
    )
    blocks.append(
        Table(("stage", "reason", "rows"), rows, "Rows not kept, by reason", 2)
        if rows
        else Paragraph("No row was dropped.")
    )
    words = stats.get("words") or {}
    if words:
        rows = tuple(
            (split, *(f"{w.get(k, 0):g}" for k in ("mean", "p50", "p95", "max"))) for split, w in words.items()
        )
        blocks.append(Table(("split", "mean", "median", "95th pct", "max"), rows, "Length in words"))
    decon = stats.get("decontamination") or (stats.get("build") or {}).get("decontamination")
    if isinstance(decon, Mapping):
        blocks.append(
            Paragraph(
                f"Decontamination against the evaluation benchmarks removed {count_cell(decon.get('removed'))} rows; "
                f"remaining overlaps: {count_cell(decon.get('remaining_overlaps'))}."
            )
        )
    return blocks


def training(summary: Mapping[str, Any]) -> list[Block]:
    training = {k: v for k, v in (summary.get("training") or {}).items() if isinstance(v, Mapping)}
    if not training:
        return [not_run("Training")]
    blocks: list[Block] = []
    if any(any(charts.loss_points(t)) for t in training.values()):
        blocks.append(
            Chart(
                "Training loss by optimizer step (line), validation loss (points) and, for DPO, reward accuracy.",
                lambda: charts.training_curves(training),
            )
        )
    else:
        blocks.append(Note("No stage logged a loss: no training curves to draw."))
    blocks.append(Table(TRAINING_HEADER, training_rows(summary), "Training summary"))
    return blocks


def weights(summary: Mapping[str, Any]) -> list[Block]:
    changes = summary.get("weight_change")
    if not isinstance(changes, Sequence) or not changes:
        return [not_run("A weight comparison (it needs two recipe models on disk)")]
    return [
        Paragraph(
            "Relative L2 change of the weights from each recipe model to the next: ||W_after − W_before|| /"
            " ||W_before|| over all parameters together, read tensor by tensor from the safetensors files. A"
            " stage whose weights moved by less than 1e-4 barely trained; the most changed tensor (relative to"
            " its own norm) shows where a stage acted."
        ),
        weight_change_table(changes),
    ]


def benchmarks(summary: Mapping[str, Any]) -> list[Block]:
    results = {k: v for k, v in (summary.get("benchmarks") or {}).items() if isinstance(v, Mapping)}
    if not results:
        return [not_run("Benchmark evaluation")]
    blocks: list[Block] = []
    modes = {str((r.get("config") or {}).get("mode", "")) for r in results.values()} - {""}
    if modes:
        blocks.append(
            Paragraph(
                f"Evaluation mode: {', '.join(sorted(modes))}. Accuracy with its 95% CI (percentile bootstrap;"
                " Wilson when all answers are right or all wrong)."
            )
        )
    blocks.append(mcqa_table(results, caption="Accuracy by recipe stage"))
    chance = chance_levels(summary)
    blocks.append(
        Chart(
            "Accuracy of every benchmark at every recipe stage, with 95% CIs; dashed: chance (1 / options).",
            lambda: charts.benchmarks_by_stage(results, chance),
        )
    )
    return blocks + _formulations(summary) + _skipped(summary, "benchmarks")


def _formulations(summary: Mapping[str, Any]) -> list[Block]:
    """Cloze and generative accuracy per model (letter accuracy is the table above)."""
    blocks: list[Block] = []
    for formulation, per in (summary.get("formulations") or {}).items():
        results = {k: v for k, v in (per or {}).items() if isinstance(v, Mapping)}
        if not results:
            continue
        blocks.append(mcqa_table(results, caption=f"Accuracy, {formulation_label(str(formulation)).lower()}"))
        if formulation == "generative":
            blocks.append(generation_table(results))
    return blocks


def _skipped(summary: Mapping[str, Any], kind: str) -> list[Block]:
    """A note for the recipe's optional evaluation sets whose files were not in the data folder."""
    names = list((summary.get("skipped") or {}).get(kind) or [])
    if not names:
        return []
    return [Note(f"Not evaluated, their files are not in the data folder: {', '.join(names)}.")]


def changes(summary: Mapping[str, Any]) -> list[Block]:
    comparisons = summary.get("comparisons")
    if not isinstance(comparisons, Mapping) or not any(comparisons.values()):
        return [not_run("A paired comparison of two evaluated recipe models")]
    blocks: list[Block] = [
        Paragraph(
            "Accuracy change in percentage points from each evaluated model to the next, and from the first to the"
            " last (overall), on the questions both models answered (n), with a paired bootstrap 95% CI: a CI"
            " that excludes 0 is a change these questions can tell apart from chance. The mean of benchmarks"
            " averages the per-benchmark changes (its CI resamples within each benchmark); a group pools its"
            " members' questions. Answers changed: the share of questions whose predicted answer differs."
        )
    ]
    for formulation, entries in comparisons.items():
        if not entries:
            continue
        blocks.append(Heading(formulation_label(str(formulation))))
        blocks += change_tables(entries)
    return blocks


def answers(summary: Mapping[str, Any]) -> list[Block]:
    distributions = summary.get("answer_distributions")
    if not isinstance(distributions, Mapping) or not any(distributions.values()):
        return [not_run("Answer distributions (no benchmark evaluation)")]
    blocks: list[Block] = [
        Paragraph(
            "Share of each predicted answer per model and benchmark, next to the gold answers' shares. "
            + RULES[0]
            + " A flag is a position or label bias, whatever the accuracy."
        )
    ]
    for formulation, models in distributions.items():
        if not isinstance(models, Mapping) or not models:
            continue
        blocks.append(Heading(formulation_label(str(formulation))))
        table, flagged = answers_table(models)
        blocks.append(table)
        if flagged:
            blocks.append(Note("Flagged: " + "; ".join(flagged) + "."))
    return blocks


def medprompt(summary: Mapping[str, Any]) -> list[Block]:
    medprompt = summary.get("medprompt")
    if not isinstance(medprompt, Mapping) or not (medprompt.get("ladder") or medprompt.get("results")):
        return [not_run("Medprompt (kNN few-shot, chain of thought, choice-shuffle ensemble)")]
    blocks: list[Block] = []
    if medprompt.get("model"):
        blocks.append(Paragraph(f"Model: {medprompt['model']}."))
    blocks.append(Heading("Ablation ladder"))
    ladder = medprompt.get("ladder")
    if isinstance(ladder, Mapping) and ladder.get("steps"):
        blocks.append(ladder_table(ladder))
        blocks.append(
            Chart(
                "Medprompt ladder: accuracy as each ingredient is added, with 95% CIs.",
                lambda: charts.medprompt_ladder(ladder),
            )
        )
    else:
        blocks.append(not_run("The ablation ladder"))
    blocks.append(Heading("Medprompt result"))
    results = medprompt.get("results")
    if isinstance(results, Mapping) and results.get("benchmarks"):
        rows = tuple(
            (
                name,
                count_cell(b.get("n")),
                acc_cell(b, with_n=False),
                estimate(b.get("agreement")),
                estimate(b.get("unparseable_rate")),
            )
            for name, b in results["benchmarks"].items()
        )
        rows += tuple(
            (f"{g} (group)", count_cell(r.get("n")), acc_cell(r, with_n=False), "", "")
            for g, r in (results.get("groups") or {}).items()
        )
        header = ("benchmark", "n", "accuracy (95% CI)", "ensemble agreement", "unparseable")
        blocks.append(Table(header, rows, "Medprompt accuracy"))
    else:
        blocks.append(not_run("The full Medprompt evaluation"))
    return blocks


def safety(summary: Mapping[str, Any]) -> list[Block]:
    sides = before_after(summary.get("safety"))
    if not sides:
        return [not_run("Safety evaluation (red-teaming and over-refusal)")]
    blocks: list[Block] = [Paragraph(safety_setup(sides))]
    blocks += _table_and_chart(
        "Attack success by style",
        attack_table(sides),
        "Red-teaming",
        "Attack success rate by suite and attack style (lower is safer), with 95% intervals.",
        lambda: charts.attack_success_by_style(dict(sides)),
    )
    blocks += _table_and_chart(
        "Over-refusal",
        over_refusal_table(sides),
        "Over-refusal",
        "Over-refusal: safe prompts refused and unsafe contrasts answered (lower is better).",
        lambda: charts.over_refusal(dict(sides)),
    )
    return blocks + _skipped(summary, "suites")


def _table_and_chart(
    heading: str, table: Table | None, what: str, caption: str, draw: Callable[[], bytes]
) -> list[Block]:
    """A heading, then the table and its chart, or a "not run" note when there is no table."""
    if table is None:
        return [Heading(heading), not_run(what)]
    return [Heading(heading), table, Chart(caption, draw)]


def bias_truthfulness(summary: Mapping[str, Any]) -> list[Block]:
    blocks: list[Block] = [Heading("Bias (BBQ)")]
    bbq = bbq_table(before_after(summary.get("bias")))
    if bbq is None:
        blocks.append(not_run("BBQ"))
    else:
        blocks.append(
            Paragraph(
                "Bias scores run from -1 (answers go against the stereotype) through 0 (no bias) to +1 (answers "
                'follow it); on ambiguous contexts the right answer is always "unknown".'
            )
        )
        blocks.append(bbq)
    blocks.append(Heading("Truthfulness (TruthfulQA)"))
    tqa = truthfulness_table(before_after(summary.get("truthfulness")))
    blocks.append(tqa if tqa is not None else not_run("TruthfulQA"))
    return blocks
