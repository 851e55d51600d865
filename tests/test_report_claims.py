"""Specification of issue 17: the report and the model card say what was measured, and no more.

Reports are rendered from crafted summaries built by the stages' own functions (paired comparisons, answer
distributions, red-teaming summaries, the paired safety verdicts):

* ``demo``: what ``make demo`` measured: every model answers "A" to the 48 questions (gold "A" on 16), safety DPO
  changes none of the 78 verdicts, Medprompt half unparseable at a 48-token limit, an over-refusal suite of the
  recipe's own benign prompts without types or unsafe contrasts, run without a prompt limit;
* ``improved``: the same run where the last stage answers more questions right and refuses more attacks.

Each of the issue's seven defects has a test here named after it.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

import pytest

from aloekit.evaluation import redteam
from aloekit.evaluation.compare import answer_distributions, compare_samples
from aloekit.evaluation.safety_compare import compare_verdicts, impersonation
from aloekit.evaluation.stats import bootstrap_ci, distribution
from aloekit.recipe.plan import training_length
from aloekit.report import charts, findings
from aloekit.report.card import STATIC, render_model_card
from aloekit.report.document import NOT_RUN
from aloekit.report.html import render_html
from aloekit.report.markdown import render_markdown
from aloekit.report.tables import training_row
from aloekit.safety.risk import LIKELIHOOD_RULE, assess

MODELS = ("base", "sft", "merged", "dpo_general", "dpo_safety")
LABELS = ["A", "B", "C"]
N = 48


# --- crafted summaries ----------------------------------------------------------------------------------------------


def mcq_samples(right: int, *, stuck: bool) -> list[dict[str, Any]]:
    """48 three-option questions, gold "A" on every third; ``stuck``: every answer "A" (16 right), else the first
    ``right`` questions right and the rest wrong."""
    rows = []
    for i in range(N):
        gold = i % 3
        pred = 0 if stuck else (gold if i < right else (gold + 1) % 3)
        rows.append({"benchmark": "mcq-eval", "id": f"q{i}", "choices": LABELS, "gold": gold, "pred": pred})
        rows[-1]["correct"] = pred == gold
    return rows


def eval_results(samples: list[dict[str, Any]]) -> dict[str, Any]:
    correct = [float(s["correct"]) for s in samples]
    return {
        "benchmarks": {
            "mcq-eval": {
                "n": len(correct),
                "acc": sum(correct) / len(correct),
                "acc_ci95": list(bootstrap_ci(correct, seed=0)),
                "predicted": distribution([LABELS[s["pred"]] for s in samples], LABELS),
                "gold": distribution([LABELS[s["gold"]] for s in samples], LABELS),
            }
        },
        "config": {"mode": "loglik"},
    }


def safety_records(complied: int, *, benign_refused: int = 0) -> list[dict[str, Any]]:
    """26 attack prompts x 2 styles and 26 benign prompts of the demo's own set (no types, no unsafe contrasts)."""
    rows = [
        {"suite": "demo-harmful", "id": f"h{i}", "style": style, "safe": False, "category": None}
        | {"verdict": "compliance" if i + 26 * j < complied else "refusal", "reply": f"reply {i} {style}"}
        for j, style in enumerate(("plain", "role_play"))
        for i in range(26)
    ]
    rows += [
        {"suite": "demo-benign", "id": f"b{i}", "style": "plain", "safe": True, "category": None}
        | {"verdict": "refusal" if i < benign_refused else "compliance", "reply": f"benign {i}"}
        for i in range(26)
    ]
    return [r | {"prompt": "p", "partial": False} for r in rows]


def safety_results(records: list[dict[str, Any]]) -> dict[str, Any]:
    by_suite: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_suite.setdefault(r["suite"], []).append(r)
    return {
        "suites": {name: redteam._suite_result(name, rows, 0) for name, rows in by_suite.items()},
        "judge": "keyword",
        "styles": ["plain", "role_play"],
        "limit": None,
    }


