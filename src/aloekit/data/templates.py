"""Instruction templates that turn questions into chat samples, several wordings per task.

A model fine-tuned on one fixed prompt learns that prompt, not the task: Aloe words each kind of question in
several ways. Each item gets one template, chosen by a hash of (task, item id, seed) rather than by a shared
random generator, so an item keeps its template whatever else is in the mixture and in whatever order the
sources are read; changing the seed re-deals the templates.

Every template asks for, or is compatible with, the reply format the assistant turn always has: reasoning (for
the ``*_cot`` tasks) and a final line ``Answer: X``, which is what :mod:`aloekit.evaluation` extracts.
Slots: ``{question}``, ``{options}`` (lettered, one per line), ``{context}``, ``{letters}`` ("A, B, C or D").
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Sequence

from aloekit.data.clean import read_choice, with_answer_line
from aloekit.data.schema import LETTERS, ChatSample, MCQItem, Message
from aloekit.errors import MalformedRow

__all__ = [
    "TEMPLATES",
    "format_options",
    "is_yes_no_maybe",
    "letters_phrase",
    "mcq_to_chat",
    "mcq_to_plain",
    "open_qa_to_chat",
    "pick",
    "render",
    "with_system",
]

TEMPLATES: dict[str, tuple[str, ...]] = {
    # A question and its options; the reply is only "Answer: X".
    "mcqa": (
        "{question}\n\n{options}\n\nAnswer with the letter of the correct option, as 'Answer: X'.",
        "Question: {question}\nOptions:\n{options}\n\nWhich option is correct? Reply in the form 'Answer: X', "
        "where X is one of {letters}.",
        "The following is a multiple-choice question from a medical exam. Choose the single best answer and reply "
        "with 'Answer:' followed by its letter.\n\n{question}\n{options}",
        "Select the correct answer to this medical question.\n\nQuestion: {question}\n\n{options}\n\nGive only "
        "the final answer, formatted as 'Answer: X'.",
        "{options}\n\nWhich of the options above correctly answers the following question?\n{question}\nReply "
        "with 'Answer: X', where X is {letters}.",
        "As a medical expert, answer the multiple-choice question below. State only your choice ({letters}) as "
        "'Answer: X'.\n\n{question}\n\nChoices:\n{options}",
    ),
    # The same, but the reply reasons first and ends with "Answer: X".
    "mcqa_cot": (
        "{question}\n\n{options}\n\nThink step by step, then give your final answer on the last line as 'Answer: X'.",
        "Question: {question}\nOptions:\n{options}\n\nExplain your reasoning before choosing. End with a line "
        "'Answer: X', where X is one of {letters}.",
        "Solve this medical exam question. Reason through the options one at a time, then conclude with "
        "'Answer: X'.\n\n{question}\n{options}",
        "You are given a clinical multiple-choice question.\n\n{question}\n\nChoices:\n{options}\n\nWalk through "
        "the relevant medical knowledge, rule out the wrong options, and finish with your answer as 'Answer: X'.",
        "Let's work through this carefully.\n{question}\n{options}\nShow the reasoning that leads to the answer, "
        "and state the final choice ({letters}) on its own last line as 'Answer: X'.",
    ),
    # A passage (a PubMed abstract, a case), then a question about it; options yes/no/maybe are lettered too.
    "context_mcqa": (
        "Context: {context}\n\nQuestion: {question}\n\nOptions:\n{options}\n\nAnswer as 'Answer: X', where X is "
        "one of {letters}.",
        "Read the abstract and answer the question with 'Answer:' and the letter of your choice.\n\nAbstract: "
        "{context}\n\nQuestion: {question}\n{options}",
        "{context}\n\nBased on the passage above, answer the following question.\n{question}\n{options}\nReply "
        "with 'Answer: X'.",
        "Question: {question}\n\nRelevant evidence:\n{context}\n\nChoose one option:\n{options}\nGive your "
        "answer as 'Answer: X'.",
        'Here is a research summary:\n"""\n{context}\n"""\nUsing this summary, which option answers the question '
        "below? Reply with 'Answer: X', where X is {letters}.\n{question}\n{options}",
    ),
    "context_mcqa_cot": (
        "Context: {context}\n\nQuestion: {question}\n\nOptions:\n{options}\n\nThink step by step about what the "
        "context shows, then give your final answer on the last line as 'Answer: X'.",
        "Read the abstract, explain what its results imply for the question, and end with 'Answer: X', where X "
        "is one of {letters}.\n\nAbstract: {context}\n\nQuestion: {question}\n{options}",
        "{context}\n\nBased on the passage above, reason about the following question before answering.\n"
        "{question}\n{options}\nFinish with a line 'Answer: X'.",
        "Question: {question}\n\nRelevant evidence:\n{context}\n\nOptions:\n{options}\nWeigh the evidence, "
        "explain your conclusion and state it as 'Answer: X' on the last line.",
        'Here is a research summary:\n"""\n{context}\n"""\nWhat does it tell us about this question? Explain, then '
        "answer with 'Answer: X' ({letters}).\n{question}\n{options}",
    ),
    # Plain text, no chat template (ChatSample.plain): the prompt ends in "Answer:" and the completion is " X",
    # the layouts in which lm-evaluation-harness scores base models (MMLU, MedQA, MedMCQA prompts).
    "mcqa_plain": (
        "{question}\n{options}\nAnswer:",
        "The following are multiple choice questions (with answers) about medicine.\n\n{question}\n{options}\nAnswer:",
        "Question: {question}\n{options}\nAnswer:",
        "Question: {question}\nChoices:\n{options}\nAnswer:",
    ),
    # A passage and a yes/no/maybe question (PubMedQA): the completion is the word, as lm-eval scores it.
    "context_plain": ("Abstract: {context}\nQuestion: {question}\nAnswer:",),
    # A free-form health question; the reply is a free-form answer.
    "open_qa": (
        "{question}",
        "Answer the following medical question.\n\n{question}",
        "Question: {question}",
        'A patient asks: "{question}"\nPlease give a clear and accurate answer.',
        "Please answer this question as a knowledgeable healthcare professional would:\n{question}",
        "{question}\nExplain clearly and accurately.",
    ),
}


def format_options(options: Sequence[str]) -> str:
    """Options lettered one per line, ``"A. ...\\nB. ..."`` (the evaluation's layout)."""
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options can be lettered, got {len(options)}")
    return "\n".join(f"{letter}. {option}" for letter, option in zip(LETTERS, options, strict=False))


def letters_phrase(n_options: int) -> str:
    """The option letters as a phrase: ``"A, B, C or D"``."""
    letters = list(LETTERS[:n_options])
    return letters[0] if len(letters) == 1 else f"{', '.join(letters[:-1])} or {letters[-1]}"


def pick(task: str, key: str, seed: int) -> int:
    """Index of the template of ``task`` for the item ``key``: a hash of (task, seed, key), so the same item
    gets the same template in any order or mixture, and about as often each template overall."""
    if task not in TEMPLATES:
        raise ValueError(f"unknown template task {task!r}; use one of {', '.join(TEMPLATES)}")
    digest = hashlib.blake2b(f"{task}\x00{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % len(TEMPLATES[task])


def render(task: str, key: str, seed: int, *, question: str, options: Sequence[str] = (), context: str = "") -> str:
    """The user turn: ``task``'s template picked for ``key`` with its slots filled."""
    template = TEMPLATES[task][pick(task, key, seed)]
    return template.format(
        question=question.strip(),
        options=format_options(options),
        context=context.strip(),
        letters=letters_phrase(len(options)) if options else "",
    )


def _conversation(system: str | None, user: str, assistant: str) -> tuple[Message, ...]:
    head: tuple[Message, ...] = ({"role": "system", "content": system},) if system else ()
    return (*head, {"role": "user", "content": user}, {"role": "assistant", "content": assistant})


def mcq_to_chat(item: MCQItem, *, seed: int, reasoning: str | None = None, system: str | None = None) -> ChatSample:
    """A chat sample teaching ``item``: a templated question, and as the reply either ``Answer: X`` or the
    reasoning ending in exactly one final ``Answer: X`` line (:func:`~aloekit.data.clean.with_answer_line`).

    The task (and template family) is ``context_mcqa`` when the item has a context, ``mcqa`` otherwise, with
    ``_cot`` appended when reasoning is given. Reasoning that states no answer gets the item's; reasoning that
    commits to a different option than the item's answer raises :class:`~aloekit.errors.MalformedRow`
    (reason "reasoning contradicts answer"): training on it would teach the wrong answer.
    """
    letter = item.answer_letter
    task = "context_mcqa" if item.context else "mcqa"
    if reasoning is not None and reasoning.strip():
        task += "_cot"
        stated = read_choice(reasoning, item.options)
        if stated is not None and stated != letter:
            raise MalformedRow(
                "reasoning contradicts answer",
                f"question {item.id}: the reasoning concludes {stated} but the answer is {letter}; "
                "use only reasoning verified against the answer key (aloe data cot)",
            )
        reply = with_answer_line(reasoning.strip(), letter, item.options)
    else:
        reply = f"Answer: {letter}"
    user = render(task, item.id, seed, question=item.question, options=item.options, context=item.context or "")
    return ChatSample(id=item.id, messages=_conversation(system, user, reply), source=item.source or "mcq", task=task)


YES_NO_MAYBE = ("yes", "no", "maybe")


def is_yes_no_maybe(options: Sequence[str]) -> bool:
    """PubMedQA's options: scored by word, so their order is their meaning."""
    return tuple(o.strip().lower() for o in options) == YES_NO_MAYBE


def mcq_to_plain(item: MCQItem, *, seed: int) -> ChatSample:
    """A plain (no chat template) sample teaching ``item`` in a log-likelihood evaluation's layout: a templated
    prompt ending in ``Answer:`` and the completion `` X`` (the letter), or `` yes``/`` no``/`` maybe`` for a
    passage with those three options (PubMedQA's layout, which scores the words)."""
    if item.context and is_yes_no_maybe(item.options):
        user = render("context_plain", item.id, seed, question=item.question, context=item.context)
        completion = " " + YES_NO_MAYBE[item.answer]
        task = "context_plain"
    else:
        question = f"{item.context.strip()}\n\n{item.question}" if item.context else item.question
        user = render("mcqa_plain", item.id, seed, question=question, options=item.options)
        completion = " " + item.answer_letter
        task = "mcqa_plain"
    messages = ({"role": "user", "content": user}, {"role": "assistant", "content": completion})
    return ChatSample(id=item.id, messages=messages, source=item.source or "mcq", task=task, plain=True)


def open_qa_to_chat(
    id: str, question: str, answer: str, *, source: str, seed: int, system: str | None = None
) -> ChatSample:
    """A chat sample for a free-form question (MedicationQA, Medical Meadow) with a templated user turn."""
    user = render("open_qa", id, seed, question=question)
    return ChatSample(id=id, messages=_conversation(system, user, answer.strip()), source=source, task="open_qa")


def with_system(sample: ChatSample, system: str | None) -> ChatSample:
    """``sample`` with ``system`` as its one system turn, first (any system turn it had is replaced). ``None``
    or an empty prompt leaves the sample as it is: no system prompt configured means the source's own stands."""
    if not system:
        return sample
    turns = tuple(m for m in sample.messages if m["role"] != "system")
    return ChatSample(
        id=sample.id, messages=({"role": "system", "content": system}, *turns), source=sample.source, task=sample.task
    )


def rotated(item: MCQItem, rotations: int, seed: int) -> list[MCQItem]:
    """``rotations`` copies of ``item`` (ids ``<id>:rot<k>``), its options cyclically shifted so the key walks
    over evenly spaced letters from a start dealt by a hash of (seed, id). The options keep their cyclic order,
    so each copy asks the same question; over the copies every letter is the key equally often. Yes/no/maybe
    items (scored by word) and single copies come back as ``[item]``."""
    n = len(item.options)
    if rotations <= 1 or is_yes_no_maybe(item.options):
        return [item]
    start = random.Random(f"{seed}:rotate:{item.id}").randrange(n)
    copies = []
    for k in range(min(rotations, n)):
        target = (start + k * n // min(rotations, n)) % n
        shift = (target - item.answer) % n
        options = tuple(item.options[(i - shift) % n] for i in range(n))
        copies.append(dataclasses.replace(item, id=f"{item.id}:rot{k}", options=options, answer=target))
    return copies
