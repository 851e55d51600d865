"""Training speed on the embedded SmolLM2-135M, aloekit's trainers against stock TRL 1.16, in one run.

SFT: tokens trained per second (non-padding input tokens, the first step left out as warm-up).
    anchor: TRL's SFTTrainer with its own defaults (gradient checkpointing on, no packing, padded batches),
            bf16 off so it runs on a CPU, batch 4 x accumulation 2;
    ours:   `aloe train sft`'s trainer (answer-only masks, padding-free packing, no checkpointing on CPU),
            packed rows of up to 512 tokens, batch 1 x accumulation 2 (about as many conversations per step).
    Same 100 Medical Meadow conversations (../shared/data), full fine-tuning, max_length 512.
DPO: median seconds per optimizer step (the first left out), LoRA r=16, batch 2, max_length 256.
    anchor: TRL's DPOTrainer with a live reference (ref_model=None + LoRA: an adapter-disabled forward each
            step) and its defaults (gradient checkpointing on), bf16 off;
    ours:   `aloe train dpo` with the reference log-probs already in its on-disk cache (filled once, not timed),
            no gradient checkpointing on CPU, and the LM head run on completion positions only.
Runs alternate (anchor, ours, anchor, ours) so drift in machine load hits both.

    make bench-train    # or: HF_HUB_OFFLINE=1 .venv/bin/python bench/train.py --data-dir ../shared/data

Rewrites the ``train`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from aloekit import models
from engine import record

WORDS = [
    "patient",
    "fever",
    "cough",
    "chest",
    "pain",
    "surgery",
    "drug",
    "therapy",
    "hypertension",
    "pregnancy",
    "child",
    "wheeze",
    "oxygen",
    "urgent",
    "assessment",
    "dose",
    "kidney",
    "liver",
    "blood",
    "pressure",
    "glucose",
    "insulin",
    "infection",
    "antibiotic",
]


def step_timer() -> tuple[Any, list[tuple[float, int]]]:
    """A Trainer callback recording (seconds, input tokens seen) per optimizer step."""
    from transformers import TrainerCallback

    steps: list[tuple[float, int]] = []

    class Timer(TrainerCallback):  # type: ignore[misc]
        start, seen = 0.0, 0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.start, self.seen = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            steps.append((time.perf_counter() - self.start, state.num_input_tokens_seen - self.seen))

    return Timer(), steps


# --- SFT ------------------------------------------------------------------------------------------------------


def sft_data(data_dir: Path, root: Path) -> tuple[Path, list[dict[str, Any]]]:
    from aloekit.data.sources import load_source
    from aloekit.data.tally import Tally

    rows = [s.to_json() for s in load_source("medical_meadow", data_dir=data_dir, tally=Tally(), limit=100)]
    folder = root / "sft-data"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "validation.jsonl").write_text("")
    return folder, rows


def sft_ours(model: Path, data: Path, out: Path, steps: int) -> dict[str, Any]:
    from aloekit.train.sft import SFTRunConfig, build_trainer

    config = SFTRunConfig.model_validate(
        {
            "model": str(model),
            "dataset": str(data),
            "out": str(out),
            "max_length": 512,
            "per_device_batch_size": 1,
            "gradient_accumulation": 2,
            "max_steps": steps,
            "save_steps": 10_000,
            "eval_at_start": False,
            "logging": {"tensorboard": False, "steps": 1},
        }
    )
    built = build_trainer(config)
    timer, times = step_timer()
    built.trainer.add_callback(timer)
    built.trainer.train()
    return _rate(times)


def sft_trl(model: Path, rows: list[dict[str, Any]], out: Path, steps: int) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(out),
        bf16=False,
        max_steps=steps,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_length=512,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        include_num_input_tokens_seen="non_padding",
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32),
        args=args,
        train_dataset=Dataset.from_list([{"messages": r["messages"]} for r in rows]),
        processing_class=AutoTokenizer.from_pretrained(model),
    )
    timer, times = step_timer()
    trainer.add_callback(timer)
    trainer.train()
    return _rate(times)


def _rate(times: list[tuple[float, int]]) -> dict[str, Any]:
    seconds = sum(t for t, _ in times[1:])
    tokens = sum(n for _, n in times[1:])
    return {"tokens": tokens, "seconds": round(seconds, 1), "tokens_per_s": round(tokens / seconds, 1)}


# --- DPO ------------------------------------------------------------------------------------------------------


def dpo_pairs(path: Path, n: int = 24) -> Path:
    """Synthetic clinical-vocabulary pairs of ~180 tokens: step time depends on lengths, not on content."""
    rng = random.Random(0)
    with path.open("w") as f:
        for _ in range(n):
            row = {
                "prompt": [{"role": "user", "content": "Case: " + " ".join(rng.choices(WORDS, k=70)) + ". Plan?"}],
                "chosen": [{"role": "assistant", "content": " ".join(rng.choices(WORDS, k=60)) + "."}],
                "rejected": [{"role": "assistant", "content": " ".join(rng.choices(WORDS, k=60)) + "."}],
            }
            f.write(json.dumps(row) + "\n")
    return path


def dpo_ours(model: Path, data: Path, out: Path, cache: Path, steps: int) -> tuple[str, float]:
    from aloekit.train.dpo import DPORunConfig, train_dpo

    config = DPORunConfig.model_validate(
        {
            "model": str(model),
            "out": str(out),
            "lora": {},
            "stages": [
                {"name": "s", "dataset": str(data), "max_steps": steps, "max_length": 256, "learning_rate": 1e-5}
            ],
            "per_device_batch_size": 2,
            "save_steps": 10_000,
            "ref_cache_dir": str(cache),
            "logging": {"tensorboard": False},
        }
    )
    result = train_dpo(config)
    metrics = json.loads((Path(result["out"]) / "s" / "metrics.json").read_text())
    return str(result["stages"][0]["ref_cache"]), float(metrics["step_seconds"]["median"])


def dpo_trl(model: Path, data: Path, out: Path, steps: int) -> float:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from aloekit.train.common import LoraSettings
    from aloekit.train.dpo import read_pairs

    args = DPOConfig(
        output_dir=str(out),
        bf16=False,
        per_device_train_batch_size=2,
        max_steps=steps,
        max_length=256,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32),
        ref_model=None,
        args=args,
        train_dataset=Dataset.from_list(read_pairs(data)),
        processing_class=AutoTokenizer.from_pretrained(model),
        peft_config=LoraSettings().peft_config(),
    )
    timer, times = step_timer()
    trainer.add_callback(timer)
    trainer.train()
    return statistics.median(t for t, _ in times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--sft-steps", type=int, default=4)
    parser.add_argument("--dpo-steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    model = models.resolve(models.DEFAULT_MODEL).path
    root = Path(tempfile.mkdtemp(prefix="aloe-bench-train-"))
    try:
        data, rows = sft_data(args.data_dir, root)
        sft: dict[str, list[dict[str, Any]]] = {"trl": [], "ours": []}
        for r in range(args.rounds):
            sft["trl"].append(sft_trl(model, rows, root / f"sft-trl-{r}", args.sft_steps))
            print("SFT  TRL defaults", sft["trl"][-1], flush=True)
            sft["ours"].append(sft_ours(model, data, root / f"sft-ours-{r}", args.sft_steps))
            print("SFT  aloekit     ", sft["ours"][-1], flush=True)

        pairs = dpo_pairs(root / "pairs.jsonl")
        cache = root / "refcache"
        outcome, _ = dpo_ours(model, pairs, root / "dpo-fill", cache, 2)  # fills the cache; not timed
        print("DPO reference cache filled:", outcome, flush=True)
        dpo: dict[str, list[float]] = {"trl": [], "ours": []}
        for r in range(args.rounds):
            dpo["trl"].append(dpo_trl(model, pairs, root / f"dpo-trl-{r}", args.dpo_steps))
            print(f"DPO  TRL live reference  {dpo['trl'][-1]:.2f} s/step", flush=True)
            outcome, seconds = dpo_ours(model, pairs, root / f"dpo-ours-{r}", cache, args.dpo_steps)
            dpo["ours"].append(seconds)
            print(f"DPO  aloekit cached ref  {seconds:.2f} s/step ({outcome})", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def total(runs: list[dict[str, Any]]) -> float:
        return sum(r["tokens"] for r in runs) / sum(r["seconds"] for r in runs)

    sft_trl_rate, sft_ours_rate = total(sft["trl"]), total(sft["ours"])
    dpo_trl_s, dpo_ours_s = statistics.median(dpo["trl"]), statistics.median(dpo["ours"])
    body = "\n".join(
        [
            "## Training speed against stock TRL: `bench/train.py`",
            "",
            f"Command: `make bench-train` ({args.rounds} alternating rounds; SFT {args.sft_steps} steps, DPO "
            f"{args.dpo_steps} steps per run; the first step of each run left out). Embedded SmolLM2-135M, 2 CPU "
            "cores, fp32.",
            "",
            "| stage | anchor: stock TRL 1.16 | aloekit | ratio | target |",
            "|---|---|---|---|---|",
            f"| SFT, tokens/s (full fine-tuning, 100 Medical Meadow conversations, max_length 512) | "
            f"{sft_trl_rate:.1f} | {sft_ours_rate:.1f} | {sft_ours_rate / sft_trl_rate:.2f}x | >= 1.3x |",
            f"| DPO, s/step (LoRA r=16, batch 2, max_length 256) | {dpo_trl_s:.2f} | {dpo_ours_s:.2f} | "
            f"{dpo_ours_s / dpo_trl_s:.2f}x | <= 0.7x |",
            "",
            "SFT anchor: SFTTrainer with TRL's defaults (gradient checkpointing, padded batches of 4, accumulation "
            "2), bf16 off. Ours: answer-only masks, padding-free packing into rows of up to 512 tokens (batch 1, "
            "accumulation 2), no gradient checkpointing on CPU. DPO anchor: DPOTrainer with a live reference "
            "(adapter-disabled forward each step) and its defaults; ours reads the reference log-probs from the "
            "on-disk cache, so no reference forward runs, and its LM head scores only completion positions (TRL does "
            "that only on CUDA).",
            "",
            f"Per run: SFT TRL {[r['tokens_per_s'] for r in sft['trl']]}, aloekit "
            f"{[r['tokens_per_s'] for r in sft['ours']]} tokens/s; DPO TRL {[round(s, 2) for s in dpo['trl']]}, "
            f"aloekit {[round(s, 2) for s in dpo['ours']]} s/step.",
        ]
    )
    print(body)
    record("train", body)


if __name__ == "__main__":
    main()
