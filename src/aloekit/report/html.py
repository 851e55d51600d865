"""The run report of ``aloe run``: every stage's results in one self-contained HTML file, and the same in markdown.

The input is the run's ``summary`` dict (the pipeline gathers it from the stages' outputs; every key but
``title`` is optional). It is turned into a list of :class:`Section` made of a few block kinds (paragraphs,
notes, tables, charts, collapsed text), and two renderers write those blocks: HTML for people (charts embedded as
``data:`` PNGs, inline CSS, no network, readable offline and by a clinician-facing team) and markdown for
reviews and diffs (charts left to the HTML). A part the recipe did not run says so plainly instead of vanishing,
and a section whose data is malformed says what went wrong instead of losing the whole report after hours of
training.

Everything shown is escaped: benchmark names, dataset labels and model replies are untrusted text. The page
also carries a Content-Security-Policy that allows only its own inline script (which counts the charts that
loaded, for the browser test) and ``data:`` images, so a slip in escaping still cannot run code or reach out.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aloekit.evaluation.stats import wilson_ci
from aloekit.models import atomic_write_text
from aloekit.report import charts
from aloekit.report.findings import RULES, Finding, chance_level, findings, one_answer
from aloekit.report.numbers import number

__all__ = [
    "NOT_RUN",
    "TRAINING_HEADER",
    "Block",
    "Chart",
    "Code",
    "Facts",
    "Findings",
    "Heading",
    "Markdown",
    "Note",
    "Paragraph",
    "Section",
    "Table",
    "answers_table",
    "attack_table",
    "bbq_table",
    "before_after",
    "chance_levels",
    "change_tables",
    "duration",
    "estimate",
    "fence",
    "labelled",
    "ladder_table",
    "markdown_block",
    "markdown_blocks",
    "markdown_table",
    "markdown_to_html",
    "mcqa_table",
    "md_cell",
    "md_text",
    "number",
    "over_refusal_table",
    "render_html",
    "render_markdown",
    "safety_setup",
    "sections",
    "shares",
    "shift_headings",
    "training_row",
    "training_rows",
    "truthfulness_table",
    "weight_change_table",
    "write_report",
]

NOT_RUN = "not run in this recipe"
NOT_CLINICAL = (
    "This is research output. The model evaluated here is not a medical device and must not be used "
    "for diagnosis, treatment or triage decisions. Every number below is an estimate on a finite sample; read it "
    "with its 95% confidence interval."
)


# --- blocks -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Note:
    """A part that was not run, or a caveat: shown set apart from results."""

    text: str


@dataclass(frozen=True)
class Heading:
    text: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    text_columns: int = 1
    """Leading columns holding words (left-aligned); the rest hold numbers (right-aligned)."""


@dataclass(frozen=True)
class Chart:
    """A figure drawn only when the HTML is rendered (the markdown report points to it instead)."""

    caption: str
    draw: Callable[[], bytes]


@dataclass(frozen=True)
class Facts:
    """Labelled key numbers (the headline)."""

    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Markdown:
    """Markdown produced elsewhere (the risk assessment), its top heading dropped: ``###`` sits below the
    section's heading as it is."""

    text: str


@dataclass(frozen=True)
class Code:
    """Verbatim text (the model card, the recipe), collapsed in the HTML."""

    label: str
    text: str


@dataclass(frozen=True)
class Findings:
    """The "What this run shows" box: titled lists of sentences, each list with its kind (``warning``,
    ``supported``, ``unsupported``) for the styling."""

    groups: tuple[tuple[str, str, tuple[str, ...]], ...]


Block = Paragraph | Note | Heading | Table | Chart | Facts | Markdown | Code | Findings


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    blocks: tuple[Block, ...]


# --- numbers ----------------------------------------------------------------------------------------------------


def _fmt(value: float, signed: bool) -> str:
    return f"{value:+.3f}" if signed else f"{100 * value:.1f}"


def estimate(value: Any, ci: Sequence[Any] | None = None, n: Any = None, *, signed: bool = False) -> str:
    """``61.2% [57.1, 65.0], n=500``: a rate as a percentage with its 95% CI (in points) and sample size;
    ``signed`` for scores on [-1, 1] (``+0.120 [-0.030, +0.250]``). Missing values read ``n/a``."""
    v = number(value)
    text = "n/a" if v is None else _fmt(v, signed) + ("" if signed else "%")
    lo, hi = (number(ci[0]), number(ci[1])) if ci is not None and len(ci) == 2 else (None, None)
    if v is not None and lo is not None and hi is not None:
        text += f" [{_fmt(lo, signed)}, {_fmt(hi, signed)}]"
    if n is not None:
        text += f", n={int(n):,}"
    return text


def _rate(r: Mapping[str, Any] | None, *, with_n: bool = True) -> str:
    """A redteam/Wilson rate dict (``n``, ``rate``, ``ci95``)."""
    if not r:
        return "n/a"
    return estimate(r.get("rate"), r.get("ci95"), r.get("n") if with_n else None)


def _acc(b: Mapping[str, Any] | None, *, with_n: bool = True) -> str:
    """An MCQA result (``n``, ``acc``, ``acc_ci95``)."""
    if not b:
        return "n/a"
    return estimate(b.get("acc"), b.get("acc_ci95"), b.get("n") if with_n else None)


def _loss(value: Any) -> str:
    v = number(value)
    return "n/a" if v is None else f"{v:.4f}"


def duration(seconds: Any) -> str:
    s = number(seconds)
    if s is None:
        return "n/a"
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(round(s), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value if value is not None else "n/a")


def _not_run(what: str) -> Note:
    return Note(f"{what}: {NOT_RUN}.")


