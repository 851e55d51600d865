"""MCQA parity and speed against EleutherAI lm-evaluation-harness, same model, same files, same batch size.

For each benchmark, lm-eval runs its own task (its prompt, its metric), pointed at the local files through a task
YAML that includes the upstream task and only swaps the dataset for local JSON lines; aloekit runs ``aloe eval``'s
code path on the same model object. The script then compares per-question predictions (argmax of the options'
log-likelihoods), accuracies, and questions per second (wall clock of the whole evaluation call, loading
included, both sides, after an untimed warm-up of both on the first benchmark's first 8 questions).

    .venv/bin/pip install lm_eval        # the anchor; not a dependency of aloekit
    HF_HUB_OFFLINE=1 .venv/bin/python bench/mcqa_parity.py --data-dir ../shared/data

Rewrites the ``mcqa`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from aloekit import models
from aloekit.config import MCQAConfig
from aloekit.engines.hf import HFEngine
from aloekit.evaluation.mcqa import evaluate
from engine import record


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def lm_eval_tasks(data_dir: Path, work: Path) -> dict[str, str]:
    """Write lm-eval task YAMLs over local copies of the files; return {our benchmark name: lm-eval task name}."""
    import lm_eval

    upstream = Path(lm_eval.__file__).parent / "tasks"
    tasks: dict[str, str] = {}

    # MMLU anatomy: the original CSV (no header) -> the Hub layout lm-eval's template reads.
    def mmlu_rows(path: Path) -> list[dict[str, Any]]:
        rows = []
        with path.open(newline="", encoding="utf-8") as f:
            for q, a, b, c, d, ans in csv.reader(f):
                rows.append({"question": q, "choices": [a, b, c, d], "answer": "ABCD".index(ans.strip())})
        return rows

    test = _jsonl(work / "anatomy_test.jsonl", mmlu_rows(data_dir / "mmlu_medical/test/anatomy_test.csv"))
    dev = _jsonl(work / "anatomy_dev.jsonl", mmlu_rows(data_dir / "mmlu_medical/dev/anatomy_dev.csv"))
    (work / "mmlu_anatomy_local.yaml").write_text(
        f"include: {upstream / 'mmlu/default/mmlu_anatomy.yaml'}\n"
        "task: mmlu_anatomy_local\ntag: []\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {test}\n    dev: {dev}\n"
    )
    tasks["mmlu_anatomy"] = "mmlu_anatomy_local"

    # PubMedQA: the labeled set restricted to the official test PMIDs, in the ground-truth file's order.
    docs = json.loads((data_dir / "pubmedqa/ori_pqal.json").read_text())
    truth = json.loads((data_dir / "pubmedqa/test_ground_truth.json").read_text())
    rows = [{**docs[pmid], "PUBMED_ID": pmid} for pmid in truth]
    test = _jsonl(work / "pubmedqa_test.jsonl", rows)
    (work / "pubmedqa_local.yaml").write_text(
        f"include: {upstream / 'pubmedqa/pubmedqa.yaml'}\n"
        "task: pubmedqa_local\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    test: {test}\n"
        "training_split: null\nvalidation_split: null\ntest_split: test\n"
    )
    tasks["pubmedqa"] = "pubmedqa_local"

    # MedMCQA: the MIRAGE copy's cop is 1-based; lm-eval reads the Hub's 0-based cop.
    rows = [
        {**r, "cop": r["cop"] - 1}
        for r in map(json.loads, (data_dir / "medmcqa/dev.jsonl").read_text().splitlines())
        if r
    ]
    test = _jsonl(work / "medmcqa_validation.jsonl", rows)
    (work / "medmcqa_local.yaml").write_text(
        f"include: {upstream / 'medmcqa/medmcqa.yaml'}\n"
        "task: medmcqa_local\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    validation: {test}\n"
        "training_split: null\nvalidation_split: validation\ntest_split: validation\n"
    )
    tasks["medmcqa"] = "medmcqa_local"
    return tasks


def run_lm_eval(
    engine: HFEngine, task: str, include: Path, limit: int, batch_size: int, shots: int
) -> tuple[list[int], float, int]:
    """(predictions in doc order, seconds, n) from lm-eval's HFLM wrapping the same model object."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=engine.model, tokenizer=engine.tokenizer, batch_size=batch_size, device=str(engine.device))
    manager = TaskManager(include_path=str(include))
    start = time.perf_counter()
    out = simple_evaluate(
        model=lm, tasks=[task], task_manager=manager, limit=limit, log_samples=True, num_fewshot=shots
    )
    seconds = time.perf_counter() - start
    samples = sorted(out["samples"][task], key=lambda s: s["doc_id"])
    preds = [int(np.argmax([float(r[0]) for r in s["filtered_resps"]])) for s in samples]
    return preds, seconds, len(samples)


