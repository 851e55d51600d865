"""Medprompt: few-shot chain-of-thought with retrieved worked examples and a choice-shuffle ensemble.

For each question (Nori et al. 2023, as the Aloe paper uses it):

1. take the ``k`` most similar solved questions from the chain-of-thought database (:mod:`.index`) and show them
   as earlier chat turns, the most similar last (nearest the question), each answered by its verified reasoning;
2. ask for step-by-step reasoning that ends in ``Answer: X``;
3. ask ``runs`` times, each time with the options in another order (run 1 keeps the original order), optionally
   ``samples`` sampled answers per run (self-consistency); map every answer back to the original letters;
4. vote (:func:`.ensemble.vote`: plurality, ties to the earliest answer).

An answer that cannot be read gets up to ``retries`` follow-up turns asking for the final ``Answer: X``; what is
still unreadable abstains from the vote, and a question with no readable answer at all is wrong and counted as
unparseable, never guessed.

All requests of a chunk of questions go to the engine in one call (the hf engine batches them sorted by length,
vLLM batches, the OpenAI client sends them concurrently) and land in the request cache, so a killed run resumes
and the ablation's steps share every identical request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aloekit.config import MedpromptSettings
from aloekit.data.schema import MCQItem
from aloekit.engines.base import Engine, GenerationRequest, Message
from aloekit.evaluation import prompts
from aloekit.evaluation.cache import RequestCache, request_key
from aloekit.prompting.answers import extract_choice
from aloekit.prompting.ensemble import Permutation, permutations, shuffle, to_original, vote
from aloekit.prompting.index import CoTDatabase

__all__ = ["Answer", "QuestionPlan", "examples_for", "followup", "medprompt_messages", "plan_questions", "resolve"]

CACHE_KIND = "medprompt-generate"


def shot_turns(example: MCQItem, cot: bool) -> list[Message]:
    """A solved example as a user turn and the assistant's answer: its verified reasoning, or a bare letter."""
    answer = (example.explanation or "").strip() if cot else f"Answer: {example.answer_letter}"
    question = prompts.chat_question(example) + "\n" + prompts.instruction(len(example.options), cot)
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def medprompt_messages(item: MCQItem, examples: Sequence[MCQItem], cot: bool) -> list[Message]:
    """System prompt, the examples in the order given (callers put the most similar last), then ``item``."""
    messages: list[Message] = [{"role": "system", "content": prompts.SYSTEM}]
    for example in examples:
        messages += shot_turns(example, cot)
    question = prompts.chat_question(item) + "\n" + prompts.instruction(len(item.options), cot)
    messages.append({"role": "user", "content": question})
    return messages


def followup(request: GenerationRequest, reply: str, n_options: int) -> GenerationRequest:
    """The conversation so far plus a turn asking for the final answer only: a retry for an unreadable reply."""
    letters = ", ".join(prompts.LETTERS[:n_options])
    ask = f"State your final answer now, as 'Answer: X', where X is one of {letters}."
    messages = (*(request.messages or ()), {"role": "assistant", "content": reply}, {"role": "user", "content": ask})
    return GenerationRequest(messages=messages, max_tokens=16, temperature=0.0, seed=request.seed)


def examples_for(
    items: Sequence[MCQItem], settings: MedpromptSettings, database: CoTDatabase | None, seed: int
) -> list[list[MCQItem]]:
    """Each question's few-shot examples, most similar last (kNN) or in drawn order (random)."""
    if not settings.shots:
        return [[] for _ in items]
    if database is None:
        raise ValueError("few-shot examples need a database")
    if settings.examples == "random":
        return [database.random(item, settings.shots, seed) for item in items]
    return [[n.item for n in reversed(row)] for row in database.nearest(items, settings.shots)]


@dataclass
class QuestionPlan:
    """What is asked for one question: one request per run, each with the option order it shows."""

    item: MCQItem
    examples: list[MCQItem]
    orders: list[Permutation]
    requests: list[GenerationRequest]


