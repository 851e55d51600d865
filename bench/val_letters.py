"""Letter accuracy and predicted-letter shares of any models on val_medmcqa (validation carved from the training
sources: MedMCQA part [0.9, 1), 4-option; never a test split), with the recipe's scoring (lm-eval prompt, bf16
body, fp32 logits).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/val_letters.py --data-dir ../shared/data --work /tmp/val-letters \
        sft=runs/real-data/sft/train/model merged=runs/real-data/merge/model

Prints one JSON line per model: accuracy, its 95% CI, n and the share of each predicted letter. With
``--generative N`` the models answer in their chat template instead (greedy, at most N new tokens, "Answer: X"
extracted, as the recipe's generative formulation), and the line adds the unparseable share.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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
        print(json.dumps({"model": tag, **scores["val_medmcqa"]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
