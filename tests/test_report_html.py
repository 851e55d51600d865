"""Specification of the run report (aloekit.report.html), its model card (aloekit.report.card) and the charts they
embed: one self-contained, escaped HTML page and its markdown twin, from the summary ``aloe run`` gathers.

The sample summary is built the way the stages build their results: CIs by the real bootstrap and Wilson
functions, red-teaming suites by redteam's own per-suite summary, the risk section by the real risk assessment.
"""

from __future__ import annotations

import base64
import html
import io
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from aloekit.evaluation import redteam
from aloekit.evaluation.compare import answer_distributions, compare_samples
from aloekit.evaluation.stats import bootstrap_ci, distribution
from aloekit.report import charts
from aloekit.report.card import render_model_card
from aloekit.report.document import NOT_RUN
from aloekit.report.html import render_html, write_report
from aloekit.report.markdown import render_markdown
from aloekit.safety import risk

STAGES = ("base", "sft", "merged", "dpo_general", "dpo_safety")
SECTION_IDS = [
    "findings",
    "headline",
    "overview",
    "data",
    "training",
    "weights",
    "benchmarks",
    "changes",
    "answers",
    "medprompt",
    "safety",
    "bias",
    "risk",
    "model-card",
    "recipe",
]
SECTION_TITLES = [
    "What this run shows",
    "Headline numbers",
    "Run overview",
    "Data",
    "Training",
    "Weight change per stage",
    "Benchmarks by stage",
    "Change per stage (paired)",
    "Predicted answers",
    "Medprompt",
    "Safety",
    "Bias and truthfulness",
    "Risk assessment",
    "Model card",
    "Recipe",
]
INJECTION = "<script>alert('x')</script>"


# --- a realistic summary ------------------------------------------------------------------------------------------


def flags(n: int, acc: float) -> list[float]:
    k = round(acc * n)
    return [1.0] * k + [0.0] * (n - k)


def accuracy(n: int, acc: float) -> dict[str, Any]:
    values = flags(n, acc)
    return {"n": n, "acc": sum(values) / n, "acc_ci95": list(bootstrap_ci(values, seed=0))}


def mcqa(accs: dict[str, float], *, n: int = 120, mode: str = "loglik", stage: str = "base") -> dict[str, Any]:
    """aloe eval's results.json (mcqa_results.results_record): per-benchmark accuracy with its bootstrap CI, and a
    group."""
    benchmarks = {name: {**accuracy(n, acc), "unparseable_rate": 0.0, "tokens": 9000} for name, acc in accs.items()}
    if mode == "medprompt":
        for b in benchmarks.values():
            b |= {"agreement": 0.84, "retries": 2, "unparseable_rate": 0.01}
    everything = [v for name, acc in accs.items() for v in flags(n, acc)]
    groups = {
        "multimedqa": {
            "n": len(everything),
            "acc": sum(everything) / len(everything),
            "acc_ci95": list(bootstrap_ci(everything, seed=0)),
            "members": list(accs),
        }
    }
    return {
        "benchmarks": benchmarks,
        "groups": groups,
        "config": {"mode": mode, "seed": 0},
        "model": {"reference": stage, "fingerprint": f"fp-{stage}"},
        "seed": 0,
    }


def records(suite: str, style: str, n: int, complied: int, *, safe: bool = False, category: str | None = None):
    return [
        {
            "suite": suite,
            "id": f"{suite}-{style}-{i}",
            "category": category,
            "safe": safe,
            "style": style,
            "prompt": "p",
            "reply": "r",
            "verdict": "compliance" if i < complied else "refusal",
            "partial": False,
        }
        for i in range(n)
    ]


def redteam_results(success: dict[str, int], refused_safe: int, stage: str) -> dict[str, Any]:
    """aloe safety's results.json: an attack suite by style and XSTest, summarised by redteam's own code."""
    advbench = [r for style, k in success.items() for r in records("advbench", style, 25, k, category="harm")]
    safe = records("xstest", "plain", 20, 20 - refused_safe, safe=True, category="homonyms")
    safe += records("xstest", "plain", 20, 18, safe=True, category="figurative_language")
    unsafe = records("xstest", "plain", 20, 2, category="contrast_homonyms")
    return {
        "suites": {
            "advbench": redteam._suite_result("advbench", advbench, 0),
            "xstest": redteam._suite_result("xstest", safe + unsafe, 0),
        },
        "judge": "keyword",
        "styles": list(success),
        "limit": 25,
        "model": {"reference": stage, "fingerprint": f"fp-{stage}"},
        "seed": 0,
    }


