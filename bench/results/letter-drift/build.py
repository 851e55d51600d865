"""The pair sets of e14 and e15 and the validation suite, from rd12's data stage (a record of what ran, with the
/work/runs paths it ran on; bench/RESULTS.md, "Where the favoured letter comes from").

e14: rd12's DPO-safety pairs without the answer-format pairs. e15: the same pairs plus 100 DPO-general questions x 4
rotations (right letter chosen over a wrong one, every letter chosen and rejected equally often). Validation suite:
the safety pairs' carved validation prompts, harmful as "unsafe", benign as "safe", deduplicated by text.
"""

import collections
import json
import random
from pathlib import Path

SRC = Path("/work/runs/rd12/data")
RUNS = Path("/work/runs")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


safety = rows(SRC / "prefs_safety/train.jsonl")
validation = rows(SRC / "prefs_safety/validation.jsonl")
e14 = [r for r in safety if r.get("category") != "format"]
groups = collections.defaultdict(list)
for r in rows(SRC / "prefs_general/train.jsonl"):
    groups[r["id"].rsplit(":rot", 1)[0]].append(r)
whole = sorted(k for k, v in groups.items() if len(v) == 4)
e15 = safety + [r for k in random.Random(0).sample(whole, 100) for r in groups[k]]
for name, records in (("e14", e14), ("e15", e15)):
    write(RUNS / name / "prefs/train.jsonl", records)
    (RUNS / name / "prefs/validation.jsonl").write_bytes((SRC / "prefs_safety/validation.jsonl").read_bytes())
    print(name, len(records), collections.Counter(r.get("category") for r in records))
seen, suite = set(), []
for r in validation:
    if r["category"] not in ("redteam", "benign"):
        continue
    text = r["prompt"][-1]["content"]
    if text not in seen:
        seen.add(text)
        suite.append({"id": r["id"], "prompt": text, "label": "unsafe" if r["category"] == "redteam" else "safe"})
write(RUNS / "e14/suite-val.jsonl", suite)
print("suite-val", len(suite), collections.Counter(r["label"] for r in suite))