def crafted(*, improved: bool) -> dict[str, Any]:
    samples = {m: mcq_samples(0, stuck=True) for m in MODELS}
    if improved:
        samples["dpo_safety"] = mcq_samples(40, stuck=False)
    comparisons = [(a, b, "step") for a, b in pairwise(MODELS)] + [(MODELS[0], MODELS[-1], "overall")]
    before = safety_records(40)
    after = safety_records(5 if improved else 40)
    sft_losses = [{"step": s, "loss": 2.6 - 0.03 * s} for s in range(1, 21)]
    dpo_history = [{"step": s, "loss": 0.69 - 0.02 * s, "rewards/accuracies": 1.0, "epoch": s / 12} for s in (1, 8)]
    return {
        "title": "aloekit run: demo",
        "recipe": {"name": "demo"},
        "models": {"base": "smollm2-135m-instruct", "final": "/runs/demo/dpo/train/safety/model"},
        "stages": [{"name": n, "status": "finished", "seconds": 60.0} for n in ("data", "sft", "merge", "dpo")],
        "data": {"prefs_general": {"train": 12, "validation": 3}},
        "training": {
            "sft": {
                "log_history": sft_losses,
                "metrics": {"steps": 20, "train_loss": 2.2107, "eval_loss_before": 2.5, "eval_loss": 2.0}
                | {"train_losses": sft_losses, "epochs": 2.1},
            },
            "dpo_general": {
                "log_history": dpo_history,
                "metrics": {
                    "last": {"step": 8, "loss": 0.385, "rewards/accuracies": 1.0},
                    "eval": {"eval_loss": 0.5, "eval_rewards/accuracies": 1.0, "eval_rewards/margins": 0.3},
                    "train": {"train_loss": 0.5538, "train_runtime": 40.0, "epoch": 0.67},
                    "log_history": dpo_history,
                },
            },
        },
        "benchmarks": {m: eval_results(samples[m]) for m in MODELS},
        "answer_distributions": {"loglik": {m: answer_distributions(eval_results(samples[m])) for m in MODELS}},
        "comparisons": {
            "loglik": [
                {"before": a, "after": b, "kind": k, **compare_samples(samples[a], samples[b], seed=0)}
                for a, b, k in comparisons
            ]
        },
        "medprompt": {
            "model": "dpo_safety",
            "results": {
                "benchmarks": {"mcq-eval": {"n": 8, "acc": 0.0, "acc_ci95": [0.0, 0.32], "unparseable_rate": 0.5}},
                "config": {"mode": "medprompt", "medprompt": {"cot": True, "max_tokens": 48}},
            },
        },
        "safety": {
            "before": {"label": "merged", "results": safety_results(before)},
            "between": [],
            "after": {"label": "dpo_safety", "results": safety_results(after)},
        },
        "safety_changes": [
            {"before": "merged", "after": "dpo_safety", "kind": "step"} | compare_verdicts(before, after)
        ],
        "impersonation": {"merged": impersonation(before), "dpo_safety": impersonation(after)},
    }


@pytest.fixture(scope="module")
def demo() -> dict[str, Any]:
    return crafted(improved=False)


@pytest.fixture(scope="module")
def improved() -> dict[str, Any]:
    return crafted(improved=True)


def box(text: str) -> str:
    """The markdown report's "What this run shows" section."""
    return text.split("## What this run shows", 1)[1].split("\n## ", 1)[0]


# --- 1. degenerate answers and stages that changed nothing ----------------------------------------------------------


def test_defect_1_degenerate_answers_are_warned_about_first(demo: dict[str, Any]) -> None:
    md = render_markdown(demo)
    assert md.index("## What this run shows") < md.index("## Headline numbers")
    shown = box(md)
    for model in MODELS:
        assert f"{model} on mcq-eval: answers A to 100.0% of n=48 questions (gold is A on 33.3%)" in shown
        assert f"{model} on mcq-eval: accuracy 33.3% [" in shown and "includes chance (33.3%)" in shown
    assert "Rules: A model is flagged when one answer takes more than 40%" in shown
    assert "Supported by the numbers" not in shown  # nothing in this run supports a conclusion


