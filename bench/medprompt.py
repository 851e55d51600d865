"""Medprompt on the embedded SmolLM2-135M: the ensemble's cost, and the ablation ladder, in one run.

1. Ensemble cost. The same questions answered with medprompt (kNN few-shot chain-of-thought) once (runs=1, the
   anchor) and as a 5-run choice-shuffle ensemble (runs=5, ours), each from an empty request cache, on the same
   engine. A naive ensemble costs 5x a single run; batching the 5 runs of every question into one engine call
   must keep it at or under 5x.
2. The ladder (``aloe eval --mode medprompt --ablation``): zero-shot -> random few-shot -> + CoT -> + kNN ->
   + choice-shuffle ensemble on the same questions of two benchmarks, each step with its 95% bootstrap CI and the
   paired change from the step before.

The chain-of-thought database is built first from ../shared/data (MedMCQA's expert explanations that agree with
the key, and PubMedQA's labeled non-test questions with their long answers; MedMCQA itself is not evaluated).

    make bench-medprompt     # or: HF_HUB_OFFLINE=1 .venv/bin/python bench/medprompt.py --data-dir ../shared/data

Rewrites the ``medprompt`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from aloekit import models
from aloekit.config import MCQAConfig
from aloekit.data.cot import explanation_cot
from aloekit.data.decontaminate import DecontamConfig
from aloekit.data.schema import MCQItem
from aloekit.data.sources import load_source
from aloekit.data.tally import Tally
from aloekit.engines.hf import HFEngine
from aloekit.evaluation.mcqa import evaluate
from aloekit.prompting.ablation import run_ablation
from aloekit.prompting.index import build_database
from engine import record


def build_db(data_dir: Path, out: Path) -> dict[str, Any]:
    items: list[MCQItem] = []
    for name in ("medmcqa", "pubmedqa"):
        read = [r for r in load_source(name, data_dir=data_dir, tally=Tally()) if isinstance(r, MCQItem)]
        items += [replace(i, explanation=c) for i in read if (c := explanation_cot(i)) is not None]
    return build_database(items, out, decontamination=DecontamConfig(exclude=("medmcqa",)), data_dir=data_dir)


def config(args: argparse.Namespace, db: Path, benchmarks: tuple[str, ...], limit: int, runs: int) -> MCQAConfig:
    return MCQAConfig(
        benchmarks=benchmarks,
        mode="medprompt",
        data_dir=args.data_dir,
        limit=limit,
        medprompt={"database": db, "k": args.k, "runs": runs, "max_tokens": args.max_tokens},
    )


def timed(engine: HFEngine, cfg: MCQAConfig, out: Path, model: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    began = time.perf_counter()
    results = evaluate(engine, cfg, out, model=model, progress=False)
    return time.perf_counter() - began, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    # Two MMLU medical subjects: short prompts, so the ladder's 5 steps over 200 questions fit in about an hour on
    # 2 cores (PubMedQA's abstracts, repeated in every retrieved example, make each prompt 3-4x longer).
    parser.add_argument("--benchmarks", default="mmlu_clinical_knowledge,mmlu_college_medicine")
    parser.add_argument("--questions", type=int, default=100, help="ladder: first N questions of each benchmark")
    parser.add_argument("--cost-questions", type=int, default=8, help="ensemble cost: first N questions")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--skip-ladder", action="store_true")
    parser.add_argument(
        "--ladder-runs", type=int, default=5, help="ensemble size of the ladder's last step (the cost uses 5)"
    )
    parser.add_argument(
        "--work", type=Path, help="folder for the database and the ladder's cache: rerun with it to resume a kill"
    )
    args = parser.parse_args()
    benchmarks = tuple(args.benchmarks.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="aloe-bench-medprompt-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "db"
    if (db / "manifest.json").is_file():
        manifest = json.loads((db / "manifest.json").read_text())
    else:
        manifest = build_db(args.data_dir, db)
    for stale in ("cost-1", "cost-5"):  # the cost runs are timed from an empty cache, every time
        shutil.rmtree(work / stale, ignore_errors=True)
    print(f"database: {manifest['items']} items ({manifest['sources'] or 'medmcqa + pubmedqa'})", flush=True)

    reference = models.DEFAULT_MODEL
    engine = HFEngine.from_reference(reference, batch_size=args.batch_size)
    model = {"reference": reference, "fingerprint": models.fingerprint(models.resolve(reference))}
    cost_cfg = config(args, db, benchmarks[:1], args.cost_questions, 1)
    single_s, single = timed(engine, cost_cfg, work / "cost-1", model)
    print(f"ensemble cost: runs=1 {single_s:.1f} s", flush=True)
    ensemble_s, ensemble = timed(
        engine,
        cost_cfg.model_copy(update={"medprompt": cost_cfg.medprompt.model_copy(update={"runs": 5})}),
        work / "cost-5",
        model,
    )
    print(f"ensemble cost: runs=5 {ensemble_s:.1f} s ({ensemble_s / single_s:.2f}x)", flush=True)

    lines = [
        "## Medprompt on the embedded model: ensemble cost"
        + (" (re-measured alone, --skip-ladder)" if args.skip_ladder else " and ablation ladder")
        + ": `bench/medprompt.py`",
        "",
        f"Command: `bench/medprompt.py --data-dir {args.data_dir} --benchmarks {args.benchmarks} --questions "
        f"{args.questions} --k {args.k} --max-tokens {args.max_tokens} --cost-questions {args.cost_questions} "
        f"--ladder-runs {args.ladder_runs}`. "
        f"Embedded SmolLM2-135M-Instruct, hf engine (batch {args.batch_size}), "
        f"2 CPU cores. Database: {manifest['items']} verified examples (MedMCQA expert explanations that agree "
        "with the key, PubMedQA labeled non-test long answers), all-MiniLM-L6-v2, decontaminated against every "
        "benchmark in ../shared/data except MedMCQA (not evaluated here).",
        "",
        f"Ensemble cost ({args.cost_questions} questions of {benchmarks[0]}, k={args.k}, greedy, empty cache each):",
        "",
        "| | anchor: one run | ours: 5-run choice-shuffle ensemble | ratio | target |",
        "|---|---|---|---|---|",
        f"| seconds | {single_s:.1f} | {ensemble_s:.1f} | {ensemble_s / single_s:.2f}x | <= 5x |",
        f"| accuracy | {single['benchmarks'][benchmarks[0]]['acc']:.3f} | "
        f"{ensemble['benchmarks'][benchmarks[0]]['acc']:.3f} | | |",
    ]
    if not args.skip_ladder:
        # The cost is recorded now: the ladder takes about an hour, and a kill must not lose this measurement.
        record("medprompt", "\n".join([*lines, "", "Ablation ladder: running (rerun with --work to resume it)."]))
        ladder_cfg = config(args, db, benchmarks, args.questions, args.ladder_runs)
        result = run_ablation(engine, ladder_cfg, work / "ladder", model=model, progress=False)
        lines += [
            "",
            f"Ablation ladder ({', '.join(benchmarks)}, first {args.questions} questions each, ensemble of "
            f"{args.ladder_runs} runs in the last step, "
            f"n={result['steps'][0]['n']}; accuracy with 95% bootstrap CI; change: paired bootstrap CI against the "
            "step before):",
            "",
            "| step | acc | 95% CI | change (95% CI) | " + " | ".join(benchmarks) + " | seconds |",
            "|---|---|---|---|" + "---|" * len(benchmarks) + "---|",
        ]
        for s in result["steps"]:
            change = ""
            if "change" in s:
                c = s["change"]
                change = f"{c['delta']:+.3f} ({c['delta_ci95'][0]:+.3f}, {c['delta_ci95'][1]:+.3f})"
            per = " | ".join(
                f"{s['benchmarks'][b]['acc']:.3f} ({s['benchmarks'][b]['acc_ci95'][0]:.2f}-"
                f"{s['benchmarks'][b]['acc_ci95'][1]:.2f})"
                for b in benchmarks
            )
            lines.append(
                f"| {s['step']} | {s['acc']:.3f} | {s['acc_ci95'][0]:.3f}-{s['acc_ci95'][1]:.3f} | {change} | {per} "
                f"| {s['seconds']} |"
            )
        print(json.dumps(result["steps"], indent=1), flush=True)
    engine.close()
    body = "\n".join(lines)
    print(body)
    # --skip-ladder re-measures the cost alone (e.g. on a quiet machine) without replacing a recorded ladder.
    record("medprompt_cost" if args.skip_ladder else "medprompt", body)
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
