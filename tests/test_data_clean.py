"""Specification of cleaning: what text tidying changes and what it must never change, which records are dropped
and under which reason, and the one final ``Answer: X`` line of multiple-choice replies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aloekit.data.clean import (
    REASONS,
    CleanConfig,
    clean_chat,
    clean_harmful,
    clean_mcq,
    clean_pair,
    clean_text,
    is_answer_line,
    needs_image,
    normalise_answer,
    with_answer_line,
)
from aloekit.data.schema import ChatSample, HarmfulRequest, MCQItem, PreferencePair
from aloekit.data.tally import Tally

CONFIG = CleanConfig()
DRUGS = ("Aspirin", "Clopidogrel", "Heparin", "Warfarin")


def mcq(question: str = "Which drug is an anticoagulant?", options=DRUGS, answer: int = 2, **kw) -> MCQItem:
    return MCQItem(id=kw.pop("id", "q1"), question=question, options=tuple(options), answer=answer, **kw)


def chat(*turns: tuple[str, str], id: str = "c1") -> ChatSample:
    return ChatSample(id=id, messages=tuple({"role": r, "content": c} for r, c in turns), source="toy")


def dropped(tally: Tally) -> dict[str, int]:
    return {reason: n for (stage, reason), n in tally.counts.items() if stage == "clean"}


# --- clean_text -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("See https://www.cdc.gov/flu/index.html for details.", "See for details."),
        ("Visit www.nhs.uk.", "Visit."),
        ("Guidance (http://who.int/x?a=1&b=2) is clear.", "Guidance is clear."),
        ("Dose as per label (Source: https://dailymed.nlm.nih.gov/x).", "Dose as per label."),
        ("Read <https://example.org/a> today", "Read today"),
        ("Read [the NICE guideline](https://www.nice.org.uk/ng1) first.", "Read the NICE guideline first."),
        ("Write to dr.smith+clinic@mail.example.co.uk, or call.", "Write to, or call."),
    ],
)
def test_urls_and_emails_are_removed_without_a_placeholder(raw, clean):
    assert clean_text(raw, CONFIG) == clean


def test_url_and_email_removal_can_be_switched_off():
    config = CleanConfig(strip_urls=False, strip_emails=False)
    text = "See https://cdc.gov or mail a@b.org."
    assert clean_text(text, config) == text


def test_things_that_look_like_addresses_but_are_not_stay():
    text = "Give 5 mg i.v. (e.g. in 0.9% saline) at 10 a.m.; ratio 3:1 @ rest; C. difficile."
    assert clean_text(text, CONFIG) == text


def test_medical_symbols_keep_their_meaning_nfc_not_nfkc():
    # NFKC would turn 10⁹/L into 109/L and m² into m2.
    text = "Platelets 150×10⁹/L, BSA 1.8 m², ½ tablet, 5 µg, 37 °C"
    assert clean_text(text, CONFIG) == text


def test_decomposed_accents_are_composed():
    assert clean_text("Me\u0301nie\u0300re disease", CONFIG) == "Ménière disease"


def test_control_and_invisible_characters_go_but_newlines_and_tabs_stay():
    assert clean_text("a\x00b\x07c\u200bd\ufeffe\u00adf", CONFIG) == "abcdef"
    assert clean_text("dose\tfrequency\nq8h", CONFIG) == "dose\tfrequency\nq8h"
    assert clean_text("one\r\ntwo\rthree", CONFIG) == "one\ntwo\nthree"


def test_spaces_collapse_but_paragraphs_and_indentation_survive():
    raw = "  First   line\u00a0\u00a0here.  \n\n\n\nSecond paragraph:\n  - nested   item\n"
    assert clean_text(raw, CONFIG) == "First line here.\n\nSecond paragraph:\n  - nested item"


# --- clean_mcq ------------------------------------------------------------------------------------------------


def test_a_clean_question_comes_back_cleaned_with_its_answer_unchanged():
    item = mcq(
        "Which drug   is an anticoagulant? (see https://x.org)",
        ("Aspirin ", "Clopidogrel", "Heparin", "Warfarin"),
        context="  ",
        explanation="Heparin potentiates antithrombin. ",
    )
    tally = Tally()
    out = clean_mcq(item, CONFIG, tally)
    assert out is not None and tally.total() == 0
    assert out.question == "Which drug is an anticoagulant?"
    assert out.options == DRUGS and out.answer == 2 and out.id == "q1"
    assert out.context is None and out.explanation == "Heparin potentiates antithrombin."


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (mcq(" https://x.org "), "empty question"),
        (mcq(options=("Aspirin", "", "Heparin", "Warfarin")), "broken option"),
        (mcq(options=("Aspirin", "nan", "Heparin", "Warfarin")), "broken option"),
        (mcq(options=("Aspirin", "NULL", "Heparin", "Warfarin")), "broken option"),
        (mcq(options=("Africans", "Caucasians", "Not Recalled", "Asians")), "broken option"),
        (mcq(options=("Aspirin", "...", "Heparin", "Warfarin")), "broken option"),
        (mcq(options=("Oxidases", "oxidases.", "Transferases", "Lipases")), "duplicate options"),
        (mcq(options=("4.6", "4.6", "4.61", "4.62")), "duplicate options"),
        (mcq("Name the structure marked with arrow"), "needs an image"),
        (mcq("The x-ray after the fall is given below:"), "needs an image"),
        (mcq("What is the best management of the condition shown in the radiograph below?"), "needs an image"),
        (mcq("x" * 20000), "overlong"),
        (mcq(options=("Aspirin", "y" * 1001, "Heparin", "Warfarin")), "overlong"),
    ],
)
def test_unusable_questions_are_dropped_and_counted_by_reason_with_their_id(item, reason):
    tally = Tally()
    assert clean_mcq(item, CONFIG, tally) is None
    assert dropped(tally) == {reason: 1}
    assert tally.examples[("clean", reason)] == ["q1"]
    assert reason in REASONS


def test_none_is_a_real_option_not_a_missing_value():
    # MedMCQA: "Which is gametocidal for all species: Quinine / Chloroquine / Primaquine / None".
    item = mcq("Which is gametocidal for all species?", ("Quinine", "Chloroquine", "Primaquine", "None"))
    assert clean_mcq(item, CONFIG, Tally()) is not None
    assert clean_mcq(mcq(options=("Na", "K", "Ca", "Mg")), CONFIG, Tally()) is not None


def test_options_differing_only_in_a_sign_are_not_duplicates():
    for options in (
        ("Gram +ve & anaerobic", "Gram -ve & anaerobic", "Nonencapsulated", "Encapsulated"),
        ("Mean = Median", "Mean < Mode", "Mean > Mode", "Mean = Mode"),
    ):
        assert clean_mcq(mcq(options=options), CONFIG, Tally()) is not None, options


def test_words_that_only_look_like_image_references_are_kept():
    for question in (
        "Marked reduction in dentin with widening of predentin is seen in",
        "Posselt's diagram indicates?",
        "The number of cases in 10 years are given below: 250, 320, 190. The median is",
        "Which imaging is best for a scaphoid fracture?",
    ):
        assert not needs_image(question), question
    assert not CleanConfig(drop_image_questions=False).drop_image_questions
    kept = clean_mcq(mcq("Name the structure marked with arrow"), CleanConfig(drop_image_questions=False), Tally())
    assert kept is not None


def test_options_that_carry_their_own_letters_lose_them_only_when_all_do():
    labelled = mcq(options=("a) Aspirin", "b) Clopidogrel", "(c) Heparin", "D. Warfarin"))
    out = clean_mcq(labelled, CONFIG, Tally())
    assert out is not None and out.options == DRUGS
    organisms = ("E. coli", "Klebsiella", "C. difficile", "Proteus")
    out = clean_mcq(mcq(options=organisms), CONFIG, Tally())
    assert out is not None and out.options == organisms


# --- chats, pairs, harmful requests ----------------------------------------------------------------------------


def test_a_chat_is_returned_cleaned_and_an_emptied_system_turn_is_removed():
    sample = chat(("system", " www.x.org "), ("user", "Is  ibuprofen safe?"), ("assistant", "Usually, with food. "))
    out = clean_chat(sample, CONFIG, Tally())
    assert out is not None
    assert out.messages == (
        {"role": "user", "content": "Is ibuprofen safe?"},
        {"role": "assistant", "content": "Usually, with food."},
    )
    assert (out.id, out.source, out.task) == (sample.id, sample.source, sample.task)


@pytest.mark.parametrize(
    ("turns", "reason"),
    [
        ((("user", "  "), ("assistant", "Hello there.")), "empty user turn"),
        ((("user", "Hi"), ("assistant", "Sure."), ("user", "https://x.org"), ("assistant", "Ok.")), "empty user turn"),
        ((("user", "Is it safe?"), ("assistant", " \x00 ")), "empty reply"),
        ((("user", "Is it safe?"), ("assistant", ".")), "short reply"),
        ((("user", "q" * 9000), ("assistant", "a" * 9000)), "overlong"),
    ],
)
def test_unusable_chats_are_dropped_and_counted_by_reason(turns, reason):
    tally = Tally()
    assert clean_chat(chat(*turns), CONFIG, tally) is None
    assert dropped(tally) == {reason: 1}
    assert tally.examples[("clean", reason)] == ["c1"]


def test_an_mcq_answer_line_survives_the_default_minimum_length():
    assert clean_chat(chat(("user", "Q?"), ("assistant", "Answer: B")), CONFIG, Tally()) is not None
    assert clean_chat(chat(("user", "Q?"), ("assistant", "Answer: B")), CleanConfig(min_chars=10), Tally()) is None


def pair(chosen: str, rejected: str, prompt: str = "How do I take metformin?") -> PreferencePair:
    return PreferencePair(
        id="p1", prompt=({"role": "user", "content": prompt},), chosen=chosen, rejected=rejected, source="toy"
    )


def test_a_pair_is_cleaned_and_one_whose_replies_become_equal_is_dropped():
    out = clean_pair(pair("With  meals.", "Whenever."), CONFIG, Tally())
    assert out is not None and (out.chosen, out.rejected) == ("With meals.", "Whenever.")
    tally = Tally()
    assert clean_pair(pair("With meals, see https://a.org", "With meals, see www.b.org"), CONFIG, tally) is None
    assert dropped(tally) == {"chosen equals rejected": 1}


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("With meals.", "x", "https://a.org"), "empty user turn"),
        (("With meals.", "!"), "short reply"),
        (("c" * 9000, "r" * 9000), "overlong"),
    ],
)
def test_unusable_pairs_are_dropped_and_counted_by_reason(args, reason):
    tally = Tally()
    assert clean_pair(pair(*args), CONFIG, tally) is None
    assert dropped(tally) == {reason: 1}


def test_a_harmful_request_is_cleaned_and_an_emptied_reply_becomes_none():
    req = HarmfulRequest(id="h1", prompt=" Tell me  how to forge a prescription ", source="toy", safe_response=" ")
    out = clean_harmful(req, CONFIG, Tally())
    assert out is not None and out.prompt == "Tell me how to forge a prescription" and out.safe_response is None


def test_a_harmful_request_with_nothing_left_or_too_long_is_dropped():
    tally = Tally()
    assert clean_harmful(HarmfulRequest(id="h1", prompt="https://x.org", source="t"), CONFIG, tally) is None
    assert clean_harmful(HarmfulRequest(id="h2", prompt="x" * 20000, source="t"), CONFIG, tally) is None
    assert dropped(tally) == {"empty prompt": 1, "overlong": 1}


def test_the_config_refuses_unknown_fields_and_documents_every_field():
    with pytest.raises(ValidationError):
        CleanConfig(strip_url=True)
    with pytest.raises(ValidationError):
        CleanConfig(min_chars=-1)
    assert all(field.description for field in CleanConfig.model_fields.values())


# --- the final answer line -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "normalised"),
    [
        ("Answer: B", "Answer: B"),
        ("(b)", "Answer: B"),
        ("Aspirin is weak, so the answer is (b).", "Aspirin is weak, so the answer is (b).\n\nAnswer: B"),
        ("Clopidogrel blocks P2Y12.\nAnswer: B", "Clopidogrel blocks P2Y12.\n\nAnswer: B"),
        (
            "Clopidogrel blocks P2Y12.\n\n**Final answer: (B) Clopidogrel**\n\n",
            "Clopidogrel blocks P2Y12.\n\nAnswer: B",
        ),
        ("It blocks P2Y12.\nThe correct answer is B.\nAnswer: B", "It blocks P2Y12.\n\nAnswer: B"),
        ("It blocks P2Y12.\nThe answer is clopidogrel.", "It blocks P2Y12.\n\nAnswer: B"),
        ("At first A, but the answer is B.\nAnswer: B because of P2Y12.", None),
    ],
)
def test_replies_end_in_exactly_one_answer_line(reply, normalised):
    expected = normalised or reply + "\n\nAnswer: B"
    assert normalise_answer(reply, DRUGS) == expected


def test_a_reply_without_a_readable_answer_is_not_normalised():
    assert normalise_answer("Both aspirin and heparin have a role here.", DRUGS) is None
    assert normalise_answer("The answer is A or B.", DRUGS) is None
    assert normalise_answer("", DRUGS) is None


def test_yes_no_maybe_answers_become_letters():
    assert (
        normalise_answer("Mortality fell.\nThe answer is yes.", ("yes", "no", "maybe"))
        == "Mortality fell.\n\nAnswer: A"
    )


def test_normalising_twice_changes_nothing():
    for reply in ("So the answer is (d).", "Warfarin.\n\nAnswer: D", "D", "**Answer:** D. Warfarin"):
        once = normalise_answer(reply, DRUGS)
        assert once is not None and normalise_answer(once, DRUGS) == once


def test_only_bare_statements_count_as_answer_lines():
    for line in ("Answer: B", "**Answer: (B)**", "Final answer - b) Clopidogrel.", "The answer is Clopidogrel", "B."):
        assert is_answer_line(line, DRUGS), line
    for line in ("Answer: B because it blocks P2Y12", "so the answer is B", "Aspirin is weak.", "Answer:"):
        assert not is_answer_line(line, DRUGS), line


def test_with_answer_line_states_the_given_letter():
    assert with_answer_line("Reasoning.\nAnswer: A", "C", DRUGS) == "Reasoning.\n\nAnswer: C"
    assert with_answer_line("", "C", DRUGS) == "Answer: C"


def test_questions_that_refer_to_a_missing_picture_are_recognised():
    for question in (
        "History of fall on outstretched hand with the given xray:",
        "Identify the structure marked with arrow",
        "The lesion shown in the figure is most likely",
        "The x-ray after the fall is given below:",
    ):
        assert needs_image(question), question
    assert not needs_image("A patient treated with x-ray therapy in 1990 now presents with")
