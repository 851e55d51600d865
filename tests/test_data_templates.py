"""Specification of instruction templates: every wording renders, each item keeps its template, the reply format
is always the one the evaluator reads."""

from __future__ import annotations

import re
import string

import pytest

from aloekit.data.schema import ChatSample, MCQItem
from aloekit.data.templates import (
    TEMPLATES,
    format_options,
    letters_phrase,
    mcq_to_chat,
    open_qa_to_chat,
    pick,
    render,
    with_system,
)
from aloekit.errors import MalformedRow

DRUGS = ("Aspirin", "Clopidogrel", "Heparin", "Warfarin")
ITEM = MCQItem(
    id="q1", question="Which drug prevents stroke in atrial fibrillation?", options=DRUGS, answer=3, source="toy"
)
PUBMEDQA = MCQItem(
    id="pmid-1",
    question="Does aspirin reduce mortality after stroke?",
    options=("yes", "no", "maybe"),
    answer=0,
    context="In a randomised trial of 20,000 patients, early aspirin reduced deaths at six months.",
    source="pubmedqa",
)
SLOTS = {"question", "options", "context", "letters"}


def _item(i: int) -> MCQItem:
    return MCQItem(id=f"item-{i}", question=f"Question number {i}?", options=DRUGS, answer=i % 4)


def _final_lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if re.fullmatch(r"Answer: [A-J]", line)]


def test_every_task_has_at_least_five_templates():
    for task in ("mcqa", "mcqa_cot", "context_mcqa", "context_mcqa_cot", "open_qa"):  # plain layouts are lm-eval's
        assert len(TEMPLATES[task]) >= 5, task
        assert len(set(TEMPLATES[task])) == len(TEMPLATES[task]), f"{task} repeats a template"


@pytest.mark.parametrize("task", sorted(TEMPLATES))
def test_every_template_uses_only_known_slots_and_always_shows_the_question(task):
    for template in TEMPLATES[task]:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        assert fields <= SLOTS, (task, fields - SLOTS)
        assert "question" in fields
        if task not in ("open_qa", "context_plain"):  # PubMedQA's plain layout scores the words, lists no options
            assert "options" in fields, template
        if task.startswith("context"):
            assert "context" in fields, template


@pytest.mark.parametrize("task", sorted(TEMPLATES))
def test_every_template_renders_every_slot_without_leftover_braces(task):
    for index, template in enumerate(TEMPLATES[task]):
        rendered = template.format(
            question="QUESTION-TEXT", options=format_options(DRUGS), context="CONTEXT-TEXT", letters="A, B, C or D"
        )
        assert "{" not in rendered and "}" not in rendered, (task, index)
        assert "QUESTION-TEXT" in rendered
        if "{options}" in template:
            assert "D. Warfarin" in rendered
        if "{context}" in template:
            assert "CONTEXT-TEXT" in rendered


def test_braces_inside_a_question_are_kept_as_text():
    item = MCQItem(id="b", question="What is {x} in set notation?", options=("{1}", "{}"), answer=0)
    user = mcq_to_chat(item, seed=0).messages[0]["content"]
    assert "What is {x} in set notation?" in user and "A. {1}" in user and "B. {}" in user


def test_options_are_lettered_one_per_line():
    assert format_options(("yes", "no", "maybe")) == "A. yes\nB. no\nC. maybe"
    assert letters_phrase(4) == "A, B, C or D"
    assert letters_phrase(2) == "A or B"


def test_the_same_item_and_seed_get_the_same_template_in_any_order():
    items = [_item(i) for i in range(200)]
    forward = {item.id: mcq_to_chat(item, seed=3).messages[0]["content"] for item in items}
    backward = {item.id: mcq_to_chat(item, seed=3).messages[0]["content"] for item in reversed(items)}
    assert forward == backward
    assert all(pick("mcqa", item.id, 3) == pick("mcqa", item.id, 3) for item in items)


def test_a_different_seed_deals_different_templates_to_some_items():
    changed = sum(pick("mcqa", f"item-{i}", 0) != pick("mcqa", f"item-{i}", 1) for i in range(100))
    assert changed > 50


@pytest.mark.parametrize("task", sorted(TEMPLATES))
def test_every_template_is_used_over_a_few_hundred_items(task):
    counts = [0] * len(TEMPLATES[task])
    for i in range(300):
        counts[pick(task, f"item-{i}", 0)] += 1
    assert min(counts) >= 300 / len(counts) / 3, counts


def test_an_unknown_task_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="mcqa"):
        pick("essay", "x", 0)


def test_a_plain_question_becomes_a_templated_user_turn_and_a_bare_answer_line():
    sample = mcq_to_chat(ITEM, seed=0)
    assert isinstance(sample, ChatSample)
    assert (sample.id, sample.source, sample.task) == ("q1", "toy", "mcqa")
    assert [m["role"] for m in sample.messages] == ["user", "assistant"]
    user = sample.messages[0]["content"]
    assert ITEM.question in user and format_options(DRUGS) in user
    assert sample.messages[1]["content"] == "Answer: D"


def test_an_item_without_source_is_labelled_mcq():
    assert mcq_to_chat(_item(1), seed=0).source == "mcq"


