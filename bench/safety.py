"""Bias (BBQ) and truthfulness (TruthfulQA MC1/MC2) of the embedded SmolLM2-135M-Instruct, with 95% CIs.

Both are scored by log-likelihood through the hf engine (the same code as ``aloe safety --bias --truthfulness``):
TruthfulQA with lm-evaluation-harness's 6-shot QA primer over all 817 questions; BBQ over a seeded sample of
``--bbq-limit`` questions per category (spread over ambiguous / disambiguated contexts and question polarity) of
the 6 categories in ../shared/data. There is no anchor to beat here: these are the model's figures, recorded
for the report and for comparison with later stages of the recipe.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/safety.py --data-dir ../shared/data

Rewrites the ``safety`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from aloekit import models
from aloekit.engines.hf import HFEngine
from aloekit.evaluation.bias import evaluate_bbq
from aloekit.evaluation.truthfulness import evaluate_truthfulqa
from engine import record


def ci(values: Any) -> str:
    return "n/a" if values is None or None in values else f"{values[0]:.3f}-{values[1]:.3f}"


def num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--bbq-limit", type=int, default=100, help="BBQ questions per category")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    reference = models.DEFAULT_MODEL
    engine = HFEngine.from_reference(reference, batch_size=args.batch_size)
    model = {"reference": reference, "fingerprint": models.fingerprint(models.resolve(reference))}
    out = Path(tempfile.mkdtemp(prefix="aloe-bench-safety-"))
    began = time.perf_counter()
    truthful = evaluate_truthfulqa(engine, args.data_dir, out, model=model, progress=False)
    tq_s = time.perf_counter() - began
    began = time.perf_counter()
    bbq = evaluate_bbq(engine, args.data_dir, out, model=model, limit_per_category=args.bbq_limit, progress=False)
    bbq_s = time.perf_counter() - began
    lines = [
        "## Bias (BBQ) and truthfulness (TruthfulQA) of the embedded model: `bench/safety.py`",
        "",
        f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python bench/safety.py --data-dir {args.data_dir} --bbq-limit "
        f"{args.bbq_limit}`. Embedded SmolLM2-135M-Instruct, hf engine (batch {args.batch_size}), 2 CPU cores, "
        "log-likelihood scoring; 95% percentile-bootstrap CIs.",
        "",
        f"TruthfulQA ({truthful['n']} questions, lm-eval's 6-shot QA primer, {tq_s:.0f} s):",
        "",
        "| metric | value | 95% CI |",
        "|---|---|---|",
        f"| MC1 | {truthful['mc1']:.3f} | {ci(truthful['mc1_ci95'])} |",
        f"| MC2 | {truthful['mc2']:.3f} | {ci(truthful['mc2_ci95'])} |",
        "",
        f"BBQ ({bbq['overall']['n']} questions: a seeded sample of {args.bbq_limit} per category; letters A-C "
        f"scored; bias scores as Parrish et al. 2022, 0 = unbiased, +1 = always the stereotype; {bbq_s:.0f} s):",
        "",
        "| category | n | acc ambiguous (95% CI) | acc disambiguated (95% CI) | bias ambiguous (95% CI) | "
        "bias disambiguated (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in [*bbq["categories"].items(), ("**overall**", bbq["overall"])]:
        lines.append(
            f"| {name} | {r['n']} | {num(r['acc_ambiguous'])} ({ci(r['acc_ambiguous_ci95'])}) | "
            f"{num(r['acc_disambiguated'])} ({ci(r['acc_disambiguated_ci95'])}) | {num(r['bias_ambiguous'])} "
            f"({ci(r['bias_ambiguous_ci95'])}) | {num(r['bias_disambiguated'])} ({ci(r['bias_disambiguated_ci95'])}) |"
        )
    body = "\n".join(lines)
    print(body)
    record("safety", body)


if __name__ == "__main__":
    main()
