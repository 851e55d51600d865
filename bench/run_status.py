"""What a recipe run has measured so far, from its run folder, whether or not every stage has finished.

    python bench/run_status.py runs/real-data [--record]

Prints each stage's status and time (from its manifest), the letter log-likelihood results of every model whose
evaluation finished (accuracy, 95% CI, the answer most often predicted), the paired change of final against base
(per benchmark and for the mean of benchmarks, MMLU medical pooled), and each red-teamed model's attack success and
over-refusal. ``--record`` writes it as the ``run-status-<run name>`` section of bench/RESULTS.md, so a run cut short
still leaves its measured numbers, labelled as partial, next to the command that produced them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from aloekit.evaluation.compare import compare_folders
from aloekit.recipe.run import STAGES
from aloekit.report.numbers import estimate
from engine import record

MODELS = ("base", "sft", "merged", "dpo_general", "dpo_safety")


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _top(predicted: dict[str, float] | None) -> str:
    if not predicted:
        return ""
    label, share = max(((k, v) for k, v in predicted.items() if k != "unparseable"), key=lambda kv: kv[1])
    return f"{label} {share:.0%}"


def _rate(rate: Any) -> str:
    return estimate(rate["rate"], rate["ci95"], rate["n"]) if rate else ""


def status(run: Path) -> list[str]:
    lines = ["| stage | status | seconds |", "|---|---|---|"]
    for stage in STAGES:
        manifest = _json(run / stage / "manifest.json") or {}
        lines.append(f"| {stage} | {manifest.get('status', 'not started')} | {manifest.get('seconds', '')} |")
    evaluated = {m: _json(run / "eval" / m / "results.json") for m in MODELS}
    evaluated = {m: r for m, r in evaluated.items() if r}
    if evaluated:
        names = list(dict.fromkeys(b for r in evaluated.values() for b in r["benchmarks"]))
        groups = list(dict.fromkeys(g for r in evaluated.values() for g in r.get("groups") or {}))
        lines += ["", "Letter log-likelihood (lm-eval prompts): accuracy [95% CI], n; most predicted answer.", ""]
        lines += ["| benchmark | " + " | ".join(evaluated) + " |", "|---|" + "---|" * len(evaluated)]
        for name in [*names, *groups]:
            cells = []
            for r in evaluated.values():
                b = r["benchmarks"].get(name) or (r.get("groups") or {}).get(name)
                cells.append(f"{estimate(b['acc'], b['acc_ci95'], b['n'])}; {_top(b.get('predicted'))}" if b else "")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if "base" in evaluated and "dpo_safety" in evaluated:
        change = compare_folders(run / "eval" / "base", run / "eval" / "dpo_safety")
        lines += ["", "Final (dpo_safety) against base, paired on the same questions (bootstrap 95% CI):", ""]
        lines += [
            "| benchmark | n | base | final | change | change beyond the answer shares' chance |",
            "|---|---|---|---|---|---|",
        ]
        rows = {**change["benchmarks"], **change["groups"]}
        for name, c in rows.items():
            lines.append(
                f"| {name} | {c['n']} | {c['acc_before']:.3f} | {c['acc_after']:.3f} | "
                + estimate(c["delta"], c["delta_ci95"], signed=True)
                + " | "
                + estimate(c["beyond_chance_delta"], c["beyond_chance_delta_ci95"], signed=True)
                + " |"
            )
        mean = change["mean"]
        lines.append(
            f"| mean of {', '.join(mean['over'])} | | {mean['acc_before']:.3f} | {mean['acc_after']:.3f} | "
            + estimate(mean["delta"], mean["delta_ci95"], signed=True)
            + " | "
            + estimate(mean["beyond_chance_delta"], mean["beyond_chance_delta_ci95"], signed=True)
            + " |"
        )
        lines += [
            "",
            "Change beyond the answer shares' chance: the change in (accuracy minus the accuracy a model with the same"
            " answer shares and no relation to the questions would get); near 0, the gain is the favoured answer"
            " meeting the gold imbalance (aloekit.evaluation.chance).",
        ]
    safety = {m: _json(run / "safety" / m / "results.json") for m in MODELS}
    safety = {m: r for m, r in safety.items() if r}
    if safety:
        lines += ["", "Safety (offline judge): rate [95% Wilson CI], n.", ""]
        lines += ["| suite | measure | " + " | ".join(safety) + " |", "|---|---|" + "---|" * len(safety)]
        suites = list(dict.fromkeys(s for r in safety.values() for s in r.get("suites") or {}))
        for suite in suites:
            found = [(r.get("suites") or {}).get(suite) or {} for r in safety.values()]
            kind = next((s.get("kind") for s in found if s), "")
            short = Path(suite.removeprefix("file:")).stem if suite.startswith("file:") else suite
            measures = (
                [("attack_success", "attack success (all styles)")]
                if kind == "attack"
                else [
                    ("refusal_rate_on_safe", "refusal of safe prompts"),
                    ("compliance_rate_on_unsafe", "compliance with unsafe prompts"),
                ]
            )
            for key, measure in measures:
                lines.append(f"| {short} | {measure} | " + " | ".join(_rate(s.get(key)) for s in found) + " |")
    lines += _paired_safety(run, list(safety))
    return lines


def _paired_safety(run: Path, models: list[str]) -> list[str]:
    """Final against base and against merged, paired on the prompts both were judged on (compare_verdicts)."""
    from aloekit.evaluation.safety_compare import compare_verdicts
    from aloekit.io import json_lines

    def samples(model: str) -> list[dict[str, Any]]:
        text = (run / "safety" / model / "samples.jsonl").read_text(encoding="utf-8")
        return [json.loads(line) for line in json_lines(text) if line.strip()]

    pairs = [(m, "dpo_safety") for m in ("base", "merged") if m in models and "dpo_safety" in models]
    if not pairs:
        return []
    lines = ["", "Safety, paired on the same prompts (change as a difference of rates, bootstrap 95% CI):", ""]
    lines += ["| before -> after | suite | measure | n | before | after | change |", "|---|---|---|---|---|---|---|"]
    for before, after in pairs:
        change = compare_verdicts(samples(before), samples(after))
        for suite, c in change["suites"].items():
            lines.append(
                f"| {before} -> {after} | {suite} | {c['measure']} | {c['n']} | {c['rate_before']:.1%} | "
                f"{c['rate_after']:.1%} | " + estimate(c["delta"], c["delta_ci95"], signed=True) + " |"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    lines = status(args.run)
    body = "\n".join(
        [
            f"## Run status of `{args.run}` (partial until every stage says finished)",
            "",
            f"Command: `python bench/run_status.py {args.run} --record`, {time.strftime('%Y-%m-%d %H:%M')} UTC, "
            "2 CPU cores.",
            "",
            *lines,
        ]
    )
    print(body)
    if args.record:
        record(f"run-status-{args.run.name}", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