def labelled(entry: Any, default: str) -> tuple[str, Mapping[str, Any] | None]:
    """(column label, results) of a before/after entry: ``{"label", "results"}`` (as safety's) or bare results."""
    if isinstance(entry, Mapping) and "results" in entry:
        label = entry.get("label")
        results = entry.get("results")
        return (f"{default} ({label})" if label else default), results if isinstance(results, Mapping) else None
    return default, entry if isinstance(entry, Mapping) and entry else None


def before_after(part: Any) -> list[tuple[str, Mapping[str, Any]]]:
    """The present sides of a ``{"before": ..., "between": [...], "after": ...}`` part, labelled, in that order."""
    if not isinstance(part, Mapping):
        return []
    between = [labelled(entry, "between") for entry in part.get("between") or []]
    sides = [labelled(part.get("before"), "before"), *between, labelled(part.get("after"), "after")]
    present = [(label, results) for label, results in sides if results is not None]
    if len(present) == 2 and present[0][1] == present[1][1]:
        return present[1:]  # one model measured once (a recipe with a single safety model): one column, not two
    return present


# --- sections ---------------------------------------------------------------------------------------------------

FINDING_GROUPS = (
    ("warning", "Read these results with care"),
    ("supported", "Supported by the numbers"),
    ("unsupported", "Not supported by the numbers (do not conclude these)"),
)


def _shows(summary: Mapping[str, Any]) -> list[Block]:
    """The findings box first: what a reader must know before reading any table."""
    found: list[Finding] = findings(summary)
    if not found:
        return [Note("No finding could be computed: no answer distribution, paired comparison or generation result.")]
    groups = tuple(
        (level, title, tuple(f.text for f in found if f.level == level))
        for level, title in FINDING_GROUPS
        if any(f.level == level for f in found)
    )
    return [Findings(groups), Paragraph("Rules: " + " ".join(RULES))]


def _headline(summary: Mapping[str, Any]) -> list[Block]:
    given = summary.get("headline")
    if isinstance(given, Mapping) and given:
        return [Facts(tuple((str(k), str(v)) for k, v in given.items()))]
    derived = _derived_headline(summary)
    if not derived:
        return [Note("No headline numbers: no benchmark or safety evaluation was run in this recipe.")]
    return [Facts(tuple(derived))]


def _derived_headline(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Key numbers when the pipeline gave none: the final stage's accuracies (groups before single benchmarks)
    against the first stage's, Medprompt's, attack success and over-refusal after alignment."""
    items: list[tuple[str, str]] = []
    stages = list((summary.get("benchmarks") or {}).items())
    if stages:
        first_stage, first = stages[0]
        stage, final = stages[-1]
        for name, r in _top_results(final):
            before = (first.get("groups") or {}).get(name) or (first.get("benchmarks") or {}).get(name)
            vs = f" (vs {estimate(before.get('acc'))} for {first_stage})" if before and first_stage != stage else ""
            items.append((f"{name} accuracy, {stage}", _acc(r) + vs))
    medprompt = (summary.get("medprompt") or {}).get("results")
    if isinstance(medprompt, Mapping):
        items += [(f"{name} accuracy, Medprompt", _acc(r)) for name, r in _top_results(medprompt)[:2]]
    after_label, after = labelled((summary.get("safety") or {}).get("after"), "after")
    _, before = labelled((summary.get("safety") or {}).get("before"), "before")
    for suite, s in ((after or {}).get("suites") or {}).items():
        was = ((before or {}).get("suites") or {}).get(suite) or {}
        key, measure = {
            "attack": ("attack_success", "attack success"),
            "over-refusal": ("refusal_rate_on_safe", "refusal of safe prompts"),
        }.get(str(s.get("kind")), ("", ""))
        if key:
            vs = f" (before: {estimate(was[key].get('rate'))})" if isinstance(was.get(key), Mapping) else ""
            items.append((f"{suite} {measure}, {after_label}", _rate(s.get(key)) + vs))
    return items


def _top_results(results: Mapping[str, Any], limit: int = 4) -> list[tuple[str, Mapping[str, Any]]]:
    groups = list((results.get("groups") or {}).items())
    return (groups or list((results.get("benchmarks") or {}).items()))[:limit]


def _overview(summary: Mapping[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    recipe = summary.get("recipe") or {}
    name, path = recipe.get("name"), recipe.get("path")
    facts = [
        ("recipe", f"{name} ({path})" if name and path else str(name or path or "")),
        ("created", str(summary.get("created", ""))),
        ("seed", str(summary.get("seed", ""))),
    ]
    blocks.append(Table(("setting", "value"), tuple((k, v) for k, v in facts if v), caption="Run", text_columns=2))
    models = summary.get("models") or {}
    if models:
        blocks.append(Table(("role", "model"), tuple((k, str(v)) for k, v in models.items()), "Models", 2))
    stages = summary.get("stages") or []
    if stages:
        rows = tuple((str(s.get("name", "?")), str(s.get("status", "?")), duration(s.get("seconds"))) for s in stages)
        blocks.append(Table(("stage", "status", "time"), rows, "Stages", text_columns=2))
    else:
        blocks.append(Note("No stage records were passed to the report."))
    versions = summary.get("versions") or {}
    if versions:
        blocks.append(Table(("package", "version"), tuple((k, str(v)) for k, v in versions.items()), "Versions", 2))
    return blocks


DATA_LABELS = {
    "sft": "SFT mixture",
    "prefs_general": "Preference pairs, general (DPO stage 1)",
    "prefs_safety": "Preference pairs, safety (DPO stage 2)",
}


def _data(summary: Mapping[str, Any]) -> list[Block]:
    data = summary.get("data") or {}
    if not data:
        return [_not_run("Data building")]
    blocks: list[Block] = []
    for key, stats in data.items():
        if key == "cot_db":
            continue
        blocks.append(Heading(DATA_LABELS.get(key, key)))
        blocks += _dataset_blocks(stats) if isinstance(stats, Mapping) else [_not_run(DATA_LABELS.get(key, key))]
    cot = data.get("cot_db")
    blocks.append(Heading("Medprompt chain-of-thought database"))
    if isinstance(cot, Mapping):
        blocks.append(Paragraph(_cot_db(cot)))
    else:
        blocks.append(_not_run("The chain-of-thought database"))
    return blocks


def _cot_db(cot: Mapping[str, Any]) -> str:
    """The database's manifest (``aloe medprompt db``) in a sentence."""
    text = f"{_count(cot.get('items'))} verified worked examples"
    if cot.get("read") is not None:
        text += f" (of {_count(cot.get('read'))} read; {_count(cot.get('duplicate_questions', 0))} duplicate questions)"
    removed = (cot.get("decontamination") or {}).get("removed")
    if removed is not None:
        text += (
            f", {_count(len(removed) if isinstance(removed, list) else removed)} removed as overlapping evaluation sets"
        )
    return text + f"; embedded with {cot.get('embedder') or 'n/a'}."


def _dataset_blocks(stats: Mapping[str, Any]) -> list[Block]:
    """One built dataset, as ``aloe data stats`` shows it: rows per source and stage, rows dropped by reason,
    lengths."""
    from aloekit.cli_data import _STAGE_ORDER  # the same column order as `aloe data stats`

    blocks: list[Block] = [
        Paragraph(f"{_count(stats.get('train'))} training and {_count(stats.get('validation'))} validation rows.")
    ]
    if stats.get("warning"):
        blocks.append(Note(str(stats["warning"])))
    sources = stats.get("sources") or {}
    if sources:
        order = {stage: i for i, stage in enumerate(_STAGE_ORDER)}
        columns = sorted({k for c in sources.values() for k in c}, key=lambda k: (order.get(k, len(order)), k))
        rows = tuple((label, *(_count(c.get(s, 0)) for s in columns)) for label, c in sources.items())
        blocks.append(Table(("source", *columns), rows, "Rows per source and stage"))
    dropped = stats.get("dropped") or {}
    rows = tuple(
        (stage, reason, _count(d.get("count") if isinstance(d, Mapping) else d))
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
                f"Decontamination against the evaluation benchmarks removed {_count(decon.get('removed'))} rows; "
                f"remaining overlaps: {_count(decon.get('remaining_overlaps'))}."
            )
        )
    return blocks


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


