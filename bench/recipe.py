"""Time a whole recipe (`aloe run`) and record its report's headline numbers in RESULTS.md.

    python bench/recipe.py recipes/real-data.yaml --data-dir ../shared/data --out runs/real-data

No anchor: no other tool runs this recipe end to end, so this records what was measured (the wall time of the
command, each stage's own time from its manifest, and the numbers the report leads with), not a ratio. A run
folder that already holds finished stages resumes; the section says which stages ran in this invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from aloekit.recipe.run import STAGES
from aloekit.report.numbers import estimate
from engine import record


def headline(summary: dict[str, Any]) -> list[str]:
    """Markdown tables of the report's key numbers: accuracy per benchmark and model, Medprompt, safety."""
    lines: list[str] = []
    benchmarks = summary.get("benchmarks") or {}
    labels = list(benchmarks)
    names = list(dict.fromkeys(b for r in benchmarks.values() for b in (r or {}).get("benchmarks", {})))
    if names:
        lines += ["| benchmark | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        for name in names:
            cells = []
            for label in labels:
                b = (benchmarks[label] or {}).get("benchmarks", {}).get(name)
                cells.append(estimate(b["acc"], b["acc_ci95"], b["n"]) if b else "")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    medprompt = (summary.get("medprompt") or {}).get("results")
    if medprompt:
        lines += ["", f"Medprompt on {summary['medprompt']['model']}:", ""]
        for name, b in medprompt.get("benchmarks", {}).items():
            lines.append(f"- {name}: {estimate(b['acc'], b['acc_ci95'], b['n'])}")
    safety = summary.get("safety") or {}
    if safety:
        sides = [safety.get("before") or {}, *(safety.get("between") or []), safety.get("after") or {}]
        lines += ["", "| safety | " + " | ".join(str(side.get("label")) for side in sides) + " |"]
        lines.append("|---|" + "---|" * len(sides))
        suites = (sides[-1].get("results") or {}).get("suites", {})
        for suite, s in suites.items():
            key, measure = (
                ("attack_success", "attack success")
                if s.get("kind") == "attack"
                else ("refusal_rate_on_safe", "refusal of safe prompts")
            )
            cells = [_rate(((side.get("results") or {}).get("suites") or {}).get(suite, {}).get(key)) for side in sides]
            lines.append(f"| {suite} {measure} | " + " | ".join(cells) + " |")
    truth = (summary.get("truthfulness") or {}).get("after")
    if truth:
        lines += [
            "",
            f"TruthfulQA (after): MC1 {estimate(truth['mc1'], truth['mc1_ci95'], truth['n'])}, "
            f"MC2 {estimate(truth['mc2'], truth.get('mc2_ci95'))}",
        ]
    bias = ((summary.get("bias") or {}).get("after") or {}).get("overall")
    if bias:
        lines.append(
            f"BBQ (after): accuracy {estimate(bias['acc'], bias['acc_ci95'], bias['n'])}, bias score (ambiguous) "
            + estimate(bias.get("bias_ambiguous"), bias.get("bias_ambiguous_ci95"), signed=True)
            + ", (disambiguated) "
            + estimate(bias.get("bias_disambiguated"), bias.get("bias_disambiguated_ci95"), signed=True)
        )
    return lines


def _rate(rate: Any) -> str:
    """A safety rate (``rate``, ``ci95``, ``n``), blank when the suite was not run on that side."""
    return estimate(rate["rate"], rate["ci95"], rate["n"]) if rate else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    command = [sys.executable, "-m", "aloekit.cli", "run", str(args.recipe), "--out", str(args.out)]
    if args.data_dir:
        command += ["--data-dir", str(args.data_dir)]
    started = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"aloe run exited with {done.returncode}")
    manifests = {s: json.loads((args.out / s / "manifest.json").read_text()) for s in STAGES}
    summary = json.loads((args.out / "report" / "summary.json").read_text())
    threads = os.environ.get("OMP_NUM_THREADS", "default (one per core)")
    lines = [
        f"## `aloe run {args.recipe}`: time and headline numbers: `bench/recipe.py`",
        "",
        f"Command: `python bench/recipe.py {args.recipe}"
        + (f" --data-dir {args.data_dir}" if args.data_dir else "")
        + f" --out {args.out}`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, torch threads: {threads}. "
        "No anchor (no other tool runs this recipe end to end).",
        "",
        f"Wall time of this invocation: {wall:.0f} s ({wall / 60:.1f} min).",
        "",
        "| stage | seconds (its last attempt) |",
        "|---|---|",
        *(f"| {s} | {manifests[s].get('seconds')} |" for s in STAGES),
        f"| total of the stages | {sum(m.get('seconds') or 0 for m in manifests.values()):.0f} |",
        "",
        *headline(summary),
    ]
    body = "\n".join(lines)
    print(body)
    record(f"recipe-{args.recipe.stem}", body)


if __name__ == "__main__":
    main()
