"""Charts for the report: PNG bytes from results, so the HTML can embed them and stay one self-contained file.

Each function takes plain data (what the stages write to results.json) and draws one figure people would rather
look at than read: accuracy of every benchmark at every stage of the recipe with its 95% CI, and attack success
by style before and after alignment. Matplotlib runs headless (Agg); nothing is shown or written elsewhere.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["attack_success_by_style", "benchmarks_by_stage"]

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
    groups: Sequence[str], series: Mapping[str, Mapping[str, Estimate]], *, xlabel: str, title: str
) -> bytes:
    """Horizontal bars: one group per row label, one bar per series, CI whiskers; missing values left out."""
    plt = _pyplot()
    names = list(series)
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.35 * len(groups) * max(1, len(names))))
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
        ax.barh(ys, values, height=height, xerr=[lows, highs], capsize=2, label=name)
    ax.set_yticks(np.arange(len(groups)) + 0.4 - height / 2, list(groups))
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return _png(fig)


def benchmarks_by_stage(results: Mapping[str, Mapping[str, Any]]) -> bytes:
    """``results``: stage name (base, sft, merged, dpo1, dpo2...) -> ``aloe eval``'s results.json. One row per
    benchmark, one bar per stage, accuracy with its 95% CI."""
    series: dict[str, dict[str, Estimate]] = {}
    groups: list[str] = []
    for stage, r in results.items():
        series[stage] = {}
        for bench, b in r.get("benchmarks", {}).items():
            series[stage][bench] = (float(b["acc"]), float(b["acc_ci95"][0]), float(b["acc_ci95"][1]))
            if bench not in groups:
                groups.append(bench)
    return _grouped_bars(groups, series, xlabel="accuracy (95% CI)", title="Medical benchmarks by recipe stage")


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