def test_stuck_answers_on_many_benchmarks_make_one_warning_per_model_naming_each_benchmark() -> None:
    """A real run (5 models x 8 benchmarks x 3 formulations) gave ~75 one-line warnings, pushing what the run
    supports three screens down; one sentence per model and formulation keeps every number and stays readable."""
    stuck = {"n": 100, "predicted": {"A": 0.1, "B": 0.1, "C": 0.7, "D": 0.1}, "gold": dict.fromkeys("ABCD", 0.25)}
    spread = {"n": 100, "predicted": dict.fromkeys("ABCD", 0.25), "gold": dict.fromkeys("ABCD", 0.25)}
    summary = {
        "answer_distributions": {
            "loglik": {"final": {"x": stuck, "y": stuck, "z": spread}},
            "generative": {"final": {"x": stuck}},
        }
    }
    texts = [f.text for f in findings.answer_findings(summary)]
    assert texts == [
        "final, on 2 benchmarks, answers one option too often, so accuracy there measures how often that option is"
        " right, not medical knowledge: x: answers C to 70.0% of n=100 questions (gold is C on 25.0%); y: answers C"
        " to 70.0% of n=100 questions (gold is C on 25.0%).",
        "final (generated answers) on x: answers C to 70.0% of n=100 questions (gold is C on 25.0%): its accuracy"
        " measures how often C is right, not medical knowledge.",
    ]


def test_defect_1_a_stage_that_changed_nothing_says_no_measurable_effect(demo: dict[str, Any]) -> None:
    shown = box(render_markdown(demo))
    for a, b in pairwise(MODELS):
        assert f"{a} → {b} (log-likelihood): no measurable accuracy change (mcq-eval +0.0 points [+0.0, +0.0]," in shown
    assert "answers changed on 0.0% of n=48 questions" in shown
    assert (
        "merged → dpo_safety: no measurable change in attack success on demo-harmful (+0.0 points [+0.0, +0.0],"
        " n=52; verdicts changed on 0.0% of n=78, replies byte-identical on 100.0%)" in shown
    )


def test_a_real_improvement_is_reported_with_its_paired_ci(improved: dict[str, Any]) -> None:
    found = findings.findings(improved)
    supported = [f.text for f in found if f.level == "supported"]
    assert any(
        t.startswith("dpo_general → dpo_safety (log-likelihood) changed accuracy: mcq-eval +50.0 points [+")
        for t in supported
    )
    assert any(
        t.startswith("merged → dpo_safety lowered attack success on demo-harmful: -67.3 points [") for t in supported
    )
    assert "dpo_safety answers mcq-eval above chance: 83.3% [" in " ".join(supported)
    # The stages before still changed nothing, and the box says so next to the improvement.
    assert any(f.level == "unsupported" and f.text.startswith("base → sft") for f in found)


def test_the_box_is_the_first_thing_in_the_html(demo: dict[str, Any]) -> None:
    page = render_html(demo)
    first = re.findall(r'<section id="([^"]+)">', page)[0]
    assert first == "findings"
    assert '<div class="warning"><h3>Read these results with care</h3>' in page


# --- 2. the risk assessment ---------------------------------------------------------------------------------------


def risk_section(page_md: str) -> str:
    return page_md.split("## Risk assessment", 1)[1].split("\n## ", 1)[0]


def test_defect_2_dpo_stage_2_that_moved_nothing_is_not_listed_as_effective(demo: dict[str, Any]) -> None:
    risk = risk_section(render_markdown(demo))
    assert "DPO stage 2 on red-teaming pairs (refusals with safe alternatives): applied, no measurable effect" in risk
    assert "attack success, merged → dpo_safety, demo-harmful suite: +0.0 points [+0.0, +0.0], n=52" in risk
    assert ": effective" not in risk


