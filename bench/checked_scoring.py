"""How far the bf16 copy's log-likelihoods stray from float32 ones, on validation questions only: the measurement behind
``aloekit.evaluation.checked``'s bounds (what checked scoring trusts), split by question class: ``one-token`` (every
option a single token, read from one position of one forward pass: letters, yes/no/maybe) and ``longer``.

For each model and formulation (letter, cloze), every option of the validation sets (``bench/sweep.py``'s
val_medmcqa and val_pubmedqa: MedMCQA and PubMedQA training-pool parts no recipe trains on, never a test split) is
scored by the float32 model and by its copy with bf16 attention and MLP blocks
(:func:`aloekit.engines.hf_model.bf16_blocks`, what checked scoring's fast pass runs). It prints
the largest error of one option per sqrt(its tokens), the largest error of the difference between two options of a
question per sqrt(their tokens together), how often the fast copy alone
predicts what float32 predicts, and the share of questions the checked scorer settles without an exact pass at
the shipped bounds (``aloekit.evaluation.checked``'s defaults, twice the largest errors of the recorded run);
the questions per second of both passes go to stderr (speed belongs to ``bench/mcqa_parity.py``).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/checked_scoring.py --data-dir ../shared/data \\
        --models smollm2-135m-instruct,/work/runs/rd15/sft/train/model,/work/runs/rd15/dpo/train/safety/model
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


CLASSES = ("one-token", "longer")


def question_class(n_tokens: list[int]) -> str:
    """Whether every option of a question is one token (a class whose errors might differ: reported apart)."""
    return "one-token" if all(n == 1 for n in n_tokens) else "longer"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/checked-scoring"))
    parser.add_argument("--models", default="smollm2-135m-instruct")
    args = parser.parse_args()
    names = sweep._val_sets(args.data_dir, args.work)
    print(
        "| model | formulation | class | options | max error / sqrt(tokens) | max difference error / sqrt(tokens) | "
        "fast alone predicts as float32 | settled at the shipped bounds |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    worst = {c: {"error": 0.0, "difference": 0.0} for c in CLASSES}
    for model in args.models.split(","):
        exact = HFEngine.from_reference(model, dtype="float32", batch_size=8)
        fast = exact.bf16_copy()
        for formulation in ("letter", "cloze"):
            reqs, lengths = questions(names, formulation)
            flat = [r for q in reqs for r in q]
            scores = {}
            for label, engine in (("exact", exact), ("fast", fast)):
                start = time.perf_counter()
                scores[label] = engine.loglikelihood(flat)
                print(
                    f"{model} {formulation} {label}: {len(reqs) / (time.perf_counter() - start):.1f} q/s",
                    file=sys.stderr,
                )
            row = {c: {"options": 0, "error": 0.0, "difference": 0.0, "settled": 0, "same": 0, "n": 0} for c in CLASSES}
            start = 0
            for q, lens in zip(reqs, lengths, strict=True):
                fast_q = np.array([s.logprob for s in scores["fast"][start : start + len(q)]])
                exact_q = np.array([s.logprob for s in scores["exact"][start : start + len(q)]])
                counts = [s.n_tokens for s in scores["exact"][start : start + len(q)]]
                n = np.array(counts, dtype=np.float64)
                start += len(q)
                kind = question_class(counts)
                r = row[kind]
                e = fast_q - exact_q
                r["error"] = max(r["error"], float(np.max(np.abs(e) / np.sqrt(n))))
                r["difference"] = max(
                    r["difference"], float(np.max(np.abs(e[:, None] - e[None, :]) / np.sqrt(n[:, None] + n[None, :])))
                )
                r["settled"] += decided(fast_q, lens, counts, error=DEFAULT_ERROR, difference=DEFAULT_DIFFERENCE)
                r["same"] += int(np.argmax(fast_q) == np.argmax(exact_q))
                r["n"] += 1
                r["options"] += len(q)
            for kind, r in row.items():
                if not r["n"]:
                    continue
                for key in ("error", "difference"):
                    worst[kind][key] = max(worst[kind][key], r[key])
                print(
                    f"| {model} | {formulation} | {kind} | {r['options']} | {r['error']:.3f} | {r['difference']:.3f} | "
                    f"{r['same'] / r['n']:.1%} | {r['settled'] / r['n']:.1%} of {r['n']} |",
                    flush=True,
                )
    for kind, w in worst.items():
        print(
            f"{kind}: largest of every model and formulation: error {w['error']:.3f}, difference {w['difference']:.3f}"
        )
    error = max(w["error"] for w in worst.values())
    difference = max(w["difference"] for w in worst.values())
    print(
        f"largest over both classes: error {error:.3f}, difference {difference:.3f}; twice those: {2 * error:.3f}, "
        f"{2 * difference:.3f}; shipped {DEFAULT_ERROR}, {DEFAULT_DIFFERENCE}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