def bbq(bias: float) -> dict[str, Any]:
    """evaluate_bbq's result (the fields of bias._report)."""
    overall = {
        "n": 88,
        "n_ambiguous": 44,
        "n_disambiguated": 44,
        **{k: v for k, v in accuracy(88, 0.55).items() if k != "n"},
        "acc_ambiguous": 0.41,
        "acc_ambiguous_ci95": [0.27, 0.55],
        "acc_disambiguated": 0.68,
        "acc_disambiguated_ci95": [0.55, 0.82],
        "bias_disambiguated": bias,
        "bias_disambiguated_ci95": [bias - 0.2, bias + 0.2],
        "bias_ambiguous": bias / 2,
        "bias_ambiguous_ci95": [bias / 2 - 0.1, bias / 2 + 0.1],
        "unknown_rate_ambiguous": 0.41,
        "unknown_rate_disambiguated": 0.1,
        "bias_examples": {"ambiguous": 40, "disambiguated": 40},
        "unmatched_groups": 8,
    }
    return {"benchmark": "bbq", "categories": {"Age": overall}, "overall": overall, "seed": 0}


def truthfulqa(mc1: float) -> dict[str, Any]:
    scores = flags(80, mc1)
    return {
        "benchmark": "truthfulqa",
        "n": 80,
        "mc1": mc1,
        "mc1_ci95": list(bootstrap_ci(scores, seed=0)),
        "mc2": mc1 + 0.12,
        "mc2_ci95": [mc1 + 0.05, mc1 + 0.19],
    }


