"""Where open-ended questions come from: a JSON-lines file, or a training source that ships reference answers.

``file:PATH``: one JSON object per line with ``question``, ``reference`` and optionally ``id`` (default
``<file>:<line>``); a bad row is one error naming the file, the line and the field. A training source
(:data:`SOURCES`) is read from a data folder by the mixture's own loader, with the mixture's id-hashed ``part``,
so the items an SFT mixture held apart can be chosen. ``exclude`` names dataset folders or JSON-lines files (e.g. a
run's ``data/sft``): an item whose id (or an ``id:...`` derived from it) or whose question text, as a user turn,
appears there is left out, so a question trained on is never scored. ``limit`` draws a seeded sample.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aloekit.config import OpenEndedConfig
from aloekit.data.sources.mcqa import field
from aloekit.errors import UserError
from aloekit.io import read_jsonl

__all__ = ["SOURCES", "Loaded", "Question", "load_questions"]

SOURCES = ("medicationqa", "medical_meadow", "chatdoctor")
"""Training sources whose items are single questions with a reference answer."""


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    reference: str


Loaded = dict[str, list[Question]]
"""question set name -> its questions, in order."""


def load_questions(config: OpenEndedConfig) -> tuple[Loaded, dict[str, dict[str, Any]]]:
    """Every question set of ``config`` (after part, exclude and limit), and per set what was left out and why.
    Call it before loading a model: a bad file or an unknown name then fails in seconds."""
    if config.data_dir is not None and not config.data_dir.is_dir():
        raise UserError(f"--data-dir {config.data_dir} is not a folder")
    ids, texts = _excluded(config.exclude)
    loaded: Loaded = {}
    notes: dict[str, dict[str, Any]] = {}
    owner: dict[str, str] = {}
    for name in config.benchmarks:
        if name in loaded:
            raise UserError(f"question set {name} is named twice in --benchmarks: name it once")
        every, note = _read_set(name, config)
        kept = [q for q in every if not _is_excluded(q, ids, texts)]
        note["excluded"] = len(every) - len(kept)
        if not kept:
            raise UserError(f"question set {name} has no questions left after --exclude: exclude less, or add data")
        if config.limit is not None and config.limit < len(kept):
            picked = sorted(random.Random(config.seed).sample(range(len(kept)), config.limit))
            note["sampled"] = {"of": len(kept), "n": config.limit}
            kept = [kept[i] for i in picked]
        for q in kept:
            if q.id in owner:
                raise UserError(
                    f"question id {q.id!r} is in both {owner[q.id]} and {name}: answer files need unique ids; "
                    "evaluate the two sets in separate runs or rename the ids"
                )
            owner[q.id] = name
        loaded[name], notes[name] = kept, note
    return loaded, notes


def _read_set(name: str, config: OpenEndedConfig) -> tuple[list[Question], dict[str, Any]]:
    if name.startswith("file:"):
        return _read_file(Path(name.removeprefix("file:"))), {}
    if name not in SOURCES:
        raise UserError(
            f"unknown question set '{name}': use one of {', '.join(SOURCES)} (read from --data-dir) or file:PATH "
            "(JSON lines with question and reference)"
        )
    from aloekit.data.mixture import SourceEntry, load_entry
    from aloekit.data.schema import ChatSample
    from aloekit.data.tally import Tally

    tally = Tally()
    records = load_entry(SourceEntry.model_validate({"source": name, "part": config.part}), config.data_dir, tally)
    questions = [
        Question(r.id, r.messages[0]["content"], r.messages[-1]["content"])
        for r in records
        if isinstance(r, ChatSample) and [m["role"] for m in r.messages] == ["user", "assistant"]
    ]
    if not questions:
        raise UserError(tally.why_empty(f"question set {name}", "check --data-dir and --part"))
    return questions, {"part": list(config.part) if config.part else None, "dropped": tally.to_json()}


def _read_file(path: Path) -> list[Question]:
    out: list[Question] = []
    seen: set[str] = set()
    for where, row in read_jsonl(path):
        qid = str(field(row, "id", where, (str, int))) if row.get("id") is not None else where.rsplit("/", 1)[-1]
        texts = []
        for key in ("question", "reference"):
            try:
                text = field(row, key, where).strip()
            except UserError as e:
                raise UserError(f"{e.message}: each line needs 'question' and 'reference' (text), 'id' optional") from e
            if not text:
                raise UserError(f"{where}: field '{key}' is empty: give the {key} text")
            texts.append(text)
        if qid in seen:
            raise UserError(f"{where}: id {qid!r} appears twice in {path.name}: give each question its own id")
        seen.add(qid)
        out.append(Question(qid, *texts))
    if not out:
        raise UserError(f"{path}: no questions: write one JSON object per line with 'question' and 'reference'")
    return out


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _excluded(paths: tuple[Path, ...]) -> tuple[set[str], set[str]]:
    """Ids (and their ``id:...`` derivations' bases) and normalised user-turn texts of every excluded dataset."""
    ids: set[str] = set()
    texts: set[str] = set()
    for path in paths:
        if not path.exists():
            raise UserError(f"--exclude {path} not found: give a dataset folder (e.g. RUN/data/sft) or .jsonl file")
        files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
        if not files:
            raise UserError(f"--exclude {path} holds no .jsonl file: give the folder of a built dataset")
        for file in files:
            for _, row in read_jsonl(file):
                if isinstance(row.get("id"), str | int):
                    parts = str(row["id"]).split(":")
                    ids.update(":".join(parts[:k]) for k in range(1, len(parts) + 1))
                for key in ("messages", "prompt"):
                    turns = row.get(key)
                    if isinstance(turns, list):
                        texts.update(
                            _norm(t["content"])
                            for t in turns
                            if isinstance(t, dict) and t.get("role") == "user" and isinstance(t.get("content"), str)
                        )
                if isinstance(row.get("question"), str):
                    texts.add(_norm(row["question"]))
    return ids, texts


def _is_excluded(q: Question, ids: set[str], texts: set[str]) -> bool:
    return q.id in ids or _norm(q.question) in texts
