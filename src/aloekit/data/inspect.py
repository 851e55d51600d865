"""``aloe data stats``: what a dataset folder holds, recomputed from its split files rather than trusted."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from aloekit.data import dataset
from aloekit.errors import UserError


def dataset_stats(folder: Path) -> dict[str, Any]:
    """Counts per source (and task or pair category), lengths in words, and the build's drop report if present."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder: give the --out folder of `aloe data build` or `aloe data prefs`")
    files = {name: folder / f"{name}.jsonl" for name in dataset.SPLITS if (folder / f"{name}.jsonl").is_file()}
    if not files:
        raise UserError(f"{folder} holds no train.jsonl or validation.jsonl: is it a dataset built by aloekit?")
    per_source: dict[str, Counter[str]] = defaultdict(Counter)
    kinds: dict[str, Counter[str]] = {}
    words: dict[str, list[int]] = {}
    for split, path in files.items():
        records = dataset.read_records(path)
        kind: Counter[str] = Counter()
        words[split] = []
        for r in records:
            per_source[str(r.get("source", "?"))][split] += 1
            if "messages" in r:
                kind[f"task:{r.get('task', '?')}"] += 1
                words[split].append(sum(len(str(m.get("content", "")).split()) for m in r["messages"]))
            elif "chosen" in r:
                kind[f"category:{r.get('category', '?')}"] += 1
                if r.get("attack_style"):
                    kind[f"style:{r['attack_style']}"] += 1
                words[split].append(len(json.dumps(r["chosen"]).split()))
        kinds[split] = kind
    out: dict[str, Any] = {
        "folder": str(folder),
        **{split: sum(per_source[s][split] for s in per_source) for split in dataset.SPLITS},
        "sources": {label: dict(c) for label, c in per_source.items()},
        "kinds": {split: dict(c.most_common()) for split, c in kinds.items()},
        "words": {split: dataset.length_stats(w) for split, w in words.items()},
    }
    build = folder / "stats.json"
    if build.is_file():
        try:
            built = json.loads(build.read_text(encoding="utf-8"))
        except ValueError as e:
            raise UserError(f"{build}: not valid JSON ({e}); rebuild the dataset") from e
        out["build"] = {k: built.get(k) for k in ("sources", "dropped", "decontamination", "timings_s", "seed")}
        out["dropped"] = built.get("dropped", {})
        # The build's per-stage funnel is more informative than split counts alone; show it when it agrees.
        if all(built.get(s) == out[s] for s in dataset.SPLITS):
            out["sources"] = built.get("sources", out["sources"])
        else:
            out["warning"] = "split files differ from stats.json: the folder was edited after the build"
    return out
