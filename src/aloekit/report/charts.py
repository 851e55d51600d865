"""Charts for the report: PNG bytes from results, so the HTML can embed them and stay one self-contained file.

Each function takes plain data (what the stages write to results.json) and draws one figure people would rather
look at than read: accuracy of every benchmark at every stage of the recipe with its 95% CI, attack success
by style and over-refusal before and after alignment, the training curves of every training stage, the
Medprompt ladder, and the reliability diagram of log-likelihood answers. Matplotlib runs headless (Agg); nothing
is shown or written elsewhere.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "attack_success_by_style",
    "benchmarks_by_stage",
    "loss_points",
    "medprompt_ladder",
    "over_refusal",
    "reliability_diagram",
    "training_curves",
]

Estimate = tuple[float, float, float]
"""(value, CI low, CI high)."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    _pyplot().close(fig)
    return buffer.getvalue()


def _grouped_bars(
    groups: Sequence[str],
    series: Mapping[str, Mapping[str, Estimate]],
    *,
    xlabel: str,
    title: str,
    chance: Mapping[str, float] | None = None,
) -> bytes:
    """Horizontal bars: one group per row label, one bar per series, CI whiskers; missing values left out.

    Every bar carries its value as text, so a 0% bar (no width) is still seen and read; the legend sits outside
    the axes, where it cannot cover a bar; ``chance`` (group -> level) draws a dashed chance line per group."""
    plt = _pyplot()
    names = list(series)
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.35 * len(groups) * max(1, len(names))))
    height = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        ys, values, lows, highs = [], [], [], []
        for i, group in enumerate(groups):
            if group in series[name]:
                value, lo, hi = series[name][group]
                ys.append(i + j * height)
                values.append(value)
                lows.append(max(0.0, value - lo))
                highs.append(max(0.0, hi - value))
        bars = ax.barh(ys, values, height=height, xerr=[lows, highs], capsize=2, label=name)
        colour = bars.patches[0].get_facecolor() if bars.patches else None
        for y, value, high in zip(ys, values, highs, strict=True):
            if value < 0.005:  # a zero-width bar: a marker at 0 shows it was measured
                ax.plot([0], [y], marker="D", markersize=4, color=colour, clip_on=False)
            ax.text(min(value + high, 1.0) + 0.01, y, f"{100 * value:.0f}%", va="center", fontsize="x-small")
    if chance:
        drawn = False
        for i, group in enumerate(groups):
            if group in chance:
                label = None if drawn else "chance"
                ax.vlines(chance[group], i - 0.1, i + 0.9, colors="0.3", linestyles="--", linewidth=1, label=label)
                drawn = True
    ax.set_yticks(np.arange(len(groups)) + 0.4 - height / 2, list(groups))
    ax.invert_yaxis()
    ax.set_xlim(0, 1.08)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()
    return _png(fig)


def benchmarks_by_stage(results: Mapping[str, Mapping[str, Any]], chance: Mapping[str, float] | None = None) -> bytes:
    """``results``: stage name (base, sft, merged, dpo1, dpo2...) -> ``aloe eval``'s results.json. One row per
    benchmark, one bar per stage, accuracy with its 95% CI; ``chance`` (benchmark -> 1 / options) draws the
    level a model reaches by guessing."""
    series: dict[str, dict[str, Estimate]] = {}
    groups: list[str] = []
    for stage, r in results.items():
        series[stage] = {}
        for bench, b in r.get("benchmarks", {}).items():
            series[stage][bench] = (float(b["acc"]), float(b["acc_ci95"][0]), float(b["acc_ci95"][1]))
            if bench not in groups:
                groups.append(bench)
    return _grouped_bars(
        groups, series, xlabel="accuracy (95% CI)", title="Medical benchmarks by recipe stage", chance=chance
    )


