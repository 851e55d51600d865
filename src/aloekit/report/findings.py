"""What a run's numbers support, and what they do not: the report's "What this run shows" box.

A report that lists 33.3% at every stage looks normal until one sees that every model answered "A" to every
question. This module reads the summary and states, in plain sentences with the
numbers behind them, the findings a reader must not miss:

* **answers**: a model giving one answer to most questions (its accuracy measures the answer position, not
  knowledge), and an accuracy whose 95% CI includes chance (no evidence of better than guessing);
* **stages**: whether each stage changed anything measurable, from the paired comparisons (accuracy change with
  its paired CI, share of answers changed; attack success change and share of verdicts changed);
* **weights**: a stage whose weights barely moved;
* **generation**: unparseable replies, and replies cut at the token limit when that was recorded.

Each finding is ``warning`` (read the result with this in mind), ``supported`` (a conclusion whose CI backs it)
or ``unsupported`` (a conclusion a reader might draw that the CI does not back). The rules are stated in
:data:`RULES` and shown with the box. Pure functions of the summary: rendering is :mod:`aloekit.report.html`'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from aloekit.evaluation.compare import DOMINANT_MIN_OPTIONS, DOMINANT_SHARE
from aloekit.evaluation.stats import UNPARSEABLE, wilson_ci
from aloekit.report.numbers import excludes_zero, interval, number, percent, points, rate_text

__all__ = [
    "DEGENERATE_SHARE",
    "RULES",
    "Finding",
    "answer_findings",
    "chance_level",
    "findings",
    "generation_findings",
    "one_answer",
    "stage_findings",
    "weight_findings",
]

Level = Literal["warning", "supported", "unsupported"]

DEGENERATE_SHARE = 0.9
"""One answer on at least this share of a benchmark's questions is flagged whatever the number of options: with
2 or 3 options, 40% on one answer can be the gold's own share, 90% cannot be knowledge."""
STILL_WEIGHTS = 1e-4
"""A stage whose weights moved by less than this relative L2 change barely trained."""

RULES = (
    f"A model is flagged when one answer takes more than {DOMINANT_SHARE:.0%} of its predictions on a benchmark"
    f" with {DOMINANT_MIN_OPTIONS} or more options, or at least {DEGENERATE_SHARE:.0%} with any number of options.",
    "Chance is 1 / the number of options; an accuracy whose 95% CI includes it is no evidence of better than guessing.",
    "A model's shares' chance is the accuracy of a model with the same answer shares and no relation to the"
    " questions (sum of predicted share x gold share); an accuracy above 1 / the number of options whose excess over"
    " its shares' chance has a 95% CI including 0 comes from the favoured answers meeting the gold imbalance, not"
    " from the questions.",
    "A stage changed something measurable only when the paired 95% CI of its change (same questions or prompts"
    " before and after) excludes 0.",
)


@dataclass(frozen=True)
class Finding:
    level: Level
    topic: Literal["answers", "accuracy", "stage", "safety", "weights", "generation"]
    text: str


# --- answers and chance -------------------------------------------------------------------------------------------


def chance_level(distribution: Mapping[str, Any]) -> float | None:
    """1 / the number of options, read from the gold distribution's labels (unparseable is not an option)."""
    labels = [k for k in (distribution.get("gold") or {}) if k != UNPARSEABLE]
    return 1 / len(labels) if len(labels) >= 2 else None


def one_answer(distribution: Mapping[str, Any]) -> tuple[str, float] | None:
    """The answer a model gives too often under :data:`RULES` (label, share), or None."""
    predicted = {k: v for k, v in (distribution.get("predicted") or {}).items() if k != UNPARSEABLE}
    shares = {k: number(v) or 0.0 for k, v in predicted.items()}
    if not shares:
        return None
    label, top = max(shares.items(), key=lambda kv: kv[1])
    options = len([k for k in (distribution.get("gold") or predicted) if k != UNPARSEABLE])
    if top >= DEGENERATE_SHARE or (options >= DOMINANT_MIN_OPTIONS and top > DOMINANT_SHARE):
        return label, top
    return None


