"""GGUF round trip: a model exported by ``aloe export gguf`` and run by the llamacpp engine, against the same
model in the hf engine (fp32, the reference), in one run.

For each model and each GGUF type (f16, bf16, q8_0, q4_k_m):
* top-1 next-token agreement on chat prompts (MedicationQA questions, greedy, one token);
* MCQA on the first N questions of a benchmark (letter formulation, log-likelihood): the share of identical
  predictions, the largest absolute log-likelihood difference of the answer continuations, and the accuracy
  difference against hf with a paired bootstrap 95% CI.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/roundtrip.py --data-dir ../shared/data [--also RUN/dpo/train/safety/model]

Rewrites the ``roundtrip`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from aloekit import models
from aloekit.engines import GenerationRequest, LoglikelihoodRequest
from aloekit.engines.hf import HFEngine
from aloekit.engines.llamacpp import LlamaCppEngine
from aloekit.evaluation import benchmarks, prompts
from aloekit.evaluation.prompts import TARGET_DELIMITER
from aloekit.evaluation.stats import paired_bootstrap_diff
from engine import record

LEVELS = ("f16", "bf16", "q8_0", "q4_k_m")


def chat_prompts(data_dir: Path, n: int) -> list[GenerationRequest]:
    rows = json.loads((data_dir / "medicationqa" / "derived_medicationqa.json").read_text())
    questions = list(dict.fromkeys(str(r["Question"]).strip() for r in rows if str(r.get("Question", "")).strip()))
    return [GenerationRequest(messages=({"role": "user", "content": q},), max_tokens=1) for q in questions[:n]]


def mcqa(data_dir: Path, name: str, n: int) -> tuple[list[LoglikelihoodRequest], list[int], list[int]]:
    """Requests (every option of every question), options per question, gold indices."""
    bench = benchmarks.get(name)
    items = benchmarks.load(bench, data_dir)[:n]
    requests, sizes = [], []
    for item in items:
        context = prompts.loglik_context(bench, item)
        options = prompts.choices(bench, item)
        requests += [LoglikelihoodRequest(context, TARGET_DELIMITER + c) for c in options]
        sizes.append(len(options))
    return requests, sizes, [item.answer for item in items]


def per_question(values: list[float], sizes: list[int]) -> list[np.ndarray]:
    out, at = [], 0
    for k in sizes:
        out.append(np.array(values[at : at + k]))
        at += k
    return out


def measure(
    engine: Any, chats: list[GenerationRequest], requests: list[LoglikelihoodRequest], sizes: list[int]
) -> tuple[list[str], list[np.ndarray], float]:
    """First tokens of ``chats``, per-question option log-likelihoods and the seconds both took; closes ``engine``."""
    try:
        start = time.perf_counter()
        top1 = [g.text for g in engine.generate(chats)]
        ll = per_question([r.logprob for r in engine.loglikelihood(requests)], sizes)
        return top1, ll, time.perf_counter() - start
    finally:
        engine.close()


def compare(model: str, args: argparse.Namespace) -> list[str]:
    folder = str(models.resolve(model).path)
    chats = chat_prompts(args.data_dir, args.prompts)
    requests, sizes, gold = mcqa(args.data_dir, args.benchmark, args.questions)
    # fp32: the reference
    hf_top1, hf_ll, hf_seconds = measure(HFEngine.from_reference(folder, batch_size=8), chats, requests, sizes)
    hf_pred = np.array([int(q.argmax()) for q in hf_ll])
    hf_correct = (hf_pred == np.array(gold)).astype(float)
    lines = [
        f"| {model} | hf fp32 (reference) | - | - | - | {hf_correct.mean():.3f} | - | {hf_seconds:.0f} |",
    ]
    for level in LEVELS:
        cpp = LlamaCppEngine.from_reference(folder, quant=level, batch_size=16)
        top1, ll, seconds = measure(cpp, chats, requests, sizes)
        agree = np.mean([a == b for a, b in zip(top1, hf_top1, strict=True)])
        pred = np.array([int(q.argmax()) for q in ll])
        same = float((pred == hf_pred).mean())
        max_diff = max(float(np.abs(a - b).max()) for a, b in zip(ll, hf_ll, strict=True))
        correct = (pred == np.array(gold)).astype(float)
        diff = paired_bootstrap_diff(correct, hf_correct, seed=0)
        lines.append(
            f"| {model} | llamacpp {level} | {agree:.1%} | {same:.1%} | {max_diff:.4f} | {correct.mean():.3f} | "
            f"{diff.delta:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}] | {seconds:.0f} |"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--model", default=models.DEFAULT_MODEL)
    parser.add_argument("--also", action="append", default=[], help="another model (e.g. a recipe's final model)")
    parser.add_argument("--benchmark", default="medexqa")
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    header = [
        "| model | engine | top-1 next token = hf | MCQA prediction = hf | max abs log-lik diff | accuracy | "
        "accuracy - hf [95% CI] | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines = list(header)
    for model in (args.model, *args.also):
        lines += compare(model, args)
    table = "\n".join(lines)
    print(table)
    if not args.no_record:
        also = "".join(f" --also {m}" for m in args.also)
        record(
            "roundtrip",
            "## GGUF round trip: `bench/roundtrip.py`\n\n"
            f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python bench/roundtrip.py --data-dir {args.data_dir}{also}`, "
            f"{time.strftime('%Y-%m-%d')}, 2 CPU cores. Each model exported by `aloe export gguf`'s code path at each "
            f"type and run by the llamacpp engine; the reference is the same folder in the hf engine in fp32. "
            f"Top-1: {args.prompts} MedicationQA chat prompts, greedy first token. MCQA: the first {args.questions} "
            f"{args.benchmark} questions, letter formulation, zero-shot; paired bootstrap over questions. Seconds: "
            "both measurements of one engine, loading excluded.\n\n"
            f"{table}\n",
        )
        print("recorded in bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
