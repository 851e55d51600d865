"""The pair sets of e18 and e19 and the validation safety suite, derived from rd13's DPO-safety pairs
(/work/runs/rd13/data/prefs_safety, built by recipes/real-data.yaml at 623a127), order kept:
- e18: every answer-format pair's chosen side cut to "Answer: <key>" (no option text), as `option_text: false`;
- e19: the answer-format pairs dropped;
- suite-val.jsonl: the carved validation split's requests (harmful: label unsafe; benign: label safe), never trained
  on, for `aloe safety --suites file:...`.
"""

import json
import re
import shutil
from pathlib import Path

src = Path("/work/runs/rd13/data/prefs_safety")
for e in ("e18", "e19"):
    dst = Path(f"/work/runs/{e}/prefs_safety")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    for split in ("train", "validation"):
        rows = [json.loads(line) for line in (src / f"{split}.jsonl").read_text().splitlines()]
        out = []
        for r in rows:
            if r["category"] == "format":
                if e == "e19":
                    continue
                c = r["chosen"][-1]["content"]
                m = re.match(r"(Answer: [A-D])\. ", c)
                assert m, c
                r["chosen"][-1]["content"] = m.group(1)
            out.append(r)
        with open(dst / f"{split}.jsonl", "w") as f:
            for r in out:
                f.write(json.dumps(r) + "\n")
        print(e, split, len(rows), len(out))
rows = [json.loads(line) for line in (src / "validation.jsonl").read_text().splitlines()]
Path("/work/runs/val").mkdir(exist_ok=True)
with open("/work/runs/val/suite-val.jsonl", "w") as f:
    for r in rows:
        if r["category"] == "format":
            continue
        label = "unsafe" if r["category"] == "redteam" else "safe"
        f.write(
            json.dumps(
                {"prompt": r["prompt"][-1]["content"], "label": label, "category": r["attack_style"] or "benign"}
            )
            + "\n"
        )