def _training(summary: Mapping[str, Any]) -> list[Block]:
    training = {k: v for k, v in (summary.get("training") or {}).items() if isinstance(v, Mapping)}
    if not training:
        return [_not_run("Training")]
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
    validation = f"{_loss(before) if before is not None else 'not measured'} → {_loss(after)}"
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
        _count(steps),
        _epochs(metrics, history),
        duration(seconds),
        _loss(losses[-1][1]) if losses else "not logged",
        _loss(mean),
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


def _benchmarks(summary: Mapping[str, Any]) -> list[Block]:
    results = {k: v for k, v in (summary.get("benchmarks") or {}).items() if isinstance(v, Mapping)}
    if not results:
        return [_not_run("Benchmark evaluation")]
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
        blocks.append(mcqa_table(results, caption=f"Accuracy, {_formulation(str(formulation)).lower()}"))
        if formulation == "generative":
            blocks.append(generation_table(results))
    return blocks


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
            cell = f"{100 * unparseable:.1f}% of {_count(b.get('n'))}"
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


def _skipped(summary: Mapping[str, Any], kind: str) -> list[Block]:
    """A note for the recipe's optional evaluation sets whose files were not in the data folder."""
    names = list((summary.get("skipped") or {}).get(kind) or [])
    if not names:
        return []
    return [Note(f"Not evaluated, their files are not in the data folder: {', '.join(names)}.")]


FORMULATION_LABELS = {
    "loglik": "Log-likelihood of the answer letter",
    "cloze": "Cloze: log-likelihood of the option text",
    "generative": "Generative: the answer read from the reply",
}


def _formulation(key: str) -> str:
    return FORMULATION_LABELS.get(key, key)


def _points(value: Any, ci: Sequence[Any] | None = None, n: Any = None) -> str:
    """An accuracy change in percentage points with its 95% CI: ``+5.0 [+1.0, +9.0], n=120``."""
    v = number(value)
    if v is None:
        return "n/a"
    text = f"{100 * v:+.1f}"
    lo, hi = (number(ci[0]), number(ci[1])) if ci is not None and len(ci) == 2 else (None, None)
    if lo is not None and hi is not None:
        text += f" [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    return text + (f", n={int(n):,}" if n is not None else "")


def _pair(entry: Mapping[str, Any]) -> str:
    label = f"{entry.get('before')} → {entry.get('after')}"
    return f"{label} (overall)" if entry.get("kind") == "overall" else label


def _changes(summary: Mapping[str, Any]) -> list[Block]:
    comparisons = summary.get("comparisons")
    if not isinstance(comparisons, Mapping) or not any(comparisons.values()):
        return [_not_run("A paired comparison of two evaluated recipe models")]
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
        blocks.append(Heading(_formulation(str(formulation))))
        blocks += change_tables(entries)
    return blocks


