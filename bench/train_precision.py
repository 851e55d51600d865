"""Training-step speed on a CPU: fp32 against bf16 autocast, and the full LM head against trained positions only.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/train_precision.py [--batch 8 --length 200 --repeats 3]

One forward + backward + AdamW step of the embedded SmolLM2-135M on random token rows, loss on the last two
positions of each row (an answer-only batch: one answer after a question). Four variants, run alternately:
    anchor: fp32, every position through the 49k-wide LM head (what a plain trainer does on a CPU);
    bf16:   the same in bf16 autocast (fp32 master weights);
    head:   fp32, only the trained positions through the head (`score_trained_positions_only`);
    both:   bf16 autocast and trained positions only (what `precision: fast` and aloekit's SFT do).
Prints tokens per second for each and the ratio to the anchor; rewrites the ``train-precision`` section of
bench/RESULTS.md. Autocast bf16 is fast only on CPUs with native bf16 (AVX512-BF16 / AMX); elsewhere it emulates.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from engine import record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch
    from transformers import AutoModelForCausalLM

    from aloekit import models
    from aloekit.train.common import cpu_supports_bf16

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(models.resolve(args.model).path, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    rows = torch.randint(100, 40000, (args.batch, args.length))
    targets = torch.randint(100, 40000, (args.batch, 2))

    def step(bf16: bool, trained_only: bool) -> float:
        context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        start = time.perf_counter()
        with context:
            if trained_only:
                hidden = model.model(input_ids=rows).last_hidden_state[:, -3:-1, :]
                logits = model.lm_head(hidden)
            else:
                logits = model(input_ids=rows).logits[:, -3:-1, :]
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - start

    variants = {"anchor": (False, False), "bf16": (True, False), "head": (False, True), "both": (True, True)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for flags in variants.values():
        step(*flags)  # warm-up
    for _ in range(args.repeats):
        for name, flags in variants.items():
            times[name].append(step(*flags))
    tokens = args.batch * args.length
    speed = {name: tokens / statistics.median(t) for name, t in times.items()}
    lines = [
        "## Training-step speed on a CPU: fp32 vs bf16 autocast, full LM head vs trained positions only",
        "",
        f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python bench/train_precision.py --batch {args.batch} --length "
        f"{args.length} --repeats {args.repeats}`, {time.strftime('%Y-%m-%d')}, torch threads "
        f"{torch.get_num_threads()}, CPU with native bf16: {cpu_supports_bf16()}. SmolLM2-135M, {args.batch} rows x "
        f"{args.length} tokens, forward + backward + AdamW, median of {args.repeats} alternated runs.",
        "",
        "| variant | tokens/s | ratio to anchor |",
        "|---|---|---|",
        *(f"| {name} | {speed[name]:.0f} | {speed[name] / speed['anchor']:.2f}x |" for name in variants),
    ]
    print("\n".join(lines))
    record("train-precision", "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
