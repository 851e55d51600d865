"""Letter accuracy and predicted-letter shares of any models on val_medmcqa (validation carved from the training
sources: MedMCQA part [0.9, 1), 4-option; never a test split), with the recipe's scoring (lm-eval prompt, bf16
body, fp32 logits).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/val_letters.py --data-dir ../shared/data --work /tmp/val-letters \
        sft=runs/real-data/sft/train/model merged=runs/real-data/merge/model

Prints one JSON line per model: accuracy, its 95% CI, n and the share of each predicted letter, and, in the
letter formulation, what decides those shares: each letter's mean log-likelihood over the questions minus the mean
of the four (``offsets``: a question-independent preference for a letter), the mean per-question spread of the
four log-likelihoods once the offsets are removed (``spread``: how much the question itself moves them), and the
accuracy with the offsets removed (``debiased_acc``). A letter takes most answers when its offset is large against
the spread. With ``--generative N`` the models answer in their chat template instead (greedy, at most N new
tokens, "Answer: X" extracted, as the recipe's generative formulation), and the line adds the unparseable share.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import sweep


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/val-letters"))
    parser.add_argument("--generative", type=int, metavar="N", help="answer in the chat template, N new tokens")
    parser.add_argument("models", nargs="+", help="TAG=MODEL (alias, folder or checkpoint)")
    args = parser.parse_args()
    names = [n for n in sweep._val_sets(args.data_dir, args.work) if n == "val_medmcqa"]
    for spec in args.models:
        tag, _, model = spec.partition("=")
        if not model:
            raise SystemExit(f"{spec}: give TAG=MODEL")
        kind = "letter" if args.generative is None else f"generative{args.generative}"
        out = args.work / f"eval-{tag}-{kind}"
        scores = sweep._score(sweep._evaluate(Path(model), names, out, "bfloat16", max_tokens=args.generative))
        extra = letter_offsets(out / "samples.jsonl") if args.generative is None else {}
        print(json.dumps({"model": tag, **scores["val_medmcqa"], **extra}), flush=True)
    return 0


def letter_offsets(samples: Path, bench: str = "val_medmcqa") -> dict[str, Any]:
    """Per-letter offsets, per-question spread and offset-free accuracy of a letter evaluation's samples."""
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    rows = [r for r in rows if r["benchmark"] == bench]
    scores = [r["loglikelihoods"] for r in rows]
    means = [statistics.fmean(s[i] for s in scores) for i in range(len(scores[0]))]
    centre = statistics.fmean(means)
    centred = [[s[i] - means[i] for i in range(len(means))] for s in scores]
    debiased = statistics.fmean(c.index(max(c)) == r["gold"] for c, r in zip(centred, rows, strict=True))
    return {
        "offsets": [round(m - centre, 3) for m in means],
        "spread": round(statistics.fmean(statistics.pstdev(c) for c in centred), 3),
        "debiased_acc": round(debiased, 3),
    }


if __name__ == "__main__":
    raise SystemExit(main())
