"""One safety evaluation of one model: red-teaming and over-refusal, optionally BBQ and TruthfulQA, then the
risk assessment from what was measured. ``aloe safety`` and the recipe's safety stage both call
:func:`evaluate_safety`, so a model is judged the same way whichever way it was started."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aloekit.engines import Engine
from aloekit.io import atomic_write_text, read_jsonl, write_json

__all__ = ["evaluate_safety"]


def evaluate_safety(
    engine: Engine,
    judge: Any,
    out: Path,
    *,
    suites: Sequence[str],
    styles: Sequence[str],
    data_dir: Path | None,
    limit: int | None,
    max_tokens: int,
    seed: int,
    model: dict[str, Any],
    bias: bool = False,
    bbq_limit: int | None = None,
    truthfulness: bool = False,
    truthfulqa_limit: int | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Write ``out``/results.json, samples.jsonl and risk.md (plus bbq/ and truthfulqa/ when asked); return the
    results. Every part caches its replies or scores, so a killed call resumes where it stopped."""
    from aloekit.evaluation.redteam import run_redteam
    from aloekit.safety.risk import assess, markdown

    results = run_redteam(
        engine,
        judge,
        out,
        suites=list(suites),
        styles=list(styles),
        data_dir=data_dir,
        limit=limit,
        max_tokens=max_tokens,
        seed=seed,
        model=model,
        progress=progress,
        log=log,
    )
    truthful = None
    if truthfulness:
        from aloekit.evaluation.truthfulness import evaluate_truthfulqa

        truthful = evaluate_truthfulqa(
            engine, data_dir, out, model=model, limit=truthfulqa_limit, seed=seed, progress=progress
        )
        results["truthfulqa"] = truthful
    if bias:
        from aloekit.evaluation.bias import evaluate_bbq

        if data_dir is None:
            raise ValueError("bias (BBQ) reads its files from the data folder")
        results["bbq"] = evaluate_bbq(
            engine, data_dir, out, model=model, limit_per_category=bbq_limit, seed=seed, progress=progress
        )
    # The risks this run has evidence for (MCQA evidence joins them in the full report).
    replies = [row["reply"] for _, row in read_jsonl(out / "samples.jsonl")]
    truth_evidence = None
    if truthful is not None:
        truth_evidence = {"n": truthful["n"], "mc1": truthful["mc1"], "mc1_ci95": truthful["mc1_ci95"]}
    risks = assess(redteam=results, replies=replies, truthfulqa=truth_evidence, seed=seed)
    atomic_write_text(out / "risk.md", markdown(risks))
    if truthful is not None or bias:
        # run_redteam wrote results.json before BBQ and TruthfulQA ran: rewrite it with them.
        write_json(out / "results.json", results, ensure_ascii=False)
    return results
