"""DPO's inputs: a stage's preference files (checked and hashed before any model loads), their pairs, and the
prefix of them a stage that stops after ``max_steps`` uses (whole groups of one question's pairs)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aloekit import models
from aloekit.data.schema import PreferencePair
from aloekit.errors import UserError
from aloekit.io import read_jsonl
from aloekit.train.dpo_config import DPORunConfig, DPOStage


@dataclass(frozen=True)
class Pairs:
    """One stage's preference files and their content hashes."""

    train: Path
    train_sha256: str
    validation: Path | None
    validation_sha256: str | None


def stage_pairs(stage: DPOStage) -> Pairs:
    path = stage.dataset.expanduser()
    if path.is_dir():
        train = path / "train.jsonl"
        if not train.is_file():
            raise UserError(
                f"stage {stage.name}: dataset folder {path} has no train.jsonl: build it with `aloe data prefs` "
                "or point dataset at a JSONL file of pairs"
            )
        validation: Path | None = path / "validation.jsonl"
        if not (validation and validation.is_file() and validation.stat().st_size > 0):
            validation = None
    elif path.is_file():
        train, validation = path, None
    else:
        raise UserError(f"stage {stage.name}: dataset {path} not found: give a data-stage folder or a JSONL file")
    for split in (train, validation):
        if split is not None:
            pair_rows(split)  # a bad or empty file fails now, not after the model has loaded
    return Pairs(
        train.absolute(),
        models.file_sha256(train),
        validation.absolute() if validation else None,
        models.file_sha256(validation) if validation else None,
    )


def read_pairs(path: Path) -> list[dict[str, Any]]:
    """Preference pairs of a JSONL file in TRL's conversational layout (prompt: messages; chosen and rejected: one
    assistant message each). A malformed line is a one-line UserError naming the file and line."""
    return [row for _, row in pair_rows(path)]


def pair_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(pair id, pair) of each line of ``path``, checked as :class:`PreferencePair`; an empty file is an error."""
    rows = []
    for where, record in read_jsonl(path):
        pair = PreferencePair.from_json(record, where).to_json()
        rows.append((pair["id"], {key: pair[key] for key in ("prompt", "chosen", "rejected")}))
    if not rows:
        raise UserError(f"{path} holds no preference pairs: rebuild the dataset")
    plain = {isinstance(row["prompt"], str) for _, row in rows}
    if len(plain) > 1:
        raise UserError(
            f"{path} mixes plain pairs (no chat template) with chat pairs: TRL trains one layout per dataset; put "
            "them in separate DPO stages"
        )
    return rows


def pairs_per_run(config: DPORunConfig, stage: DPOStage) -> int | None:
    """Pairs ``max_steps`` optimizer steps consume over every process (None: epochs decide, all are used)."""
    if not stage.max_steps:
        return None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return stage.max_steps * config.per_device_batch_size * config.gradient_accumulation * world


def pairs_used(rows: list[dict[str, Any]], needed: int | None) -> list[dict[str, Any]]:
    """The first ``needed`` pairs, plus the rest of the last one's group (pairs of one question or request, ids
    ``<item>:<variant>``, are written next to each other): a stage that stops after ``max_steps`` never sees the
    others, so their reference log-probabilities (a forward pass each, minutes for thousands of pairs on a CPU)
    are not computed. Keeping whole groups keeps what a group balances (a question's rotations: every letter
    chosen and rejected once) balanced in what is trained on."""
    if needed is None or needed >= len(rows):
        return rows
    group = pair_group(rows[needed - 1])
    end = needed
    while end < len(rows) and pair_group(rows[end]) == group:
        end += 1
    return rows[:end]


def pair_group(row: Mapping[str, Any]) -> str:
    """The question or request a pair was made from (ids ``<item>:<variant>``); a pair without an id is its own."""
    pair_id = row.get("id")
    return str(pair_id).rsplit(":", 1)[0] if pair_id is not None else f"#{id(row)}"
