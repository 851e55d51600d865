"""Specification of answer extraction: which option a free-text reply chose, or that it cannot be told.

Every ``None`` below is deliberate: an unparseable reply is scored wrong and counted as unparseable, so guessing
a letter out of prose would inflate accuracy for models that do not follow the answer format.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aloekit.prompting.answers import extract_choice

ABCD = ("A", "B", "C", "D")
ABCDE = ("A", "B", "C", "D", "E")
YNM = ("yes", "no", "maybe")
DRUGS = ("Aspirin", "Clopidogrel", "Heparin", "Warfarin")

COT_CONCLUDES_D = (
    "Let's think step by step. The patient has atrial fibrillation with a CHA2DS2-VASc score of 4.\n"
    "Option A (aspirin) is insufficient for stroke prevention. Option B, clopidogrel, is an antiplatelet and "
    "also inadequate. Option C, heparin, is used acutely but not long term.\n"
    "Therefore, the answer is D."
)
COT_CHANGES_ITS_MIND = (
    "At first glance the answer is A, since aspirin is cheap. However, the guidelines recommend anticoagulation, "
    "so on reflection the correct answer is (C)."
)

LETTER_REPLIES = [
    # explicit final-answer statements
    ("Answer: B", "B"),
    ("answer is B", "B"),
    ("The correct answer is (C).", "C"),
    ("Final answer: **D**", "D"),
    ("answer: B)", "B"),
    ("Answer - B", "B"),
    ("Answer:B", "B"),
    ("ANSWER: C", "C"),
    ("the answer would be option C", "C"),
    ("The best answer is choice [D].", "D"),
    ("Option C is correct.", "C"),
    ("(B) is the correct answer because aspirin inhibits COX-1.", "B"),
    ("Option B is the most appropriate answer.", "B"),
    ("**Answer:** **(B) Clopidogrel**", "B"),
    ("The answer is: B: Clopidogrel.", "B"),
    ("The answer is therefore B.", "B"),
    ("Thus, the answer, therefore, is: C", "C"),
    ("I think the answer is B, but I am not fully sure.", "B"),
    ("I think it's B.", "B"),
    ("I would choose D.", "D"),
    ("I'll go with A.", "A"),
    ("My choice is B.", "B"),
    ("My final answer: (d)", "D"),
    ("The answer is B, not A.", "B"),
    ("Answer: A because it irreversibly inhibits COX-1.", "A"),
    ("The answer is \u201cB\u201d since it works.", "B"),
    ("### Final Answer\n\n**B. Clopidogrel**", "B"),
    ("The final answer is $\\boxed{C}$.", "C"),
    ("$\\boxed{\\text{D}}$", "D"),
    # lowercase letters after a cue
    ("answer: c", "C"),
    ("the answer is (a)", "A"),
    ("answer: b because the others are contraindicated", "B"),
    # chain of thought: the last statement wins
    (COT_CONCLUDES_D, "D"),
    (COT_CHANGES_ITS_MIND, "C"),
    ("Option A is correct in stating that aspirin helps, but the answer is D.", "D"),
    ("Answer: B\n\nExplanation: option A is wrong because it does not prevent strokes.", "B"),
    # the whole reply is a decorated label
    ("B", "B"),
    ("  b \n", "B"),
    ("(B)", "B"),
    ("[C]", "C"),
    ("B.", "B"),
    ("**B**", "B"),
    ("B) Aspirin", "B"),
    ("B. Aspirin is the drug of choice here.", "B"),
    ("C: heparin", "C"),
    ("D - warfarin", "D"),
    ("Option C", "C"),
    ("B\n\nClopidogrel blocks the P2Y12 receptor.", "B"),
    # prose, hedging, refusals, garbage: not an answer
    ("A patient with chest pain should receive aspirin.", None),
    ("I think", None),
    ("I am not sure.", None),
    ("A or B", None),
    ("B or C", None),
    ("A/B", None),
    ("The answer is A or B.", None),
    ("The answer is A, B, or C.", None),
    ("Answer: C and D are both reasonable.", None),
    ("At first the answer seems to be C. But the answer is B or D.", None),
    ("Answer: A beta blocker would be reasonable.", None),
    ("The answer is a beta blocker.", None),
    ("Answer: B cells produce antibodies.", None),
    ("The answer is B12 deficiency.", None),
    ("Vitamin C is correct for scurvy.", None),
    ("Option A is correct in some patients.", None),
    ("The answer is not A.", None),
    ("B?", None),
    ("A) Aspirin\nB) Clopidogrel\nC) Heparin\nD) Warfarin", None),
    ("Let's review the answer choices: A) aspirin B) clopidogrel", None),
    ("I'm sorry, but I can't provide medical advice.", None),
    ("As an AI language model, I cannot answer this question.", None),
    ("asdkj qwe zxc", None),
    ("", None),
    ("   \n\t", None),
    ("...", None),
]


@pytest.mark.parametrize(("reply", "expected"), LETTER_REPLIES)
def test_a_letter_reply_yields_the_chosen_label_or_none(reply: str, expected: str | None) -> None:
    assert extract_choice(reply, ABCD) == expected


YES_NO_MAYBE_REPLIES = [
    ("Yes, because the trial showed a significant reduction in mortality.", "yes"),
    ("The answer is maybe.", "maybe"),
    ("Answer: No", "no"),
    ("no", "no"),
    ("No.", "no"),
    ("MAYBE", "maybe"),
    ("**Yes**", "yes"),
    ("Yes - the abstract reports p < 0.01.", "yes"),
    ("Based on the abstract, the answer to this question is yes.", "yes"),
    ("The results are mixed, so the answer is maybe, pending larger trials.", "maybe"),
    ("No, wait. Looking again at the data, the final answer is yes.", "yes"),
    ("Yes or no, it is hard to say.", None),
    ("The answer is yes or maybe.", None),
    ("No evidence was reported in the abstract.", None),
    ("Yesterday's study was inconclusive.", None),
    ("Nobody knows.", None),
    ("I cannot determine this from the abstract.", None),
    ("", None),
]


@pytest.mark.parametrize(("reply", "expected"), YES_NO_MAYBE_REPLIES)
def test_a_yes_no_maybe_reply_yields_the_word_label_or_none(reply: str, expected: str | None) -> None:
    assert extract_choice(reply, YNM) == expected


def test_the_label_comes_back_in_the_canonical_spelling_of_labels() -> None:
    assert extract_choice("The answer is YES.", YNM) == "yes"
    assert extract_choice("answer: maybe", ("Yes", "No", "Maybe")) == "Maybe"
    assert extract_choice("answer: d", ABCD) == "D"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("E. coli is the most common cause of this infection.", None),
        ("C. difficile colitis follows antibiotic use.", None),
        ("The answer is C. difficile colitis.", None),
        ("E. Ceftriaxone", "E"),
        ("The answer is E.", "E"),
    ],
)
def test_a_genus_abbreviation_is_not_read_as_a_label(reply: str, expected: str | None) -> None:
    assert extract_choice(reply, ABCDE) == expected


PALSY = (
    "paralysis of the facial muscles.",
    "paralysis of the facial muscles and loss of taste.",
    "no sensory loss.",
    "paralysis of the facial muscles, loss of taste and lacrimation.",
)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        # cut at the token limit: the words agree with D's option as far as they go
        ("Answer: D. paralysis of", "D"),
        ("Answer: D. paralysis of the facial muscles, loss", "D"),
        ("Answer: C. no sens", "C"),
        # the letter says one option and the words another: the reply contradicts itself
        ("Answer: C. paralysis of", None),
        # too little of the option to tell a cut option from an abbreviation
        ("Answer: C. no", None),
        # the words go on past the option's start and leave it: not the option
        ("Answer: D. paralysis of the arm, then more words", None),
    ],
)
def test_a_reply_cut_inside_the_chosen_options_text_is_read_as_that_option(reply: str, expected: str | None) -> None:
    assert extract_choice(reply, ABCD, PALSY) == expected


def test_a_yes_no_label_reply_whose_words_name_another_option_is_unparseable() -> None:
    assert extract_choice("Answer: B. yes", ("A", "B", "C"), ("yes", "no", "maybe")) is None
    assert extract_choice("Answer: A. yes", ("A", "B", "C"), ("yes", "no", "maybe")) == "A"


OPTION_TEXT_REPLIES = [
    ("The answer is heparin.", "C"),
    ("Heparin", "C"),
    ("heparin.", "C"),
    ("Aspirin and clopidogrel are antiplatelets; the answer is warfarin.", "D"),
    ("I'd go with warfarin for long-term anticoagulation.", "D"),
    ("The answer is heparin or warfarin.", None),
    ("The answer is not heparin but warfarin.", None),
    ("Warfarin is often used, as is heparin.", None),
    # a label in an explicit statement beats option text
    ("The answer is B (heparin).", "B"),
    ("Answer: A Aspirin", "A"),
    ("Answer: A aspirin", "A"),
]


@pytest.mark.parametrize(("reply", "expected"), OPTION_TEXT_REPLIES)
def test_with_options_a_reply_naming_exactly_one_option_text_yields_its_label(reply: str, expected: str | None) -> None:
    assert extract_choice(reply, ABCD, DRUGS) == expected


def test_the_longest_matching_option_text_wins_over_an_option_it_contains() -> None:
    options = ("Aspirin", "Aspirin and clopidogrel", "Heparin", "Warfarin")
    assert extract_choice("The answer is aspirin and clopidogrel.", ABCD, options) == "B"
    assert extract_choice("The answer is aspirin.", ABCD, options) == "A"


def test_an_option_text_that_starts_like_a_label_is_read_as_that_option() -> None:
    options = ("Metoprolol", "A beta blocker", "Heparin", "Warfarin")
    assert extract_choice("The answer is a beta blocker.", ABCD, options) == "B"
    cells = ("T cells", "Macrophages", "B cells", "NK cells")
    assert extract_choice("Answer: B cells", ABCD, cells) == "C"
    assert extract_choice("Answer: B", ABCD, cells) == "B"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Yes, because the intervention reduced readmissions.", "A"),
        ("The answer is no.", "B"),
        ("maybe", "C"),
        ("Answer: C", "C"),
        ("Yes, no, maybe: it depends.", None),
        ("yes or no", None),
        ("Yesterday the results were unclear.", None),
    ],
)
def test_pubmedqa_with_letter_labels_reads_yes_no_maybe_through_the_option_texts(
    reply: str, expected: str | None
) -> None:
    assert extract_choice(reply, ("A", "B", "C"), YNM) == expected


def test_without_options_an_option_text_alone_is_unparseable() -> None:
    assert extract_choice("The answer is heparin.", ABCD) is None


def test_five_option_benchmarks_accept_e() -> None:
    assert extract_choice("Final answer: E", ABCDE) == "E"
    assert extract_choice("Final answer: E", ABCD) is None


@pytest.mark.parametrize(
    ("labels", "options", "message"),
    [
        ((), None, "non-empty"),
        (("A", ""), None, "non-empty"),
        (("A", "a"), None, "differ"),
        (ABCD, ("x", "y"), "pair up"),
    ],
)
def test_inconsistent_labels_or_options_are_a_programming_error(
    labels: tuple[str, ...], options: tuple[str, ...] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        extract_choice("Answer: A", labels, options)


# --- properties ----------------------------------------------------------------------------------------------------

TEMPLATES = (
    "{l}",
    "({l})",
    "**{l}**",
    "{l}.",
    "Answer: {l}",
    "answer: {l}",
    "The answer is {l}.",
    "The correct answer is ({l}).",
    "Final answer: **{l}**",
    "Option {l} is correct.",
    "Let me think about every option carefully first.\n\nThe answer is {l}",
)


@given(st.sampled_from(ABCDE), st.sampled_from(TEMPLATES), st.booleans())
def test_any_label_in_any_standard_format_is_extracted(label: str, template: str, lower: bool) -> None:
    written = label.lower() if lower and template.startswith(("Answer", "answer", "The", "Final")) else label
    assert extract_choice(template.format(l=written), ABCDE) == label


@given(st.permutations(ABCD), st.sampled_from(ABCD))
def test_chain_of_thought_that_discusses_every_option_first_yields_its_conclusion(
    discussed: list[str], final: str
) -> None:
    reasoning = " ".join(f"Option {label} could be considered, but it has drawbacks." for label in discussed)
    assert extract_choice(f"{reasoning}\nTherefore, the answer is {final}.", ABCD) == final


NOUNS = ("patient", "45-year-old", "beta", "woman", "child", "dose", "heart", "randomised")
WORDS = ("patient", "dose", "with", "the", "of", "acute", "is", "a", "I", "b", "C", "heart", "and", "in", "to", "D")


@given(st.sampled_from(("A", "I", "a")), st.sampled_from(NOUNS), st.lists(st.sampled_from(WORDS), max_size=12))
def test_prose_that_opens_with_a_one_letter_word_never_yields_a_label(first: str, noun: str, words: list[str]) -> None:
    assert extract_choice(f"{first} {noun} {' '.join(words)}.", ABCD) is None


@given(st.text(max_size=300))
def test_any_text_yields_none_or_one_of_the_labels_without_raising(text: str) -> None:
    assert extract_choice(text, ABCD) in (*ABCD, None)
    assert extract_choice(text, YNM, None) in (*YNM, None)
    assert extract_choice(text, ABCD, DRUGS) in (*ABCD, None)


@pytest.mark.parametrize(
    "reply",
    [
        "answer" + " " * 50_000 + "x",
        "answer" + "\n" * 50_000 + "x",
        "Answer: B. " * 10_000,
        "Option A is " * 5_000,
        "A or " * 10_000,
    ],
)
def test_a_degenerate_huge_reply_is_read_in_linear_time(reply: str) -> None:
    # Before whitespace was matched possessively, the first two took 10-30 s (quadratic backtracking). CPU time,
    # not wall time: on a loaded machine (a recipe running beside the tests) wall time measures the neighbours.
    started = time.process_time()
    extract_choice(reply, ABCD, DRUGS)
    extract_choice(reply, YNM)
    assert time.process_time() - started < 2.0
