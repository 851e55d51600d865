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
    return rows


def one_layout(rows: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
    """``rows`` in one layout, as TRL trains one per dataset. Where plain pairs (strings: a log-likelihood
    benchmark's "...Answer:" then " B") mix with chat pairs (messages), each chat pair becomes the strings TRL
    would build from it (:func:`chat_as_text`), so one stage can keep up the plain letters a model is scored on
    while it learns from chat pairs. Rows of one layout are returned as they are."""
    if len({isinstance(row["prompt"], str) for row in rows}) < 2:
        return rows
    return [row if isinstance(row["prompt"], str) else chat_as_text(row, tokenizer) for row in rows]


def chat_as_text(row: dict[str, Any], tokenizer: Any) -> dict[str, Any]:
    """A chat pair as plain strings: the prompt rendered by the model's chat template with its generation prompt,
    each reply the rest of the rendered conversation through its end-of-turn. The token sequences are TRL's for the
    conversational pair, but for what the template writes after the end-of-turn (a newline): TRL ends a plain reply
    with the EOS token, so a reply already ending with it stops there instead of getting a second one."""
    prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=False)
    text = {**row, "prompt": prompt}
    eos = tokenizer.eos_token or ""
    for side in ("chosen", "rejected"):
        whole = tokenizer.apply_chat_template([*row["prompt"], *row[side]], tokenize=False)
        if not whole.startswith(prompt):
            raise UserError(
                "the model's chat template renders a prompt differently on its own than before a reply, so chat "
                "pairs cannot be turned into the plain text their plain pairs need: train the two kinds of pair in "
                "separate DPO stages"
            )
        reply = whole[len(prompt) :]
        text[side] = reply.rstrip() if eos and reply.rstrip().endswith(eos) else reply
    return text


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


def train_rows(config: DPORunConfig, stage: DPOStage, path: Path, tokenizer: Any) -> tuple[list[dict[str, Any]], int]:
    """The pairs of ``path`` that ``stage`` trains on (whole groups, :func:`pairs_used`), in the one layout TRL gets
    (:func:`one_layout`, decided on these pairs alone), each with its ``id``; and how many pairs the file holds.
    Training and ``--debug-tokens`` both read through here, so what the debug view shows is what trains."""
    rows = [{**row, "id": pair_id} for pair_id, row in pair_rows(path)]
    return one_layout(pairs_used(rows, pairs_per_run(config, stage)), tokenizer), len(rows)


def pair_group(row: Mapping[str, Any]) -> str:
    """The question or request a pair was made from (ids ``<item>:<variant>``); a pair without an id is its own."""
    pair_id = row.get("id")
    return str(pair_id).rsplit(":", 1)[0] if pair_id is not None else f"#{id(row)}"