def _shares_explain(distribution: Mapping[str, Any]) -> str | None:
    """For an accuracy above 1 / the number of options (its Wilson 95% CI) whose excess over its shares' chance
    has a CI including 0 (:data:`RULES`): the numbers saying so; else None."""
    found = distribution.get("chance")
    uniform = chance_level(distribution)
    if not isinstance(found, Mapping) or uniform is None:
        return None
    acc, matched, n = number(found.get("accuracy")), number(found.get("shares_chance")), number(distribution.get("n"))
    bounds = interval(found.get("beyond_ci95"))
    if acc is None or matched is None or bounds is None or not n or excludes_zero(bounds):
        return None
    if wilson_ci(round(acc * n), int(n))[0] <= uniform:
        return None  # not above 1 / the number of options either: the chance warning says so
    return (
        f"accuracy {percent(acc)} (1 / options: {percent(uniform)}) against its shares' chance {percent(matched)},"
        f" beyond it {points(found.get('beyond'), bounds)}"
    )


def _distributions(summary: Mapping[str, Any]) -> Iterator[tuple[str, str, str, Mapping[str, Any]]]:
    """(formulation, model, benchmark, distribution) for every evaluated model."""
    for formulation, models in (summary.get("answer_distributions") or {}).items():
        for model, per in (models or {}).items():
            for bench, d in (per or {}).items():
                if isinstance(d, Mapping):
                    yield str(formulation), str(model), str(bench), d


def _accuracy(summary: Mapping[str, Any], formulation: str, model: str, bench: str) -> Mapping[str, Any] | None:
    """The accuracy result behind a distribution: the summary's ``benchmarks`` are the log-likelihood ones."""
    if formulation != "loglik":
        return None
    found = (((summary.get("benchmarks") or {}).get(model) or {}).get("benchmarks") or {}).get(bench)
    return found if isinstance(found, Mapping) else None


def _who(model: str, formulation: str) -> str:
    """``model``, with the formulation named when it is not the log-likelihood one the tables lead with."""
    return model if formulation == "loglik" else f"{model} ({FORMULATIONS.get(formulation, formulation)})"


def _grouped(who: str, parts: Sequence[tuple[str, str]], several: str) -> str:
    """One sentence naming every ``(benchmark, detail)`` of a model and formulation: a long run repeats the same
    warning for every benchmark, and a box of dozens of near-identical lines hides the few findings that differ."""
    listed = "; ".join(f"{bench}: {detail}" for bench, detail in parts)
    return f"{who}, on {len(parts)} benchmarks, {several}: {listed}."


