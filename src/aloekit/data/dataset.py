"""A built dataset on disk: JSON-lines splits plus the files that say what is in them and how it was made.

Layout of ``OUT``::

    train.jsonl, validation.jsonl   records (TRL reads them: ``load_dataset("json", data_files=...)``)
    stats.json                      counts per source and stage, dropped rows by reason, lengths, timings
    decontamination.json            what was checked, what was removed and why, overlaps remaining (0)
    DATACARD.md                     the same, for people
    config.yaml                     the config as run (every default filled in)
    manifest.json                   versions, seed, config hash, input file hashes

Everything is written into a temporary sibling folder that is renamed into place at the end, so a killed build
leaves either the previous dataset or none, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aloekit.errors import UserError
from aloekit.io import atomic_folder, jsonl_text, read_jsonl

SPLITS = ("train", "validation")

SOURCE_STAGES = (
    "read",
    "malformed",
    "cleaned out",
    "unusable",
    "exact duplicates",
    "contaminated",
    "near duplicates",
    "available",
    "asked",
    "pairs",
    "train",
    "validation",
    "records",
)
"""The data builds' stages in pipeline order: the counts stats.json keeps per source ("rows per source and stage",
as ``aloe data stats`` and the report show them)."""


def stage_columns(sources: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The stages counted in ``sources`` (stats.json's per-source counts): the known ones in pipeline order, any
    other count (a section's own) after them, by name."""
    order = {stage: i for i, stage in enumerate(SOURCE_STAGES)}
    return sorted({k for counts in sources.values() for k in counts}, key=lambda k: (order.get(k, len(order)), k))


def check_out_dir(out: Path, *, overwrite: bool) -> None:
    """Refuse to replace an existing non-empty folder unless asked: a dataset may be the input of a finished run."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: name a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out} already holds files: pass --overwrite to replace them, or choose a new folder")


def publish(out: Path, files: Mapping[str, str | Iterable[Mapping[str, Any]]], *, overwrite: bool) -> None:
    """Write ``files`` (name -> text, or name -> JSON-lines records) into ``out`` atomically."""
    check_out_dir(out, overwrite=overwrite)
    with atomic_folder(out) as tmp:
        for name, content in files.items():
            with (tmp / name).open("w", encoding="utf-8") as f:
                if isinstance(content, str):
                    f.write(content)
                else:
                    for record in content:  # one by one: a split's records may be a generator too big to join
                        f.write(jsonl_text([record]))
                f.flush()
                os.fsync(f.fileno())


def publish_dataset(
    out: Path,
    *,
    stage: str,
    splits: Mapping[str, Sequence[Any]],
    stats: Mapping[str, Any],
    report: Mapping[str, Any],
    card: str,
    config: Any,
    seed: int,
    overwrite: bool,
) -> None:
    """The standard layout (see the module docstring) for a built dataset of ``to_json()``-able records."""
    import time

    import yaml

    from aloekit.provenance import package_versions

    config_json = config.model_dump_json()
    manifest = {
        "stage": stage,
        "config_hash": config_hash(config_json),
        "seed": seed,
        "versions": package_versions("datasets", "datasketch", "transformers", "sentence-transformers"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "status": "complete",
    }
    publish(
        out,
        {
            **{f"{name}.jsonl": (r.to_json() for r in splits[name]) for name in SPLITS},
            "stats.json": json.dumps(stats, indent=2, ensure_ascii=False) + "\n",
            "decontamination.json": json.dumps(report, indent=2, ensure_ascii=False) + "\n",
            "DATACARD.md": card,
            "config.yaml": yaml.safe_dump(json.loads(config_json), sort_keys=False),
            "manifest.json": json.dumps(manifest, indent=2) + "\n",
        },
        overwrite=overwrite,
    )


def config_hash(config_json: str) -> str:
    return hashlib.sha256(config_json.encode()).hexdigest()[:16]


def length_stats(values: Sequence[int]) -> dict[str, float]:
    """Mean, median, 95th percentile and max of lengths (words), for stats.json and the data card."""
    if not values:
        return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0.0}
    ordered = sorted(values)
    return {
        "mean": round(statistics.fmean(ordered), 1),
        "p50": float(ordered[len(ordered) // 2]),
        "p95": float(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]),
        "max": float(ordered[-1]),
    }


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of one split file; a line that is not a JSON object is a one-line error naming the line."""
    return [row for _, row in read_jsonl(path)]