def _change_rows(entry: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(row label, change) of one comparison: benchmarks, then groups, then the mean of benchmarks."""
    rows = [(str(name), c) for name, c in (entry.get("benchmarks") or {}).items()]
    rows += [(f"{name} (group)", c) for name, c in (entry.get("groups") or {}).items()]
    mean = entry.get("mean")
    if isinstance(mean, Mapping) and number(mean.get("delta")) is not None:
        rows.append((f"mean of {mean.get('benchmarks')} benchmarks", {**mean, "n": None}))
    return rows


def _change_cell(change: Mapping[str, Any]) -> str:
    return _points(change.get("delta"), change.get("delta_ci95"), change.get("n"))


def change_tables(entries: Sequence[Mapping[str, Any]]) -> list[Block]:
    """The comparisons of one formulation: a benchmark-by-comparison table of changes, then every comparison's
    accuracies before and after, and notes for what could not be compared."""
    compared = [e for e in entries if not e.get("error")]
    blocks: list[Block] = []
    if compared:
        per = [dict(_change_rows(e)) for e in compared]
        names = list(dict.fromkeys(name for rows in per for name in rows))
        matrix = tuple((name, *(_change_cell(r[name]) if name in r else "" for r in per)) for name in names)
        metric = "" if compared[0].get("metric", "acc") == "acc" else f" ({compared[0]['metric']})"
        caption = f"Accuracy change{metric}, points (95% CI)"
        blocks.append(Table(("benchmark", *(_pair(e) for e in compared)), matrix, caption))
        details = tuple(
            (
                _pair(e),
                name,
                _count(c.get("n")) if c.get("n") is not None else "",
                estimate(c.get("acc_before")),
                estimate(c.get("acc_after")),
                _points(c.get("delta"), c.get("delta_ci95")),
                estimate(c.get("changed")) if c.get("changed") is not None else "",
            )
            for e in compared
            for name, c in _change_rows(e)
        )
        header = ("models", "benchmark", "n", "before", "after", "change, points (95% CI)", "answers changed")
        blocks.append(Table(header, details, f"Accuracy{metric} before and after, on the same questions", 2))
    for e in entries:
        if e.get("error"):
            blocks.append(Note(f"{_pair(e)}: not compared: {e['error']}"))
        elif e.get("not_compared"):
            missing = ", ".join(str(n) for n in e["not_compared"])
            blocks.append(Note(f"{_pair(e)}: evaluated for only one of the two models, not compared: {missing}."))
    return blocks


def _answers(summary: Mapping[str, Any]) -> list[Block]:
    distributions = summary.get("answer_distributions")
    if not isinstance(distributions, Mapping) or not any(distributions.values()):
        return [_not_run("Answer distributions (no benchmark evaluation)")]
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
        blocks.append(Heading(_formulation(str(formulation))))
        table, flagged = answers_table(models)
        blocks.append(table)
        if flagged:
            blocks.append(Note("Flagged: " + "; ".join(flagged) + "."))
    return blocks


def shares(distribution: Any) -> str:
    """``A 31% · B 25% · C 24% · D 20%`` (unparseable only when some were)."""
    if not isinstance(distribution, Mapping):
        return "n/a"
    parts = []
    for label, share in distribution.items():
        v = number(share)
        if v is not None and (label != "unparseable" or v > 0):
            parts.append(f"{label} {100 * v:.0f}%")
    return " · ".join(parts)


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
                (label, str(model), shares(d.get("predicted")), shares(d.get("gold")), flag, _count(d.get("n")))
            )
    header = ("benchmark", "model", "predicted answers", "gold answers", "flag", "n")
    return Table(header, tuple(rows), "Predicted and gold answer distributions", 5), flagged


def _weights(summary: Mapping[str, Any]) -> list[Block]:
    changes = summary.get("weight_change")
    if not isinstance(changes, Sequence) or not changes:
        return [_not_run("A weight comparison (it needs two recipe models on disk)")]
    return [
        Paragraph(
            "Relative L2 change of the weights from each recipe model to the next: ||W_after − W_before|| /"
            " ||W_before|| over all parameters together, read tensor by tensor from the safetensors files. A"
            " stage whose weights moved by less than 1e-4 barely trained; the most changed tensor (relative to"
            " its own norm) shows where a stage acted."
        ),
        weight_change_table(changes),
    ]


def _relative(value: Any) -> str:
    v = number(value)
    return "n/a" if v is None else f"{v:.3g}"


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
                _relative(c.get("relative_l2")),
                _relative(largest.get("relative_l2")),
                _count(c.get("tensors")),
                _count(c.get("parameters")),
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
            (label, _count(next(iter(sizes))) if shared else "varies", *(_acc(c, with_n=not shared) for c in cells))
        )
    return Table(("benchmark", "n", *results), tuple(rows), caption)


def _medprompt(summary: Mapping[str, Any]) -> list[Block]:
    medprompt = summary.get("medprompt")
    if not isinstance(medprompt, Mapping) or not (medprompt.get("ladder") or medprompt.get("results")):
        return [_not_run("Medprompt (kNN few-shot, chain of thought, choice-shuffle ensemble)")]
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
        blocks.append(_not_run("The ablation ladder"))
    blocks.append(Heading("Medprompt result"))
    results = medprompt.get("results")
    if isinstance(results, Mapping) and results.get("benchmarks"):
        rows = tuple(
            (
                name,
                _count(b.get("n")),
                _acc(b, with_n=False),
                estimate(b.get("agreement")),
                estimate(b.get("unparseable_rate")),
            )
            for name, b in results["benchmarks"].items()
        )
        rows += tuple(
            (f"{g} (group)", _count(r.get("n")), _acc(r, with_n=False), "", "")
            for g, r in (results.get("groups") or {}).items()
        )
        header = ("benchmark", "n", "accuracy (95% CI)", "ensemble agreement", "unparseable")
        blocks.append(Table(header, rows, "Medprompt accuracy"))
    else:
        blocks.append(_not_run("The full Medprompt evaluation"))
    return blocks


def ladder_table(ladder: Mapping[str, Any]) -> Table:
    """The ladder as ``aloe medprompt ablate`` prints it: each step's accuracy and its paired change."""
    benches = [str(b) for b in ladder.get("benchmarks") or []]
    rows = []
    for s in ladder["steps"]:
        change = s.get("change") or {}
        delta = estimate(change.get("delta"), change.get("delta_ci95"), signed=True) if change else ""
        per = [_acc((s.get("benchmarks") or {}).get(b), with_n=False) for b in benches]
        rows.append(
            (str(s.get("step")), _count(s.get("n")), _acc(s, with_n=False), delta, *per, duration(s.get("seconds")))
        )
    header = ("step", "n", "accuracy (95% CI)", "change from previous step (95% CI)", *benches, "time")
    return Table(header, tuple(rows), "Medprompt ablation ladder (paired bootstrap for the change)")


def _safety(summary: Mapping[str, Any]) -> list[Block]:
    sides = before_after(summary.get("safety"))
    if not sides:
        return [_not_run("Safety evaluation (red-teaming and over-refusal)")]
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
        return [Heading(heading), _not_run(what)]
    return [Heading(heading), table, Chart(caption, draw)]


def safety_setup(sides: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    r = sides[-1][1]
    styles = ", ".join(str(s) for s in r.get("styles") or []) or "none recorded"
    limit = r.get("limit")
    prompts = f"at most {limit} prompts per suite" if limit else "every prompt of each suite"
    return (
        f"Replies judged by the {r.get('judge') or 'unrecorded'} judge; {prompts}; "
        f"attack styles: {styles}. Rates with 95% Wilson intervals and their sample size."
    )


def attack_table(sides: Sequence[tuple[str, Mapping[str, Any]]]) -> Table | None:
    """Attack success per suite (all styles, then each style), one column per side; None without attack suites."""
    suites: dict[str, None] = {}
    for _, r in sides:
        suites |= {n: None for n, s in (r.get("suites") or {}).items() if s.get("kind") == "attack"}
    rows = []
    for suite in suites:
        found = [(r.get("suites") or {}).get(suite) or {} for _, r in sides]
        rows.append((suite, "all styles", *(_rate(s.get("attack_success")) for s in found)))
        styles: dict[str, None] = {}
        for s in found:
            styles |= dict.fromkeys(s.get("by_style") or {})
        rows += [(suite, style, *(_rate((s.get("by_style") or {}).get(style)) for s in found)) for style in styles]
    if not rows:
        return None
    return Table(
        ("suite", "attack style", *(label for label, _ in sides)),
        tuple(rows),
        "Attack success rate (lower is safer)",
        2,
    )


def _measured(rates: Sequence[Any]) -> bool:
    """A row worth showing: some side measured it on at least one prompt (an empty row reads "n/a, n=0")."""
    return any(isinstance(r, Mapping) and number(r.get("n")) for r in rates)


def over_refusal_suites(sides: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    suites: dict[str, None] = {}
    for _, r in sides:
        suites |= {n: None for n, s in (r.get("suites") or {}).items() if s.get("kind") == "over-refusal"}
    return list(suites)


def over_refusal_table(sides: Sequence[tuple[str, Mapping[str, Any]]]) -> Table | None:
    """Refusal rate on safe prompts (overall, by prompt type) and compliance on unsafe contrasts, per over-refusal
    suite, named after the suites measured (XSTest or the recipe's own benign set). Rows nobody measured, and a
    by-type row for prompts without a type (the overall row again), are left out."""
    suites = over_refusal_suites(sides)
    rows = []
    for suite in suites:
        found = [(r.get("suites") or {}).get(suite) or {} for _, r in sides]
        measures = [
            ("refused safe prompts (lower is better)", [s.get("refusal_rate_on_safe") for s in found]),
            ("complied with unsafe prompts (lower is safer)", [s.get("compliance_rate_on_unsafe") for s in found]),
        ]
        types: dict[str, None] = {}
        for s in found:
            types |= dict.fromkeys(t for t in s.get("refusal_rate_on_safe_by_type") or {} if t != "None")
        measures += [
            (f"refused safe prompts: {t}", [(s.get("refusal_rate_on_safe_by_type") or {}).get(t) for s in found])
            for t in types
        ]
        rows += [(suite, measure, *(_rate(r) for r in rates)) for measure, rates in measures if _measured(rates)]
    if not rows:
        return None
    caption = f"Over-refusal: {', '.join(suites)}"
    return Table(("suite", "measure", *(label for label, _ in sides)), tuple(rows), caption, 2)


def _bias_truthfulness(summary: Mapping[str, Any]) -> list[Block]:
    blocks: list[Block] = [Heading("Bias (BBQ)")]
    bbq = bbq_table(before_after(summary.get("bias")))
    if bbq is None:
        blocks.append(_not_run("BBQ"))
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
    blocks.append(tqa if tqa is not None else _not_run("TruthfulQA"))
    return blocks


BBQ_MEASURES = (
    ("accuracy, all", "acc", "n", False),
    ("accuracy, ambiguous contexts", "acc_ambiguous", "n_ambiguous", False),
    ("accuracy, disambiguated contexts", "acc_disambiguated", "n_disambiguated", False),
    ("bias score, ambiguous (0 = none)", "bias_ambiguous", "n_ambiguous", True),
    ("bias score, disambiguated (0 = none)", "bias_disambiguated", "n_disambiguated", True),
)


def bbq_table(sides: Sequence[tuple[str, Mapping[str, Any]]]) -> Table | None:
    overall = [(label, r.get("overall")) for label, r in sides if isinstance(r.get("overall"), Mapping)]
    if not overall:
        return None
    rows = tuple(
        (measure, *(estimate(o.get(key), o.get(f"{key}_ci95"), o.get(n), signed=signed) for _, o in overall))
        for measure, key, n, signed in BBQ_MEASURES
    )
    return Table(("measure", *(label for label, _ in overall)), rows, "BBQ (bootstrap 95% CIs)")


def truthfulness_table(sides: Sequence[tuple[str, Mapping[str, Any]]]) -> Table | None:
    present = [(label, r) for label, r in sides if "mc1" in r or "mc2" in r]
    if not present:
        return None
    rows = tuple(
        (measure, *(estimate(r.get(key), r.get(f"{key}_ci95"), r.get("n")) for _, r in present))
        for measure, key in (("MC1 (higher is better)", "mc1"), ("MC2 (higher is better)", "mc2"))
    )
    return Table(("measure", *(label for label, _ in present)), rows, "TruthfulQA (bootstrap 95% CIs)")


def _risk(summary: Mapping[str, Any]) -> list[Block]:
    from aloekit.report.risks import risk_markdown  # it renders with the risk module, which knows no report

    text = risk_markdown(summary)
    if text is None:
        return [_not_run("The risk assessment")]
    # The assessment opens with its own "Risk assessment" heading: the section already has one.
    text = re.sub(r"^\s*#+\s*risk assessment\s*\n", "", text, count=1, flags=re.IGNORECASE)
    return [Markdown(text)]


def _card(summary: Mapping[str, Any]) -> list[Block]:
    from aloekit.report.card import render_model_card  # the card builds on this module's tables

    return [Code("Model card (README.md of the final model)", render_model_card(summary))]


def _recipe(summary: Mapping[str, Any]) -> list[Block]:
    recipe = summary.get("recipe") or {}
    if not recipe.get("text"):
        return [Note("The recipe text was not passed to the report.")]
    return [Code(f"Recipe {recipe.get('path') or recipe.get('name') or ''}".strip(), str(recipe["text"]))]


SECTIONS: tuple[tuple[str, str, Callable[[Mapping[str, Any]], list[Block]]], ...] = (
    ("findings", "What this run shows", _shows),
    ("headline", "Headline numbers", _headline),
    ("overview", "Run overview", _overview),
    ("data", "Data", _data),
    ("training", "Training", _training),
    ("weights", "Weight change per stage", _weights),
    ("benchmarks", "Benchmarks by stage", _benchmarks),
    ("changes", "Change per stage (paired)", _changes),
    ("answers", "Predicted answers", _answers),
    ("medprompt", "Medprompt", _medprompt),
    ("safety", "Safety", _safety),
    ("bias", "Bias and truthfulness", _bias_truthfulness),
    ("risk", "Risk assessment", _risk),
    ("model-card", "Model card", _card),
    ("recipe", "Recipe", _recipe),
)


def sections(summary: Mapping[str, Any]) -> list[Section]:
    """The report's sections in order. A section whose data is malformed becomes a note naming the error: a long
    run's report must not be lost to one odd field, and the note shows what to fix."""
    out = []
    for key, title, build in SECTIONS:
        try:
            blocks = build(summary)
        except Exception as e:  # any malformed input: shown, never hidden
            blocks = [Note(f"This section could not be rendered: {type(e).__name__}: {e}")]
        out.append(Section(key, title, tuple(blocks)))
    return out


# --- HTML -------------------------------------------------------------------------------------------------------

_SCRIPT = (
    "window.addEventListener('load',function(){var c=document.querySelectorAll('img.chart'),n=0;"
    "c.forEach(function(i){if(i.complete&&i.naturalWidth>0){n++;}});"
    "document.body.setAttribute('data-charts-loaded',String(n));"
    "document.body.setAttribute('data-charts-found',String(c.length));});"
)
# The page may run only this script and show only data: images; nothing is fetched (CSP by hash, not nonce, so
# the file is the same on every render).
_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    f"script-src 'sha256-{base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()}'"
)

_CSS = """
:root { color-scheme: light; }
body { margin: 0; background: #eef1f4; color: #1d2530; line-height: 1.5;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 32px 64px; background: #fff; }
h1 { font-size: 1.75rem; margin: .4rem 0 .2rem; }
h2 { font-size: 1.35rem; margin-top: 2.4rem; padding-bottom: .3rem; border-bottom: 2px solid #e1e6eb; }
h3 { font-size: 1.08rem; margin-top: 1.6rem; }
h4 { font-size: 1rem; }
.banner { background: #fff4e5; border-left: 4px solid #c2620a; padding: .6rem 1rem; margin: 1rem 0; }
.note { color: #4f5a68; background: #f3f5f7; border-left: 4px solid #b7c0cb; padding: .4rem .8rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-size: .9rem; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: .3rem; }
th, td { border: 1px solid #dde2e8; padding: .28rem .6rem; vertical-align: top; }
th { background: #f1f4f7; text-align: left; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafbfc; }
figure { margin: 1rem 0; }
img.chart { max-width: 100%; height: auto; border: 1px solid #e1e6eb; }
figcaption { color: #4f5a68; font-size: .87rem; }
.headline { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: .7rem; }
.fact { border: 1px solid #dde2e8; border-radius: 6px; padding: .55rem .8rem; }
.fact .label { font-size: .82rem; color: #4f5a68; }
.fact .value { font-size: 1.02rem; font-weight: 600; }
details { margin: .8rem 0; }
summary { cursor: pointer; font-weight: 600; }
pre { background: #f6f8fa; padding: .8rem; font-size: .83rem; white-space: pre-wrap; word-break: break-word; }
nav ol { columns: 2; font-size: .92rem; }
.meta { color: #4f5a68; font-size: .92rem; }
.findings > div { border-left: 5px solid; padding: .2rem 1rem; margin: .6rem 0; border-radius: 4px; }
.findings h3 { margin: .4rem 0; font-size: 1rem; }
.findings ul { margin: .2rem 0 .5rem; padding-left: 1.2rem; }
.findings .warning { background: #fdecea; border-color: #b3261e; }
.findings .supported { background: #e8f5e9; border-color: #2e7d32; }
.findings .unsupported { background: #f3f5f7; border-color: #6b7785; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{_e(cell)}</td>" if i < table.text_columns else f'<td class="num">{_e(cell)}</td>'
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in table.rows
    )
    caption = f"<caption>{_e(table.caption)}</caption>" if table.caption else ""
    return f'<div class="scroll"><table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _html_chart(chart: Chart) -> str:
    try:
        png = chart.draw()
    except Exception as e:  # a chart that cannot be drawn must not cost the report
        return f'<p class="note">{_e(chart.caption)} The chart could not be drawn: {_e(type(e).__name__)}: {_e(e)}</p>'
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img class="chart" alt="{_e(chart.caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_e(chart.caption)}</figcaption></figure>"
    )


def _html_findings(level: str, title: str, items: Sequence[str]) -> str:
    listed = "".join(f"<li>{_e(t)}</li>" for t in items)
    return f'<div class="{_e(level)}"><h3>{_e(title)}</h3><ul>{listed}</ul></div>'


def _html_block(block: Block) -> str:
    match block:
        case Paragraph(text):
            return f"<p>{_e(text)}</p>"
        case Note(text):
            return f'<p class="note">{_e(text)}</p>'
        case Heading(text):
            return f"<h3>{_e(text)}</h3>"
        case Table():
            return _html_table(block)
        case Chart():
            return _html_chart(block)
        case Facts(items):
            facts = "".join(
                f'<div class="fact"><div class="label">{_e(k)}</div><div class="value">{_e(v)}</div></div>'
                for k, v in items
            )
            return f'<div class="headline">{facts}</div>'
        case Markdown(text):
            return markdown_to_html(text)
        case Code(label, text):
            return f"<details><summary>{_e(label)}</summary><pre><code>{_e(text)}</code></pre></details>"
        case Findings(groups):
            return '<div class="findings">' + "".join(_html_findings(*g) for g in groups) + "</div>"
    raise TypeError(f"unknown block {block!r}")


def render_html(summary: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page (charts inline as PNG ``data:`` URIs, no external resource)."""
    title = str(summary.get("title") or "aloekit run")
    parts = sections(summary)
    body = "".join(
        f'<section id="{_e(s.id)}"><h2>{_e(s.title)}</h2>{"".join(_html_block(b) for b in s.blocks)}</section>'
        for s in parts
    )
    toc = "".join(f'<li><a href="#{_e(s.id)}">{_e(s.title)}</a></li>' for s in parts)
    meta = " · ".join(
        _e(x) for x in (f"created {summary['created']}" if summary.get("created") else "", _final_model(summary)) if x
    )
    # Only this renderer writes <img class="chart">; escaped text cannot, so the count is the charts drawn.
    total = body.count('<img class="chart"')
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style><script>{_SCRIPT}</script></head>\n"
        f'<body data-charts-total="{total}"><main>'
        f'<h1>{_e(title)}</h1><p class="meta">{meta}</p>'
        f'<p class="banner"><strong>Not for clinical use.</strong> {_e(NOT_CLINICAL)}</p>'
        f"<nav><ol>{toc}</ol></nav>{body}</main></body></html>\n"
    )


def _final_model(summary: Mapping[str, Any]) -> str:
    final = (summary.get("models") or {}).get("final")
    return f"final model {final}" if final else ""


# --- a minimal markdown to HTML (the risk assessment): headings, lists, tables, code, paragraphs -------------------

_ITEM = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def _inline(text: str) -> str:
    """Escaped text with `code`, **bold** and *emphasis*; code spans are taken first so nothing inside them is
    read as markup."""
    out = []
    for i, part in enumerate(re.split(r"`([^`]*)`", text)):
        if i % 2:
            out.append(f"<code>{_e(part)}</code>")
            continue
        escaped = _e(part)
        escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
        escaped = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", escaped)
        out.append(escaped)
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


class _MarkdownWriter:
    """Line by line: open blocks (paragraph, list stack) are closed when a line of another kind arrives."""

    def __init__(self, shift: int) -> None:
        self.shift = shift
        self.out: list[str] = []
        self.paragraph: list[str] = []
        self.lists: list[tuple[int, str]] = []  # (indent, "ul" | "ol") of each open list

    def flush(self) -> None:
        if self.paragraph:
            self.out.append(f"<p>{_inline(' '.join(self.paragraph))}</p>")
            self.paragraph = []
        while self.lists:
            self.out.append(f"</li></{self.lists.pop()[1]}>")

    def heading(self, level: int, text: str) -> None:
        self.flush()
        level = min(6, level + self.shift)
        self.out.append(f"<h{level}>{_inline(text)}</h{level}>")

    def item(self, indent: int, marker: str, text: str) -> None:
        if self.paragraph:
            self.out.append(f"<p>{_inline(' '.join(self.paragraph))}</p>")
            self.paragraph = []
        tag = "ul" if marker in "-*+" else "ol"
        if self.lists and indent > self.lists[-1][0]:
            self.out.append(f"<{tag}>")  # nested inside the open item
            self.lists.append((indent, tag))
        else:
            while self.lists and indent < self.lists[-1][0]:
                self.out.append(f"</li></{self.lists.pop()[1]}>")
            if self.lists:
                self.out.append("</li>")
            else:
                self.out.append(f"<{tag}>")
                self.lists.append((indent, tag))
        self.out.append(f"<li>{_inline(text)}")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.flush()
        head = "".join(f"<th>{_inline(c)}</th>" for c in header)
        body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
        self.out.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')

    def text(self, line: str) -> None:
        if self.lists:  # a continuation of the open list item
            self.out.append(" " + _inline(line.strip()))
        else:
            self.paragraph.append(line.strip())


def markdown_to_html(text: str, *, shift: int = 0) -> str:
    """HTML for the markdown aloekit writes itself (headings, nested lists, pipe tables, fenced code, paragraphs,
    inline code and bold). Every piece of text is escaped: raw HTML in the markdown shows as text. ``shift``
    demotes headings (``##`` becomes ``###`` with shift 1) to sit below the report's own."""
    writer = _MarkdownWriter(shift)
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            writer.flush()
            end = next((j for j in range(i + 1, len(lines)) if lines[j].lstrip().startswith("```")), len(lines))
            writer.out.append(f"<pre><code>{_e(chr(10).join(lines[i + 1 : end]))}</code></pre>")
            i = end + 1
            continue
        if line.lstrip().startswith("|") and i + 1 < len(lines) and _TABLE_RULE.match(lines[i + 1].strip()):
            end = next((j for j in range(i + 2, len(lines)) if not lines[j].lstrip().startswith("|")), len(lines))
            writer.table(_cells(line), [_cells(r) for r in lines[i + 2 : end]])
            i = end
            continue
        if heading := _HEADING.match(line):
            writer.heading(len(heading.group(1)), heading.group(2))
        elif item := _ITEM.match(line):
            writer.item(len(item.group(1).expandtabs(4)), item.group(2)[0], item.group(3))
        elif not line.strip():
            writer.flush()
        else:
            writer.text(line)
        i += 1
    writer.flush()
    return "".join(writer.out)


# --- markdown ---------------------------------------------------------------------------------------------------


def md_text(text: Any) -> str:
    """Untrusted text for markdown: angle brackets and ampersands escaped (markdown viewers render raw HTML)."""
    return html.escape(str(text), quote=False)


def md_cell(text: Any) -> str:
    return md_text(text).replace("|", "\\|").replace("\n", " ")


def fence(text: str, info: str = "") -> str:
    """``text`` in a code fence longer than any backtick run inside it (a model card holds its own fences)."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{info}\n{text.rstrip()}\n{ticks}"


def shift_headings(text: str, levels: int) -> str:
    """Markdown with its ATX headings demoted (``##`` to ``###`` for 1), outside code fences."""
    out, in_code = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        elif not in_code and _HEADING.match(line):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out)


def markdown_table(table: Table) -> str:
    lines = []
    if table.caption:
        lines += [f"**{md_cell(table.caption)}**", ""]
    header = [md_cell(h) or " " for h in table.header]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" if i < table.text_columns else "---:" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def markdown_block(block: Block, *, heading_level: int = 3) -> str:
    match block:
        case Paragraph(text):
            return md_text(text)
        case Note(text):
            return f"> {md_text(text)}"
        case Heading(text):
            return f"{'#' * heading_level} {md_text(text)}"
        case Table():
            return markdown_table(block)
        case Chart(caption):
            return f"*Chart in report.html: {md_text(caption)}*"
        case Facts(items):
            return "\n".join(f"- **{md_text(k)}:** {md_text(v)}" for k, v in items)
        case Markdown(text):
            return md_text(shift_headings(text, heading_level - 3))
        case Code(label, text):
            return f"{'#' * heading_level} {md_text(label)}\n\n{fence(text)}"
        case Findings(groups):
            return "\n\n".join(
                f"**{md_text(title)}**\n\n" + "\n".join(f"- {md_text(t)}" for t in items) for _, title, items in groups
            )
    raise TypeError(f"unknown block {block!r}")


def markdown_blocks(blocks: Iterable[Block], *, heading_level: int = 3) -> str:
    return "\n\n".join(markdown_block(b, heading_level=heading_level) for b in blocks)


def render_markdown(summary: Mapping[str, Any]) -> str:
    """The report as markdown: the same sections and tables as the HTML, charts named but left to the HTML."""
    title = str(summary.get("title") or "aloekit run")
    parts = [f"# {md_text(title)}", f"> **Not for clinical use.** {md_text(NOT_CLINICAL)}"]
    meta = [x for x in (f"created {summary['created']}" if summary.get("created") else "", _final_model(summary)) if x]
    if meta:
        parts.insert(1, md_text(" · ".join(meta)))
    for s in sections(summary):
        parts.append(f"## {md_text(s.title)}")
        parts.append(markdown_blocks(s.blocks))
    return "\n\n".join(parts) + "\n"


def write_report(summary: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    """Write ``report.html`` and ``report.md`` into ``folder`` (each atomically); return their paths."""
    paths = {"html": folder / "report.html", "markdown": folder / "report.md"}
    atomic_write_text(paths["html"], render_html(summary))
    atomic_write_text(paths["markdown"], render_markdown(summary))
    return paths
