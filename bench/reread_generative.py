"""Read stored generated MCQA answers again with the current answer parser: unparseable share and accuracy per
benchmark, as stored and as read now. No model runs: the generations come from an evaluation's samples.jsonl.

    .venv/bin/python bench/reread_generative.py RUN/eval/generative/dpo_safety/samples.jsonl [...]

Use it after a change to ``aloekit.prompting.answers`` to see what the change does to finished runs (a rerun of
the evaluation into the same folder re-reads its cached generations the same way and rewrites results.json).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from aloekit.prompting.answers import extract_choice


def reread(path: Path) -> dict[str, dict[str, float]]:
    """Per benchmark: n, and unparseable share and accuracy as stored (``then``) and as read now (``now``)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for line in path.read_text().splitlines():
        row = json.loads(line)
        labels = tuple(row["choices"])
        chosen = extract_choice(row["generation"], labels, tuple(row["options"]))
        pred = labels.index(chosen) if chosen is not None else None
        c = counts[row["benchmark"]]
        c[0] += 1
        c[1] += row["pred"] is None
        c[2] += pred is None
        c[3] += bool(row["correct"])
        c[4] += pred == row["gold"]
    return {
        bench: {
            "n": n,
            "unparseable_then": u0 / n,
            "unparseable_now": u1 / n,
            "accuracy_then": a0 / n,
            "accuracy_now": a1 / n,
        }
        for bench, (n, u0, u1, a0, a1) in counts.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", nargs="+", type=Path, help="samples.jsonl of a generative evaluation")
    args = parser.parse_args()
    for path in args.samples:
        print(path)
        for bench, r in reread(path).items():
            print(
                f"  {bench:28s} n={r['n']:4d} unparseable {r['unparseable_then']:6.1%} -> {r['unparseable_now']:6.1%}"
                f"  accuracy {r['accuracy_then']:6.1%} -> {r['accuracy_now']:6.1%}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