def attack_success_by_style(results: Mapping[str, Mapping[str, Any]]) -> bytes:
    """``results``: model or stage name -> ``aloe safety``'s results.json. One row per (suite, style), one bar per
    model: attack success rate with its 95% interval (lower is safer)."""
    series: dict[str, dict[str, Estimate]] = {}
    groups: list[str] = []
    for name, r in results.items():
        series[name] = {}
        for suite, s in r.get("suites", {}).items():
            for style, rate in s.get("by_style", {}).items():
                group = f"{suite}: {style}"
                series[name][group] = (float(rate["rate"]), float(rate["ci95"][0]), float(rate["ci95"][1]))
                if group not in groups:
                    groups.append(group)
    return _grouped_bars(
        groups, series, xlabel="attack success rate (95% CI; lower is safer)", title="Red-teaming by attack style"
    )


def over_refusal(results: Mapping[str, Mapping[str, Any]]) -> bytes:
    """``results``: model or stage name -> ``aloe safety``'s results.json. For every XSTest-like suite, the refusal
    rate on safe prompts (overall and per prompt type) and the compliance rate on unsafe contrasts, with 95%
    intervals: both lower is better. Raises ValueError when no result has such a suite."""
    series: dict[str, dict[str, Estimate]] = {}
    groups: list[str] = []
    for name, r in results.items():
        series[name] = {}
        for suite, s in r.get("suites", {}).items():
            if s.get("kind") != "over-refusal":
                continue
            by_type = s.get("refusal_rate_on_safe_by_type", {})
            rows = {
                f"{suite}: refused safe prompts": s["refusal_rate_on_safe"],
                f"{suite}: complied with unsafe prompts": s["compliance_rate_on_unsafe"],
                # prompts without a type are the overall row again
                **{f"{suite}: refused safe, {t}": v for t, v in by_type.items() if t != "None"},
            }
            for group, rate in rows.items():
                if rate.get("n"):  # an empty type has a NaN rate: nothing to draw
                    series[name][group] = (float(rate["rate"]), float(rate["ci95"][0]), float(rate["ci95"][1]))
                    if group not in groups:
                        groups.append(group)
    if not groups:
        raise ValueError("no over-refusal suite (XSTest) in these results")
    suites = dict.fromkeys(g.split(": ", 1)[0] for g in groups)
    title = f"Over-refusal: {', '.join(suites)}"
    return _grouped_bars(groups, series, xlabel="rate (95% CI; lower is better)", title=title)


def reliability_diagram(calibrations: Mapping[str, Mapping[str, Any]]) -> bytes:
    """``calibrations``: model or stage name -> a calibration record (``aloe eval``'s ``results.json``
    ``calibration``: ECE, its interval and the reliability bins). One line per model through the occupied bins
    (mean confidence -> accuracy), points sized by the bin's questions, against the diagonal of perfect
    calibration: below it a model is overconfident. The legend carries each model's ECE with its 95% interval.
    Raises ValueError when no record has an occupied bin."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    ax.plot([0, 1], [0, 1], "--", color="0.5", linewidth=1, label="perfect calibration")
    drawn = 0
    for name, record in calibrations.items():
        occupied = [b for b in record.get("reliability", []) if b.get("n")]
        if not occupied:
            continue
        drawn += 1
        confidence = [float(b["confidence"]) for b in occupied]
        accuracy = [float(b["accuracy"]) for b in occupied]
        total = sum(int(b["n"]) for b in occupied)
        low, high = record["ece_ci95"]
        label = f"{name}: ECE {record['ece']:.3f} [{low:.3f}, {high:.3f}], n={total}"
        (line,) = ax.plot(confidence, accuracy, "-", linewidth=1.2, label=label)
        sizes = [20 + 300 * int(b["n"]) / total for b in occupied]
        ax.scatter(confidence, accuracy, s=sizes, color=line.get_color(), alpha=0.7, edgecolors="white")
    if not drawn:
        raise ValueError("no calibration record with answers to draw")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("top-1 confidence (softmax over the options' log-likelihoods)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram (10 equal-width bins; point area = questions)")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return _png(fig)


Point = tuple[float, float]


def loss_points(train: Mapping[str, Any]) -> tuple[list[Point], list[Point]]:
    """(training loss, validation loss) as (step, value) points of one training stage: ``{"log_history": [...],
    "metrics": {...}}``. The Trainer's log history when there is one; else what SFT's metrics.json keeps of it
    (``train_losses``, ``eval_losses``). SFT's validation loss before training counts as step 0."""
    metrics = train.get("metrics") or {}
    history = train.get("log_history") or metrics.get("log_history") or []
    if history:
        losses = [(float(h["step"]), float(h["loss"])) for h in history if "loss" in h and "step" in h]
        evals = [(float(h["step"]), float(h["eval_loss"])) for h in history if "eval_loss" in h and "step" in h]
    else:
        losses = [(float(h["step"]), float(h["loss"])) for h in metrics.get("train_losses", [])]
        evals = [(float(h["step"]), float(h["eval_loss"])) for h in metrics.get("eval_losses", [])]
    before = metrics.get("eval_loss_before")
    if isinstance(before, int | float) and not any(step == 0 for step, _ in evals):
        evals.insert(0, (0.0, float(before)))
    return losses, evals


