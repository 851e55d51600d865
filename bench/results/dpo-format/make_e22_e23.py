"""e22 / e23: e18's DPO-safety pairs (rd13's, answer-format chosen side "Answer: <key>") rendered to plain strings
with the policy's chat template (the text TRL would build from the conversational rows), with plain letter pairs
(replay of the letter phase's objective: " <cloze key>" over " <wrong letter>", 4 rotations, one question's four
pairs adjacent) interleaved so that REPLAY of the first 640 pairs (80 steps x 8) are letter pairs."""

import json
import sys
from pathlib import Path

from transformers import AutoTokenizer

name, replay_share = sys.argv[1], float(sys.argv[2])
tok = AutoTokenizer.from_pretrained("/work/runs/rd13/dpo/train/general/model")
eos = tok.eos_token
src = Path("/work/runs/e18/prefs_safety")
rep = Path("/work/runs/replay/pairs")
out = Path(f"/work/runs/{name}/prefs_safety")
out.mkdir(parents=True, exist_ok=True)


def render(row):
    if isinstance(row["prompt"], str):
        return {**row, "chosen": " " + row["chosen"].lstrip(), "rejected": " " + row["rejected"].lstrip()}
    prompt = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    sides = {}
    for side in ("chosen", "rejected"):
        full = tok.apply_chat_template(row["prompt"] + row[side], tokenize=False)
        assert full.startswith(prompt), (full[:200], prompt[:200])
        text = full[len(prompt) :].rstrip("\n")
        assert text.endswith(eos), text[-30:]
        sides[side] = text
    return {**row, "prompt": prompt, **sides, "plain": True}


def groups(rows):
    out, key = [], None
    for r in rows:
        k = r["id"].rsplit(":rot", 1)[0]
        if out and k == key:
            out[-1].append(r)
        else:
            out.append([r])
        key = k
    return out


for split in ("train", "validation"):
    safety = [render(json.loads(line)) for line in (src / f"{split}.jsonl").read_text().splitlines()]
    letters = groups([render(json.loads(line)) for line in (rep / f"{split}.jsonl").read_text().splitlines()])
    mixed, li = [], 0
    # one letter group (4 pairs) after every `every` safety pairs
    every = max(1, round(4 * (1 - replay_share) / replay_share))
    for i, r in enumerate(safety):
        mixed.append(r)
        if (i + 1) % every == 0 and li < len(letters):
            mixed += letters[li]
            li += 1
    with open(out / f"{split}.jsonl", "w") as f:
        for r in mixed:
            f.write(json.dumps(r) + "\n")
    used = mixed[:640]
    print(
        name,
        split,
        len(mixed),
        "letters in first 640:",
        sum(r["category"] == "medical" for r in used),
        "format:",
        sum(r["category"] == "format" for r in used),
    )
