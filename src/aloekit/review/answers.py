"""The answers a review compares: pre-generated, one JSON-lines file per model, so the server never loads a model.

Layout (``--answers DIR``): ``DIR/<model>.jsonl``, one line per question::

    {"id": "medicationqa-17", "question": "Can I take ibuprofen with lisinopril?", "answer": "..."}

``id`` names the question (the same id in every model's file), ``question`` is the text reviewers read, ``answer``
the model's reply; other fields are ignored, so a file that also keeps a reference answer or generation settings
reads as is. Every model compared must answer every question, with the same question text: a pair the reviewers
see is always two answers to one question.

``--questions FILE`` (optional, JSON lines with at least ``id``) chooses which questions are reviewed and in which
order; without it, every question the answer files hold is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aloekit.data.sources.mcqa import field
from aloekit.errors import UserError
from aloekit.io import read_jsonl

MAX_TEXT = 20_000
"""Longest question or answer (characters) a review page shows; longer ones are refused, not cut silently."""


@dataclass(frozen=True)
class ReviewSet:
    """Questions in review order and, per model, its answer to each."""

    questions: dict[str, str]
    """question id -> question text, in review order."""
    answers: dict[str, dict[str, str]]
    """model -> question id -> answer."""


def load(answers_dir: Path, models: list[str], questions_file: Path | None = None) -> ReviewSet:
    """Read ``models``' answer files from ``answers_dir``; one-line errors for anything a user must fix."""
    if len(models) < 2:
        raise UserError(f"--models needs at least two models to compare, got {', '.join(models) or 'none'}")
    if len(set(models)) != len(models):
        raise UserError(f"--models names a model twice: {', '.join(models)}")
    if not answers_dir.is_dir():
        raise UserError(f"--answers {answers_dir} is not a folder: give the folder holding <model>.jsonl per model")
    available = sorted(p.stem for p in answers_dir.glob("*.jsonl"))
    texts: dict[str, str] = {}
    answers: dict[str, dict[str, str]] = {}
    for model in models:
        path = answers_dir / f"{model}.jsonl"
        if not path.is_file():
            raise UserError(
                f"unknown model {model!r}: no {path}; models with answers there: {', '.join(available) or 'none'}"
            )
        answers[model] = _read_answers(path, texts)
    # Without --questions: every question any model answered, so a question one model skipped is an error below.
    order = (
        _question_order(questions_file, answers)
        if questions_file
        else list(dict.fromkeys(q for a in answers.values() for q in a))
    )
    for model in models:
        missing = [q for q in order if q not in answers[model]]
        if missing:
            raise UserError(
                f"model {model!r} has no answer to {len(missing)} of the {len(order)} questions (first: {missing[0]}): "
                f"generate them, or leave those questions out with --questions"
            )
    if not order:
        raise UserError(f"no questions to review: the answer files in {answers_dir} are empty")
    return ReviewSet(
        questions={q: texts[q] for q in order}, answers={m: {q: answers[m][q] for q in order} for m in models}
    )


def _read_answers(path: Path, texts: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for where, row in read_jsonl(path):
        qid = str(field(row, "id", where, (str, int)))
        question, answer = field(row, "question", where), field(row, "answer", where)
        for name, text in (("question", question), ("answer", answer)):
            if len(text) > MAX_TEXT:
                raise UserError(f"{where}: {name} of {len(text)} characters, more than {MAX_TEXT}: shorten it")
        if qid in out:
            raise UserError(f"{where}: question id {qid!r} appears twice in {path.name}: keep one answer per question")
        if texts.setdefault(qid, question) != question:
            raise UserError(
                f"{where}: question {qid!r} differs from the same id in another model's file: "
                "every model must answer the same questions"
            )
        out[qid] = answer
    return out


def _question_order(path: Path, answers: dict[str, dict[str, str]]) -> list[str]:
    order: list[str] = []
    for where, row in read_jsonl(path):
        qid = str(field(row, "id", where, (str, int)))
        if qid in order:
            raise UserError(f"{where}: question id {qid!r} is listed twice in {path}")
        if not any(qid in a for a in answers.values()):
            raise UserError(f"{where}: question {qid!r} is in no model's answer file")
        order.append(qid)
    if not order:
        raise UserError(f"--questions {path} has no questions: one JSON object with an 'id' per line")
    return order


__all__ = ["MAX_TEXT", "ReviewSet", "load"]
