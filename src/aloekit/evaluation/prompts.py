"""Prompts: lm-evaluation-harness's, string for string, for log-likelihood scoring; a chat prompt that asks for
``Answer: X`` for generative scoring.

Log-likelihood mode scores ``context + " " + choice`` for each choice (lm-eval's ``target_delimiter``), where
``context`` is the task description (MMLU), the few-shot examples joined by a blank line, and the question.

Two formulations of a multiple-choice question for log-likelihood scoring:

* ``letter`` (lm-eval's): the question with its lettered options, then ``Answer:``; the choices are the letters.
* ``cloze`` (lighteval's "MMLU cloze", as SmolLM2 is evaluated): ``Question: ...\nAnswer:`` without the option
  list; the choices are the option texts. MMLU keeps a one-line description ("The following are questions about
  anatomy."). PubMedQA and HEAD-QA already score texts (yes/no/maybe, the options) without a list: their cloze
  prompt and choices are the letter ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from aloekit.data.schema import MCQItem
from aloekit.data.sources.mcqa import LETTERS
from aloekit.engines.base import Message
from aloekit.evaluation.benchmarks import Benchmark

TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"

Formulation = Literal["letter", "cloze"]
"""How options are asked and scored: lettered in the prompt with letters scored, or their texts scored."""


def _lettered(options: Sequence[str]) -> str:
    return "".join(f"{LETTERS[i]}. {text}\n" for i, text in enumerate(options))


def _lists_options(bench: Benchmark) -> bool:
    """Whether the benchmark's letter prompt lists the options (PubMedQA and HEAD-QA never do)."""
    return bench.prompt not in ("pubmedqa", "headqa")


def cloze_question(item: MCQItem) -> str:
    """The cloze prompt of a question (lighteval's "MMLU cloze"): the question without its options; each option's
    text is then scored after it (:data:`TARGET_DELIMITER` first)."""
    return f"Question: {item.question.strip()}\nAnswer:"


def question_text(bench: Benchmark, item: MCQItem, formulation: Formulation = "letter") -> str:
    """lm-eval's ``doc_to_text`` for the benchmark's prompt style; in cloze, the question without its options."""
    if formulation == "cloze" and _lists_options(bench):
        return cloze_question(item)
    if bench.prompt == "medqa":
        return f"Question: {item.question}\n{_lettered(item.options)}Answer:"
    if bench.prompt == "medmcqa":
        return f"Question: {item.question}\nChoices:\n{_lettered(item.options)}Answer:"
    if bench.prompt == "pubmedqa":
        return f"Abstract: {item.context or ''}\nQuestion: {item.question}\nAnswer:"
    if bench.prompt == "mmlu":
        return f"{item.question.strip()}\n{_lettered(item.options)}Answer:"
    if bench.prompt == "headqa":
        return f"Question: {item.question}\nAnswer:"
    raise ValueError(f"unknown prompt style {bench.prompt}")


def choices(bench: Benchmark, item: MCQItem, formulation: Formulation = "letter") -> list[str]:
    """lm-eval's ``doc_to_choice``: option letters, yes/no/maybe, or the option texts (always, in cloze)."""
    if formulation == "cloze" or bench.choices == "texts" or bench.format == "pubmedqa":
        return list(item.options)
    return list(LETTERS[: len(item.options)])


def description(bench: Benchmark, formulation: Formulation = "letter") -> str:
    if bench.prompt == "mmlu" and bench.subject and formulation == "cloze":
        return f"The following are questions about {bench.subject.replace('_', ' ')}.\n"
    if bench.prompt == "mmlu" and bench.subject:
        return (
            f"The following are multiple choice questions (with answers) about {bench.subject.replace('_', ' ')}.\n\n"
        )
    return ""


def loglik_context(
    bench: Benchmark, item: MCQItem, shots: Sequence[MCQItem] = (), formulation: Formulation = "letter"
) -> str:
    """The context every choice of ``item`` is scored after (lm-eval's layout, few-shot examples first)."""
    examples = [
        question_text(bench, s, formulation) + TARGET_DELIMITER + choices(bench, s, formulation)[s.answer]
        for s in shots
    ]
    head = description(bench, formulation) + "".join(e + FEWSHOT_DELIMITER for e in examples)
    return head + question_text(bench, item, formulation)


# --- generative -----------------------------------------------------------------------------------------------

SYSTEM = "You are a medical expert answering multiple-choice exam questions."


def chat_question(item: MCQItem) -> str:
    context = f"{item.context}\n\n" if item.context else ""
    return f"{context}Question: {item.question}\n\nOptions:\n{_lettered(item.options)}"


def instruction(n_options: int, cot: bool) -> str:
    letters = ", ".join(LETTERS[:n_options])
    if cot:
        return (
            f"Think step by step, then give your final answer on the last line as 'Answer: X', "
            f"where X is one of {letters}."
        )
    return f"Reply with only 'Answer: X', where X is one of {letters}."


def chat_messages(item: MCQItem, shots: Sequence[MCQItem] = (), *, cot: bool = False) -> list[Message]:
    """Chat turns for generative scoring: few-shot examples as earlier user/assistant turns, then the question.

    Options are always lettered (PubMedQA too: A. yes, B. no, C. maybe) so one extractor serves every benchmark.
    Few-shot answers are bare ``Answer: X`` turns, since the sources have no verified reasoning to show.
    """
    messages: list[Message] = [{"role": "system", "content": SYSTEM}]
    for shot in shots:
        messages.append({"role": "user", "content": chat_question(shot) + "\n" + instruction(len(shot.options), False)})
        messages.append({"role": "assistant", "content": f"Answer: {LETTERS[shot.answer]}"})
    messages.append({"role": "user", "content": chat_question(item) + "\n" + instruction(len(item.options), cot)})
    return messages