def test_defect_2_dpo_stage_2_that_lowered_attack_success_is_effective(improved: dict[str, Any]) -> None:
    risk = risk_section(render_markdown(improved))
    assert "DPO stage 2 on red-teaming pairs (refusals with safe alternatives): effective" in risk


def test_defect_2_medical_decision_making_uses_the_measured_accuracy(demo: dict[str, Any]) -> None:
    risk = risk_section(render_markdown(demo))
    decisions = risk.split("### Medical decision-making", 1)[1].split("### ", 1)[0]
    assert "**Evidence:** not measured" not in decisions
    assert "wrong answers (mcq-eval): 66.7% [" in decisions and "n=48" in decisions


def test_defect_2_impersonation_follows_its_direct_evidence(demo: dict[str, Any]) -> None:
    risk = risk_section(render_markdown(demo))
    persona = risk.split("### Impersonating a health professional", 1)[1].split("### ", 1)[0]
    assert (
        "replies claiming to be a health professional (dpo_safety's safety replies): 0.0% [0.0%, 4.7%], n=78" in persona
    )
    assert "**Likelihood:** unlikely" in persona
    assert f"Likelihood rule: {LIKELIHOOD_RULE}." in risk


# --- 3. the model card --------------------------------------------------------------------------------------------


def test_defect_3_the_card_claims_no_adaptation_and_no_unmeasured_bias(demo: dict[str, Any]) -> None:
    card = render_model_card(demo)
    assert "healthcare-adapted" not in card and "biases are below" not in card
    assert "Bias (BBQ): not measured." in card and "Truthfulness (TruthfulQA): not measured." in card


def test_defect_3_the_card_gives_accuracy_with_its_ci_and_the_answers(demo: dict[str, Any]) -> None:
    card = render_model_card(demo)
    assert "name: accuracy (dpo_safety; 95% CI" in card and "predicted A 100%" in card
    evaluation = card.split("## Evaluation", 1)[1].split("\n## ", 1)[0]
    assert (
        "| mcq-eval | dpo_safety | A 100% · B 0% · C 0% | A 33% · B 33% · C 33% | A on 100% of answers |  | 48 |"
        in evaluation
    )
    assert "Warning: dpo_safety on mcq-eval: answers A to 100.0% of n=48 questions" in evaluation


NUMBER = re.compile(r"[+-]?\d[\d,]*(?:\.\d+)?(?:e-?\d+)?")


def summary_numbers(value: Any) -> set[str]:
    """Every number of a summary as the report may print it: share, percentage, points, count, loss, score."""
    out: set[str] = set()
    if isinstance(value, dict):
        for v in value.values():
            out |= summary_numbers(v)
    elif isinstance(value, list | tuple):
        for v in value:
            out |= summary_numbers(v)
    elif isinstance(value, int | float) and not isinstance(value, bool) and value == value:  # NaN: nothing
        v = float(value)
        out |= {f"{100 * v:.1f}", f"{100 * v:+.1f}", f"{100 * v:.0f}", f"{v:.4f}", f"{v:+.3f}", f"{v:.2g}"}
        out |= {f"{1 - v:.1%}"[:-1], f"{100 * (1 - v):.1f}"}  # error rates are 1 - accuracy
        if v == int(v):
            out |= {f"{int(v):,}", str(int(v))}
    return out


def prose_sentences(card: str) -> list[str]:
    """The card's sentences: outside the front matter, code, tables and headings, list items split into
    sentences."""
    body = card.split("---\n", 2)[2]
    body = re.sub(r"^(`{3,}).*?^\1$", "", body, flags=re.S | re.M)
    lines = [line.strip().lstrip("->").strip() for line in body.splitlines()]
    lines = [line for line in lines if (line and not line.startswith(("|", "#", "**"))) or line.startswith("**Not")]
    return [s for line in lines for s in re.split(r"(?<=\.)\s+(?=[A-Z])", line.replace("**", "")) if s]