def run_ours(
    engine: HFEngine, name: str, data_dir: Path, limit: int, shots: int, out: Path, scoring: str
) -> tuple[list[int], float, float, dict[str, Any]]:
    """(predictions, seconds, accuracy, checked scoring's record or {}) from ``aloe eval``'s code path."""
    config = MCQAConfig(
        benchmarks=(name,), data_dir=data_dir, limit=limit, num_fewshot=shots, checkpoint_every=10_000, scoring=scoring
    )
    start = time.perf_counter()
    results = evaluate(engine, config, out, model={"reference": "bench", "fingerprint": "bench"}, progress=False)
    seconds = time.perf_counter() - start
    preds = [json.loads(line)["pred"] for line in (out / "samples.jsonl").read_text().splitlines()]
    return preds, seconds, float(results["benchmarks"][name]["acc"]), results.get("scoring", {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", default=models.DEFAULT_MODEL)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--runs",
        default="mmlu_anatomy=135,mmlu_anatomy@5=135,pubmedqa=200,medmcqa=400",
        help="benchmark[@shots]=first-N questions, comma-separated",
    )
    parser.add_argument(
        "--scoring",
        default="exact,checked-bf16",
        help="aloekit's scorings to time against lm-eval, comma-separated (exact, checked-bf16)",
    )
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    scorings = args.scoring.split(",")
    runs = []
    for part in args.runs.split(","):
        spec, limit = part.split("=")
        name, _, shots = spec.partition("@")
        runs.append((name, int(shots or 0), int(limit)))

    engine = HFEngine.from_reference(args.model, batch_size=args.batch_size, dtype="float32")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tasks = lm_eval_tasks(args.data_dir, work)
        # Untimed warm-up of both sides (imports, oneDNN kernel set-up, lm-eval's task machinery): otherwise
        # whichever side runs first in the process pays for it.
        name, shots, _ = runs[0]
        run_lm_eval(engine, tasks[name], work, 8, args.batch_size, shots)
        for scoring in scorings:
            run_ours(engine, name, args.data_dir, 8, shots, work / f"warm-up-{scoring}", scoring)
        for name, shots, limit in runs:
            label = f"{name} ({shots}-shot)"
            ours: dict[str, tuple[list[int], float, float, dict[str, Any]]] = {}
            # Alternate the order per benchmark so neither side always runs on a warmer machine.
            ours_first = len(rows) % 2 == 0
            if not ours_first:
                theirs, theirs_s, n = run_lm_eval(engine, tasks[name], work, limit, args.batch_size, shots)
            for scoring in scorings:
                out = work / f"ours-{label}-{scoring}"
                ours[scoring] = run_ours(engine, name, args.data_dir, limit, shots, out, scoring)
            if ours_first:
                theirs, theirs_s, n = run_lm_eval(engine, tasks[name], work, limit, args.batch_size, shots)
            first = work / f"ours-{label}-{scorings[0]}/samples.jsonl"
            gold = [json.loads(line)["gold"] for line in first.read_text().splitlines()]
            theirs_acc = float(np.mean([p == g for p, g in zip(theirs, gold, strict=True)]))
            row: dict[str, Any] = {"label": label, "n": n, "acc_lm_eval": theirs_acc, "qps_lm_eval": n / theirs_s}
            for scoring, (preds, seconds, acc, checked) in ours.items():
                if len(preds) != n:
                    raise SystemExit(f"{label}: lm-eval scored {n} questions, aloekit ({scoring}) {len(preds)}")
                row[scoring] = {
                    "same": float(np.mean([a == b for a, b in zip(preds, theirs, strict=True)])),
                    "acc": acc,
                    "qps": n / seconds,
                    "rescored": checked.get("rescored_in_fp32"),
                    "exact_only_after": checked.get("exact_only_after"),
                }
            rows.append(row)
            print(row, flush=True)

    header = "| benchmark | questions | acc lm-eval | q/s lm-eval (anchor) |"
    rule = "|---|---:|---:|---:|"
    for scoring in scorings:
        header += f" {scoring}: same prediction | acc | q/s | speed-up |"
        rule += "---:|---:|---:|---:|"
    lines = [header, rule]
    for row in rows:
        line = f"| {row['label']} | {row['n']} | {row['acc_lm_eval']:.3f} | {row['qps_lm_eval']:.2f} |"
        for scoring in scorings:
            r = row[scoring]
            notes = [f"{r['rescored']} re-scored in fp32"] if r["rescored"] is not None else []
            if r.get("exact_only_after") is not None:  # the scorer gave up on the bf16 pass (checked.GIVE_UP)
                notes.append(f"float32 alone after question {r['exact_only_after']}")
            rescored = f" ({'; '.join(notes)})" if notes else ""
            line += (
                f" {r['same']:.1%} | {r['acc']:.3f} | {r['qps']:.2f}{rescored} | {r['qps'] / row['qps_lm_eval']:.2f}x |"
            )
        lines.append(line)
    table = "\n".join(lines)
    print(table)
    if not args.no_record:
        from importlib.metadata import version

        import torch

        record(
            "mcqa",
            "## MCQA parity and speed against lm-evaluation-harness: `bench/mcqa_parity.py`\n\n"
            "Command: `make bench-mcqa` (= `HF_HUB_OFFLINE=1 .venv/bin/python bench/mcqa_parity.py "
            f"--data-dir ../shared/data --runs {args.runs} --scoring {args.scoring}`), {time.strftime('%Y-%m-%d')}.\n"
            f"{args.model}, fp32 weights on {engine.device} ({torch.get_num_threads()} threads), batch size "
            f"{args.batch_size} on both sides, log-likelihood scoring; lm-eval {version('lm_eval')} (`--model hf` "
            "wrapping the same model object) with its own task YAMLs pointed at the same local files; "
            "the first N questions of each benchmark; wall clock of the whole evaluation call on both sides, "
            "measured in the same run, after an untimed warm-up of both on 8 questions. aloekit's scorings: "
            "`exact` (float32 throughout) and `checked-bf16` (a copy "
            "with bf16 attention and MLP blocks scores every option; questions whose answer its rounding could "
            "change, by the bound `bench/checked_scoring.py` measured on validation questions, are re-scored in "
            "float32, and when more than 60% of the first 64 need that, float32 alone scores the rest; the copy is "
            "made inside the timed call).\n\n"
            f"{table}\n",
        )
        print("recorded in bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