def plan_questions(
    items: Sequence[MCQItem], settings: MedpromptSettings, database: CoTDatabase | None, seed: int
) -> list[QuestionPlan]:
    plans = []
    for item, examples in zip(items, examples_for(items, settings, database, seed), strict=True):
        orders = permutations(len(item.options), settings.runs, seed=seed, key=item.id)
        requests = [
            GenerationRequest(
                messages=tuple(medprompt_messages(shuffle(item, order), examples, settings.cot)),
                max_tokens=settings.new_tokens,
                temperature=settings.temperature,
                n=settings.samples,
                # Runs differ by their option order already; a run-specific seed also decorrelates their samples.
                seed=seed + run,
            )
            for run, order in enumerate(orders)
        ]
        plans.append(QuestionPlan(item, examples, orders, requests))
    return plans


@dataclass
class Answer:
    """One sampled answer of one run, read back in the original option order."""

    run: int
    sample: int
    order: Permutation
    text: str
    position: int | None
    """The displayed option it chose (None: unreadable, retries included)."""
    original: int | None
    """The original option index that position holds."""
    retry_texts: list[str] = field(default_factory=list)


def _read(text: str, shown: MCQItem) -> int | None:
    letter = extract_choice(text, tuple(shown.letters), shown.options)
    return None if letter is None else shown.letters.index(letter)


@dataclass
class Resolved:
    answers: list[Answer]
    missing: list[tuple[str, GenerationRequest]]
    tokens: int

    @property
    def pred(self) -> int | None:
        return vote([a.original for a in self.answers])


def resolve(plan: QuestionPlan, cache: RequestCache, fingerprint: str, retries: int) -> Resolved:
    """Read ``plan``'s answers from the cache; list the requests still missing (first tries, then retries)."""
    answers: list[Answer] = []
    missing: list[tuple[str, GenerationRequest]] = []
    tokens = 0
    for run, (order, request) in enumerate(zip(plan.orders, plan.requests, strict=True)):
        key = request_key(fingerprint, CACHE_KIND, request)
        if key not in cache:
            missing.append((key, request))
            continue
        value = cache.get(key)
        tokens += int(value["tokens"])
        shown = shuffle(plan.item, order)
        for sample, text in enumerate(value["texts"]):
            position = _read(text, shown)
            asked, reply = request, text
            retry_texts: list[str] = []
            while position is None and len(retry_texts) < retries:
                follow = followup(asked, reply, len(shown.options))
                follow_key = request_key(fingerprint, CACHE_KIND, follow)
                if follow_key not in cache:
                    missing.append((follow_key, follow))
                    break
                followed = cache.get(follow_key)
                tokens += int(followed["tokens"])
                asked, reply = follow, followed["texts"][0]
                retry_texts.append(reply)
                position = _read(reply, shown)
            answers.append(Answer(run, sample, order, text, position, to_original(position, order), retry_texts))
    return Resolved(answers, missing, tokens)


def complete(
    engine: Engine, plans: Sequence[QuestionPlan], cache: RequestCache, fingerprint: str, retries: int
) -> None:
    """Ask the engine for every request ``plans`` still miss: first tries in one batch, then each retry round."""
    for _ in range(retries + 1):
        missing = dict(m for plan in plans for m in resolve(plan, cache, fingerprint, retries).missing)
        if not missing:
            return
        keys, requests = list(missing), list(missing.values())
        results = engine.generate(requests)
        cache.put_many(
            (k, {"texts": list(g.texts), "tokens": g.prompt_tokens + sum(g.completion_tokens)})
            for k, g in zip(keys, results, strict=True)
        )


def sample_record(plan: QuestionPlan, resolved: Resolved) -> dict[str, Any]:
    """What samples.jsonl keeps about a Medprompt question, beyond the common fields."""
    return {
        "examples": [e.id for e in plan.examples],
        "answers": [
            {
                "run": a.run,
                "sample": a.sample,
                "order": list(a.order),
                "position": a.position,
                "original": a.original,
                "generation": a.text,
                "retries": a.retry_texts,
            }
            for a in resolved.answers
        ],
    }


def agreement(resolved: Resolved) -> float:
    """Share of the answers that agree with the vote (1.0: the ensemble was unanimous)."""
    pred = resolved.pred
    return sum(a.original == pred for a in resolved.answers) / len(resolved.answers) if resolved.answers else 0.0
