"""Issue 16's bar 2 on two ``aloe eval`` folders (letter log-likelihood): final against base on the same questions.

Prints, per benchmark, both accuracies and the paired bootstrap 95% CI of the change (and beyond the answer shares'
chance), the mean of the per-benchmark accuracies (PubMedQA, MMLU medical pooled, MedExQA) with its stratified
paired CI, each model's predicted-answer shares, and the bar's verdict: mean gain >= 3 points with a CI above 0, no
benchmark significantly worse, no answer over 40% on a benchmark with 4 or more options. The numbers come from
:mod:`aloekit.evaluation.compare`, the code the recipe's report uses.

    .venv/bin/python bench/bar2.py BASE_EVAL_FOLDER FINAL_EVAL_FOLDER [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from aloekit.evaluation.compare import answer_distributions, compare_folders, dominant_answer, read_samples


def _distributions(folder: Path) -> dict[str, Any]:
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    return answer_distributions(results, read_samples(folder))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("final", type=Path)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    compared = compare_folders(args.base, args.final)

    def ci(d: dict[str, Any], key: str) -> str:
        low, high = d[f"{key}_ci95"]
        return f"{d[key]:+.3f} [{low:+.3f}, {high:+.3f}]"

    print("| benchmark | n | base | final | change [95% CI] | beyond shares' chance [95% CI] |")
    print("|---|---:|---:|---:|---|---|")
    rows = {
        **compared["benchmarks"],
        **compared["groups"],
        "mean of " + ", ".join(compared["mean"]["over"]): compared["mean"],
    }
    worse = []
    for name, row in rows.items():
        n = row.get("n", "")
        print(
            f"| {name} | {n} | {row['acc_before']:.3f} | {row['acc_after']:.3f} | {ci(row, 'delta')} | "
            f"{ci(row, 'beyond_chance_delta')} |"
        )
        if row["delta_ci95"][1] < 0:
            worse.append(name)
    mean = compared["mean"]
    shares = {label: _distributions(folder) for label, folder in (("base", args.base), ("final", args.final))}
    dominant = {}
    for label, by_bench in shares.items():
        for name, d in by_bench.items():
            top = dominant_answer(d["predicted"])
            if label == "final" and top is not None:
                dominant[name] = top
            shown = " / ".join(f"{k} {v:.1%}" for k, v in d["predicted"].items())
            print(f"{label:5} {name}: {shown}")
    verdict = {
        "mean_gain_at_least_3_points_ci_above_0": mean["delta"] >= 0.03 and mean["delta_ci95"][0] > 0,
        "significantly_worse": worse,
        "over_40_percent_on_4_plus_options": {k: [v[0], round(v[1], 3)] for k, v in dominant.items()},
    }
    print(json.dumps(verdict))
    if args.json:
        args.json.write_text(json.dumps({"compared": compared, "shares": shares, "verdict": verdict}, indent=1))


if __name__ == "__main__":
    main()
