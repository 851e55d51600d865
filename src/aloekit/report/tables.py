"""The tables of the training, benchmark, comparison, answer and weight results, shared by the report's sections
and the model card. Pure: results in, :class:`~aloekit.report.document.Table` out, every number written by
:mod:`aloekit.report.numbers`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aloekit.data.dataset import stage_columns
from aloekit.evaluation.stats import wilson_ci
from aloekit.report import charts
from aloekit.report.document import Block, Note, Table
from aloekit.report.findings import chance_level, one_answer
from aloekit.report.numbers import (
    acc_cell,
    change_cell,
    count_cell,
    duration,
    estimate,
    loss_cell,
    number,
    percent,
    points,
    relative_cell,
    shares,
)

__all__ = [
    "FORMULATION_LABELS",
    "TRAINING_HEADER",
    "answers_table",
    "chance_cell",
    "chance_levels",
    "change_tables",
    "formulation_label",
    "generation_table",
    "ladder_table",
    "mcqa_table",
    "pair_label",
    "source_table",
    "training_row",
    "training_rows",
    "weight_change_table",
]


def source_table(sources: Mapping[str, Mapping[str, Any]]) -> Table:
    """Rows per source and stage of one built dataset."""
    columns = stage_columns(sources)
    rows = tuple((label, *(count_cell(c.get(s, 0)) for s in columns)) for label, c in sources.items())
    return Table(("source", *columns), rows, "Rows per source and stage")


TRAINING_HEADER = (
    "stage",
    "steps",
    "epochs covered",
    "time",
    "last training loss",
    "mean training loss",
    "validation loss (before → after)",
    "validation reward accuracy (95% CI, n pairs)",
    "validation reward margin",
)
TRAINING_LABELS = {"sft": "SFT", "dpo_general": "DPO stage 1 (general)", "dpo_safety": "DPO stage 2 (safety)"}


PREFERENCE_DATA = {"dpo_general": "prefs_general", "dpo_safety": "prefs_safety"}
"""A DPO stage's pairs in the summary's ``data``: its validation rows are the n of its validation reward accuracy."""


def _epochs(metrics: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> str:
    """Epochs the trainer covered (its own count, not the ``epochs`` setting, which ``max_steps`` overrides)."""
    logged = [h["epoch"] for h in history if number(h.get("epoch")) is not None]
    value = number(metrics.get("epochs", (metrics.get("train") or {}).get("epoch", logged[-1] if logged else None)))
    return "not recorded" if value is None else f"{value:.2f}"


def training_row(name: str, train: Mapping[str, Any], pairs: Any = None) -> tuple[str, ...]:
    """One stage's summary from SFT's metrics.json or DPO's (``last``, ``eval``, ``train``), the log history
    filling what the metrics lack. The last logged loss and the run's mean loss are different numbers and are
    labelled so; ``pairs`` (the DPO stage's validation pairs) is the n of its validation reward accuracy."""
    metrics = train.get("metrics") or {}
    last, evaluation, totals = metrics.get("last") or {}, metrics.get("eval") or {}, metrics.get("train") or {}
    losses, evals = charts.loss_points(train)
    history = train.get("log_history") or metrics.get("log_history") or []
    steps = metrics.get("steps") or last.get("step") or (int(max(s for s, _ in losses)) if losses else None)
    mean = metrics.get("train_loss", totals.get("train_loss"))
    before = metrics.get("eval_loss_before")
    after = metrics.get("eval_loss", evaluation.get("eval_loss", evals[-1][1] if evals else None))
    validation = f"{loss_cell(before) if before is not None else 'not measured'} → {loss_cell(after)}"
    seconds = metrics.get("train_seconds", totals.get("train_runtime"))
    dpo = bool(last or evaluation.get("eval_rewards/accuracies") is not None)
    accuracy, margin = "not DPO", "not DPO"
    if dpo:
        value, n = number(evaluation.get("eval_rewards/accuracies")), number(pairs)
        if value is None:
            accuracy = "not measured"
        elif n:
            accuracy = estimate(value, wilson_ci(round(value * n), int(n)), int(n))
        else:
            accuracy = f"{estimate(value)}, n not recorded"
        m = number(evaluation.get("eval_rewards/margins"))
        margin = "not measured" if m is None else estimate(m, signed=True) + (f", n={int(n):,}" if n else "")
    return (
        TRAINING_LABELS.get(name, name),
        count_cell(steps),
        _epochs(metrics, history),
        duration(seconds),
        loss_cell(losses[-1][1]) if losses else "not logged",
        loss_cell(mean),
        validation,
        accuracy,
        margin,
    )


def training_rows(summary: Mapping[str, Any]) -> tuple[tuple[str, ...], ...]:
    training = {k: v for k, v in (summary.get("training") or {}).items() if isinstance(v, Mapping)}
    data = summary.get("data") or {}
    return tuple(
        training_row(name, t, (data.get(PREFERENCE_DATA.get(name, "")) or {}).get("validation"))
        for name, t in training.items()
    )


def generation_table(results: Mapping[str, Mapping[str, Any]]) -> Table:
    """Per benchmark and model: the share of replies no answer could be read from (counted wrong), and of those
    cut at the new-token limit when that was recorded."""
    names = list(dict.fromkeys(b for r in results.values() for b in r.get("benchmarks") or {}))
    rows = []
    for name in names:
        cells = []
        for r in results.values():
            b = (r.get("benchmarks") or {}).get(name) or {}
            unparseable = number(b.get("unparseable_rate"))
            if unparseable is None:
                cells.append("not measured")
                continue
            cell = f"{100 * unparseable:.1f}% of {count_cell(b.get('n'))}"
            truncated = number(b.get("truncated_rate"))
            limit = b.get("max_tokens")
            cell += (
                f"; {100 * truncated:.1f}% cut at {limit} new tokens"
                if truncated is not None
                else "; cut at the limit: not recorded"
            )
            cells.append(cell)
        rows.append((name, *cells))
    return Table(("benchmark", *results), tuple(rows), "Generated answers: unparseable replies (counted wrong)", 1)


def chance_levels(summary: Mapping[str, Any]) -> dict[str, float]:
    """Benchmark -> chance accuracy (1 / its options), from the log-likelihood answer distributions' gold labels."""
    out: dict[str, float] = {}
    for per in ((summary.get("answer_distributions") or {}).get("loglik") or {}).values():
        for bench, d in (per or {}).items():
            level = chance_level(d) if isinstance(d, Mapping) else None
            if level is not None:
                out.setdefault(bench, level)
    return out


FORMULATION_LABELS = {
    "loglik": "Log-likelihood of the answer letter",
    "cloze": "Cloze: log-likelihood of the option text",
    "generative": "Generative: the answer read from the reply",
}


def formulation_label(key: str) -> str:
    return FORMULATION_LABELS.get(key, key)


def pair_label(entry: Mapping[str, Any]) -> str:
    label = f"{entry.get('before')} → {entry.get('after')}"
    return f"{label} (overall)" if entry.get("kind") == "overall" else label


def _change_rows(entry: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(row label, change) of one comparison: benchmarks, then groups, then the mean of benchmarks."""
    rows = [(str(name), c) for name, c in (entry.get("benchmarks") or {}).items()]
    rows += [(f"{name} (group)", c) for name, c in (entry.get("groups") or {}).items()]
    mean = entry.get("mean")
    if isinstance(mean, Mapping) and number(mean.get("delta")) is not None:
        rows.append((f"mean of {mean.get('benchmarks')} benchmarks", {**mean, "n": None}))
    return rows


def _comparison_cell(change: Mapping[str, Any]) -> str:
    return change_cell(change.get("delta"), change.get("delta_ci95"), change.get("n"))


def change_tables(entries: Sequence[Mapping[str, Any]]) -> list[Block]:
    """The comparisons of one formulation: a benchmark-by-comparison table of changes, then every comparison's
    accuracies before and after, and notes for what could not be compared."""
    compared = [e for e in entries if not e.get("error")]
    blocks: list[Block] = []
    if compared:
        per = [dict(_change_rows(e)) for e in compared]
        names = list(dict.fromkeys(name for rows in per for name in rows))
        matrix = tuple((name, *(_comparison_cell(r[name]) if name in r else "" for r in per)) for name in names)
        metric = "" if compared[0].get("metric", "acc") == "acc" else f" ({compared[0]['metric']})"
        caption = f"Accuracy change{metric}, points (95% CI)"
        blocks.append(Table(("benchmark", *(pair_label(e) for e in compared)), matrix, caption))
        details = tuple(
            (
                pair_label(e),
                name,
                count_cell(c.get("n")) if c.get("n") is not None else "",
                estimate(c.get("acc_before")),
                estimate(c.get("acc_after")),
                change_cell(c.get("delta"), c.get("delta_ci95")),
                change_cell(c.get("beyond_chance_delta"), c.get("beyond_chance_delta_ci95"))
                if c.get("beyond_chance_delta") is not None
                else "",
                estimate(c.get("changed")) if c.get("changed") is not None else "",
            )
            for e in compared
            for name, c in _change_rows(e)
        )
        header = (
            "models",
            "benchmark",
            "n",
            "before",
            "after",
            "change, points (95% CI)",
            "change beyond the shares' chance",
            "answers changed",
        )
        blocks.append(Table(header, details, f"Accuracy{metric} before and after, on the same questions", 2))
    for e in entries:
        if e.get("error"):
            blocks.append(Note(f"{pair_label(e)}: not compared: {e['error']}"))
        elif e.get("not_compared"):
            missing = ", ".join(str(n) for n in e["not_compared"])
            blocks.append(Note(f"{pair_label(e)}: evaluated for only one of the two models, not compared: {missing}."))
    return blocks


def answers_table(models: Mapping[str, Mapping[str, Any]]) -> tuple[Table, list[str]]:
    """Benchmarks down, each model's predicted distribution beside the gold one; and the flagged models."""
    names = list(dict.fromkeys(b for per in models.values() for b in per or {}))
    rows = []
    flagged = []
    for bench in names:
        for model, per in models.items():
            d = (per or {}).get(bench)
            if not isinstance(d, Mapping):
                continue
            top = one_answer(d)
            flag = f"{top[0]} on {100 * top[1]:.0f}% of answers" if top else ""
            if top:
                flagged.append(f"{model} on {bench} ({flag})")
            label = f"{bench} (by position)" if d.get("by") == "position" else bench
            rows.append(
                (
                    label,
                    str(model),
                    shares(d.get("predicted")),
                    shares(d.get("gold")),
                    flag,
                    chance_cell(d.get("chance")),
                    count_cell(d.get("n")),
                )
            )
    header = ("benchmark", "model", "predicted answers", "gold answers", "flag", "beyond its shares' chance", "n")
    return Table(header, tuple(rows), "Predicted and gold answer distributions", 5), flagged


def chance_cell(chance: Any) -> str:
    """``+2.9 points [-0.5, +6.4] (35.0% vs 32.1%)``: accuracy minus the chance its answer shares give, with the
    accuracy and that chance; empty when the samples were not read."""
    if not isinstance(chance, Mapping) or number(chance.get("beyond")) is None:
        return ""
    acc, matched = number(chance.get("accuracy")), number(chance.get("shares_chance"))
    detail = f" ({percent(acc)} vs {percent(matched)})" if acc is not None and matched is not None else ""
    return points(chance.get("beyond"), chance.get("beyond_ci95")) + detail


def weight_change_table(changes: Sequence[Mapping[str, Any]]) -> Table:
    rows = []
    for c in changes:
        pair = f"{c.get('before')} → {c.get('after')}"
        if c.get("error"):
            rows.append((pair, f"not compared: {c['error']}", "", "", "", ""))
            continue
        largest = c.get("largest") or {}
        rows.append(
            (
                pair,
                str(largest.get("name", "n/a")),
                relative_cell(c.get("relative_l2")),
                relative_cell(largest.get("relative_l2")),
                count_cell(c.get("tensors")),
                count_cell(c.get("parameters")),
            )
        )
    header = ("models", "most changed tensor", "relative change", "of that tensor", "tensors", "parameters")
    return Table(header, tuple(rows), "Weight change per stage", 2)


def mcqa_table(results: Mapping[str, Mapping[str, Any]], *, caption: str) -> Table:
    """Benchmarks (then groups) down, stages (or models) across; ``n`` once per row when every column agrees."""
    names: dict[str, str] = {}
    for r in results.values():
        names |= {b: "benchmarks" for b in r.get("benchmarks") or {}}
    for r in results.values():
        names |= {g: "groups" for g in r.get("groups") or {} if g not in names}
    rows = []
    for name, kind in names.items():
        cells = [(r.get(kind) or {}).get(name) for r in results.values()]
        sizes = {c.get("n") for c in cells if c}
        shared = len(sizes) == 1
        label = f"{name} (group)" if kind == "groups" else name
        rows.append(
            (
                label,
                count_cell(next(iter(sizes))) if shared else "varies",
                *(acc_cell(c, with_n=not shared) for c in cells),
            )
        )
    return Table(("benchmark", "n", *results), tuple(rows), caption)


def ladder_table(ladder: Mapping[str, Any]) -> Table:
    """The ladder as ``aloe medprompt ablate`` prints it: each step's accuracy and its paired change."""
    benches = [str(b) for b in ladder.get("benchmarks") or []]
    rows = []
    for s in ladder["steps"]:
        change = s.get("change") or {}
        delta = estimate(change.get("delta"), change.get("delta_ci95"), signed=True) if change else ""
        per = [acc_cell((s.get("benchmarks") or {}).get(b), with_n=False) for b in benches]
        rows.append(
            (
                str(s.get("step")),
                count_cell(s.get("n")),
                acc_cell(s, with_n=False),
                delta,
                *per,
                duration(s.get("seconds")),
            )
        )
    header = ("step", "n", "accuracy (95% CI)", "change from previous step (95% CI)", *benches, "time")
    return Table(header, tuple(rows), "Medprompt ablation ladder (paired bootstrap for the change)")