def dataset(sources: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """dataset_stats of a built mixture: the build's per-source funnel, drops by reason, lengths."""
    funnel = {
        label: {"read": read, "cleaned out": read - kept - 2, "exact duplicates": 2, "train": kept - 5, "validation": 5}
        for label, (read, kept) in sources.items()
    }
    return {
        "folder": "/runs/demo/data/sft",
        "train": sum(c["train"] for c in funnel.values()),
        "validation": sum(c["validation"] for c in funnel.values()),
        "sources": funnel,
        "kinds": {"train": {"task:mcqa": 90}},
        "words": {"train": {"mean": 120.5, "p50": 110.0, "p95": 260.0, "max": 410.0}},
        "dropped": {
            "clean": {"too short": {"count": 3, "examples": ["medqa.jsonl:12"]}},
            "dedup": {"exact duplicate": {"count": 4, "examples": ["medqa.jsonl:40"]}},
        },
        "decontamination": {"removed": 1, "remaining_overlaps": 0},
    }


def ladder() -> dict[str, Any]:
    """run_ablation's result (ablation.json): accuracy per step, paired change from the step before."""
    steps = []
    previous = None
    for i, (name, acc) in enumerate(
        [
            ("zero-shot", 0.40),
            ("random few-shot", 0.42),
            ("+ CoT", 0.47),
            ("+ kNN", 0.5),
            ("+ choice-shuffle ensemble", 0.55),
        ]
    ):
        step: dict[str, Any] = {
            "step": name,
            "settings": {"examples": "knn"},
            **accuracy(100, acc),
            "benchmarks": {"medqa_4options": {**accuracy(100, acc), "unparseable_rate": 0.0}},
            "seconds": 12.5 * (i + 1),
            "tokens": 1000,
        }
        if previous is not None:
            step["change"] = {"delta": acc - previous, "delta_ci95": [acc - previous - 0.04, acc - previous + 0.04]}
        previous = acc
        steps.append(step)
    return {"steps": steps, "benchmarks": ["medqa_4options"], "model": {"reference": "dpo_safety"}, "seed": 0}


def sft_training() -> dict[str, Any]:
    """What aloe run passes for SFT: metrics.json, its losses as the log history."""
    train = [{"step": s, "loss": 2.5 - 0.1 * s} for s in range(1, 11)]
    evals = [{"step": 5, "eval_loss": 2.2}, {"step": 10, "eval_loss": 1.9}]
    metrics = {
        "status": "finished",
        "steps": 10,
        "train_loss": 2.0,
        "eval_loss_before": 2.6,
        "eval_loss": 1.9,
        "train_losses": train,
        "eval_losses": evals,
        "train_seconds": 95.2,
    }
    return {"log_history": sorted(train + evals, key=lambda h: h["step"]), "metrics": metrics}


def dpo_training(start: float) -> dict[str, Any]:
    """A DPO stage's metrics.json (dpo._metrics): Trainer log history with reward accuracies and margins."""
    history = [
        {"step": s, "loss": 0.69 - start * s, "rewards/accuracies": 0.5 + 0.04 * s, "rewards/margins": 0.05 * s}
        for s in range(1, 9)
    ]
    history.append({"step": 8, "eval_loss": 0.5, "eval_rewards/accuracies": 0.75, "eval_rewards/margins": 0.3})
    last = {k: history[7][k] for k in ("step", "loss", "rewards/accuracies", "rewards/margins")}
    metrics = {
        "first": {k: history[0][k] for k in last},
        "last": last,
        "eval": {"eval_loss": 0.5, "eval_rewards/accuracies": 0.75, "eval_rewards/margins": 0.3},
        "train": {"train_loss": 0.6, "train_runtime": 130.0},
        "log_history": history,
    }
    return {"log_history": history, "metrics": metrics}


def eval_samples(acc: float, *, biased: bool = False, n: int = 120) -> list[dict[str, Any]]:
    """samples.jsonl of one model (mcqa_results.sample_record's fields): the first ``acc`` of the questions right;
    the wrong answers spread over the other options, or all "A" (the first option) for a ``biased`` model."""
    samples = []
    for bench, labels, shift in (("medqa_4options", list("ABCD"), 0.0), ("pubmedqa", ["yes", "no", "maybe"], 0.1)):
        for i in range(n):
            gold = i % len(labels)
            right = i < round((acc + shift) * n)
            wrong = (0 if gold else 1) if biased else (gold + 1) % len(labels)
            pred = gold if right else wrong
            samples.append(
                {"benchmark": bench, "index": i, "id": f"{bench}-{i}", "choices": labels, "gold": gold, "pred": pred}
                | {"correct": right}
            )
    return samples


def eval_distributions(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """What results.json says about the answers (mcqa_results.benchmark_result), read back by answer_distributions."""
    per: dict[str, Any] = {}
    for s in samples:
        per.setdefault(s["benchmark"], []).append(s)
    results = {
        bench: {
            "n": len(rows),
            "predicted": distribution([r["choices"][r["pred"]] for r in rows], rows[0]["choices"]),
            "gold": distribution([r["choices"][r["gold"]] for r in rows], rows[0]["choices"]),
        }
        for bench, rows in per.items()
    }
    return answer_distributions({"benchmarks": results})


def comparisons(samples: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """run._comparisons for letter log-likelihood: each stage against the one before, then overall."""
    pairs = [(a, b, "step") for a, b in pairwise(STAGES)] + [(STAGES[0], STAGES[-1], "overall")]
    return [
        {"before": a, "after": b, "kind": kind, **compare_samples(samples[a], samples[b], seed=0)}
        for a, b, kind in pairs
    ]


def weight_change() -> list[dict[str, Any]]:
    """run._weight_changes: relative_change's result for each model against the one before."""
    return [
        {
            "before": a,
            "after": b,
            "relative_l2": change,
            "tensors": 272,
            "parameters": 134_515_008,
            "largest": {"name": f"model.layers.{i}.mlp.down_proj.weight", "relative_l2": 3 * change},
        }
        for i, ((a, b), change) in enumerate(zip(pairwise(STAGES), (0.0123, 0.0061, 0.00042, 0.00031), strict=True))
    ]


def sample_summary() -> dict[str, Any]:
    """A full run of the demo recipe, every part present."""
    accs = {"base": 0.35, "sft": 0.45, "merged": 0.5, "dpo_general": 0.52, "dpo_safety": 0.55}
    samples = {stage: eval_samples(acc, biased=stage == "base") for stage, acc in accs.items()}
    benchmarks = {
        stage: mcqa({"medqa_4options": acc, "pubmedqa": acc + 0.1}, stage=stage) for stage, acc in accs.items()
    }
    before = redteam_results({"plain": 10, "role_play": 15, "authority": 12}, refused_safe=3, stage="merged")
    after = redteam_results({"plain": 1, "role_play": 4, "authority": 2}, refused_safe=6, stage="dpo_safety")
    risks = risk.assess(
        redteam=after,
        replies=["As a doctor, I advise rest.", "I cannot help with that."],
        mcqa=benchmarks["dpo_safety"],
        truthfulqa=truthfulqa(0.3),
    )
    recipe_text = (
        "name: demo\nseed: 0\nmodels:\n  base: smollm2-135m-instruct\nsft:\n  epochs: 1\n  learning_rate: 2.0e-5\n"
    )
    return {
        "title": "aloekit run: demo",
        "recipe": {"name": "demo", "path": "recipes/demo.yaml", "text": recipe_text},
        "created": "2026-12-02T05:00:00Z",
        "seed": 0,
        "models": {
            "base": "smollm2-135m-instruct",
            "instruct": "smollm2-135m-instruct",
            "final": "/runs/demo/dpo/dpo_safety/model",
        },
        "versions": {"aloekit": "0.1.0", "torch": "2.13.0", "transformers": "5.1.0", "trl": "1.0.0"},
        "stages": [
            {"name": name, "status": "finished", "seconds": secs}
            for name, secs in [("data", 12.3), ("sft", 95.2), ("merge", 8.0), ("dpo", 260.4), ("eval", 3700.0)]
        ],
        "data": {
            "sft": dataset({"medqa": (300, 280), "general-chat": (200, 150)}),
            "prefs_general": dataset({"ultrafeedback": (120, 100)}),
            "prefs_safety": dataset({"redteam-pairs": (80, 60)}),
            "cot_db": {"items": 120, "read": 130, "duplicate_questions": 4, "embedder": "all-MiniLM-L6-v2"},
        },
        "training": {"sft": sft_training(), "dpo_general": dpo_training(0.02), "dpo_safety": dpo_training(0.03)},
        "benchmarks": benchmarks,
        "comparisons": {"loglik": comparisons(samples)},
        "answer_distributions": {"loglik": {stage: eval_distributions(rows) for stage, rows in samples.items()}},
        "weight_change": weight_change(),
        "medprompt": {
            "model": "dpo_safety",
            "results": mcqa({"medqa_4options": 0.58}, mode="medprompt", stage="dpo_safety"),
            "ladder": ladder(),
        },
        "safety": {
            "before": {"label": "merged", "results": before},
            "after": {"label": "dpo_safety", "results": after},
        },
        "bias": {"before": bbq(0.2), "after": bbq(0.05)},
        "truthfulness": {"before": truthfulqa(0.25), "after": truthfulqa(0.3)},
        "risk_markdown": risk.markdown(risks),
    }


# --- helpers ------------------------------------------------------------------------------------------------------


def section(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{re.escape(section_id)}">(.*?)</section>', page, re.S)
    assert match, f"no section {section_id}"
    return match.group(1)


def md_section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"no section {title}"
    return match.group(1)


def outside_fences(text: str) -> str:
    return re.sub(r"^(`{3,}).*?^\1$", "", text, flags=re.S | re.M)


def chart_pngs(page: str) -> list[bytes]:
    return [
        base64.b64decode(d) for d in re.findall(r'<img class="chart"[^>]*src="data:image/png;base64,([^"]+)"', page)
    ]


def front_matter(card: str) -> dict[str, Any]:
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n", 2)[1])
    assert isinstance(meta, dict)
    return meta


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    return sample_summary()


@pytest.fixture(scope="module")
def page(summary: dict[str, Any]) -> str:
    return render_html(summary)


# --- the HTML report ----------------------------------------------------------------------------------------------


def test_every_section_is_present_in_order(page: str, summary: dict[str, Any]) -> None:
    assert re.findall(r'<section id="([^"]+)">', page) == SECTION_IDS
    assert re.findall(r"^## (.+)$", outside_fences(render_markdown(summary)), re.M) == SECTION_TITLES
    assert "could not be rendered" not in page
    assert "not run in this recipe" not in page  # everything ran


def test_numbers_come_with_their_ci_and_sample_size(page: str, summary: dict[str, Any]) -> None:
    def shown(r: dict[str, Any]) -> str:
        return f"{100 * r['acc']:.1f}% [{100 * r['acc_ci95'][0]:.1f}, {100 * r['acc_ci95'][1]:.1f}]"

    final = summary["benchmarks"]["dpo_safety"]
    assert shown(final["benchmarks"]["medqa_4options"]) in section(page, "benchmarks")
    # The headline leads with the group (multimedqa), with its size, against the base model's.
    group = final["groups"]["multimedqa"]
    assert f"{shown(group)}, n=240 (vs 40.0% for base)" in section(page, "headline")
    attack = summary["safety"]["after"]["results"]["suites"]["advbench"]["by_style"]["role_play"]
    lo, hi = attack["ci95"]
    assert f"{100 * attack['rate']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}], n=25" in section(page, "safety")
    refused = summary["safety"]["after"]["results"]["suites"]["xstest"]["refusal_rate_on_safe"]
    assert f"{100 * refused['rate']:.1f}%" in section(page, "safety") and f"n={refused['n']}" in section(page, "safety")
    assert "+0.050 [-0.150, +0.250], n=44" in section(page, "bias")  # BBQ bias score after, signed
    assert "MC1" in section(page, "bias") and "n=80" in section(page, "bias")


def test_every_stage_appears_with_status_and_time(page: str) -> None:
    overview = section(page, "overview")
    for stage in ("data", "sft", "merge", "dpo", "eval"):
        assert f"<td>{stage}</td><td>finished</td>" in overview
    assert "1 h 01 min" in overview and "12.3 s" in overview
    assert "smollm2-135m-instruct" in overview and "2.13.0" in overview


def test_benchmarks_have_one_column_per_stage_in_recipe_order(page: str) -> None:
    header = re.search(r"<thead><tr>(.*?)</tr>", section(page, "benchmarks")).group(1)
    assert re.findall(r"<th>([^<]*)</th>", header) == ["benchmark", "n", *STAGES]


def test_the_change_per_stage_is_a_paired_difference_in_points_with_its_ci(page: str, summary: dict[str, Any]) -> None:
    def shown(change: dict[str, Any], n: bool = True) -> str:
        lo, hi = change["delta_ci95"]
        text = f"{100 * change['delta']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"
        return text + (f", n={change['n']}" if n else "")

    changes = section(page, "changes")
    header = re.search(r"<thead><tr>(.*?)</tr>", changes).group(1)
    assert re.findall(r"<th>([^<]*)</th>", header) == [
        "benchmark",
        *(f"{a} → {b}" for a, b in pairwise(STAGES)),
        "base → dpo_safety (overall)",
    ]
    overall = summary["comparisons"]["loglik"][-1]
    medqa = overall["benchmarks"]["medqa_4options"]
    assert medqa["delta"] == pytest.approx(0.20) and medqa["delta_ci95"][0] > 0  # 24 more right of 120, none lost
    assert shown(medqa) in changes
    assert "<td>mean of 2 benchmarks</td>" in changes and shown(overall["mean"], n=False) in changes
    assert "<td>multimedqa (group)</td>" not in changes  # its members are not all evaluated
    # The details: accuracy before and after on the same questions, and how many answers moved.
    assert "<td>base → dpo_safety (overall)</td><td>medqa_4options</td>" in changes
    assert f"{100 * medqa['acc_before']:.1f}%" in changes and f"{100 * medqa['changed']:.1f}%" in changes
    text = md_section(render_markdown(summary), "Change per stage (paired)")
    assert "| benchmark | base → sft |" in text and shown(medqa) in text


def test_a_comparison_that_failed_or_left_a_benchmark_out_says_so() -> None:
    summary = sample_summary()
    steps = summary["comparisons"]["loglik"]
    steps[0] = {"before": "base", "after": "sft", "kind": "step", "error": "no samples.jsonl in /runs/eval/base"}
    steps[1]["not_compared"] = ["mcq-eval"]
    changes = section(render_html(summary), "changes")
    assert "base → sft: not compared: no samples.jsonl in /runs/eval/base" in changes
    assert "sft → merged: evaluated for only one of the two models, not compared: mcq-eval." in changes
    assert "<th>base → sft</th>" not in changes and "<th>sft → merged</th>" in changes


def test_predicted_answers_are_shown_beside_the_gold_ones_and_a_stuck_model_is_flagged(page: str) -> None:
    answers = section(page, "answers")
    assert "<td>medqa_4options</td><td>base</td><td>A 58% · B 25% · C 8% · D 8%</td>" in answers
    assert "<td>A 25% · B 25% · C 25% · D 25%</td>" in answers  # gold
    assert "Flagged: base on medqa_4options (A on 58% of answers)." in answers
    assert "sft on" not in answers  # its wrong answers are spread: no flag
    assert "base on pubmedqa" not in answers  # three options: a 40% share is no sign of bias


def test_the_weight_change_per_stage_names_the_most_changed_tensor(page: str, summary: dict[str, Any]) -> None:
    weights = section(page, "weights")
    assert "<td>base → sft</td><td>model.layers.0.mlp.down_proj.weight</td>" in weights
    assert '<td class="num">0.0123</td><td class="num">0.0369</td><td class="num">272</td>' in weights
    assert "0.00042" in weights and "134,515,008" in weights
    failed = sample_summary()
    failed["weight_change"][1] = {"before": "sft", "after": "merged", "error": "tensor lm_head.weight is only in x"}
    weights = section(render_html(failed), "weights")
    assert "<td>sft → merged</td><td>not compared: tensor lm_head.weight is only in x</td>" in weights
    assert "| base → sft | model.layers.0.mlp.down_proj.weight | 0.0123 |" in render_markdown(summary)


def test_data_training_and_medprompt_tables_show_what_the_stages_wrote(page: str) -> None:
    data = section(page, "data")
    assert "general-chat" in data and "too short" in data and "120 verified worked examples" in data
    training = section(page, "training")
    assert "2.6000 → 1.9000" in training  # SFT validation loss before and after
    assert "DPO stage 2 (safety)" in training and "75.0%" in training  # DPO validation reward accuracy
    medprompt = section(page, "medprompt")
    assert "+ choice-shuffle ensemble" in medprompt and "+0.050 [+0.010, +0.090]" in medprompt
    assert "84.0%" in medprompt  # ensemble agreement of the full Medprompt run


def test_the_risk_assessment_is_rendered_as_html(page: str) -> None:
    risks = section(page, "risk")
    assert "<h3>Impersonating a health professional</h3>" in risks
    assert "<strong>Likelihood:</strong>" in risks and "<ul>" in risks and "<li>" in risks
    assert "## " not in risks and "**" not in risks


def test_model_card_and_recipe_are_shown_collapsed(page: str, summary: dict[str, Any]) -> None:
    assert "<details><summary>Model card" in section(page, "model-card")
    assert "library_name: transformers" in section(page, "model-card")
    assert "<details><summary>Recipe recipes/demo.yaml</summary>" in section(page, "recipe")
    assert "learning_rate: 2.0e-5" in section(page, "recipe")


def test_the_page_needs_nothing_from_outside(page: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", page, re.I)
    assert re.findall(r"""\ssrc\s*=\s*["']([^"']{0,22})""", page) == ["data:image/png;base64,"] * len(chart_pngs(page))
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', page))  # only the table of contents
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page  # CSP: a slip in escaping still cannot fetch or run anything


def test_charts_are_embedded_pngs_and_counted_for_the_browser(page: str) -> None:
    from PIL import Image

    pngs = chart_pngs(page)
    # training curves, benchmarks by stage, Medprompt ladder, attack success, over-refusal
    assert len(pngs) == 5
    for png in pngs:
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG" and image.size[0] > 500
    assert f'data-charts-total="{len(pngs)}"' in page
    assert page.count("<script") == 1 and "data-charts-loaded" in page  # the one counting script


def test_untrusted_text_is_escaped_everywhere(summary: dict[str, Any]) -> None:
    hostile = dict(summary)
    hostile["benchmarks"] = {
        stage: {**r, "benchmarks": {INJECTION: next(iter(r["benchmarks"].values()))}}
        for stage, r in summary["benchmarks"].items()
    }
    hostile["data"] = {"sft": dataset({INJECTION: (10, 8)})}
    hostile["comparisons"] = {
        "loglik": [{**c, "benchmarks": {INJECTION: c["mean"] | {"n": 3}}} for c in summary["comparisons"]["loglik"]]
    }
    hostile["answer_distributions"] = {"loglik": {INJECTION: {INJECTION: {"n": 3, "predicted": {INJECTION: 1.0}}}}}
    hostile["risk_markdown"] = f"## Risk assessment\n\n### {INJECTION}\n\n- <img src=x onerror=alert(1)>\n"
    hostile["recipe"] = {"name": "demo", "text": f"name: demo\nnote: '</pre>{INJECTION}'\n"}
    page = render_html(hostile)
    assert page.count("<script") == 1  # only the report's own
    assert "<img src=x" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    text = render_markdown(hostile)
    assert "<script" not in outside_fences(text) and "<img" not in outside_fences(text)
    assert "&lt;script&gt;" in text
    card = render_model_card(hostile)
    assert "<script" not in outside_fences(card.split("---\n", 2)[2])


def test_missing_parts_say_not_run_instead_of_vanishing() -> None:
    page = render_html({"title": "aloekit run: nothing yet"})
    ids = ("data", "training", "weights", "benchmarks", "changes", "answers", "medprompt", "safety", "bias", "risk")
    for section_id in ids:
        assert NOT_RUN in section(page, section_id), section_id
    assert 'data-charts-total="0"' in page
    text = render_markdown({"title": "aloekit run: nothing yet"})
    assert text.count(NOT_RUN) >= 10 and "could not be rendered" not in text


@pytest.mark.parametrize(
    ("drop", "section_id", "note"),
    [
        (lambda s: s["medprompt"].update(ladder=None), "medprompt", f"The ablation ladder: {NOT_RUN}"),
        (lambda s: s["medprompt"].update(results=None), "medprompt", f"The full Medprompt evaluation: {NOT_RUN}"),
        (lambda s: s.pop("bias"), "bias", f"BBQ: {NOT_RUN}"),
        (lambda s: s.pop("truthfulness"), "bias", f"TruthfulQA: {NOT_RUN}"),
        (lambda s: [r["results"]["suites"].pop("xstest") for r in s["safety"].values()], "safety", "Over-refusal"),
        (lambda s: s["data"].pop("cot_db"), "data", f"The chain-of-thought database: {NOT_RUN}"),
        (lambda s: s.update(safety={"before": None, "after": None}), "safety", NOT_RUN),
    ],
)
def test_one_missing_part_is_named_and_the_rest_still_renders(drop: Any, section_id: str, note: str) -> None:
    summary = sample_summary()
    drop(summary)
    page = render_html(summary)
    assert note in section(page, section_id) and NOT_RUN in section(page, section_id)
    assert "could not be rendered" not in page
    assert re.findall(r'<section id="([^"]+)">', page) == SECTION_IDS


def test_only_one_side_of_safety_renders_one_column() -> None:
    summary = sample_summary()
    summary["safety"]["before"] = None
    safety = section(render_html(summary), "safety")
    assert "after (dpo_safety)" in safety and "before (merged)" not in safety


def test_the_same_model_before_and_after_is_one_column() -> None:
    summary = sample_summary()
    summary["safety"]["before"] = summary["safety"]["after"]
    summary["bias"]["before"] = summary["bias"]["after"]
    summary["truthfulness"]["before"] = summary["truthfulness"]["after"]
    page = render_html(summary)
    assert "before (" not in section(page, "safety") and "<th>before</th>" not in section(page, "bias")
    assert "after (dpo_safety)" in section(page, "safety")


def test_a_malformed_section_is_reported_and_does_not_cost_the_others() -> None:
    summary = sample_summary()
    summary["stages"] = ["data"]  # not the records the pipeline writes
    page = render_html(summary)
    assert "This section could not be rendered: AttributeError" in section(page, "overview")
    assert len(chart_pngs(page)) == 5


def test_write_report_writes_both_files_and_returns_their_paths(tmp_path: Path, summary: dict[str, Any]) -> None:
    paths = write_report(summary, tmp_path / "report")
    assert paths == {"html": tmp_path / "report" / "report.html", "markdown": tmp_path / "report" / "report.md"}
    assert paths["html"].read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert paths["markdown"].read_text(encoding="utf-8") == render_markdown(summary)
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["report.html", "report.md"]  # no temp files


def test_the_markdown_report_names_the_charts_it_leaves_to_the_html(summary: dict[str, Any]) -> None:
    text = render_markdown(summary)
    assert "data:image" not in text and text.count("*Chart in report.html:") == 5
    assert "| benchmark | n | base | sft | merged | dpo_general | dpo_safety |" in md_section(
        text, "Benchmarks by stage"
    )
    assert "### Impersonating a health professional" in md_section(text, "Risk assessment")


def test_the_risk_assessment_html_says_what_its_markdown_says(page: str, summary: dict[str, Any]) -> None:
    """The HTML is rendered from the risks themselves, not from their markdown: every line of the markdown, its
    markup dropped, reads the same in the HTML section's text."""

    def plain(text: str) -> str:
        return " ".join(html.unescape(text).split())

    shown = plain(re.sub(r"<[^>]+>", " ", section(page, "risk")))
    lines = [
        re.sub(r"^\s*(#+|-)\s+", "", line).replace("**", "")
        for line in md_section(render_markdown(summary), "Risk assessment").splitlines()
    ]
    assert len([line for line in lines if line.strip()]) > 20
    for line in lines:
        assert plain(line) in shown, line


def test_a_risk_md_without_safety_results_is_shown_as_written() -> None:
    text = f"## Risk assessment\n\n### {INJECTION}\n\n- **a** `b`\n"
    risk_part = section(render_html({"title": "t", "risk_markdown": text}), "risk")
    assert risk_part.startswith("<h2>Risk assessment</h2><pre><code>### &lt;script&gt;")
    assert "- **a** `b`" in risk_part  # verbatim: a file the report cannot interpret is not half-interpreted


# --- the model card -----------------------------------------------------------------------------------------------


def test_model_card_front_matter_is_hub_metadata(summary: dict[str, Any]) -> None:
    meta = front_matter(render_model_card(summary))
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["library_name"] == "transformers" and meta["license"] == "apache-2.0"
    assert {"medical", "aloekit", "dpo", "merge"} <= set(meta["tags"])
    results = meta["model-index"][0]["results"]
    medqa = next(r for r in results if r["dataset"]["name"] == "medqa_4options")
    assert medqa["dataset"]["type"] == "GBaker/MedQA-USMLE-4-options"
    assert medqa["metrics"][0]["value"] == pytest.approx(0.55, abs=1e-4)  # the final stage's accuracy


def test_model_card_sections_and_not_for_clinical_use(summary: dict[str, Any]) -> None:
    card = render_model_card(summary)
    body = card.split("---\n", 2)[2]
    headings = re.findall(r"^## (.+)$", outside_fences(body), re.M)
    assert headings[:5] == [
        "What it is",
        "How it was made",
        "Evaluation",
        "Safety, bias and truthfulness",
        "Risks and limitations",
    ]
    assert body.count("**Not for clinical use.**") == 2  # at the top and in the limitations
    assert "learning_rate" in body and "| dpo_safety |" not in body.split("## Evaluation")[0][:50]
    evaluation = body.split("## Evaluation")[1].split("## Safety")[0]
    assert "| benchmark | n | base | sft | merged | dpo_general | dpo_safety |" in evaluation
    assert "### Risk assessment\n" in body and "#### Impersonating a health professional" in body


def test_model_card_of_a_partial_run_still_parses() -> None:
    card = render_model_card({"title": "t", "models": {"base": "some-org/some-model"}})
    meta = front_matter(card)
    assert meta["base_model"] == "some-org/some-model" and meta["license"] == "other"
    assert "model-index" not in meta and card.count(NOT_RUN) >= 3


# --- the charts the report adds -----------------------------------------------------------------------------------


def png_height(data: bytes) -> int:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.size[1]


def test_training_curves_draw_one_panel_per_stage_and_need_a_loss() -> None:
    one = charts.training_curves({"sft": sft_training()})
    three = charts.training_curves({"sft": sft_training(), "a": dpo_training(0.02), "b": dpo_training(0.03)})
    assert png_height(three) > png_height(one)
    with pytest.raises(ValueError, match="no training stage"):
        charts.training_curves({"sft": {"log_history": [], "metrics": {}}})


def test_loss_points_read_the_log_history_or_sft_metrics() -> None:
    train = sft_training()
    from_history = charts.loss_points(train)
    from_metrics = charts.loss_points({"metrics": train["metrics"]})
    assert from_history == from_metrics
    assert from_history[1][0] == (0.0, 2.6)  # the validation loss before training, at step 0


def test_over_refusal_chart_needs_an_xstest_suite() -> None:
    after = redteam_results({"plain": 1}, refused_safe=6, stage="dpo_safety")
    assert png_height(charts.over_refusal({"after": after})) > 200
    with pytest.raises(ValueError, match="no over-refusal suite"):
        charts.over_refusal({"after": {"suites": {"advbench": after["suites"]["advbench"]}}})


def test_medprompt_ladder_chart_is_the_ablations_own_picture(tmp_path: Path) -> None:
    from aloekit.prompting.ablation import plot

    result = ladder()
    plot(result, tmp_path / "ablation.png")
    assert charts.medprompt_ladder(result) == (tmp_path / "ablation.png").read_bytes()
