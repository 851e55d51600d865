"""Readers for the public medical multiple-choice formats, from local files or the Hugging Face Hub.

Every reader turns rows into :class:`~aloekit.data.schema.MCQItem` and names the file and row of anything it
cannot read, with the fix, as a one-line :class:`~aloekit.errors.UserError`. Local layouts follow
``shared/data/README.md`` (the files as their upstream repositories publish them); Hub layouts follow the
dataset cards of the ids named in :mod:`aloekit.evaluation.benchmarks`.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from aloekit.catalog import PUBMEDQA_TEST_IDS
from aloekit.data.schema import MCQItem
from aloekit.errors import MalformedRow, UserError
from aloekit.io import TextFile, json_lines, read_jsonl

LETTERS = "ABCDEFGHIJ"
PUBMEDQA_LABELS = ("yes", "no", "maybe")

RowParser = Callable[[Mapping[str, Any], str], MCQItem]
"""(row, where) -> item; ``where`` names the file and row (or Hub split and index) for error messages."""


# --- file readers ---------------------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    with _open(path) as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise UserError(f"{path}: not valid JSON ({e}); restore the original file") from e


def _open(path: Path) -> TextFile:
    if not path.is_file():
        raise UserError(f"file not found: {path}; check the path (or --data-dir)")
    # A binary or non-UTF-8 file is one error naming its first undecodable line (TextFile).
    return TextFile(path)


def field(row: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    """``row[key]``, checked for presence and type, or a one-line error naming the row and the field."""
    if key not in row or row[key] is None:
        raise MalformedRow(
            f"missing field '{key}'",
            f"{where}: missing field '{key}' (fields present: {', '.join(sorted(row)) or 'none'})",
        )
    value = row[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise MalformedRow(
            f"field '{key}' not {names}",
            f"{where}: field '{key}' must be {names}, got {type(value).__name__} {str(value)[:40]!r}",
        )
    return value


def letter_index(letter: str, n_options: int, where: str, key: str) -> int:
    index = LETTERS.find(letter.strip().upper()) if len(letter.strip()) == 1 else -1
    if not 0 <= index < n_options:
        raise MalformedRow(
            f"bad '{key}'", f"{where}: field '{key}' is {letter!r}, not one of the option letters {LETTERS[:n_options]}"
        )
    return index


# --- row parsers (one per format) -----------------------------------------------------------------------------


def medqa_row(row: Mapping[str, Any], where: str) -> MCQItem:
    """MedQA / MedExQA JSON lines: ``question``, ``options`` {A: .., B: ..}, ``answer_idx`` (a letter).

    The subject is MedQA's ``meta_info`` (its USMLE step) or, in MedExQA's medagents layout, the specialty that
    ``realidx`` carries after the row number (``12_speech_pathologist``)."""
    options = field(row, "options", where, dict)
    letters = sorted(options)
    if letters != list(LETTERS[: len(letters)]):
        raise MalformedRow(
            "bad 'options'", f"{where}: field 'options' must be keyed A, B, C, ... in order, got {', '.join(letters)}"
        )
    texts = tuple(str(options[k]) for k in letters)
    answer = letter_index(field(row, "answer_idx", where), len(texts), where, "answer_idx")
    item_id = str(row.get("id") or row.get("realidx") or where)
    return MCQItem(
        id=item_id, question=field(row, "question", where), options=texts, answer=answer, subject=_medqa_subject(row)
    )


def _medqa_subject(row: Mapping[str, Any]) -> str | None:
    meta = _text_or_none(row.get("meta_info"))
    if meta:
        return meta
    specialty = re.fullmatch(r"\d+_([a-z_]+)", str(row.get("realidx") or ""))
    return specialty.group(1) if specialty else None


def medmcqa_row(cop_base: int) -> RowParser:
    """MedMCQA: ``question``, ``opa``..``opd``, ``cop``. The MIRAGE copy is 1-based, the Hub copy 0-based."""

    def parse(row: Mapping[str, Any], where: str) -> MCQItem:
        texts = tuple(str(field(row, k, where)) for k in ("opa", "opb", "opc", "opd"))
        cop = field(row, "cop", where, int)
        if not cop_base <= cop < cop_base + 4:
            layout = "1-based (cop 1..4, the MIRAGE copy)" if cop_base == 1 else "0-based (cop 0..3, the Hub copy)"
            raise MalformedRow("bad 'cop'", f"{where}: field 'cop' is {cop}, but this file is read as {layout}")
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
        raise MalformedRow("bad 'cop'", f"{where}: field 'cop' is {cop}, expected 1..4")
    item_id = str(row.get("unique_id") or where)
    return MCQItem(id=item_id, question=field(row, "question", where), options=texts, answer=cop - 1)


def headqa_row(row: Mapping[str, Any], where: str) -> MCQItem:
    """HEAD-QA (EleutherAI/headqa, en): ``qtext``, ``answers`` [{aid, atext}], ``ra`` (1-based answer id)."""
    answers = field(row, "answers", where, list)
    ordered = sorted(answers, key=lambda a: int(a["aid"]))
    ra = field(row, "ra", where, int)
    if not 1 <= ra <= len(ordered):
        raise MalformedRow("bad 'ra'", f"{where}: field 'ra' is {ra}, expected 1..{len(ordered)}")
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
        raise MalformedRow(
            "bad 'final_decision'", f"{where}: field 'final_decision' is {decision!r}, expected yes, no or maybe"
        )
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
                raise MalformedRow(
                    "wrong column count",
                    f"{where}: expected 6 columns (question, A, B, C, D, answer letter; no header), got {len(cells)}",
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


# --- row by row, for training sources -------------------------------------------------------------------------
# Training files are read one row at a time so that one bad row is counted by the caller's Tally, not fatal:
# readers yield Rows and raise only whole-file errors (missing file, not JSON); parsers run under Tally.read and
# raise MalformedRow for their row alone.


@dataclass(frozen=True)
class Row:
    """One input row before parsing, with where it came from."""

    where: str
    """Its location for messages: ``<path>:<n>`` (line of a JSON lines file, record of a JSON list or CSV,
    from 1), ``<path> (<key>)`` in a JSON object keyed by id, or ``<hub id>[<split>][<i>]``."""
    id: str
    """Fallback id, the same on every machine: ``<file relative to the data dir>:<n>``, the key of a JSON object
    keyed by id (PubMedQA's PMIDs), or ``<hub id>[<split>][<i>]``."""
    raw: Any
    """A JSON line still to decode, a decoded record, or the cells of a header-less CSV row."""
    file: Path | None = None

    def fields(self) -> dict[str, Any]:
        """The row as a JSON object; a line that is not one is this row's problem, not the file's."""
        value = self.raw
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as e:
                raise MalformedRow(
                    "not valid JSON", f"{self.where}: not valid JSON ({e}); each line must be one JSON object"
                ) from e
        if not isinstance(value, Mapping):
            raise MalformedRow("not a JSON object", f"{self.where}: expected a JSON object, got {type(value).__name__}")
        if None in value:  # csv.DictReader files cells beyond the header under the key None
            raise MalformedRow("too many cells", f"{self.where}: the row has more cells than the CSV header")
        return dict(value)


RowReader = Callable[[Path, Path], Iterator[Row]]
"""(file, root) -> rows; ``root`` is the folder the rows' fallback ids are relative to (the data dir)."""


def relative_name(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def file_rows(path: Path, root: Path) -> Iterator[Row]:
    """The rows of a JSON lines, JSON (a list of records, or an object keyed by id) or CSV (with header) file."""
    name = relative_name(path, root)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with _open(path) as f:
            for n, record in enumerate(csv.DictReader(f), start=1):
                yield Row(f"{path}:{n}", f"{name}:{n}", record, path)
    elif suffix == ".jsonl":
        with _open(path) as f:
            yield from _line_rows(path, name, f)
    elif suffix == ".json":
        yield from _json_rows(path, name)
    else:
        raise UserError(f"{path}: unsupported file type '{suffix}'; give a .jsonl, .json or .csv file")


def _line_rows(path: Path, name: str, lines: Any) -> Iterator[Row]:
    for n, line in enumerate(lines, start=1):
        if line.strip():
            yield Row(f"{path}:{n}", f"{name}:{n}", line, path)


def _json_rows(path: Path, name: str) -> Iterator[Row]:
    with _open(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except ValueError as e:
        # Many exports name JSON lines files .json: a first value followed by more is read as lines.
        if getattr(e, "msg", "") != "Extra data":
            raise UserError(f"{path}: not valid JSON ({e}); give a JSON list, a JSON object or JSON lines") from e
        yield from _line_rows(path, name, json_lines(text))
        return
    if isinstance(data, list):
        for n, record in enumerate(data, start=1):
            yield Row(f"{path}:{n}", f"{name}:{n}", record, path)
    elif isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        for key, record in data.items():
            yield Row(f"{path} ({key})", str(key), record, path)
    else:
        raise UserError(f"{path}: expected a JSON list of records or an object keyed by id, got {type(data).__name__}")


def hub_rows(path: str, name: str | None, split: str, *, fix: str) -> Iterator[Row]:
    """Rows of a Hub dataset split; a dataset that cannot be loaded (offline, unknown) is one line ending in ``fix``."""
    try:
        import datasets

        records = datasets.load_dataset(path, name, split=split)
    except Exception as e:  # datasets raises many types (ConnectionError, FileNotFoundError, DatasetNotFoundError)
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise UserError(f"cannot load {path} ({name or 'default'}, {split}) from the Hub: {reason}; {fix}") from e
    for i, record in enumerate(records):
        where = f"{path}[{split}][{i}]"
        yield Row(where, where, record)


def _as_training(item: MCQItem, row: Row, source: str, **changes: Any) -> MCQItem:
    """The item labelled with its source, keeping a source-native id and else the row's stable fallback id."""
    item_id = row.id if item.id == row.where else item.id
    return replace(item, id=item_id, source=source, **changes)


def _text_or_none(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


TrainParser = Callable[[Row, str], MCQItem]
"""(row, source name) -> item, raising MalformedRow for that row alone."""


def mcq_train(row: Row, source: str) -> MCQItem:
    """Our own MCQItem JSON (``MCQItem.to_json``); ``id`` may be left out."""
    fields = row.fields()
    item = MCQItem.from_json({**fields, "id": fields.get("id") or row.id}, row.where)
    return replace(item, source=source)


def medqa_train(row: Row, source: str) -> MCQItem:
    """MedQA / MedExQA JSON lines (``question``, ``options`` {A..}, ``answer_idx``)."""
    return _as_training(medqa_row(row.fields(), row.where), row, source)


def medmcqa_train(cop_base: int) -> TrainParser:
    """MedMCQA rows with their expert explanation (``exp``, often empty) kept as the item's explanation."""
    parse_item = medmcqa_row(cop_base)

    def parse(row: Row, source: str) -> MCQItem:
        fields = row.fields()
        return _as_training(parse_item(fields, row.where), row, source, explanation=_text_or_none(fields.get("exp")))

    return parse


def medmcqa_rows(path: Path, root: Path) -> Iterator[Row]:
    """A local MedMCQA file, read 1-based (the MIRAGE copy): a ``cop`` of 0 means the file is the 0-based Hub
    layout, which would silently shift every answer, so the whole file is refused rather than misread."""
    rows = list(file_rows(path, root))
    for row in rows:
        try:
            cop = row.fields().get("cop")
        except MalformedRow:
            continue  # counted when the row itself is parsed
        if cop == 0:
            raise UserError(
                f"{row.where}: 'cop' is 0, so {path} is 0-based (the Hub layout); local MedMCQA files are read "
                "1-based (the MIRAGE copy): add 1 to every 'cop'"
            )
    yield from rows


def pubmedqa_train(row: Row, source: str) -> MCQItem:
    """PubMedQA in the upstream layout (``QUESTION``, ``CONTEXTS``, ``final_decision``, ``LONG_ANSWER``), keyed by
    PMID in the upstream files; the long answer is the explanation."""
    fields = row.fields()
    contexts = field(fields, "CONTEXTS", row.where, list)
    if not all(isinstance(c, str) for c in contexts):
        raise MalformedRow("bad 'CONTEXTS'", f"{row.where}: field 'CONTEXTS' must be a list of strings")
    item = pubmedqa_hub_row({"PUBMED_ID": row.id, **fields}, row.where)
    return _as_training(item, row, source, explanation=_text_or_none(fields.get("LONG_ANSWER")))


def pubmedqa_qiaojin_train(row: Row, source: str) -> MCQItem:
    """PubMedQA as qiaojin/PubMedQA publishes it: ``pubid``, ``question``, ``context`` {``contexts``: [..]},
    ``long_answer``, ``final_decision``."""
    fields = row.fields()
    context = field(fields, "context", row.where, dict)
    upstream = {
        "PUBMED_ID": str(fields.get("pubid") or row.id),
        "QUESTION": fields.get("question"),
        "CONTEXTS": context.get("contexts"),
        "final_decision": fields.get("final_decision"),
        "LONG_ANSWER": fields.get("long_answer"),
    }
    return pubmedqa_train(Row(row.where, row.id, upstream, row.file), source)


def pubmedqa_pool_rows(path: Path, root: Path) -> Iterator[Row]:
    """PQA-L minus its official test split: the PMIDs of the catalog's test-ID file (beside the labeled file) are
    the pubmedqa benchmark, so they are left out here; a labeled file without it is refused, not read whole."""
    test_name = PurePosixPath(PUBMEDQA_TEST_IDS).name
    test_file = path.with_name(test_name)
    if not test_file.is_file():
        raise UserError(
            f"{test_file} not found: the pubmedqa training pool is {path.name} minus the test PMIDs listed there; "
            f"put the upstream {test_name} beside it"
        )
    test_ids = read_json(test_file)
    if not isinstance(test_ids, dict):
        raise UserError(f"{test_file}: expected a JSON object keyed by PMID; restore the original file")
    for row in file_rows(path, root):
        if row.id not in test_ids:
            yield row


def mmlu_csv_rows(path: Path, root: Path) -> Iterator[Row]:
    """The original MMLU CSV: no header; question, A, B, C, D, answer letter."""
    name = relative_name(path, root)
    with _open(path) as f:
        for n, cells in enumerate(csv.reader(f), start=1):
            yield Row(f"{path}:{n}", f"{name}:{n}", cells, path)


def mmlu_csv_train(row: Row, source: str) -> MCQItem:
    cells = row.raw if isinstance(row.raw, list) else []
    if len(cells) != 6:
        raise MalformedRow(
            "wrong column count",
            f"{row.where}: expected 6 columns (question, A, B, C, D, answer letter; no header), got {len(cells)}",
        )
    # anatomy_dev.csv -> anatomy: the subject is the file name without its split.
    subject = re.sub(r"_(dev|val|test|train)$", "", row.file.stem) if row.file else None
    answer = letter_index(cells[5], 4, row.where, "answer (column 6)")
    item = MCQItem(id=row.id, question=cells[0], options=tuple(cells[1:5]), answer=answer, subject=subject)
    return replace(item, source=source)


def mmlu_hub_train(row: Row, source: str) -> MCQItem:
    """cais/mmlu rows (``question``, ``choices``, ``answer`` 0-based, ``subject``); older revisions of the
    ``auxiliary_train`` config nest each row under a ``train`` key, which is unwrapped."""
    fields = row.fields()
    if isinstance(fields.get("train"), Mapping):
        fields = dict(fields["train"])
    item = mmlu_hub_row(_text_or_none(fields.get("subject")) or "")(fields, row.where)
    return _as_training(item, row, source, subject=item.subject or None)


def headqa_train(row: Row, source: str) -> MCQItem:
    """HEAD-QA rows (``qtext``, ``answers`` [{aid, atext}], ``ra``), checked first so a bad row cannot crash."""
    fields = row.fields()
    answers = field(fields, "answers", row.where, list)
    if not all(isinstance(a, Mapping) and isinstance(a.get("aid"), int) and "atext" in a for a in answers):
        raise MalformedRow("bad 'answers'", f"{row.where}: field 'answers' must be a list of {{aid, atext}} objects")
    return _as_training(headqa_row(fields, row.where), row, source)