def answer_findings(summary: Mapping[str, Any]) -> list[Finding]:
    """Per model and formulation, one warning listing the benchmarks whose answers are stuck on one label, and one
    listing those whose accuracy CI includes chance; for the last evaluated model, a supported finding per
    benchmark it answers above chance."""
    out: list[Finding] = []
    stuck_parts: dict[str, list[tuple[str, str]]] = {}
    stuck_letter: dict[str, str] = {}
    chance_parts: dict[str, list[tuple[str, str]]] = {}
    shares_parts: dict[str, list[tuple[str, str]]] = {}
    last = list(summary.get("benchmarks") or {})[-1:] or [None]
    for formulation, model, bench, d in _distributions(summary):
        who = _who(model, formulation)
        explained = _shares_explain(d)
        if explained:
            shares_parts.setdefault(who, []).append((bench, explained))
        stuck = one_answer(d)
        n = d.get("n")
        if stuck:
            gold = number((d.get("gold") or {}).get(stuck[0])) or 0.0
            stuck_parts.setdefault(who, []).append(
                (
                    bench,
                    f"answers {stuck[0]} to {percent(stuck[1])} of n={_n(n)} questions (gold is"
                    f" {stuck[0]} on {percent(gold)})",
                )
            )
            stuck_letter[who] = stuck[0]
        accuracy, chance = _accuracy(summary, formulation, model, bench), chance_level(d)
        bounds = interval((accuracy or {}).get("acc_ci95"))
        if accuracy is None or chance is None or bounds is None:
            continue
        measured = rate_text(accuracy.get("acc"), bounds, accuracy.get("n"))
        if bounds[0] <= chance <= bounds[1]:
            chance_parts.setdefault(who, []).append((bench, f"accuracy {measured} includes chance ({percent(chance)})"))
        elif model == last[0] and bounds[0] > chance and not stuck and not explained:
            out.append(
                Finding(
                    "supported",
                    "accuracy",
                    f"{model} answers {bench} above chance: {measured} (chance {percent(chance)}).",
                )
            )
    for who, parts in stuck_parts.items():
        if len(parts) == 1:
            (bench, detail), letter = parts[0], stuck_letter[who]
            text = (
                f"{who} on {bench}: {detail}: its accuracy measures how often {letter} is right, not medical knowledge."
            )
        else:
            text = _grouped(
                who,
                parts,
                "answers one option too often, so accuracy there measures how often that option is right, not"
                " medical knowledge",
            )
        out.append(Finding("warning", "answers", text))
    for who, parts in shares_parts.items():
        out.append(
            Finding(
                "warning",
                "accuracy",
                _grouped(
                    who,
                    parts,
                    "the accuracy above 1 / the number of options is what its answer shares alone give against the"
                    " gold shares, not evidence that the answers depend on the questions",
                )
                if len(parts) > 1
                else f"{who} on {parts[0][0]}: {parts[0][1]}: what its answer shares alone give against the gold"
                " shares, not evidence that the answers depend on the questions.",
            )
        )
    for who, parts in chance_parts.items():
        if len(parts) == 1:
            text = f"{who} on {parts[0][0]}: {parts[0][1]}: no evidence it answers better than guessing."
        else:
            text = _grouped(
                who,
                parts,
                "the accuracy's 95% CI includes chance, so there is no evidence it answers better than guessing",
            )
        out.append(Finding("warning", "accuracy", text))
    return out


# --- stages -------------------------------------------------------------------------------------------------------


def _pair(entry: Mapping[str, Any]) -> str:
    text = f"{entry.get('before')} → {entry.get('after')}"
    return f"{text}, first to last" if entry.get("kind") == "overall" else text


def _changed_share(changes: Sequence[Mapping[str, Any]]) -> tuple[float, int] | None:
    """The share of answers that changed over all compared questions (weighted by each benchmark's n)."""
    sized = [(number(c.get("changed")), number(c.get("n"))) for c in changes]
    total = sum(n for share, n in sized if share is not None and n)
    if not total:
        return None
    return sum(share * n for share, n in sized if share is not None and n) / total, int(total)


def stage_findings(summary: Mapping[str, Any]) -> list[Finding]:
    """Per compared pair of models (accuracy) and per red-teamed pair (safety): supported when a paired CI
    excludes 0, else unsupported, with the share of answers or verdicts that changed."""
    out: list[Finding] = []
    for formulation, entries in (summary.get("comparisons") or {}).items():
        for entry in entries or []:
            if isinstance(entry, Mapping) and not entry.get("error"):
                out.append(_accuracy_change(str(formulation), entry))
                out += _shares_change(str(formulation), entry)
    out += _safety_changes(summary)
    return out


def _shares_change(formulation: str, entry: Mapping[str, Any]) -> list[Finding]:
    """A warning naming the benchmarks whose measurable accuracy change is not measurable any more once the change
    in the answer shares' chance is taken out (the change a favoured answer meeting the gold imbalance gives)."""
    parts = []
    for name, c in (entry.get("benchmarks") or {}).items():
        if not isinstance(c, Mapping) or c.get("beyond_chance_delta") is None:
            continue
        if excludes_zero(c.get("delta_ci95")) and not excludes_zero(c.get("beyond_chance_delta_ci95")):
            parts.append(
                f"{name} {points(c.get('delta'), c.get('delta_ci95'))}, beyond the shares' chance"
                f" {points(c.get('beyond_chance_delta'), c.get('beyond_chance_delta_ci95'))}"
            )
    if not parts:
        return []
    where = f"{_pair(entry)} ({FORMULATIONS.get(formulation, formulation)})"
    return [
        Finding(
            "warning",
            "stage",
            f"{where}: the accuracy change is what the change in answer shares gives against the gold shares, not"
            f" evidence of answering the questions better: {'; '.join(parts)}.",
        )
    ]


