"""The held-out split of the data stage: part of a local file set aside for evaluation before anything trains on
it (``data.holdout``), stratified by subject or category, seeded."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aloekit.errors import UserError
from aloekit.io import TextFile, iter_lines

__all__ = ["split_holdout"]


def _holdout_rows(path: Path, rename: dict[str, str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(JSON line, row) of a JSON-lines file (lines verbatim), or of a CSV file with a header (each row as a JSON
    object with an ``id``, its line number); ``rename`` renames columns (and then the line is re-written)."""
    if not path.is_file():
        raise UserError(f"holdout file {path} not found: fix data.holdout's path")
    if path.suffix == ".csv":
        with TextFile(path) as f:
            for number, raw in enumerate(csv.DictReader(f), 2):
                row = {"id": f"{path.stem}-{number}", **{rename.get(k, k): v for k, v in raw.items()}}
                yield json.dumps(row, ensure_ascii=False), row
        return
    # iter_lines splits at "\n" only: a U+2028 inside a JSON string is not a line break.
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path} line {number}: not JSON ({e.msg}): fix the line") from e
        if not isinstance(row, dict):
            raise UserError(f"{path} line {number}: a row is a JSON object: fix the line")
        if rename:
            row = {rename.get(k, k): v for k, v in row.items()}
            line = json.dumps(row, ensure_ascii=False)
        yield line, row


def split_holdout(
    path: Path, fraction: float, seed: int, label: str | None = None, rename: dict[str, str] | None = None
) -> tuple[list[str], list[str]]:
    """(train lines, eval lines) of a JSON-lines or CSV file: within each subject (or category), a seeded
    ``fraction`` (at least one row) is held out, so every subject is evaluated. JSON lines are kept verbatim (CSV
    rows become JSON lines), except that held-out rows get ``label`` when one is given."""
    by_subject: dict[str, list[str]] = {}
    for line, row in _holdout_rows(path, rename or {}):
        if label is not None:
            line = json.dumps({**row, "label": label}, ensure_ascii=False)
        subject = str(row.get("subject") or row.get("category") or "")
        by_subject.setdefault(subject, []).append(line)
    rng = random.Random(seed)
    train: list[str] = []
    held: list[str] = []
    for subject in sorted(by_subject):
        lines = by_subject[subject]
        order = list(range(len(lines)))
        rng.shuffle(order)
        n_eval = max(1, round(fraction * len(lines))) if len(lines) > 1 else 0
        chosen = set(order[:n_eval])
        held += [line for i, line in enumerate(lines) if i in chosen]
        train += [_without_label(line, label) for i, line in enumerate(lines) if i not in chosen]
    return train, held


def _without_label(line: str, label: str | None) -> str:
    if label is None:
        return line
    row = json.loads(line)
    row.pop("label", None)
    return json.dumps(row, ensure_ascii=False)
