"""SFT hyperparameter sweep on VALIDATION data carved from the training sources (never a test split).

The real-data recipe's SFT settings (learning rate, steps, LoRA vs full fine-tuning, max length) are chosen here,
with the recipe's own code paths: ``aloe data build`` (mixture), ``aloe train sft`` (TRL wrapper) and the
log-likelihood evaluation (letter formulation, lm-eval prompts).

Validation sets, disjoint from every training sample by construction (``part`` = a hash of the item id, the same
parts the recipe uses):
    val_medmcqa   MedMCQA (its local copy is the validation split the recipe trains on) items in part [0.9, 1),
                  4-option, scored with MedQA's lm-eval prompt (letters);
    val_pubmedqa  PubMedQA PQA-L training-pool items (never the 500 official test PMIDs) in part [0.9, 1),
                  scored like lm-eval's pubmedqa (the words yes / no / maybe after the abstract).
Each point trains from the base model and is scored at checkpoints, so one run gives the curve over steps.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/sweep.py --data-dir ../shared/data --work /work/sweep \
        --point full:1e-4 --point lora64:5e-4 --steps 60 --eval-every 20

Rewrites the ``sweep`` section of bench/RESULTS.md and writes WORK/sweep.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from engine import record

VAL_PART = (0.9, 1.0)
SFT_MEDMCQA_PART = (0.0, 0.75)  # [0.75, 0.9) is left for the DPO pairs, as in recipes/real-data.yaml


def _val_sets(data_dir: Path, work: Path) -> list[str]:
    """Write the validation files (aloekit's MCQ JSON lines) and register them as benchmarks."""
    from aloekit.data.mixture import SourceEntry, load_entry
    from aloekit.data.tally import Tally
    from aloekit.evaluation import benchmarks

    work.mkdir(parents=True, exist_ok=True)
    names = []
    for name, source, prompt, choices in (
        ("val_medmcqa", "medmcqa", "medqa", "labels"),
        ("val_pubmedqa", "pubmedqa", "pubmedqa", "texts"),
    ):
        items = load_entry(SourceEntry(source=source, part=VAL_PART), data_dir, Tally())
        if source == "medmcqa":
            items = [i for i in items if len(i.options) == 4]
        path = work / f"{name}.jsonl"
        path.write_text("".join(json.dumps(i.to_json(), ensure_ascii=False) + "\n" for i in items))
        benchmarks.REGISTRY[name] = benchmarks.Benchmark(
            name=name, format="mcq", prompt=prompt, local=str(path), hub=None, choices=choices
        )
        gold = Counter(i.answer for i in items)
        print(f"{name}: {len(items)} items, gold {dict(sorted(gold.items()))}", flush=True)
        names.append(name)
    return names


def _mixture(
    data_dir: Path,
    out: Path,
    plain_share: float,
    cap_instructions: int,
    rotations: int,
    cap_medmcqa: int | None,
    known: int = 0,
) -> dict[str, Any]:
    from aloekit.data.mixture import MixtureConfig, build

    if (out / "train.jsonl").is_file():
        return json.loads((out / "stats.json").read_text()) if (out / "stats.json").is_file() else {}
    medmcqa: dict[str, Any] = {"source": "medmcqa", "part": SFT_MEDMCQA_PART, "cap": cap_medmcqa}
    if known:  # the recipe's own filter (aloekit.data.known), scored by the responder
        medmcqa["known"] = {"scan": known}
    config = MixtureConfig(
        data_dir=data_dir,
        seed=0,
        validation=0.03,
        sources=[
            medmcqa,
            {"source": "pubmedqa", "part": (0.0, VAL_PART[0])},
            {"source": "medexqa"},
            {"source": "medical_meadow", "cap": cap_instructions},
            {"source": "medicationqa", "cap": cap_instructions // 2},
        ],
        responder={"model": "smollm2-135m-instruct", "batch_size": 16, "dtype": "bfloat16"} if known else None,
        mcq={"rotations": rotations, "plain_share": plain_share}
        if rotations > 1
        else {"balance_letters": True, "plain_share": plain_share},
        decontamination={"exclude": ["medmcqa"]},
    )
    return build(config, out, log=lambda m: print(f"  data: {m}", flush=True))


def _evaluate(
    model: Path, names: list[str], out: Path, dtype: str, formulation: str = "letter", max_tokens: int | None = None
) -> dict[str, Any]:
    """``model`` scored on the validation sets; with ``max_tokens``, answering in the chat template instead
    (generative, greedy, at most that many new tokens) as the recipe's generative formulation does."""
    from aloekit import models
    from aloekit.config import EngineConfig, MCQAConfig
    from aloekit.evaluation.mcqa import evaluate

    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text())
    engine = EngineConfig(model=str(model), dtype=dtype, batch_size=16).load()
    try:
        return evaluate(
            engine,
            MCQAConfig(benchmarks=names, formulation=formulation)
            if max_tokens is None
            else MCQAConfig(benchmarks=names, mode="generate", max_tokens=max_tokens, num_fewshot=0),
            out,
            model=models.record(str(model), "hf"),
            progress=False,
        )
    finally:
        engine.close()


def _follows(letter_dir: Path, cloze_dir: Path, bench: str = "val_medmcqa") -> float:
    """Share of ``bench``'s questions whose letter answer is the option the base model scores best as text."""

    def answers(folder: Path, key: str) -> dict[str, int]:
        rows = (json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines())
        return {r["id"]: r[key] for r in rows if r["benchmark"] == bench}

    letter, cloze = answers(letter_dir, "pred"), answers(cloze_dir, "pred_norm")
    return sum(letter[i] == cloze[i] for i in letter) / len(letter)


def _score(results: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, r in results["benchmarks"].items():
        out[name] = {"acc": r["acc"], "ci": r.get("acc_ci95"), "n": r["n"], "predicted": r.get("predicted")}
        if "unparseable_rate" in r:
            out[name]["unparseable"] = r["unparseable_rate"]
    out["mean"] = sum(v["acc"] for v in out.values()) / len(out)
    return out


def _merge_point(spec: str, sft: Path, args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """DARE-TIES of the SFT model with the instruct model over the base, as the recipe's merge stage does, with
    ``spec`` = "SFT_WEIGHT:DENSITY" (the instruct model gets 1 - SFT_WEIGHT at the same density)."""
    import yaml

    from aloekit.merge.run import merge

    weight, density = (float(x) for x in spec.split(":"))
    out = args.work / f"merge-{weight}-{density}"
    if not (out / "model" / "config.json").is_file():
        config = {
            "merge_method": "dare_ties",
            "base_model": args.model,
            "models": [
                {"model": str(sft), "parameters": {"weight": weight, "density": density}},
                {"model": args.model, "parameters": {"weight": round(1 - weight, 6), "density": density}},
            ],
            "parameters": {"normalize": True},
            "dtype": "float32",
        }
        out.mkdir(parents=True, exist_ok=True)
        (out / "merge.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        merge(out / "merge.yaml", out / "model", seed=0, overwrite=True)
    scores = _score(_evaluate(out / "model", names, out / "eval", args.eval_dtype))
    return {"point": f"merge sft {weight} / instruct {round(1 - weight, 6)}, density {density}", "step": "", **scores}


def _point(spec: str) -> dict[str, Any]:
    kind, lr = spec.split(":")
    if kind == "full":
        return {"name": spec, "lora": None, "learning_rate": float(lr)}
    if kind.startswith("lora"):
        r = int(kind.removeprefix("lora") or 16)
        lora = {"r": r, "alpha": 2 * r, "dropout": 0.0, "target_modules": "all-linear"}
        return {"name": spec, "lora": lora, "learning_rate": float(lr)}
    raise SystemExit(f"--point {spec}: use full:LR or loraR:LR")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/aloe-sweep"))
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--point", action="append", default=[], help="full:LR or loraR:LR (repeatable)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--batch", type=int, default=4, help="packed rows per micro-batch")
    parser.add_argument("--accumulation", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--plain-share", type=float, default=0.5)
    parser.add_argument("--instructions", type=int, default=600, help="Medical Meadow cap (MedicationQA: half)")
    parser.add_argument(
        "--rotations", type=int, default=4, help="each MCQ taught at this many letters (1: letters dealt evenly)"
    )
    parser.add_argument("--cap-medmcqa", type=int, default=4000, help="MedMCQA samples (rotated copies included)")
    parser.add_argument("--scheduler", default="cosine", help="learning-rate schedule after warmup")
    parser.add_argument(
        "--known",
        type=int,
        default=0,
        help="scan this many MedMCQA SFT questions with the base model's cloze scores and train only on those it "
        "already answers right (0: train on all)",
    )
    parser.add_argument(
        "--merge", action="append", default=[], help="SFT_WEIGHT:DENSITY of a DARE-TIES merge of the last point"
    )
    parser.add_argument("--section", default="sweep", help="bench/RESULTS.md section the table is written to")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--eval-dtype", default="bfloat16")
    args = parser.parse_args()
    from aloekit import models
    from aloekit.train.sft import SFTRunConfig, train_sft

    started = time.time()
    names = _val_sets(args.data_dir, args.work)
    base = models.resolve(args.model).path
    data = args.work / f"data-plain{args.plain_share}-instr{args.instructions}-rot{args.rotations}-{args.cap_medmcqa}"
    if args.known:
        data = data.with_name(data.name + f"-known{args.known}")
    stats = _mixture(
        args.data_dir, data, args.plain_share, args.instructions, args.rotations, args.cap_medmcqa, args.known
    )
    print(f"mixture: {stats.get('train')} train / {stats.get('validation')} validation samples", flush=True)
    rows: list[dict[str, Any]] = []
    # The base model's cloze answers (option texts scored): what a letter format that follows the option texts
    # would answer, and its accuracy the ceiling of such a letter format.
    cloze_dir = args.work / "eval-base-cloze"
    cloze = _evaluate(base, names, cloze_dir, args.eval_dtype, formulation="cloze")
    print("base, cloze: " + json.dumps({n: r.get("acc_norm") for n, r in cloze["benchmarks"].items()}), flush=True)
    base_scores = _score(_evaluate(base, names, args.work / "eval-base", args.eval_dtype))
    base_scores["follows_cloze"] = _follows(args.work / "eval-base", cloze_dir)
    rows.append({"point": "base", "step": 0, **base_scores})
    print(f"base: {json.dumps(base_scores)}", flush=True)
    for spec in args.point or ["full:1e-4"]:
        point = _point(spec)
        label = spec if not args.known else f"{spec} known{args.known}"
        out = args.work / f"sft-{label.replace(':', '-').replace(' ', '-')}"
        config = SFTRunConfig(
            model=args.model,
            dataset=str(data),
            out=out,
            lora=point["lora"],
            max_length=args.max_length,
            learning_rate=point["learning_rate"],
            max_steps=args.steps,
            per_device_batch_size=args.batch,
            gradient_accumulation=args.accumulation,
            warmup_ratio=0.1,
            scheduler=args.scheduler,
            eval_steps=args.eval_every,
            save_steps=args.eval_every,
            save_total_limit=args.steps // args.eval_every + 1,
            precision=args.precision,
            logging={"steps": 5, "tensorboard": False},
            seed=0,
        )
        t0 = time.time()
        if not (out / "model").is_dir():
            metrics = train_sft(config, resume=(out / "checkpoints").is_dir(), log=print)
        else:
            metrics = json.loads((out / "metrics.json").read_text())
        seconds = time.time() - t0
        print(f"{spec}: trained in {seconds:.0f} s, {metrics.get('tokens_per_second')} tokens/s", flush=True)
        for step in range(args.eval_every, args.steps + 1, args.eval_every):
            folder = out / "model" if step == args.steps else out / "checkpoints" / f"checkpoint-{step}"
            if not folder.is_dir() and not (out / f"eval-{step}" / "results.json").is_file():
                continue
            if point["lora"] is not None and step != args.steps:
                continue  # a LoRA checkpoint holds adapters only; its merged model is exported at the end
            scores = _score(_evaluate(folder, names, out / f"eval-{step}", args.eval_dtype))
            scores["follows_cloze"] = _follows(out / f"eval-{step}", cloze_dir)
            rows.append({"point": label, "step": step, "train_seconds": round(seconds), **scores})
            print(f"{spec} step {step}: {json.dumps(scores)}", flush=True)
        if (out / "checkpoints").is_dir():
            shutil.rmtree(out / "checkpoints")  # the exported model stays; checkpoints are GBs
    last = args.work / f"sft-{(args.point or ['full:1e-4'])[-1].replace(':', '-')}" / "model"
    for spec in args.merge:
        rows.append(_merge_point(spec, last, args, names))
        print(f"merge {spec}: {json.dumps(rows[-1])}", flush=True)
    (args.work / "sweep.json").write_text(json.dumps(rows, indent=2))
    known = (
        f" narrowed to the questions the base model answers right by option text ({args.known} scanned)"
        if args.known
        else ""
    )
    lines = [
        "## SFT sweep on validation data carved from the training sources",
        "",
        f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python bench/sweep.py {' '.join(sys.argv[1:])}`",
        f"Date {time.strftime('%Y-%m-%d')}, 2 CPU cores, wall time {time.time() - started:.0f} s. Validation: "
        + ", ".join(f"{n} (n={base_scores[n]['n']})" for n in names)
        + f". Mixture: {stats.get('train')} samples (MedMCQA part [0, 0.75){known}, PubMedQA pool [0, 0.9), MedExQA "
        f"train, Medical Meadow / MedicationQA), each MCQ at {args.rotations} letters (copies packed in one row), "
        f"plain share {args.plain_share}, schedule {args.scheduler}; packed "
        f"rows of {args.max_length} tokens, batch {args.batch} x {args.accumulation}, precision {args.precision}; "
        f"scored in {args.eval_dtype}.",
        "",
        "| point | step | " + " | ".join(names) + " | mean | predicted (val_medmcqa) | letter = base cloze answer |",
        "|---|---|" + "---|" * len(names) + "---|---|---|",
    ]
    for row in rows:
        cells = [f"{row[n]['acc']:.3f}" for n in names]
        pred = row["val_medmcqa"].get("predicted") or {}
        shown = ", ".join(f"{k} {v:.2f}" for k, v in sorted(pred.items()))
        follows = f"{row['follows_cloze']:.2f}" if "follows_cloze" in row else ""
        lines.append(
            f"| {row['point']} | {row['step']} | " + " | ".join(cells) + f" | {row['mean']:.3f} | {shown} | {follows} |"
        )
    record(args.section, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