FORMULATIONS = {"loglik": "log-likelihood", "cloze": "cloze", "generative": "generated answers"}


def _accuracy_change(formulation: str, entry: Mapping[str, Any]) -> Finding:
    benches = {str(k): c for k, c in (entry.get("benchmarks") or {}).items() if isinstance(c, Mapping)}
    moved = [
        f"{name} {points(c.get('delta'), c.get('delta_ci95'), c.get('n'))}"
        for name, c in benches.items()
        if excludes_zero(c.get("delta_ci95"))
    ]
    share = _changed_share(list(benches.values()))
    answers = (
        f"answers changed on {percent(share[0])} of n={share[1]:,} questions"
        if share
        else "answers changed: not measured"
    )
    where = f"{_pair(entry)} ({FORMULATIONS.get(formulation, formulation)})"
    mean = entry.get("mean") or {}
    averaged = number(mean.get("delta")) is not None and len(benches) > 1
    if averaged:
        shown = f"mean of {mean.get('benchmarks')} benchmarks {points(mean.get('delta'), mean.get('delta_ci95'))}"
        if excludes_zero(mean.get("delta_ci95")):
            moved.append(shown)
    if moved:
        return Finding("supported", "stage", f"{where} changed accuracy: {'; '.join(moved)}; {answers}.")
    if not averaged:
        shown = "; ".join(f"{k} {points(c.get('delta'), c.get('delta_ci95'), c.get('n'))}" for k, c in benches.items())
    return Finding(
        "unsupported",
        "stage",
        f"{where}: no measurable accuracy change ({shown or 'no benchmark compared'}; {answers}).",
    )


def _safety_changes(summary: Mapping[str, Any]) -> list[Finding]:
    if "safety_changes" not in summary:
        return _unpaired_safety(summary)
    out: list[Finding] = []
    for entry in summary.get("safety_changes") or []:
        if not isinstance(entry, Mapping) or entry.get("error"):
            continue
        verdicts = number(entry.get("changed"))
        same = number(entry.get("identical_replies"))
        context = f"verdicts changed on {percent(verdicts)} of n={_n(entry.get('n'))}" if verdicts is not None else ""
        if same is not None:
            context += f", replies byte-identical on {percent(same)}"
        for suite, c in (entry.get("suites") or {}).items():
            change = points(c.get("delta"), c.get("delta_ci95"), c.get("n"))
            what = f"{c.get('measure', 'rate')} on {suite}"
            if excludes_zero(c.get("delta_ci95")):
                direction = "lowered" if (number(c.get("delta")) or 0) < 0 else "raised"
                text = f"{_pair(entry)} {direction} {what}: {change} ({context})."
                out.append(Finding("supported", "safety", text))
            else:
                out.append(
                    Finding(
                        "unsupported",
                        "safety",
                        f"{_pair(entry)}: no measurable change in {what} ({change}; {context}).",
                    )
                )
    return out


SAFETY_RATES = {
    "attack": ("attack_success", "attack success"),
    "over-refusal": ("refusal_rate_on_safe", "refusal of safe prompts"),
}


