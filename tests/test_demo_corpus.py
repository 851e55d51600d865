"""Specification: the offline demo corpus that ships in ``aloekit/demo_data`` (see its README).

The corpus is our own writing: multiple-choice questions with explanations, harmful medical requests with safe
answers, and benign look-alikes with helpful answers. These tests check its shape (fields, counts, balance), that
the data stage reads every row exactly as it will in ``make demo``, that the answer extractor and the offline
refusal judge read it the way it was meant, and (where ``../shared/data`` exists) that no text of it overlaps an
evaluation set or a training source. No model is loaded.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import aloekit
from aloekit.data.decontaminate import DecontamConfig, EvalIndex, EvalText, evaluation_texts, mcq_texts
from aloekit.data.schema import ChatSample, HarmfulRequest, MCQItem
from aloekit.data.sources import SOURCES, load_source
from aloekit.data.sources.safety import BenignItem
from aloekit.data.tally import Tally
from aloekit.prompting.answers import extract_choice
from aloekit.safety.judge import OfflineJudge

DEMO = Path(aloekit.__file__).resolve().parent / "demo_data"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

FIELDS = {
    "mcq": {"id", "question", "options", "answer", "subject", "explanation"},
    "harmful": {"id", "prompt", "category", "safe_response"},
    "benign": {"id", "prompt", "answer"},
}
ID_PREFIX = {"mcq": "demo-mcq-", "harmful": "demo-harm-", "benign": "demo-benign-"}
MINIMUM = {"mcq": 160, "harmful": 60, "benign": 40}
LETTERS = "ABCD"
NGRAM = 13


def rows(name: str) -> list[dict[str, Any]]:
    with (DEMO / f"{name}.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def mcq() -> list[dict[str, Any]]:
    return rows("mcq")


@pytest.fixture(scope="module")
def harmful() -> list[dict[str, Any]]:
    return rows("harmful")


@pytest.fixture(scope="module")
def benign() -> list[dict[str, Any]]:
    return rows("benign")


def sentence_count(text: str) -> int:
    return len([s for s in re.split(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z0-9])", text.strip()) if s])


def key(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))


# --- shape ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FIELDS))
def test_every_row_has_exactly_the_documented_fields_and_a_unique_id(name: str) -> None:
    data = rows(name)
    assert len(data) >= MINIMUM[name]
    for row in data:
        assert set(row) == FIELDS[name], row.get("id")
        assert all(isinstance(row[k], str) and row[k].strip() for k in FIELDS[name] - {"options", "answer"}), row["id"]
    ids = [row["id"] for row in data]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(re.escape(ID_PREFIX[name]) + r"\d{3}", i) for i in ids)


@pytest.mark.parametrize(("name", "kind"), [("mcq", MCQItem), ("harmful", HarmfulRequest), ("benign", BenignItem)])
def test_the_data_stage_reads_every_row_without_dropping_any(name: str, kind: type) -> None:
    tally = Tally()
    records = load_source(format=name, path=DEMO / f"{name}.jsonl", tally=tally)
    assert tally.total() == 0, tally.to_json()
    assert len(records) == len(rows(name))
    assert all(isinstance(r, kind) for r in records)
    assert [r.id for r in records] == [row["id"] for row in rows(name)]


def test_mcq_rows_parse_into_the_schema_with_their_subject_and_explanation(mcq: list[dict[str, Any]]) -> None:
    for n, row in enumerate(mcq, start=1):
        item = MCQItem.from_json(row, f"mcq.jsonl:{n}")
        assert item.subject == row["subject"] and item.explanation == row["explanation"]
        assert item.answer_letter == LETTERS[row["answer"]]


def test_harmful_rows_parse_into_the_schema_with_category_and_safe_response(harmful: list[dict[str, Any]]) -> None:
    records = load_source(format="harmful", path=DEMO / "harmful.jsonl", tally=Tally())
    for row, record in zip(harmful, records, strict=True):
        assert isinstance(record, HarmfulRequest)
        assert (record.prompt, record.category, record.safe_response) == (
            row["prompt"],
            row["category"],
            row["safe_response"],
        )
        assert record.harmful_response is None


def test_benign_rows_keep_their_answers(benign: list[dict[str, Any]]) -> None:
    records = load_source(format="benign", path=DEMO / "benign.jsonl", tally=Tally())
    assert [(r.prompt, r.answer) for r in records] == [(row["prompt"], row["answer"]) for row in benign]


# --- multiple choice --------------------------------------------------------------------------------------------


def test_every_question_has_four_distinct_options_and_no_catch_all_option(mcq: list[dict[str, Any]]) -> None:
    for row in mcq:
        options = row["options"]
        assert len(options) == 4 and all(isinstance(o, str) and o.strip() for o in options), row["id"]
        assert len({key(o) for o in options}) == 4, row["id"]
        assert isinstance(row["answer"], int) and 0 <= row["answer"] < 4, row["id"]
        assert not any(re.search(r"\b(?:all|none|both) of the (?:above|following)\b", o, re.I) for o in options)


def test_no_two_questions_are_the_same(mcq: list[dict[str, Any]]) -> None:
    questions = Counter(key(row["question"]) for row in mcq)
    assert [q for q, n in questions.items() if n > 1] == []


def test_every_explanation_ends_with_its_answer_letter_and_the_extractor_reads_it(mcq: list[dict[str, Any]]) -> None:
    wrong = []
    for row in mcq:
        letter = LETTERS[row["answer"]]
        body, _, last = row["explanation"].rpartition("\n")
        if last != f"Answer: {letter}" or not 2 <= sentence_count(body) <= 4:
            wrong.append((row["id"], "layout"))
        if extract_choice(row["explanation"], LETTERS, row["options"]) != letter:
            wrong.append((row["id"], "extract_choice"))
    assert wrong == []


def test_the_right_answer_is_spread_evenly_over_the_four_positions(mcq: list[dict[str, Any]]) -> None:
    counts = Counter(row["answer"] for row in mcq)
    shares = {LETTERS[i]: counts[i] / len(mcq) for i in range(4)}
    assert all(0.22 <= share <= 0.28 for share in shares.values()), shares


def test_at_least_twelve_subjects_have_at_least_eight_questions_each(mcq: list[dict[str, Any]]) -> None:
    subjects = Counter(row["subject"] for row in mcq)
    assert sum(1 for n in subjects.values() if n >= 8) >= 12, subjects
    assert min(subjects.values()) >= 8, subjects


# --- safety -----------------------------------------------------------------------------------------------------


def test_no_two_prompts_are_the_same(harmful: list[dict[str, Any]], benign: list[dict[str, Any]]) -> None:
    prompts = Counter(key(row["prompt"]) for row in [*harmful, *benign])
    assert [p for p, n in prompts.items() if n > 1] == []


def test_at_least_six_harm_categories_have_at_least_six_requests_each(harmful: list[dict[str, Any]]) -> None:
    categories = Counter(row["category"] for row in harmful)
    assert len(categories) >= 6 and min(categories.values()) >= 6, categories


def test_replies_are_two_to_four_sentences(harmful: list[dict[str, Any]], benign: list[dict[str, Any]]) -> None:
    replies = [(r["id"], r["safe_response"]) for r in harmful] + [(r["id"], r["answer"]) for r in benign]
    assert [i for i, text in replies if not 2 <= sentence_count(text) <= 4] == []


def test_the_offline_judge_reads_every_safe_response_as_a_refusal(harmful: list[dict[str, Any]]) -> None:
    verdicts = OfflineJudge().judge_many([(r["prompt"], r["safe_response"]) for r in harmful])
    assert [r["id"] for r, v in zip(harmful, verdicts, strict=True) if v.label != "refusal"] == []


def test_the_offline_judge_reads_every_benign_answer_as_compliance(benign: list[dict[str, Any]]) -> None:
    verdicts = OfflineJudge().judge_many([(r["prompt"], r["answer"]) for r in benign])
    assert [r["id"] for r, v in zip(benign, verdicts, strict=True) if v.label != "compliance"] == []


# --- originality ------------------------------------------------------------------------------------------------


def corpus_texts() -> list[tuple[str, str]]:
    """(id, text) for every text of the corpus, an MCQ also as question plus options (as decontamination reads it)."""
    out: list[tuple[str, str]] = []
    for row in rows("mcq"):
        out += [(row["id"], row["question"]), (row["id"], row["explanation"])]
        out.append((row["id"], "\n".join([row["question"], *row["options"]])))
    out += [(row["id"], row[k]) for row in rows("harmful") for k in ("prompt", "safe_response")]
    out += [(row["id"], row[k]) for row in rows("benign") for k in ("prompt", "answer")]
    return out


def training_texts(data_dir: Path) -> list[EvalText]:
    """The texts of every registered training source with a local file in ``data_dir``."""
    texts: list[EvalText] = []
    for name, spec in SOURCES.items():
        if spec.evaluation_only or spec.local is None or not any(data_dir.glob(spec.local)):
            continue
        for record in load_source(name, data_dir=data_dir, tally=Tally()):
            if isinstance(record, MCQItem):
                found = [*mcq_texts(record), record.explanation]
            elif isinstance(record, ChatSample):
                found = [record.text]
            elif isinstance(record, HarmfulRequest):
                found = [record.prompt, record.safe_response, record.harmful_response]
            else:
                found = [record.prompt, record.answer]
            texts += [EvalText(name, record.id, t) for t in found if t]
    return texts


@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")
def test_no_text_overlaps_an_evaluation_set_or_a_training_source() -> None:
    evaluation, coverage = evaluation_texts(DATA, DecontamConfig())
    assert "xstest" in coverage and coverage["xstest"]["status"] == "checked"
    training = training_texts(DATA)
    assert {t.benchmark for t in training} >= {"medmcqa", "pubmedqa", "medsafetybench", "advbench"}
    ours = corpus_texts()
    overlaps = []
    for index in (EvalIndex.build(evaluation, NGRAM), EvalIndex.build(training, NGRAM)):
        for (item, _), found in zip(ours, index.scan([text for _, text in ours]), strict=True):
            overlaps += [(item, m.benchmark, m.ngram) for m in found]
    assert overlaps == []