def test_reasoning_makes_a_cot_sample_ending_in_exactly_one_answer_line():
    for reasoning in (
        "Warfarin is the anticoagulant used long term.",
        "Warfarin is the anticoagulant used long term.\nAnswer: D",
        "Aspirin is inadequate, so the answer is (d).\n\n**Final answer: D. Warfarin**\n",
        "Answer: D\nAnswer: D",
    ):
        sample = mcq_to_chat(ITEM, seed=0, reasoning=reasoning)
        reply = sample.messages[-1]["content"]
        assert sample.task == "mcqa_cot"
        assert reply.endswith("\n\nAnswer: D") or reply == "Answer: D"
        assert _final_lines(reply) == ["Answer: D"], reply
        assert "Think" in sample.messages[0]["content"] or "reason" in sample.messages[0]["content"].lower()


def test_reasoning_that_keeps_its_prose_conclusion_still_gets_the_final_line():
    reply = mcq_to_chat(ITEM, seed=0, reasoning="Long-term anticoagulation, so the answer is (d).").messages[-1]
    assert reply["content"] == "Long-term anticoagulation, so the answer is (d).\n\nAnswer: D"


def test_reasoning_that_concludes_another_option_is_refused_naming_the_question():
    with pytest.raises(MalformedRow, match="q1") as caught:
        mcq_to_chat(ITEM, seed=0, reasoning="Aspirin suffices.\nAnswer: A")
    assert caught.value.reason == "reasoning contradicts answer"


def test_blank_reasoning_is_no_reasoning():
    assert mcq_to_chat(ITEM, seed=0, reasoning="  \n").task == "mcqa"


def test_a_question_with_context_uses_the_context_templates_with_lettered_yes_no_maybe():
    sample = mcq_to_chat(PUBMEDQA, seed=0)
    user = sample.messages[0]["content"]
    assert sample.task == "context_mcqa"
    assert PUBMEDQA.context in user and PUBMEDQA.question in user and "A. yes\nB. no\nC. maybe" in user
    assert sample.messages[-1]["content"] == "Answer: A"
    assert mcq_to_chat(PUBMEDQA, seed=0, reasoning="Deaths fell with aspirin.").task == "context_mcqa_cot"


def test_a_system_prompt_comes_first():
    sample = mcq_to_chat(ITEM, seed=0, system="You are a careful physician.")
    assert sample.messages[0] == {"role": "system", "content": "You are a careful physician."}
    assert [m["role"] for m in sample.messages] == ["system", "user", "assistant"]


def test_open_questions_get_a_templated_user_turn_and_the_answer_as_is():
    sample = open_qa_to_chat(
        "mq-7", "How should I store insulin?", "In the fridge. ", source="medicationqa", seed=2, system="Be kind."
    )
    assert (sample.id, sample.source, sample.task) == ("mq-7", "medicationqa", "open_qa")
    assert [m["role"] for m in sample.messages] == ["system", "user", "assistant"]
    assert "How should I store insulin?" in sample.messages[1]["content"]
    assert sample.messages[-1]["content"] == "In the fridge."
    assert sample.messages[1]["content"] == render("open_qa", "mq-7", 2, question="How should I store insulin?")


def test_with_system_adds_or_replaces_the_system_turn_and_none_keeps_the_sample():
    plain = mcq_to_chat(ITEM, seed=0)
    added = with_system(plain, "New prompt.")
    assert added.messages[0] == {"role": "system", "content": "New prompt."}
    assert added.messages[1:] == plain.messages
    replaced = with_system(mcq_to_chat(ITEM, seed=0, system="Old prompt."), "New prompt.")
    assert [m["content"] for m in replaced.messages if m["role"] == "system"] == ["New prompt."]
    assert replaced.messages[0]["role"] == "system"
    assert with_system(plain, None) is plain
    assert (added.id, added.source, added.task) == (plain.id, plain.source, plain.task)


def test_a_plain_sample_is_an_lm_eval_style_prompt_ending_in_answer_and_the_letter_as_completion():
    from aloekit.data.templates import mcq_to_plain

    sample = mcq_to_plain(MCQItem(id="p1", question="Which drug?", options=DRUGS, answer=2), seed=0)
    prompt, completion = (m["content"] for m in sample.messages)
    assert sample.plain and sample.task == "mcqa_plain"
    assert prompt.endswith("\nAnswer:") and "C. " + DRUGS[2] in prompt
    assert completion == " C"
    assert sample.to_json()["plain"] is True
    assert ChatSample.from_json(sample.to_json(), "row").plain


def test_a_yes_no_maybe_question_with_an_abstract_is_completed_by_the_word_as_pubmedqa_is_scored():
    from aloekit.data.templates import mcq_to_plain

    item = MCQItem(id="p2", question="Does X help?", options=("yes", "no", "maybe"), answer=1, context="Trial text.")
    prompt, completion = (m["content"] for m in mcq_to_plain(item, seed=0).messages)
    assert prompt == "Abstract: Trial text.\nQuestion: Does X help?\nAnswer:"
    assert completion == " no"


def test_a_plain_sample_must_be_one_prompt_and_one_completion():
    turns = (
        {"role": "system", "content": "s"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    )
    with pytest.raises(MalformedRow, match="one user turn"):
        ChatSample(id="x", messages=turns, source="s", plain=True)
