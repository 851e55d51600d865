"""Readers for the public medical multiple-choice formats, from local files or the Hugging Face Hub.

Every reader turns rows into :class:`~aloekit.data.schema.MCQItem` and names the file and row of anything it
cannot read, with the fix, as a one-line :class:`~aloekit.errors.UserError`. Local layouts follow
``shared/data/README.md`` (the files as their upstream repositories publish them); Hub layouts follow the
dataset cards of the ids named in :mod:`aloekit.evaluation.benchmarks`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from aloekit.data.schema import MCQItem
from aloekit.errors import UserError

LETTERS = "ABCDEFGHIJ"
PUBMEDQA_LABELS = ("yes", "no", "maybe")

RowParser = Callable[[Mapping[str, Any], str], MCQItem]
"""(row, where) -> item; ``where`` names the file and row (or Hub split and index) for error messages."""


# --- file readers ---------------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) for each non-blank line; a line that is not a JSON object is a one-line error."""
    with _open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except ValueError as e:
                raise UserError(f"{where}: not valid JSON ({e.msg}); each line must be one JSON object") from e
            if not isinstance(row, dict):
                raise UserError(f"{where}: expected a JSON object per line, got {type(row).__name__}")
            yield where, row


def read_json(path: Path) -> Any:
    with _open(path) as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise UserError(f"{path}: not valid JSON ({e}); restore the original file") from e


def _open(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"benchmark file not found: {path}")
    # utf-8-sig: some upstream CSV/JSON files start with a byte-order mark.
    return path.open(encoding="utf-8-sig", newline="")


