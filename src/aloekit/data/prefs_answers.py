"""Preference pairs on multiple-choice questions whose replies are answers: the key's ``Answer: X`` chosen over
a wrong option's (no model), over the policy's own reply (on-policy), or over a reply that starts reasoning when
the answer alone was asked for (instruction following). Shared helpers live in :mod:`aloekit.data.prefs`."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from aloekit.data.cot import answer_prompt, explanation_reasoning
from aloekit.data.prefs import STAGE, cut_words, make_pair, user_turn
from aloekit.data.schema import MCQItem, PreferencePair
from aloekit.data.tally import Tally
from aloekit.data.templates import mcq_to_plain, rotated
from aloekit.engines.base import Engine, GenerationRequest
from aloekit.prompting.answers import extract_choice

__all__ = ["answer_pairs", "format_pairs", "policy_answer_pairs"]


def answer_pairs(
    items: Sequence[MCQItem],
    *,
    seed: int,
    tally: Tally,
    rotations: int = 1,
    option_text: bool = False,
    plain: bool = False,
) -> list[PreferencePair]:
    """Pairs that need no policy model: the question as the policy path asks it, ``Answer: <key>`` chosen over
    ``Answer: <a wrong option>`` rejected (the wrong option drawn by a hash of (seed, item id)).

    The two replies differ only in the option, so DPO's whole signal is which option is right; it costs no
    generation, so thousands of held-apart training questions fit a CPU budget where the policy path fits dozens.
    ``rotations`` > 1 asks each question that many times with its options rotated (ids ``<id>:rot<k>``, see
    :func:`~aloekit.data.templates.rotated`), the same wrong option rejected each time: every letter is then
    chosen and rejected equally often, so preferring a letter earns no reward (with letters dealt at random,
    the few extra pairs of one letter were enough for DPO to push one letter to nearly every answer).
    ``option_text`` adds the option after the letter (``Answer: B. <option>``), so the preference also holds on
    the option's words, which a small model can learn from where a bare letter gives it little to go on.
    ``plain`` asks in a log-likelihood benchmark's layout instead (no chat template, ``...Answer:`` then `` B``
    over `` C``, :func:`~aloekit.data.templates.mcq_to_plain`): the preference then acts on the very letter
    probabilities those benchmarks compare.
    """
    pairs = []
    for item in items:
        wrong = [i for i in range(len(item.options)) if i != item.answer]
        rejected = random.Random(f"{seed}:wrong:{item.id}").choice(wrong)
        copies = rotated(item, rotations, seed)
        for copy in copies:
            shift = copy.options.index(item.options[rejected]) if len(copies) > 1 else rejected
            if plain:  # the same prompt; the completions of the key and of the wrong option (a letter, or a word)
                right, wrong_one = (
                    mcq_to_plain(replace(copy, answer=i), seed=seed).messages for i in (copy.answer, shift)
                )
                prompt = right[0]
                replies = {"chosen": right[1]["content"], "rejected": wrong_one[1]["content"]}
            else:
                prompt = user_turn(answer_prompt(copy))[0]
                replies = {
                    "chosen": _answer(copy, copy.answer, option_text),
                    "rejected": _answer(copy, shift, option_text),
                }
            pair = make_pair(
                tally,
                id=copy.id if len(copies) > 1 else f"{item.id}:medical",
                prompt=(prompt,),
                **replies,
                source=item.source or "mcqa",
                category="medical",
                plain=plain,
            )
            if pair is not None:
                pairs.append(pair)
    return pairs


def policy_answer_pairs(
    policy: Engine,
    items: Sequence[MCQItem],
    *,
    seed: int,
    max_tokens: int,
    tally: Tally,
    rotations: int = 1,
    option_text: bool = False,
    progress: bool = False,
) -> list[PreferencePair]:
    """On-policy answer pairs: the policy is asked for the answer alone (the prompt of :func:`answer_pairs`), and
    ``Answer: <key>`` is chosen over its own reply wherever that reply does not name the key: a wrong letter, or
    no readable answer at all (it reasons when asked for the answer). A question it answers right gives no pair.

    The rejected side is what the model being aligned actually says, so the preference pushes down its own
    habits: the letter it favours when it does not know (a wrong letter the policy picks often is rejected
    often, while the chosen letters are dealt evenly by ``rotations``) and replies that ignore the requested
    format. :func:`answer_pairs` rejects a wrong option drawn at random instead, so every letter is pushed
    down equally and a bias the model already has is left for noise to amplify.
    """
    asked = []
    for item in items:
        copies = rotated(item, rotations, seed)
        asked += [(copy, copy.id if len(copies) > 1 else f"{item.id}:medical") for copy in copies]
    requests = [
        GenerationRequest(messages=user_turn(answer_prompt(copy)), max_tokens=max_tokens, seed=seed)
        for copy, _ in asked
    ]
    replies = policy.generate(requests, progress=progress) if requests else []
    pairs = []
    for (copy, pair_id), request, reply in zip(asked, requests, replies, strict=True):
        text = reply.text.strip()
        if extract_choice(text, copy.letters, copy.options) == copy.answer_letter:
            tally.drop(STAGE, "policy already correct", copy.id)
            continue
        assert request.messages is not None
        pair = make_pair(
            tally,
            id=pair_id,
            prompt=request.messages,
            chosen=_answer(copy, copy.answer, option_text),
            rejected=text,
            source=copy.source or "mcqa",
            category="medical",
        )
        if pair is not None:
            pairs.append(pair)
    return pairs


def format_pairs(
    items: Sequence[MCQItem],
    *,
    seed: int,
    tally: Tally,
    max_words: int,
    rotations: int = 1,
    option_text: bool = False,
) -> list[PreferencePair]:
    """Instruction-following pairs that need no model: asked for the answer alone (the prompt of
    :func:`answer_pairs`), ``Answer: <key>`` is chosen over a reply that starts reasoning instead (the question
    restated and the item's expert explanation, as SFT teaches when reasoning is asked for, cut at a sentence end
    within ``max_words``).

    Both replies stand for the same key, so no letter gains or loses: the only preference is to answer at once
    when asked to. That keeps generated answers readable in a few tokens through a later stage that teaches long
    replies (safety DPO's refusals and helpful answers had made a model start reasoning on 6% of answer-only
    validation questions). Items without a usable explanation (:func:`~aloekit.data.cot.explanation_reasoning`) are
    counted and dropped.
    """
    pairs = []
    for item in items:
        reasoning = explanation_reasoning(item)  # no answer line: it would name the key by its unrotated letter
        if reasoning is None:
            tally.drop(STAGE, "no explanation to reason with", item.id)
            continue
        started = cut_words(reasoning, max_words)
        copies = rotated(item, rotations, seed)
        for copy in copies:
            pair = make_pair(
                tally,
                id=copy.id if len(copies) > 1 else f"{item.id}:format",
                prompt=user_turn(answer_prompt(copy)),
                chosen=_answer(copy, copy.answer, option_text),
                rejected=started,
                source=item.source or "mcqa",
                category="format",
            )
            if pair is not None:
                pairs.append(pair)
    return pairs


def _answer(item: MCQItem, index: int, option_text: bool) -> str:
    letter = item.letters[index]
    return f"Answer: {letter}. {item.options[index]}" if option_text else f"Answer: {letter}"
