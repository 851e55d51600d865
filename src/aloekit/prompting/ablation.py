"""The Medprompt ablation ladder: what each ingredient adds, measured on the same questions.

Steps, each adding one thing to the one before:

1. ``zero-shot``: the question, answered with ``Answer: X``;
2. ``random few-shot``: k random solved examples from the database (bare answers);
3. ``+ CoT``: the same random examples with their verified reasoning, and reasoning asked for;
4. ``+ kNN``: the k nearest examples instead of random ones (the most similar last);
5. ``+ choice-shuffle ensemble``: ``runs`` answers with the options shuffled, voted.

Every step runs through :func:`aloekit.evaluation.mcqa.evaluate` with one shared request cache: step 5's first
run is step 4 exactly (run 1 keeps the original order), so it is not generated twice, and a killed ablation
resumes. Each step reports accuracy with a 95% bootstrap CI, and the change from the previous step with a paired
bootstrap CI over the same questions (the honest way to say whether a step helped).

Outputs in ``out_dir``: ``ablation.json``, ``ablation.png``, and ``steps/<n>-<name>/`` (each step's results.json
and samples.jsonl).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from aloekit.config import MCQAConfig
from aloekit.engines.base import Engine
from aloekit.evaluation import mcqa
from aloekit.evaluation.stats import accuracy_ci, paired_bootstrap_diff
from aloekit.io import read_jsonl, write_json

__all__ = ["STEPS", "plot", "run_ablation", "step_dir", "table"]

STEPS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("zero-shot", {"examples": "none", "cot": False, "runs": 1}),
    ("random few-shot", {"examples": "random", "cot": False, "runs": 1}),
    ("+ CoT", {"examples": "random", "cot": True, "runs": 1}),
    ("+ kNN", {"examples": "knn", "cot": True, "runs": 1}),
    ("+ choice-shuffle ensemble", {"examples": "knn", "cot": True}),
)


def _slug(index: int, name: str) -> str:
    return f"{index + 1}-" + "".join(c if c.isalnum() else "-" for c in name.lstrip("+ ")).strip("-").lower()


def step_dir(out_dir: Path, index: int) -> Path:
    """Where step ``index`` (0-based) of the ladder writes its results.json and samples.jsonl."""
    return out_dir / "steps" / _slug(index, STEPS[index][0])


def step_config(config: MCQAConfig, overrides: dict[str, Any]) -> MCQAConfig:
    settings = config.medprompt.model_copy(update=overrides)
    if not settings.cot and settings.max_tokens is not None:
        settings = settings.model_copy(update={"max_tokens": None})  # a bare answer needs 32 tokens, not CoT's
    return config.model_copy(update={"mode": "medprompt", "medprompt": settings})


def run_ablation(
    engine: Engine,
    config: MCQAConfig,
    out_dir: Path,
    *,
    model: dict[str, Any],
    progress: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """Run every step of the ladder on ``config``'s benchmarks; write ablation.json and ablation.png."""
    loaded = mcqa.load_benchmarks(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = out_dir / "cache.jsonl"
    steps = []
    correct: list[np.ndarray] = []
    for i, (name, overrides) in enumerate(STEPS):
        step = step_config(config, overrides)
        log(f"step {i + 1}/{len(STEPS)}: {name}")
        began = time.perf_counter()
        results = mcqa.evaluate(
            engine,
            step,
            step_dir(out_dir, i),
            model=model,
            progress=progress,
            loaded=loaded,
            cache_path=cache,
        )
        samples = [row for _, row in read_jsonl(step_dir(out_dir, i) / "samples.jsonl")]
        flags = np.array([float(s["correct"]) for s in samples])
        lo, hi = accuracy_ci(flags.tolist(), seed=config.seed)
        entry: dict[str, Any] = {
            "step": name,
            "settings": json.loads(step.medprompt.model_dump_json()),
            "n": int(flags.size),
            "acc": float(flags.mean()),
            "acc_ci95": [lo, hi],
            "benchmarks": {
                b: {k: r[k] for k in ("n", "acc", "acc_ci95", "unparseable_rate") if k in r}
                for b, r in results["benchmarks"].items()
            },
            "seconds": round(time.perf_counter() - began, 1),
            "tokens": sum(r["tokens"] for r in results["benchmarks"].values()),
        }
        if correct:
            change = paired_bootstrap_diff(flags.tolist(), correct[-1].tolist(), seed=config.seed)
            entry["change"] = {"delta": change.delta, "delta_ci95": [change.low, change.high]}
        correct.append(flags)
        steps.append(entry)
        log(f"  {name}: acc {entry['acc']:.3f} [{lo:.3f}, {hi:.3f}] on {entry['n']} questions")

    result = {
        "steps": steps,
        "benchmarks": list(loaded),
        "config": json.loads(config.model_dump_json()),
        "model": model,
        "seed": config.seed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(out_dir / "ablation.json", result, ensure_ascii=False)
    plot(result, out_dir / "ablation.png")
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    """Accuracy per step and benchmark (and overall) with 95% CIs, as horizontal bars: the ladder at a glance."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # matplotlib is a dependency; this is for broken installs
        from aloekit.errors import UserError

        raise UserError("the ablation plot needs matplotlib: pip install matplotlib") from e
    steps = result["steps"]
    series = [("all", [(s["acc"], s["acc_ci95"]) for s in steps])]
    if len(result["benchmarks"]) > 1:  # one benchmark is "all" again: one series once
        for bench in result["benchmarks"]:
            rows = [(s["benchmarks"][bench]["acc"], s["benchmarks"][bench]["acc_ci95"]) for s in steps]
            series.append((bench, rows))
    else:
        series = [(str(b), series[0][1]) for b in result["benchmarks"]] or series
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.9 * len(steps)))
    height = 0.8 / len(series)
    for j, (label, values) in enumerate(series):
        ys = np.arange(len(steps)) + j * height
        accs = np.array([v[0] for v in values])
        lows = accs - np.array([v[1][0] for v in values])
        highs = np.array([v[1][1] for v in values]) - accs
        bars = ax.barh(ys, accs, height=height, xerr=[lows, highs], capsize=2, label=label)
        colour = bars.patches[0].get_facecolor() if bars.patches else None
        for y, acc, high in zip(ys, accs, highs, strict=True):
            if acc < 0.005:  # a zero-width bar: a marker shows it was measured
                ax.plot([0], [y], marker="D", markersize=4, color=colour, clip_on=False)
            ax.text(min(acc + high, 1.0) + 0.01, y, f"{100 * acc:.0f}%", va="center", fontsize="x-small")
    ax.set_yticks(np.arange(len(steps)) + 0.4 - height / 2, [s["step"] for s in steps])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("accuracy (95% bootstrap CI)")
    # The model's name, not its folder: a full path makes the title unreadable.
    reference = Path(str(result["model"].get("reference", "")))
    model = f"{reference.parent.name}/{reference.name}" if reference.name == "model" else reference.name
    ax.set_title(
        f"Medprompt ablation: {model}, n={steps[0]['n']}" if model else f"Medprompt ablation, n={steps[0]['n']}"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def table(result: dict[str, Any]) -> Any:
    """A rich table of the ladder, for people; ablation.json is for machines."""
    from rich.table import Table

    t = Table(title=f"Medprompt ablation: {result['model'].get('reference', '')}")
    t.add_column("step")
    t.add_column("n", justify="right")
    t.add_column("acc", justify="right")
    t.add_column("95% CI", justify="right")
    t.add_column("change (95% CI)", justify="right")
    for bench in result["benchmarks"]:
        t.add_column(bench, justify="right")
    t.add_column("s", justify="right")
    for s in result["steps"]:
        change = ""
        if "change" in s:
            c = s["change"]
            change = f"{c['delta']:+.3f} ({c['delta_ci95'][0]:+.3f}, {c['delta_ci95'][1]:+.3f})"
        per = [f"{s['benchmarks'][b]['acc']:.3f}" for b in result["benchmarks"]]
        ci = f"{s['acc_ci95'][0]:.3f}-{s['acc_ci95'][1]:.3f}"
        t.add_row(s["step"], str(s["n"]), f"{s['acc']:.3f}", ci, change, *per, str(s["seconds"]))
    return t