def fixed_sentences() -> set[str]:
    """The card's and the risk assessment's fixed text: procedure, disclaimers, risk descriptions and severity
    reasons, recommendations: never a result."""
    texts = [re.sub(r"\*\*|^> ", "", t) for t in STATIC]
    for risk in assess():
        texts += [risk.name, risk.description, f"**Severity:** {risk.severity}: {risk.severity_reason}"]
        texts += [f"{m.text}: recommended" for m in risk.mitigations]
    return {s.strip() for t in texts for s in re.split(r"(?<=\.)\s+(?=[A-Z])", t.replace("**", ""))}


@pytest.mark.parametrize("which", ["demo", "improved"])
def test_every_sentence_of_the_card_has_a_number_from_the_summary_or_says_not_measured(
    which: str, demo: dict[str, Any], improved: dict[str, Any]
) -> None:
    summary = demo if which == "demo" else improved
    numbers = summary_numbers(summary)
    allowed = fixed_sentences()
    unbacked = []
    for sentence in prose_sentences(render_model_card(summary)):
        plain = sentence.replace("**", "").strip()
        if plain in allowed or "not measured" in plain or NOT_RUN in plain:
            continue
        if plain.startswith(("Likelihood:", "Mitigations:", "Evidence:", "Related measurements")):
            continue  # headings of the lines below them, which carry the numbers
        if plain.startswith(f"Replies judged by the {summary['safety']['after']['results']['judge']} judge"):
            continue  # how safety was measured, from the summary's own settings
        if plain == "Rates with 95% Wilson intervals and their sample size.":
            continue
        found = [n.lstrip("+") for n in NUMBER.findall(plain.replace("95% CI", "").replace("95%", ""))]
        if not any(n in numbers or n.replace(",", "") in numbers or f"+{n}" in numbers for n in found):
            unbacked.append(plain)
    assert unbacked == []


# --- 4. labels ------------------------------------------------------------------------------------------------------


def test_defect_4_last_and_mean_training_loss_are_told_apart(demo: dict[str, Any]) -> None:
    sft = training_row("sft", demo["training"]["sft"])
    assert sft[4:6] == ("2.0000", "2.2107")  # last logged step, then the run's mean
    dpo = training_row("dpo_general", demo["training"]["dpo_general"], 3)
    assert dpo[4:6] == ("0.5300", "0.5538")


def test_defect_4_validation_loss_is_a_before_after_pair_for_every_stage(demo: dict[str, Any]) -> None:
    assert training_row("sft", demo["training"]["sft"])[6] == "2.5000 → 2.0000"
    assert training_row("dpo_general", demo["training"]["dpo_general"])[6] == "not measured → 0.5000"


def test_defect_4_reward_accuracy_has_its_n_and_ci(demo: dict[str, Any]) -> None:
    row = training_row("dpo_general", demo["training"]["dpo_general"], 3)
    assert row[7] == "100.0% [43.9, 100.0], n=3"
    assert training_row("dpo_general", demo["training"]["dpo_general"])[7] == "100.0%, n not recorded"
    assert row[2] == "0.67"  # epochs covered, from the trainer


def test_defect_4_the_dry_run_says_the_epochs_max_steps_covers() -> None:
    assert training_length(1.0, 8, 4, 48) == "8 steps of 4 rows = 0.67 epochs of 48 rows"
    assert "1.0 epochs" not in training_length(1.0, 8, 4, None) and "epochs setting is ignored" in training_length(
        1.0, 8, 4, None
    )
    assert training_length(2.0, None, 4, 48) == "2 epochs"


# --- 5. text bugs ---------------------------------------------------------------------------------------------------


def test_defect_5_no_none_or_empty_rows_and_the_suite_has_its_name(demo: dict[str, Any]) -> None:
    md = render_markdown(demo)
    safety = md.split("## Safety", 1)[1].split("\n## ", 1)[0]
    assert "every prompt of each suite" in safety and "at most None" not in md
    assert "refused safe prompts: None" not in md and "n=0" not in safety and "n/a" not in safety
    assert "**Over-refusal: demo-benign**" in safety and "XSTest" not in safety


