"""Can a small model be taught to name the letter of the option it already finds most likely? (validation only)

Why: SmolLM2-135M ranks option *texts* above chance on MMLU medical (cloze 29.3% [26.6, 31.9], rd11's report) but
its letter answers follow a letter prior (A 99%), and SFT on gold answers only moves that prior. Gold answers the
model cannot reach teach it nothing about the letter format. Here it is taught its own cloze choice instead: each
training question's target letter is the option with the highest cloze log-likelihood per character under the
model itself (self-labels: nothing it cannot know, no gold answer used), the options rotated so the target letters
are uniform, in the evaluation's letter prompts (MedQA, MedMCQA and MMLU styles). The loss is the cross-entropy of
the four letters' logits at the answer position (the rest of the vocabulary is never scored in the letter
formulation). ``--measure TAG=MODEL ...`` only measures models (e.g. a recipe's stages) against the cloze answers
of ``--model``.

Measured on val_medmcqa (MedMCQA part [0.9, 1), never trained on): how often the letter answer equals the model's
cloze answer ("binding"; chance 25%), the predicted-letter shares and accuracy. Training questions: MedMCQA part
[0, 0.75), the recipe's SFT part; no test split is read.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/binding_probe.py --data-dir ../shared/data --work /work/runs/binding
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import sweep

STYLES = ("medqa", "medmcqa", "mmlu")


def _items(data_dir: Path, part: tuple[float, float]) -> list[Any]:
    from aloekit.data.known import scan_order
    from aloekit.data.mixture import SourceEntry, load_entry
    from aloekit.data.tally import Tally

    items = load_entry(SourceEntry(source="medmcqa", part=part), data_dir, Tally())
    return scan_order([i for i in items if len(i.options) == 4])


def _cloze(model: str, items: list[Any], cache: Path) -> np.ndarray:
    """Per-character cloze log-likelihood of every option (rows = questions), cached."""
    if cache.is_file():
        return np.load(cache)
    from aloekit.config import EngineConfig
    from aloekit.data.known import cloze_requests

    engine = EngineConfig(model=model, dtype="bfloat16", batch_size=16).load()
    flat = engine.loglikelihood([r for i in items for r in cloze_requests(i)], progress=True)
    lengths = np.array([[float(len(o)) for o in i.options] for i in items])
    scores = np.array([x.logprob for x in flat], dtype=float).reshape(len(items), 4) / lengths
    np.save(cache, scores)
    return scores


def _prompt(item: Any, style: str) -> str:
    from aloekit.evaluation import benchmarks, prompts

    bench = benchmarks.Benchmark(
        name="probe", format="mcq", prompt=style, local=None, hub=None, subject="medicine" if style == "mmlu" else None
    )
    return prompts.description(bench) + prompts.question_text(bench, item)


def _rotate(item: Any, source: int, target: int) -> Any:
    """``item`` with its options rotated so that option ``source`` sits at position ``target``."""
    from dataclasses import replace

    shift = (target - source) % 4
    options = tuple(item.options[(k - shift) % 4] for k in range(4))
    return replace(item, options=options, answer=(item.answer + shift) % 4)


class Scorer:
    """The four letters' logits at the answer position, batched, right-padded."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.letters = [tokenizer.encode(f" {c}", add_special_tokens=False)[-1] for c in "ABCD"]

    def logits(self, texts: list[str]) -> Any:
        import torch

        enc = [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]
        width = max(len(e) for e in enc)
        ids = torch.zeros(len(enc), width, dtype=torch.long)
        mask = torch.zeros(len(enc), width, dtype=torch.long)
        for row, e in enumerate(enc):
            ids[row, : len(e)] = torch.tensor(e)
            mask[row, : len(e)] = 1
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = self.model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        last = hidden[torch.arange(len(enc)), mask.sum(1) - 1].float()
        return last @ self.model.lm_head.weight[self.letters].float().T


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    centre, half = (k + z * z / 2) / (n + z * z), z * ((k * (n - k) / n + z * z / 4) ** 0.5) / (n + z * z)
    return centre - half, centre + half


def _measure(scorer: Scorer, items: list[Any], cloze: np.ndarray) -> dict[str, Any]:
    """Letter answers in the val_medmcqa prompt (MedQA style) and, as ``mmlu``, the MMLU prompt's binding and shares."""
    row = _measure_style(scorer, items, cloze, "medqa")
    mmlu = _measure_style(scorer, items, cloze, "mmlu")
    row["mmlu"] = {k: mmlu[k] for k in ("acc", "binding", "binding_chance", "shares")}
    return row


