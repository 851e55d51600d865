"""How far bf16-linear log-likelihoods stray from float32 ones, on validation questions only: the measurement behind
``aloekit.evaluation.checked.DEFAULT_ERROR`` (the bound checked scoring trusts).

For each model and formulation (letter, cloze), every option of the validation sets (``bench/sweep.py``'s
val_medmcqa and val_pubmedqa: MedMCQA and PubMedQA training-pool parts no recipe trains on, never a test split) is
scored by the float32 model and by its bf16-linear copy (:func:`aloekit.engines.hf_model.bf16_linears`). It prints
the largest error of one option per sqrt(its tokens), the largest error of the difference between two options of a
question per sqrt(their tokens together), the questions per second of both passes, how often the fast copy alone
predicts what float32 predicts, and the share of questions the checked scorer settles without an exact pass at
the shipped bounds (``aloekit.evaluation.checked``'s defaults, twice the largest errors of the recorded run).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/checked_scoring.py --data-dir ../shared/data \\
        --models smollm2-135m-instruct,/work/runs/rd11/dpo/train/safety/model
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import sweep
from aloekit.config import MCQAConfig
from aloekit.engines.base import LoglikelihoodRequest
from aloekit.engines.hf import HFEngine
from aloekit.evaluation import benchmarks, prompts
from aloekit.evaluation.checked import DEFAULT_DIFFERENCE, DEFAULT_ERROR, decided
from aloekit.evaluation.mcqa import load_benchmarks


def questions(names: list[str], formulation: str) -> tuple[list[list[LoglikelihoodRequest]], list[list[float]]]:
    """Every validation question's option requests and acc_norm lengths, as ``aloe eval`` builds them."""
    loaded = load_benchmarks(MCQAConfig(benchmarks=tuple(names)))
    reqs, lengths = [], []
    for name in names:
        bench = benchmarks.get(name)
        for item in loaded[name][0]:
            ctx = prompts.loglik_context(bench, item, [], formulation)  # type: ignore[arg-type]
            opts = prompts.choices(bench, item, formulation)  # type: ignore[arg-type]
            reqs.append([LoglikelihoodRequest(ctx, prompts.TARGET_DELIMITER + c) for c in opts])
            lengths.append([float(len(c)) for c in opts])
    return reqs, lengths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/checked-scoring"))
    parser.add_argument("--models", default="smollm2-135m-instruct")
    parser.add_argument("--error", type=float, default=DEFAULT_ERROR, help="bound on one option's error")
    parser.add_argument("--difference", type=float, default=DEFAULT_DIFFERENCE, help="bound on a difference's error")
    args = parser.parse_args()
    names = sweep._val_sets(args.data_dir, args.work)
    print(
        "| model | formulation | options | max error / sqrt(tokens) | max difference error / sqrt(tokens) | "
        "q/s float32 | q/s bf16 linears | fast alone predicts as float32 | "
        f"settled at error {args.error}, difference {args.difference} |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    worst = {"error": 0.0, "difference": 0.0}
    for model in args.models.split(","):
        exact = HFEngine.from_reference(model, dtype="float32", batch_size=8)
        fast = exact.bf16_copy()
        for formulation in ("letter", "cloze"):
            reqs, lengths = questions(names, formulation)
            flat = [r for q in reqs for r in q]
            scores = {}
            rate = {}
            for label, engine in (("exact", exact), ("fast", fast)):
                engine.loglikelihood(flat[:16])  # warm-up
                start = time.perf_counter()
                scores[label] = engine.loglikelihood(flat)
                rate[label] = len(reqs) / (time.perf_counter() - start)
            error = difference = 0.0
            settled = same = start = 0
            for q, lens in zip(reqs, lengths, strict=True):
                fast_q = np.array([s.logprob for s in scores["fast"][start : start + len(q)]])
                exact_q = np.array([s.logprob for s in scores["exact"][start : start + len(q)]])
                n = np.array([s.n_tokens for s in scores["exact"][start : start + len(q)]], dtype=np.float64)
                start += len(q)
                e = fast_q - exact_q
                error = max(error, float(np.max(np.abs(e) / np.sqrt(n))))
                difference = max(
                    difference, float(np.max(np.abs(e[:, None] - e[None, :]) / np.sqrt(n[:, None] + n[None, :])))
                )
                settled += decided(fast_q, lens, n.astype(int), error=args.error, difference=args.difference)
                same += int(np.argmax(fast_q) == np.argmax(exact_q))
            worst = {"error": max(worst["error"], error), "difference": max(worst["difference"], difference)}
            print(
                f"| {model} | {formulation} | {len(flat)} | {error:.3f} | {difference:.3f} | {rate['exact']:.1f} | "
                f"{rate['fast']:.1f} | {same / len(reqs):.1%} | {settled / len(reqs):.1%} |",
                flush=True,
            )
    print(
        f"largest over every model and formulation: error {worst['error']:.3f}, difference {worst['difference']:.3f}; "
        f"twice those: {2 * worst['error']:.3f}, {2 * worst['difference']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