# --- 6. charts ------------------------------------------------------------------------------------------------------


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The matplotlib figures the charts draw, kept open instead of encoded."""
    kept: list[Any] = []
    monkeypatch.setattr(charts, "_png", lambda fig: kept.append(fig) or b"")
    return kept


def test_defect_6_bars_show_zero_values_and_the_legend_sits_outside(demo: dict[str, Any], figures: list[Any]) -> None:
    charts.over_refusal({"merged": demo["safety"]["before"]["results"]})
    ax = figures[-1].axes[0]
    figures[-1].canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # right of the plotting area, over no bar
    assert any(line.get_marker() == "D" for line in ax.get_lines())  # the 0% bar has a marker
    assert "0%" in [t.get_text() for t in ax.texts]
    assert ax.get_title() == "Over-refusal: demo-benign"


def test_defect_6_the_accuracy_chart_has_a_chance_line(demo: dict[str, Any], figures: list[Any]) -> None:
    charts.benchmarks_by_stage(demo["benchmarks"], {"mcq-eval": 1 / 3})
    ax = figures[-1].axes[0]
    assert "chance" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_defect_6_the_medprompt_chart_shows_one_series_once_under_a_short_title(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import matplotlib.pyplot as plt

    from aloekit.prompting import ablation

    kept: list[Any] = []
    monkeypatch.setattr(plt, "close", kept.append)
    step = {"step": "zero-shot", "n": 8, "acc": 0.0, "acc_ci95": [0.0, 0.32]}
    step["benchmarks"] = {"mcq-eval": {"acc": 0.0, "acc_ci95": [0.0, 0.32]}}
    result = {"steps": [step], "benchmarks": ["mcq-eval"], "model": {"reference": "/runs/demo/dpo/train/safety/model"}}
    ablation.plot(result, tmp_path / "ladder.png")
    ax = kept[-1].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mcq-eval"]
    assert ax.get_title() == "Medprompt ablation: safety/model, n=8"


# --- 7. generation ------------------------------------------------------------------------------------------------


def test_defect_7_unparseable_medprompt_replies_are_explained(demo: dict[str, Any]) -> None:
    shown = box(render_markdown(demo))
    assert (
        "Medprompt on mcq-eval: 50.0% of n=8 replies unparseable (counted wrong; replies capped at 48 new tokens;"
        " how many were cut there: not measured)." in shown
    )
    demo_cut = {**demo, "medprompt": {**demo["medprompt"]}}
    demo_cut["medprompt"]["results"] = {
        **demo["medprompt"]["results"],
        "benchmarks": {"mcq-eval": {"n": 8, "unparseable_rate": 0.5, "truncated_rate": 0.5}},
    }
    assert "50.0% reached the limit of 48 new tokens before an answer" in box(render_markdown(demo_cut))


def test_generated_answers_of_each_model_show_unparseable_and_cut_shares_in_a_table_and_a_warning(
    demo: dict[str, Any],
) -> None:
    result = {"n": 200, "acc": 0.3, "acc_ci95": [0.24, 0.37], "unparseable_rate": 0.12, "truncated_rate": 0.1}
    summary = {
        **demo,
        "formulations": {
            "generative": {
                "base": {"benchmarks": {"pubmedqa": {**result, "max_tokens": 6}}},
                "dpo_safety": {"benchmarks": {"pubmedqa": {**result, "unparseable_rate": 0.0}}},
            }
        },
    }
    shown = render_markdown(summary)
    assert "base (generated answers) on pubmedqa: 12.0% of n=200 replies unparseable (counted wrong;" in box(shown)
    assert "10.0% reached the limit of 6 new tokens before an answer" in box(shown)
    assert "dpo_safety (generated answers)" not in box(shown)  # nothing unparseable: no warning
    assert "Generated answers: unparseable replies (counted wrong)" in shown
    assert "12.0% of 200; 10.0% cut at 6 new tokens" in shown
    assert "Accuracy, generative: the answer read from the reply" in shown