def _unpaired_safety(summary: Mapping[str, Any]) -> list[Finding]:
    """Without per-prompt verdicts (an older summary): the first and last safety results compared by their 95%
    intervals; only intervals that do not overlap count as a change (a conservative test)."""
    safety = summary.get("safety") or {}
    before, after = safety.get("before") or {}, safety.get("after") or {}
    old, new = before.get("results") or {}, after.get("results") or {}
    if not old or not new or old == new:
        return []
    out = []
    pair = f"{before.get('label', 'before')} → {after.get('label', 'after')}"
    for suite, s in (new.get("suites") or {}).items():
        key, measure = SAFETY_RATES.get(str(s.get("kind")), ("", ""))
        was = ((old.get("suites") or {}).get(suite) or {}).get(key) or {}
        now = s.get(key) or {}
        a, b = interval(was.get("ci95")), interval(now.get("ci95"))
        if not key or a is None or b is None:
            continue
        shown = f"{rate_text(was.get('rate'), a, was.get('n'))} → {rate_text(now.get('rate'), b, now.get('n'))}"
        if a[1] < b[0] or b[1] < a[0]:
            out.append(
                Finding("supported", "safety", f"{pair} changed {measure} on {suite}: {shown} (intervals apart).")
            )
        else:
            text = f"{pair}: no measurable change in {measure} on {suite} ({shown}; intervals overlap; not paired)."
            out.append(Finding("unsupported", "safety", text))
    return out


def weight_findings(summary: Mapping[str, Any]) -> list[Finding]:
    out = []
    for c in summary.get("weight_change") or []:
        value = number(c.get("relative_l2")) if isinstance(c, Mapping) else None
        if value is not None and value < STILL_WEIGHTS:
            out.append(
                Finding(
                    "warning",
                    "weights",
                    f"{c.get('before')} → {c.get('after')}: the weights barely moved (relative change {value:.2g},"
                    f" below {STILL_WEIGHTS:g}).",
                )
            )
    return out


# --- generation ---------------------------------------------------------------------------------------------------


def _max_tokens(results: Mapping[str, Any]) -> int | None:
    """The token limit of a Medprompt run's replies (its config's, else the documented default)."""
    settings = (results.get("config") or {}).get("medprompt") or {}
    if not settings:
        return None
    given = number(settings.get("max_tokens"))
    return int(given) if given else (384 if settings.get("cot", True) else 32)


def generation_findings(summary: Mapping[str, Any]) -> list[Finding]:
    """Unparseable replies of generated answers (Medprompt, and the generative formulation of each model), counted
    wrong, and, when recorded, the share cut at the token limit (the usual cause: the answer did not fit)."""
    sources: list[tuple[str, Mapping[str, Any]]] = []
    medprompt = (summary.get("medprompt") or {}).get("results")
    if isinstance(medprompt, Mapping):
        sources.append(("Medprompt", medprompt))
    for label, results in ((summary.get("formulations") or {}).get("generative") or {}).items():
        if isinstance(results, Mapping):
            sources.append((f"{label} (generated answers)", results))
    out = []
    for what, results in sources:
        parts: list[tuple[str, str, str]] = []
        for bench, r in (results.get("benchmarks") or {}).items():
            limit = _max_tokens(results)
            unparseable = number((r or {}).get("unparseable_rate"))
            if not unparseable:
                continue
            truncated = number(r.get("truncated_rate"))
            limit = int(number(r.get("max_tokens")) or 0) or limit
            if truncated is not None:
                cause = f"{percent(truncated)} reached the limit of {limit or '?'} new tokens before an answer"
            elif limit:
                cause = f"replies capped at {limit} new tokens; how many were cut there: not measured"
            else:
                cause = "whether replies were cut at the token limit: not measured"
            parts.append((bench, f"{percent(unparseable)} of n={_n(r.get('n'))} replies unparseable", cause))
        if len(parts) == 1:
            bench, share, cause = parts[0]
            out.append(Finding("warning", "generation", f"{what} on {bench}: {share} (counted wrong; {cause})."))
        elif parts:
            listed = [(bench, f"{share} ({cause})") for bench, share, cause in parts]
            text = _grouped(what, listed, "replies were unparseable (counted wrong)")
            out.append(Finding("warning", "generation", text))
    return out


def findings(summary: Mapping[str, Any]) -> list[Finding]:
    """Every finding of the run, warnings first, then what the numbers support, then what they do not."""
    found = answer_findings(summary) + stage_findings(summary) + weight_findings(summary)
    found += generation_findings(summary)
    order = {"warning": 0, "supported": 1, "unsupported": 2}
    return sorted(found, key=lambda f: order[f.level])


def _n(value: Any) -> str:
    n = number(value)
    return f"{int(n):,}" if n is not None else "?"
