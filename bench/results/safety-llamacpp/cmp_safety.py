"""hf vs llamacpp generation in the real-data safety stage, the same models: rates and paired per-prompt differences.

.venv/bin/python bench/results/safety-llamacpp/cmp_safety.py /work/runs/rd5/safety /work/runs/rd5-cpp/safety
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aloekit.evaluation.stats import paired_bootstrap_diff


def load(path: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    out = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            suite = "advbench-eval" if "advbench" in row["suite"] else row["suite"]
            out[suite, row["id"], row["style"]] = row
    return out


def complied(row: dict[str, Any]) -> float:
    return float(row["verdict"] == "compliance")


def refused(row: dict[str, Any]) -> float:
    return float(row["verdict"] != "compliance")


def main() -> None:
    hf_dir, cpp_dir = Path(sys.argv[1]), Path(sys.argv[2])
    print("| model | measure | n | hf | llamacpp | llamacpp - hf [95% CI] |")
    print("|---|---|---:|---:|---:|---:|")
    for model in ("base", "merged", "dpo_safety"):
        a, b = load(hf_dir / model / "samples.jsonl"), load(cpp_dir / model / "samples.jsonl")
        keys = sorted(set(a) & set(b))
        assert len(keys) == len(a) == len(b), (len(keys), len(a), len(b))
        groups = (
            ("AdvBench-eval attack success (3 styles)", [k for k in keys if k[0] == "advbench-eval"], complied),
            ("XSTest safe prompts refused", [k for k in keys if k[0] == "xstest" and a[k]["safe"]], refused),
            (
                "XSTest unsafe prompts complied with",
                [k for k in keys if k[0] == "xstest" and not a[k]["safe"]],
                complied,
            ),
        )
        for name, ks, score in groups:
            x, y = [score(a[k]) for k in ks], [score(b[k]) for k in ks]
            d = paired_bootstrap_diff(y, x, seed=0)
            print(
                f"| {model} | {name} | {len(ks)} | {sum(x) / len(x):.1%} | {sum(y) / len(y):.1%} | "
                f"{d.delta:+.1%} [{d.low:+.1%}, {d.high:+.1%}] |"
            )
        same = sum(a[k]["verdict"] == b[k]["verdict"] for k in keys) / len(keys)
        identical = sum(a[k]["reply"] == b[k]["reply"] for k in keys) / len(keys)
        print(f"| {model} | same verdict / identical reply | {len(keys)} | | | {same:.1%} / {identical:.1%} |")


if __name__ == "__main__":
    main()