def _measure_style(scorer: Scorer, items: list[Any], cloze: np.ndarray, style: str) -> dict[str, Any]:
    import torch

    preds: list[int] = []
    with torch.no_grad():
        for at in range(0, len(items), 32):
            chunk = items[at : at + 32]
            preds += scorer.logits([_prompt(i, style) for i in chunk]).argmax(1).tolist()
    pred = np.array(preds)
    own = cloze.argmax(1)
    gold = np.array([i.answer for i in items])
    margin = np.sort(cloze, 1)[:, -1] - np.sort(cloze, 1)[:, -2]
    clear = margin >= np.median(margin)
    shares = Counter(pred.tolist())
    return {
        "acc": round(float((pred == gold).mean()), 3),
        "binding": round(float((pred == own).mean()), 3),
        "binding_clear_half": round(float((pred[clear] == own[clear]).mean()), 3),
        # What the same answer shares would agree on with no relation to the questions.
        "binding_chance": round(float(sum((pred == k).mean() * (own == k).mean() for k in range(4))), 3),
        "binding_ci95": [round(x, 3) for x in _wilson(int((pred == own).sum()), len(pred))],
        "shares": {c: round(shares.get(k, 0) / len(pred), 3) for k, c in enumerate("ABCD")},
        "cloze_acc": round(float((own == gold).mean()), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="the model whose cloze answers are taught")
    parser.add_argument("--init", help="the model trained (default: --model itself)")
    parser.add_argument("--train", type=int, default=1600, help="training questions scored")
    parser.add_argument("--keep", type=float, default=1.0, help="share of them kept, clearest cloze margins first")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--tag", default="probe")
    parser.add_argument("--measure", nargs="+", metavar="TAG=MODEL", help="only measure these models, no training")
    args = parser.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aloekit import models

    torch.manual_seed(0)
    args.work.mkdir(parents=True, exist_ok=True)
    val = _items(args.data_dir, sweep.VAL_PART)
    if args.measure:
        val_cloze = _cloze(args.model, val, args.work / "cloze-val.npy")
        for spec in args.measure:
            tag, _, ref = spec.partition("=")
            folder = models.resolve(ref).path
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
            row = {"model": tag, **_measure(Scorer(model, AutoTokenizer.from_pretrained(folder)), val, val_cloze)}
            print(json.dumps(row), flush=True)
        return 0
    train = _items(args.data_dir, sweep.SFT_MEDMCQA_PART)[: args.train]
    start = time.time()
    val_cloze = _cloze(args.model, val, args.work / "cloze-val.npy")
    train_cloze = _cloze(args.model, train, args.work / f"cloze-train{args.train}.npy")
    print(f"cloze scored in {time.time() - start:.0f} s", flush=True)
    margin = np.sort(train_cloze, 1)[:, -1] - np.sort(train_cloze, 1)[:, -2]
    order = np.argsort(-margin)[: round(args.keep * len(train))]
    rng = random.Random(0)
    examples: list[tuple[str, int]] = []
    for epoch in range(args.epochs):
        chosen = sorted(order.tolist(), key=lambda _: rng.random())
        for n, k in enumerate(chosen):
            target = (n + epoch) % 4
            item = _rotate(train[k], int(train_cloze[k].argmax()), target)
            examples.append((_prompt(item, STYLES[(n + 2 * epoch) % 3]), target))
    folder = models.resolve(args.init or args.model).path
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    scorer = Scorer(model, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    steps = len(examples) // args.batch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10) * (1 - s / steps))
    log = args.work / f"{args.tag}.jsonl"
    model.eval()
    row = {"step": 0, **_measure(scorer, val, val_cloze)}
    print(json.dumps(row), flush=True)
    with log.open("w") as out:
        out.write(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "kept": len(order)}) + "\n")
        out.write(json.dumps(row) + "\n")
        began = time.time()
        for step in range(steps):
            model.train()
            batch = examples[step * args.batch : (step + 1) * args.batch]
            logits = scorer.logits([t for t, _ in batch])
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor([y for _, y in batch]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            if (step + 1) % 10 == 0:
                print(f"step {step + 1}/{steps} loss {loss.item():.3f} {time.time() - began:.0f} s", flush=True)
            if (step + 1) % args.eval_every == 0 or step + 1 == steps:
                model.eval()
                row = {"step": step + 1, "seconds": round(time.time() - began), **_measure(scorer, val, val_cloze)}
                print(json.dumps(row), flush=True)
                out.write(json.dumps(row) + "\n")
                out.flush()
    model.save_pretrained(args.work / f"{args.tag}-model", safe_serialization=True)
    tokenizer.save_pretrained(args.work / f"{args.tag}-model")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
