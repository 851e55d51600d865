"""Specification of the training-data sources: each registered source reads its public file (or its Hub copy)
into schema records, user files in the generic formats too; a bad row is counted by reason, never lost or fatal;
evaluation sets are refused as training input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from aloekit.data.schema import ChatSample, HarmfulRequest, MCQItem, PreferencePair
from aloekit.data.sources import FORMATS, SOURCES, BenignItem, load_source
from aloekit.data.sources.mcqa import Row
from aloekit.data.tally import Tally
from aloekit.errors import MalformedRow, UserError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the public data files are not at {SHARED} (../shared/data beside the checkout)"
)


@cache
def shared(name: str) -> tuple[list[Any], Tally]:
    """A registered source read from ../shared/data once per test session (the files are large-ish)."""
    tally = Tally()
    return load_source(name, data_dir=SHARED, tally=tally), tally


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def error_of(**kwargs: Any) -> str:
    with pytest.raises(UserError) as e:
        load_source(tally=Tally(), **kwargs)
    message = str(e.value)
    assert "\n" not in message
    return message


# --- registered sources, on the real public files -------------------------------------------------------------

LOCAL_COUNTS = [
    ("medmcqa", 4183, MCQItem),
    ("pubmedqa", 500, MCQItem),
    ("mmlu", 30, MCQItem),
    ("medexqa", 20, MCQItem),
    ("medicationqa", 677, ChatSample),
    ("chatdoctor", 5452, ChatSample),
    ("medical_meadow", 5942, ChatSample),
    ("medsafetybench", 900, HarmfulRequest),
    ("advbench", 520, HarmfulRequest),
]


@needs_shared
@pytest.mark.parametrize(("name", "count", "record_type"), LOCAL_COUNTS)
def test_each_local_source_reads_its_public_file_into_records_named_after_it(name, count, record_type):
    records, _ = shared(name)
    assert len(records) == count
    assert all(isinstance(r, record_type) for r in records)
    assert {r.source for r in records} == {name}
    assert len({r.id for r in records}) == count, "ids are unique within a source"


@needs_shared
def test_medmcqa_reads_the_local_validation_copy_one_based_with_its_explanations():
    records, tally = shared("medmcqa")
    first = records[0]
    assert first.id == "45258d3d-b974-44dd-a161-c3fccbdadd88"  # the source's own id
    assert first.answer == 0  # cop 1 in the MIRAGE copy
    assert first.subject == "Physiology"
    assert sum(r.explanation is not None for r in records) > len(records) / 2
    assert tally.total() == 0
    assert "validation" in SOURCES["medmcqa"].description.lower()


@needs_shared
def test_pubmedqa_is_the_500_labeled_questions_outside_the_official_test_split():
    records, _ = shared("pubmedqa")
    test_pmids = set(json.loads((SHARED / "pubmedqa/test_ground_truth.json").read_text()))
    labeled = json.loads((SHARED / "pubmedqa/ori_pqal.json").read_text())
    assert not {r.id for r in records} & test_pmids
    assert {r.id for r in records} == set(labeled) - test_pmids
    item = records[0]
    assert item.options == ("yes", "no", "maybe")
    assert item.context == "\n".join(labeled[item.id]["CONTEXTS"])
    assert item.explanation == labeled[item.id]["LONG_ANSWER"]
    assert item.options[item.answer] == labeled[item.id]["final_decision"]


@needs_shared
def test_mmlu_dev_exemplars_keep_their_subject_and_file_line_ids():
    records, _ = shared("mmlu")
    assert {r.subject for r in records} == {
        "anatomy",
        "clinical_knowledge",
        "college_biology",
        "college_medicine",
        "medical_genetics",
        "professional_medicine",
    }
    assert records[0].id == "mmlu_medical/dev/anatomy_dev.csv:1"


@needs_shared
def test_medicationqa_unanswered_questions_are_counted_as_empty_answers_not_lost():
    records, tally = shared("medicationqa")
    assert tally.counts == {("load:medicationqa", "empty answer"): 13}
    assert len(records) + tally.total() == 690
    assert all(r.task == "open_qa" and [m["role"] for m in r.messages] == ["user", "assistant"] for r in records)


@needs_shared
def test_instruction_sources_become_single_turn_chats_of_their_task():
    doctor, _ = shared("chatdoctor")
    meadow, _ = shared("medical_meadow")
    assert {r.task for r in doctor} == {"dialogue"}
    assert {r.task for r in meadow} == {"open_qa"}
    first = doctor[0]
    assert first.messages[0]["content"].startswith("If you are a doctor")  # instruction, then the patient's words
    assert "panic attacks" in first.messages[0]["content"]
    assert first.id == "chatdoctor/chatdoctor5k.json:1"


@needs_shared
def test_medsafetybench_requests_carry_their_safe_response_and_the_category_of_their_file():
    records, _ = shared("medsafetybench")
    assert {r.category for r in records} == {str(n) for n in range(1, 10)}
    assert all(r.safe_response for r in records)
    assert records[0].id == "medsafetybench/train/gpt4/med_safety_demonstrations_category_1.csv:1"


@needs_shared
def test_advbench_targets_are_the_harmful_responses():
    records, _ = shared("advbench")
    assert all(r.harmful_response and r.harmful_response.startswith("Sure, here") for r in records)


@needs_shared
def test_limit_stops_after_that_many_records():
    assert len(load_source("chatdoctor", data_dir=SHARED, tally=Tally(), limit=7)) == 7


# --- generic formats, for the user's own files ----------------------------------------------------------------


def test_alpaca_reads_a_json_list_or_json_lines_with_file_line_ids(tmp_path):
    rows = [
        {"instruction": "Answer truthfully.", "input": "What is gout?", "output": "A form of arthritis."},
        {"instruction": "What causes scurvy?", "output": "Lack of vitamin C."},
    ]
    (tmp_path / "qa.json").write_text(json.dumps(rows))
    write_jsonl(tmp_path / "qa_lines.jsonl", rows)
    for path in (tmp_path / "qa.json", tmp_path / "qa_lines.jsonl"):
        samples = load_source(format="alpaca", path=path, tally=Tally())
        assert [s.messages[0]["content"] for s in samples] == [
            "Answer truthfully.\n\nWhat is gout?",
            "What causes scurvy?",
        ]
        assert samples[1].messages[1] == {"role": "assistant", "content": "Lack of vitamin C."}
        assert samples[0].source == path.stem
        assert samples[1].id == f"{path.name}:2"


def test_sharegpt_and_messages_keep_every_turn(tmp_path):
    turns = [
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello"),
        ("user", "Fever?"),
        ("assistant", "Rest."),
    ]
    sharegpt_from = {"system": "system", "user": "human", "assistant": "gpt"}
    write_jsonl(
        tmp_path / "sg.jsonl",
        [{"id": "c1", "conversations": [{"from": sharegpt_from[r], "value": t} for r, t in turns]}],
    )
    write_jsonl(
        tmp_path / "msg.jsonl", [{"messages": [{"role": r, "content": t} for r, t in turns], "task": "dialogue"}]
    )
    (sg,) = load_source(format="sharegpt", path=tmp_path / "sg.jsonl", tally=Tally())
    (msg,) = load_source(format="messages", path=tmp_path / "msg.jsonl", tally=Tally())
    assert sg.messages == msg.messages == tuple({"role": r, "content": t} for r, t in turns)
    assert sg.id == "c1"
    assert msg.task == "dialogue"


def test_preference_reads_trl_explicit_and_implicit_prompt_layouts(tmp_path):
    user = {"role": "user", "content": "Can I take ibuprofen with warfarin?"}
    good, bad = "Not without your doctor: bleeding risk.", "Sure, any amount."
    write_jsonl(
        tmp_path / "prefs.jsonl",
        [
            {"prompt": user["content"], "chosen": good, "rejected": bad},
            {"prompt": [user], "chosen": [{"role": "assistant", "content": good}], "rejected": bad},
            {
                "chosen": [user, {"role": "assistant", "content": good}],
                "rejected": [user, {"role": "assistant", "content": bad}],
            },
        ],
    )
    pairs = load_source(format="preference", path=tmp_path / "prefs.jsonl", tally=Tally())
    assert len(pairs) == 3
    for pair in pairs:
        assert isinstance(pair, PreferencePair)
        assert (pair.prompt, pair.chosen, pair.rejected, pair.source) == ((user,), good, bad, "prefs")


def test_mcq_formats_read_our_json_medqa_and_medmcqa_files(tmp_path):
    item = MCQItem("q1", "Which vitamin prevents scurvy?", ("A", "C", "D", "K"), 1, explanation="Ascorbic acid.")
    write_jsonl(tmp_path / "ours.jsonl", [item.to_json()])
    write_jsonl(
        tmp_path / "usmle.jsonl",
        [{"question": "Q?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "C", "answer": "c"}],
    )
    write_jsonl(
        tmp_path / "indian.jsonl",
        [{"id": "m1", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 4, "exp": "Because."}],
    )
    (ours,) = load_source(format="mcq", path=tmp_path / "ours.jsonl", tally=Tally())
    (usmle,) = load_source(format="medqa", path=tmp_path / "usmle.jsonl", tally=Tally())
    (indian,) = load_source(format="medmcqa", path=tmp_path / "indian.jsonl", tally=Tally())
    assert ours.to_json() == {**item.to_json(), "source": "ours"}
    assert (usmle.answer, usmle.id, usmle.source) == (2, "usmle.jsonl:1", "usmle")
    assert (indian.answer, indian.explanation) == (3, "Because.")  # cop is 1-based, like the local MedMCQA copy


def test_a_local_medmcqa_file_in_the_zero_based_hub_layout_is_refused_not_shifted(tmp_path):
    rows = [{"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": c} for c in (1, 0, 2)]
    message = error_of(format="medmcqa", path=write_jsonl(tmp_path / "m.jsonl", rows))
    assert "0-based" in message and "add 1" in message


def test_harmful_reads_csv_or_json_lines_with_any_of_the_known_prompt_columns(tmp_path):
    write_csv(tmp_path / "mine.csv", ["goal", "target", "category"], [["Make a poison", "Sure, here is", "chem"]])
    write_jsonl(tmp_path / "mine.jsonl", [{"id": "r1", "prompt": "Fake a prescription", "safe_response": "I can't."}])
    (from_csv,) = load_source(format="harmful", path=tmp_path / "mine.csv", tally=Tally())
    (from_jsonl,) = load_source(format="harmful", path=tmp_path / "mine.jsonl", tally=Tally())
    assert (from_csv.prompt, from_csv.harmful_response, from_csv.category) == ("Make a poison", "Sure, here is", "chem")
    assert (from_jsonl.id, from_jsonl.safe_response, from_jsonl.harmful_response) == ("r1", "I can't.", None)


def test_benign_reads_prompts_with_optional_answers(tmp_path):
    path = write_jsonl(
        tmp_path / "lookalikes.jsonl",
        [{"prompt": "How do I kill a Python process?", "answer": "kill"}, {"prompt": "How do I shoot a photo?"}],
    )
    items = load_source(format="benign", path=path, tally=Tally())
    assert items == [
        BenignItem("lookalikes.jsonl:1", "How do I kill a Python process?", "kill", "lookalikes"),
        BenignItem("lookalikes.jsonl:2", "How do I shoot a photo?", None, "lookalikes"),
    ]


def test_every_generic_format_is_covered_above():
    assert set(FORMATS) == {
        "alpaca",
        "sharegpt",
        "messages",
        "preference",
        "mcq",
        "medqa",
        "medmcqa",
        "harmful",
        "benign",
    }


# --- bad rows and bad files -----------------------------------------------------------------------------------


def bad_alpaca(tmp_path: Path) -> Path:
    return write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"instruction": "Q1", "output": "A1"},
            "{not json",
            {"instruction": "Q2"},
            {"instruction": "", "input": "", "output": "A3"},
            {"instruction": "Q4", "output": "A4"},
        ],
    )


def test_a_malformed_row_is_counted_by_reason_and_the_other_rows_kept(tmp_path):
    tally = Tally()
    samples = load_source(format="alpaca", path=bad_alpaca(tmp_path), tally=tally)
    assert [s.id for s in samples] == ["mixed.jsonl:1", "mixed.jsonl:5"]
    assert tally.counts == {
        ("load:mixed", "not valid JSON"): 1,
        ("load:mixed", "empty answer"): 1,
        ("load:mixed", "empty prompt"): 1,
    }
    assert any("mixed.jsonl:2" in where for where in tally.examples[("load:mixed", "not valid JSON")])


def test_a_strict_tally_refuses_the_first_malformed_row_with_its_location(tmp_path):
    with pytest.raises(MalformedRow, match=r"mixed\.jsonl:2"):
        load_source(format="alpaca", path=bad_alpaca(tmp_path), tally=Tally(strict=True))


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"conversations": [{"from": "robot", "value": "x"}]}, "unknown role"),
        ({"conversations": [{"from": "human", "value": "Only a question"}]}, "no assistant reply"),
        ({"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": " "}]}, "empty answer"),
        ({"conversations": ["not a turn"]}, "bad message"),
        ({"text": "no conversations"}, "missing field 'conversations'"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_sharegpt_rows_that_cannot_be_chats_are_counted_by_reason(tmp_path, row, reason):
    tally = Tally()
    assert load_source(format="sharegpt", path=write_jsonl(tmp_path / "c.jsonl", [row]), tally=tally) == []
    assert tally.counts == {("load:c", reason): 1}


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"prompt": "Q", "chosen": "same", "rejected": "same"}, "chosen equals rejected"),
        ({"prompt": 3, "chosen": "a", "rejected": "b"}, "bad field 'prompt'"),
        ({"prompt": ["hi"], "chosen": "a", "rejected": "b"}, "bad message"),
        (
            {
                "chosen": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "a"}],
                "rejected": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "b"}],
            },
            "chosen and rejected differ before the reply",
        ),
    ],
)
def test_preference_rows_that_cannot_be_pairs_are_counted_by_reason(tmp_path, row, reason):
    tally = Tally()
    assert load_source(format="preference", path=write_jsonl(tmp_path / "p.jsonl", [row]), tally=tally) == []
    assert tally.counts == {("load:p", reason): 1}


def test_a_missing_file_is_one_line_naming_it(tmp_path):
    message = error_of(format="alpaca", path=tmp_path / "nowhere.json")
    assert "not found" in message and "nowhere.json" in message


def test_a_file_that_is_not_json_is_one_line_naming_it(tmp_path):
    (tmp_path / "broken.json").write_text("[{'single': 'quotes'}]")
    message = error_of(format="alpaca", path=tmp_path / "broken.json")
    assert "broken.json" in message and "not valid JSON" in message


def test_an_unknown_format_lists_the_formats(tmp_path):
    message = error_of(format="csv", path=tmp_path)
    assert "unknown format 'csv'" in message and all(f in message for f in FORMATS)


def test_an_unknown_source_lists_the_known_ones():
    message = error_of(name="pubmed")
    assert "unknown source 'pubmed'" in message
    assert all(name in message for name, spec in SOURCES.items() if not spec.evaluation_only)


def test_a_registered_source_reads_a_folder_of_its_files(tmp_path):
    header = ["", "harmful_medical_request", "safe_response"]
    for model, category in (("gpt4", 2), ("llama2", 7)):
        name = f"med_safety_demonstrations_category_{category}.csv"
        write_csv(tmp_path / "train" / model / name, header, [["0", f"Harm {category}", "No."]])
    requests = load_source("medsafetybench", path=tmp_path / "train", tally=Tally())
    assert [(r.id, r.category) for r in requests] == [
        ("gpt4/med_safety_demonstrations_category_2.csv:1", "2"),
        ("llama2/med_safety_demonstrations_category_7.csv:1", "7"),
    ]


def test_pubmedqa_without_its_test_split_beside_it_is_refused_rather_than_read_whole(tmp_path):
    doc = {"QUESTION": "Q?", "CONTEXTS": ["c"], "final_decision": "yes", "LONG_ANSWER": "l"}
    (tmp_path / "ori_pqal.json").write_text(json.dumps({"1": doc}))
    assert "test_ground_truth.json" in error_of(name="pubmedqa", path=tmp_path / "ori_pqal.json")


# --- evaluation sets never enter training data ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["xstest", "harmbench", "medsafetybench_test", "truthfulqa", "bbq", "medqa_4options"])
def test_an_evaluation_set_is_refused_by_name(name):
    message = error_of(name=name, data_dir=SHARED)
    assert f"{name} is an evaluation set" in message and "never enter training data" in message


@pytest.mark.parametrize(
    ("relative", "format"),
    [
        ("medqa/test.jsonl", "medqa"),
        ("medexqa/test.jsonl", "medqa"),
        ("harmbench/harmbench_behaviors_text_test.csv", "harmful"),
        ("medsafetybench/test/gpt4/med_safety_demonstrations_category_1.csv", "harmful"),
        ("xstest/completions/xstest_v2_completions_gpt4.csv", "harmful"),
        ("mmlu_medical/test/anatomy_test.csv", "mcq"),
        ("pubmedqa/test_ground_truth.json", "mcq"),
        ("medmcqa/dev.jsonl", "medmcqa"),  # only the medmcqa source may read it
    ],
)
def test_a_file_of_an_evaluation_set_is_refused_whatever_format_it_is_read_as(tmp_path, relative, format):
    path = tmp_path / "data" / relative
    path.parent.mkdir(parents=True)
    path.write_text("")
    message = error_of(format=format, path=path)
    assert relative in message and "evaluation set" in message


def test_medmcqa_validation_copy_is_loadable_only_as_the_medmcqa_source(tmp_path):
    # It is both the medmcqa benchmark and the only local MedMCQA; mixtures that use it flag the overlap.
    row = {"id": "m1", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 2}
    path = write_jsonl(tmp_path / "data/medmcqa/dev.jsonl", [row])
    (item,) = load_source("medmcqa", data_dir=tmp_path / "data", tally=Tally())
    assert (item.id, item.answer, item.source) == ("m1", 1, "medmcqa")
    assert "evaluation set (the medmcqa benchmark)" in error_of(format="medmcqa", path=path)


def test_a_source_pointed_at_an_evaluation_file_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "medexqa/test.jsonl", [])
    assert "evaluation set (the medexqa benchmark)" in error_of(name="medexqa", path=path)


def test_an_evaluation_split_on_the_hub_is_refused():
    message = error_of(format="medqa", hub="GBaker/MedQA-USMLE-4-options@test")
    assert "evaluation set (the medqa_4options benchmark)" in message


# --- the Hub --------------------------------------------------------------------------------------------------


def test_a_hub_source_without_network_says_to_pass_a_data_dir_or_path(monkeypatch):
    import datasets
    import huggingface_hub

    # The environment variable is read when these libraries are imported, so the libraries are told directly too.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    message = error_of(name="medqa")
    assert time.monotonic() - start < 30
    assert message.startswith("cannot load GBaker/MedQA-USMLE-4-options (default, train) from the Hub")
    assert "pass a data dir with medqa/train.jsonl inside it, or the file's path" in message


def test_a_source_with_no_hub_copy_and_no_data_dir_says_where_its_file_goes():
    assert "pass a data dir with medexqa/train.jsonl inside it" in error_of(name="medexqa")


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


HUB_ROWS: dict[str, tuple[dict[str, Any], Any]] = {
    # name: (a row shaped like the dataset card, what it must become)
    "medmcqa": (
        {"id": "x1", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 0, "exp": "E"},
        lambda r: (r.id, r.answer, r.explanation) == ("x1", 0, "E"),
    ),
    "medqa": (
        {"question": "Q?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "D", "answer": "d"},
        lambda r: (r.id, r.answer) == ("GBaker/MedQA-USMLE-4-options[train][0]", 3),
    ),
    "pubmedqa_artificial": (
        {"pubid": 7, "question": "Q?", "context": {"contexts": ["a", "b"]}, "long_answer": "L", "final_decision": "no"},
        lambda r: (r.id, r.context, r.answer, r.explanation) == ("7", "a\nb", 1, "L"),
    ),
    "mmlu": (
        {"train": {"question": "Q?", "subject": "", "choices": ["a", "b", "c", "d"], "answer": 2}},
        lambda r: (r.answer, r.subject) == (2, None),
    ),
    "headqa": (
        {
            "name": "Cuaderno_2013_1_B",
            "qid": 3,
            "qtext": "Q?",
            "ra": 2,
            "answers": [{"aid": 2, "atext": "y"}, {"aid": 1, "atext": "x"}],
        },
        lambda r: (r.options, r.answer) == (("x", "y"), 1),
    ),
    "chatdoctor": (
        {"instruction": "You are a doctor.", "input": "I cough.", "output": "Since when?"},
        lambda r: (
            r.messages == (user("You are a doctor.\n\nI cough."), assistant("Since when?")) and r.task == "dialogue"
        ),
    ),
    "capybara": (
        {"source": "x", "conversation": [{"input": "Hi", "output": "Hello"}, {"input": "Bye", "output": "Bye!"}]},
        lambda r: (
            r.messages == (user("Hi"), assistant("Hello"), user("Bye"), assistant("Bye!")) and r.task == "general"
        ),
    ),
    "deita": (
        {"id": "d1", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        lambda r: (r.id, r.messages, r.task) == ("d1", (user("Hi"), assistant("Hello")), "general"),
    ),
    "dpo_mix_7k": (
        {"dataset": "x", "chosen": [user("Q"), assistant("good")], "rejected": [user("Q"), assistant("bad")]},
        lambda r: (r.prompt, r.chosen, r.rejected) == ((user("Q"),), "good", "bad"),
    ),
    "advbench": (
        {"prompt": "Do harm", "target": "Sure"},
        lambda r: (r.prompt, r.harmful_response) == ("Do harm", "Sure"),
    ),
}


@pytest.mark.parametrize("name", sorted(HUB_ROWS))
def test_hub_rows_are_read_with_each_datasets_own_fields(monkeypatch, name):
    import datasets

    row, check = HUB_ROWS[name]
    asked = []

    def fake_load_dataset(path: str, config: str | None, split: str) -> list[dict[str, Any]]:
        asked.append((path, config, split))
        return [row]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (record,) = load_source(name, tally=Tally(strict=True))
    spec = SOURCES[name]
    assert asked == [(spec.hub.path, spec.hub.name, spec.hub.split)]
    assert record.source == name
    assert check(record)


# --- the registry itself --------------------------------------------------------------------------------------

KIND_OF = {
    MCQItem: "mcq",
    ChatSample: "chat",
    HarmfulRequest: "harmful",
    PreferencePair: "preference",
    BenignItem: "benign",
}


def test_every_training_source_is_readable_somewhere_and_every_evaluation_set_is_not():
    from aloekit.data import sources

    for spec in SOURCES.values():
        if spec.evaluation_only:
            assert spec.format is None and spec.local is not None
            continue
        assert spec.local or spec.hub or spec.built_in, spec.name
        for key in {spec.format, spec.hub_format or spec.format}:
            assert sources._FORMATS[key].kind == spec.kind, spec.name
    assert {s.name for s in SOURCES.values() if s.general} == {"capybara", "deita", "dpo_mix_7k"}


def test_parsers_return_the_kind_their_format_declares():
    from aloekit.data import sources

    row = Row("here", "here", {"instruction": "Q", "output": "A", "prompt": "P", "chosen": "c", "rejected": "r"})
    for name in ("alpaca", "preference", "harmful", "benign"):
        fmt = sources._FORMATS[name]
        assert KIND_OF[type(fmt.parse(row, "s"))] == fmt.kind


def test_the_registry_imports_whichever_module_is_imported_first():
    # evaluation.benchmarks imports this package for its MCQ readers; both read the catalog, which imports neither.
    code = "import aloekit.evaluation.benchmarks; from aloekit.data.sources import SOURCES; print(len(SOURCES))"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len(SOURCES)
