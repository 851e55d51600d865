"""Chain-of-thought for MCQ training items: written by a teacher that knows the answer, kept only when verified.

Aloe enriches multiple-choice training questions with step-by-step reasoning. The teacher model is *given* the
gold answer and asked to explain it (restate the question, discuss every option, conclude ``Answer: X``); a
reply is kept only when the answer it concludes, read with the same extractor evaluation uses, is the gold one.
Knowing the answer makes the teacher's job explanation rather than guessing, and verification throws away the
replies where it talked itself into another option anyway.

Teacher runs are long and get killed, so :func:`generate_cot` writes one JSON line per finished item and a
rerun skips every id already in the file: a kill costs at most one chunk of work.

Sources that ship expert explanations (MedMCQA ``exp``, PubMedQA's long answer) need no teacher:
:func:`explanation_cot` turns the explanation itself into chain-of-thought, unless it contradicts the key.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import Field

from aloekit.config import _Config
from aloekit.data.clean import with_answer_line
from aloekit.data.schema import MCQItem, Message
from aloekit.engines.base import Engine, GenerationRequest
from aloekit.errors import UserError
from aloekit.io import append_jsonl, write_json
from aloekit.progress import progress_bar
from aloekit.prompting.answers import extract_choice

__all__ = [
    "CoTConfig",
    "CoTStats",
    "answer_prompt",
    "explanation_cot",
    "explanation_reasoning",
    "generate_cot",
    "load_verified",
    "question_prompt",
    "student_messages",
    "teacher_messages",
    "verify",
]

# Below this many words of reasoning (the final answer line excluded) a reply is a bare verdict, not an
# explanation: training on it would teach the student to skip the reasoning Aloe adds CoT for.
MIN_REASONING_WORDS = 15
# An expert explanation shorter than this says nothing a student can learn from ("Ans. is 'a'").
MIN_EXPLANATION_WORDS = 8


class CoTConfig(_Config):
    """Teacher chain-of-thought generation (:func:`generate_cot`)."""

    max_tokens: int = Field(
        default=384, ge=1, description="Most new tokens per teacher reply; a cut-off reply is rejected."
    )
    retries: int = Field(
        default=2, ge=0, description="Extra attempts after the first for an item whose reply did not verify."
    )
    temperature: float = Field(default=0.0, ge=0, description="Sampling temperature of the first attempt (0: greedy).")
    retry_temperature: float = Field(
        default=0.7,
        gt=0,
        description="Temperature of the retries, which sample with new seeds (seed + attempt); above 0, since "
        "repeating a greedy attempt would reproduce the same rejected reply.",
    )
    seed: int = Field(default=0, description="Sampling seed of the first attempt; attempt k uses seed + k.")
    blind: bool = Field(
        default=False,
        description="Ask the question without revealing the answer (Medprompt's self-generated chain-of-thought: "
        "the model answers as it would at test time, and only replies that reach the gold answer are kept); "
        "default: the teacher is told the answer and explains it.",
    )
    chunk: int = Field(
        default=16,
        ge=1,
        description="Items per round of engine calls; results are appended after each chunk, so a killed run "
        "loses at most one chunk.",
    )


# --- prompts --------------------------------------------------------------------------------------------------

TEACHER_SYSTEM = (
    "You are a senior physician writing worked explanations for medical exam questions, to teach students how "
    "to reason to the right answer."
)


def _lettered(item: MCQItem) -> str:
    return "".join(f"{letter}. {text}\n" for letter, text in zip(item.letters, item.options, strict=True))


def question_prompt(item: MCQItem) -> str:
    """The question as a student sees it: context, question, lettered options, and the request to reason.

    Worded like evaluation's chain-of-thought prompt (``aloe eval --cot``), so a model trained on these turns
    meets the same layout when it is evaluated.
    """
    context = f"{item.context}\n\n" if item.context else ""
    letters = ", ".join(item.letters)
    return (
        f"{context}Question: {item.question}\n\nOptions:\n{_lettered(item)}\n"
        f"Think step by step, then give your final answer on the last line as 'Answer: X', where X is one of "
        f"{letters}."
    )


def answer_prompt(item: MCQItem) -> str:
    """The question with its lettered options and a request for the answer alone (no reasoning asked for)."""
    context = f"{item.context}\n\n" if item.context else ""
    letters = ", ".join(item.letters)
    return (
        f"{context}Question: {item.question}\n\nOptions:\n{_lettered(item)}\n"
        f"Give the right option as 'Answer: X', where X is one of {letters}."
    )


def teacher_messages(item: MCQItem) -> list[Message]:
    """System and user turns asking the teacher to explain the known answer of ``item``."""
    letter = item.answer_letter
    context = f"Context:\n{item.context}\n\n" if item.context else ""
    user = (
        f"{context}Question: {item.question}\n\nOptions:\n{_lettered(item)}\n"
        f"The correct answer is {letter} ({item.options[item.answer]}).\n\n"
        "Explain step by step why this is the correct answer, as a worked solution for a student:\n"
        "1. Restate what the question asks and the key facts it gives.\n"
        "2. Discuss each option in turn and say why it is right or wrong.\n"
        f"3. Conclude with a final line that reads exactly 'Answer: {letter}'.\n\n"
        "Reason from medical knowledge; do not just repeat the letter, and do not mention that you were told "
        "the answer."
    )
    return [{"role": "system", "content": TEACHER_SYSTEM}, {"role": "user", "content": user}]


def student_messages(item: MCQItem) -> list[Message]:
    """The question exactly as ``aloe eval --cot`` asks it, answer not revealed (``blind`` generation)."""
    from aloekit.evaluation.prompts import chat_messages

    return chat_messages(item, cot=True)


# --- verification ---------------------------------------------------------------------------------------------


def _reasoning_words(text: str) -> int:
    """Words before the final answer line."""
    return len(text.rsplit("\nAnswer:", 1)[0].split()) if "\nAnswer:" in text else 0


# Phrases only a reply parroting the teacher prompt contains: small teachers echo the instructions ("3. Conclude
# with a final line ...") and would otherwise pass, since the echo names the right letter.
_ECHOES = ("conclude with a final line", "restate what the question asks", "that you were told the answer")


def _judge(text: str, item: MCQItem) -> tuple[str | None, str]:
    """(normalised reasoning, "accepted") or (None, why it was rejected)."""
    if any(echo in text.casefold() for echo in _ECHOES):
        return None, "echoes the instructions"
    chosen = extract_choice(text, item.letters, item.options)
    if chosen is None:
        return None, "no readable answer"
    if chosen != item.answer_letter:
        return None, "wrong answer"
    reasoning = with_answer_line(text, item.answer_letter, item.options)
    if _reasoning_words(reasoning) < MIN_REASONING_WORDS:
        return None, "too little reasoning"
    return reasoning, "accepted"


def verify(text: str, item: MCQItem) -> str | None:
    """The reasoning, normalised to end with one ``Answer: X`` line, if it concludes ``item``'s gold answer.

    None when the answer it concludes (read by :func:`~aloekit.prompting.answers.extract_choice`, the rule
    evaluation uses) is another option or unreadable, when there is too little reasoning before it, or when it
    parrots the teacher's instructions.
    """
    return _judge(text, item)[0]


# --- generation -----------------------------------------------------------------------------------------------


@dataclass
class CoTStats:
    """What one :func:`generate_cot` call did (``attempts`` counts teacher requests, retries included)."""

    items: int = 0
    skipped: int = 0
    """Items already finished in the output file, not asked again."""
    attempted: int = 0
    accepted: int = 0
    rejected: int = 0
    attempts: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.attempted if self.attempted else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3), "acceptance_rate": round(self.acceptance_rate, 4)}


def _read_records(out: Path, *, repair: bool) -> list[dict[str, Any]]:
    """Finished records of ``out``. A torn last line (a kill mid-write) is ignored, and cut off when ``repair``.

    Lines are written whole and in order, so a kill can only leave a fragment after the last newline; a bad
    line before it is damage that resuming would paper over, so it is an error.
    """
    if not out.exists():
        return []
    raw = out.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]  # everything after the last newline is a torn fragment
    records: list[dict[str, Any]] = []
    for number, line in enumerate(complete.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
            raise UserError(
                f"{out}: line {number} is not valid JSON and is not a torn last line; repair the file or delete "
                "it to start over"
            ) from None
        if not isinstance(record, dict) or "id" not in record or "status" not in record:
            raise UserError(f"{out}: line {number} is not a chain-of-thought record (no 'id' / 'status')")
        records.append(record)
    if repair and len(complete) < len(raw):
        with out.open("r+b") as f:
            f.truncate(len(complete))
    return records


def _chunks(items: Sequence[MCQItem], size: int) -> Iterator[Sequence[MCQItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _cumulative(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    accepted = sum(r["status"] == "accepted" for r in records)
    return {
        "items": len(records),
        "accepted": accepted,
        "rejected": len(records) - accepted,
        "attempts": sum(int(r.get("attempts", 0)) for r in records),
        "completion_tokens": sum(int(r.get("completion_tokens", 0)) for r in records),
        "acceptance_rate": round(accepted / len(records), 4) if records else 0.0,
    }


def _stats_path(out: Path) -> Path:
    return out.with_name(out.name + ".stats.json")


def generate_cot(
    engine: Engine, items: Sequence[MCQItem], out: Path, config: CoTConfig, *, progress: bool = False
) -> CoTStats:
    """Write verified teacher chain-of-thought for ``items`` to ``out`` (JSON lines), resuming where it stopped.

    One line per finished item: ``{"id", "status": "accepted" | "rejected", "reasoning", "attempts",
    "completion_tokens", "teacher", "reason", "item"}`` (``reasoning`` None and ``reason`` the last attempt's
    rejection reason when rejected). Ids already in ``out`` are skipped. Each round sends every pending attempt
    of a chunk in one ``engine.generate`` call; only the replies that did not verify are retried, with new
    seeds. ``out.stats.json`` gets this call's :class:`CoTStats` and totals over the whole file.
    """
    started = time.monotonic()
    repeated = [i for i, n in Counter(item.id for item in items).items() if n > 1]
    if repeated:
        duplicate = repeated[0]
        raise UserError(f"item id {duplicate!r} appears more than once; resuming {out} needs unique ids")
    out.parent.mkdir(parents=True, exist_ok=True)
    records = _read_records(out, repair=True)
    done = {r["id"] for r in records}
    pending = [item for item in items if item.id not in done]
    stats = CoTStats(items=len(items), skipped=len(items) - len(pending))

    with progress_bar(progress, len(pending), "teacher CoT") as advance:
        for chunk in _chunks(pending, config.chunk):
            finished = _run_chunk(engine, chunk, config, stats)
            append_jsonl(out, finished)  # fsynced: a kill loses at most the chunk in flight
            records.extend(finished)
            stats.seconds = time.monotonic() - started
            _write_stats(out, stats, records, engine, config)
            advance(len(chunk))
    stats.seconds = time.monotonic() - started
    _write_stats(out, stats, records, engine, config)
    return stats


def _run_chunk(engine: Engine, chunk: Sequence[MCQItem], config: CoTConfig, stats: CoTStats) -> list[dict[str, Any]]:
    """Rounds of attempts over one chunk; returns one finished record per item, in ``chunk`` order."""
    attempts = dict.fromkeys(range(len(chunk)), 0)
    tokens = dict.fromkeys(range(len(chunk)), 0)
    results: dict[int, tuple[str | None, str]] = {}
    todo = list(range(len(chunk)))
    for attempt in range(config.retries + 1):
        if not todo:
            break
        requests = [
            GenerationRequest(
                messages=tuple(student_messages(chunk[i]) if config.blind else teacher_messages(chunk[i])),
                max_tokens=config.max_tokens,
                temperature=config.temperature if attempt == 0 else config.retry_temperature,
                seed=config.seed + attempt,
            )
            for i in todo
        ]
        generations = engine.generate(requests)
        if len(generations) != len(requests):
            raise RuntimeError(f"engine {engine.model_id} returned {len(generations)} results for {len(requests)}")
        failed = []
        for i, gen in zip(todo, generations, strict=True):
            attempts[i] += 1
            tokens[i] += sum(gen.completion_tokens)
            if gen.finish_reasons[0] == "length":
                # Cut off by max_tokens: any answer it reads as is a mid-sentence fragment, not a conclusion.
                results[i] = (None, "cut off at max_tokens")
            else:
                results[i] = _judge(gen.text, chunk[i])
            if results[i][0] is None:
                failed.append(i)
        todo = failed

    records = []
    for i, item in enumerate(chunk):
        reasoning, reason = results[i]
        stats.attempted += 1
        stats.attempts += attempts[i]
        stats.completion_tokens += tokens[i]
        if reasoning is None:
            stats.rejected += 1
        else:
            stats.accepted += 1
        records.append(
            {
                "id": item.id,
                "status": "rejected" if reasoning is None else "accepted",
                "reasoning": reasoning,
                "attempts": attempts[i],
                "completion_tokens": tokens[i],
                "teacher": engine.model_id,
                "reason": None if reasoning is not None else reason,
                "item": item.to_json(),
            }
        )
    return records


def _write_stats(
    out: Path, stats: CoTStats, records: Sequence[dict[str, Any]], engine: Engine, config: CoTConfig
) -> None:
    report = {
        "teacher": engine.model_id,
        "config": config.model_dump(),
        "this_run": stats.to_json(),
        "cumulative": _cumulative(records),
    }
    write_json(_stats_path(out), report)


def load_verified(out: Path) -> list[MCQItem]:
    """The accepted items of a :func:`generate_cot` output, each with ``explanation`` = its verified reasoning."""
    if not out.exists():
        raise UserError(f"{out} does not exist: run chain-of-thought generation first")
    items = []
    for number, record in enumerate(_read_records(out, repair=False), start=1):
        if record["status"] != "accepted":
            continue
        if not isinstance(record.get("item"), dict) or not isinstance(record.get("reasoning"), str):
            raise UserError(
                f"{out}:{number}: an accepted record needs an 'item' object and a 'reasoning' text; "
                "regenerate the file with aloe data cot"
            )
        item = MCQItem.from_json(record["item"], f"{out}:{number}")
        items.append(replace(item, explanation=record["reasoning"]))
    return items


# --- expert explanations --------------------------------------------------------------------------------------

# MedMCQA explanations announce the key in abbreviations extract_choice does not read as a cue: "Ans. is 'a'",
# "Ans-b.", "Ans: c". Spelled out, they become statements it does read.
_ANS_ABBREVIATION = re.compile(r"\bans\b\s*[.:\-]*\s*", re.IGNORECASE)
# The announcement itself, stripped from the chain-of-thought: reasoning should lead to the answer, not open with
# it (the canonical final line states it). Matches "Ans. is 'a' i.e., ", "Ans-b. ", "Answer: (c) ".
_LEADING_KEY = re.compile(
    r"^\s*(?:ans(?:wer)?\b)\s*[.:\-]*\s*(?:is\b)?\s*[:\-]?\s*[(\['\"]?\s*[a-j]\s*[)\]'\"]?\s*"
    r"(?:(?:i\s*\.?\s*e\s*\.?|\.|,|:|;|-)\s*)*",
    re.IGNORECASE,
)


def explanation_reasoning(item: MCQItem) -> str | None:
    """Reasoning built from ``item``'s expert explanation, without a final answer line, or None when it cannot be
    trusted as one (:func:`explanation_cot` adds the line).

    The result restates the question and gives the explanation. None when the
    explanation is missing or too short to teach anything, or when it reads as naming an option other than the
    key as correct (MedMCQA explanations sometimes contradict their own answer key).
    """
    explanation = (item.explanation or "").strip()
    if len(explanation.split()) < MIN_EXPLANATION_WORDS:
        return None
    # Only explicit statements ("Ans. is 'b'", "the correct answer is heparin") count. The neutral first line
    # stops extract_choice from reading an explanation that merely *opens* with an option's label or text
    # ("Option A- ...", "Menkes disease - ...") as choosing it: explanations often discuss options in turn.
    stated = extract_choice(
        "Explanation:\n" + _ANS_ABBREVIATION.sub("Answer: ", explanation), item.letters, item.options
    )
    if stated is not None and stated != item.answer_letter:
        return None
    body = _LEADING_KEY.sub("", explanation, count=1).strip() or explanation
    if len(body.split()) < MIN_EXPLANATION_WORDS:
        return None
    return f"The question asks: {item.question.strip()}\n\n{body}"


def explanation_cot(item: MCQItem) -> str | None:
    """Chain-of-thought built from ``item``'s expert explanation: :func:`explanation_reasoning` ending with
    ``Answer: X``, or None when the explanation cannot be trusted as one."""
    reasoning = explanation_reasoning(item)
    return None if reasoning is None else f"{reasoning}\n\nAnswer: {item.answer_letter}"