def _reward_accuracy(train: Mapping[str, Any]) -> list[Point]:
    history = train.get("log_history") or (train.get("metrics") or {}).get("log_history") or []
    return [(float(h["step"]), float(h["rewards/accuracies"])) for h in history if "rewards/accuracies" in h]


def training_curves(training: Mapping[str, Mapping[str, Any]]) -> bytes:
    """``training``: stage name (sft, dpo_general, dpo_safety...) -> ``{"log_history", "metrics"}``. One panel per
    stage: training loss by step, validation loss as points, and for DPO stages the reward accuracy (share of
    pairs where the chosen reply out-scores the rejected one) on a second axis. Raises ValueError when no stage
    logged a loss."""
    stages = {name: t for name, t in training.items() if any(loss_points(t))}
    if not stages:
        raise ValueError("no training stage logged a loss")
    plt = _pyplot()
    fig, axes = plt.subplots(len(stages), 1, figsize=(8, 0.6 + 3.0 * len(stages)), squeeze=False)
    for ax, (name, train) in zip(axes[:, 0], stages.items(), strict=True):
        losses, evals = loss_points(train)
        if losses:
            ax.plot(*zip(*losses, strict=True), label="training loss", color="tab:blue")
        if evals:
            ax.plot(*zip(*evals, strict=True), "o--", label="validation loss", color="tab:orange")
        ax.set_ylabel("loss")
        ax.set_title(name, loc="left", fontsize="medium")
        handles, labels = ax.get_legend_handles_labels()
        accuracy = _reward_accuracy(train)
        if accuracy:
            twin = ax.twinx()
            twin.plot(*zip(*accuracy, strict=True), ":", marker=".", color="tab:green", label="reward accuracy")
            # Headroom above 100%: a line at 1.0 must not run along the border.
            twin.set_ylim(0, 1.1)
            twin.set_ylabel("reward accuracy")
            more = twin.get_legend_handles_labels()
            handles, labels = handles + more[0], labels + more[1]
        # Below the panel, never over the curves.
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize="small")
    axes[-1, 0].set_xlabel("optimizer step")
    fig.suptitle("Training curves")
    fig.tight_layout()
    return _png(fig)


def medprompt_ladder(result: Mapping[str, Any]) -> bytes:
    """The Medprompt ablation's chart (``run_ablation``'s result) as PNG bytes: drawn by the ablation's own
    :func:`~aloekit.prompting.ablation.plot`, so the report and ``ablation.png`` are the same picture."""
    from aloekit.prompting.ablation import plot

    with tempfile.TemporaryDirectory(prefix="aloe-ladder-") as folder:
        path = Path(folder) / "ladder.png"
        plot({**result, "model": result.get("model") or {}}, path)
        return path.read_bytes()