def field(row: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    """``row[key]``, checked for presence and type, or a one-line error naming the row and the field."""
    if key not in row or row[key] is None:
        raise UserError(f"{where}: missing field '{key}' (fields present: {', '.join(sorted(row)) or 'none'})")
    value = row[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise UserError(f"{where}: field '{key}' must be {names}, got {type(value).__name__} {str(value)[:40]!r}")
    return value


def letter_index(letter: str, n_options: int, where: str, key: str) -> int:
    index = LETTERS.find(letter.strip().upper()) if len(letter.strip()) == 1 else -1
    if not 0 <= index < n_options:
        raise UserError(f"{where}: field '{key}' is {letter!r}, not one of the option letters {LETTERS[:n_options]}")
    return index


# --- row parsers (one per format) -----------------------------------------------------------------------------


def medqa_row(row: Mapping[str, Any], where: str) -> MCQItem:
    """MedQA / MedExQA JSON lines: ``question``, ``options`` {A: .., B: ..}, ``answer_idx`` (a letter)."""
    options = field(row, "options", where, dict)
    letters = sorted(options)
    if letters != list(LETTERS[: len(letters)]):
        raise UserError(f"{where}: field 'options' must be keyed A, B, C, ... in order, got {', '.join(letters)}")
    texts = tuple(str(options[k]) for k in letters)
    answer = letter_index(field(row, "answer_idx", where), len(texts), where, "answer_idx")
    item_id = str(row.get("id") or row.get("realidx") or where)
    return MCQItem(id=item_id, question=field(row, "question", where), options=texts, answer=answer)


def medmcqa_row(cop_base: int) -> RowParser:
    """MedMCQA: ``question``, ``opa``..``opd``, ``cop``. The MIRAGE copy is 1-based, the Hub copy 0-based."""

    def parse(row: Mapping[str, Any], where: str) -> MCQItem:
        texts = tuple(str(field(row, k, where)) for k in ("opa", "opb", "opc", "opd"))
        cop = field(row, "cop", where, int)
        if not cop_base <= cop < cop_base + 4:
            layout = "1-based (cop 1..4, the MIRAGE copy)" if cop_base == 1 else "0-based (cop 0..3, the Hub copy)"
            raise UserError(f"{where}: field 'cop' is {cop}, but this file is read as {layout}")
        return MCQItem(
            id=str(row.get("id") or where),
            question=field(row, "question", where),
            options=texts,
            answer=cop - cop_base,
            subject=row.get("subject_name"),
        )

    return parse


def careqa_row(row: Mapping[str, Any], where: str) -> MCQItem:
    """CareQA (HPAI-BSC/CareQA, CareQA_en): ``question``, ``op1``..``op4``, ``cop`` 1-based."""
    texts = tuple(str(field(row, f"op{i}", where)) for i in range(1, 5))
    cop = field(row, "cop", where, int)
    if not 1 <= cop <= 4:
        raise UserError(f"{where}: field 'cop' is {cop}, expected 1..4")
    item_id = str(row.get("unique_id") or where)
    return MCQItem(id=item_id, question=field(row, "question", where), options=texts, answer=cop - 1)


def headqa_row(row: Mapping[str, Any], where: str) -> MCQItem:
    """HEAD-QA (EleutherAI/headqa, en): ``qtext``, ``answers`` [{aid, atext}], ``ra`` (1-based answer id)."""
    answers = field(row, "answers", where, list)
    ordered = sorted(answers, key=lambda a: int(a["aid"]))
    ra = field(row, "ra", where, int)
    if not 1 <= ra <= len(ordered):
        raise UserError(f"{where}: field 'ra' is {ra}, expected 1..{len(ordered)}")
    item_id = f"{row.get('name', '')}-{row.get('qid', where)}"
    return MCQItem(
        id=item_id, question=field(row, "qtext", where), options=tuple(a["atext"] for a in ordered), answer=ra - 1
    )


def mmlu_hub_row(subject: str) -> RowParser:
    """MMLU on the Hub (cais/mmlu): ``question``, ``choices`` [4], ``answer`` (0-based int)."""

    def parse(row: Mapping[str, Any], where: str) -> MCQItem:
        choices = field(row, "choices", where, list)
        answer = field(row, "answer", where, int)
        return MCQItem(
            id=where, question=field(row, "question", where), options=tuple(choices), answer=answer, subject=subject
        )

    return parse


def pubmedqa_hub_row(row: Mapping[str, Any], where: str) -> MCQItem:
    """PubMedQA PQA-L on the Hub (bigbio/pubmed_qa, source schema): ``QUESTION``, ``CONTEXTS``, ``final_decision``."""
    decision = field(row, "final_decision", where)
    if decision not in PUBMEDQA_LABELS:
        raise UserError(f"{where}: field 'final_decision' is {decision!r}, expected yes, no or maybe")
    return MCQItem(
        id=str(row.get("PUBMED_ID") or where),
        question=field(row, "QUESTION", where),
        options=PUBMEDQA_LABELS,
        answer=PUBMEDQA_LABELS.index(decision),
        context="\n".join(field(row, "CONTEXTS", where, list)),
    )


# --- whole-file loaders ---------------------------------------------------------------------------------------


def load_jsonl(path: Path, parse: RowParser) -> list[MCQItem]:
    return [parse(row, where) for where, row in read_jsonl(path)]


def load_mmlu_csv(path: Path, subject: str) -> list[MCQItem]:
    """The original MMLU CSV: no header; question, A, B, C, D, answer letter."""
    items = []
    with _open(path) as f:
        for number, cells in enumerate(csv.reader(f), start=1):
            where = f"{path}:{number}"
            if len(cells) != 6:
                raise UserError(
                    f"{where}: expected 6 columns (question, A, B, C, D, answer letter; no header), got {len(cells)}"
                )
            answer = letter_index(cells[5], 4, where, "answer (column 6)")
            items.append(
                MCQItem(id=where, question=cells[0], options=tuple(cells[1:5]), answer=answer, subject=subject)
            )
    return items


def load_pubmedqa(labeled: Path, test_ids: Path) -> list[MCQItem]:
    """PQA-L from the upstream repository: the labeled set keyed by PMID, restricted to the official test PMIDs
    (in the order of the ground-truth file), whose labels must agree with the labeled set."""
    docs = read_json(labeled)
    truth = read_json(test_ids)
    if not isinstance(docs, dict) or not isinstance(truth, dict):
        raise UserError(f"{labeled} and {test_ids} must each be a JSON object keyed by PMID")
    items = []
    for pmid, label in truth.items():
        where = f"{labeled} (PMID {pmid})"
        if pmid not in docs:
            raise UserError(f"{test_ids}: PMID {pmid} is not in {labeled}; are both files from the same release?")
        item = pubmedqa_hub_row({**docs[pmid], "PUBMED_ID": pmid}, where)
        if PUBMEDQA_LABELS[item.answer] != label:
            raise UserError(
                f"{test_ids}: PMID {pmid} is labelled {label!r} but {labeled} says {item.options[item.answer]!r}"
            )
        items.append(item)
    return items


def load_hub(path: str, name: str | None, split: str, parse: RowParser, *, relative: str | None) -> list[MCQItem]:
    """Rows of a Hub dataset split, parsed; offline or missing datasets give one line naming the way out."""
    try:
        import datasets

        rows = datasets.load_dataset(path, name, split=split)
    except Exception as e:  # datasets raises many types (ConnectionError, FileNotFoundError, DatasetNotFoundError)
        local = f"; or pass --data-dir with {relative} inside it" if relative else ""
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise UserError(f"cannot load {path} ({name or 'default'}, {split}) from the Hub: {reason}{local}") from e
    return [parse(row, f"{path}[{split}][{i}]") for i, row in enumerate(rows)]
